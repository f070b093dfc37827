//! The Supervisor actor (one per group, on the coordinator): admits attested nodes, assigns
//! ranks and the plan, drives steps (each authorized by the Accountant first), watches
//! heartbeats, and on a failure aborts the step and re-forms the group from the last
//! checkpoint every member holds, or applies the job's policy when a node does not return.

use crate::accountant::AccountantMsg;
use crate::config::{JobConfig, OnNodeLoss, Timeouts};
use crate::protocol::{DatasetInfo, GroupPlan, Join, ToNode, ToSupervisor, Training};
use bastion_dp::accountant::calibrate_sigma;
use bastion_ledger::{Budget, Plan};
use bastion_metrics::NodeMetrics;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Messages to the Supervisor.
pub enum SupervisorMsg {
    /// An attested node said hello on its coordinator link.
    Joined {
        /// Its hello.
        join: Join,
        /// Its TLS key fingerprint (what its ring neighbours must see).
        key: String,
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

/// How the job ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobReport {
    /// False when the job stopped on a failure.
    pub completed: bool,
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
    /// Epsilon spent per dataset (from the ledger), with its budget.
    pub privacy: Vec<(String, f64, f64)>,
    /// Test accuracy of the final model.
    pub test_accuracy: Option<f64>,
    /// Wall time.
    pub seconds: f64,
    /// True when run with the test-only deterministic setting (no noise).
    pub deterministic_for_tests: bool,
}

/// What the Supervisor is started with.
pub struct SupervisorArgs {
    /// The job.
    pub job: JobConfig,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// The privacy ledger.
    pub accountant: ActorRef<AccountantMsg>,
    /// Metrics.
    pub metrics: NodeMetrics,
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
    /// Waiting for rank 0's evaluation.
    Evaluating,
    /// Over.
    Finished,
}

#[derive(Debug, PartialEq)]
struct InFlight {
    step: u64,
    done: BTreeSet<String>,
    samples: u64,
    loss_sum: f64,
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
    /// Epsilon spent per dataset with its budget, as of the last authorized step.
    privacy: Vec<(String, f64, f64)>,
    phase: Phase,
    epoch: u64,
    group: Vec<String>,
    /// Updates applied (the next step's number).
    step: u64,
    planned_steps: u64,
    training: Option<Training>,
    reformations: u64,
    started: Instant,
    test_accuracy: Option<f64>,
    /// After a failed step, wait this long before re-forming so the heartbeat check can tell
    /// which node died (otherwise the group would re-form around a dead node).
    hold_until: Option<Instant>,
    /// When the last Tick ran: a Supervisor busy for long (calibrating the noise) must not
    /// blame members for heartbeats still waiting in its mailbox.
    last_tick: Instant,
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
        if args.job.danger_deterministic_for_tests {
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
            privacy: Vec::new(),
            phase: Phase::Gathering,
            epoch: 0,
            group: Vec::new(),
            step: 0,
            planned_steps: 0,
            training: None,
            reformations: 0,
            started: Instant::now(),
            test_accuracy: None,
            hold_until: None,
            last_tick: Instant::now(),
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
                let _ = reply.send(Ok(()));
                if s.lost.remove(&name).is_some() {
                    tracing::info!(node = %name, "lost node is back, re-attested");
                    s.args.metrics.restart();
                } else {
                    tracing::info!(node = %name, datasets = join.datasets.len(), "node admitted");
                }
                let checkpoints = join.checkpoints.iter().copied().collect();
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
                if !matches!(s.phase, Phase::Gathering) {
                    // A member came (back) while the group was running: re-form with it.
                    abort_group(s, "a node (re)joined");
                }
                maybe_form(s).await;
            }
            SupervisorMsg::From { node, msg } => {
                if let Some(m) = s.members.get_mut(&node) {
                    m.last_seen = Instant::now();
                }
                on_message(s, node, msg).await;
            }
            SupervisorMsg::Closed { node, reason } => {
                if s.members.contains_key(&node) {
                    lose(s, &node, &format!("link closed: {reason}"));
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
                    );
                }
                apply_loss_policy(s);
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
fn lose(s: &mut SupervisorState, node: &str, why: &str) {
    let datasets = s
        .members
        .remove(node)
        .map(|m| m.join.datasets.into_iter().map(|d| d.name).collect())
        .unwrap_or_default();
    s.lost.insert(node.to_string(), (Instant::now(), datasets));
    tracing::warn!(%node, reason = why, "node lost; step aborted, waiting for it to return");
    if !matches!(s.phase, Phase::Gathering) {
        abort_group(s, &format!("node {node} lost: {why}"));
    }
    s.args.metrics.set_group_size(s.members.len());
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

/// Nodes lost longer than the rejoin timeout: the job's policy decides.
fn apply_loss_policy(s: &mut SupervisorState) {
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
        match s.args.job.on_node_loss {
            OnNodeLoss::Stop => {
                let reason = format!(
                    "node {node} (datasets {datasets:?}) did not return within {} ms; job policy on_node_loss = \"stop\": stopping",
                    deadline.as_millis()
                );
                finish(s, false, reason);
                return;
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
}

/// Forms the group once every expected node is present.
async fn maybe_form(s: &mut SupervisorState) {
    if s.hold_until.is_some_and(|t| Instant::now() < t) {
        return;
    }
    let expected = s.args.job.nodes.saturating_sub(s.dropped.len());
    if s.members.len() < expected || !s.lost.is_empty() || s.members.is_empty() {
        return;
    }
    if let Err(reason) = form(s).await {
        finish(s, false, reason);
    }
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
    let job = s.args.job.clone();
    let q = (job.batch_size as f64 / total as f64).min(1.0);
    let accountant = &s.args.accountant;

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
    call(accountant, |reply| AccountantMsg::Register {
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
        Some(t) => Training {
            q,
            expected_batch_size: q * total as f64,
            ..t.clone()
        },
        None => {
            let steps = (job.epochs as f64 / q).ceil() as u64;
            let steps = if job.max_steps > 0 {
                steps.min(job.max_steps)
            } else {
                steps
            };
            let target = datasets
                .iter()
                .map(|d| d.epsilon_budget)
                .fold(job.epsilon, f64::min);
            let delta = datasets.iter().map(|d| d.delta).fold(job.delta, f64::min);
            let calibration = calibrate_sigma(job.accountant, q, steps, delta, target)
                .map_err(|e| format!("calibrating the noise: {e}"))?;
            s.planned_steps = steps;
            let training = Training {
                depth: job.depth,
                image_size: job.image_size,
                q,
                sigma: calibration.sigma,
                max_grad_norm: job.max_grad_norm,
                expected_batch_size: q * total as f64,
                lr: job.lr,
                init_seed: job.init_seed,
                deterministic_for_tests: job.danger_deterministic_for_tests,
            };
            if resume.is_none() {
                // A fresh job must fit every dataset's remaining budget before it starts.
                let plan = Plan {
                    steps,
                    sigma: training.sigma,
                    datasets: datasets.iter().map(|d| (d.name.clone(), q)).collect(),
                };
                call(accountant, |reply| AccountantMsg::CheckPlan { plan, reply })
                    .await?
                    .map_err(|e| format!("job refused before it started: {e}"))?;
            }
            tracing::info!(
                q,
                sigma = training.sigma,
                steps,
                epsilon = target,
                "job planned"
            );
            training
        }
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
    tracing::info!(epoch = s.epoch, nodes = ?s.group, resume_from = ?resume, "group formed");
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
            samples,
            loss_sum,
            allreduce_bytes: _,
            allreduce_s: _,
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
                    f.samples += samples;
                    f.loss_sum += loss_sum;
                    f.done.len() == s.group.len()
                }
                _ => false,
            };
            if all_done {
                if let Phase::Stepping(f) = &s.phase {
                    // Each node's Trainer observes its own step in the metrics; the group's
                    // totals go to the log.
                    let loss = f.loss_sum / f.samples.max(1) as f64;
                    tracing::info!(
                        seconds = f.started.elapsed().as_secs_f64(),
                        step = f.step + 1,
                        of = s.planned_steps,
                        samples = f.samples,
                        loss,
                        "step done"
                    );
                }
                s.step += 1;
                next_step(s).await;
            }
        }
        ToSupervisor::Failed { epoch, reason } if epoch == s.epoch => {
            // Usually a ring neighbour died; the heartbeat tells which. Re-form meanwhile.
            tracing::warn!(%node, %reason, "a node failed the step");
            if !matches!(s.phase, Phase::Gathering | Phase::Evaluating) {
                abort_group(s, &format!("node {node} failed: {reason}"));
                s.hold_until =
                    Some(Instant::now() + Duration::from_millis(s.args.timeouts.node_timeout_ms));
                maybe_form(s).await;
            }
        }
        ToSupervisor::Evaluated { test_accuracy } => {
            s.test_accuracy = Some(test_accuracy);
            let reason = format!("trained {} steps", s.step);
            finish(s, true, reason);
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
        update_privacy_metrics(s).await;
        s.phase = Phase::Evaluating;
        let rank0 = &s.members[&s.group[0]];
        let _ = rank0.link.send(ToNode::Evaluate {
            records: s.args.job.test_records as u64,
        });
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
            finish(s, true, format!("privacy budget reached: {reason}"));
            return;
        }
        Err(reason) => {
            finish(s, false, format!("accountant unavailable: {reason}"));
            return;
        }
    };
    let every = s.args.job.checkpoint_every;
    let checkpoint = (s.step + 1) % every == 0 || s.step + 1 == s.planned_steps;
    if checkpoint || s.privacy.is_empty() {
        // A PLD epsilon takes a while; refreshing the gauges at checkpoints is often enough.
        update_privacy_metrics(s).await;
    }
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
        samples: 0,
        loss_sum: 0.0,
        started: Instant::now(),
    });
}

async fn update_privacy_metrics(s: &mut SupervisorState) {
    if let Ok(spent) = call(&s.args.accountant, |reply| AccountantMsg::Spent { reply }).await {
        for (dataset, eps, budget) in &spent {
            s.args.metrics.set_privacy(dataset, *eps, *budget);
        }
        s.privacy = spent;
    }
}

fn finish(s: &mut SupervisorState, completed: bool, reason: String) {
    if completed {
        tracing::info!(%reason, "job finished");
    } else {
        tracing::error!(%reason, "job stopped");
    }
    for m in s.members.values() {
        let _ = m.link.send(ToNode::Finish {
            reason: reason.clone(),
            failed: !completed,
        });
    }
    let _ = s
        .args
        .accountant
        .cast(AccountantMsg::Note(format!("job ended: {reason}")));
    let report = JobReport {
        completed,
        reason,
        steps: s.step,
        planned_steps: s.planned_steps,
        reformations: s.reformations,
        nodes: s.members.keys().cloned().collect(),
        lost_nodes: s.dropped.keys().chain(s.lost.keys()).cloned().collect(),
        q: s.training.as_ref().map_or(0.0, |t| t.q),
        sigma: s.training.as_ref().map_or(0.0, |t| t.sigma),
        privacy: s.privacy.clone(),
        test_accuracy: s.test_accuracy,
        seconds: s.started.elapsed().as_secs_f64(),
        deterministic_for_tests: s.args.job.danger_deterministic_for_tests,
    };
    if let Some(done) = s.done.take() {
        let _ = done.send(report);
    }
    s.phase = Phase::Finished;
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
