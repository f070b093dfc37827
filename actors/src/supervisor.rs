//! The Supervisor actor (one per group, on the coordinator): admits attested nodes, assigns
//! ranks and the plan, drives steps (each authorized by the Accountant first), watches
//! heartbeats, and on a failure aborts the step and re-forms the group from the last
//! checkpoint every member holds, or applies the job's policy when a node does not return.

use crate::accountant::{AccountantMsg, DatasetPrivacy};
use crate::config::{OnNodeLoss, Timeouts};
use crate::job::JobSpec;
use crate::protocol::{DatasetInfo, Evaluation, GroupPlan, Join, ToNode, ToSupervisor, Training};
use bastion_attestation::tls::Attester;
use bastion_attestation::Verdict;
use bastion_dp::accountant::calibrate_sigma;
use bastion_ledger::{Budget, Plan, PlanRecord};
use bastion_metrics::NodeMetrics;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Messages to the Supervisor.
pub enum SupervisorMsg {
    /// An attested node said hello on its coordinator link.
    Joined {
        /// Its hello.
        join: Join,
        /// Its TLS key fingerprint (what its ring neighbours must see).
        key: String,
        /// What its evidence said, as the attested link verified it.
        attestation: MemberAttestation,
        /// Where messages to it go.
        link: mpsc::UnboundedSender<ToNode>,
        /// Admitted, or why not.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// A message from a member.
    From {
        /// The member.
        node: String,
        /// The message.
        msg: ToSupervisor,
    },
    /// A member's link closed.
    Closed {
        /// The member.
        node: String,
        /// Why.
        reason: String,
    },
    /// Periodic: heartbeats and deadlines.
    Tick,
}

/// What the coordinator's attested link verified about a node on admission: the privacy
/// receipt names each node by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAttestation {
    /// The report's MEASUREMENT.
    pub measurement: [u8; 48],
    /// The report's CHIP_ID (zero when masked).
    pub chip_id: [u8; 64],
    /// Verified against the simulated chain, not AMD's.
    pub simulated: bool,
}

impl From<&Verdict> for MemberAttestation {
    fn from(v: &Verdict) -> Self {
        MemberAttestation {
            measurement: v.measurement,
            chip_id: v.chip_id,
            simulated: v.simulated,
        }
    }
}

/// How a job ended: impossible to mistake one for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Every planned step ran and the model was evaluated.
    Completed,
    /// Ended early (privacy budget, a node's refusal, the loss policy); the model as it
    /// stands was still evaluated and released: it is DP whatever the step count.
    Stopped,
    /// Could not run or could not go on (no model to release, or the ledger failed).
    Failed,
}

/// How the job ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobReport {
    /// Completed, stopped or failed.
    pub status: JobStatus,
    /// Why it ended.
    pub reason: String,
    /// Training steps applied.
    pub steps: u64,
    /// Steps the plan had.
    pub planned_steps: u64,
    /// Group re-formations (0 when nothing failed).
    pub reformations: u64,
    /// Nodes in the group at the end.
    pub nodes: Vec<String>,
    /// Nodes lost for good.
    pub lost_nodes: Vec<String>,
    /// Poisson sampling rate of every dataset.
    pub q: f64,
    /// Noise multiplier.
    pub sigma: f64,
    /// Per dataset, the ledger's figures at the end (aborted steps included).
    pub privacy: Vec<DatasetPrivacy>,
    /// The released model on the model owner's held-out data (none without `[eval]`).
    pub evaluation: Option<Evaluation>,
    /// Where the released model and `privacy.json` are (coordinator's state directory).
    pub release: Option<String>,
    /// The signed privacy receipt beside it (`receipt.json`), when one was made.
    pub receipt: Option<String>,
    /// Wall time.
    pub seconds: f64,
    /// The nodes ran on the simulated TEE: nothing was hardware-protected.
    pub simulated_tee: bool,
    /// True when run with the test-only deterministic setting (no noise).
    pub deterministic_for_tests: bool,
}

/// What the Supervisor is started with.
pub struct SupervisorArgs {
    /// The job.
    pub job: JobSpec,
    /// Its identity (the offer's).
    pub job_id: String,
    /// What every dataset must hold ([`crate::protocol::Task::data_shape`]).
    pub job_shape: String,
    /// The coordinator's own node: it holds the eval data, so it evaluates and releases.
    pub coordinator: String,
    /// Where `privacy.json` goes, beside the released model.
    pub release_dir: std::path::PathBuf,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// The privacy ledger.
    pub accountant: ActorRef<AccountantMsg>,
    /// Metrics.
    pub metrics: NodeMetrics,
    /// The group runs on the simulated TEE (said in the report).
    pub simulated_tee: bool,
    /// The coordinator's own TEE: it attests the key that signs the privacy receipt.
    pub receipt_attester: Arc<dyn Attester>,
    /// Where the final report goes.
    pub done: oneshot::Sender<JobReport>,
}

/// The actor.
pub struct Supervisor;

