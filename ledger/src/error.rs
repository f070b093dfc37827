//! The ledger's one error type.

use crate::Budget;
use bastion_accountant::AccountantError;
use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Why one frame of the log could not be read. Reported inside [`LedgerError::Corrupt`] when it
/// sits in the middle of the log, and inside [`crate::TornTail`] when it is the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The file ends before the frame does (a write cut short).
    #[error("frame needs {needed} bytes but only {available} remain in the file")]
    Incomplete {
        /// Bytes the frame header announces (header included), or the header size.
        needed: u64,
        /// Bytes from the frame's offset to the end of the file.
        available: u64,
    },
    /// The frame does not start with the record marker.
    #[error("bad frame marker {found:02x?}")]
    BadMagic {
        /// The two bytes found where the marker belongs.
        found: [u8; 2],
    },
    /// The reserved flags byte is not zero.
    #[error("reserved flags byte is {found:#04x}, expected 0")]
    BadFlags {
        /// The byte found.
        found: u8,
    },
    /// The announced payload is larger than any record this format writes.
    #[error("payload length {len} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The announced payload length.
        len: u32,
        /// [`crate::MAX_RECORD_BYTES`].
        limit: u32,
    },
    /// The stored checksum does not match the frame's bytes.
    #[error("CRC-32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the frame header.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
}

/// How a record with a sound frame (its CRC checks out) betrays tampering. Reported inside
/// [`LedgerError::Tampered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Tamper {
    /// The record does not link to the record before it: a record was removed, inserted or
    /// reordered. Checked with or without the key.
    #[error("does not link to the record before it (a record was removed, inserted or reordered)")]
    BrokenChain,
    /// The record's MAC does not verify under the ledger's key: its contents or its link were
    /// altered by someone without the key.
    #[error("does not authenticate under the ledger's key (the record was altered)")]
    BadMac,
}

