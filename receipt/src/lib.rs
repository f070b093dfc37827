//! The signed privacy receipt of a BastionAI job.
//!
//! At the end of a job the coordinator writes `receipt.json` next to the released model. It
//! states, under a key made inside the coordinator's TEE and bound to it by an attestation
//! report, what was released (the model directory's digest), from which job file, with which
//! DP-SGD mechanism (accountant, q, sigma, C, steps), what each dataset spent according to
//! the privacy ledger (epsilon at its delta, and the history that figure is computed from),
//! and which attested nodes (measurement, chip id) took part. Anyone holding the model can
//! check it offline against AMD's roots and a measurement allow-list:
//! `bastion receipt verify receipt.json --model DIR --policy verify.toml`.
//!
//! ```text
//!  coordinator's TEE                                    receipt.json
//!   fresh P-256 key k ──spki──► SHA-512(label‖len‖spki) ──► REPORT_DATA of an SNP report ──► evidence
//!   body ──► digest per field (path → SHA-256) ─────────────────────────────────────────────► signed_fields
//!   "bastion-ai/receipt/v1\n" ‖ "path digest\n"... ──ECDSA(k)────────────────────────────► signature
//!
//!  verifier: evidence ✓ (chain, policy) → REPORT_DATA = binding(key) → signature ✓
//!            → each body field = its signed digest → figures consistent → model dir = listing
//! ```
//!
//! # Why a digest per field
//!
//! A signature over the whole body says only "something changed". Signing a table of
//! per-field digests ([`canonical`]) costs a few kilobytes and lets a verifier say *which*
//! field was changed after signing (`body.datasets[0].epsilon`), was removed, or was added;
//! changing the table itself breaks the signature.
//!
//! # What it proves, and what it does not
//!
//! The evidence proves the receipt key was made by a guest with the reported measurement on a
//! genuine chip (or, visibly, on the simulated TEE). If that measurement is a BastionAI build
//! the verifier trusts, the body is what that build's Supervisor recorded: the privacy ledger's
//! own figures and the verdicts of its attested links. The figures are checked for consistency
//! (the recorded epsilon is at least what the recorded mechanism gives); the members'
//! measurements are the coordinator's attested word, their own reports are not included.
//!
//! # Example
//!
//! ```no_run
//! use bastion_attestation::{Policy, TrustAnchors, Verifier};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::from_toml(&std::fs::read_to_string("verify.toml")?)?;
//! let verifier = Verifier::try_new(policy, TrustAnchors::amd())?;
//! let receipt = std::fs::read("release/receipt.json")?;
//! let ok = bastion_receipt::verify(&receipt, &verifier, std::time::SystemTime::now(), "release".as_ref())?;
//! println!("{} spent epsilon {}", ok.body.datasets[0].name, ok.body.datasets[0].epsilon);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
pub mod canonical;
mod error;
mod issue;
mod key;
pub mod model;
mod verify;

pub use body::{
    Body, DatasetRecord, JobRecord, ModelFile, ModelRecord, NodeRecord, PrivacyRecord,
    SegmentRecord,
};
pub use error::ReceiptError;
pub use issue::{issue, EvidenceRecord, Receipt};
pub use key::{key_report_data, KEY_LABEL};
pub use verify::{check_model, verify, verify_signed, Verified, EPSILON_TOLERANCE};

/// The format this crate writes and reads, first line of the signed message.
pub const FORMAT: &str = "bastion-ai/receipt/v1";

/// The receipt's file name in the release directory (not part of the model it describes).
pub const RECEIPT_FILE: &str = "receipt.json";

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// `t` as RFC 3339 in UTC (`2026-05-01T12:00:00.123456789Z`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a SystemTime formats as RFC 3339")
}