struct Member {
    join: Join,
    key: String,
    link: mpsc::UnboundedSender<ToNode>,
    last_seen: Instant,
    /// Checkpoint steps it holds: from its join, then from its StepDone reports.
    checkpoints: BTreeSet<u64>,
}

/// Formations or steps that may fail in a row before the job fails.
const MAX_FAILURES_IN_A_ROW: u32 = 10;

/// Checkpoints each node keeps (older ones are pruned from its store).
pub const CHECKPOINTS_KEPT: usize = 3;

#[derive(Debug, PartialEq)]
enum Phase {
    /// Waiting for members (at start, or after a failure).
    Gathering,
    /// Form sent; waiting for Ready from every member.
    Forming { ready: BTreeSet<String> },
    /// A step is in flight.
    Stepping(InFlight),
    /// Waiting for one node's evaluation of the model as it stands; then the job ends so.
    Evaluating {
        evaluator: String,
        status: JobStatus,
        reason: String,
    },
    /// Waiting for the coordinator's own node to write the released model, which the receipt
    /// then names; then the job ends so.
    Releasing {
        releaser: String,
        status: JobStatus,
        reason: String,
    },
    /// Over.
    Finished,
}

#[derive(Debug, PartialEq)]
struct InFlight {
    step: u64,
    done: BTreeSet<String>,
    started: Instant,
}

/// The Supervisor's state.
pub struct SupervisorState {
    args: SupervisorArgs,
    done: Option<oneshot::Sender<JobReport>>,
    members: BTreeMap<String, Member>,
    /// Members lost, with when and their datasets; they may come back until the rejoin timeout.
    lost: BTreeMap<String, (Instant, Vec<String>)>,
    /// Members given up for good (policy "continue"), with their datasets.
    dropped: BTreeMap<String, Vec<String>>,
    phase: Phase,
    epoch: u64,
    group: Vec<String>,
    /// Updates applied (the next step's number).
    step: u64,
    planned_steps: u64,
    training: Option<Training>,
    reformations: u64,
    started: Instant,
    evaluation: Option<Evaluation>,
    /// After a failed step, wait this long before re-forming so the heartbeat check can tell
    /// which node died (otherwise the group would re-form around a dead node).
    hold_until: Option<Instant>,
    /// Formations or steps that failed in a row: a failure that recurs at every attempt ends
    /// the job instead of looping.
    failures_in_a_row: u32,
    /// When the last Tick ran: a Supervisor busy for long (calibrating the noise) must not
    /// blame members for heartbeats still waiting in its mailbox.
    last_tick: Instant,
    /// When the Supervisor started (the receipt's start time).
    started_at: SystemTime,
    /// Every admission: node, TLS key, attestation, datasets (the receipt's node records).
    admissions: Vec<Admission>,
}

