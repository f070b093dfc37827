//! The durable privacy ledger: every DP step is authorized against each dataset's budget and
//! written to disk before its gradients may be released.
//!
//! ```text
//!  Accountant actor ──authorize(step t: sigma, [(dataset, q)])──► Ledger
//!                                                                   │ ε after step t ≤ budget?
//!                                                                   │   no → BudgetExhausted, nothing written
//!                                                                   │   yes → append frame, write_all + fsync
//!  release gradients of step t ◄────────────── Ok(Authorization) ◄──┘
//! ```
//!
//! The ledger is one append-only file of records (a header naming the accountant, dataset
//! registrations, steps, plans, notes), each in a frame with a marker, type, length, a link to
//! the previous record, an HMAC-SHA256 and a CRC-32 (see the `record` module). Opening
//! replays it:
//! - a damaged or partial **last** frame is a write that never finished, so it was never
//!   acknowledged: it is cut off and reported in [`Recovery::torn_tail`];
//! - a damaged frame with valid frames **after** it is [`LedgerError::Corrupt`], naming the
//!   offset. Accepted records are never dropped silently.
//!
//! # Integrity against the host
//! The host stores the file, so the ledger is tamper-evident under a 32-byte sealing key
//! that the caller derives inside the TEE and the host never sees. Records form a hash
//! chain: `chain_0 = 0^32`,
//! `chain_i = HMAC-SHA256(K, marker | type | flags | len | chain_{i-1} | payload)`, each frame
//! carrying `chain_{i-1}` and `chain_i` (`K` is derived from the key, see `record`). So:
//! - an edited record fails its MAC ([`LedgerError::Tampered`], [`Tamper::BadMac`]), even with
//!   its CRC recomputed, and even as the last record (a sound frame is never a torn write);
//! - a removed, inserted or reordered record breaks the chain ([`Tamper::BrokenChain`]);
//! - a ledger opened with another key fails on its header ([`LedgerError::WrongKey`]);
//! - a deleted ledger is not silently recreated by [`Ledger::open_existing`]
//!   ([`LedgerError::Missing`]).
//!
//! What the ledger cannot see on its own is a **rollback**: the file cut back to an earlier
//! record boundary (or swapped for an older copy) is a valid, shorter chain. That is what
//! [`Position::digest`] is for: a checkpoint stores the position (`records` and `digest`) it
//! was taken at, and a restore calls [`Ledger::check_position`], which refuses a ledger with
//! fewer records ([`LedgerError::RolledBack`]) or another history up to that point
//! ([`LedgerError::HistoryMismatch`]). A rollback of the ledger *and* the checkpoints together
//! needs state outside the host's reach (a monotonic counter, or the other nodes' ledgers).
//!
//! Epsilon comes from the [`bastion_accountant`] crate (PLD by default, the tight one). The
//! accountant composes counts, so consecutive identical steps cost nothing extra, and the
//! admission check remembers how far the current `(q, sigma)` is known to stay within budget,
//! so most authorizations run no accountant at all and cost one `fsync` (see `budget`).
//!
//! An exclusive `flock` keeps a second writer out for as long as the ledger is open; the
//! kernel releases it when the process dies.
//!
//! ```
//! use bastion_ledger::{Budget, Ledger, StepCharge};
//! # let dir = std::env::temp_dir().join(format!("ledger-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("privacy.ledger");
//! let key = [7u8; 32]; // in production: derived in the TEE, never stored by the host
//! let (mut ledger, recovery) = Ledger::open(&path, bastion_accountant::AccountantKind::Rdp, &key)?;
//! assert!(recovery.created);
//! ledger.register_dataset("hospital-a", Budget { epsilon: 8.0, delta: 1e-5 })?;
//! let auth = ledger.authorize(&StepCharge {
//!     step: 0,
//!     sigma: 1.0,
//!     datasets: vec![("hospital-a".into(), 0.01)],
//! })?;
//! assert_eq!(auth.step, 0);
//! // Only now may step 0's gradients leave the node.
//! assert!(ledger.spent("hospital-a")? > 0.0);
//! // A checkpoint taken now stores auth.position; a restore checks the ledger against it.
//! ledger.check_position(auth.position.records, &auth.position.digest)?;
//! # drop(ledger); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), bastion_ledger::LedgerError>(())
//! ```

