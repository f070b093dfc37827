//! Prometheus metrics of a BastionAI node and their HTTP endpoint.
//!
//! Each node owns one [`NodeMetrics`]: a registry of its own (never the process-global one,
//! so several nodes can live in one test process) with typed methods that the trainer, the
//! transport and the supervisor call. [`serve`] answers Prometheus scrapes of `/metrics`.
//!
//! ```text
//!  trainer ──observe_step──┐
//!  collective ─observe_allreduce─┤                        Prometheus ── Grafana
//!  attested TLS ─attestation_*─┼─> NodeMetrics ─> serve ─> GET /metrics   (grafana/dashboards)
//!  supervisor ─set_group_size / restart / set_rank─┘
//! ```
//!
//! No metric describes the data: not the sample size, not the loss (both are un-noised
//! statistics of private records; see DESIGN, "nothing else leaves a node").
//!
//! # Names and labels
//! Names follow DESIGN's rule: a `bastion_` prefix, base units (seconds, bytes), `_total` on
//! counters. Every series carries `node`, `rank` and `role`; per-dataset series add `dataset`.
//! One extension of DESIGN's label rule: `bastion_attestation_failures_total` carries `reason`,
//! the attestation crate's stable refusal code, from a bounded set (see
//! [`NodeMetrics::attestation_failed`]), because "why was a peer refused" is the first thing an
//! operator asks and the codes are few and fixed.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `bastion_step_duration_seconds` | histogram | | time of one DP-SGD step |
//! | `bastion_steps_total` | counter | | steps completed |
//! | `bastion_steps_aborted_total` | counter | | steps aborted by a group failure |
//! | `bastion_last_step_timestamp_seconds` | gauge | | when the last step completed |
//! | `bastion_epsilon_spent` | gauge | `dataset` | epsilon spent per the ledger |
//! | `bastion_epsilon_budget` | gauge | `dataset` | epsilon granted by the data owner |
//! | `bastion_allreduce_bytes_total` | counter | | bytes sent in all-reduces |
//! | `bastion_allreduce_duration_seconds` | histogram | | time of one all-reduce |
//! | `bastion_attestations_total` | counter | | peer attestations verified (accepted or not) |
//! | `bastion_attestation_failures_total` | counter | `reason` | peer attestations refused |
//! | `bastion_group_size` | gauge | | nodes in the current group |
//! | `bastion_restarts_total` | counter | | group re-formations with checkpoint restore |
//! | `bastion_rank` | gauge | | current rank (also the `rank` label) |
//! | `bastion_simulated_tee` | gauge | | 1 on the simulated TEE, 0 on SEV-SNP |
//!
//! DESIGN asks that every metric make simulation visible: `bastion_simulated_tee` is that
//! signal, and the Grafana dashboard shows it in red on top.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use bastion_metrics::NodeMetrics;
//!
//! let metrics = NodeMetrics::new("node-0", 0, "worker")?;
//! metrics.set_simulated_tee(true);
//! metrics.observe_step(Duration::from_millis(420));
//! metrics.set_privacy("hospital-a", 1.5, 8.0);
//! let text = metrics.encode_text();
//! assert!(text.contains(r#"bastion_steps_total{node="node-0",rank="0",role="worker"} 1"#));
//! assert!(text.contains(
//!     r#"bastion_epsilon_spent{node="node-0",rank="0",role="worker",dataset="hospital-a"} 1.5"#
//! ));
//! // In the node: tokio::spawn(bastion_metrics::serve(metrics, listener));
//! # Ok::<(), bastion_metrics::MetricsError>(())
//! ```

mod error;
mod http;
mod node;

pub use error::MetricsError;
pub use http::{serve, serve_with_shutdown, MAX_CONNECTIONS, MAX_HEAD_BYTES};
pub use node::{NodeMetrics, MAX_REASONS, OTHER_REASON, TEXT_CONTENT_TYPE};
