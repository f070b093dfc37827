//! The checkpoint store's one error type.

use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Why a checkpoint could not be saved or loaded. Every variant about a file names it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file system operation failed.
    #[error("checkpoint {path}: {op} failed: {source}")]
    Io {
        /// The file or directory operated on.
        path: PathBuf,
        /// What was being done (`"write"`, `"fsync"`, `"rename"`, ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No checkpoint for this step exists.
    #[error("no checkpoint for step {step} in {dir}")]
    Missing {
        /// The step asked for.
        step: u64,
        /// The store's directory.
        dir: PathBuf,
    },
    /// The file is shorter than the header and authentication tag.
    #[error("checkpoint {path} is truncated: {len} bytes, at least {min} needed")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The smallest possible checkpoint.
        min: u64,
    },
    /// The file does not start with the checkpoint marker.
    #[error("{path} is not a BastionAI checkpoint (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// Written by a format version or cipher this build does not read.
    #[error("checkpoint {path} has format version {version}, cipher {cipher}; this build reads version {supported}, cipher 1 (AES-256-GCM)")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Version in the header.
        version: u16,
        /// Cipher id in the header.
        cipher: u8,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// The step in the (authenticated) header differs from the one in the file name: a file
    /// renamed to pose as another step.
    #[error(
        "checkpoint {path} belongs to another step: it holds step {in_header}, but its name \
         says step {in_name} (the file was renamed)"
    )]
    StepMismatch {
        /// The file.
        path: PathBuf,
        /// The step in the file name.
        in_name: u64,
        /// The step in the header.
        in_header: u64,
    },
    /// The file authenticates but was written by a store with another binding: a checkpoint
    /// copied from another node's (or owner's) store.
    #[error(
        "checkpoint {path} belongs to another node: it was sealed for {found:?}, this store is \
         {expected:?} (copied from another node's store?)"
    )]
    BindingMismatch {
        /// The file.
        path: PathBuf,
        /// The binding of the store that opened it.
        expected: String,
        /// The binding in the file's header.
        found: String,
    },
    /// AES-GCM authentication failed: the key is wrong, or the file was altered or cut short.
    /// (GCM cannot tell these apart, by design.)
    #[error("checkpoint {path} does not authenticate: wrong key, or the file was tampered with or truncated")]
    Authentication {
        /// The file.
        path: PathBuf,
    },
    /// The file authenticated but its contents do not decode: it was written with this key
    /// by something other than this format's encoder.
    #[error("checkpoint {path}: malformed contents: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A section name must be 1 to 1024 bytes.
    #[error("section name {name:?} is invalid: must be 1 to 1024 bytes")]
    InvalidSectionName {
        /// The name given.
        name: String,
    },
    /// A store's binding must be 1 to 1024 bytes.
    #[error("checkpoint store binding {binding:?} is invalid: must be 1 to 1024 bytes")]
    InvalidBinding {
        /// The binding given.
        binding: String,
    },
    /// A checkpoint's job name must be at most 1024 bytes.
    #[error("checkpoint job name {job:?} is invalid: must be at most 1024 bytes")]
    InvalidJob {
        /// The job name given.
        job: String,
    },
    /// `keep` must be at least 1.
    #[error("a checkpoint store must keep at least 1 checkpoint, got {keep}")]
    InvalidKeep {
        /// The value given.
        keep: usize,
    },
    /// The OS random number generator or the cipher failed (should not happen).
    #[error("cryptographic operation failed: {what}")]
    Crypto {
        /// Which operation.
        what: &'static str,
    },
}