mod budget;
mod error;
mod log;
mod record;

pub use bastion_accountant::{AccountantKind, Segment};
pub use error::{FrameError, LedgerError, Tamper};
pub use log::{read_log, read_log_verified, LogContents, LoggedRecord, TornTail};
pub use record::{
    DatasetRecord, HeaderRecord, NoteRecord, PlanRecord, Record, StepRecord, FORMAT_VERSION,
    MAX_RECORD_BYTES,
};

use budget::{validate_budget, DatasetState, Decision};
use log::LogFile;
use record::{ChainKey, GENESIS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest dataset name accepted, in bytes.
pub const MAX_DATASET_NAME: usize = 256;

/// A dataset's privacy budget: the (ε, δ) its records may lose in total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Total ε; steps stop before the accountant's ε would exceed it.
    pub epsilon: f64,
    /// The δ at which ε is computed.
    pub delta: f64,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(epsilon={}, delta={})", self.epsilon, self.delta)
    }
}

/// One DP step to authorize.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCharge {
    /// Step number; must be greater than every step already recorded.
    pub step: u64,
    /// Noise multiplier of the step.
    pub sigma: f64,
    /// Each dataset the step samples from, with its Poisson sampling rate `q`.
    pub datasets: Vec<(String, f64)>,
}

/// A job's plan, checked before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Steps the job will run.
    pub steps: u64,
    /// Noise multiplier of every step.
    pub sigma: f64,
    /// Each dataset the job samples from, with its Poisson sampling rate `q`.
    pub datasets: Vec<(String, f64)>,
}

/// The ε a plan would leave each dataset at.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEpsilon {
    /// The dataset.
    pub dataset: String,
    /// ε after what was spent plus the planned steps.
    pub planned_epsilon: f64,
    /// The dataset's budget.
    pub budget: Budget,
}

/// Proof that a step was recorded durably.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    /// The step authorized.
    pub step: u64,
    /// The ledger's position after the step's record.
    pub position: Position,
    /// Per dataset charged: steps so far and a lower bound on the steps still allowed.
    pub datasets: Vec<Charged>,
}

/// One dataset's account after an authorized step.
#[derive(Debug, Clone, PartialEq)]
pub struct Charged {
    /// The dataset.
    pub dataset: String,
    /// Steps charged to it so far, this one included.
    pub steps: u64,
    /// At least this many more steps at the same `q` and `sigma` are known to fit (there may
    /// be more: the ledger only looks ahead as far as it needed to).
    pub steps_left_at_least: u64,
}

/// Where the ledger stands: what a checkpoint stores so a restore can check that the ledger
/// holds every step the checkpoint's weights have seen, and the same history
/// ([`Ledger::check_position`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Valid records in the log, the header included; grows with every record. Store this
    /// one as the checkpoint's `ledger_position`.
    pub records: u64,
    /// Byte offset just past the last record (the file length).
    pub offset: u64,
    /// The chain digest after the last record ([`Ledger::digest_at`]`(records)`); store it
    /// beside `records`.
    pub digest: [u8; 32],
}

/// What opening the ledger found.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// The file did not exist and was created.
    pub created: bool,
    /// Valid records replayed, the header included.
    pub records: u64,
    /// Step records among them.
    pub steps: u64,
    /// A torn last frame that was cut off (a write that never completed, so never
    /// acknowledged).
    pub torn_tail: Option<TornTail>,
}

