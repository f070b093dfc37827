use std::path::PathBuf;

/// Why the simulated platform could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A key or certificate operation failed inside the crypto or DER library.
    #[error("simulated TEE: {operation} failed: {reason}")]
    Crypto {
        /// What was being done, e.g. "generate the ARK key".
        operation: &'static str,
        /// The library's message.
        reason: String,
    },
    /// Reading or writing the chain directory failed.
    #[error("simulated TEE: cannot {operation} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read".
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file in the chain directory is malformed or does not belong with the others.
    #[error("simulated TEE: {}: {reason}; delete the directory to make a new chain", path.display())]
    BadChainFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A directory holds something else than what was asked for (a platform's root keys where
    /// a node's chip was expected, or the reverse).
    #[error("simulated TEE: {} is not a {expected} directory: {reason}", dir.display())]
    WrongDirectory {
        /// The directory.
        dir: PathBuf,
        /// What it was expected to be.
        expected: &'static str,
        /// What it holds instead.
        reason: String,
    },
    /// A guest was asked for at another TCB than the one the chip's VCEK was issued for.
    #[error("simulated TEE: this chip's VCEK was issued for TCB {chip:?}, the launch asks for {requested:?}; issue a chip at that TCB (SimulatedPlatform::issue_chip_at)")]
    TcbMismatch {
        /// The TCB of the chip's VCEK.
        chip: crate::report::Tcb,
        /// The launch config's TCB.
        requested: crate::report::Tcb,
    },
}

impl SimError {
    pub(crate) fn crypto(operation: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Crypto {
            operation,
            reason: err.to_string(),
        }
    }

    pub(crate) fn io(
        operation: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }
}
