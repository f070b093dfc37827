//! The Trainer actor: one per node. Forward, per-sample clipping, the local clipped sum plus
//! this node's noise share, the ring all-reduce, the optimizer step, checkpoints.
//! Tensor work runs on tokio's blocking pool, never on the async executor.

use crate::data::Batch;
use crate::device::ComputeDevice;
use crate::job::{EvalSpec, OptimKind};
use crate::model::Model;
use crate::protocol::{Evaluation, GroupPlan, JobOffer, ToSupervisor, Training};
use crate::ring::{connect_ring, RingLink};
use crate::shard::ShardMsg;
use crate::weights;
use bastion_attestation::tls::AttestedEndpoint;
use bastion_checkpoint::{Checkpoint, CheckpointStore};
use bastion_dp::clip::{clip_per_sample, ClipConfig, Tape};
use bastion_dp::noise::{sensitivity_overhead, SecureGaussian};
use bastion_dp::optim::{
    add_noise, average, flatten, unflatten, DpSettings, Optimizer, UpdateRule,
};
use bastion_ledger::{Ledger, LedgerError, Plan, StepCharge};
use bastion_metrics::NodeMetrics;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::Tensor;

/// Messages to the Trainer.
pub enum TrainerMsg {
    /// Join a (re-)formed group: restore or initialise the model, connect the ring.
    Form {
        /// The group.
        plan: GroupPlan,
        /// The link's order generation when this was sent (see [`TrainerArgs::generation`]).
        generation: u64,
        /// Ready, or why not.
        reply: RpcReplyPort<ToSupervisor>,
    },
    /// Run one authorized step.
    Step {
        /// Group epoch.
        epoch: u64,
        /// Training step.
        step: u64,
        /// Its record in the privacy ledger.
        ledger_step: u64,
        /// Checkpoint after the update.
        checkpoint: bool,
        /// The link's order generation when this was sent.
        generation: u64,
        /// StepDone or Failed.
        reply: RpcReplyPort<ToSupervisor>,
    },
    /// Leave the ring (a member died); wait for the next Form.
    Abort,
    /// The model as it stands on the model owner's held-out data (coordinator only).
    Evaluate {
        /// Evaluated or EvaluationFailed.
        reply: RpcReplyPort<ToSupervisor>,
    },
    /// Write the released, DP-protected model into the release directory.
    SaveFinal {
        /// Where they went.
        reply: RpcReplyPort<Result<PathBuf, String>>,
    },
}

/// What the Trainer is built from.
pub struct TrainerArgs {
    /// Its shards.
    pub shards: Vec<ActorRef<ShardMsg>>,
    /// Its attested TLS identity (for the ring).
    pub endpoint: AttestedEndpoint,
    /// Its ring listener.
    pub ring_listener: Arc<tokio::net::TcpListener>,
    /// Its sealed checkpoint store.
    pub checkpoints: Arc<Mutex<CheckpointStore>>,
    /// Where the final weights go.
    pub state_dir: PathBuf,
    /// Metrics.
    pub metrics: NodeMetrics,
    /// Ring connect timeout.
    pub connect_timeout: Duration,
    /// A ring peer silent this long fails the step.
    pub io_timeout: Duration,
    /// Raised by the coordinator link at every Form and Abort: a ring formation or step of an
    /// older generation is abandoned at once instead of waiting for its timeouts.
    pub generation: tokio::sync::watch::Receiver<u64>,
    /// This node's own privacy ledger: the budgets of the datasets it holds, enforced here
    /// whatever the coordinator says.
    pub ledger: Arc<Mutex<Ledger>>,
    /// The datasets this node holds (registered in `ledger`).
    pub datasets: Vec<String>,
    /// Accept plans with noise switched off (test builds only; always false in release).
    pub allow_unnoised: bool,
    /// The job this node was admitted to (set before the Trainer starts).
    pub job: Option<JobContext>,
    /// Where the model and the clipping run (noise is always made on the CPU).
    pub device: ComputeDevice,
}

