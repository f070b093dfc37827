//! A node's configuration (`node.toml`). Unknown fields are refused; every setting but the
//! node's name and its dataset has a safe default.

use crate::device::ComputeDevice;
use bastion_dp::accountant::AccountantKind;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use crate::job::JobSpec;

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
    /// The job (coordinator only): the path of the model owner's `job.toml` (relative to
    /// this file), or the job itself as an inline `[job]` table.
    #[serde(rename = "job", default, skip_serializing)]
    job_source: Option<toml::Value>,
    /// The job, resolved from `job` (defaults when absent).
    #[serde(skip)]
    pub job: JobSpec,
    /// Whether the config gave a job. A coordinator without one waits for a model owner to
    /// submit it over the party channel (`party_listen`).
    #[serde(skip)]
    pub job_given: bool,
    /// Where this node answers its parties (data owners, model owners, operators) over
    /// attested TLS; none if absent.
    #[serde(default)]
    pub party_listen: Option<SocketAddr>,
    /// Who the parties are and what each may ask (see `bastion_party::roles`).
    #[serde(default)]
    pub parties: Vec<bastion_party::roles::PartyEntry>,
    /// The deployment's policy file (relative to this file): `[tee] measurements`,
    /// `min_tcb`, `trust_simulated` and `[[parties]]`, the settings peers and parties rely
    /// on. They live there rather than here so that one file, pinned by its SHA-256 on the
    /// measured kernel command line, covers them (see [`POLICY_PIN`]).
    #[serde(rename = "policy", default, skip_serializing)]
    policy_path: Option<PathBuf>,
    /// The policy file read, resolved from `policy`; none without one.
    #[serde(skip)]
    pub policy: Option<PolicySource>,
    /// The accountant of this node's own ledger: `pld` (tight, default) or `rdp`.
    #[serde(default)]
    pub accountant: AccountantKind,
    /// Heartbeats and timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// libtorch intra-op threads.
    #[serde(default = "default_threads")]
    pub threads: i32,
    /// Where the Trainer computes: `"cpu"` (default), `"cuda:N"` (`"cuda"` = `"cuda:0"`), or
    /// `"cuda:N,M,..."` for several GPUs of this VM (see [`crate::device`]). Noise is made on
    /// the CPU whatever this says.
    #[serde(default = "default_device")]
    pub device: String,
    /// Usage counts (jobs, steps, nodes) to an endpoint; nothing is sent without one.
    #[serde(default)]
    pub telemetry: bastion_telemetry::TelemetryConfig,
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
    /// `bastion_simulated_tee` metric say so. Default false: SEV-SNP hardware, through
    /// `device`; a node whose device is missing refuses to start (it never falls back to
    /// the simulation).
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
    /// Hardware only: the SEV-SNP guest device. Default [`DEFAULT_DEVICE`]
    /// (`/dev/sev-guest`), the only path the SNP guest interface opens; naming it makes a
    /// missing device the first thing the node reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<PathBuf>,
    /// Hardware only: the VCEK (or VLEK) that signs this node's reports, DER or PEM, or a
    /// directory holding `vcek.der`/`vcek.pem` (`vlek.*`), relative to this file. Used when
    /// the host installed no certificate table (nodes may have no route to AMD's key server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcek: Option<PathBuf>,
    /// Hardware only: the minimum REPORTED_TCB a peer must have (`bootloader`, `tee`, `snp`,
    /// `microcode`, `fmc`). Absent: this node's own REPORTED_TCB, so peers must be patched
    /// at least as far as this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tcb: Option<bastion_attestation::TcbMinimum>,
}

/// The kernel command line parameter that pins the policy file: `bastion.policy_sha256=`
/// followed by the SHA-256 of its bytes (64 hex digits). The command line is measured
/// (QEMU `kernel-hashes=on`), the config disk is not: the pin is what binds the policy to
/// the launch measurement peers check.
pub const POLICY_PIN: &str = "bastion.policy_sha256";

