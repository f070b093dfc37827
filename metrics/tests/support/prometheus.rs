//! A real Prometheus server for tests, and `promtool check metrics`.
//!
//! Self-contained on purpose (std and `serde_json` only) so any crate's tests can use it:
//!
//! ```ignore
//! #[path = "../../metrics/tests/support/prometheus.rs"]
//! mod prometheus;
//!
//! let prom = prometheus::Prometheus::start("bastion", &[node_addr])?;
//! prom.wait_for_targets_up(Duration::from_secs(30))?;
//! let series = prom.query("bastion_steps_total")?; // Vec<(labels, value)>
//! prometheus::promtool_check_metrics(&text)?;
//! ```
//!
//! The binaries come from the Debian package `prometheus` (2.42), which `scripts/prometheus.sh`
//! installs. When they are missing every entry point returns an error that says to run it:
//! tests must fail, not skip, so that CI cannot pass without having checked anything.
//!
//! The server scrapes every 1 s, listens on a free loopback port, keeps its data in a
//! temporary directory and is killed (and the directory removed) on drop.

#![allow(dead_code)] // each including test uses a different part

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Labels of one series, `__name__` included when Prometheus returns it.
pub(crate) type Labels = BTreeMap<String, String>;

/// Scrape (and rule evaluation) interval of the test server.
pub(crate) const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

const HELP: &str = "run scripts/prometheus.sh to install prometheus and promtool \
                    (Debian package 'prometheus')";
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The path of `name` (`prometheus` or `promtool`) on `PATH`, or an error saying how to get it.
pub(crate) fn find_binary(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("`{name}` is not on PATH: {HELP}"))
}

/// Runs `promtool check metrics` on an exposition in the text format; `Err` holds promtool's
/// complaints (lint problems such as missing help text or a counter without `_total`).
pub(crate) fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let promtool = find_binary("promtool")?;
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", promtool.display()))?;
    // Write from another thread: promtool may answer before reading everything.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let text = text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("promtool check metrics: {e}"))?;
    let written = writer.join().expect("writer thread does not panic");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(format!("promtool check metrics: {}: {said}", output.status));
    }
    written.map_err(|e| format!("promtool check metrics: writing stdin: {e}"))
}

