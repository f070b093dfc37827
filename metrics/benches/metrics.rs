//! Cost of recording and of a scrape. `cargo bench -p bastion-metrics` prints a table.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bastion_metrics::NodeMetrics;

fn per_op(iterations: u32, mut f: impl FnMut(u32)) -> Duration {
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    start.elapsed() / iterations
}

fn main() {
    let metrics = NodeMetrics::new("node-0", 0, "worker").expect("metrics");
    metrics.set_simulated_tee(true);
    for d in 0..4 {
        metrics.set_privacy(&format!("dataset-{d}"), 1.0, 8.0);
    }
    let step = per_op(1_000_000, |i| {
        metrics.observe_step(Duration::from_micros(u64::from(i % 5000)))
    });
    let allreduce = per_op(1_000_000, |i| {
        metrics.observe_allreduce(4 << 20, Duration::from_micros(u64::from(i % 5000)))
    });
    let failure = per_op(1_000_000, |_| {
        black_box(metrics.attestation_failed("policy.measurement"));
    });
    let text = metrics.encode_text();
    let encode = per_op(2_000, |_| {
        black_box(metrics.encode_text());
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(bastion_metrics::serve(metrics.clone(), listener));
    let scrape = per_op(500, |_| {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut body = Vec::new();
        s.read_to_end(&mut body).expect("read");
        assert!(body.starts_with(b"HTTP/1.1 200"));
    });

    println!("| operation | time per op |");
    println!("|---|---|");
    println!("| observe_step | {step:?} |");
    println!("| observe_allreduce | {allreduce:?} |");
    println!("| attestation_failed (known code) | {failure:?} |");
    println!(
        "| encode_text ({} bytes, {} lines) | {encode:?} |",
        text.len(),
        text.lines().count()
    );
    println!("| GET /metrics over loopback | {scrape:?} |");
}