/// One node admitted with one TLS key and evidence.
struct Admission {
    node: String,
    key: String,
    attestation: MemberAttestation,
    datasets: Vec<DatasetInfo>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        mut args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let every = Duration::from_millis(args.timeouts.heartbeat_ms);
        myself.send_interval(every, || SupervisorMsg::Tick);
        if args.job.deterministic_for_tests() {
            tracing::warn!(
                "job runs WITHOUT NOISE (danger_deterministic_for_tests): it protects nothing"
            );
        }
        let (tx, _) = oneshot::channel();
        let done = std::mem::replace(&mut args.done, tx);
        Ok(SupervisorState {
            args,
            done: Some(done),
            members: BTreeMap::new(),
            lost: BTreeMap::new(),
            dropped: BTreeMap::new(),
            phase: Phase::Gathering,
            epoch: 0,
            group: Vec::new(),
            step: 0,
            planned_steps: 0,
            training: None,
            reformations: 0,
            started: Instant::now(),
            evaluation: None,
            hold_until: None,
            failures_in_a_row: 0,
            last_tick: Instant::now(),
            started_at: SystemTime::now(),
            admissions: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        s: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if s.phase == Phase::Finished {
            if let SupervisorMsg::Joined { reply, .. } = msg {
                let _ = reply.send(Err("the job is over".into()));
            }
            return Ok(());
        }
        match msg {
            SupervisorMsg::Joined {
                join,
                key,
                attestation,
                link,
                reply,
            } => {
                let name = join.node.clone();
                if s.dropped.contains_key(&name) {
                    let _ = reply.send(Err(format!(
                        "node {name} was lost for good and its datasets left the job"
                    )));
                    return Ok(());
                }
                if s.members.contains_key(&name) {
                    let _ = reply.send(Err(format!("a node named {name} is already in the group")));
                    return Ok(());
                }
                if let Some(dup) = duplicate_dataset(&s.members, &join) {
                    let _ = reply.send(Err(format!(
                        "dataset {dup} is already held by another node"
                    )));
                    return Ok(());
                }
                let named = &s.args.job.datasets;
                if let Some(d) = join
                    .datasets
                    .iter()
                    .find(|d| !named.is_empty() && !named.contains(&d.name))
                {
                    let _ = reply.send(Err(format!(
                        "dataset {} is not one the job names ({named:?})",
                        d.name
                    )));
                    return Ok(());
                }
                let expected = s.args.job_shape.clone();
                if let Some(d) = join.datasets.iter().find(|d| d.shape != expected) {
                    let _ = reply.send(Err(format!(
                        "dataset {} does not fit the job: it holds {}, the job needs {expected}",
                        d.name, d.shape
                    )));
                    return Ok(());
                }
                if matches!(s.phase, Phase::Evaluating { .. }) {
                    let _ =
                        reply.send(Err("the job is ending: its model is being evaluated".into()));
                    return Ok(());
                }
                if matches!(s.phase, Phase::Releasing { .. }) {
                    let _ =
                        reply.send(Err("the job is ending: its model is being released".into()));
                    return Ok(());
                }
                let _ = reply.send(Ok(()));
                if s.lost.remove(&name).is_some() {
                    tracing::info!(node = %name, "lost node is back, re-attested");
                    s.args.metrics.restart();
                } else {
                    tracing::info!(node = %name, datasets = join.datasets.len(), "node admitted");
                }
                // Only this job's checkpoints can be resumed (another job's would be refused by
                // the node, again at every formation).
                let job = &s.args.job_id;
                let checkpoints = join
                    .checkpoints
                    .iter()
                    .filter(|(_, j)| j == job)
                    .map(|(step, _)| *step)
                    .collect();
                let admission = Admission {
                    node: name.clone(),
                    key: key.clone(),
                    attestation,
                    datasets: join.datasets.clone(),
                };
                // A node that comes back with the same key and evidence is one record.
                s.admissions.retain(|a| {
                    !(a.node == admission.node
                        && a.key == admission.key
                        && a.attestation == admission.attestation)
                });
                s.admissions.push(admission);
                s.members.insert(
                    name,
                    Member {
                        join,
                        key,
                        link,
                        last_seen: Instant::now(),
                        checkpoints,
                    },
                );
                if matches!(s.phase, Phase::Forming { .. } | Phase::Stepping(_)) {
                    // A member came (back) while the group was running: re-form with it.
                    abort_group(s, "a node (re)joined");
                }
                if s.phase == Phase::Gathering {
                    maybe_form(s).await;
                }
            }
            SupervisorMsg::From { node, msg } => {
                if let Some(m) = s.members.get_mut(&node) {
                    m.last_seen = Instant::now();
                }
                on_message(s, node, msg).await;
            }
            SupervisorMsg::Closed { node, reason } => {
                if s.members.contains_key(&node) {
                    lose(s, &node, &format!("link closed: {reason}")).await;
                }
            }
            SupervisorMsg::Tick => {
                let heartbeat = Duration::from_millis(s.args.timeouts.heartbeat_ms);
                let stalled = s.last_tick.elapsed();
                s.last_tick = Instant::now();
                if stalled > 2 * heartbeat {
                    // We were busy; their heartbeats are queued behind this Tick.
                    for m in s.members.values_mut() {
                        m.last_seen = m.last_seen.max(Instant::now() - heartbeat);
                    }
                }
                let timeout = Duration::from_millis(s.args.timeouts.node_timeout_ms);
                let silent: Vec<String> = s
                    .members
                    .iter()
                    .filter(|(_, m)| m.last_seen.elapsed() > timeout)
                    .map(|(n, _)| n.clone())
                    .collect();
                for node in silent {
                    lose(
                        s,
                        &node,
                        &format!("no heartbeat for {} ms", timeout.as_millis()),
                    )
                    .await;
                }
                if s.phase == Phase::Gathering {
                    if let Some(reason) = apply_loss_policy(s) {
                        stop(s, JobStatus::Stopped, reason).await;
                    }
                }
                if s.phase == Phase::Gathering {
                    maybe_form(s).await;
                }
            }
        }
        if s.phase == Phase::Finished {
            myself.stop(None);
        }
        Ok(())
    }
}

fn duplicate_dataset(members: &BTreeMap<String, Member>, join: &Join) -> Option<String> {
    let held: BTreeSet<&str> = members
        .values()
        .flat_map(|m| m.join.datasets.iter().map(|d| d.name.as_str()))
        .collect();
    join.datasets
        .iter()
        .find(|d| held.contains(d.name.as_str()))
        .map(|d| d.name.clone())
}

/// A member is gone: abort whatever runs and wait for it (or for the policy).
async fn lose(s: &mut SupervisorState, node: &str, why: &str) {
    let datasets = s
        .members
        .remove(node)
        .map(|m| m.join.datasets.into_iter().map(|d| d.name).collect())
        .unwrap_or_default();
    s.lost.insert(node.to_string(), (Instant::now(), datasets));
    tracing::warn!(%node, reason = why, "node lost; step aborted, waiting for it to return");
    s.args.metrics.set_group_size(s.members.len());
    match &s.phase {
        Phase::Gathering | Phase::Finished => {}
        Phase::Evaluating {
            evaluator,
            status,
            reason,
        } => {
            if evaluator == node {
                let (status, reason) = (*status, format!("{reason}; evaluation lost with {node}"));
                finish(s, status, reason).await;
            }
        }
        Phase::Releasing {
            releaser,
            status,
            reason,
        } => {
            if releaser == node {
                tracing::error!(%node, "the coordinator's node was lost while releasing the model: no receipt");
                let (status, reason) = (*status, format!("{reason}; release lost with {node}"));
                conclude(s, status, reason, false).await;
            }
        }
        Phase::Forming { .. } | Phase::Stepping(_) => {
            abort_group(s, &format!("node {node} lost: {why}"));
        }
    }
}

/// Tells every member to drop the current epoch; the Supervisor gathers again.
fn abort_group(s: &mut SupervisorState, reason: &str) {
    if let Phase::Stepping(f) = &s.phase {
        tracing::warn!(step = f.step, reason, "step aborted");
        s.args.metrics.step_aborted();
    }
    for m in s.members.values() {
        let _ = m.link.send(ToNode::Abort {
            reason: reason.to_string(),
        });
    }
    s.phase = Phase::Gathering;
}

/// Nodes lost longer than the rejoin timeout: the job's policy decides. Returns why the job
/// must stop, if it must.
fn apply_loss_policy(s: &mut SupervisorState) -> Option<String> {
    let deadline = Duration::from_millis(s.args.timeouts.rejoin_timeout_ms);
    let expired: Vec<String> = s
        .lost
        .iter()
        .filter(|(_, (since, _))| since.elapsed() > deadline)
        .map(|(n, _)| n.clone())
        .collect();
    for node in expired {
        let Some((_, datasets)) = s.lost.remove(&node) else {
            continue;
        };
        match s.args.job.schedule.on_node_loss {
            OnNodeLoss::Stop => {
                return Some(format!(
                    "node {node} (datasets {datasets:?}) did not return within {} ms; job policy on_node_loss = \"stop\": stopping",
                    deadline.as_millis()
                ));
            }
            OnNodeLoss::Continue => {
                tracing::warn!(
                    %node,
                    ?datasets,
                    "node did not return within {} ms; job policy on_node_loss = \"continue\": continuing without it and its datasets",
                    deadline.as_millis()
                );
                s.dropped.insert(node, datasets);
            }
        }
    }
    None
}

/// Forms the group once every expected node is present.
async fn maybe_form(s: &mut SupervisorState) {
    if s.hold_until.is_some_and(|t| Instant::now() < t) {
        return;
    }
    let expected = s.args.job.schedule.nodes.saturating_sub(s.dropped.len());
    if s.members.len() < expected || !s.lost.is_empty() || s.members.is_empty() {
        return;
    }
    if let Err(reason) = form(s).await {
        stop(s, JobStatus::Failed, reason).await;
    }
}

/// The job's plan: the one the ledger recorded for this job (a restarted coordinator resumes
/// it unchanged), or a new one calibrated to the tightest budget, checked against every
/// dataset's remaining budget and recorded before step 0.
async fn plan(s: &mut SupervisorState, datasets: &[DatasetInfo]) -> Result<Training, String> {
    let job = s.args.job.clone();
    let id = s.args.job_id.clone();
    let accountant = &s.args.accountant;
    let total: u64 = datasets.iter().map(|d| d.records).sum();
    let names: Vec<String> = datasets.iter().map(|d| d.name.clone()).collect();
    let recorded = call(accountant, |reply| AccountantMsg::RecordedPlan { reply }).await?;
    let plan = match recorded {
        Some(p) if p.job == id => {
            if let Some(new) = names.iter().find(|n| !p.datasets.contains(n)) {
                return Err(format!(
                    "dataset {new} is not in this job's recorded plan ({:?}): it was never checked against the plan; start it as a new job",
                    p.datasets
                ));
            }
            tracing::info!(job = %id, q = p.q, sigma = p.sigma, steps = p.steps, "resuming the ledger's plan");
            p
        }
        _ => {
            let (q, steps) = job.sampling(total);
            let target = datasets
                .iter()
                .map(|d| d.epsilon_budget)
                .fold(job.privacy.epsilon, f64::min);
            let delta = datasets
                .iter()
                .map(|d| d.delta)
                .fold(job.privacy.delta, f64::min);
            // Calibrated with room for the steps that failures abort (they are charged), so
            // the plan's steps still fit when some are retried.
            let reserve = job.retry_reserve_for(steps);
            let calibration =
                calibrate_sigma(job.privacy.accountant, q, steps + reserve, delta, target)
                    .map_err(|e| format!("calibrating the noise: {e}"))?;
            let plan = PlanRecord {
                job: id.clone(),
                q,
                sigma: calibration.sigma,
                max_grad_norm: job.privacy.max_grad_norm,
                steps,
                datasets: names.clone(),
            };
            // A new job must fit every dataset's remaining budget before it starts.
            let check = Plan {
                steps: steps + reserve,
                sigma: plan.sigma,
                datasets: names.iter().map(|n| (n.clone(), q)).collect(),
            };
            call(accountant, |reply| AccountantMsg::CheckPlan {
                plan: check,
                reply,
            })
            .await?
            .map_err(|e| format!("job refused before it started: {e}"))?;
            call(accountant, |reply| AccountantMsg::RecordPlan {
                plan: plan.clone(),
                reply,
            })
            .await?
            .map_err(|e| format!("recording the plan: {e}"))?;
            tracing::info!(
                q,
                sigma = plan.sigma,
                steps,
                reserve,
                epsilon = target,
                "job planned"
            );
            plan
        }
    };
    s.planned_steps = plan.steps;
    Ok(Training {
        job: id,
        steps: plan.steps,
        q: plan.q,
        sigma: plan.sigma,
        max_grad_norm: plan.max_grad_norm,
        expected_batch_size: plan.q * total as f64,
        deterministic_for_tests: job.deterministic_for_tests(),
    })
}

async fn form(s: &mut SupervisorState) -> Result<(), String> {
    let datasets: Vec<DatasetInfo> = s
        .members
        .values()
        .flat_map(|m| m.join.datasets.iter().cloned())
        .collect();
    if datasets.is_empty() {
        return Err("no node holds any data".into());
    }
    let total: u64 = datasets.iter().map(|d| d.records).sum();

    // Every dataset is registered with its owner's budget; a budget cannot be raised later.
    let budgets = datasets
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                Budget {
                    epsilon: d.epsilon_budget,
                    delta: d.delta,
                },
            )
        })
        .collect();
    call(&s.args.accountant, |reply| AccountantMsg::Register {
        datasets: budgets,
        reply,
    })
    .await??;

    // The newest checkpoint that every member holds.
    for (name, m) in &s.members {
        tracing::debug!(node = %name, checkpoints = ?m.checkpoints, "checkpoints held");
    }
    let resume = s
        .members
        .values()
        .map(|m| m.checkpoints.clone())
        .reduce(|a, b| a.intersection(&b).copied().collect())
        .and_then(|common| common.into_iter().next_back());

    let training = match &s.training {
        // q is the privacy parameter: it stays when the group changes, and the expected
        // batch follows the data that is left.
        Some(t) => Training {
            expected_batch_size: t.q * total as f64,
            ..t.clone()
        },
        None => plan(s, &datasets).await?,
    };
    s.step = resume.unwrap_or(0);
    s.training = Some(training.clone());
    s.epoch += 1;
    if s.epoch > 1 {
        s.reformations += 1;
    }
    s.group = s.members.keys().cloned().collect();
    let members: Vec<(String, String, String)> = s
        .group
        .iter()
        .map(|n| {
            let m = &s.members[n];
            (n.clone(), m.join.ring_addr.clone(), m.key.clone())
        })
        .collect();
    for (rank, name) in s.group.iter().enumerate() {
        let plan = GroupPlan {
            epoch: s.epoch,
            rank: rank as u64,
            members: members.clone(),
            resume_from: resume,
            training: training.clone(),
        };
        let _ = s.members[name].link.send(ToNode::Form(plan));
    }
    tracing::info!(epoch = s.epoch, nodes = ?s.group, resume_from = ?resume, q = training.q, expected_batch = training.expected_batch_size, "group formed");
    let _ = s.args.accountant.cast(AccountantMsg::Note(format!(
        "group epoch {} formed: {}; resume from {:?}",
        s.epoch,
        s.group
            .iter()
            .map(|n| format!("{n} (key sha256:{})", s.members[n].key))
            .collect::<Vec<_>>()
            .join(", "),
        resume
    )));
    s.args.metrics.set_group_size(s.group.len());
    s.phase = Phase::Forming {
        ready: BTreeSet::new(),
    };
    Ok(())
}

