//! The cost of an attested TLS connection against a plain mutual TLS 1.3 one, on loopback.
//!
//! Both use rustls 0.23 with ring, TLS 1.3 only, no resumption (every connection a full
//! handshake), ECDSA P-256 keys. The plain baseline authenticates both ends with a CA-signed
//! certificate (webpki verifiers); the attested one adds the evidence exchange of
//! `bastion_attestation::tls` with the simulated TEE (report signing, verification of the VCEK
//! chain and report, verdicts). Two micro rows show where the difference goes.
//!
//! Run: `cargo bench -p bastion-attestation --bench handshake` (`BENCH_N=200` for more
//! iterations). Prints the median and the 10th/90th percentiles of N runs, after a warm-up.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform};
use bastion_attestation::tls::AttestedEndpoint;
use bastion_attestation::{Policy, TrustAnchors, Verifier};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::client::Resumption;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let platform = std::env::var_os("BASTION_SIM_TEE_DIR")
        .map(|d| SimulatedPlatform::load_or_generate(d).unwrap())
        .unwrap_or_else(|| SimulatedPlatform::generate().unwrap());
    let verifier = || {
        Verifier::new(
            Policy::new(vec![LaunchConfig::default_measurement()]),
            TrustAnchors::simulated(platform.ark_der(), platform.ask_der()).unwrap(),
        )
    };
    let node = || {
        AttestedEndpoint::new(
            platform.launch(LaunchConfig::default()).unwrap(),
            verifier(),
        )
        .unwrap()
    };
    let (a, b) = (node(), node());
    let (plain_client, plain_server) = plain_configs();

    let mut rows = Vec::new();
    rows.push((
        "plain TLS 1.3, mutual (webpki)",
        rt.block_on(time_connections(n, |io_c, io_s| {
            let (c, s) = (plain_client.clone(), plain_server.clone());
            async move {
                let name = ServerName::try_from("bastion-node").unwrap();
                let (client, server) = tokio::join!(
                    TlsConnector::from(c).connect(name, io_c),
                    TlsAcceptor::from(s).accept(io_s)
                );
                // One byte each way, as the attested exchange ends with a message each way.
                let (mut client, mut server) = (client.unwrap(), server.unwrap());
                let mut byte = [0u8; 1];
                let (w, r) = tokio::join!(client.write_all(b"x"), server.read_exact(&mut byte));
                w.unwrap();
                r.unwrap();
            }
        })),
    ));
    rows.push((
        "attested TLS 1.3 (simulated TEE)",
        rt.block_on(time_connections(n, |io_c, io_s| {
            let (a, b) = (a.clone(), b.clone());
            async move {
                let (client, server) = tokio::join!(a.connect(io_c), b.accept(io_s));
                assert!(client.unwrap().peer().simulated);
                server.unwrap();
            }
        })),
    ));

    let tee = platform.launch(LaunchConfig::default()).unwrap();
    rows.push((
        "  of which: sim report (ECDSA P-384 sign)",
        time_sync(n, || {
            tee.report(&[1; 64]).unwrap();
        }),
    ));
    let report = tee.report(&[1; 64]).unwrap();
    let v = verifier();
    rows.push((
        "  of which: verify report + VCEK chain",
        time_sync(n, || {
            v.verify(&report, tee.vcek_der(), Some(&[1; 64]), SystemTime::now())
                .unwrap();
        }),
    ));

    println!("\nattested vs plain TLS 1.3 handshake on loopback, N = {n} (after {WARMUP} warm-up)");
    println!(
        "{:<44} {:>11} {:>11} {:>11}",
        "", "median ms", "p10 ms", "p90 ms"
    );
    for (name, samples) in &rows {
        let (p10, p50, p90) = percentiles(samples);
        println!(
            "{name:<44} {:>11.3} {:>11.3} {:>11.3}",
            ms(p50),
            ms(p10),
            ms(p90)
        );
    }
    let ratio = percentiles(&rows[1].1).1.as_secs_f64() / percentiles(&rows[0].1).1.as_secs_f64();
    println!("attested / plain (median): {ratio:.2}x");
}

const WARMUP: usize = 5;

/// Times `n` connections (TCP connect + `run` on both ends), each on a fresh loopback socket.
async fn time_connections<F, Fut>(n: usize, run: F) -> Vec<Duration>
where
    F: Fn(TcpStream, TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let start = Instant::now();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (client, server) = (client.unwrap(), server.unwrap().0);
        // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to any exchange
        // that writes twice before reading (a TLS Finished, then the first message).
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        run(client, server).await;
        if i >= WARMUP {
            samples.push(start.elapsed());
        }
    }
    samples
}

fn time_sync(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..WARMUP + n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .skip(WARMUP)
        .collect()
}

fn percentiles(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (at(0.1), at(0.5), at(0.9))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Mutual TLS 1.3 with a throwaway CA: the conventional baseline.
fn plain_configs() -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["bastion-node".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let roots = Arc::new(roots);

    let mut client = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(Arc::clone(&roots))
        .with_client_auth_cert(vec![leaf.der().clone()], key())
        .unwrap();
    client.resumption = Resumption::disabled();
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .unwrap();
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(vec![leaf.der().clone()], key())
        .unwrap();
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    (Arc::new(client), Arc::new(server))
}
