//! Why an attested connection was not established.

use super::attester::AttestError;
use super::binding::Role;
use super::party::Mode;
use super::wire::WireError;
use crate::VerifyError;

/// An attested connection failed. The variants say which side decided and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestedTlsError {
    /// The TLS configuration could not be built (a bug or an unusable key).
    #[error("attested TLS: cannot build the TLS configuration: {0}")]
    Config(String),
    /// The TLS handshake or the transport failed (includes TLS alerts either way).
    #[error("attested TLS: {stage} failed: {source}")]
    Io {
        /// What was being done: "TLS handshake", "sending evidence", ...
        stage: &'static str,
        /// The transport's or TLS library's error.
        #[source]
        source: std::io::Error,
    },
    /// The peer sent bytes that are not this protocol.
    #[error("attested TLS: malformed message from the peer: {0}")]
    Wire(#[from] WireError),
    /// This node could not produce its own evidence; the peer was told.
    #[error("attested TLS: {0}")]
    LocalEvidence(#[from] AttestError),
    /// We refused the peer's evidence (and told it why).
    #[error("attested TLS: refused the peer ({peer_role}, TLS key sha256:{peer_key}): {reason}")]
    PeerRejected {
        /// The peer's role in this connection.
        peer_role: Role,
        /// SHA-256 of the peer's SubjectPublicKeyInfo, hex.
        peer_key: String,
        /// Why.
        #[source]
        reason: Rejection,
    },
    /// The peer refused our evidence, with its reason.
    #[error("attested TLS: the peer refused our evidence ({code}): {reason}")]
    RefusedByPeer {
        /// The peer's short stable label, e.g. `policy.measurement` or `binding.stale_session`.
        code: String,
        /// The peer's explanation.
        reason: String,
    },
    /// The two ends speak different modes: a node dialled a port that serves parties, or a
    /// party dialled a node-to-node port. Nothing of either side's evidence was accepted.
    #[error(
        "attested TLS: this end speaks {ours} mode but the peer speaks {peer} mode: \
         a node dialled a port that serves parties, or a party a node-to-node port; \
         check the address"
    )]
    ModeMismatch {
        /// The mode this end speaks.
        ours: Mode,
        /// The mode the peer speaks.
        peer: Mode,
    },
    /// A party whose TLS key this node does not know completed TLS: it was refused and shown
    /// nothing of the node (no evidence was made).
    #[error(
        "attested TLS: party key sha256:{party_key} is not known to this node; \
         the node's operator must list it under [[parties]]"
    )]
    UnknownParty {
        /// SHA-256 of the party's SubjectPublicKeyInfo, hex.
        party_key: String,
    },
}

/// Why we refused a peer's evidence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The report failed verification (chain, signature, policy, measurement, ...).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The report is authentic but is not bound to this TLS session and the peer's key.
    #[error(transparent)]
    Binding(#[from] BindingError),
}

impl Rejection {
    /// A short stable label for the wire and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Verify(e) => e.code(),
            Rejection::Binding(e) => e.code(),
        }
    }
}

/// An authentic report that binds something other than this session's peer.
///
/// The receiver computes the expected REPORT_DATA from what it saw itself: the key the peer
/// proved in the handshake, the session's exporter, the peer's role. When the report carries
/// something else, the sender's claimed binding is consulted only to name the difference, and
/// only if it hashes to the report's (signed) REPORT_DATA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The report binds another TLS key: a report replayed by a machine that does not hold the
    /// key it was made for.
    #[error(
        "the report binds TLS key sha256:{bound_key}, but the peer's TLS key is sha256:{peer_key}: \
         a report replayed by a machine that does not hold the bound key"
    )]
    OtherKey {
        /// The key the report binds.
        bound_key: String,
        /// The key the peer proved in the handshake.
        peer_key: String,
    },
    /// The report binds this key but another TLS session: a stale report, replayed.
    #[error(
        "the report binds the peer's TLS key but the exporter of another TLS session: \
         a stale report, replayed from an earlier connection"
    )]
    StaleSession,
    /// The report was made by the other end of the connection: our own evidence reflected.
    #[error(
        "the report was made by the {bound} end of a connection, but the peer is the {peer} end"
    )]
    Reflected {
        /// The role the report binds.
        bound: Role,
        /// The peer's actual role.
        peer: Role,
    },
    /// REPORT_DATA is not the hash of the claimed binding either: nothing can be said of it.
    #[error("REPORT_DATA {found} is not this session's binding {expected}")]
    Unexplained {
        /// The REPORT_DATA we computed, hex.
        expected: String,
        /// The report's REPORT_DATA, hex.
        found: String,
    },
}

impl BindingError {
    /// A short stable label for the wire and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            BindingError::OtherKey { .. } => "binding.other_key",
            BindingError::StaleSession => "binding.stale_session",
            BindingError::Reflected { .. } => "binding.reflected",
            BindingError::Unexplained { .. } => "binding.report_data",
        }
    }
}

impl AttestedTlsError {
    /// A short stable label for logs and metrics.
    pub fn code(&self) -> &str {
        match self {
            Self::Config(_) => "config",
            Self::Io { .. } => "io",
            Self::Wire(_) => "wire",
            Self::LocalEvidence(_) => "local_evidence",
            Self::PeerRejected { reason, .. } => reason.code(),
            Self::RefusedByPeer { .. } => "refused_by_peer",
            Self::ModeMismatch { .. } => Self::MODE_MISMATCH,
            Self::UnknownParty { .. } => "party.unknown",
        }
    }

    /// The code of [`AttestedTlsError::ModeMismatch`] on the wire, so the refused end can
    /// name the mismatch too.
    pub(crate) const MODE_MISMATCH: &'static str = "mode_mismatch";
}