async fn on_message(s: &mut SupervisorState, node: String, msg: ToSupervisor) {
    match msg {
        ToSupervisor::Heartbeat => {}
        ToSupervisor::Ready { epoch } if epoch == s.epoch => {
            if let Phase::Forming { ready } = &mut s.phase {
                ready.insert(node);
                if ready.len() == s.group.len() {
                    next_step(s).await;
                }
            }
        }
        ToSupervisor::StepDone {
            epoch,
            step,
            checkpointed,
        } if epoch == s.epoch => {
            let all_done = match &mut s.phase {
                Phase::Stepping(f) if f.step == step => {
                    if checkpointed {
                        if let Some(m) = s.members.get_mut(&node) {
                            m.checkpoints.insert(step + 1);
                            while m.checkpoints.len() > CHECKPOINTS_KEPT {
                                m.checkpoints.pop_first();
                            }
                        }
                    }
                    f.done.insert(node);
                    f.done.len() == s.group.len()
                }
                _ => false,
            };
            if all_done {
                if let Phase::Stepping(f) = &s.phase {
                    tracing::info!(
                        seconds = f.started.elapsed().as_secs_f64(),
                        step = f.step + 1,
                        of = s.planned_steps,
                        "step done"
                    );
                }
                s.step += 1;
                s.failures_in_a_row = 0;
                next_step(s).await;
            }
        }
        ToSupervisor::Refused { epoch, reason }
            if epoch == s.epoch
                && !matches!(s.phase, Phase::Evaluating { .. } | Phase::Releasing { .. }) =>
        {
            // A member defends its own data owners: its refusal is final for this job.
            tracing::error!(%node, %reason, "a node refused to take part");
            let why = format!("node {node} refused: {reason}");
            if matches!(s.phase, Phase::Forming { .. } | Phase::Stepping(_)) {
                abort_group(s, &why);
            }
            let status = if s.step == 0 {
                JobStatus::Failed
            } else {
                JobStatus::Stopped
            };
            stop(s, status, why).await;
        }
        ToSupervisor::EvaluationFailed { reason } => {
            if let Phase::Evaluating {
                evaluator,
                status,
                reason: why,
            } = &s.phase
            {
                if *evaluator == node {
                    let (status, why) = (*status, format!("{why}; evaluation failed: {reason}"));
                    finish(s, status, why).await;
                }
            }
        }
        ToSupervisor::Failed { epoch, reason } if epoch == s.epoch => {
            if matches!(s.phase, Phase::Evaluating { .. } | Phase::Releasing { .. }) {
                // The group was aborted before the evaluation; late answers to its orders
                // change nothing now.
                tracing::debug!(%node, %reason, "failure of an aborted order ignored");
                return;
            }
            // Usually a ring neighbour died; the heartbeat tells which. Re-form meanwhile.
            tracing::warn!(%node, %reason, "a node failed the step");
            if !matches!(s.phase, Phase::Gathering) {
                s.failures_in_a_row += 1;
                if s.failures_in_a_row > MAX_FAILURES_IN_A_ROW {
                    let why = format!(
                        "{} formations or steps failed in a row; the last: node {node}: {reason}",
                        s.failures_in_a_row
                    );
                    abort_group(s, &why);
                    stop(s, JobStatus::Failed, why).await;
                    return;
                }
                abort_group(s, &format!("node {node} failed: {reason}"));
                s.hold_until =
                    Some(Instant::now() + Duration::from_millis(s.args.timeouts.node_timeout_ms));
                maybe_form(s).await;
            }
        }
        ToSupervisor::Evaluated(evaluation) => {
            if let Phase::Evaluating {
                evaluator,
                status,
                reason,
            } = &s.phase
            {
                if *evaluator == node {
                    s.evaluation = Some(evaluation);
                    let (status, reason) = (*status, reason.clone());
                    finish(s, status, reason).await;
                }
            }
        }
        ToSupervisor::Released { path } => {
            if let Phase::Releasing {
                releaser,
                status,
                reason,
            } = &s.phase
            {
                if *releaser == node {
                    tracing::info!(%node, %path, "model released");
                    let (status, reason) = (*status, reason.clone());
                    conclude(s, status, reason, true).await;
                }
            }
        }
        ToSupervisor::ReleaseFailed { reason: why } => {
            if let Phase::Releasing {
                releaser,
                status,
                reason,
            } = &s.phase
            {
                if *releaser == node {
                    tracing::error!(%node, reason = %why, "the model could not be released: no receipt");
                    let (status, reason) = (*status, format!("{reason}; release failed: {why}"));
                    conclude(s, status, reason, false).await;
                }
            }
        }
        other => {
            tracing::debug!(%node, ?other, "stale message ignored");
        }
    }
}