/// The job as this node received it: the offer, and the checked initial weights and
/// tokenizer; on the coordinator also the model owner's held-out data.
#[derive(Clone)]
pub struct JobContext {
    /// The offer.
    pub offer: JobOffer,
    /// Initial weights (safetensors), checked against the offer.
    pub weights: Arc<Vec<u8>>,
    /// tokenizer.json, checked against the offer.
    pub tokenizer: Option<Arc<Vec<u8>>>,
    /// The model owner's held-out data (coordinator only).
    pub eval: Option<EvalSpec>,
    /// Where the released model goes.
    pub release_dir: PathBuf,
}

/// Why a node did not do what it was asked.
enum Refusal {
    /// Protection it owes its data owners: final for the job.
    Refused(String),
    /// Something broke (a peer, a file); the group may re-form.
    Failed(String),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::Failed(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal::Failed(reason.to_string())
    }
}

impl Refusal {
    fn answer(self, epoch: u64) -> ToSupervisor {
        match self {
            Refusal::Refused(reason) => ToSupervisor::Refused { epoch, reason },
            Refusal::Failed(reason) => ToSupervisor::Failed { epoch, reason },
        }
    }
}

/// The actor.
pub struct Trainer;

/// Model, optimizer and DP settings: everything the blocking pool works on.
struct Compute {
    /// One model per device of the node, the same weights: the first is the one the
    /// optimizer updates (and evaluation and checkpoints read); the others, on the node's
    /// other GPUs, compute their part of each step's sample and are refreshed from the first
    /// after every update.
    models: Vec<Model>,
    /// The first model's trainable parameters, in the clipping engine's order.
    params: Vec<Tensor>,
    optimizer: Optimizer,
    settings: DpSettings,
    clip: ClipConfig,
    noise: SecureGaussian,
    training: Training,
    job: JobContext,
}

/// The actor's state.
pub struct TrainerState {
    args: TrainerArgs,
    compute: Option<Arc<Mutex<Compute>>>,
    ring: Option<RingLink>,
    epoch: u64,
}

impl Actor for Trainer {
    type Msg = TrainerMsg;
    type State = TrainerState;
    type Arguments = TrainerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<TrainerMsg>,
        args: TrainerArgs,
    ) -> Result<TrainerState, ActorProcessingErr> {
        Ok(TrainerState {
            args,
            compute: None,
            ring: None,
            epoch: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<TrainerMsg>,
        msg: TrainerMsg,
        state: &mut TrainerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TrainerMsg::Form {
                plan,
                generation,
                reply,
            } => {
                let epoch = plan.epoch;
                let mut newer = state.args.generation.clone();
                let formed = tokio::select! {
                    r = form(state, plan) => r,
                    _ = superseded(&mut newer, generation) => Err("superseded by a newer order".into()),
                };
                let answer = match formed {
                    Ok(()) => ToSupervisor::Ready { epoch },
                    Err(Refusal::Refused(reason)) => {
                        tracing::error!(epoch, %reason, "refusing the group's plan");
                        ToSupervisor::Refused { epoch, reason }
                    }
                    Err(Refusal::Failed(reason)) => {
                        tracing::warn!(epoch, %reason, "could not join the group");
                        ToSupervisor::Failed { epoch, reason }
                    }
                };
                let _ = reply.send(answer);
            }
            TrainerMsg::Step {
                epoch,
                step,
                ledger_step,
                checkpoint,
                generation,
                reply,
            } => {
                let mut newer = state.args.generation.clone();
                let answer = if epoch != state.epoch || state.ring.is_none() {
                    ToSupervisor::Failed {
                        epoch,
                        reason: format!("step {step} of epoch {epoch}, but this node is in epoch {} without a ring", state.epoch),
                    }
                } else {
                    let ran = tokio::select! {
                        r = run_step(state, step, ledger_step, checkpoint) => r,
                        _ = superseded(&mut newer, generation) => Err("aborted by the supervisor".into()),
                    };
                    match ran {
                        Ok(done) => done,
                        Err(refusal) => {
                            // The ring is unusable after a failed exchange: drop it.
                            state.ring = None;
                            state.args.metrics.step_aborted();
                            match &refusal {
                                Refusal::Refused(reason) => {
                                    tracing::error!(epoch, step, %reason, "refusing the step")
                                }
                                Refusal::Failed(reason) => {
                                    tracing::warn!(epoch, step, %reason, "step failed")
                                }
                            }
                            refusal.answer(epoch)
                        }
                    }
                };
                let _ = reply.send(answer);
            }
            TrainerMsg::Abort => {
                state.ring = None;
            }
            TrainerMsg::Evaluate { reply } => {
                let answer = match evaluate(state).await {
                    Ok(evaluation) => ToSupervisor::Evaluated(evaluation),
                    Err(reason) => ToSupervisor::EvaluationFailed { reason },
                };
                let _ = reply.send(answer);
            }
            TrainerMsg::SaveFinal { reply } => {
                let _ = reply.send(save_final(state).await);
            }
        }
        Ok(())
    }
}