/// The policy file a config took its security settings from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The file, resolved against node.toml's folder.
    pub path: PathBuf,
    /// SHA-256 of its bytes, as read.
    pub sha256: [u8; 32],
}

impl PolicySource {
    /// The SHA-256 in lower-case hex, as the pin writes it.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a policy file holds: exactly the settings a deployment's nodes must share.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    tee: PolicyTee,
    #[serde(default)]
    parties: Vec<bastion_party::roles::PartyEntry>,
}

/// The `[tee]` part of a policy file (same meaning as in [`TeeConfig`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyTee {
    #[serde(default)]
    measurements: Vec<Measurement>,
    #[serde(default)]
    min_tcb: Option<bastion_attestation::TcbMinimum>,
    #[serde(default)]
    trust_simulated: bool,
}

/// The node.toml fields a policy file takes over, as `(table, key, field name in errors)`.
const POLICY_FIELDS: [(Option<&str>, &str, &str); 4] = [
    (Some("tee"), "measurements", "tee.measurements"),
    (Some("tee"), "min_tcb", "tee.min_tcb"),
    (Some("tee"), "trust_simulated", "tee.trust_simulated"),
    (None, "parties", "parties"),
];

/// The SEV-SNP guest device `[tee] device` defaults to.
pub use bastion_attestation::guest::DEFAULT_DEVICE;