/// Authorizes and starts the next step, or ends the job.
async fn next_step(s: &mut SupervisorState) {
    let training = s.training.clone().expect("formed");
    if s.step >= s.planned_steps {
        let reason = format!("trained {} steps", s.step);
        stop(s, JobStatus::Completed, reason).await;
        return;
    }
    let datasets: Vec<(String, f64)> = s
        .group
        .iter()
        .flat_map(|n| {
            s.members[n]
                .join
                .datasets
                .iter()
                .map(|d| (d.name.clone(), training.q))
        })
        .collect();
    // The step is on disk before any node computes it, so before any gradient is released.
    let authorized = call(&s.args.accountant, |reply| AccountantMsg::Authorize {
        sigma: training.sigma,
        datasets,
        reply,
    })
    .await;
    let ledger_step = match authorized {
        Ok(Ok(ledger_step)) => ledger_step,
        Ok(Err(reason)) => {
            stop(
                s,
                JobStatus::Stopped,
                format!("privacy budget reached: {reason}"),
            )
            .await;
            return;
        }
        Err(reason) => {
            stop(
                s,
                JobStatus::Failed,
                format!("accountant unavailable: {reason}"),
            )
            .await;
            return;
        }
    };
    let every = s.args.job.schedule.checkpoint_every;
    let checkpoint = (s.step + 1).is_multiple_of(every) || s.step + 1 == s.planned_steps;
    for name in &s.group {
        let _ = s.members[name].link.send(ToNode::Step {
            epoch: s.epoch,
            step: s.step,
            ledger_step,
            checkpoint,
        });
    }
    s.phase = Phase::Stepping(InFlight {
        step: s.step,
        done: BTreeSet::new(),
        started: Instant::now(),
    });
}