/// The durable privacy ledger. One writer at a time (an exclusive file lock is held while
/// it is open).
#[derive(Debug)]
pub struct Ledger {
    log: LogFile,
    kind: AccountantKind,
    /// `chain[n]` is the chain digest after the first `n` records (`chain[0]` is the genesis
    /// value), so `chain.len() - 1` records are in the log. 32 bytes a record: a million
    /// steps cost 32 MB, far less than the model.
    chain: Vec<[u8; 32]>,
    last_step: Option<u64>,
    datasets: BTreeMap<String, DatasetState>,
    plan: Option<PlanRecord>,
}

impl Ledger {
    /// Opens the ledger at `path` sealed with `key`, creating it (durably: file and directory
    /// are synced; the file 0600, a missing parent directory 0700) if it does not exist, and
    /// replays it. A torn tail is cut and reported; damage in the middle, tampering
    /// ([`LedgerError::Tampered`]), another key ([`LedgerError::WrongKey`]), a file that is not
    /// a ledger, or one created with another accountant are errors, and the file is left as
    /// it was.
    ///
    /// Use this only where a missing ledger really means a fresh node; a node that may have
    /// trained before opens with [`Ledger::open_existing`].
    pub fn open(
        path: impl AsRef<Path>,
        kind: AccountantKind,
        key: &[u8; 32],
    ) -> Result<(Ledger, Recovery), LedgerError> {
        Self::open_inner(path.as_ref(), kind, key, true)
    }

    /// Opens an existing ledger as [`Ledger::open`] does, but refuses with
    /// [`LedgerError::Missing`] if there is none: a deleted ledger must not come back empty,
    /// which would forget every dataset's spent budget.
    pub fn open_existing(
        path: impl AsRef<Path>,
        kind: AccountantKind,
        key: &[u8; 32],
    ) -> Result<(Ledger, Recovery), LedgerError> {
        Self::open_inner(path.as_ref(), kind, key, false)
    }

