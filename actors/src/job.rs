//! The model owner's job (`job.toml`): which model, how it is optimized, the privacy target,
//! the schedule, and the model owner's held-out data. Read on the coordinator only; members
//! learn what they need of it (the task, the initial weights' digest) when they are admitted.
//!
//! Unknown fields are refused everywhere; every field has a safe default except the ones
//! that only the model owner can know (a checkpoint path, an eval file).
//!
//! ```toml
//! [model]
//! kind = "gpt2"
//! checkpoint = "checkpoints/gpt2"   # config.json, model.safetensors, tokenizer.json
//! seq_len = 128
//!
//! [lora]
//! rank = 8
//! alpha = 16.0
//! targets = ["c_attn"]
//!
//! [optim]
//! kind = "adamw"
//! lr = 1e-3
//! schedule = "cosine"
//! warmup_steps = 10
//!
//! [privacy]
//! epsilon = 8.0
//! delta = 1e-5
//! max_grad_norm = 1.0
//!
//! [schedule]
//! nodes = 3
//! batch_size = 64
//! epochs = 3
//!
//! [eval]
//! format = "jsonl"
//! path = "heldout.jsonl"
//! ```

use bastion_dp::accountant::AccountantKind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, OnNodeLoss};

/// The whole job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The model and its task.
    #[serde(default)]
    pub model: ModelSpec,
    /// LoRA adapters (GPT-2 only): the base model is frozen and only the adapters train.
    #[serde(default)]
    pub lora: Option<LoraSpec>,
    /// The optimizer, fed only the noisy average of clipped gradients.
    #[serde(default)]
    pub optim: OptimSpec,
    /// The privacy target.
    #[serde(default)]
    pub privacy: PrivacySpec,
    /// Group size, sampling, length, checkpoints, the loss policy.
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// The model owner's held-out data the report is computed on.
    #[serde(default)]
    pub eval: Option<EvalSpec>,
    /// The datasets it trains on, by name. A job a model owner submits must name them (each
    /// owner must allow that model owner); empty in a node.toml job: every member's datasets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    /// The model owner who submitted it (the SHA-256 of its key), set by the node that took
    /// the submission; never read from the file.
    #[serde(skip)]
    pub model_owner: Option<String>,
    /// SHA-256 (hex) of the job file's bytes exactly as read ([`JobSpec::load`],
    /// [`JobSpec::parse_file`]): what the model owner recomputes with `sha256sum job.toml`, and
    /// what the privacy receipt names. None for an inline `[job]` table, which has no file.
    #[serde(skip)]
    pub file_sha256: Option<String>,
    /// Tests only: no noise and seeded Poisson sampling, so runs can be compared exactly.
    /// A job with this set protects nothing and says so in every log line; every member
    /// refuses it unless its own config opts in. Absent from release builds.
    #[cfg(feature = "danger-test-switches")]
    #[serde(default)]
    pub danger_deterministic_for_tests: bool,
}

/// The model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModelSpec {
    /// Image classification: ResNet-18/34 with GroupNorm, trained from scratch.
    Resnet {
        /// 18 or 34.
        #[serde(default = "default_depth")]
        depth: u32,
        /// Class names, in label order (label i is `classes[i]`). Image folders must use
        /// exactly these subfolder names.
        #[serde(default = "default_classes")]
        classes: Vec<String>,
        /// Images are resized to this side in pixels.
        #[serde(default = "default_image_size")]
        image_size: i64,
        /// 1 (grayscale) or 3 (RGB).
        #[serde(default = "default_channels")]
        channels: i64,
    },
    /// Causal language modelling with GPT-2.
    Gpt2 {
        /// A Hugging Face checkpoint directory (`config.json`, `model.safetensors`,
        /// `tokenizer.json`), either tensor layout. Absent: a fresh model of `config`.
        #[serde(default)]
        checkpoint: Option<PathBuf>,
        /// The shape of a fresh model (only without `checkpoint`).
        #[serde(default)]
        config: Option<Gpt2Shape>,
        /// The tokenizer; default `<checkpoint>/tokenizer.json`.
        #[serde(default)]
        tokenizer: Option<PathBuf>,
        /// Records are truncated (and padded) to this many tokens.
        #[serde(default = "default_seq_len")]
        seq_len: i64,
    },
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Resnet {
            depth: default_depth(),
            classes: default_classes(),
            image_size: default_image_size(),
            channels: default_channels(),
        }
    }
}