/// Resolves once the link has seen an order newer than `generation`.
async fn superseded(newer: &mut tokio::sync::watch::Receiver<u64>, generation: u64) {
    if newer.wait_for(|g| *g > generation).await.is_err() {
        // The link is gone for good: nothing newer will come.
        std::future::pending::<()>().await;
    }
}

/// The datasets this node holds, each sampled at the plan's rate.
fn own_rates(args: &TrainerArgs, training: &Training) -> Vec<(String, f64)> {
    args.datasets
        .iter()
        .map(|d| (d.clone(), training.q))
        .collect()
}

/// This node's own judgement of a plan, before it computes anything: noise must be on unless
/// its own config allows otherwise, and the plan's remaining schedule must fit the budgets
/// of the datasets it holds, by its own ledger and accountant.
fn check_plan(args: &TrainerArgs, training: &Training, resume: Option<u64>) -> Result<(), Refusal> {
    if training.deterministic_for_tests && !args.allow_unnoised {
        return Err(Refusal::Refused(
            "the plan switches noise off (deterministic_for_tests) and this node's config does not allow it".into(),
        ));
    }
    let remaining = training.steps.saturating_sub(resume.unwrap_or(0));
    if args.datasets.is_empty() || remaining == 0 {
        return Ok(());
    }
    let plan = Plan {
        steps: remaining,
        sigma: training.sigma,
        datasets: own_rates(args, training),
    };
    let mut ledger = args.ledger.lock().map_err(|_| "own ledger poisoned")?;
    match ledger.check_plan(&plan) {
        Ok(_) => Ok(()),
        Err(e @ (LedgerError::PlanExceedsBudget { .. } | LedgerError::InvalidCharge { .. })) => {
            Err(Refusal::Refused(format!(
                "the plan ({remaining} steps at q={}, sigma={}) does not fit this node's own budget: {e}",
                training.q, training.sigma
            )))
        }
        Err(e) => Err(Refusal::Failed(format!("own ledger: {e}"))),
    }
}

/// Builds the model (fresh from the seed, or from a checkpoint) and connects the ring.
async fn form(state: &mut TrainerState, plan: GroupPlan) -> Result<(), Refusal> {
    state.ring = None;
    check_plan(&state.args, &plan.training, plan.resume_from)?;
    let training = plan.training.clone();
    let store = Arc::clone(&state.args.checkpoints);
    let ledger = Arc::clone(&state.args.ledger);
    let resume = plan.resume_from;
    let world = plan.members.len();
    let job = state.args.job.clone().ok_or("no job")?;
    let device = state.args.device.clone();
    if job.offer.job != training.job {
        return Err(Refusal::Failed(format!(
            "the plan is for job {}, but this node was admitted to job {}",
            training.job, job.offer.job
        )));
    }
    let compute = tokio::task::spawn_blocking(move || -> Result<Compute, Refusal> {
        let mut compute = build(&training, world, job, &device)?;
        if let Some(step) = resume {
            let checkpoint = store
                .lock()
                .map_err(|_| "checkpoint store poisoned".to_string())?
                .load(step)
                .map_err(|e| e.to_string())?;
            check_binding(&checkpoint, &training, &ledger)?;
            restore(&mut compute, &checkpoint)?;
            tracing::info!(step, "restored checkpoint");
        }
        Ok(compute)
    })
    .await
    .map_err(|e| format!("model set-up panicked: {e}"))??;
    state.compute = Some(Arc::new(Mutex::new(compute)));
    state.epoch = plan.epoch;
    state.args.metrics.set_rank(plan.rank as usize);
    state.args.metrics.set_group_size(world);
    state.ring = Some(
        connect_ring(
            &state.args.endpoint,
            &state.args.ring_listener,
            &plan,
            state.args.connect_timeout,
            state.args.io_timeout,
        )
        .await?,
    );
    if world > 1 {
        // Both ring neighbours passed attested TLS.
        state.args.metrics.attestation_ok();
        state.args.metrics.attestation_ok();
    }
    Ok(())
}

