//! The `/metrics` endpoint: a deliberately small HTTP/1.1 server on tokio.
//!
//! Prometheus needs one thing from a node: `GET /metrics`. Anything larger (a general HTTP
//! stack) would be attack surface inside the enclave for no gain, so the handler reads one
//! request head of bounded size within a bounded time, answers it and closes the connection.
//! It never reads a body and never panics on input: malformed requests get `400`, oversized
//! heads `431`, other paths `404`, other methods `405`. Connections are capped so a flood
//! cannot exhaust memory; past the cap, new connections wait in the kernel's backlog.
//!
//! The endpoint is plain HTTP: metrics hold no records, but they do describe the job (loss,
//! epsilon spent), so bind it to loopback or to the operator's scrape network only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::error::MetricsError;
use crate::node::{NodeMetrics, TEXT_CONTENT_TYPE};

/// Largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// Time a client has to send its request head, and then to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an accept error that is not about one connection (such as too many open
/// files), so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// Serves `GET /metrics` from `metrics` on `listener` until the task is dropped.
///
/// Accept errors are logged and retried (after a pause when they are not about a single
/// connection), so the endpoint outlives a temporary shortage of file descriptors. Returns an
/// error only if the listener's address cannot be read.
pub async fn serve(metrics: NodeMetrics, listener: TcpListener) -> Result<(), MetricsError> {
    serve_with_shutdown(metrics, listener, std::future::pending()).await
}

/// Like [`serve`], but returns `Ok(())` once `shutdown` completes. Connections already
/// accepted finish on their own (each is bounded by the I/O timeout).
pub async fn serve_with_shutdown(
    metrics: NodeMetrics,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MetricsError> {
    let addr = listener.local_addr().map_err(|source| MetricsError::Io {
        operation: "local_addr",
        source,
    })?;
    tracing::info!(%addr, node = metrics.node(), "serving Prometheus metrics on /metrics");
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return Ok(()),
            // The semaphore is never closed, so acquiring fails only if it were.
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return Ok(()),
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(&metrics, stream).await {
                        tracing::debug!(%peer, error = %e, "metrics connection failed");
                    }
                    drop(permit);
                });
            }
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "metrics endpoint: connection failed before accept");
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "metrics endpoint: accept failed; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    )
}

/// One request, one response, then close.
async fn handle(metrics: &NodeMetrics, mut stream: TcpStream) -> std::io::Result<()> {
    let response = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Err(_elapsed) => Response::error(408, "Request Timeout"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => Response::error(431, "Request Header Fields Too Large"),
        Ok(Ok(Head::Complete(bytes))) => respond(metrics, &bytes),
    };
    let bytes = response.into_bytes();
    match tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    {
        Ok(result) => result,
        Err(_elapsed) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client did not take the response",
        )),
    }
}

enum Head {
    /// The head up to (excluding) the blank line.
    Complete(Vec<u8>),
    TooLarge,
    /// The peer closed before sending a whole head.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        // Search only where a terminator could newly appear: the old tail plus the new bytes.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf[from..]) {
            if from + end > MAX_HEAD_BYTES {
                return Ok(Head::TooLarge);
            }
            buf.truncate(from + end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(Head::TooLarge);
        }
    }
}

/// Index of the blank line ending the head (`\r\n\r\n`, or bare `\n\n` as RFC 9112 lets a
/// server accept).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find(|&i| buf[i..].starts_with(b"\r\n\r\n") || buf[i..].starts_with(b"\n\n"))
}

fn respond(metrics: &NodeMetrics, head: &[u8]) -> Response {
    let request = match parse_head(head) {
        Ok(request) => request,
        Err(why) => {
            tracing::debug!(why, "metrics endpoint: bad request");
            return Response::error(400, "Bad Request");
        }
    };
    let path = request.target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Response::error(404, "Not Found");
    }
    match request.method {
        "GET" | "HEAD" => Response {
            status: 200,
            reason: "OK",
            content_type: TEXT_CONTENT_TYPE,
            extra: "",
            body: metrics.encode_text().into_bytes(),
            head_only: request.method == "HEAD",
        },
        _ => Response {
            extra: "Allow: GET, HEAD\r\n",
            ..Response::error(405, "Method Not Allowed")
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    target: &'a str,
}

/// Checks the request line and the shape of every header line; header values are not used.
fn parse_head(head: &[u8]) -> Result<Request<'_>, &'static str> {
    let head = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    if !request_line.is_ascii() || request_line.chars().any(|c| c.is_ascii_control()) {
        return Err("request line has non-ASCII or control characters");
    }
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("request line is not 'METHOD TARGET VERSION'");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("method is not an upper-case token");
    }
    if !target.starts_with('/') {
        return Err("target is not an absolute path");
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err("version is not HTTP/1.0 or HTTP/1.1");
    }
    for line in lines {
        let Some((name, _value)) = line.split_once(':') else {
            return Err("header line has no ':'");
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err("header name is not a token");
        }
    }
    Ok(Request { method, target })
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    /// Further header lines, each ending in CRLF.
    extra: &'static str,
    body: Vec<u8>,
    head_only: bool,
}

impl Response {
    fn error(status: u16, reason: &'static str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra: "",
            body: format!("{status} {reason}\n").into_bytes(),
            head_only: false,
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
            self.extra,
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests;
