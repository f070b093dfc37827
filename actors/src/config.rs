//! A node's configuration (`node.toml`). Unknown fields are refused; every setting but the
//! node's name and its dataset has a safe default.

use bastion_dp::accountant::AccountantKind;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name: unique in the group, stable across restarts.
    pub name: String,
    /// Where the coordinator's Supervisor listens for nodes.
    #[serde(default = "default_coordinator")]
    pub coordinator: SocketAddr,
    /// This node runs the Supervisor and the Accountant (exactly one node of a group does).
    #[serde(default)]
    pub serve_coordinator: bool,
    /// Where this node accepts its ring neighbour (port 0: any free port, announced on join).
    #[serde(default = "default_ring_listen")]
    pub ring_listen: SocketAddr,
    /// Where this node serves Prometheus metrics; none if absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The node's sealed store: shard, checkpoints, and (coordinator) the privacy ledger.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The TEE this node runs in.
    #[serde(default)]
    pub tee: TeeConfig,
    /// The data this node holds: one DataShard each.
    #[serde(default)]
    pub datasets: Vec<DatasetConfig>,
    /// The job (read on the coordinator only).
    #[serde(default)]
    pub job: JobConfig,
    /// Heartbeats and timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// libtorch intra-op threads.
    #[serde(default = "default_threads")]
    pub threads: i32,
    /// Tests only: accept a plan with noise switched off. Absent from release builds, where
    /// a config naming it is refused as an unknown field.
    #[cfg(feature = "danger-test-switches")]
    #[serde(default)]
    pub danger_allow_unnoised_plans_for_tests: bool,
}

/// Where attestation evidence comes from, and whose evidence this node accepts.
///
/// Both simulation switches default to off: a node.toml without `[tee]` means SEV-SNP
/// hardware, and a node accepts simulated peers only when its own config says so.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeConfig {
    /// Run on the simulated TEE (development and CI). Every log line and the
    /// `bastion_simulated_tee` metric say so. Default false: SEV-SNP hardware, which is not
    /// wired in yet, so such a node refuses to start.
    #[serde(default)]
    pub simulated: bool,
    /// Accept peers whose evidence chains to the simulated ARK and ASK in `platform_dir`.
    /// Default false.
    #[serde(default)]
    pub trust_simulated: bool,
    /// This node's simulated machine: its chip's VCEK (key and certificate) and the simulated
    /// ARK and ASK certificates, made by `bastion cluster up`. Never the ARK/ASK private keys.
    #[serde(default = "default_platform_dir")]
    pub platform_dir: PathBuf,
    /// Launch measurements a peer may have (96 hex digits each). Empty: on the simulated TEE,
    /// this node's own measurement, so peers must run the identical binary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

impl Default for TeeConfig {
    fn default() -> Self {
        TeeConfig {
            simulated: false,
            trust_simulated: false,
            platform_dir: default_platform_dir(),
            measurements: Vec::new(),
        }
    }
}

impl TeeConfig {
    /// The measurement allow-list peers are checked against: `measurements`, or when that is
    /// empty, `own` (this node's measurement).
    pub fn allowed_measurements(&self, own: [u8; 48]) -> Vec<[u8; 48]> {
        if self.measurements.is_empty() {
            vec![own]
        } else {
            self.measurements.iter().map(|m| m.0).collect()
        }
    }
}

/// A 48-byte SEV-SNP launch measurement, written as 96 hex digits in `node.toml`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Measurement(pub [u8; 48]);

impl Measurement {
    /// Parses 96 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let digits = text.as_bytes();
        if digits.len() != 96 {
            return Err(format!(
                "a measurement is 96 hex digits (48 bytes), found {} characters in {text:?}",
                digits.len()
            ));
        }
        let mut out = [0u8; 48];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| format!("not hex: {text:?}"))?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| format!("not hex: {text:?}"))?;
        }
        Ok(Measurement(out))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Measurement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Measurement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Measurement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Measurement::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// One data owner's dataset on this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// The dataset's name (unique in the group; its budget is accounted under it).
    pub name: String,
    /// Generated histopathology-like tiles: how many.
    #[serde(default = "default_records")]
    pub records: usize,
    /// Generation seed (the data owner's; unrelated to DP noise).
    #[serde(default)]
    pub seed: u64,
    /// The owner's privacy budget for this dataset.
    #[serde(default = "default_epsilon")]
    pub epsilon_budget: f64,
    /// The owner's delta.
    #[serde(default = "default_delta")]
    pub delta: f64,
}