    fn open_inner(
        path: &Path,
        kind: AccountantKind,
        key: &[u8; 32],
        create: bool,
    ) -> Result<(Ledger, Recovery), LedgerError> {
        let chain_key = ChainKey::new(key);
        let exists = match std::fs::metadata(path) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(log::io_err(path, "stat", e)),
        };
        let mut created = false;
        if !exists {
            if !create {
                return Err(LedgerError::Missing {
                    path: path.to_owned(),
                });
            }
            let header = Record::Header(HeaderRecord {
                format: FORMAT_VERSION,
                accountant: kind.name().to_owned(),
                created_unix_ms: now_ms(),
            });
            created = LogFile::create(path, &header, &chain_key)?;
        }
        let (log, bytes) = LogFile::open(path, chain_key)?;
        let contents = log::scan(&bytes, path, Some(log.key()))?;
        drop(bytes);
        let mut ledger = Ledger {
            log,
            kind,
            chain: Vec::with_capacity(contents.records.len() + 1),
            last_step: None,
            datasets: BTreeMap::new(),
            plan: None,
        };
        ledger.chain.push(GENESIS);
        let mut steps = 0;
        for LoggedRecord {
            offset,
            digest,
            record,
        } in &contents.records
        {
            let invalid = |e: LedgerError| LedgerError::InvalidRecord {
                path: path.to_owned(),
                offset: *offset,
                reason: e.to_string(),
            };
            match record {
                Record::Header(h) if h.accountant != kind.name() => {
                    return Err(LedgerError::AccountantMismatch {
                        path: path.to_owned(),
                        recorded: h.accountant.clone(),
                        requested: kind.name().to_owned(),
                    })
                }
                Record::Header(_) | Record::Note(_) => {}
                Record::Dataset(d) => match ledger.datasets.get_mut(&d.name) {
                    // A later record of a registered dataset can only lower it.
                    Some(state) if is_lower(d.budget, state.budget()) => {
                        state.lower(d.budget.epsilon)
                    }
                    _ => {
                        ledger
                            .check_registration(&d.name, d.budget)
                            .map_err(invalid)?;
                        ledger.insert_dataset(&d.name, d.budget);
                    }
                },
                Record::Step(s) => {
                    ledger
                        .validate_step(s.step, s.sigma, &s.datasets)
                        .map_err(invalid)?;
                    ledger.commit_step(s).map_err(invalid)?;
                    steps += 1;
                }
                Record::Plan(p) => {
                    validate_plan(p).map_err(invalid)?;
                    ledger.plan = Some(p.clone());
                }
            }
            ledger.chain.push(*digest);
        }
        debug_assert_eq!(*ledger.chain.last().expect("genesis"), contents.head());
        if let Some(torn) = contents.torn_tail {
            tracing::warn!(
                path = %path.display(),
                offset = torn.offset,
                bytes = torn.bytes,
                reason = %torn.reason,
                "ledger: cutting a torn last record (never acknowledged)"
            );
            ledger.log.truncate(torn.offset)?;
        }
        debug_assert_eq!(ledger.log.end(), contents.end);
        tracing::info!(
            path = %path.display(),
            accountant = kind.name(),
            records = ledger.records(),
            steps,
            created,
            "ledger open"
        );
        let recovery = Recovery {
            created,
            records: ledger.records(),
            steps,
            torn_tail: contents.torn_tail,
        };
        Ok((ledger, recovery))
    }

    /// Registers a dataset with its budget, durably. Registering again with the same budget
    /// does nothing; with a different budget it is refused ([`LedgerError::BudgetMismatch`]):
    /// a budget can never be raised by registering again.
    pub fn register_dataset(&mut self, name: &str, budget: Budget) -> Result<(), LedgerError> {
        if self.check_registration(name, budget)? {
            return Ok(());
        }
        self.append(&Record::Dataset(DatasetRecord {
            name: name.to_owned(),
            budget,
            unix_ms: now_ms(),
        }))?;
        self.insert_dataset(name, budget);
        Ok(())
    }

    /// Lowers a registered dataset's ε budget to `epsilon` (same δ): its owner's right, made
    /// durable before it returns. Raising it, or changing nothing, is refused. A budget below
    /// what was already spent stops every further step.
    pub fn lower_budget(&mut self, name: &str, epsilon: f64) -> Result<Budget, LedgerError> {
        let registered = self.budget(name)?;
        let requested = Budget {
            epsilon,
            delta: registered.delta,
        };
        validate_budget(name, requested)?;
        if !is_lower(requested, registered) {
            return Err(LedgerError::NotLower {
                dataset: name.to_owned(),
                registered,
                requested,
            });
        }
        self.append(&Record::Dataset(DatasetRecord {
            name: name.to_owned(),
            budget: requested,
            unix_ms: now_ms(),
        }))?;
        self.dataset_mut(name)?.lower(epsilon);
        Ok(requested)
    }

    /// Checks that a job running `plan` would keep every dataset within budget: ε after what
    /// was spent plus all planned steps. Refuses with [`LedgerError::PlanExceedsBudget`] for
    /// the first dataset that would exceed. Writes nothing.
    pub fn check_plan(&mut self, plan: &Plan) -> Result<Vec<PlannedEpsilon>, LedgerError> {
        if plan.steps == 0 {
            return Err(LedgerError::InvalidCharge {
                reason: "a plan needs at least one step".into(),
            });
        }
        self.validate_charge(plan.sigma, &plan.datasets)?;
        let mut out = Vec::with_capacity(plan.datasets.len());
        for (name, q) in &plan.datasets {
            let state = self.dataset_mut(name)?;
            let acct_err = |source| LedgerError::Accountant {
                dataset: name.clone(),
                source,
            };
            let planned_epsilon = state
                .epsilon_after(*q, plan.sigma, plan.steps)
                .map_err(acct_err)?;
            let budget = state.budget();
            // NaN or +inf counts as over budget.
            let within = planned_epsilon <= budget.epsilon;
            if !within {
                return Err(LedgerError::PlanExceedsBudget {
                    dataset: name.clone(),
                    planned_epsilon,
                    spent: state.spent().map_err(acct_err)?,
                    budget: budget.epsilon,
                });
            }
            out.push(PlannedEpsilon {
                dataset: name.clone(),
                planned_epsilon,
                budget,
            });
        }
        // The plan's steps are now known to fit: the job's authorizations need no accountant.
        for (name, q) in &plan.datasets {
            self.dataset_mut(name)?.seed(*q, plan.sigma, plan.steps);
        }
        Ok(out)
    }

    /// Authorizes one step: if every dataset's ε after it stays within budget, appends the
    /// step and returns once it is on disk (`write_all`, then `sync_data`). Otherwise refuses
    /// with [`LedgerError::BudgetExhausted`] and writes nothing. Step numbers must strictly
    /// increase.
    pub fn authorize(&mut self, charge: &StepCharge) -> Result<Authorization, LedgerError> {
        self.validate_step(charge.step, charge.sigma, &charge.datasets)?;
        let mut left = Vec::with_capacity(charge.datasets.len());
        for (name, q) in &charge.datasets {
            let state = self.dataset_mut(name)?;
            let acct_err = |source| LedgerError::Accountant {
                dataset: name.clone(),
                source,
            };
            match state.decide(*q, charge.sigma).map_err(acct_err)? {
                Decision::Admit { left_at_least } => left.push(left_at_least),
                Decision::Refuse { would_spend } => {
                    let budget = state.budget().epsilon;
                    let spent = state.spent().map_err(acct_err)?;
                    tracing::warn!(dataset = %name, step = charge.step, spent, would_spend, budget, "privacy budget exhausted");
                    return Err(LedgerError::BudgetExhausted {
                        dataset: name.clone(),
                        spent,
                        would_spend,
                        budget,
                    });
                }
            }
        }
        let record = StepRecord {
            step: charge.step,
            sigma: charge.sigma,
            datasets: charge.datasets.clone(),
            unix_ms: now_ms(),
        };
        self.append(&Record::Step(record.clone()))?;
        self.commit_step(&record)?;
        let datasets = charge
            .datasets
            .iter()
            .zip(left)
            .map(|((name, _), steps_left_at_least)| Charged {
                dataset: name.clone(),
                steps: self.datasets[name].steps(),
                steps_left_at_least,
            })
            .collect();
        Ok(Authorization {
            step: charge.step,
            position: self.position(),
            datasets,
        })
    }

    /// Appends a free-text note to the audit trail, durably.
    pub fn note(&mut self, text: &str) -> Result<(), LedgerError> {
        self.append(&Record::Note(NoteRecord {
            text: text.to_owned(),
            unix_ms: now_ms(),
        }))
    }

    /// Records a job's plan, durably (`write_all`, then `sync_data`, like a step), so a
    /// restarted coordinator resumes it ([`Ledger::plan`]) instead of calibrating a new one.
    /// Refuses a malformed plan ([`LedgerError::InvalidPlan`]) and then writes nothing. It does
    /// not check the budget: run [`Ledger::check_plan`] first.
    pub fn record_plan(&mut self, plan: &PlanRecord) -> Result<(), LedgerError> {
        validate_plan(plan)?;
        self.append(&Record::Plan(plan.clone()))?;
        self.plan = Some(plan.clone());
        Ok(())
    }

    /// The plan recorded last, if any.
    pub fn plan(&self) -> Option<&PlanRecord> {
        self.plan.as_ref()
    }

    /// ε spent by a dataset so far, at its budget's δ (computed on first call after a step,
    /// then cached).
    pub fn spent(&self, dataset: &str) -> Result<f64, LedgerError> {
        self.dataset(dataset)?
            .spent()
            .map_err(|source| LedgerError::Accountant {
                dataset: dataset.to_owned(),
                source,
            })
    }

    /// ε a dataset has left (never negative).
    pub fn remaining(&self, dataset: &str) -> Result<f64, LedgerError> {
        let budget = self.budget(dataset)?.epsilon;
        Ok((budget - self.spent(dataset)?).max(0.0))
    }

    /// Steps charged to a dataset.
    pub fn steps(&self, dataset: &str) -> Result<u64, LedgerError> {
        Ok(self.dataset(dataset)?.steps())
    }

    /// A dataset's budget.
    pub fn budget(&self, dataset: &str) -> Result<Budget, LedgerError> {
        Ok(self.dataset(dataset)?.budget())
    }

    /// The `(q, sigma)` segments charged to a dataset, in order (consecutive identical steps
    /// merged).
    pub fn segments(&self, dataset: &str) -> Result<&[Segment], LedgerError> {
        Ok(self.dataset(dataset)?.segments())
    }

    /// Registered datasets, in name order.
    pub fn datasets(&self) -> impl Iterator<Item = &str> + '_ {
        self.datasets.keys().map(String::as_str)
    }

    /// The last step recorded, if any.
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
    }

    /// Where the ledger stands (store `records` and `digest` in checkpoints).
    pub fn position(&self) -> Position {
        Position {
            records: self.records(),
            offset: self.log.end(),
            digest: *self
                .chain
                .last()
                .expect("the genesis digest is always there"),
        }
    }

    /// The chain digest after the first `records` records (the genesis value, all zeros, for
    /// 0), or `None` if the ledger holds fewer. Digests depend on the key and on every record
    /// before, and stay the same across reopens.
    pub fn digest_at(&self, records: u64) -> Option<[u8; 32]> {
        usize::try_from(records)
            .ok()
            .and_then(|n| self.chain.get(n))
            .copied()
    }

    /// Checks that this ledger extends the one a checkpoint was bound to: it holds at least
    /// `records` records ([`LedgerError::RolledBack`] otherwise) and its chain digest after
    /// `records` records is `digest` ([`LedgerError::HistoryMismatch`] otherwise).
    pub fn check_position(&self, records: u64, digest: &[u8; 32]) -> Result<(), LedgerError> {
        match self.digest_at(records) {
            None => Err(LedgerError::RolledBack {
                path: self.path().to_owned(),
                records: self.records(),
                needed: records,
            }),
            Some(d) if d != *digest => Err(LedgerError::HistoryMismatch {
                path: self.path().to_owned(),
                records,
            }),
            Some(_) => Ok(()),
        }
    }

    /// The accountant this ledger enforces budgets with.
    pub fn kind(&self) -> AccountantKind {
        self.kind
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        self.log.path()
    }

    fn records(&self) -> u64 {
        self.chain.len() as u64 - 1
    }

    /// Appends a record linked to the current chain head, durably, and extends the chain.
    fn append(&mut self, record: &Record) -> Result<(), LedgerError> {
        let prev = *self
            .chain
            .last()
            .expect("the genesis digest is always there");
        let digest = self.log.append(record, &prev)?;
        self.chain.push(digest);
        Ok(())
    }

    fn dataset(&self, name: &str) -> Result<&DatasetState, LedgerError> {
        self.datasets
            .get(name)
            .ok_or_else(|| LedgerError::UnknownDataset {
                dataset: name.to_owned(),
            })
    }

    fn dataset_mut(&mut self, name: &str) -> Result<&mut DatasetState, LedgerError> {
        self.datasets
            .get_mut(name)
            .ok_or_else(|| LedgerError::UnknownDataset {
                dataset: name.to_owned(),
            })
    }

    /// Validates a registration; `Ok(true)` if the dataset already has exactly this budget.
    fn check_registration(&self, name: &str, budget: Budget) -> Result<bool, LedgerError> {
        if name.is_empty() || name.len() > MAX_DATASET_NAME {
            return Err(LedgerError::InvalidDatasetName {
                dataset: name.to_owned(),
                reason: "must be 1 to 256 bytes",
            });
        }
        validate_budget(name, budget)?;
        match self.datasets.get(name) {
            None => Ok(false),
            Some(d) if d.budget() == budget => Ok(true),
            Some(d) => Err(LedgerError::BudgetMismatch {
                dataset: name.to_owned(),
                registered: d.budget(),
                requested: budget,
            }),
        }
    }

    fn insert_dataset(&mut self, name: &str, budget: Budget) {
        self.datasets
            .entry(name.to_owned())
            .or_insert_with(|| DatasetState::new(budget, self.kind));
    }

    /// Checks `sigma` and the dataset list of a step or plan.
    fn validate_charge(&self, sigma: f64, datasets: &[(String, f64)]) -> Result<(), LedgerError> {
        let invalid = |reason: String| Err(LedgerError::InvalidCharge { reason });
        if !(sigma > 0.0 && sigma.is_finite()) {
            return invalid(format!(
                "noise multiplier sigma must be positive and finite, got {sigma}"
            ));
        }
        if datasets.is_empty() {
            return invalid("no datasets charged".into());
        }
        let mut seen = BTreeSet::new();
        for (name, q) in datasets {
            self.dataset(name)?;
            if !seen.insert(name.as_str()) {
                return invalid(format!("dataset {name:?} charged twice"));
            }
            if !(*q > 0.0 && *q <= 1.0) {
                return invalid(format!(
                    "dataset {name:?}: sampling rate q must be in (0, 1], got {q}"
                ));
            }
        }
        Ok(())
    }

    fn validate_step(
        &self,
        step: u64,
        sigma: f64,
        datasets: &[(String, f64)],
    ) -> Result<(), LedgerError> {
        if let Some(last) = self.last_step {
            if step <= last {
                return Err(LedgerError::StepNotIncreasing { step, last });
            }
        }
        self.validate_charge(sigma, datasets)
    }

    /// Applies a validated step to the in-memory accounts.
    fn commit_step(&mut self, step: &StepRecord) -> Result<(), LedgerError> {
        for (name, q) in &step.datasets {
            self.dataset_mut(name)?
                .commit(*q, step.sigma)
                .map_err(|source| LedgerError::Accountant {
                    dataset: name.clone(),
                    source,
                })?;
        }
        self.last_step = Some(step.step);
        Ok(())
    }
}