/// A fresh GPT-2's shape; the vocabulary comes from the tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpt2Shape {
    /// Transformer blocks.
    pub n_layer: i64,
    /// Residual width.
    pub n_embd: i64,
    /// Attention heads (divides `n_embd`).
    pub n_head: i64,
    /// Longest sequence (at least `seq_len`).
    pub n_positions: i64,
}

/// LoRA on GPT-2's projections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSpec {
    /// Rank r of each adapter.
    pub rank: i64,
    /// Scale numerator: the update is `(alpha / r) B A`.
    #[serde(default = "default_lora_alpha")]
    pub alpha: f64,
    /// Which projections get adapters: any of `c_attn`, `c_proj`, `c_fc`.
    #[serde(default = "default_lora_targets")]
    pub targets: Vec<String>,
}

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// SGD with heavy-ball momentum.
    Sgd,
    /// AdamW (decoupled weight decay).
    Adamw,
}

/// How the learning rate moves over the planned steps (after warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Constant.
    Constant,
    /// Linear decay to zero at the last planned step.
    Linear,
    /// Cosine decay to zero at the last planned step.
    Cosine,
}

/// The optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSpec {
    /// `sgd` or `adamw`.
    #[serde(default = "default_optim_kind")]
    pub kind: OptimKind,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// SGD momentum.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// AdamW's moment decays.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// AdamW's denominator guard.
    #[serde(default = "default_adam_eps")]
    pub eps: f64,
    /// Weight decay (decoupled for AdamW, an L2 term for SGD).
    #[serde(default)]
    pub weight_decay: f64,
    /// Steps of linear warm-up from zero.
    #[serde(default)]
    pub warmup_steps: u64,
    /// `constant`, `linear` or `cosine`.
    #[serde(default = "default_lr_schedule")]
    pub schedule: LrSchedule,
}

impl Default for OptimSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl OptimSpec {
    /// The learning rate of update `step` (0-based) of `planned` steps.
    pub fn lr_at(&self, step: u64, planned: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = planned.saturating_sub(self.warmup_steps).max(1) as f64;
        let done = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Linear => self.lr * (1.0 - done),
            LrSchedule::Cosine => self.lr * 0.5 * (1.0 + (std::f64::consts::PI * done).cos()),
        }
    }
}

/// The privacy target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// Target epsilon the noise is calibrated to (never above any dataset's budget).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Target delta (never above any dataset's delta).
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// Per-sample clipping bound C.
    #[serde(default = "one")]
    pub max_grad_norm: f64,
    /// `pld` (tight, default) or `rdp`.
    #[serde(default)]
    pub accountant: AccountantKind,
}

