//! Usage telemetry, off unless the operator asks for it.
//!
//! The product sends nothing anywhere unless `[telemetry] endpoint` is set in node.toml. When
//! it is, the coordinator sends one small JSON object per finished job: how many jobs, steps
//! and nodes, and the product version. Never a dataset's name or hash, a model, a loss, an
//! epsilon or anything else that depends on the data. `BASTIONAI_DISABLE_TELEMETRY=1` turns
//! even that off, whatever the config says: the person running the binary has the last word.
//!
//! The steps and nodes are the public plan's, which every party already knows; they are not
//! statistics of any record.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The environment variable that switches telemetry off (value `1`, `true` or `yes`).
pub const DISABLE_ENV: &str = "BASTIONAI_DISABLE_TELEMETRY";

/// How long one report may take before it is given up (it never delays the job's end more).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// `[telemetry]` in node.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `http://host[:port]/path` or `https://...`. Absent: nothing is ever sent.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// Everything telemetry ever sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Jobs finished (one per report).
    pub jobs: u64,
    /// Training steps applied.
    pub steps: u64,
    /// Nodes in the group at the end.
    pub nodes: u64,
    /// The product's version.
    pub version: String,
}

/// Why a report was not sent.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not a URL this client speaks.
    #[error("[telemetry] endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// As configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint could not be reached, or answered with an error.
    #[error("telemetry to {endpoint}: {reason}")]
    Send {
        /// As configured.
        endpoint: String,
        /// What happened.
        reason: String,
    },
}

/// What `report` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No endpoint is configured.
    NotConfigured,
    /// `BASTIONAI_DISABLE_TELEMETRY` is set.
    Disabled,
    /// Sent; the endpoint answered with this HTTP status (2xx).
    Sent(u16),
}

/// True when the environment switches telemetry off.
pub fn disabled_by_env() -> bool {
    std::env::var(DISABLE_ENV).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// A parsed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl TelemetryConfig {
    /// Checks the endpoint now, so a node with a mistyped one refuses to start instead of
    /// failing silently at the end of its first job.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        match &self.endpoint {
            Some(e) => parse(e).map(|_| ()),
            None => Ok(()),
        }
    }
}

fn parse(endpoint: &str) -> Result<Endpoint, TelemetryError> {
    let bad = |reason: &str| TelemetryError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let (tls, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad("must start with http:// or https://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?;
            (h, port)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the path has whitespace or control characters"));
    }
    Ok(Endpoint {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// Sends `usage` to the configured endpoint, unless none is configured or the environment
/// disables telemetry. One POST of `application/json`, with a timeout.
pub async fn report(config: &TelemetryConfig, usage: &Usage) -> Result<Outcome, TelemetryError> {
    let Some(raw) = &config.endpoint else {
        return Ok(Outcome::NotConfigured);
    };
    if disabled_by_env() {
        return Ok(Outcome::Disabled);
    }
    let endpoint = parse(raw)?;
    let failed = |reason: String| TelemetryError::Send {
        endpoint: raw.clone(),
        reason,
    };
    let body = serde_json::to_vec(usage).map_err(|e| failed(e.to_string()))?;
    let send = async {
        let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if endpoint.tls {
            let tls = tls_connect(&endpoint.host, tcp).await?;
            post(tls, &endpoint, &body).await
        } else {
            post(tcp, &endpoint, &body).await
        }
    };
    let status = tokio::time::timeout(SEND_TIMEOUT, send)
        .await
        .map_err(|_| failed(format!("no answer within {SEND_TIMEOUT:?}")))?
        .map_err(failed)?;
    if !(200..300).contains(&status) {
        return Err(failed(format!("the endpoint answered HTTP {status}")));
    }
    Ok(Outcome::Sent(status))
}

async fn tls_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // One provider, chosen here, never the process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("server name {host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}

/// Writes one HTTP/1.1 POST and returns the status code of the answer.
async fn post<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    endpoint: &Endpoint,
    body: &[u8],
) -> Result<u16, String> {
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: bastion/{}\r\n\r\n",
        endpoint.path,
        endpoint.host,
        body.len(),
        env!("CARGO_PKG_VERSION"),
    );
    io.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    io.write_all(body)
        .await
        .map_err(|e| format!("write: {e}"))?;
    io.flush().await.map_err(|e| format!("write: {e}"))?;
    // The status line is all we need; read a bounded prefix of the answer.
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 4096 {
        let n = io.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|s| s.parse::<u16>().ok()),
    ) {
        (Some(v), Some(status)) if v.starts_with("HTTP/") => Ok(status),
        _ => Err(format!("not an HTTP answer: {line:?}")),
    }
}

/// This product's version, as reported.
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_are_refused_by_name() {
        let e = parse("http://127.0.0.1:9000/v1/usage").unwrap();
        assert_eq!(
            e,
            Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/v1/usage".into()
            }
        );
        let e = parse("https://telemetry.example.com").unwrap();
        assert_eq!((e.tls, e.port, e.path.as_str()), (true, 443, "/"));
        let e = parse("http://[::1]:81/x").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 81));
        for (bad, why) in [
            ("ftp://x/y", "http:// or https://"),
            ("http://:80/", "no host"),
            ("http://h:port/", "port"),
            ("http://u:p@h/", "credentials"),
            ("http://h/a b", "whitespace"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
    }
}
