//! Encrypted, atomically written training checkpoints.
//!
//! A [`Checkpoint`] is a step number, the privacy ledger's position at that step, and named
//! byte sections the caller fills (model weights as safetensors, optimizer state, RNG state).
//! [`CheckpointStore::save`] encrypts it with AES-256-GCM under a key that never leaves the
//! confidential VM, and makes it appear atomically:
//!
//! ```text
//!  encode ─► seal (random nonce, header as AAD) ─► .ckpt-<step>.<rand>.tmp ─► fsync
//!        ─► rename to ckpt-<step:020>.bin ─► fsync dir ─► prune to the newest `keep`
//! ```
//!
//! A crash at any point leaves either the previous set of checkpoints or the new one, plus
//! perhaps a temporary file that [`CheckpointStore::open`] removes; a `ckpt-*.bin` is never
//! half written.
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
//! newest files (a rollback) cannot be detected here: compare the checkpoint's
//! `ledger_position` with the ledger, which only grows, and keep the ledger's spent budget
//! whatever the checkpoint says.
//!
//! ```
//! use bastion_checkpoint::{Checkpoint, CheckpointStore};
//! # let dir = std::env::temp_dir().join(format!("ckpt-doc-{}", std::process::id()));
//! let key = [7u8; 32]; // in production: derived in the TEE, see above
//! let store = CheckpointStore::open(&dir, key, 3)?;
//! let mut ckpt = Checkpoint::new(100, 4096);
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
pub use format::{FORMAT_VERSION, MAX_SECTION_NAME};
pub use store::{CheckpointStore, LatestValid, Skipped};

use std::collections::BTreeMap;

/// One training checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The training step the state belongs to (the last step applied).
    pub step: u64,
    /// The privacy ledger's position (`bastion_ledger::Position::offset`) once that step was
    /// authorized: a restore checks the ledger holds at least this much.
    pub ledger_position: u64,
    /// Named byte sections: weights, optimizer state, RNG state, data-loader state...
    pub sections: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// An empty checkpoint for `step` at `ledger_position`.
    pub fn new(step: u64, ledger_position: u64) -> Self {
        Checkpoint {
            step,
            ledger_position,
            sections: BTreeMap::new(),
        }
    }
}
