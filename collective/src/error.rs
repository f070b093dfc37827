//! The one error type of this crate, and how a peer is named in it.

use std::fmt;
use std::io;
use std::time::Duration;

/// Which neighbour of this rank an error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The rank we send to (`rank + 1`).
    Next,
    /// The rank we receive from (`rank - 1`).
    Prev,
}

/// A neighbour in the ring: its rank and which side of us it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerId {
    /// Its rank.
    pub rank: usize,
    /// Which neighbour it is.
    pub side: Side,
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.side {
            Side::Next => "next",
            Side::Prev => "prev",
        };
        write!(f, "rank {} ({side})", self.rank)
    }
}

/// Why a collective failed.
///
/// After any error from [`crate::Ring::all_reduce`] the ring is broken (its links are closed
/// at once, so the failure travels round the ring instead of leaving the others waiting) and
/// must be formed again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectiveError {
    /// The caller asked for something impossible (rank outside the world, empty buckets).
    #[error("invalid collective configuration: {0}")]
    Config(String),
    /// A neighbour made no progress within the I/O timeout.
    #[error("{peer} made no progress for {after:?} while {during}")]
    Timeout {
        /// The neighbour.
        peer: PeerId,
        /// What we were doing.
        during: &'static str,
        /// The timeout in force.
        after: Duration,
    },
    /// The link to a neighbour failed or was closed (the peer died or gave up).
    #[error("link to {peer} failed while {during}: {source}")]
    Peer {
        /// The neighbour.
        peer: PeerId,
        /// What we were doing.
        during: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A neighbour sent a data header other than the one this step expects: a confused or
    /// stale peer, or ranks calling with different tags or lengths.
    #[error("{peer} is out of step: header field {field} is {found}, expected {expected}")]
    OutOfStep {
        /// The neighbour.
        peer: PeerId,
        /// The header field that differs.
        field: &'static str,
        /// What this step expects.
        expected: u64,
        /// What arrived.
        found: u64,
    },
    /// The ring is unusable after an earlier failure; form it again.
    #[error("ring is broken by an earlier failure; form it again")]
    Broken,
    /// A neighbour's attested TLS handshake failed.
    #[error("attested TLS with {peer} failed: {source}")]
    Attestation {
        /// The neighbour.
        peer: PeerId,
        /// Why (boxed: the verifier's errors are large, and every `Result` of this crate
        /// would carry their size).
        #[source]
        source: Box<bastion_attestation::tls::AttestedTlsError>,
    },
    /// The node at the next rank's address holds another TLS key than the one expected.
    #[error("{peer} presented TLS key {found}, expected {expected}")]
    WrongKey {
        /// The neighbour.
        peer: PeerId,
        /// The expected key fingerprint (SHA-256 of the SPKI, hex).
        expected: String,
        /// The one presented.
        found: String,
    },
    /// A neighbour's ring hello names another ring (epoch, size or position).
    #[error("{peer} is in another ring: its {field} is {found}, expected {expected}")]
    WrongRing {
        /// The neighbour.
        peer: PeerId,
        /// `epoch`, `world`, `rank` or `link`.
        field: &'static str,
        /// Ours.
        expected: u64,
        /// Theirs.
        found: u64,
    },
    /// The ring hello could not be exchanged.
    #[error("ring hello with {peer} failed: {source}")]
    Wire {
        /// The neighbour.
        peer: PeerId,
        /// Why.
        #[source]
        source: bastion_wire::WireError,
    },
    /// No acceptable connection from the previous rank arrived in time.
    #[error(
        "no acceptable connection from {peer} within {waited:?}{}",
        refused_list(refused)
    )]
    Formation {
        /// The neighbour we waited for.
        peer: PeerId,
        /// How long.
        waited: Duration,
        /// Connections refused meanwhile, with why.
        refused: Vec<String>,
    },
    /// NCCL cannot be used here (not compiled in, or no CUDA/NCCL library or device).
    #[error("NCCL unavailable: {0}")]
    NcclUnavailable(String),
    /// An NCCL or CUDA call failed.
    #[error("NCCL: {0}")]
    Nccl(String),
}

fn refused_list(refused: &[String]) -> String {
    if refused.is_empty() {
        String::new()
    } else {
        format!("; refused: {}", refused.join("; "))
    }
}
