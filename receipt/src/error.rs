//! Why a receipt could not be made, or was refused.
//!
//! One public enum. Every refusal of a receipt names the part that failed in
//! [`ReceiptError::field`]: a body field by its path (`body.datasets[0].epsilon`), or
//! `signature`, `key`, `evidence.report`, `evidence.vcek`, `signed_fields`, `format`, or
//! `model` for the directory the receipt is checked against. Errors while *making* a
//! receipt (the TEE refused a report, the release directory cannot be read) are the
//! coordinator's problems, not a verifier's, and have their own variants.

use std::path::PathBuf;

/// A receipt could not be made, or a receipt was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The file is not a receipt of this format: not JSON, a member missing or unknown, a
    /// value of the wrong type, another format version.
    #[error("{field}: {reason}")]
    Malformed {
        /// The member at fault (`format`, `body.job`, ...).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `key` is not an ECDSA P-256 public key in SubjectPublicKeyInfo DER.
    #[error("key: {reason}")]
    Key {
        /// What is wrong.
        reason: String,
    },
    /// The attestation verifier refused the evidence (`evidence.report` or `evidence.vcek`),
    /// or its policy could not be used (`policy`).
    #[error("{field}: refused ({code}): {source}")]
    Evidence {
        /// `evidence.report`, `evidence.vcek`, or `policy`.
        field: &'static str,
        /// The verifier's stable refusal code.
        code: &'static str,
        /// The verifier's reason (boxed: it carries the evidence it refused).
        #[source]
        source: Box<bastion_attestation::VerifyError>,
    },
    /// The report is authentic, but its REPORT_DATA does not bind this receipt key: the key
    /// was replaced, or the report was made for something else.
    #[error("key: the attestation report does not bind this receipt key: REPORT_DATA is {found}, SHA-512(\"bastion-ai/receipt-key/v1\" || len || key) is {expected}")]
    KeyNotBound {
        /// REPORT_DATA the key calls for, hex.
        expected: String,
        /// REPORT_DATA of the report, hex.
        found: String,
    },
    /// The signature does not verify over the signed field digests with the receipt key.
    #[error("signature: {reason}")]
    Signature {
        /// What is wrong.
        reason: String,
    },
    /// A body field differs from the value that was signed.
    #[error(
        "{field}: changed after signing (its SHA-256 is {found}, the signature covers {signed})"
    )]
    Tampered {
        /// The field's path.
        field: String,
        /// The digest that was signed.
        signed: String,
        /// The digest of the value in the file.
        found: String,
    },
    /// A signed body field is missing from the file.
    #[error("{field}: signed but missing from the body")]
    Removed {
        /// The field's path.
        field: String,
    },
    /// The body holds a field that was never signed.
    #[error("{field}: in the body but not signed")]
    Unsigned {
        /// The field's path.
        field: String,
    },
    /// The signed body says something that cannot be right: the coordinator's record does
    /// not match its own report, a node's measurement is not accepted, the job ran without
    /// noise, the figures contradict each other.
    #[error("{field}: {reason}")]
    Inconsistent {
        /// The field's path.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The model directory is not what the receipt describes.
    #[error("{field}: {reason}")]
    Model {
        /// The body field that disagrees with the directory (`body.model.files[1].sha256`),
        /// or `model` for a file the receipt does not list.
        field: String,
        /// What differs.
        reason: String,
    },
    /// A recorded epsilon is below what its own parameters give: the receipt understates
    /// the privacy loss.
    #[error("{field}: recorded epsilon {recorded} is below the {accountant} accountant's {recomputed} for the recorded history at delta {delta}")]
    EpsilonUnderstated {
        /// `body.datasets[i].epsilon`.
        field: String,
        /// The receipt's figure.
        recorded: f64,
        /// The figure recomputed here.
        recomputed: f64,
        /// The accountant used.
        accountant: String,
        /// The delta.
        delta: f64,
    },
    /// The accountant refused the recorded parameters (a rate outside (0, 1], a delta
    /// outside (0, 1)).
    #[error("{field}: {source}")]
    Accountant {
        /// The field whose values were refused.
        field: String,
        /// The accountant's reason.
        #[source]
        source: bastion_accountant::AccountantError,
    },
    /// Making a receipt: the TEE would not produce a report for the receipt key.
    #[error("the TEE refused a report for the receipt key: {0}")]
    Attest(#[from] bastion_attestation::tls::AttestError),
    /// Making a receipt: a figure is not a finite number (JSON has none for it).
    #[error("{field}: {value} cannot be recorded, only finite numbers can")]
    NotFinite {
        /// The field's path.
        field: String,
        /// The value.
        value: f64,
    },
    /// Making a receipt: the key could not be made or could not sign.
    #[error("receipt key: {0}")]
    Crypto(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ReceiptError {
    /// The part of the receipt this error is about: a body field's path, `signature`, `key`,
    /// `evidence.report`, `evidence.vcek`, `signed_fields`, `format`, `model`, `policy`; none
    /// for errors while making a receipt or reading a file.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Malformed { field, .. }
            | Self::Tampered { field, .. }
            | Self::Removed { field }
            | Self::Unsigned { field }
            | Self::Inconsistent { field, .. }
            | Self::Model { field, .. }
            | Self::EpsilonUnderstated { field, .. }
            | Self::Accountant { field, .. } => Some(field),
            Self::NotFinite { field, .. } => Some(field),
            Self::Evidence { field, .. } => Some(field),
            Self::Key { .. } | Self::KeyNotBound { .. } => Some("key"),
            Self::Signature { .. } => Some("signature"),
            Self::Attest(_) | Self::Crypto(_) | Self::Io { .. } => None,
        }
    }

    pub(crate) fn malformed(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Malformed {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn inconsistent(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Inconsistent {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
