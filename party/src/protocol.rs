//! The requests a party sends and the node's responses: postcard bodies in `bastion-wire`
//! frames of at most [`MAX_FRAME`] bytes, inside a party-mode attested TLS stream.
//!
//! ```text
//!  party                                           node
//!   |== Hello { "bastion-party", 1 } ==============>|   (both at once: bastion_wire::handshake)
//!   |<============================================= Hello
//!   |== Request ===================================>|   authorized by the party's role, then
//!   |<========================================= Response   answered; repeat
//! ```
//!
//! | request                               | who                           | response                      |
//! |---------------------------------------|-------------------------------|-------------------------------|
//! | `PushBegin { meta, len, sha256 }`     | the dataset's data owner      | `PushHeld { held }`           |
//! | `PushChunk { offset, bytes }` (many)  | the same, after `PushBegin`   | `PushHeld { held }` each      |
//! | `PushEnd`                             | the same, all bytes held      | `Pushed { sealed_sha256 }`    |
//! | `DeleteDataset { name }`              | the dataset's data owner      | `Deleted { name }`            |
//! | `Spent { name }`                      | the dataset's data owner      | `Spent(Spent)`                |
//! | `SubmitJob { job_toml }`              | a model owner every named dataset's owner allows | `JobSubmitted { job_id }` |
//! | `FetchRelease`                        | the model owner of the released job | `ReleaseBegin`, `ReleaseChunk`..., `ReleaseEnd` |
//! | `Status`                              | every party                   | `Status(Status)`              |
//!
//! Any request may instead get `Refused` (not allowed to this party: its role, the request,
//! why) or `Failed` (allowed, but the node could not do it, in the node's words). Neither
//! closes the connection.
//!
//! **Pushes resume.** The node holds a push's bytes in memory per (data owner, dataset) with
//! its declared length and SHA-256 until `PushEnd`. `PushBegin` answers how many bytes are
//! already held for that exact content, so a client whose connection dropped reconnects,
//! begins again, and continues at `held`. Chunks must arrive in order (`offset == held`),
//! each at most [`CHUNK`] bytes; the declared length is at most [`MAX_DATASET_LEN`]. At
//! `PushEnd` the node checks the SHA-256 of everything it received against the declared one
//! before the dataset goes anywhere; a mismatch or a backend refusal drops the held bytes.
//! A client may send several chunks before reading their answers (a window), since answers
//! are small.
//!
//! **Jobs name their datasets in the job.** A job's `job.toml` carries a top-level
//! `datasets = ["hospital-a", ...]`; the node reads that one key (and nothing else) to
//! authorize the job, then gives the backend the job text with that list. One source, so
//! what was authorized is what the job says it trains on.
//!
//! **Nothing about records leaves.** No response carries a record, a count of records, a
//! loss, or any statistic of the data: `Spent` is the ledger's epsilon, `Status` the job's
//! state, step and nodes.

use serde::{Deserialize, Serialize};

/// The protocol's name in the hello.
pub const PROTOCOL: &str = "bastion-party";

/// The protocol's version in the hello; a peer of another is refused by name.
pub const VERSION: u16 = 1;

/// Largest frame either way.
pub const MAX_FRAME: usize = 1024 * 1024;

/// Largest chunk of a dataset or a release file in one frame (leaves room for the header).
pub const CHUNK: usize = 512 * 1024;

/// Largest dataset a push may declare: 4 GiB.
pub const MAX_DATASET_LEN: u64 = 4 * 1024 * 1024 * 1024;

/// The first frame each way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL`].
    pub protocol: String,
    /// [`VERSION`].
    pub version: u16,
}

impl Hello {
    /// Ours.
    pub fn ours() -> Self {
        Hello {
            protocol: PROTOCOL.into(),
            version: VERSION,
        }
    }
}

impl std::fmt::Display for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.protocol, self.version)
    }
}