/// A running Prometheus server, killed on drop.
pub(crate) struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    job: String,
    targets: Vec<SocketAddr>,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`/metrics`, plain HTTP) under job name `job` and
    /// waits until it is ready to answer queries.
    pub(crate) fn start(job: &str, targets: &[SocketAddr]) -> Result<Prometheus, String> {
        let binary = find_binary("prometheus")?;
        let mut last_error = String::new();
        // The free port is found by binding and releasing it, so another process can take
        // it in between: retry with a fresh one.
        for _attempt in 0..3 {
            let dir = temp_dir()?;
            match Self::start_in(&binary, dir.clone(), job, targets) {
                Ok(prometheus) => return Ok(prometheus),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    if !e.contains("address already in use") {
                        return Err(e);
                    }
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    fn start_in(
        binary: &Path,
        dir: PathBuf,
        job: &str,
        targets: &[SocketAddr],
    ) -> Result<Prometheus, String> {
        let addr = free_loopback_port()?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(job, targets))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let mut prometheus = Prometheus {
            child,
            dir,
            addr,
            job: job.to_owned(),
            targets: targets.to_vec(),
        };
        prometheus.wait_ready()?;
        Ok(prometheus)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "prometheus exited during start-up ({status}); its log:\n{}",
                    self.log()
                ));
            }
            if let Ok((200, _)) = http_get(self.addr, "/-/ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "prometheus on {} not ready after {START_TIMEOUT:?}; its log:\n{}",
                    self.addr,
                    self.log()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Where the server listens (loopback).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The job name its targets are scraped under (the `job` label).
    pub(crate) fn job(&self) -> &str {
        &self.job
    }

    /// What the server has logged so far, for failure messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Evaluates the PromQL `expr` now (`/api/v1/query`). An instant vector gives one entry per
    /// series; a scalar gives one entry with no labels. `Err` carries Prometheus's message for
    /// an expression that does not parse or cannot be evaluated.
    pub(crate) fn query(&self, expr: &str) -> Result<Vec<(Labels, f64)>, String> {
        self.query_at(expr, None)
    }

    /// [`Prometheus::query`] evaluated at `time` (Unix seconds; `None`: now), so several
    /// checks can read the same stored data whatever the targets do meanwhile.
    pub(crate) fn query_at(
        &self,
        expr: &str,
        time: Option<f64>,
    ) -> Result<Vec<(Labels, f64)>, String> {
        let mut path = format!("/api/v1/query?query={}", percent_encode(expr));
        if let Some(time) = time {
            path += &format!("&time={time:.3}");
        }
        let (status, body) = http_get(self.addr, &path)?;
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
            format!("query {expr:?}: HTTP {status}, body is not JSON ({e}): {body}")
        })?;
        if json["status"] != "success" {
            return Err(format!(
                "query {expr:?}: {} ({})",
                json["error"].as_str().unwrap_or(&body),
                json["errorType"].as_str().unwrap_or("unknown error type"),
            ));
        }
        let data = &json["data"];
        let bad = |what: &str| format!("query {expr:?}: {what} in {body}");
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .ok_or_else(|| bad("no result array"))?
                .iter()
                .map(|series| {
                    let labels = series["metric"]
                        .as_object()
                        .ok_or_else(|| bad("no metric object"))?
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    Ok((
                        labels,
                        sample_value(&series["value"]).ok_or_else(|| bad("bad value"))?,
                    ))
                })
                .collect(),
            Some("scalar") => Ok(vec![(
                Labels::new(),
                sample_value(&data["result"]).ok_or_else(|| bad("bad scalar"))?,
            )]),
            other => Err(bad(&format!(
                "result type {other:?} is not vector or scalar"
            ))),
        }
    }

    /// Polls `expr` until `accept` approves its result, or fails after `timeout` with the last
    /// result or error.
    pub(crate) fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        accept: impl Fn(&[(Labels, f64)]) -> bool,
    ) -> Result<Vec<(Labels, f64)>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.query(expr);
            match &last {
                Ok(result) if accept(result) => return last,
                // A syntax error does not go away by waiting.
                Err(e) if e.contains("bad_data") => return last,
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(format!("{expr:?} after {timeout:?}: last answer {last:?}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until every target has been scraped successfully (`up == 1`), or says which
    /// were not, with Prometheus's last scrape error for each.
    pub(crate) fn wait_for_targets_up(&self, timeout: Duration) -> Result<(), String> {
        let expr = format!("up{{job=\"{}\"}}", self.job);
        let want: Vec<String> = self.targets.iter().map(|t| t.to_string()).collect();
        let all_up = |result: &[(Labels, f64)]| {
            want.iter().all(|target| {
                result
                    .iter()
                    .any(|(l, v)| l.get("instance") == Some(target) && *v == 1.0)
            })
        };
        self.wait_for(&expr, timeout, all_up)
            .map(drop)
            .map_err(|e| {
                let targets = http_get(self.addr, "/api/v1/targets")
                    .map(|(_, body)| body)
                    .unwrap_or_else(|e| e);
                format!("targets {want:?} not all up: {e}\ntargets: {targets}")
            })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config_yaml(job: &str, targets: &[SocketAddr]) -> String {
    let secs = SCRAPE_INTERVAL.as_secs();
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n  evaluation_interval: {secs}s\n\
         scrape_configs:\n  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

/// `[timestamp, "value"]`; Prometheus writes values as strings (`NaN`, `+Inf` included).
fn sample_value(value: &serde_json::Value) -> Option<f64> {
    match value[1].as_str()? {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        v => v.parse().ok(),
    }
}

fn free_loopback_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn temp_dir() -> Result<PathBuf, String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "bastion-prometheus-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A one-shot HTTP/1.0 GET on loopback: `(status, body)`. HTTP/1.0 keeps Go's server from
/// chunking, so the body is everything after the head.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(fail)?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(fail)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(fail)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(fail)?;
    let response = String::from_utf8(response)
        .map_err(|e| format!("GET http://{addr}{path}: response is not UTF-8: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET http://{addr}{path}: no end of head in {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET http://{addr}{path}: bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}