/// The job's model with its initial weights (the coordinator's, checked: every node starts
/// bitwise identical) on each of the node's devices, the optimizer and the node's DP
/// settings.
fn build(
    training: &Training,
    world: usize,
    job: JobContext,
    device: &ComputeDevice,
) -> Result<Compute, String> {
    // A GPU that went away since the node started stops here, not in a libtorch panic.
    device.check_available()?;
    let mut models = Vec::new();
    for d in device.devices() {
        let model = Model::for_loading_on(&job.offer.task, d)?;
        model.load_weights(&job.weights, true)?;
        models.push(model);
    }
    let model = &models[0];
    // Every node logs the digest of the model it starts from: they must all be one.
    tracing::info!(
        sha256 = %crate::package::sha256_hex(&model.to_bytes()?),
        %device,
        "model built from the job's initial weights"
    );
    let params = model.trainable();
    let dimension: usize = params.iter().map(|p| p.numel()).sum();
    let settings = DpSettings {
        noise_multiplier: training.sigma,
        max_grad_norm: training.max_grad_norm,
        expected_batch_size: training.expected_batch_size,
        nodes: world,
    };
    // Each node snaps its noisy share to the grid of its noise (a defence against
    // floating-point attacks); a record lives on one node, so clipping to C minus that node's
    // snapping overhead keeps the group's sensitivity at C.
    let clip_bound = if training.deterministic_for_tests {
        training.max_grad_norm
    } else {
        training.max_grad_norm - sensitivity_overhead(settings.node_noise_std(), dimension)
    };
    if clip_bound <= 0.0 {
        return Err(format!(
            "max_grad_norm {} is too small for the noise grid",
            training.max_grad_norm
        ));
    }
    let o = &job.offer.optim;
    let rule = match o.kind {
        OptimKind::Sgd => UpdateRule::Sgd {
            lr: o.lr,
            momentum: o.momentum,
            weight_decay: o.weight_decay,
        },
        OptimKind::Adamw => UpdateRule::AdamW {
            lr: o.lr,
            beta1: o.betas[0],
            beta2: o.betas[1],
            eps: o.eps,
            weight_decay: o.weight_decay,
        },
    };
    let optimizer = Optimizer::new(rule, params.iter().map(|p| p.shallow_clone()).collect());
    Ok(Compute {
        models,
        params,
        optimizer,
        settings,
        clip: ClipConfig {
            max_grad_norm: clip_bound,
            ..ClipConfig::default()
        },
        noise: SecureGaussian::from_os().map_err(|e| e.to_string())?,
        training: training.clone(),
        job,
    })
}

/// A checkpoint is resumed only by the job it belongs to, and only if this node's ledger
/// still holds every record it held when the checkpoint was taken: a ledger rolled back
/// behind its checkpoints would forget spent budget.
fn check_binding(
    checkpoint: &Checkpoint,
    training: &Training,
    ledger: &Mutex<Ledger>,
) -> Result<(), Refusal> {
    if checkpoint.job != training.job {
        return Err(Refusal::Failed(format!(
            "checkpoint {} belongs to job {:?}, not {:?}",
            checkpoint.step, checkpoint.job, training.job
        )));
    }
    let ledger = ledger.lock().map_err(|_| "own ledger poisoned")?;
    let held = ledger.position().records;
    if ledger.digest_at(checkpoint.ledger_position) != Some(checkpoint.ledger_digest) {
        return Err(Refusal::Refused(format!(
            "checkpoint {} was taken when this node's privacy ledger held {} records, and the \
             ledger now holds {held} that do not extend those: refusing to resume from a \
             checkpoint newer than the ledger (was the ledger rolled back or replaced?)",
            checkpoint.step, checkpoint.ledger_position
        )));
    }
    Ok(())
}

/// What a node needs to charge its own ledger, off the async executor (an fsync).
struct OwnCharge {
    ledger: Arc<Mutex<Ledger>>,
    rates: Vec<(String, f64)>,
    sigma: f64,
}

