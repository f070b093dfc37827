//! The Accountant actor: the group's privacy ledger. It authorizes every step before it runs
//! and returns only once the step is on disk, so no gradient of an unrecorded step is ever
//! released; it refuses a job whose plan exceeds any dataset's remaining budget.

use bastion_ledger::{Budget, Ledger, Plan, StepCharge};
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
    /// Authorize and durably record one step; the reply carries its ledger step number.
    Authorize {
        /// Noise multiplier.
        sigma: f64,
        /// Datasets sampled, with their rates.
        datasets: Vec<(String, f64)>,
        /// The ledger step, or why the step is refused (budget exhausted, disk error).
        reply: RpcReplyPort<Result<u64, String>>,
    },
    /// A line for the audit trail (who formed the group, why a job ended).
    Note(String),
    /// Epsilon spent so far per dataset, with its budget.
    Spent {
        /// (dataset, spent, budget epsilon).
        reply: RpcReplyPort<Vec<(String, f64, f64)>>,
    },
}

/// The actor.
pub struct Accountant;

impl Actor for Accountant {
    type Msg = AccountantMsg;
    type State = Ledger;
    type Arguments = Ledger;

    async fn pre_start(
        &self,
        _myself: ActorRef<AccountantMsg>,
        ledger: Ledger,
    ) -> Result<Ledger, ActorProcessingErr> {
        Ok(ledger)
    }

    async fn handle(
        &self,
        _myself: ActorRef<AccountantMsg>,
        msg: AccountantMsg,
        ledger: &mut Ledger,
    ) -> Result<(), ActorProcessingErr> {
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
                let _ = reply.send(result);
            }
            AccountantMsg::Note(text) => {
                if let Err(e) = ledger.note(&text) {
                    tracing::error!(error = %e, "could not write a note to the ledger");
                }
            }
            AccountantMsg::Spent { reply } => {
                let names: Vec<String> = ledger.datasets().map(str::to_string).collect();
                let spent = names
                    .into_iter()
                    .filter_map(|name| {
                        let spent = ledger.spent(&name).ok()?;
                        let budget = ledger.budget(&name).ok()?;
                        Some((name, spent, budget.epsilon))
                    })
                    .collect();
                let _ = reply.send(spent);
            }
        }
        Ok(())
    }
}