/// What the node does when a member is lost for longer than `rejoin_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnNodeLoss {
    /// Re-form the group without the lost node and its datasets.
    Continue,
    /// End the job.
    Stop,
}

/// The training job (coordinator only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Nodes that must join before training starts.
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    /// ResNet depth: 18 or 34 (GroupNorm).
    #[serde(default = "default_depth")]
    pub depth: u32,
    /// Tile side in pixels.
    #[serde(default = "default_image_size")]
    pub image_size: i64,
    /// Expected batch size of the whole group; q = this / all records.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Passes over the data; steps = epochs / q.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Target epsilon the noise is calibrated to (at most each dataset's budget).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Delta for the target.
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// Per-sample clipping bound C.
    #[serde(default = "one")]
    pub max_grad_norm: f64,
    /// SGD learning rate (momentum 0.9).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// The accountant: pld (tight, default) or rdp.
    #[serde(default)]
    pub accountant: AccountantKind,
    /// Checkpoint every this many steps.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// What to do when a node is lost for good.
    #[serde(default = "default_on_loss")]
    pub on_node_loss: OnNodeLoss,
    /// Seed of the initial weights (identical on every node).
    #[serde(default)]
    pub init_seed: i64,
    /// Generated test tiles the coordinator reports accuracy on.
    #[serde(default = "default_test_records")]
    pub test_records: usize,
    /// Stop after this many steps even if the plan has more (0: the plan).
    #[serde(default)]
    pub max_steps: u64,
    /// Steps of budget held back for steps that failures abort: an aborted step may have
    /// released noisy shares, so the ledger charges it, and the plan must still finish.
    /// Default: 5% of the plan, at least 2.
    #[serde(default)]
    pub retry_reserve: Option<u64>,
    /// Tests only: no noise and seeded Poisson sampling, so runs can be compared exactly.
    /// A job with this set protects nothing and says so in every log line; every member
    /// refuses it unless its own config opts in. Absent from release builds.
    #[cfg(feature = "danger-test-switches")]
    #[serde(default)]
    pub danger_deterministic_for_tests: bool,
}

impl JobConfig {
    /// True when the job asks for no noise (test builds only; always false in release).
    pub fn deterministic_for_tests(&self) -> bool {
        #[cfg(feature = "danger-test-switches")]
        return self.danger_deterministic_for_tests;
        #[cfg(not(feature = "danger-test-switches"))]
        false
    }

    /// Steps of budget reserved for aborted steps in a plan of `steps`.
    pub fn retry_reserve_for(&self, steps: u64) -> u64 {
        self.retry_reserve
            .unwrap_or_else(|| steps.div_ceil(20).max(2))
    }

    /// The job's identity: a digest of its settings, the same on every restart of the
    /// coordinator with the same job, so the ledger's plan and the checkpoints follow it.
    pub fn id(&self) -> String {
        let text = serde_json::to_vec(self).expect("a job serializes");
        let digest = ring::digest::digest(&ring::digest::SHA256, &text);
        digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl NodeConfig {
    /// True when this node accepts plans without noise (test builds only; false in release).
    pub fn allows_unnoised_plans(&self) -> bool {
        #[cfg(feature = "danger-test-switches")]
        return self.danger_allow_unnoised_plans_for_tests;
        #[cfg(not(feature = "danger-test-switches"))]
        false
    }
}

/// Heartbeats and failure detection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Members send a heartbeat this often.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// A member silent this long is dead: the step is aborted.
    #[serde(default = "default_node_timeout")]
    pub node_timeout_ms: u64,
    /// How long a lost node may take to come back before the job's policy applies.
    #[serde(default = "default_rejoin")]
    pub rejoin_timeout_ms: u64,
    /// Connecting to the coordinator or a ring neighbour gives up after this.
    #[serde(default = "default_connect")]
    pub connect_timeout_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            heartbeat_ms: default_heartbeat(),
            node_timeout_ms: default_node_timeout(),
            rejoin_timeout_ms: default_rejoin(),
            connect_timeout_ms: default_connect(),
        }
    }
}