impl OwnCharge {
    fn new(args: &TrainerArgs, training: &Training) -> OwnCharge {
        OwnCharge {
            ledger: Arc::clone(&args.ledger),
            rates: own_rates(args, training),
            sigma: training.sigma,
        }
    }

    /// Charges the next step to this node's own ledger (durably) before anything of it is
    /// computed or released; refused when a dataset's own budget would be exceeded.
    fn charge(self) -> Result<(), Refusal> {
        if self.rates.is_empty() {
            return Ok(());
        }
        let mut ledger = self.ledger.lock().map_err(|_| "own ledger poisoned")?;
        let charge = StepCharge {
            step: ledger.last_step().map_or(0, |s| s + 1),
            sigma: self.sigma,
            datasets: self.rates,
        };
        match ledger.authorize(&charge) {
            Ok(_) => {}
            Err(e @ (LedgerError::BudgetExhausted { .. } | LedgerError::InvalidCharge { .. })) => {
                return Err(Refusal::Refused(format!("this node's own budget: {e}")))
            }
            Err(e) => return Err(Refusal::Failed(format!("own ledger: {e}"))),
        }
        Ok(())
    }
}

async fn run_step(
    state: &mut TrainerState,
    step: u64,
    ledger_step: u64,
    checkpoint: bool,
) -> Result<ToSupervisor, Refusal> {
    let started = Instant::now();
    let compute = Arc::clone(state.compute.as_ref().ok_or("no model")?);
    let training = {
        let c = compute.lock().map_err(|_| "model poisoned")?;
        c.training.clone()
    };
    let (q, deterministic) = (training.q, training.deterministic_for_tests);
    // Nothing of this step exists before it is charged (one fsync, on the blocking pool).
    let own = OwnCharge::new(&state.args, &training);
    tokio::task::spawn_blocking(move || own.charge())
        .await
        .map_err(|e| format!("own ledger panicked: {e}"))??;
    let mut batches = Vec::new();
    for shard in &state.args.shards {
        let batch: Option<Batch> = shard
            .call(
                |reply| ShardMsg::Sample {
                    step,
                    q,
                    deterministic,
                    reply,
                },
                None,
            )
            .await
            .map_err(|e| format!("data shard: {e}"))?
            .success_or("data shard stopped")??;
        batches.extend(batch);
    }

    // Local clipped sum plus this node's noise share: the only thing that leaves the node.
    let worker = Arc::clone(&compute);
    let mut sum = tokio::task::spawn_blocking(move || {
        let mut c = worker.lock().map_err(|_| "model poisoned".to_string())?;
        local_share(&mut c, batches)
    })
    .await
    .map_err(|e| format!("step computation panicked: {e}"))??;

    let ring = state.ring.as_mut().ok_or("no ring")?;
    // The failure tests match this line against the ledger: every released step is recorded.
    tracing::info!(step, ledger_step, "releasing the noisy share of step");
    let reduce_started = Instant::now();
    let bytes = ring.all_reduce(step, &mut sum).await?;
    let reduce = reduce_started.elapsed();
    state.args.metrics.observe_allreduce(bytes, reduce);

    let store = Arc::clone(&state.args.checkpoints);
    let ledger = Arc::clone(&state.args.ledger);
    let worker = Arc::clone(&compute);
    let checkpointed = tokio::task::spawn_blocking(move || -> Result<bool, String> {
        let mut c = worker.lock().map_err(|_| "model poisoned".to_string())?;
        average(&mut sum, &c.settings);
        let grads = unflatten(sum, &c.params).map_err(|e| e.to_string())?;
        // The noisy average is all the optimizer ever sees (AdamW's moments included).
        let lr = c.job.offer.optim.lr_at(step, c.training.steps);
        c.optimizer.set_lr(lr);
        c.optimizer.step(&grads);
        refresh_copies(&c.models)?;
        if checkpoint {
            // Bound to this node's ledger as it stands now (this step's charge included).
            let position = ledger
                .lock()
                .map_err(|_| "own ledger poisoned".to_string())?
                .position();
            let ckpt = snapshot(&c, step + 1, position)?;
            store
                .lock()
                .map_err(|_| "checkpoint store poisoned".to_string())?
                .save(&ckpt)
                .map_err(|e| e.to_string())?;
        }
        Ok(checkpoint)
    })
    .await
    .map_err(|e| format!("update panicked: {e}"))??;

    // Only the step's duration: its sample size and loss are private statistics.
    state.args.metrics.observe_step(started.elapsed());
    Ok(ToSupervisor::StepDone {
        epoch: state.epoch,
        step,
        checkpointed,
    })
}

