//! Telemetry against a real local listener: what arrives when an endpoint is configured, and
//! that nothing arrives when none is, or when `BASTIONAI_DISABLE_TELEMETRY=1`.

use bastion_telemetry::{report, Outcome, TelemetryConfig, Usage, DISABLE_ENV};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Accepts one connection within `wait` and returns the request it carried (None: nobody came).
async fn one_request(listener: &TcpListener, wait: Duration) -> Option<String> {
    let (mut sock, _) = tokio::time::timeout(wait, listener.accept())
        .await
        .ok()?
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = sock.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            if body.len() >= len {
                break;
            }
        }
        assert!(n > 0, "connection closed mid-request: {text:?}");
    }
    sock.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    Some(String::from_utf8(got).unwrap())
}

#[tokio::test]
async fn counts_only_when_configured_nothing_when_disabled_and_errors_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config: TelemetryConfig =
        toml::from_str(&format!("endpoint = \"http://{addr}/v1/usage\"")).unwrap();
    let usage = Usage {
        jobs: 1,
        steps: 40,
        nodes: 3,
        version: bastion_telemetry::version(),
    };

    // Configured: exactly one POST, whose body is exactly the counts.
    let (request, outcome) = tokio::join!(
        one_request(&listener, Duration::from_secs(10)),
        report(&config, &usage)
    );
    assert_eq!(outcome.unwrap(), Outcome::Sent(204));
    let request = request.expect("the configured endpoint got a request");
    assert!(
        request.starts_with("POST /v1/usage HTTP/1.1\r\n"),
        "{request}"
    );
    let body = request.split_once("\r\n\r\n").unwrap().1;
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["jobs", "nodes", "steps", "version"], "{body}");
    assert_eq!(
        (
            value["jobs"].as_u64(),
            value["steps"].as_u64(),
            value["nodes"].as_u64()
        ),
        (Some(1), Some(40), Some(3))
    );

    // Not configured: nothing is attempted.
    let none = TelemetryConfig::default();
    let (request, outcome) = tokio::join!(
        one_request(&listener, Duration::from_millis(500)),
        report(&none, &usage)
    );
    assert_eq!(outcome.unwrap(), Outcome::NotConfigured);
    assert!(request.is_none(), "sent without an endpoint: {request:?}");

    // Configured but disabled by the environment: nothing reaches the listener.
    std::env::set_var(DISABLE_ENV, "1");
    let (request, outcome) = tokio::join!(
        one_request(&listener, Duration::from_millis(500)),
        report(&config, &usage)
    );
    std::env::remove_var(DISABLE_ENV);
    assert_eq!(outcome.unwrap(), Outcome::Disabled);
    assert!(request.is_none(), "sent although disabled: {request:?}");

    // An error answer is reported, not swallowed. (One test: the environment is per process.)
    let server = async {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await.unwrap();
        sock.write_all(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
            .await
            .unwrap();
    };
    let (_, outcome) = tokio::join!(server, report(&config, &usage));
    let err = outcome.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 500") && err.contains(&addr.to_string()),
        "{err}"
    );
}
