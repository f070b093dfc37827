//! The endpoint against raw sockets: what Prometheus sends, and what it must survive.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::*;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), MetricsError>>,
}

async fn start(metrics: NodeMetrics) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_shutdown(metrics, listener, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Sends `request` as is and reads until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8(response).unwrap()
}

fn split(response: &str) -> (&str, &str) {
    response
        .split_once("\r\n\r\n")
        .expect("response has a head")
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap()
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    split(response).0.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn metrics() -> NodeMetrics {
    let m = NodeMetrics::new("node-0", 0, "worker").unwrap();
    m.observe_step(Duration::from_millis(250));
    m
}

#[tokio::test]
async fn get_metrics_returns_the_exposition() {
    let m = metrics();
    let server = start(m.clone()).await;
    // What Prometheus 2.x sends, give or take the User-Agent.
    let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Prometheus/2.42.0\r\n\
        Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\
        Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 1\r\n\r\n";
    let response = exchange(server.addr, request).await;
    assert_eq!(status(&response), "HTTP/1.1 200 OK");
    assert_eq!(header(&response, "content-type"), Some(TEXT_CONTENT_TYPE));
    assert!(TEXT_CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    let (_, body) = split(&response);
    assert_eq!(
        header(&response, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(body, m.encode_text());
    assert!(body.contains(r#"bastion_steps_total{node="node-0",rank="0",role="worker"} 1"#));
    server.stop().await;
}

#[tokio::test]
async fn query_string_http_1_0_and_bare_newlines_are_served() {
    let server = start(metrics()).await;
    for request in [
        &b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n"[..],
        b"GET /metrics HTTP/1.0\r\n\r\n",
        b"GET /metrics HTTP/1.1\nHost: x\n\n",
    ] {
        let response = exchange(server.addr, request).await;
        assert_eq!(status(&response), "HTTP/1.1 200 OK", "{request:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let server = start(metrics()).await;
    let response = exchange(server.addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&response), "HTTP/1.1 200 OK");
    let (_, body) = split(&response);
    assert!(body.is_empty());
    assert_ne!(header(&response, "content-length"), Some("0"));
    server.stop().await;
}

#[tokio::test]
async fn other_paths_and_methods_are_refused() {
    let server = start(metrics()).await;
    for (request, want) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"GET /data/raw HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (
            b"DELETE /metrics HTTP/1.1\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
    ] {
        let response = exchange(server.addr, request).await;
        assert_eq!(
            status(&response),
            want,
            "{}",
            String::from_utf8_lossy(request)
        );
        assert!(
            !response.contains("bastion_"),
            "no metrics leak on refusals"
        );
    }
    let response = exchange(server.addr, b"PUT /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_keeps_serving() {
    let server = start(metrics()).await;
    for request in [
        &b"\x00\x01\x02\x03\r\n\r\n"[..],
        b"GET /metrics\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1 extra\r\n\r\n",
        b"get /metrics HTTP/1.1\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /m\xc3\xa9trics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        b"GET /metrics\tHTTP/1.1\r\n\r\n",
    ] {
        let response = exchange(server.addr, request).await;
        assert_eq!(status(&response), "HTTP/1.1 400 Bad Request", "{request:?}");
    }
    let response = exchange(server.addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&response), "HTTP/1.1 200 OK");
    server.stop().await;
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let server = start(metrics()).await;
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    request.resize(MAX_HEAD_BYTES + 100, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The server may answer and close before taking every byte; a reset on write is fine.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    assert!(
        response.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&response)
    );
    // Just under the limit is still served.
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    request.resize(MAX_HEAD_BYTES - 10, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        status(&exchange(server.addr, &request).await),
        "HTTP/1.1 200 OK"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_head_split_across_writes_is_reassembled() {
    let server = start(metrics()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for part in [
        &b"GET /met"[..],
        b"rics HTTP/1.1\r\nHost: x\r",
        b"\n\r",
        b"\n",
    ] {
        stream.write_all(part).await.unwrap();
        stream.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    server.stop().await;
}

#[tokio::test]
async fn clients_that_hang_up_early_do_not_disturb_others() {
    let server = start(metrics()).await;
    for partial in [&b""[..], b"GET /metrics HTTP/1.1\r\nHost:"] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(partial).await.unwrap();
        drop(stream);
    }
    let response = exchange(server.addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&response), "HTTP/1.1 200 OK");
    server.stop().await;
}

#[test]
fn head_end_is_found_with_crlf_or_bare_lf() {
    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
    assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(14));
    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    assert_eq!(find_head_end(b""), None);
}

#[test]
fn parse_head_returns_method_and_target() {
    assert_eq!(
        parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a:1\r\nAccept: */*"),
        Ok(Request {
            method: "GET",
            target: "/metrics?x=1"
        })
    );
    assert!(parse_head(b"").is_err());
}