/// Forward, clip, sum, noise: the flat noisy share, the only thing of a step that leaves.
fn local_share(c: &mut Compute, batches: Vec<Batch>) -> Result<Vec<f32>, String> {
    // An empty sample still adds noise and is still accounted.
    let mut sum = clipped_sum(&mut c.models, concat(batches)?, &c.clip)?;
    // The noise is made here, on the host, whatever device clipped: the share leaves through
    // the host's attested TLS ring anyway, so it must exist on the host; one audited sampler
    // (CSPRNG, grid snapping) serves every device, and its keystream never enters GPU memory.
    // Noise is added once per node, however many GPUs computed the sum, so the node's
    // privacy accounting does not depend on its GPUs.
    if !c.training.deterministic_for_tests {
        let settings = c.settings;
        add_noise(&mut sum, &settings, &mut c.noise).map_err(|e| e.to_string())?;
    }
    Ok(sum)
}

/// The clipped per-sample gradient sum of `batch` (none: an empty sample, all zeros), flat on
/// the host in the clipping engine's parameter order, over `models` (one per device of the
/// node, holding the same weights). The batch is split across the models; each clips its part
/// on its own device (clipping is per sample, so the parts add up to the whole sample's sum);
/// the parts are added on the first model's device in a fixed order, inside the VM, and the
/// total is copied to the host once.
pub fn clipped_sum(
    models: &mut [Model],
    batch: Option<Batch>,
    clip: &ClipConfig,
) -> Result<Vec<f32>, String> {
    let first = models.first().ok_or("no model to compute on")?;
    let Some(batch) = batch else {
        let dimension: usize = first.trainable().iter().map(|p| p.numel()).sum();
        return Ok(vec![0f32; dimension]);
    };
    let mut parts = batch.split(models.len());
    let mut sums = if parts.len() == 1 {
        vec![part_sum(&models[0], &parts.remove(0), clip)]
    } else {
        // One thread per device, so the GPUs compute at once.
        std::thread::scope(|scope| {
            let workers: Vec<_> = models
                .iter_mut()
                .zip(parts)
                .map(|(model, part)| scope.spawn(move || part_sum(model, &part, clip)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err("a device's clipping thread panicked".into()))
                })
                .collect::<Vec<_>>()
        })
    }
    .into_iter();
    let mut total = sums.next().ok_or("no part computed")??;
    for part in sums {
        for (sum, p) in total.iter_mut().zip(part?) {
            *sum += p.to_device(sum.device());
        }
    }
    // The one device-to-host copy: the noise and the ring work on the host.
    flatten(total).map_err(|e| e.to_string())
}

/// One device's part of a step: forward on its model, clip, sum (on that device).
fn part_sum(model: &Model, batch: &Batch, clip: &ClipConfig) -> Result<Vec<Tensor>, String> {
    let params = model.trainable();
    let tape = Tape::new();
    let loss = model.per_sample_loss(&tape, batch)?;
    let clipped = clip_per_sample(&tape, &loss, &params, clip).map_err(|e| e.to_string())?;
    Ok(clipped.grads)
}

/// Copies the first model's trainable weights into the others (the node's other GPUs).
fn refresh_copies(models: &[Model]) -> Result<(), String> {
    if let Some((first, copies)) = models.split_first() {
        for copy in copies {
            copy.copy_trainable_from(first)?;
        }
    }
    Ok(())
}

