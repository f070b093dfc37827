//! The Accountant actor: the group's privacy ledger. It authorizes every step before it runs
//! and returns only once the step is on disk, so no gradient of an unrecorded step is ever
//! released; it refuses a job whose plan exceeds any dataset's remaining budget.

use bastion_ledger::{Budget, Ledger, Plan, PlanRecord, StepCharge};
use bastion_metrics::NodeMetrics;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Messages to the Accountant.
pub enum AccountantMsg {
    /// Register datasets with their budgets (idempotent; a budget cannot be raised).
    Register {
        /// Name and budget.
        datasets: Vec<(String, Budget)>,
        /// Done or why not.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Would this plan fit every dataset's remaining budget?
    CheckPlan {
        /// The plan.
        plan: Plan,
        /// Done or why not.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Authorize and durably record one step; the reply carries its ledger step number and
    /// every dataset's epsilon after it.
    Authorize {
        /// Noise multiplier.
        sigma: f64,
        /// Datasets sampled, with their rates.
        datasets: Vec<(String, f64)>,
        /// The ledger step, or why the step is refused (budget exhausted, disk error).
        reply: RpcReplyPort<Result<u64, String>>,
    },
    /// Record the job's plan durably (a restarted coordinator resumes it).
    RecordPlan {
        /// The plan.
        plan: PlanRecord,
        /// Done or why not.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// The latest plan recorded, if any.
    RecordedPlan {
        /// The plan.
        reply: RpcReplyPort<Option<PlanRecord>>,
    },
    /// A line for the audit trail (who formed the group, why a job ended).
    Note(String),
    /// Epsilon spent so far per dataset, with its budget.
    Spent {
        /// Every dataset of the ledger.
        reply: RpcReplyPort<Vec<DatasetPrivacy>>,
    },
}

/// The Accountant's state: the ledger, and the gauges that show its figures.
pub struct AccountantState {
    ledger: Ledger,
    metrics: NodeMetrics,
}

impl AccountantState {
    /// Sets the epsilon gauges to the ledger's figures.
    fn show_spent(&self) {
        let spent = spent_per_dataset(&self.ledger);
        for d in &spent {
            self.metrics
                .set_privacy(&d.dataset, d.epsilon, d.epsilon_budget);
        }
        // The dataset closest to its budget: what progress displays show.
        if let Some(d) = spent.iter().max_by(|a, b| {
            (a.epsilon / a.epsilon_budget).total_cmp(&(b.epsilon / b.epsilon_budget))
        }) {
            tracing::info!(
                dataset = %d.dataset,
                epsilon = d.epsilon,
                budget = d.epsilon_budget,
                "privacy spent (the ledger's figure)"
            );
        }
    }
}

/// A dataset's account as the ledger has it: what was released, never an estimate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetPrivacy {
    /// The dataset.
    pub dataset: String,
    /// Epsilon spent: the ledger's accountant over every step recorded (aborted ones too).
    pub epsilon: f64,
    /// The owner's budget.
    pub epsilon_budget: f64,
    /// The delta both are computed at.
    pub delta: f64,
    /// Steps charged.
    pub steps: u64,
    /// The `(q, sigma, steps)` segments charged, in order: the history `epsilon` is computed
    /// from (the privacy receipt records it so a verifier can recompute the figure).
    pub segments: Vec<bastion_ledger::Segment>,
}

/// Every dataset's account in `ledger`. Datasets sampled together share one history, so
/// the accountant runs once per distinct history and delta, not once per dataset.
pub fn spent_per_dataset(ledger: &Ledger) -> Vec<DatasetPrivacy> {
    let mut known: Vec<(Vec<bastion_ledger::Segment>, u64, f64)> = Vec::new();
    ledger
        .datasets()
        .filter_map(|name| {
            let budget = ledger.budget(name).ok()?;
            let history = ledger.segments(name).ok()?.to_vec();
            let delta = budget.delta.to_bits();
            let epsilon = match known.iter().find(|(h, d, _)| *h == history && *d == delta) {
                Some((_, _, eps)) => *eps,
                None => {
                    let eps = ledger.spent(name).ok()?;
                    known.push((history.clone(), delta, eps));
                    eps
                }
            };
            Some(DatasetPrivacy {
                dataset: name.to_string(),
                epsilon,
                epsilon_budget: budget.epsilon,
                delta: budget.delta,
                steps: ledger.steps(name).ok()?,
                segments: history,
            })
        })
        .collect()
}

/// The actor.
pub struct Accountant;

impl Actor for Accountant {
    type Msg = AccountantMsg;
    type State = AccountantState;
    type Arguments = (Ledger, NodeMetrics);

    async fn pre_start(
        &self,
        _myself: ActorRef<AccountantMsg>,
        (ledger, metrics): (Ledger, NodeMetrics),
    ) -> Result<AccountantState, ActorProcessingErr> {
        let state = AccountantState { ledger, metrics };
        state.show_spent();
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<AccountantMsg>,
        msg: AccountantMsg,
        state: &mut AccountantState,
    ) -> Result<(), ActorProcessingErr> {
        let ledger = &mut state.ledger;
        match msg {
            AccountantMsg::Register { datasets, reply } => {
                let result = datasets
                    .iter()
                    .try_for_each(|(name, budget)| ledger.register_dataset(name, *budget))
                    .map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            AccountantMsg::CheckPlan { plan, reply } => {
                let _ = reply.send(
                    ledger
                        .check_plan(&plan)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                );
            }
            AccountantMsg::Authorize {
                sigma,
                datasets,
                reply,
            } => {
                let step = ledger.last_step().map_or(0, |s| s + 1);
                let charge = StepCharge {
                    step,
                    sigma,
                    datasets,
                };
                // Blocking on purpose: nothing else may happen in the group until it is on disk.
                let result = ledger
                    .authorize(&charge)
                    .map(|a| a.step)
                    .map_err(|e| e.to_string());
                let authorized = result.is_ok();
                let _ = reply.send(result);
                if authorized {
                    // After the reply: the step's nodes start computing while the gauges are
                    // refreshed, long before any of them can release its share.
                    state.show_spent();
                }
            }
            AccountantMsg::RecordPlan { plan, reply } => {
                let _ = reply.send(ledger.record_plan(&plan).map_err(|e| e.to_string()));
            }
            AccountantMsg::RecordedPlan { reply } => {
                let _ = reply.send(ledger.plan().cloned());
            }
            AccountantMsg::Note(text) => {
                if let Err(e) = ledger.note(&text) {
                    tracing::error!(error = %e, "could not write a note to the ledger");
                }
            }
            AccountantMsg::Spent { reply } => {
                let _ = reply.send(spent_per_dataset(ledger));
            }
        }
        Ok(())
    }
}