impl Default for PrivacySpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// Group size, sampling and length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Nodes that must join before training starts.
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    /// Expected batch of the whole group: q = this / all records. Default 64 unless
    /// `sampling_rate` is given.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// The Poisson sampling rate q itself (instead of `batch_size`).
    #[serde(default)]
    pub sampling_rate: Option<f64>,
    /// Passes over the pooled data: steps = epochs / q. Default 2 unless `steps` is given.
    #[serde(default)]
    pub epochs: Option<f64>,
    /// The number of steps itself (instead of `epochs`).
    #[serde(default)]
    pub steps: Option<u64>,
    /// Stop after this many steps even if the plan has more (0: the plan).
    #[serde(default)]
    pub max_steps: u64,
    /// Checkpoint every this many steps.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// What to do when a node is lost for good: `continue` or `stop`.
    #[serde(default = "default_on_loss")]
    pub on_node_loss: OnNodeLoss,
    /// Steps of budget held back for steps that failures abort (an aborted step may have
    /// released noisy shares, so the ledger charges it). Default: 5% of the plan, at least 2.
    #[serde(default)]
    pub retry_reserve: Option<u64>,
    /// Seed of fresh initial weights (the coordinator makes them once and sends them).
    #[serde(default)]
    pub init_seed: i64,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// The model owner's held-out data: same formats as a node's datasets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// `generated`, `medmnist-npz`, `image-folder`, `jsonl` or `text-lines`.
    #[serde(default = "default_eval_format")]
    pub format: String,
    /// The file or folder (not for `generated`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `jsonl`: the field holding the text (default `text`).
    #[serde(default)]
    pub field: Option<String>,
    /// `medmnist-npz`: which split (default `test`).
    #[serde(default)]
    pub split: Option<String>,
    /// `generated`: how many tiles.
    #[serde(default = "default_eval_records")]
    pub records: usize,
    /// `generated`: their seed.
    #[serde(default = "default_eval_seed")]
    pub seed: u64,
}

