//! The one error type of this crate, with the roles' validation errors as a family.

use std::path::PathBuf;
use std::time::Duration;

use bastion_attestation::tls::AttestedTlsError;
use bastion_wire::WireError;

use crate::protocol::Refusal;
use crate::roles::PartyRole;

/// What went wrong talking to a node, or serving parties.
///
/// The node's answers ([`PartyError::Refused`], [`PartyError::Backend`]) are kept apart from
/// the link failing ([`PartyError::Connect`], [`PartyError::Timeout`], [`PartyError::Link`]),
/// from attestation ([`PartyError::Attestation`]: the node was not trusted, or did not know
/// us), and from local files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartyError {
    /// The `[[parties]]` configuration is invalid.
    #[error(transparent)]
    Roles(#[from] RolesError),
    /// No TCP connection to the node.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The node's address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A stage took longer than its limit.
    #[error("{stage} with {addr} took longer than {after:?}")]
    Timeout {
        /// The node's (or the client's) address.
        addr: String,
        /// What was being done.
        stage: &'static str,
        /// The limit.
        after: Duration,
    },
    /// Attested TLS failed: the node's evidence was refused (nothing was sent), the node
    /// refused us (an unknown key), or the handshake broke.
    /// (Boxed: verification errors carry the whole evidence of what failed.)
    #[error(transparent)]
    Attestation(Box<AttestedTlsError>),
    /// The framed link failed or carried a malformed frame.
    #[error(transparent)]
    Link(#[from] WireError),
    /// The peer speaks another party protocol or version.
    #[error("the peer speaks {found}, we speak {expected}")]
    Protocol {
        /// Ours, e.g. `bastion-party/1`.
        expected: String,
        /// Theirs.
        found: String,
    },
    /// The node refused the request: who we are to it and why.
    #[error("{0}")]
    Refused(Refusal),
    /// The node's backend could not do it (a bad record, an unknown job, ...); its words.
    #[error("{request} failed on the node: {reason}")]
    Backend {
        /// The request.
        request: String,
        /// The backend's reason, verbatim.
        reason: String,
    },
    /// The node answered something the protocol does not allow here.
    #[error("{request}: the node answered {found}, expected {expected}")]
    Unexpected {
        /// The request.
        request: &'static str,
        /// What the protocol allows.
        expected: &'static str,
        /// What came.
        found: &'static str,
    },
    /// A local file could not be read or written.
    #[error("cannot {op} {path}")]
    File {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A dataset is empty or larger than the protocol carries.
    #[error("{path}: {len} bytes; a dataset must be 1 byte to {max} bytes")]
    DatasetSize {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// [`crate::protocol::MAX_DATASET_LEN`].
        max: u64,
    },
    /// The file changed while it was being pushed (its SHA-256 or length differs).
    #[error("{path} changed while it was pushed: {reason}")]
    Changed {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A release from the node cannot be written as sent (a file name that would leave the
    /// output directory, lengths that do not add up, ...).
    #[error("the release sent by the node is malformed: {0}")]
    Release(String),
}

impl PartyError {
    /// Whether reconnecting may help: the link dropped or stalled. Never for attestation
    /// refusals or the node's answers.
    pub fn is_transient(&self) -> bool {
        match self {
            PartyError::Connect { .. } | PartyError::Timeout { .. } => true,
            PartyError::Link(e) => matches!(
                e,
                WireError::Io(_)
                    | WireError::Closed
                    | WireError::Truncated { .. }
                    | WireError::Timeout(_)
                    | WireError::Poisoned
            ),
            PartyError::Attestation(e) => matches!(**e, AttestedTlsError::Io { .. }),
            _ => false,
        }
    }
}

impl From<AttestedTlsError> for PartyError {
    fn from(e: AttestedTlsError) -> Self {
        PartyError::Attestation(Box::new(e))
    }
}

/// Why a `[[parties]]` list is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RolesError {
    /// Not valid TOML, an unknown field, an unknown role.
    #[error("[[parties]]: {0}")]
    Toml(String),
    /// A party's name is empty or has characters outside `A-Z a-z 0-9 . _ -`.
    #[error("[[parties]] name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Two parties share a name.
    #[error("[[parties]]: two parties are named {name:?}")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A key is not a SHA-256 fingerprint.
    #[error("[[parties]] {party}: key {key:?}: {reason}")]
    BadKey {
        /// The party.
        party: String,
        /// The key as written.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// One key is listed twice.
    #[error(
        "[[parties]]: key {key} is listed twice, for {first} and {second}; one key, one party"
    )]
    DuplicateKey {
        /// The key.
        key: String,
        /// The first party listing it.
        first: String,
        /// The second.
        second: String,
    },
    /// A data owner with no dataset.
    #[error("[[parties]] {party}: a data owner that owns no datasets; list them in `datasets`")]
    DataOwnerWithoutDatasets {
        /// The party.
        party: String,
    },
    /// `datasets` or `allow_model_owners` on a party that is not a data owner.
    #[error("[[parties]] {party}: `{field}` is for data owners only, and this party is a {role}")]
    OnlyDataOwners {
        /// The party.
        party: String,
        /// Its role.
        role: PartyRole,
        /// The field.
        field: &'static str,
    },
    /// A dataset name is empty or has characters outside `A-Z a-z 0-9 . _ -`.
    #[error("[[parties]] {party}: dataset {dataset:?}: {reason}")]
    BadDatasetName {
        /// The party.
        party: String,
        /// The dataset.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
    /// A dataset listed by two owners (or twice by one).
    #[error("[[parties]]: dataset {dataset:?} is owned by both {first} and {second}; a dataset has one owner")]
    DatasetOwnedTwice {
        /// The dataset.
        dataset: String,
        /// The first owner listing it.
        first: String,
        /// The second.
        second: String,
    },
    /// `allow_model_owners` names a key no party holds.
    #[error("[[parties]] {party}: allow_model_owners names key {key}, which is not listed; add that model owner as a party")]
    AllowsUnknownModelOwner {
        /// The data owner.
        party: String,
        /// The key.
        key: String,
    },
    /// `allow_model_owners` names a party that is not a model owner.
    #[error("[[parties]] {party}: allow_model_owners names {allowed}, which is {}", article(.role))]
    AllowsNonModelOwner {
        /// The data owner.
        party: String,
        /// The party named.
        allowed: String,
        /// Its role.
        role: PartyRole,
    },
}

fn article(role: &PartyRole) -> String {
    match role {
        PartyRole::Operator => "an operator".into(),
        other => format!("a {other}"),
    }
}
