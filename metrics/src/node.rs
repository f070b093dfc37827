//! The metrics of one node: typed methods over a registry of its own.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::proto::{LabelPair, MetricFamily};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::error::MetricsError;

/// Content type of [`NodeMetrics::encode_text`]: Prometheus text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Label value that stands for every attestation failure code past the cardinality cap or not
/// shaped like a code.
pub const OTHER_REASON: &str = "other";

/// How many distinct `reason` values the failure counter keeps before folding new ones into
/// [`OTHER_REASON`]. The attestation crate has about 40 codes; the cap guards the time series
/// database against a caller that passes free text by mistake.
pub const MAX_REASONS: usize = 64;

/// Longest accepted `reason` code, in bytes.
const MAX_REASON_LEN: usize = 64;

/// Longest accepted `node` or `role` value, in bytes.
const MAX_CONST_LABEL_LEN: usize = 128;

/// Step durations: from a tiny model on a CPU (milliseconds) to GPT-2 steps with large
/// Poisson batches (minutes).
const STEP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// All-reduce durations: sub-millisecond on loopback to tens of seconds for large models
/// across VMs.
const ALLREDUCE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The Prometheus metrics of one BastionAI node.
///
/// Every series carries the labels `node`, `rank` and `role`; per-dataset series add
/// `dataset`, and the attestation failure counter adds `reason` (see [`Self::attestation_failed`]).
///
/// `node` and `role` are fixed for the life of the value. `rank` can change when the
/// supervisor re-forms the group after a failure ([`Self::set_rank`]): it is added to every
/// series when the metrics are gathered, so the whole node moves to new series at once with
/// its counters' values kept. Rate queries on the new series start cleanly; dashboards
/// aggregate `by (node)` so a rank change does not split their lines. The current rank is
/// also the value of `bastion_rank`.
///
/// Cloning is cheap (one `Arc`) and every clone updates the same metrics, so the trainer, the
/// transport and the HTTP endpoint can each hold one.
#[derive(Clone)]
pub struct NodeMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    role: String,
    rank: AtomicUsize,
    registry: Registry,
    step_duration: Histogram,
    steps: IntCounter,
    steps_aborted: IntCounter,
    last_step: Gauge,
    epsilon_spent: GaugeVec,
    epsilon_budget: GaugeVec,
    allreduce_bytes: IntCounter,
    allreduce_duration: Histogram,
    attestations: IntCounter,
    attestation_failures: IntCounterVec,
    reasons: Mutex<BTreeSet<String>>,
    group_size: IntGauge,
    restarts: IntCounter,
    rank_gauge: IntGauge,
    // No label: a vector so that the series is absent ("unknown") until the runtime says
    // which TEE it runs on, rather than a default that could claim real hardware.
    simulated_tee: IntGaugeVec,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics")
            .field("node", &self.inner.node)
            .field("rank", &self.rank())
            .field("role", &self.inner.role)
            .finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// Builds the metrics of node `node` at `rank` with `role` (for example `supervisor` or
    /// `worker`), in a registry of its own.
    ///
    /// `node` and `role` must be non-empty, at most 128 bytes and free of control characters.
    pub fn new(node: &str, rank: usize, role: &str) -> Result<NodeMetrics, MetricsError> {
        check_const_label("node", node)?;
        check_const_label("role", role)?;
        let registry = Registry::new();
        let inner = Inner {
            node: node.to_owned(),
            role: role.to_owned(),
            rank: AtomicUsize::new(rank),
            step_duration: register(
                &registry,
                "bastion_step_duration_seconds",
                Histogram::with_opts(
                    HistogramOpts::new(
                        "bastion_step_duration_seconds",
                        "Wall-clock time of one DP-SGD step on this node, from sampling to optimizer step.",
                    )
                    .buckets(STEP_BUCKETS.to_vec()),
                ),
            )?,
            steps: register(
                &registry,
                "bastion_steps_total",
                IntCounter::new("bastion_steps_total", "DP-SGD steps completed by this node."),
            )?,
            steps_aborted: register(
                &registry,
                "bastion_steps_aborted_total",
                IntCounter::new(
                    "bastion_steps_aborted_total",
                    "DP-SGD steps this node aborted because the group failed during the step.",
                ),
            )?,
            last_step: register(
                &registry,
                "bastion_last_step_timestamp_seconds",
                Gauge::new(
                    "bastion_last_step_timestamp_seconds",
                    "Unix time at which this node last completed a step.",
                ),
            )?,
            epsilon_spent: register(
                &registry,
                "bastion_epsilon_spent",
                GaugeVec::new(
                    Opts::new(
                        "bastion_epsilon_spent",
                        "Privacy budget epsilon spent on the dataset so far, from the durable ledger.",
                    ),
                    &["dataset"],
                ),
            )?,
            epsilon_budget: register(
                &registry,
                "bastion_epsilon_budget",
                GaugeVec::new(
                    Opts::new(
                        "bastion_epsilon_budget",
                        "Total privacy budget epsilon the data owner granted for the dataset.",
                    ),
                    &["dataset"],
                ),
            )?,
            allreduce_bytes: register(
                &registry,
                "bastion_allreduce_bytes_total",
                IntCounter::new(
                    "bastion_allreduce_bytes_total",
                    "Bytes this node sent to its peers in gradient all-reduces.",
                ),
            )?,
            allreduce_duration: register(
                &registry,
                "bastion_allreduce_duration_seconds",
                Histogram::with_opts(
                    HistogramOpts::new(
                        "bastion_allreduce_duration_seconds",
                        "Wall-clock time of one gradient all-reduce on this node.",
                    )
                    .buckets(ALLREDUCE_BUCKETS.to_vec()),
                ),
            )?,
            attestations: register(
                &registry,
                "bastion_attestations_total",
                IntCounter::new(
                    "bastion_attestations_total",
                    "Peer attestations this node verified, accepted or refused.",
                ),
            )?,
            attestation_failures: register(
                &registry,
                "bastion_attestation_failures_total",
                IntCounterVec::new(
                    Opts::new(
                        "bastion_attestation_failures_total",
                        "Peer attestations this node refused, by refusal code.",
                    ),
                    &["reason"],
                ),
            )?,
            reasons: Mutex::new(BTreeSet::new()),
            group_size: register(
                &registry,
                "bastion_group_size",
                IntGauge::new(
                    "bastion_group_size",
                    "Attested nodes in this node's current data-parallel group, itself included.",
                ),
            )?,
            restarts: register(
                &registry,
                "bastion_restarts_total",
                IntCounter::new(
                    "bastion_restarts_total",
                    "Times this node re-formed its group and restored the last committed checkpoint.",
                ),
            )?,
            rank_gauge: register(
                &registry,
                "bastion_rank",
                IntGauge::new("bastion_rank", "Rank of this node in its current group."),
            )?,
            simulated_tee: register(
                &registry,
                "bastion_simulated_tee",
                IntGaugeVec::new(
                    Opts::new(
                        "bastion_simulated_tee",
                        "1 when this node runs on the simulated TEE (no hardware protection), 0 on SEV-SNP.",
                    ),
                    &[],
                ),
            )?,
            registry,
        };
        inner.rank_gauge.set(rank_value(rank));
        Ok(NodeMetrics {
            inner: Arc::new(inner),
        })
    }

    /// The node name given to [`Self::new`].
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The role given to [`Self::new`].
    pub fn role(&self) -> &str {
        &self.inner.role
    }

    /// The current rank.
    pub fn rank(&self) -> usize {
        self.inner.rank.load(Ordering::Relaxed)
    }

    /// Moves this node to `rank` after the group was re-formed. Every series gets the new
    /// `rank` label from the next scrape on; counters keep their values.
    pub fn set_rank(&self, rank: usize) {
        self.inner.rank.store(rank, Ordering::Relaxed);
        self.inner.rank_gauge.set(rank_value(rank));
    }

    /// Records one completed DP-SGD step and its wall-clock `duration`.
    ///
    /// Nothing about the step's data is recorded: the size of a Poisson sample and the
    /// training loss are statistics of private records outside the DP guarantee, and the
    /// operator who scrapes this is not their owner.
    pub fn observe_step(&self, duration: Duration) {
        let i = &self.inner;
        i.step_duration.observe(duration.as_secs_f64());
        i.steps.inc();
        // A clock before 1970 is a broken host; leave the last good value.
        if let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) {
            i.last_step.set(now.as_secs_f64());
        }
    }

    /// DP-SGD steps this node completed since it started (`bastion_steps_total`).
    pub fn steps_completed(&self) -> u64 {
        self.inner.steps.get()
    }

    /// Records a step this node aborted because the group failed while it ran.
    pub fn step_aborted(&self) {
        self.inner.steps_aborted.inc();
    }

    /// Sets the privacy state of `dataset`: epsilon spent so far and the total budget, both
    /// for the dataset's fixed delta, as the ledger holds them.
    pub fn set_privacy(&self, dataset: &str, epsilon_spent: f64, epsilon_budget: f64) {
        let i = &self.inner;
        i.epsilon_spent
            .with_label_values(&[dataset])
            .set(epsilon_spent);
        i.epsilon_budget
            .with_label_values(&[dataset])
            .set(epsilon_budget);
    }

    /// Records one gradient all-reduce: `bytes` this node sent to its peers and its wall-clock
    /// `duration`.
    pub fn observe_allreduce(&self, bytes: u64, duration: Duration) {
        self.inner.allreduce_bytes.inc_by(bytes);
        self.inner
            .allreduce_duration
            .observe(duration.as_secs_f64());
    }

    /// Records a peer attestation this node verified and accepted.
    pub fn attestation_ok(&self) {
        self.inner.attestations.inc();
    }

    /// Records a peer attestation this node refused, with the refusal's stable code (the
    /// attestation crate's `VerifyError::code()`, such as `policy.measurement`, or a transport
    /// code such as `tls.handshake`).
    ///
    /// The code becomes the `reason` label, so its set must stay small: a code must be
    /// dot-separated lower-case words (`[a-z][a-z0-9_]*`, at most 64 bytes), and at most
    /// [`MAX_REASONS`] distinct codes are kept. Anything else is counted as
    /// [`OTHER_REASON`]. Returns the label value used.
    pub fn attestation_failed<'a>(&self, reason_code: &'a str) -> &'a str {
        let i = &self.inner;
        i.attestations.inc();
        let admitted = is_reason_code(reason_code) && {
            // A poisoned lock only means another thread panicked mid-insert; the set is intact.
            let mut reasons = i.reasons.lock().unwrap_or_else(|e| e.into_inner());
            reasons.contains(reason_code)
                || (reasons.len() < MAX_REASONS && reasons.insert(reason_code.to_owned()))
        };
        let label = if admitted {
            reason_code
        } else {
            tracing::debug!(reason_code, "attestation failure code folded into 'other'");
            OTHER_REASON
        };
        i.attestation_failures.with_label_values(&[label]).inc();
        label
    }

    /// Sets the number of attested nodes in this node's group, itself included.
    pub fn set_group_size(&self, n: usize) {
        self.inner
            .group_size
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Records that this node re-formed its group and restored the last committed checkpoint.
    pub fn restart(&self) {
        self.inner.restarts.inc();
    }

    /// Raises the restart counter to `n`, for a process that reads the count back from its
    /// checkpoint. Fails, changing nothing, if the counter is already above `n`.
    pub fn set_restarts(&self, n: u64) -> Result<(), MetricsError> {
        let current = self.inner.restarts.get();
        if n < current {
            return Err(MetricsError::CounterDecrease {
                metric: "bastion_restarts_total",
                current,
                requested: n,
            });
        }
        self.inner.restarts.inc_by(n - current);
        Ok(())
    }

    /// Says whether this node runs on the simulated TEE (`true`) or on SEV-SNP hardware.
    /// Until called, `bastion_simulated_tee` is absent rather than claiming either.
    pub fn set_simulated_tee(&self, simulated: bool) {
        let empty: [&str; 0] = [];
        self.inner
            .simulated_tee
            .with_label_values(&empty)
            .set(i64::from(simulated));
    }

    /// All metric families, each series labelled with `node`, `rank` and `role`.
    pub fn gather(&self) -> Vec<MetricFamily> {
        let i = &self.inner;
        let mut families = i.registry.gather();
        let rank = self.rank().to_string();
        for family in &mut families {
            for metric in family.mut_metric() {
                let own = metric.take_label();
                let mut labels = Vec::with_capacity(own.len() + 3);
                labels.push(label_pair("node", &i.node));
                labels.push(label_pair("rank", &rank));
                labels.push(label_pair("role", &i.role));
                labels.extend(own);
                metric.set_label(labels);
            }
        }
        families
    }

    /// The metrics in Prometheus text exposition format 0.0.4 ([`TEXT_CONTENT_TYPE`]).
    pub fn encode_text(&self) -> String {
        let mut text = String::new();
        // The encoder fails only on a family without metrics or name, which the registry
        // never returns; writing to a String cannot fail.
        if let Err(e) = TextEncoder::new().encode_utf8(&self.gather(), &mut text) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        text
    }
}

fn register<C>(
    registry: &Registry,
    metric: &'static str,
    built: prometheus::Result<C>,
) -> Result<C, MetricsError>
where
    C: Collector + Clone + 'static,
{
    let collector = built.map_err(|source| MetricsError::Register { metric, source })?;
    registry
        .register(Box::new(collector.clone()))
        .map_err(|source| MetricsError::Register { metric, source })?;
    Ok(collector)
}

fn label_pair(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

fn rank_value(rank: usize) -> i64 {
    i64::try_from(rank).unwrap_or(i64::MAX)
}

fn check_const_label(label: &'static str, value: &str) -> Result<(), MetricsError> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.len() > MAX_CONST_LABEL_LEN {
        "it is longer than 128 bytes"
    } else if value.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(MetricsError::InvalidLabel {
        label,
        value: value.to_owned(),
        reason,
    })
}

/// `word(.word)*` with `word = [a-z][a-z0-9_]*`, at most 64 bytes.
fn is_reason_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_REASON_LEN
        && code.split('.').all(|word| {
            let mut chars = word.chars();
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

#[cfg(test)]
mod tests;