impl JobSpec {
    /// Reads and validates a `job.toml`; relative paths in it are taken from its folder.
    pub fn load(path: &Path) -> Result<JobSpec, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut job = JobSpec::parse_file(&text, &path.display().to_string())?;
        job.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(job)
    }

    /// [`JobSpec::parse`] of a job file's whole text (read from disk, or submitted by a model
    /// owner), recording its SHA-256 in [`JobSpec::file_sha256`].
    pub fn parse_file(text: &str, origin: &str) -> Result<JobSpec, ConfigError> {
        let mut job = JobSpec::parse(text, origin)?;
        job.file_sha256 = Some(crate::package::sha256_hex(text.as_bytes()));
        Ok(job)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<JobSpec, ConfigError> {
        let job: JobSpec = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        job.validate(origin)?;
        Ok(job)
    }

    /// Makes relative paths relative to `base` (the job file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let ModelSpec::Gpt2 {
            checkpoint,
            tokenizer,
            ..
        } = &mut self.model
        {
            checkpoint.as_mut().map(fix);
            tokenizer.as_mut().map(fix);
        }
        if let Some(eval) = &mut self.eval {
            eval.path.as_mut().map(fix);
        }
    }

    /// True when the job asks for no noise (test builds only; always false in release).
    pub fn deterministic_for_tests(&self) -> bool {
        #[cfg(feature = "danger-test-switches")]
        return self.danger_deterministic_for_tests;
        #[cfg(not(feature = "danger-test-switches"))]
        false
    }

    /// Steps of budget reserved for aborted steps in a plan of `steps`.
    pub fn retry_reserve_for(&self, steps: u64) -> u64 {
        self.schedule
            .retry_reserve
            .unwrap_or_else(|| steps.div_ceil(20).max(2))
    }

    /// The Poisson rate and the planned steps for `records` pooled records.
    pub fn sampling(&self, records: u64) -> (f64, u64) {
        let s = &self.schedule;
        let q = match (s.sampling_rate, s.batch_size) {
            (Some(q), _) => q,
            (None, batch) => (batch.unwrap_or(64) as f64 / records.max(1) as f64).min(1.0),
        };
        let steps = match (s.steps, s.epochs) {
            (Some(steps), _) => steps,
            (None, epochs) => (epochs.unwrap_or(2.0) / q).ceil() as u64,
        };
        let steps = if s.max_steps > 0 {
            steps.min(s.max_steps)
        } else {
            steps
        };
        (q, steps.max(1))
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                field: field.to_string(),
                message,
            })
        };
        match &self.model {
            ModelSpec::Resnet {
                depth,
                classes,
                image_size,
                channels,
            } => {
                if !matches!(depth, 18 | 34) {
                    return bad("model.depth", format!("{depth} is not 18 or 34"));
                }
                if classes.len() < 2 || classes.len() > 1000 {
                    return bad(
                        "model.classes",
                        format!("{} classes; need 2 to 1000 names", classes.len()),
                    );
                }
                let mut seen = std::collections::BTreeSet::new();
                if let Some(c) = classes.iter().find(|c| c.is_empty() || !seen.insert(*c)) {
                    return bad("model.classes", format!("empty or repeated class {c:?}"));
                }
                if !(8..=512).contains(image_size) {
                    return bad(
                        "model.image_size",
                        format!("{image_size} is outside 8..=512"),
                    );
                }
                if !matches!(channels, 1 | 3) {
                    return bad("model.channels", format!("{channels} is not 1 or 3"));
                }
                if self.lora.is_some() {
                    return bad("lora", "LoRA applies to GPT-2 only".into());
                }
            }
            ModelSpec::Gpt2 {
                checkpoint,
                config,
                tokenizer,
                seq_len,
            } => {
                match (checkpoint, config) {
                    (Some(_), Some(_)) => {
                        return bad(
                            "model.config",
                            "give a checkpoint or a config for a fresh model, not both".into(),
                        )
                    }
                    (None, None) => {
                        return bad(
                            "model.checkpoint",
                            "GPT-2 needs a checkpoint directory, or a config (and a tokenizer) for a fresh model".into(),
                        )
                    }
                    (None, Some(shape)) => {
                        if tokenizer.is_none() {
                            return bad(
                                "model.tokenizer",
                                "a fresh GPT-2 needs a tokenizer.json".into(),
                            );
                        }
                        if shape.n_layer < 1
                            || shape.n_embd < 1
                            || shape.n_head < 1
                            || shape.n_embd % shape.n_head != 0
                        {
                            return bad(
                                "model.config",
                                format!("{shape:?}: need positive sizes and n_head dividing n_embd"),
                            );
                        }
                        if shape.n_positions < *seq_len {
                            return bad(
                                "model.seq_len",
                                format!("{seq_len} exceeds n_positions {}", shape.n_positions),
                            );
                        }
                    }
                    (Some(_), None) => {}
                }
                if !(2..=8192).contains(seq_len) {
                    return bad("model.seq_len", format!("{seq_len} is outside 2..=8192"));
                }
            }
        }
        if let Some(lora) = &self.lora {
            if !(1..=1024).contains(&lora.rank) {
                return bad("lora.rank", format!("{} is outside 1..=1024", lora.rank));
            }
            if !(lora.alpha > 0.0 && lora.alpha.is_finite()) {
                return bad("lora.alpha", format!("{} must be positive", lora.alpha));
            }
            if lora.targets.is_empty() {
                return bad("lora.targets", "name at least one projection".into());
            }
            if let Some(t) = lora
                .targets
                .iter()
                .find(|t| !matches!(t.as_str(), "c_attn" | "c_proj" | "c_fc"))
            {
                return bad(
                    "lora.targets",
                    format!("{t:?} is not one of c_attn, c_proj, c_fc"),
                );
            }
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return bad("optim.lr", format!("{} must be positive", o.lr));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return bad(
                "optim.momentum",
                format!("{} is outside [0, 1)", o.momentum),
            );
        }
        if o.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return bad("optim.betas", format!("{:?}: each in [0, 1)", o.betas));
        }
        // Written so that NaN fails both checks.
        let eps_ok = o.eps > 0.0;
        let decay_ok = o.weight_decay >= 0.0 && o.weight_decay.is_finite();
        if !eps_ok || !decay_ok {
            return bad(
                "optim",
                "eps must be positive and weight_decay non-negative".into(),
            );
        }
        let p = &self.privacy;
        if !(p.epsilon > 0.0 && p.epsilon.is_finite()) {
            return bad("privacy.epsilon", format!("{} must be positive", p.epsilon));
        }
        if !(p.delta > 0.0 && p.delta < 1.0) {
            return bad("privacy.delta", format!("{} is outside (0, 1)", p.delta));
        }
        if !(p.max_grad_norm > 0.0 && p.max_grad_norm.is_finite()) {
            return bad(
                "privacy.max_grad_norm",
                format!("{} must be positive", p.max_grad_norm),
            );
        }
        let s = &self.schedule;
        if s.nodes == 0 || s.nodes > 256 {
            return bad("schedule.nodes", format!("{} is outside 1..=256", s.nodes));
        }
        match (s.batch_size, s.sampling_rate) {
            (Some(_), Some(_)) => {
                return bad(
                    "schedule.sampling_rate",
                    "give batch_size or sampling_rate, not both".into(),
                )
            }
            (Some(0), None) => return bad("schedule.batch_size", "must be positive".into()),
            (None, Some(q)) if !(q > 0.0 && q <= 1.0) => {
                return bad("schedule.sampling_rate", format!("{q} is outside (0, 1]"))
            }
            _ => {}
        }
        match (s.epochs, s.steps) {
            (Some(_), Some(_)) => {
                return bad("schedule.steps", "give epochs or steps, not both".into())
            }
            (Some(e), None) if !(e > 0.0 && e.is_finite()) => {
                return bad("schedule.epochs", format!("{e} must be positive"))
            }
            (None, Some(0)) => return bad("schedule.steps", "must be positive".into()),
            _ => {}
        }
        if s.checkpoint_every == 0 {
            return bad("schedule.checkpoint_every", "must be positive".into());
        }
        if let Some(eval) = &self.eval {
            let is_image = matches!(self.model, ModelSpec::Resnet { .. });
            let fits = match eval.format.as_str() {
                "generated" | "medmnist-npz" | "image-folder" => is_image,
                "jsonl" | "text-lines" => !is_image,
                other => {
                    return bad(
                        "eval.format",
                        format!("{other:?} is not one of generated, medmnist-npz, image-folder, jsonl, text-lines"),
                    )
                }
            };
            if !fits {
                return bad(
                    "eval.format",
                    format!(
                        "{:?} does not fit a {} model",
                        eval.format,
                        self.model.kind()
                    ),
                );
            }
            if eval.format != "generated" && eval.path.is_none() {
                return bad(
                    "eval.path",
                    format!("format {:?} needs a path", eval.format),
                );
            }
            if eval.format == "generated"
                && !matches!(&self.model, ModelSpec::Resnet { classes, channels, .. } if classes.len() == 2 && *channels == 3)
            {
                return bad(
                    "eval.format",
                    "generated tiles are RGB and two-class (benign, malignant)".into(),
                );
            }
        }
        Ok(())
    }
}