/// One batch of all shards' samples (none when every sample was empty).
fn concat(batches: Vec<Batch>) -> Result<Option<Batch>, String> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    Ok(Some(match first {
        Batch::Images { .. } => {
            let (mut images, mut labels) = (Vec::new(), Vec::new());
            for b in batches {
                let Batch::Images {
                    images: i,
                    labels: l,
                } = b
                else {
                    return Err("shards hold different kinds of records".into());
                };
                images.push(i);
                labels.push(l);
            }
            Batch::Images {
                images: Tensor::cat(&images, 0),
                labels: Tensor::cat(&labels, 0),
            }
        }
        Batch::Tokens { .. } => {
            let (mut ids, mut mask) = (Vec::new(), Vec::new());
            for b in batches {
                let Batch::Tokens { ids: i, mask: m } = b else {
                    return Err("shards hold different kinds of records".into());
                };
                ids.push(i);
                mask.push(m);
            }
            Batch::Tokens {
                ids: Tensor::cat(&ids, 0),
                mask: Tensor::cat(&mask, 0),
            }
        }
    }))
}

async fn evaluate(state: &mut TrainerState) -> Result<Evaluation, String> {
    let compute = Arc::clone(state.compute.as_ref().ok_or("no model")?);
    tokio::task::spawn_blocking(move || {
        let c = compute.lock().map_err(|_| "model poisoned".to_string())?;
        crate::evaluate::evaluate(&c.models[0], &c.job)
    })
    .await
    .map_err(|e| format!("evaluation panicked: {e}"))?
}

async fn save_final(state: &mut TrainerState) -> Result<PathBuf, String> {
    let compute = Arc::clone(state.compute.as_ref().ok_or("no model")?);
    tokio::task::spawn_blocking(move || {
        let c = compute.lock().map_err(|_| "model poisoned".to_string())?;
        crate::evaluate::release(&c.models[0], &c.job)
    })
    .await
    .map_err(|e| format!("saving panicked: {e}"))?
}

/// A checkpoint of the model and optimizer after `step` updates, bound to the job and to
/// this node's ledger at `ledger`.
fn snapshot(
    c: &Compute,
    step: u64,
    ledger: bastion_ledger::Position,
) -> Result<Checkpoint, String> {
    let mut sections = BTreeMap::new();
    // Only what trains: a frozen base is the initial weights', which every node holds.
    sections.insert(
        "model".to_string(),
        weights::to_safetensors(&c.models[0].trainable_named())?,
    );
    let (first, second) = c.optimizer.moments();
    let mut moments = Vec::new();
    for (i, (m, v)) in first.iter().zip(second).enumerate() {
        if let Some(m) = m {
            moments.push((format!("first.{i}"), m.shallow_clone()));
        }
        if let Some(v) = v {
            moments.push((format!("second.{i}"), v.shallow_clone()));
        }
    }
    sections.insert("optimizer".to_string(), weights::to_safetensors(&moments)?);
    sections.insert(
        "optimizer_steps".to_string(),
        c.optimizer.steps().to_le_bytes().to_vec(),
    );
    // The noise generator is deliberately not saved: replaying noise after a restore would
    // cancel it. It is reseeded from the OS; test sampling is seeded per step.
    Ok(Checkpoint {
        step,
        job: c.training.job.clone(),
        ledger_position: ledger.records,
        ledger_digest: ledger.digest,
        sections,
    })
}

fn restore(c: &mut Compute, checkpoint: &Checkpoint) -> Result<(), String> {
    let section = |name: &str| {
        checkpoint
            .sections
            .get(name)
            .ok_or_else(|| format!("checkpoint {} has no {name} section", checkpoint.step))
    };
    let trainable = c.models[0].trainable_named();
    let saved = weights::from_safetensors(section("model")?)?;
    if saved.len() != trainable.len() {
        return Err(format!(
            "checkpoint {} holds {} tensors, the model trains {}",
            checkpoint.step,
            saved.len(),
            trainable.len()
        ));
    }
    c.models[0].load_weights(section("model")?, false)?;
    refresh_copies(&c.models)?;
    let moments: BTreeMap<String, Tensor> = weights::from_safetensors(section("optimizer")?)?
        .into_iter()
        .collect();
    // Moments were written from the device to the host; they go back next to their
    // parameters.
    let params = &c.params;
    let take = |prefix: &str| {
        params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                moments
                    .get(&format!("{prefix}.{i}"))
                    .map(|t| t.to_device(p.device()))
            })
            .collect()
    };
    let steps = i64::from_le_bytes(
        section("optimizer_steps")?
            .as_slice()
            .try_into()
            .map_err(|_| "bad optimizer_steps section".to_string())?,
    );
    c.optimizer.restore(steps, take("first"), take("second"))
}
