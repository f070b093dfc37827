//! Encrypted, atomically written training checkpoints.
//!
//! A [`Checkpoint`] is a step number, its job, the privacy ledger's position at that step (record
//! count and chain digest), and named byte sections the caller fills (model weights as
//! safetensors, optimizer state, RNG state). [`CheckpointStore::save`] encrypts it with
//! AES-256-GCM under a key that never leaves the confidential VM, and makes it appear
//! atomically:
//!
//! ```text
//!  encode ─► seal (random nonce, header as AAD) ─► .ckpt-<step>.<rand>.tmp ─► fsync
//!        ─► rename to ckpt-<step:020>.bin ─► fsync dir ─► prune to the newest `keep`
//! ```
//!
//! A crash at any point leaves either the previous set of checkpoints or the new one, plus
//! perhaps a temporary file that [`CheckpointStore::open`] removes; a `ckpt-*.bin` is never
//! half written. Files are 0600 and the store's directory 0700.
//!
//! # Binding
//! A store is opened with a binding naming its owner (`"node=node-1"`); every checkpoint's
//! authenticated header carries it and the step. So a checkpoint copied from another node's
//! store is refused ([`CheckpointError::BindingMismatch`]) even where both derive the same key,
//! and one renamed to another step is refused ([`CheckpointError::StepMismatch`]).
//!
//! # The key
//! Derive it inside the TEE so only the same guest image, under the same policy, on the same
//! chip can read the checkpoints back: on the simulated TEE,
//! `bastion_attestation::sim::SimulatedTee::derive_key(b"bastion-checkpoint-v1")`; on SEV-SNP,
//! a `MSG_KEY_REQ` derived key with the same label mixed in. The store keeps the key in
//! zeroizing memory and wipes it on drop; zeroize your own copy too.
//!
//! # Failures are loud
//! A file that does not authenticate (wrong key, altered, truncated) is an error naming the
//! file. [`CheckpointStore::load_latest`] never skips past a bad newest checkpoint;
//! [`CheckpointStore::load_latest_valid`] does, and says which files it skipped. Deleting the
//! newest files (a rollback) cannot be detected here: the checkpoint's `ledger_position` and
//! `ledger_digest` bind it to the ledger's history (`bastion_ledger::Ledger::check_position`),
//! which refuses a ledger rolled back behind the checkpoint; and keep the ledger's spent
//! budget whatever the checkpoint says.
//!
//! ```
//! use bastion_checkpoint::{Checkpoint, CheckpointStore};
//! # let dir = std::env::temp_dir().join(format!("ckpt-doc-{}", std::process::id()));
//! let key = [7u8; 32]; // in production: derived in the TEE, see above
//! let store = CheckpointStore::open(&dir, key, 3, "node=node-1")?;
//! // Step 100, taken when the node's ledger held 57 records with this chain digest.
//! let mut ckpt = Checkpoint::new(100, 57)
//!     .with_job("cancer")
//!     .with_ledger_digest([0xAB; 32]);
//! ckpt.sections.insert("model.safetensors".into(), vec![1, 2, 3]);
//! store.save(&ckpt)?;
//! assert_eq!(store.load_latest()?, Some(ckpt));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), bastion_checkpoint::CheckpointError>(())
//! ```

mod error;
mod format;
mod store;

pub use error::CheckpointError;
pub use format::{FORMAT_VERSION, MAX_BINDING, MAX_JOB_NAME, MAX_SECTION_NAME};
pub use store::{CheckpointStore, LatestValid, Skipped};

use std::collections::BTreeMap;

/// One training checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The training step the state belongs to (the last step applied).
    pub step: u64,
    /// The job the state belongs to (empty if the caller does not say).
    pub job: String,
    /// The number of records in the node's own privacy ledger
    /// (`bastion_ledger::Position::records`) once that step was authorized: a restore checks
    /// the ledger holds at least this many.
    pub ledger_position: u64,
    /// The ledger's chain digest after `ledger_position` records
    /// (`bastion_ledger::Position::digest`): a restore checks the ledger's history up to that
    /// point is the one this checkpoint was taken against.
    pub ledger_digest: [u8; 32],
    /// Named byte sections: weights, optimizer state, RNG state, data-loader state...
    pub sections: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// An empty checkpoint for `step` at `ledger_position` (ledger records), with no job and
    /// an all-zero ledger digest; set those with [`Checkpoint::with_job`] and
    /// [`Checkpoint::with_ledger_digest`].
    pub fn new(step: u64, ledger_position: u64) -> Self {
        Checkpoint {
            step,
            ledger_position,
            ..Checkpoint::default()
        }
    }

    /// Sets the job the checkpoint belongs to.
    pub fn with_job(mut self, job: impl Into<String>) -> Self {
        self.job = job.into();
        self
    }

    /// Sets the ledger's chain digest after `ledger_position` records.
    pub fn with_ledger_digest(mut self, digest: [u8; 32]) -> Self {
        self.ledger_digest = digest;
        self
    }
}
