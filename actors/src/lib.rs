//! The actors of a BastionAI node, and the node assembled from them.
//!
//! ```text
//!            coordinator node                                  every node
//!  ┌──────────────────────────────────┐      attested TLS     ┌──────────────────────────┐
//!  │ Supervisor ──authorize──► Accountant (durable ledger) │ ◄──control frames──► │ link ─► Trainer ◄─ DataShard(s) │
//!  └──────────────────────────────────┘                       └────────┬─────────────────┘
//!                                                   ring all-reduce over attested TLS (noisy sums only)
//! ```
//!
//! - [`supervisor`]: admits attested nodes, forms the group (ranks, plan, resume point),
//!   drives steps, watches heartbeats, re-forms after failures, applies the loss policy.
//! - [`accountant`]: authorizes and durably records each step before any gradient leaves.
//! - [`shard`]: one data owner's records and their Poisson sample; never on the network.
//! - [`trainer`]: clipping, noise share, all-reduce, update, sealed checkpoints.
//! - [`link`]: the coordinator link; [`node`]: assembly; [`config`]: `node.toml`;
//!   [`device`]: CPU or GPUs, and why noise is always made on the CPU.

pub mod accountant;
pub mod auc;
pub mod config;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod job;
pub mod link;
pub mod model;
pub mod node;
pub mod package;
pub mod parties;
pub mod protocol;
pub mod ring;
pub mod shard;
pub mod supervisor;
pub mod tap;
mod tee;
pub mod trainer;
pub mod weights;
