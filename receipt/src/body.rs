//! What a receipt says: the signed body.
//!
//! Field order here is the order in `receipt.json`; the signature does not depend on it (it
//! covers each field by path, see [`crate::canonical`]). Unknown fields are refused
//! everywhere. Digests are lower-case hex; times RFC 3339 in UTC; numbers as `serde_json`
//! writes them (integers as integers, `f64` as the shortest text that parses back to the
//! same value).

use serde::{Deserialize, Serialize};

/// The signed statement about one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// The job.
    pub job: JobRecord,
    /// The released model, file by file.
    pub model: ModelRecord,
    /// The DP-SGD mechanism the model was trained with.
    pub privacy: PrivacyRecord,
    /// Every dataset of the job, with the ledger's figures.
    pub datasets: Vec<DatasetRecord>,
    /// Every node admitted to the job, as the coordinator's attested link verified it.
    pub nodes: Vec<NodeRecord>,
}

/// The job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRecord {
    /// The job's identity as the nodes were offered it (a digest of the parsed job, the
    /// initial weights and the tokenizer; not recomputable from `job.toml` alone).
    pub id: String,
    /// SHA-256 of the `job.toml` bytes exactly as the coordinator read them: what the model
    /// owner recomputes with `sha256sum job.toml`. Null when the job was an inline table of
    /// the node's config, which has no file of its own.
    pub file_sha256: Option<String>,
    /// The coordinator's node name; its record in `nodes` is checked against the report that
    /// binds the receipt key.
    pub coordinator: String,
    /// `completed`, `stopped` (budget, a refusal, the loss policy) or `failed` (after some
    /// steps: the model as it stands was still released).
    pub status: String,
    /// Why it ended.
    pub reason: String,
    /// When the coordinator's Supervisor started, RFC 3339 UTC.
    pub start: String,
    /// When the receipt was made, RFC 3339 UTC.
    pub end: String,
    /// The nodes ran on the simulated TEE: nothing was hardware-protected.
    pub simulated_tee: bool,
}

/// The released model directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRecord {
    /// SHA-256 of the listing of `files` in `sha256sum` format: one line
    /// `"<sha256 hex>  <path>\n"` per file, in byte order of the paths; see
    /// [`crate::model`]. `receipt.json` itself is not in it.
    pub sha256: String,
    /// Every regular file under the directory except `receipt.json`, by path.
    pub files: Vec<ModelFile>,
}

/// One file of the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of its contents.
    pub sha256: String,
}

/// The mechanism: Poisson-subsampled Gaussian, `steps` times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyRecord {
    /// The accountant the ledger composes with: `pld` or `rdp`.
    pub accountant: String,
    /// Poisson sampling rate of every dataset.
    pub q: f64,
    /// Noise multiplier (noise std / clipping bound).
    pub sigma: f64,
    /// Clipping bound C.
    pub max_grad_norm: f64,
    /// Updates applied to the released model.
    pub steps: u64,
    /// Steps the plan had.
    pub planned_steps: u64,
    /// The job ran with the test-only switch that adds no noise: its epsilon is fiction, and
    /// a verifier refuses it.
    pub deterministic_for_tests: bool,
}

/// One dataset's account, as the coordinator's privacy ledger has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRecord {
    /// Its name.
    pub name: String,
    /// Who owns it, as its node declares (null when it declares nobody).
    pub owner: Option<String>,
    /// The node that held it.
    pub node: String,
    /// SHA-256 of its records as its node sealed them (empty when the node did not say).
    pub content_sha256: String,
    /// Epsilon spent: the ledger's figure over every step it charged (aborted ones too).
    pub epsilon: f64,
    /// The delta `epsilon` is computed at.
    pub delta: f64,
    /// The owner's budget.
    pub epsilon_budget: f64,
    /// Steps the ledger charged to it.
    pub steps: u64,
    /// What the ledger charged, in order: the history `epsilon` is computed from.
    pub history: Vec<SegmentRecord>,
}

/// Consecutive steps with one sampling rate and noise multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRecord {
    /// Poisson sampling rate.
    pub q: f64,
    /// Noise multiplier.
    pub sigma: f64,
    /// Steps.
    pub steps: u64,
}

/// A node as the coordinator's attested link verified it on admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// Its name.
    pub name: String,
    /// SHA-256 of its TLS SubjectPublicKeyInfo (the key its report bound).
    pub tls_key_sha256: String,
    /// Its report's MEASUREMENT, hex (48 bytes).
    pub measurement: String,
    /// Its report's CHIP_ID, hex (64 bytes; zero when masked).
    pub chip_id: String,
    /// Its evidence verified against the simulated chain, not AMD's.
    pub simulated: bool,
    /// It was in the group when the job ended.
    pub in_final_group: bool,
    /// The datasets it held.
    pub datasets: Vec<String>,
}

impl Body {
    /// Every floating-point figure with its path: each must be finite to be recorded.
    pub(crate) fn floats(&self) -> Vec<(String, f64)> {
        let p = &self.privacy;
        let mut out = vec![
            ("body.privacy.q".to_string(), p.q),
            ("body.privacy.sigma".to_string(), p.sigma),
            ("body.privacy.max_grad_norm".to_string(), p.max_grad_norm),
        ];
        for (i, d) in self.datasets.iter().enumerate() {
            out.push((format!("body.datasets[{i}].epsilon"), d.epsilon));
            out.push((format!("body.datasets[{i}].delta"), d.delta));
            out.push((
                format!("body.datasets[{i}].epsilon_budget"),
                d.epsilon_budget,
            ));
            for (j, s) in d.history.iter().enumerate() {
                out.push((format!("body.datasets[{i}].history[{j}].q"), s.q));
                out.push((format!("body.datasets[{i}].history[{j}].sigma"), s.sigma));
            }
        }
        out
    }
}