impl Default for TeeConfig {
    fn default() -> Self {
        TeeConfig {
            simulated: false,
            trust_simulated: false,
            platform_dir: default_platform_dir(),
            measurements: Vec::new(),
            device: None,
            vcek: None,
            min_tcb: None,
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

    /// The guest device to open on hardware.
    pub fn device(&self) -> &Path {
        self.device.as_deref().unwrap_or(Path::new(DEFAULT_DEVICE))
    }

    /// Checks the switches fit together; `Err` names the field and what is wrong.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.simulated {
            // Hardware settings on a simulated node would be silently unused.
            let given = [
                ("tee.device", self.device.is_some()),
                ("tee.vcek", self.vcek.is_some()),
                ("tee.min_tcb", self.min_tcb.is_some()),
            ];
            if let Some((field, _)) = given.iter().find(|(_, set)| *set) {
                return Err((
                    field,
                    "is for SEV-SNP hardware, but this node has simulated = true".into(),
                ));
            }
            return Ok(());
        }
        if self.trust_simulated {
            return Err((
                "tee.trust_simulated",
                "a node on SEV-SNP hardware (simulated = false) accepts only peers whose evidence chains to AMD's roots; admitting simulated peers would put its data beside unprotected nodes. Set simulated = true for a simulated cluster".into(),
            ));
        }
        if let Some(device) = &self.device {
            if !device.is_absolute() {
                return Err((
                    "tee.device",
                    format!("{} is not an absolute path", device.display()),
                ));
            }
        }
        if let Some(min) = &self.min_tcb {
            if min.is_unset() {
                return Err((
                    "tee.min_tcb",
                    "bootloader, tee, snp and microcode are all 0, which accepts firmware that never installed a fix; leave [tee.min_tcb] out to require this node's own TCB".into(),
                ));
            }
        }
        Ok(())
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
    /// `generated` (demo tiles), `medmnist-npz`, `image-folder`, `jsonl` or `text-lines`; or
    /// `pushed`: its owner sends it with `bastion data push`, naming its format and budget
    /// (then this table holds only the name).
    #[serde(default = "default_format")]
    pub format: String,
    /// The file or folder (every format but `generated`); relative to this config file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `jsonl`: the field holding the text (default `text`).
    #[serde(default)]
    pub field: Option<String>,
    /// `medmnist-npz`: the split to train on (default `train`).
    #[serde(default)]
    pub split: Option<String>,
    /// `generated`: how many tiles.
    #[serde(default = "default_records")]
    pub records: usize,
    /// `generated`: the seed (the data owner's; unrelated to DP noise).
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

impl NodeConfig {
    /// Where the Trainer computes, from `device` (checked when the config was parsed).
    pub fn compute_device(&self) -> Result<ComputeDevice, String> {
        ComputeDevice::parse(&self.device).map_err(|e| format!("device: {e}"))
    }

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
    /// Reads and validates `path`; a job file it names is read too, relative to it.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = NodeConfig::parse_in(
            &text,
            &path.display().to_string(),
            path.parent().unwrap_or(Path::new(".")),
        )?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parses and validates TOML text; `origin` names it in errors. A job file it names is
    /// taken relative to the current directory.
    pub fn parse(text: &str, origin: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse_in(text, origin, Path::new("."))
    }

    fn parse_in(text: &str, origin: &str, base: &Path) -> Result<NodeConfig, ConfigError> {
        let mut config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        config.job_given = config.job_source.is_some();
        config.job = match config.job_source.take() {
            None => JobSpec::default(),
            Some(toml::Value::String(file)) => {
                let file = base.join(file);
                JobSpec::load(&file)?
            }
            Some(table @ toml::Value::Table(_)) => {
                let text = toml::to_string(&table).map_err(|e| ConfigError::Parse {
                    path: origin.to_string(),
                    message: format!("[job]: {e}"),
                })?;
                let mut job = JobSpec::parse(&text, &format!("{origin} [job]"))?;
                job.resolve_paths(base);
                job
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    path: origin.to_string(),
                    field: "job".into(),
                    message: format!(
                        "must be the path of a job.toml or a [job] table, found {}",
                        other.type_str()
                    ),
                })
            }
        };
        if let Some(file) = config.policy_path.take() {
            config.apply_policy(&base.join(file), text, origin)?;
        }
        config
            .validate(origin)
            .map_err(|e| config.blame_policy(e))?;
        Ok(config)
    }

    /// Takes `[tee] measurements`, `min_tcb`, `trust_simulated` and `[[parties]]` from the
    /// policy file `file`, refusing any of them that node.toml (`text`) sets too: with the
    /// policy pinned, a second source in the unmeasured node.toml would undo the pin.
    fn apply_policy(&mut self, file: &Path, text: &str, origin: &str) -> Result<(), ConfigError> {
        let raw: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        for (table, key, field) in POLICY_FIELDS {
            let present = match table {
                Some(t) => raw
                    .get(t)
                    .and_then(toml::Value::as_table)
                    .is_some_and(|t| t.contains_key(key)),
                None => raw.contains_key(key),
            };
            if present {
                let shown = match table {
                    Some(t) => format!("[{t}] {key}"),
                    None => format!("[[{key}]]"),
                };
                return Err(ConfigError::Invalid {
                    path: origin.to_string(),
                    field: field.to_string(),
                    message: format!(
                        "{shown} is in node.toml, but with a policy file it belongs in {} only",
                        file.display()
                    ),
                });
            }
        }
        let bytes = std::fs::read(file).map_err(|e| ConfigError::Invalid {
            path: origin.to_string(),
            field: "policy".into(),
            message: format!("cannot read the policy file {}: {e}", file.display()),
        })?;
        let malformed = |message: String| ConfigError::Parse {
            path: file.display().to_string(),
            message,
        };
        let policy_text =
            std::str::from_utf8(&bytes).map_err(|e| malformed(format!("not UTF-8: {e}")))?;
        let policy: PolicyFile =
            toml::from_str(policy_text).map_err(|e| malformed(e.to_string()))?;
        self.tee.measurements = policy.tee.measurements;
        self.tee.min_tcb = policy.tee.min_tcb;
        self.tee.trust_simulated = policy.tee.trust_simulated;
        self.parties = policy.parties;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        self.policy = Some(PolicySource {
            path: file.to_path_buf(),
            sha256,
        });
        Ok(())
    }

    /// A refusal of a field the policy file set names that file, not node.toml.
    fn blame_policy(&self, error: ConfigError) -> ConfigError {
        match (error, &self.policy) {
            (ConfigError::Invalid { field, message, .. }, Some(policy))
                if POLICY_FIELDS.iter().any(|(_, _, f)| *f == field) =>
            {
                ConfigError::Invalid {
                    path: policy.path.display().to_string(),
                    field,
                    message,
                }
            }
            (error, _) => error,
        }
    }

    /// Makes dataset paths relative to `base` (the config file's folder).
    fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.tee.vcek {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for d in &mut self.datasets {
            if let Some(p) = &mut d.path {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
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
            match d.format.as_str() {
                "pushed" => {
                    // The owner's push says how to read it and what it may spend.
                    let given = [
                        ("path", d.path.is_some()),
                        ("field", d.field.is_some()),
                        ("split", d.split.is_some()),
                        ("records", d.records != default_records()),
                        ("seed", d.seed != 0),
                        ("epsilon_budget", d.epsilon_budget != default_epsilon()),
                        ("delta", d.delta != default_delta()),
                    ];
                    if let Some((f, _)) = given.iter().find(|(_, set)| *set) {
                        return bad(
                            &field(f),
                            "a pushed dataset takes only its name: its owner's push sets the format and the budget".into(),
                        );
                    }
                    if !self.parties.iter().any(|p| p.datasets.contains(&d.name)) {
                        return bad(
                            &field("name"),
                            format!("pushed dataset {:?} has no owner in [[parties]] to push it", d.name),
                        );
                    }
                    continue;
                }
                "generated" => {
                    if d.records == 0 {
                        return bad(&field("records"), "must be positive".into());
                    }
                }
                "medmnist-npz" | "image-folder" | "jsonl" | "text-lines" => {
                    if d.path.is_none() {
                        return bad(&field("path"), format!("format {:?} needs a path", d.format));
                    }
                }
                other => {
                    return bad(
                        &field("format"),
                        format!("{other:?} is not one of generated, medmnist-npz, image-folder, jsonl, text-lines, pushed"),
                    )
                }
            }
            if d.field.is_some() && d.format != "jsonl" {
                return bad(&field("field"), "only for format \"jsonl\"".into());
            }
            if d.split.is_some() && d.format != "medmnist-npz" {
                return bad(&field("split"), "only for format \"medmnist-npz\"".into());
            }
            if !(d.epsilon_budget > 0.0 && d.epsilon_budget.is_finite()) {
                return bad(&field("epsilon_budget"), format!("{}", d.epsilon_budget));
            }
            if !(d.delta > 0.0 && d.delta < 1.0) {
                return bad(&field("delta"), format!("{} is outside (0, 1)", d.delta));
            }
        }
        let t = &self.timeouts;
        if t.heartbeat_ms == 0 || t.node_timeout_ms <= t.heartbeat_ms {
            return bad("timeouts", "need 0 < heartbeat_ms < node_timeout_ms".into());
        }
        if !(1..=64).contains(&self.threads) {
            return bad("threads", format!("{} is outside 1..=64", self.threads));
        }
        if let Err(e) = ComputeDevice::parse(&self.device) {
            return bad("device", e);
        }
        if let Err(e) = bastion_party::roles::Roles::new(self.parties.clone()) {
            return bad("parties", e.to_string());
        }
        if !self.parties.is_empty() && self.party_listen.is_none() {
            return bad(
                "party_listen",
                "[[parties]] are listed but the node does not listen for them".into(),
            );
        }
        if let Err(e) = self.telemetry.validate() {
            return bad("telemetry.endpoint", e.to_string());
        }
        if let Err((field, message)) = self.tee.validate() {
            return bad(field, message);
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
fn default_device() -> String {
    "cpu".into()
}
fn default_format() -> String {
    "generated".into()
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