impl ModelSpec {
    /// `resnet` or `gpt2`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Resnet { .. } => "resnet",
            ModelSpec::Gpt2 { .. } => "gpt2",
        }
    }
}

fn default_depth() -> u32 {
    18
}
fn default_classes() -> Vec<String> {
    vec!["benign".into(), "malignant".into()]
}
fn default_image_size() -> i64 {
    32
}
fn default_channels() -> i64 {
    3
}
fn default_seq_len() -> i64 {
    128
}
fn default_lora_alpha() -> f64 {
    16.0
}
fn default_lora_targets() -> Vec<String> {
    vec!["c_attn".into()]
}
fn default_optim_kind() -> OptimKind {
    OptimKind::Sgd
}
fn default_lr() -> f64 {
    0.5
}
fn default_momentum() -> f64 {
    0.9
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_adam_eps() -> f64 {
    1e-8
}
fn default_lr_schedule() -> LrSchedule {
    LrSchedule::Constant
}
fn default_epsilon() -> f64 {
    8.0
}
fn default_delta() -> f64 {
    1e-5
}
fn one() -> f64 {
    1.0
}
fn default_nodes() -> usize {
    1
}
fn default_checkpoint_every() -> u64 {
    5
}
fn default_on_loss() -> OnNodeLoss {
    OnNodeLoss::Continue
}
fn default_eval_format() -> String {
    "generated".into()
}
fn default_eval_records() -> usize {
    256
}
fn default_eval_seed() -> u64 {
    u64::MAX
}
