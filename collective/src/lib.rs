//! Collectives for BastionAI: ring all-reduce (sum of `f32`) over mutually attested TLS
//! links between confidential VMs; NCCL across the GPUs of one VM behind the `nccl` feature.
//!
//! ```text
//!        ┌──────────── TLS 1.3, both ends SEV-SNP attested ────────────┐
//!        ▼                                                              │
//!     rank 0 ──chunk──▶ rank 1 ──chunk──▶ rank 2 ──chunk──▶ ... rank N-1
//! ```
//!
//! # Design
//! - **Ring all-reduce**, bucket by bucket ([`RingConfig::bucket_bytes`], 4 MiB by default):
//!   each bucket is cut into `N` chunks; `N - 1` reduce-scatter steps leave rank `r` with the
//!   full sum of chunk `r + 1`, then `N - 1` all-gather steps copy each finished chunk round
//!   the ring. Each rank sends `2 (N - 1) / N` of the data, the bandwidth optimum.
//! - **Bitwise identical results.** Chunk `c` is accumulated once, in ring order starting at
//!   rank `c`, and the finished bits are then copied, never recomputed: every rank ends with
//!   the same bits, which DP-SGD needs (all nodes take the same optimizer step).
//! - **No deadlock.** In every step a rank writes to the next and reads from the previous
//!   rank concurrently (two streams, two futures), so bounded socket buffers cannot stall
//!   the ring however large the chunk.
//! - **Data frames are raw little-endian `f32`** (the slice's own bytes, no encoding pass),
//!   behind a 56-byte header (epoch, tag, call number, phase, step, bucket, chunk, length,
//!   sender) that the receiver compares with what the step expects: a confused or stale
//!   peer is named ([`CollectiveError::OutOfStep`]) instead of its data being mixed in.
//!   Incoming partial sums are added in 256 KiB pieces as they arrive; finished chunks are
//!   read straight into place.
//! - **Failures are fast.** A neighbour that makes no progress for
//!   [`RingConfig::io_timeout`] gives [`CollectiveError::Timeout`]; a closed or failed link
//!   gives [`CollectiveError::Peer`]. Either way this rank closes both its links at once, so
//!   the failure travels round the ring in a round trip instead of each rank waiting out its
//!   own timeout.
//! - **Formation** ([`form_ring`]): connect to the next rank and accept the previous one
//!   concurrently, over [`bastion_attestation::tls`], refusing a neighbour whose TLS key is
//!   not the agreed one or whose ring hello (over [`bastion_wire`]) names another epoch.
//! - **NCCL does not encrypt**, so it never carries cross-VM traffic: with the `nccl`
//!   feature, [`nccl::LocalGpus`] sums the GPUs inside one VM; between VMs, data always goes
//!   through the encrypted ring. Without the feature, or without CUDA, every NCCL entry
//!   answers [`CollectiveError::NcclUnavailable`].
//!
//! Ranks are meant to run in separate processes (VMs); within a process, each rank's
//! all-reduce is one task that encrypts and decrypts on whichever runtime thread polls it.
//!
//! # Example
//!
//! ```
//! use bastion_collective::{Ring, RingConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bastion_collective::CollectiveError> {
//! // Two ranks over in-memory pipes (form_ring does the same over attested TLS).
//! let (a_to_b, b_from_a) = tokio::io::duplex(1 << 16);
//! let (b_to_a, a_from_b) = tokio::io::duplex(1 << 16);
//! let epoch = 1;
//! let mut a = Ring::new(0, 2, epoch, Box::new(a_to_b), Box::new(a_from_b), RingConfig::default())?;
//! let mut b = Ring::new(1, 2, epoch, Box::new(b_to_a), Box::new(b_from_a), RingConfig::default())?;
//! let (mut x, mut y) = (vec![1.0f32, 2.0, 3.0], vec![10.0f32, 20.0, 30.0]);
//! let (sa, sb) = tokio::join!(a.all_reduce(7, &mut x), b.all_reduce(7, &mut y));
//! sa?;
//! sb?;
//! assert_eq!(x, [11.0, 22.0, 33.0]);
//! assert_eq!(x, y);
//! # Ok(()) }
//! ```

#![cfg_attr(not(feature = "nccl"), forbid(unsafe_code))]
#![warn(missing_docs)]

mod error;
mod form;
mod header;
mod ring;

/// NCCL within one VM (stand-in answering [`CollectiveError::NcclUnavailable`] unless built
/// with the `nccl` feature).
#[cfg(feature = "nccl")]
pub mod nccl;
/// NCCL within one VM (stand-in answering [`CollectiveError::NcclUnavailable`] unless built
/// with the `nccl` feature).
#[cfg(not(feature = "nccl"))]
#[path = "nccl_stub.rs"]
pub mod nccl;

pub use error::{CollectiveError, PeerId, Side};
pub use form::{form_ring, RingSpec};
pub use ring::{AllReduceStats, LinkReader, LinkWriter, Ring, RingConfig};
