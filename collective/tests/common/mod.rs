//! Test support: attested nodes on loopback with the simulated TEE, and their ring specs.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform};
use bastion_attestation::tls::AttestedEndpoint;
use bastion_attestation::{Policy, TrustAnchors, Verifier};
use bastion_collective::{RingConfig, RingSpec};
use tokio::net::TcpListener;

/// One simulated chain per test run, kept in the target directory (RSA keygen takes seconds).
pub fn platform() -> &'static SimulatedPlatform {
    static P: OnceLock<SimulatedPlatform> = OnceLock::new();
    P.get_or_init(|| {
        SimulatedPlatform::load_or_generate(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tee"),
        )
        .expect("simulated platform")
    })
}

pub fn endpoint() -> AttestedEndpoint {
    let p = platform();
    let verifier = Verifier::new(
        Policy::new(vec![LaunchConfig::default_measurement()]),
        TrustAnchors::simulated(p.ark_der(), p.ask_der()).unwrap(),
    );
    AttestedEndpoint::new(p.launch(LaunchConfig::default()).unwrap(), verifier).unwrap()
}

pub struct Node {
    pub endpoint: AttestedEndpoint,
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

pub async fn nodes(n: usize) -> Vec<Node> {
    let mut out = Vec::new();
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        out.push(Node {
            endpoint: endpoint(),
            listener,
            addr,
        });
    }
    out
}

pub fn spec(nodes: &[Node], rank: usize, epoch: u64) -> RingSpec {
    let n = nodes.len();
    let next = &nodes[(rank + 1) % n];
    let prev = &nodes[(rank + n - 1) % n];
    RingSpec {
        rank,
        world: n,
        epoch,
        next_addr: next.addr,
        next_key: next.endpoint.key_fingerprint(),
        prev_key: prev.endpoint.key_fingerprint(),
    }
}

pub fn config(connect_timeout: Duration) -> RingConfig {
    RingConfig {
        bucket_bytes: 64 * 1024,
        connect_timeout,
        ..RingConfig::default()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
