//! Messages between a node and the Supervisor, over the coordinator link (postcard frames on
//! mutually attested TLS). Gradients never travel here (the ring carries them), and neither
//! does any record or any statistic of one: no sample counts, no losses. A member says only
//! that it is alive, ready, done, refusing or failing; the coordinator is another party.

use crate::job::{LoraSpec, OptimSpec};
use bastion_models::gpt2::Gpt2Config;
use serde::{Deserialize, Serialize};

/// What the coordinator tells an attested node before it joins: the job's identity, the task
/// its data must fit, and the digests of the files that follow as [`Chunk`]s (the tokenizer,
/// then the initial weights). The node checks every byte against these digests, loads and
/// validates its datasets for this task, and only then joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOffer {
    /// The coordinator's name.
    pub coordinator: String,
    /// The job's identity (a digest of the job file and of these blobs).
    pub job: String,
    /// The model and what a record must be.
    pub task: Task,
    /// The optimizer.
    pub optim: OptimSpec,
    /// The tokenizer.json (language models).
    pub tokenizer: Option<BlobInfo>,
    /// The initial weights, safetensors (every variable, the model's own names and layout).
    pub weights: BlobInfo,
    /// The datasets the job trains on (empty: every dataset each member holds).
    pub datasets: Vec<String>,
    /// The model owner who submitted the job (its key's SHA-256), if one did: a member checks
    /// that each of its data owners allows it before touching their data.
    pub model_owner: Option<String>,
}

/// A file sent after the offer: its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// Bytes.
    pub len: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// One piece of a blob announced in a [`JobOffer`] (control frames are small).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk(pub Vec<u8>);

/// The learning task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Task {
    /// Image classification with ResNet-GN.
    Classify {
        /// 18 or 34.
        depth: u32,
        /// Class names in label order.
        classes: Vec<String>,
        /// Image side in pixels.
        image_size: i64,
        /// 1 or 3.
        channels: i64,
    },
    /// Causal language modelling with GPT-2.
    CausalLm {
        /// The model's shape.
        config: Gpt2Config,
        /// Adapters (the base is frozen).
        lora: Option<LoraSpec>,
        /// Tokens per record (truncated and padded to it).
        seq_len: i64,
        /// The base checkpoint's name (its directory's), recorded in a released adapter.
        base: String,
    },
}

impl Task {
    /// What every dataset of this task must look like, as a node reports it on joining.
    pub fn data_shape(&self) -> String {
        match self {
            Task::Classify {
                classes,
                image_size,
                channels,
                ..
            } => format!(
                "images {channels}x{image_size}x{image_size}, {} classes",
                classes.len()
            ),
            Task::CausalLm {
                config, seq_len, ..
            } => format!(
                "tokens {seq_len} per record, vocabulary {}",
                config.vocab_size
            ),
        }
    }
}

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
    /// Its records' shape as loaded and checked ([`Task::data_shape`] of the job).
    pub shape: String,
    /// SHA-256 (hex) of its content as its owner sent or the node sealed it; empty when the
    /// node does not say. Recorded in the privacy receipt.
    #[serde(default)]
    pub content_sha256: String,
    /// Who owns it (the owner's key digest for a pushed dataset), if the node knows.
    /// Recorded in the privacy receipt.
    #[serde(default)]
    pub owner: Option<String>,
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
    /// The model as it stands, on the model owner's held-out data (not any party's records).
    Evaluated(Evaluation),
    /// The model could not be evaluated (no model on this node, or evaluation failed).
    EvaluationFailed {
        /// Why.
        reason: String,
    },
    /// The model is written to this node's release directory (answer to [`ToNode::Release`]).
    Released {
        /// The directory.
        path: String,
    },
    /// The model could not be released.
    ReleaseFailed {
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
    /// Evaluate on the model owner's held-out data and report (the coordinator's own node,
    /// at the end of the job).
    Evaluate,
    /// Write the released model now and answer [`ToSupervisor::Released`] (the coordinator's
    /// own node, before [`ToNode::Finish`], so the receipt can name what was written).
    Release,
    /// The job is over: save the final weights (unless already released) and exit.
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
    /// Tests only: no noise, seeded sampling. A member refuses a plan with this set unless
    /// its own config opts in, which only test builds allow.
    pub deterministic_for_tests: bool,
}

/// The released model's quality on the model owner's held-out data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Held-out records evaluated.
    pub records: u64,
    /// Classification: accuracy.
    pub test_accuracy: Option<f64>,
    /// Classification: ROC AUC (binary), or the macro average of one-vs-rest AUCs.
    pub auc: Option<f64>,
    /// Language models: perplexity of the initial weights.
    pub perplexity_before: Option<f64>,
    /// Language models: perplexity of the trained model.
    pub perplexity_after: Option<f64>,
}