impl Default for JobConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML does not parse, or has unknown or mistyped fields.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (it names the field and line).
        message: String,
    },
    /// A value is out of range.
    #[error("config {path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl NodeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        NodeConfig::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                field: field.to_string(),
                message,
            })
        };
        if self.name.is_empty() || self.name.len() > 64 {
            return bad("name", "must be 1 to 64 characters".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, d) in self.datasets.iter().enumerate() {
            let field = |f: &str| format!("datasets[{i}].{f}");
            if d.name.is_empty() || !names.insert(&d.name) {
                return bad(
                    &field("name"),
                    format!("empty or repeated name {:?}", d.name),
                );
            }
            if d.records == 0 {
                return bad(&field("records"), "must be positive".into());
            }
            if !(d.epsilon_budget > 0.0 && d.epsilon_budget.is_finite()) {
                return bad(&field("epsilon_budget"), format!("{}", d.epsilon_budget));
            }
            if !(d.delta > 0.0 && d.delta < 1.0) {
                return bad(&field("delta"), format!("{} is outside (0, 1)", d.delta));
            }
        }
        let job = &self.job;
        if job.nodes == 0 {
            return bad("job.nodes", "must be positive".into());
        }
        if !matches!(job.depth, 18 | 34) {
            return bad("job.depth", format!("{} is not 18 or 34", job.depth));
        }
        if !(8..=512).contains(&job.image_size) {
            return bad(
                "job.image_size",
                format!("{} is outside 8..=512", job.image_size),
            );
        }
        if job.batch_size == 0 || job.epochs == 0 || job.checkpoint_every == 0 {
            return bad(
                "job",
                "batch_size, epochs and checkpoint_every must be positive".into(),
            );
        }
        if !(job.epsilon > 0.0 && job.epsilon.is_finite()) {
            return bad("job.epsilon", format!("{}", job.epsilon));
        }
        if !(job.delta > 0.0 && job.delta < 1.0) {
            return bad("job.delta", format!("{} is outside (0, 1)", job.delta));
        }
        if !(job.max_grad_norm > 0.0 && job.lr > 0.0) {
            return bad("job", "max_grad_norm and lr must be positive".into());
        }
        let t = &self.timeouts;
        if t.heartbeat_ms == 0 || t.node_timeout_ms <= t.heartbeat_ms {
            return bad("timeouts", "need 0 < heartbeat_ms < node_timeout_ms".into());
        }
        if !(1..=64).contains(&self.threads) {
            return bad("threads", format!("{} is outside 1..=64", self.threads));
        }
        Ok(())
    }
}

fn default_coordinator() -> SocketAddr {
    "127.0.0.1:7700".parse().expect("address")
}
fn default_ring_listen() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("bastion-state")
}
fn default_platform_dir() -> PathBuf {
    PathBuf::from("bastion-state/simulated-platform")
}
fn default_threads() -> i32 {
    1
}
fn default_records() -> usize {
    512
}
fn default_epsilon() -> f64 {
    8.0
}
fn default_delta() -> f64 {
    1e-5
}
fn default_nodes() -> usize {
    1
}
fn default_depth() -> u32 {
    18
}
fn default_image_size() -> i64 {
    32
}
fn default_batch() -> usize {
    64
}
fn default_epochs() -> usize {
    2
}
fn default_lr() -> f64 {
    0.5
}
fn default_checkpoint_every() -> u64 {
    5
}
fn default_on_loss() -> OnNodeLoss {
    OnNodeLoss::Continue
}
fn default_test_records() -> usize {
    256
}
fn default_heartbeat() -> u64 {
    300
}
fn default_node_timeout() -> u64 {
    3000
}
fn default_rejoin() -> u64 {
    20_000
}
fn default_connect() -> u64 {
    20_000
}
fn one() -> f64 {
    1.0
}