/// What a data owner says of its dataset: how the node reads it and what it may spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// The dataset's name, as listed under the owner's `datasets`.
    pub name: String,
    /// `medmnist-npz`, `image-folder`, `jsonl`, `text-lines`, ...: the node checks it.
    pub format: String,
    /// `jsonl`: the field holding the text.
    pub field: Option<String>,
    /// `medmnist-npz`: the split to train on.
    pub split: Option<String>,
    /// The owner's privacy budget for this dataset.
    pub epsilon_budget: f64,
    /// The owner's delta.
    pub delta: f64,
    /// The model owners (key SHA-256, hex) this owner allows to train on the dataset. It
    /// travels and is sealed with the data, so the node's operator cannot widen it: a
    /// node's `[[parties]]` allow-list can only narrow it.
    pub allow_model_owners: Vec<String>,
}

/// A party's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Start (or resume) pushing a dataset of `len` bytes whose SHA-256 is `sha256`.
    PushBegin {
        /// The dataset.
        meta: DatasetMeta,
        /// Its length in bytes.
        len: u64,
        /// SHA-256 of its bytes.
        sha256: [u8; 32],
    },
    /// The next bytes of the current push, starting at `offset` (which must be `held`).
    PushChunk {
        /// Where these bytes start.
        offset: u64,
        /// At most [`CHUNK`] bytes.
        bytes: Vec<u8>,
    },
    /// All bytes sent: check and hand the dataset to the node.
    PushEnd,
    /// Delete a dataset from the node.
    DeleteDataset {
        /// The dataset.
        name: String,
    },
    /// The privacy budget spent on a dataset.
    Spent {
        /// The dataset.
        name: String,
    },
    /// Submit a job (`job.toml`, naming its datasets in `datasets = [...]`).
    SubmitJob {
        /// The job's TOML text.
        job_toml: String,
    },
    /// The released model of this model owner's job, and its receipt.
    FetchRelease,
    /// The job's state.
    Status,
}

impl Request {
    /// The request's name, as refusals say it.
    pub fn name(&self) -> &'static str {
        match self {
            Request::PushBegin { .. } => "PushBegin",
            Request::PushChunk { .. } => "PushChunk",
            Request::PushEnd => "PushEnd",
            Request::DeleteDataset { .. } => "DeleteDataset",
            Request::Spent { .. } => "Spent",
            Request::SubmitJob { .. } => "SubmitJob",
            Request::FetchRelease => "FetchRelease",
            Request::Status => "Status",
        }
    }
}

/// The node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Bytes of the current push the node holds (after `PushBegin` and each `PushChunk`).
    PushHeld {
        /// Contiguous bytes held from offset 0.
        held: u64,
    },
    /// The dataset is on the node, sealed.
    Pushed {
        /// SHA-256 of the sealed content, hex, as the node stored it.
        sealed_sha256: String,
    },
    /// The dataset is deleted.
    Deleted {
        /// The dataset.
        name: String,
    },
    /// The budget spent on a dataset.
    Spent(Spent),
    /// The job was accepted.
    JobSubmitted {
        /// Its id.
        job_id: String,
    },
    /// A release follows: these files, then their chunks in order, then `ReleaseEnd`.
    ReleaseBegin {
        /// The released job.
        job_id: String,
        /// The files, with `receipt.json` last.
        files: Vec<ReleaseEntry>,
    },
    /// The next bytes of file `file` (an index into `files`).
    ReleaseChunk {
        /// Index into `ReleaseBegin::files`.
        file: u32,
        /// Where these bytes start in that file.
        offset: u64,
        /// At most [`CHUNK`] bytes.
        bytes: Vec<u8>,
    },
    /// The release is complete.
    ReleaseEnd,
    /// The job's state.
    Status(Status),
    /// The request is not allowed to this party.
    Refused(Refusal),
    /// The request was allowed but the node could not do it.
    Failed {
        /// The request.
        request: String,
        /// Why, in the node's words (a backend's refusal verbatim).
        reason: String,
    },
}

