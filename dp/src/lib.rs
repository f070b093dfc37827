//! Differential privacy for BastionAI.
//!
//! - [`accountant`]: privacy accountants for the Poisson-subsampled Gaussian mechanism (RDP and
//!   a tight PRV/PLD one), epsilon for a delta, and noise calibration.
//! - [`noise`]: Gaussian noise from a CSPRNG, hardened against floating-point attacks.
//! - [`sampling`]: Poisson sampling of record indices.
//! - [`clip`]: the per-sample clipping engine over tch: layers that record what they need,
//!   per-sample gradient norms without per-sample gradients, and the clipped sum.
//! - [`optim`]: the DP optimizer step (noise, scaling, SGD with momentum or AdamW).

/// The accountants live in their own crate (no libtorch); re-exported here for convenience.
pub use bastion_accountant as accountant;
pub mod clip;
pub mod noise;
pub mod optim;
pub mod sampling;