/// Ends the job with `status`: first has the model as it stands evaluated (it is DP however
/// many steps ran) when a member holds one, then reports.
async fn stop(s: &mut SupervisorState, status: JobStatus, reason: String) {
    // The coordinator's own node holds the model owner's held-out data.
    let evaluator = Some(s.args.coordinator.clone())
        .filter(|n| s.group.contains(n) && s.members.contains_key(n))
        .filter(|_| s.args.job.eval.is_some())
        .filter(|_| s.training.is_some() && (status != JobStatus::Failed || s.step > 0));
    match evaluator {
        Some(evaluator) => {
            if status == JobStatus::Completed {
                tracing::info!(%reason, "all steps done; evaluating");
            } else {
                tracing::warn!(%reason, "job stopping; evaluating the model as it stands");
            }
            let _ = s.members[&evaluator].link.send(ToNode::Evaluate);
            s.phase = Phase::Evaluating {
                evaluator,
                status,
                reason,
            };
        }
        None => finish(s, status, reason).await,
    }
}

/// Ends the job: when there is a model to release, the coordinator's own node writes it
/// first (the receipt names its files), then the job concludes.
async fn finish(s: &mut SupervisorState, status: JobStatus, reason: String) {
    let releaser = Some(s.args.coordinator.clone())
        .filter(|n| s.group.contains(n) && s.members.contains_key(n))
        .filter(|_| s.training.is_some() && s.step > 0);
    match releaser {
        Some(releaser) => {
            let _ = s.members[&releaser].link.send(ToNode::Release);
            s.phase = Phase::Releasing {
                releaser,
                status,
                reason,
            };
        }
        None => conclude(s, status, reason, false).await,
    }
}

