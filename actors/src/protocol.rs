//! Messages between a node and the Supervisor, over the coordinator link (postcard frames on
//! mutually attested TLS). Gradients never travel here (the ring carries them), and neither
//! does any record or any statistic of one: no sample counts, no losses. A member says only
//! that it is alive, ready, done, refusing or failing; the coordinator is another party.

use serde::{Deserialize, Serialize};

/// A node's hello on the coordinator link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    /// The node's name.
    pub node: String,
    /// Where its ring listener accepts the previous rank.
    pub ring_addr: String,
    /// Its datasets: name, record count, budget.
    pub datasets: Vec<DatasetInfo>,
    /// Checkpoints it holds, newest last: (step, job). Only those of the running job count.
    pub checkpoints: Vec<(u64, String)>,
}

/// What the Supervisor learns of a dataset: its size and budget, never its records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Name.
    pub name: String,
    /// Number of records.
    pub records: u64,
    /// The owner's epsilon budget.
    pub epsilon_budget: f64,
    /// The owner's delta.
    pub delta: f64,
}

/// The Supervisor's hello back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admitted {
    /// The coordinator's name.
    pub coordinator: String,
}

/// Node to Supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToSupervisor {
    /// Still alive.
    Heartbeat,
    /// Ring formed and state restored for `epoch`.
    Ready {
        /// The group epoch.
        epoch: u64,
    },
    /// Step done: the update is applied. Nothing about the step's sample is reported.
    StepDone {
        /// Group epoch.
        epoch: u64,
        /// Training step.
        step: u64,
        /// The step was checkpointed.
        checkpointed: bool,
    },
    /// This node will not take part: the plan or the step would break a protection it owes
    /// its data owners (its own budget, noise switched off). Final for this job.
    Refused {
        /// Group epoch.
        epoch: u64,
        /// Why.
        reason: String,
    },
    /// The step or the set-up failed on this node.
    Failed {
        /// Group epoch.
        epoch: u64,
        /// What went wrong.
        reason: String,
    },
    /// Accuracy of the model as it stands on generated test tiles (public data, not any
    /// party's records).
    Evaluated {
        /// Test accuracy.
        test_accuracy: f64,
    },
    /// The model could not be evaluated (no model on this node, or evaluation failed).
    EvaluationFailed {
        /// Why.
        reason: String,
    },
}

/// Supervisor to node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToNode {
    /// A (re-)formed group: connect the ring, restore, report Ready.
    Form(GroupPlan),
    /// Run one step (already authorized and recorded by the Accountant).
    Step {
        /// Group epoch.
        epoch: u64,
        /// Training step (the model's update count after it is `step + 1`).
        step: u64,
        /// The step's record in the privacy ledger (written before this order was sent).
        ledger_step: u64,
        /// Checkpoint after the update.
        checkpoint: bool,
    },
    /// Drop the current step and the ring; a new `Form` follows (or `Finish`).
    Abort {
        /// Why.
        reason: String,
    },
    /// Evaluate on generated test tiles and report (one node, at the end of the job).
    Evaluate {
        /// Test tiles to generate.
        records: u64,
    },
    /// The job is over: save the final weights and exit.
    Finish {
        /// Why it ended.
        reason: String,
        /// Exit with failure.
        failed: bool,
    },
}

/// Everything a node needs for one incarnation of the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupPlan {
    /// Incremented at every (re-)formation; ring frames carry it.
    pub epoch: u64,
    /// This node's rank.
    pub rank: u64,
    /// Ranks in order: node name, ring address, TLS key fingerprint.
    pub members: Vec<(String, String, String)>,
    /// Restore this checkpoint step (none: fresh weights from the seed).
    pub resume_from: Option<u64>,
    /// The DP settings every node applies.
    pub training: Training,
}

/// DP-SGD settings shared by the group: the plan each member checks against its own budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// The job's identity (a digest of its settings): checkpoints are bound to it.
    pub job: String,
    /// ResNet depth.
    pub depth: u32,
    /// Tile side.
    pub image_size: i64,
    /// Steps in the plan: members refuse a plan whose full schedule exceeds their budget.
    pub steps: u64,
    /// Poisson sampling rate of every dataset. Kept when the group shrinks: it is the
    /// privacy parameter; the expected batch shrinks instead.
    pub q: f64,
    /// Noise multiplier.
    pub sigma: f64,
    /// Clipping bound C (the sensitivity; nodes clip a little below it, see the trainer).
    pub max_grad_norm: f64,
    /// Expected batch size of the whole group.
    pub expected_batch_size: f64,
    /// Learning rate.
    pub lr: f64,
    /// Seed of the initial weights.
    pub init_seed: i64,
    /// Tests only: no noise, seeded sampling. A member refuses a plan with this set unless
    /// its own config opts in, which only test builds allow.
    pub deterministic_for_tests: bool,
}
