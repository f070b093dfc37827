//! What can be wrong with a party's files: its key, its `verify.toml`.

use std::path::PathBuf;

use crate::{PolicyError, VerifyError};

/// A party's key file or verification file could not be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartyFileError {
    /// Reading or writing a file failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done: "read", "create", ...
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key file already exists there; keys are never overwritten.
    #[error("{path} already exists; a party key is never overwritten (choose another --out, or remove it knowingly)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The key file can be read by other users.
    #[error("{path} is readable by other users (mode {mode:o}); make it private with `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key is not a usable party key: not PEM, not PKCS#8, or not ECDSA P-256.
    #[error("party key{}: {reason}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Key {
        /// The file, when the key came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// The verification policy in a `verify.toml` is invalid.
    #[error("{path}: invalid verification policy")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong with the policy.
        #[source]
        source: PolicyError,
    },
    /// The `[trust]` section of a `verify.toml` is invalid.
    #[error("{path}: [trust]: {reason}")]
    Trust {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The simulated ARK and ASK named by a `verify.toml` do not form a chain.
    #[error("{path}: the simulated ARK and ASK it names are not a usable chain")]
    Anchors {
        /// The `verify.toml`.
        path: PathBuf,
        /// What is wrong with them.
        #[source]
        source: VerifyError,
    },
}

impl PartyFileError {
    pub(super) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PartyFileError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