/// Reports the job: `privacy.json` and, when the coordinator's node released the model,
/// the signed `receipt.json` beside it; then every member is told to finish.
async fn conclude(s: &mut SupervisorState, status: JobStatus, reason: String, released: bool) {
    match status {
        JobStatus::Completed => tracing::info!(%reason, "job completed"),
        JobStatus::Stopped => tracing::warn!(%reason, "job stopped"),
        JobStatus::Failed => tracing::error!(%reason, "job failed"),
    }
    // The report's figures are the ledger's, read now: nothing released after the last
    // refresh may be missing from them.
    let privacy = match call(&s.args.accountant, |reply| AccountantMsg::Spent { reply }).await {
        Ok(spent) => spent,
        Err(e) => {
            tracing::error!(error = %e, "could not read the ledger's final figures");
            Vec::new()
        }
    };
    let mut report = JobReport {
        status,
        reason,
        steps: s.step,
        planned_steps: s.planned_steps,
        reformations: s.reformations,
        nodes: s.members.keys().cloned().collect(),
        lost_nodes: s.dropped.keys().chain(s.lost.keys()).cloned().collect(),
        q: s.training.as_ref().map_or(0.0, |t| t.q),
        sigma: s.training.as_ref().map_or(0.0, |t| t.sigma),
        privacy,
        evaluation: s.evaluation.clone(),
        release: None,
        receipt: None,
        seconds: s.started.elapsed().as_secs_f64(),
        simulated_tee: s.args.simulated_tee,
        deterministic_for_tests: s.args.job.deterministic_for_tests(),
    };
    if let Some(training) = s.training.clone().filter(|_| s.step > 0) {
        match write_privacy_json(&s.args, &training, &report) {
            Ok(()) => report.release = Some(s.args.release_dir.display().to_string()),
            Err(e) => tracing::error!(error = %e, "privacy.json not written"),
        }
        if released {
            // After privacy.json, which the receipt's model digest then covers.
            match write_receipt(s, &training, &report).await {
                Ok(path) => {
                    tracing::info!(path = %path.display(), "signed privacy receipt written");
                    report.receipt = Some(path.display().to_string());
                }
                Err(e) => tracing::error!(error = %e, "receipt.json not written"),
            }
        }
    }
    for m in s.members.values() {
        let _ = m.link.send(ToNode::Finish {
            reason: report.reason.clone(),
            failed: status != JobStatus::Completed,
        });
    }
    let _ = s.args.accountant.cast(AccountantMsg::Note(format!(
        "job ended ({status:?}): {}",
        report.reason
    )));
    if let Some(done) = s.done.take() {
        let _ = done.send(report);
    }
    s.phase = Phase::Finished;
}