impl Response {
    /// The response's name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Response::PushHeld { .. } => "PushHeld",
            Response::Pushed { .. } => "Pushed",
            Response::Deleted { .. } => "Deleted",
            Response::Spent(_) => "Spent",
            Response::JobSubmitted { .. } => "JobSubmitted",
            Response::ReleaseBegin { .. } => "ReleaseBegin",
            Response::ReleaseChunk { .. } => "ReleaseChunk",
            Response::ReleaseEnd => "ReleaseEnd",
            Response::Status(_) => "Status",
            Response::Refused(_) => "Refused",
            Response::Failed { .. } => "Failed",
        }
    }
}

/// A request refused: who asked, as what, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The party's role (`data owner`, `model owner`, `operator`).
    pub role: String,
    /// The party's name in the node's config.
    pub party: String,
    /// The request refused.
    pub request: String,
    /// Why, and what would be allowed.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} refused: {}",
            self.role, self.party, self.request, self.reason
        )
    }
}

/// The privacy budget of one dataset, as the node's ledger has it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    /// Epsilon spent so far (at `delta`), the ledger's figure.
    pub epsilon_spent: f64,
    /// The owner's budget.
    pub epsilon_budget: f64,
    /// The delta the epsilons are for.
    pub delta: f64,
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseEntry {
    /// Its path in the release, `/`-separated and relative (e.g. `adapter/config.json`).
    pub name: String,
    /// Its length in bytes.
    pub len: u64,
}

/// Where the job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// No job submitted.
    Idle,
    /// Submitted; waiting for its nodes to join.
    Waiting,
    /// Training.
    Running,
    /// Finished; the release is ready.
    Released,
    /// Stopped without a release.
    Failed,
}

/// The job's state, as every party may see it: no records, losses, or counts of data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The current (or last) job.
    pub job_id: Option<String>,
    /// Where it is.
    pub state: JobState,
    /// Steps done.
    pub step: u64,
    /// Steps planned.
    pub planned_steps: u64,
    /// The nodes in the group.
    pub nodes: Vec<String>,
}

/// The datasets a job names: its top-level `datasets = [...]`, the only key the server reads.
///
/// Required, non-empty, each name valid and listed once.
pub fn job_datasets(job_toml: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = toml::from_str(job_toml).map_err(|e| format!("job.toml: {e}"))?;
    let value = table.get("datasets").ok_or(
        "job.toml names no datasets: add a top-level `datasets = [\"...\"]` listing the datasets it trains on",
    )?;
    let list = value
        .as_array()
        .ok_or("job.toml: `datasets` must be an array of dataset names")?;
    if list.is_empty() {
        return Err("job.toml: `datasets` is empty; a job trains on at least one dataset".into());
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        let name = item
            .as_str()
            .ok_or_else(|| format!("job.toml: `datasets` holds {item}, not a name"))?;
        crate::roles::check_name(name)
            .map_err(|reason| format!("job.toml: dataset {name:?}: {reason}"))?;
        if out.iter().any(|n| n == name) {
            return Err(format!("job.toml: dataset {name:?} is listed twice"));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_chunk_fits_a_frame() {
        let chunk = Request::PushChunk {
            offset: MAX_DATASET_LEN,
            bytes: vec![0xff; CHUNK],
        };
        let frame = bastion_wire::encode_frame(&chunk, MAX_FRAME).unwrap();
        assert!(frame.len() <= MAX_FRAME);
        let chunk = Response::ReleaseChunk {
            file: u32::MAX,
            offset: u64::MAX,
            bytes: vec![0xff; CHUNK],
        };
        assert!(bastion_wire::encode_frame(&chunk, MAX_FRAME).is_ok());
    }

    #[test]
    fn job_datasets_are_read_from_the_job() {
        assert_eq!(
            job_datasets("datasets = [\"a\", \"b\"]\n[model]\nkind = \"resnet\"").unwrap(),
            vec!["a", "b"]
        );
        for (text, expected) in [
            ("[model]\nkind = \"resnet\"", "names no datasets"),
            ("datasets = []", "is empty"),
            ("datasets = \"a\"", "must be an array"),
            ("datasets = [1]", "not a name"),
            ("datasets = [\"a\", \"a\"]", "listed twice"),
            ("datasets = [\"../a\"]", "dataset \"../a\""),
            ("datasets = [", "job.toml:"),
        ] {
            let err = job_datasets(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
