//! What the node does for parties: the [`PartyBackend`] trait the node implements.
//!
//! The server authenticates and authorizes; the backend only acts. Every method is called
//! after the server checked that the party may ask it, on tokio's blocking pool, so an
//! implementation may block (seal to disk, take a lock, wait on an actor). Errors are the
//! backend's words and go to the party verbatim: say what was wrong with *the party's* input
//! (a record that does not parse, an unknown job) and never quote the data itself.

use crate::protocol::{DatasetMeta, Spent, Status};

/// The node's side of the party protocol.
pub trait PartyBackend: Send + Sync + 'static {
    /// A data owner's complete, SHA-256-checked dataset. Check every record, seal it, and
    /// answer the SHA-256 (hex) of the sealed content; or refuse it (nothing is kept, by the
    /// server or, it must ensure, by the backend).
    fn accept_dataset(
        &self,
        owner_key: &str,
        meta: &DatasetMeta,
        content: Vec<u8>,
    ) -> Result<String, String>;

    /// Deletes a data owner's dataset.
    fn delete_dataset(&self, owner_key: &str, name: &str) -> Result<(), String>;

    /// The privacy budget spent on a dataset, from the ledger.
    fn spent(&self, name: &str) -> Result<Spent, String>;

    /// A model owner's job. `datasets` is the job's own `datasets = [...]`, which the server
    /// read from `job_toml` and authorized (each dataset's owner allows this model owner);
    /// the job must train on exactly those. Answers the job's id.
    fn submit_job(
        &self,
        model_owner_key: &str,
        job_toml: &str,
        datasets: &[String],
    ) -> Result<String, String>;

    /// The release of the job this model owner submitted. The server checks
    /// [`Release::model_owner_key`] again before sending a byte.
    fn release(&self, model_owner_key: &str) -> Result<Release, String>;

    /// The job's state. Nothing about records, losses or counts of data.
    fn status(&self) -> Status;
}

/// A released model and its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The released job.
    pub job_id: String,
    /// The model owner who submitted it: only that key receives it.
    pub model_owner_key: String,
    /// The model's files (`model.safetensors`, `config.json`, `adapter/...`).
    pub files: Vec<ReleaseFile>,
    /// The receipt, sent last as `receipt.json`.
    pub receipt_json: Vec<u8>,
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    /// Its path in the release, `/`-separated and relative.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}
