//! Test support: a node on the simulated TEE serving parties with an in-memory backend, the
//! parties' keys, and a TCP proxy that counts bytes and can cut a connection.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform};
use bastion_attestation::tls::{AttestedEndpoint, PartyIdentity};
use bastion_attestation::{Policy, TrustAnchors, Verifier};
use bastion_party::{
    Client, ClientLimits, DatasetMeta, JobState, PartyBackend, PartyEntry, PartyRole, PartyServer,
    Release, ReleaseFile, Roles, ServerLimits, Spent, Status,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Bytes every pushed test dataset carries: no response may ever contain them.
pub const RECORD_MARK: &[u8] = b"SECRET-RECORD-";

/// A record the fake backend refuses.
pub const BAD_RECORD: &[u8] = b"BAD-RECORD";

/// The simulated chain, shared with the other test binaries through the target directory.
pub fn platform() -> &'static SimulatedPlatform {
    static P: OnceLock<SimulatedPlatform> = OnceLock::new();
    P.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        SimulatedPlatform::load_or_generate(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tee"),
        )
        .expect("simulated platform")
    })
}

/// Accepts nodes launched with `measurement` on the simulated chain.
pub fn verifier_for(measurement: [u8; 48]) -> Verifier {
    let p = platform();
    Verifier::new(
        Policy::new(vec![measurement]),
        TrustAnchors::simulated(p.ark_der(), p.ask_der()).unwrap(),
    )
}

/// Accepts the default measurement.
pub fn verifier() -> Verifier {
    verifier_for(LaunchConfig::default_measurement())
}

/// A node with the default measurement.
pub fn node() -> AttestedEndpoint {
    AttestedEndpoint::new(
        platform().launch(LaunchConfig::default()).unwrap(),
        verifier(),
    )
    .unwrap()
}

/// The parties of the tests.
pub struct Parties {
    /// Owns `hospital-a`, allows `model_ok`.
    pub owner_a: PartyIdentity,
    /// Owns `hospital-b`, allows nobody.
    pub owner_b: PartyIdentity,
    /// A model owner `hospital-a` allows.
    pub model_ok: PartyIdentity,
    /// A model owner nobody allows.
    pub model_not: PartyIdentity,
    /// An operator.
    pub operator: PartyIdentity,
    /// Not listed.
    pub stranger: PartyIdentity,
}

impl Parties {
    pub fn new() -> Self {
        let id = || PartyIdentity::generate().unwrap();
        Self {
            owner_a: id(),
            owner_b: id(),
            model_ok: id(),
            model_not: id(),
            operator: id(),
            stranger: id(),
        }
    }

    pub fn roles(&self) -> Roles {
        let entry =
            |name: &str, id: &PartyIdentity, role, datasets: &[&str], allow: &[&PartyIdentity]| {
                PartyEntry {
                    name: name.into(),
                    key: id.fingerprint(),
                    role,
                    datasets: datasets.iter().map(|d| d.to_string()).collect(),
                    allow_model_owners: allow.iter().map(|p| p.fingerprint()).collect(),
                }
            };
        Roles::new(vec![
            entry(
                "hospital-a",
                &self.owner_a,
                PartyRole::DataOwner,
                &["hospital-a"],
                &[&self.model_ok],
            ),
            entry(
                "hospital-b",
                &self.owner_b,
                PartyRole::DataOwner,
                &["hospital-b"],
                &[],
            ),
            entry("lab", &self.model_ok, PartyRole::ModelOwner, &[], &[]),
            entry(
                "other-lab",
                &self.model_not,
                PartyRole::ModelOwner,
                &[],
                &[],
            ),
            entry("ops", &self.operator, PartyRole::Operator, &[], &[]),
        ])
        .unwrap()
    }
}

/// An in-memory node: what it was given, and fixed answers.
#[derive(Default)]
pub struct FakeBackend {
    /// Accepted datasets: (owner key, meta, content).
    pub datasets: Mutex<Vec<(String, DatasetMeta, Vec<u8>)>>,
    /// Every content `accept_dataset` was called with, accepted or not.
    pub offered: Mutex<Vec<Vec<u8>>>,
    /// Deleted datasets.
    pub deleted: Mutex<Vec<String>>,
    /// The submitted job: (model owner key, job TOML, datasets).
    pub job: Mutex<Option<(String, String, Vec<String>)>>,
    /// Whether `release` was asked.
    pub release_asked: AtomicBool,
}

/// The model file of the fake release: two and a half chunks, so it is sent in three.
pub fn model_bytes() -> Vec<u8> {
    (0..(1280 * 1024)).map(|i| (i % 251) as u8).collect()
}

pub fn sealed_digest(content: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"sealed:");
    h.update(content);
    hex::encode(h.finalize())
}

impl PartyBackend for FakeBackend {
    fn accept_dataset(
        &self,
        owner_key: &str,
        meta: &DatasetMeta,
        content: Vec<u8>,
    ) -> Result<String, String> {
        self.offered.lock().unwrap().push(content.clone());
        if content.windows(BAD_RECORD.len()).any(|w| w == BAD_RECORD) {
            return Err(format!("{}: record 2 is not a JSON object", meta.name));
        }
        let sealed = sealed_digest(&content);
        self.datasets
            .lock()
            .unwrap()
            .push((owner_key.to_string(), meta.clone(), content));
        Ok(sealed)
    }

    fn delete_dataset(&self, _owner_key: &str, name: &str) -> Result<(), String> {
        self.deleted.lock().unwrap().push(name.to_string());
        Ok(())
    }