/// Everything the ledger can refuse or fail at. Variants that concern the file name it and,
/// where it matters, the byte offset; variants that concern a dataset name it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A file system operation failed.
    #[error("ledger {path}: {op} failed: {source}")]
    Io {
        /// The file or directory operated on.
        path: PathBuf,
        /// What was being done (`"open"`, `"fsync"`, ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Ledger` in this one) holds the ledger open. Two writers
    /// would each believe they own the whole budget.
    #[error("ledger {path} is locked by another writer")]
    Locked {
        /// The ledger file.
        path: PathBuf,
    },
    /// The file does not begin with a ledger header.
    #[error("{path} is not a privacy ledger: {reason}")]
    NotALedger {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The ledger was written by a format version this build does not read.
    #[error("ledger {path} has format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// The ledger file.
        path: PathBuf,
        /// Version in the header.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// [`crate::Ledger::open_existing`] found no ledger. Creating a fresh one would forget the
    /// budget already spent, so it is refused: restore the file, or, for a deployment that
    /// never trained, create it with [`crate::Ledger::open`].
    #[error(
        "privacy ledger {path} is missing: recreating it would forget the privacy budget \
         already spent; restore it from a backup (only a node that never trained may start \
         a fresh ledger)"
    )]
    Missing {
        /// The ledger file that should exist.
        path: PathBuf,
    },
    /// The ledger's header does not authenticate under the key it was opened with: it was
    /// sealed by another node or guest image (or its header was altered).
    #[error(
        "ledger {path} was sealed with another key: it belongs to another node or guest \
         image, or its header was altered"
    )]
    WrongKey {
        /// The ledger file.
        path: PathBuf,
    },
    /// A record with a sound frame fails the chain: the ledger was edited by someone without
    /// the key. Hard error, never repaired: restore the file from a trusted copy.
    #[error(
        "ledger {path} has been tampered with: record {record} at byte offset {offset} {reason}"
    )]
    Tampered {
        /// The ledger file.
        path: PathBuf,
        /// Offset of the record's frame.
        offset: u64,
        /// Index of the record (0 is the header).
        record: u64,
        /// Which check failed.
        reason: Tamper,
    },
    /// A checkpoint was taken at a ledger position this ledger has not reached: the ledger was
    /// rolled back (or swapped for an older copy) after the checkpoint was written.
    #[error(
        "ledger {path} holds {records} records, but the checkpoint was taken after record \
         {needed}: the ledger was rolled back or replaced; restore the newer ledger"
    )]
    RolledBack {
        /// The ledger file.
        path: PathBuf,
        /// Records the ledger holds.
        records: u64,
        /// Records the checkpoint says the ledger held.
        needed: u64,
    },
    /// The ledger's chain digest after `records` records differs from the one the checkpoint
    /// was bound to: the ledger is another ledger, or a forked history of this one.
    #[error(
        "ledger {path}: the history up to record {records} differs from the one the \
         checkpoint was taken against (another ledger, or a rolled-back and rewritten one)"
    )]
    HistoryMismatch {
        /// The ledger file.
        path: PathBuf,
        /// The record count the digests were compared at.
        records: u64,
    },
    /// A plan record is malformed (bad `q`, `sigma`, clipping norm, no steps or datasets).
    #[error("invalid plan for job {job:?}: {reason}")]
    InvalidPlan {
        /// The job named in the plan.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// The ledger was created with another accountant; its budgets were enforced with that
    /// accountant's numbers, so reopening with a different one is refused.
    #[error("ledger {path} was created with the {recorded:?} accountant, not {requested:?}")]
    AccountantMismatch {
        /// The ledger file.
        path: PathBuf,
        /// The accountant named in the header.
        recorded: String,
        /// The accountant asked for.
        requested: String,
    },
    /// A frame in the middle of the log (valid records follow it) is damaged (its CRC or
    /// framing fails). Accepted records
    /// are never dropped silently, so this is a hard error: restore the file from a replica or
    /// backup.
    #[error("ledger {path} is corrupt at byte offset {offset} (valid records follow): {reason}")]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// Offset of the damaged frame.
        offset: u64,
        /// What is wrong with it.
        reason: FrameError,
    },
    /// A frame with a valid checksum holds a record that cannot be decoded or breaks the
    /// ledger's rules (e.g. a step for an unregistered dataset). Never the result of a torn
    /// write; it points at a bug or a foreign writer.
    #[error("ledger {path}: invalid record at byte offset {offset}: {reason}")]
    InvalidRecord {
        /// The ledger file.
        path: PathBuf,
        /// Offset of the record's frame.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A record would exceed [`crate::MAX_RECORD_BYTES`] once encoded.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: u32,
    },
    /// An earlier write or fsync failed, so what is on disk is unknown; the ledger refuses
    /// everything until it is reopened (which replays what did reach the disk).
    #[error("ledger {path} is unusable after a failed write; reopen it")]
    Poisoned {
        /// The ledger file.
        path: PathBuf,
    },
    /// The dataset was never registered.
    #[error("dataset {dataset:?} is not registered in the ledger")]
    UnknownDataset {
        /// The name asked for.
        dataset: String,
    },
    /// The dataset name is empty or too long.
    #[error("dataset name {dataset:?} is invalid: {reason}")]
    InvalidDatasetName {
        /// The name given.
        dataset: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A budget must have a positive finite ε and a δ in (0, 1).
    #[error("dataset {dataset:?}: invalid budget epsilon={epsilon}, delta={delta}")]
    InvalidBudget {
        /// The dataset.
        dataset: String,
        /// The ε given.
        epsilon: f64,
        /// The δ given.
        delta: f64,
    },
    /// Re-registering a dataset with a different budget: a budget can never be raised (or
    /// changed) by registering again.
    #[error(
        "dataset {dataset:?} is already registered with budget {registered}, \
         cannot re-register it with {requested}"
    )]
    BudgetMismatch {
        /// The dataset.
        dataset: String,
        /// The budget in the ledger.
        registered: Budget,
        /// The budget asked for.
        requested: Budget,
    },
    /// A budget may be lowered, never raised (nor its δ changed).
    #[error(
        "dataset {dataset:?} has budget {registered}: it can only be lowered, not set to {requested}"
    )]
    NotLower {
        /// The dataset.
        dataset: String,
        /// The budget in the ledger.
        registered: Budget,
        /// The budget asked for.
        requested: Budget,
    },
    /// A step charge or plan is malformed (no datasets, a dataset twice, bad `q` or `sigma`).
    #[error("invalid charge: {reason}")]
    InvalidCharge {
        /// What is wrong.
        reason: String,
    },
    /// Step numbers must strictly increase: a replayed or reordered step is refused.
    #[error("step {step} is not after the last recorded step {last}")]
    StepNotIncreasing {
        /// The step asked for.
        step: u64,
        /// The last step in the ledger.
        last: u64,
    },
    /// Authorizing this step would push a dataset's ε over its budget. Nothing was written.
    #[error(
        "privacy budget of dataset {dataset:?} exhausted: spent epsilon {spent}, \
         this step would make it {would_spend}, budget {budget}"
    )]
    BudgetExhausted {
        /// The dataset.
        dataset: String,
        /// ε spent before the step.
        spent: f64,
        /// ε after the step.
        would_spend: f64,
        /// The dataset's ε budget.
        budget: f64,
    },
    /// The planned job would push a dataset's ε over its budget; lower the steps or `q`, or
    /// raise `sigma`.
    #[error(
        "plan refused: dataset {dataset:?} would reach epsilon {planned_epsilon} \
         (spent so far {spent}, budget {budget}); plan fewer steps, a lower q or more noise"
    )]
    PlanExceedsBudget {
        /// The dataset.
        dataset: String,
        /// ε after the spent steps plus the planned ones.
        planned_epsilon: f64,
        /// ε spent so far.
        spent: f64,
        /// The dataset's ε budget.
        budget: f64,
    },
    /// The accountant refused to compute ε for a dataset.
    #[error("accountant error for dataset {dataset:?}: {source}")]
    Accountant {
        /// The dataset.
        dataset: String,
        /// The accountant's error.
        #[source]
        source: AccountantError,
    },
}