/// The receipt's statement of this job, the model left empty (it is hashed from the
/// release directory when signed).
fn receipt_body(
    s: &SupervisorState,
    training: &Training,
    report: &JobReport,
) -> bastion_receipt::Body {
    use bastion_receipt::{DatasetRecord, JobRecord, ModelRecord, NodeRecord, PrivacyRecord};
    // Who held each dataset: the latest admission that brought it.
    let mut holders: BTreeMap<&str, (&Admission, &DatasetInfo)> = BTreeMap::new();
    for a in &s.admissions {
        for d in &a.datasets {
            holders.insert(d.name.as_str(), (a, d));
        }
    }
    // The ledger may hold datasets of earlier jobs: only this job's are named.
    let datasets = report
        .privacy
        .iter()
        .filter_map(|p| {
            let (a, info) = holders.get(p.dataset.as_str())?;
            Some(DatasetRecord {
                name: p.dataset.clone(),
                owner: info.owner.clone(),
                node: a.node.clone(),
                content_sha256: info.content_sha256.clone(),
                epsilon: p.epsilon,
                delta: p.delta,
                epsilon_budget: p.epsilon_budget,
                steps: p.steps,
                history: p
                    .segments
                    .iter()
                    .map(|g| bastion_receipt::SegmentRecord {
                        q: g.q,
                        sigma: g.sigma,
                        steps: g.steps,
                    })
                    .collect(),
            })
        })
        .collect();
    let nodes = s
        .admissions
        .iter()
        .map(|a| NodeRecord {
            name: a.node.clone(),
            tls_key_sha256: a.key.clone(),
            measurement: hex(&a.attestation.measurement),
            chip_id: hex(&a.attestation.chip_id),
            simulated: a.attestation.simulated,
            in_final_group: s.group.contains(&a.node)
                && s.members.get(&a.node).is_some_and(|m| m.key == a.key),
            datasets: a.datasets.iter().map(|d| d.name.clone()).collect(),
        })
        .collect();
    bastion_receipt::Body {
        job: JobRecord {
            id: s.args.job_id.clone(),
            file_sha256: s.args.job.file_sha256.clone(),
            coordinator: s.args.coordinator.clone(),
            status: match report.status {
                JobStatus::Completed => "completed",
                JobStatus::Stopped => "stopped",
                JobStatus::Failed => "failed",
            }
            .into(),
            reason: report.reason.clone(),
            start: bastion_receipt::rfc3339(s.started_at),
            end: bastion_receipt::rfc3339(SystemTime::now()),
            simulated_tee: s.args.simulated_tee,
        },
        model: ModelRecord {
            sha256: String::new(),
            files: Vec::new(),
        },
        privacy: PrivacyRecord {
            accountant: s.args.job.privacy.accountant.name().into(),
            q: training.q,
            sigma: training.sigma,
            max_grad_norm: training.max_grad_norm,
            steps: s.step,
            planned_steps: s.planned_steps,
            deterministic_for_tests: training.deterministic_for_tests,
        },
        datasets,
        nodes,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes the release directory (the coordinator's node has written it), signs the receipt
/// with a fresh key the coordinator's TEE attests, and writes `receipt.json` beside the model.
async fn write_receipt(
    s: &SupervisorState,
    training: &Training,
    report: &JobReport,
) -> Result<std::path::PathBuf, String> {
    let mut body = receipt_body(s, training, report);
    let dir = s.args.release_dir.clone();
    let attester = Arc::clone(&s.args.receipt_attester);
    tokio::task::spawn_blocking(move || {
        body.model = bastion_receipt::model::hash_dir(&dir).map_err(|e| e.to_string())?;
        let receipt = bastion_receipt::issue(&body, &*attester).map_err(|e| e.to_string())?;
        receipt.write_into(&dir).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("signing the receipt panicked: {e}"))?
}

/// An RPC to the Accountant, flattened to `Result<T, String>`.
async fn call<T: Send + 'static>(
    accountant: &ActorRef<AccountantMsg>,
    msg: impl FnOnce(RpcReplyPort<T>) -> AccountantMsg,
) -> Result<T, String> {
    accountant
        .call(msg, Some(Duration::from_secs(60)))
        .await
        .map_err(|e| format!("accountant: {e}"))?
        .success_or("accountant did not answer")
        .map_err(|e| e.to_string())
}

/// `privacy.json` beside the released model: the ledger's figures per dataset and the
/// parameters they follow from, so the model's privacy travels with it.
fn write_privacy_json(
    args: &SupervisorArgs,
    training: &Training,
    report: &JobReport,
) -> Result<(), String> {
    let datasets: Vec<serde_json::Value> = report
        .privacy
        .iter()
        .map(|d| {
            serde_json::json!({
                "dataset": d.dataset,
                "epsilon": d.epsilon,
                "delta": d.delta,
                "epsilon_budget": d.epsilon_budget,
                "steps": d.steps,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "job": args.job_id,
        "status": report.status,
        "accountant": args.job.privacy.accountant,
        "q": training.q,
        "sigma": training.sigma,
        "max_grad_norm": training.max_grad_norm,
        "steps": report.steps,
        "datasets": datasets,
        "simulated_tee": report.simulated_tee,
        "note": "epsilon per dataset is the privacy ledger's figure for every step released, aborted steps included",
    });
    std::fs::create_dir_all(&args.release_dir)
        .map_err(|e| format!("{}: {e}", args.release_dir.display()))?;
    let path = args.release_dir.join("privacy.json");
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, text + "\n")
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))
}
