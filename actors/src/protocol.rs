//! Messages between a node and the Supervisor, over the coordinator link (postcard frames on
//! mutually attested TLS). Gradients never travel here (the ring carries them), and neither
//! does any record: a node reports only counts, losses and timings.

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
    /// Checkpoint steps it holds, newest last.
    pub checkpoints: Vec<u64>,
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
    /// Step done: the update is applied.
    StepDone {
        /// Group epoch.
        epoch: u64,
        /// Training step.
        step: u64,
        /// Records sampled on this node.
        samples: u64,
        /// Sum of the per-sample losses on this node.
        loss_sum: f64,
        /// Bytes this node sent in the all-reduce.
        allreduce_bytes: u64,
        /// Seconds the all-reduce took.
        allreduce_s: f64,
        /// The step was checkpointed.
        checkpointed: bool,
    },
    /// The step or the set-up failed on this node.
    Failed {
        /// Group epoch.
        epoch: u64,
        /// What went wrong.
        reason: String,
    },
    /// The final report (rank 0 only): accuracy on the coordinator's test tiles.
    Evaluated {
        /// Test accuracy.
        test_accuracy: f64,
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
    /// Evaluate on generated test tiles and report (rank 0 only).
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

/// DP-SGD settings shared by the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// ResNet depth.
    pub depth: u32,
    /// Tile side.
    pub image_size: i64,
    /// Poisson sampling rate of every dataset.
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
    /// Tests only: no noise, seeded sampling.
    pub deterministic_for_tests: bool,
}
