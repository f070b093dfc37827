//! Telemetry from a real node process: with `[telemetry] endpoint` set, the coordinator sends
//! one POST per finished job carrying only jobs, steps, nodes and the version (no dataset name,
//! no hash, no loss, no epsilon); with `BASTIONAI_DISABLE_TELEMETRY=1` the same config sends
//! nothing. A local listener stands in for the endpoint.

mod common;

use common::{node, serial, Cluster};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// Serves HTTP on a free port and hands every request body it gets to the returned receiver.
fn listener() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { continue };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            while let Ok(n) = sock.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|l| l.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ = sock.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&got).to_string());
        }
    });
    (format!("http://{addr}/v1/usage"), rx)
}

fn run_job(test: &str, endpoint: &str) -> Cluster {
    let mut c = Cluster::start(
        test,
        vec![node("node-0", &[("hospital-secret-name", 24, 3)])
            .with(&format!("telemetry = {{ endpoint = {endpoint:?} }}"))],
        "nodes = 1\nimage_size = 16\nbatch_size = 12\nepochs = 1\nmax_steps = 2\ntest_records = 16",
        "heartbeat_ms = 200\nnode_timeout_ms = 3000",
        8.0,
    );
    let (ok, _) = c.wait_coordinator(Duration::from_secs(240));
    assert!(ok, "{}", c.logs_tail());
    c
}

#[test]
fn a_finished_job_sends_counts_only_and_nothing_when_disabled() {
    let _one_at_a_time = serial();
    let (endpoint, requests) = listener();

    let c = run_job("telemetry-on", &endpoint);
    let request = requests
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no telemetry arrived\n{}", c.logs_tail()));
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
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["jobs", "nodes", "steps", "version"], "{body}");
    assert_eq!(value["jobs"], 1);
    assert_eq!(value["nodes"], 1);
    assert_eq!(value["steps"], 2);
    assert!(
        !request.contains("hospital"),
        "a dataset name was sent: {request}"
    );
    assert!(requests.try_recv().is_err(), "one report per job");

    // The same config with the switch set in the node's environment: nothing arrives.
    std::env::set_var(bastion_telemetry::DISABLE_ENV, "1");
    let c = run_job("telemetry-off", &endpoint);
    std::env::remove_var(bastion_telemetry::DISABLE_ENV);
    assert!(
        requests.recv_timeout(Duration::from_secs(3)).is_err(),
        "telemetry was sent although BASTIONAI_DISABLE_TELEMETRY=1\n{}",
        c.logs_tail()
    );
}