    fn spent(&self, _name: &str) -> Result<Spent, String> {
        Ok(Spent {
            epsilon_spent: 1.5,
            epsilon_budget: 8.0,
            delta: 1e-5,
        })
    }

    fn submit_job(
        &self,
        model_owner_key: &str,
        job_toml: &str,
        datasets: &[String],
    ) -> Result<String, String> {
        *self.job.lock().unwrap() = Some((
            model_owner_key.to_string(),
            job_toml.to_string(),
            datasets.to_vec(),
        ));
        Ok("job-1".into())
    }

    /// Answers the release of the submitted job to whoever asks: the server must check.
    fn release(&self, _model_owner_key: &str) -> Result<Release, String> {
        self.release_asked.store(true, Ordering::SeqCst);
        let job = self.job.lock().unwrap();
        let Some((owner, _, _)) = job.as_ref() else {
            return Err("no job has been released".into());
        };
        Ok(Release {
            job_id: "job-1".into(),
            model_owner_key: owner.clone(),
            files: vec![
                ReleaseFile {
                    name: "model.safetensors".into(),
                    bytes: model_bytes(),
                },
                ReleaseFile {
                    name: "adapter/config.json".into(),
                    bytes: b"{\"r\": 8}".to_vec(),
                },
            ],
            receipt_json: b"{\"epsilon\": 1.5}".to_vec(),
        })
    }

    fn status(&self) -> Status {
        Status {
            job_id: Some("job-1".into()),
            state: JobState::Running,
            step: 3,
            planned_steps: 10,
            nodes: vec!["node-0".into(), "node-1".into()],
        }
    }
}

/// A node serving `roles` with a fresh fake backend on loopback.
pub struct TestNode {
    pub addr: SocketAddr,
    pub server: Arc<PartyServer>,
    pub backend: Arc<FakeBackend>,
    pub endpoint: AttestedEndpoint,
}

impl TestNode {
    pub async fn start(roles: Roles) -> Self {
        Self::start_with(roles, node()).await
    }

    pub async fn start_with(roles: Roles, endpoint: AttestedEndpoint) -> Self {
        let backend = Arc::new(FakeBackend::default());
        let server = Arc::new(PartyServer::with_limits(
            endpoint.clone(),
            Arc::new(roles),
            Arc::clone(&backend) as Arc<dyn PartyBackend>,
            ServerLimits::default()
                .with_handshake_timeout(Duration::from_secs(20))
                .with_idle_timeout(Duration::from_secs(20)),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(Arc::clone(&server).serve(listener));
        Self {
            addr,
            server,
            backend,
            endpoint,
        }
    }

    /// A client of `id` for this node (or for `addr`, a proxy in front of it).
    pub fn client(&self, id: &PartyIdentity, addr: Option<SocketAddr>) -> Client {
        Client::new(addr.unwrap_or(self.addr).to_string(), id, verifier())
            .unwrap()
            .with_limits(ClientLimits::default().with_retries(3, Duration::from_millis(50)))
    }
}

/// Content of `len` bytes holding records with [`RECORD_MARK`].
pub fn dataset(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(RECORD_MARK);
        out.extend_from_slice(format!("{seed}-{i:08}\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

pub fn meta(name: &str) -> DatasetMeta {
    DatasetMeta {
        name: name.into(),
        format: "text-lines".into(),
        field: None,
        split: None,
        epsilon_budget: 8.0,
        delta: 1e-5,
        allow_model_owners: Vec::new(),
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A file in a fresh temporary directory.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = temp_dir(name);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "bastion-party-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP relay in front of `target` that counts the bytes each way, and can cut its first
/// connection after the client sent `cut_first_after` bytes through it.
pub struct Proxy {
    pub addr: SocketAddr,
    /// Client to server, all connections.
    pub up: Arc<AtomicU64>,
    /// Server to client, all connections.
    pub down: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr, cut_first_after: Option<u64>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (u, d, n) = (Arc::clone(&up), Arc::clone(&down), Arc::clone(&connections));
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let index = n.fetch_add(1, Ordering::SeqCst);
                let cut = if index == 0 { cut_first_after } else { None };
                let (u, d) = (Arc::clone(&u), Arc::clone(&d));
                tokio::spawn(async move {
                    let server = TcpStream::connect(target).await.unwrap();
                    relay(client, server, u, d, cut).await;
                });
            }
        });
        Self {
            addr,
            up,
            down,
            connections,
        }
    }

    pub fn up(&self) -> u64 {
        self.up.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    cut: Option<u64>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    if cut.is_some() {
        // A cut drops the whole connection at once, as a failing link does.
        tokio::select! {
            _ = pump(cr, sw, up, cut) => {}
            _ = pump(sr, cw, down, None) => {}
        }
    } else {
        // Half-closes pass through: a TLS close_notify and FIN reach the other end.
        tokio::join!(
            async {
                let mut w = pump(cr, sw, up, None).await;
                let _ = w.shutdown().await;
            },
            async {
                let mut w = pump(sr, cw, down, None).await;
                let _ = w.shutdown().await;
            }
        );
    }
}

/// Copies `r` to `w` counting bytes, until EOF, an error, or `cut` bytes.
async fn pump(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    count: Arc<AtomicU64>,
    cut: Option<u64>,
) -> OwnedWriteHalf {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return w,
            Ok(n) => n,
        };
        let n = match cut {
            Some(limit) if sent + n as u64 >= limit => {
                let part = (limit - sent) as usize;
                let _ = w.write_all(&buf[..part]).await;
                count.fetch_add(part as u64, Ordering::SeqCst);
                return w;
            }
            _ => n,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            return w;
        }
        sent += n as u64;
        count.fetch_add(n as u64, Ordering::SeqCst);
    }
}