/// Checks a plan's numbers; a plan read back from the log is checked the same way.
fn validate_plan(plan: &PlanRecord) -> Result<(), LedgerError> {
    let invalid = |reason: String| {
        Err(LedgerError::InvalidPlan {
            job: plan.job.clone(),
            reason,
        })
    };
    let PlanRecord {
        job,
        q,
        sigma,
        max_grad_norm,
        steps,
        datasets,
    } = plan;
    if job.is_empty() || job.len() > MAX_DATASET_NAME {
        return invalid(format!("job name must be 1 to {MAX_DATASET_NAME} bytes"));
    }
    if !(*q > 0.0 && *q <= 1.0) {
        return invalid(format!("sampling rate q must be in (0, 1], got {q}"));
    }
    if !(*sigma > 0.0 && sigma.is_finite()) {
        return invalid(format!(
            "noise multiplier sigma must be positive and finite, got {sigma}"
        ));
    }
    if !(*max_grad_norm > 0.0 && max_grad_norm.is_finite()) {
        return invalid(format!(
            "clipping norm max_grad_norm must be positive and finite, got {max_grad_norm}"
        ));
    }
    if *steps == 0 {
        return invalid("a plan needs at least one step".into());
    }
    if datasets.is_empty() {
        return invalid("a plan needs at least one dataset".into());
    }
    let mut seen = BTreeSet::new();
    for d in datasets {
        if d.is_empty() || d.len() > MAX_DATASET_NAME {
            return invalid(format!(
                "dataset name {d:?} must be 1 to {MAX_DATASET_NAME} bytes"
            ));
        }
        if !seen.insert(d.as_str()) {
            return invalid(format!("dataset {d:?} listed twice"));
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether `new` lowers `old`: smaller ε at the same δ.
fn is_lower(new: Budget, old: Budget) -> bool {
    new.delta == old.delta && new.epsilon < old.epsilon
}
