//! The accountant's one error type.

use thiserror::Error;

/// Why an accountant refused a request. Every variant names the bad parameter and its value.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum AccountantError {
    /// The Poisson sampling rate must lie in (0, 1].
    #[error("sampling rate q must be in (0, 1], got {q}")]
    InvalidSamplingRate {
        /// The rate that was given.
        q: f64,
    },
    /// The noise multiplier must be positive and finite.
    #[error("noise multiplier sigma must be positive and finite, got {sigma}")]
    InvalidNoiseMultiplier {
        /// The multiplier that was given.
        sigma: f64,
    },
    /// δ must lie in (0, 1).
    #[error("delta must be in (0, 1), got {delta}")]
    InvalidDelta {
        /// The δ that was given.
        delta: f64,
    },
    /// A target ε must be positive and finite.
    #[error("target epsilon must be positive and finite, got {epsilon}")]
    InvalidEpsilon {
        /// The ε that was given.
        epsilon: f64,
    },
    /// Composing zero steps is a caller mistake (it would record nothing).
    #[error("steps must be at least 1, got 0")]
    ZeroSteps,
    /// The step counter would overflow.
    #[error("step count overflows: {taken} steps taken, {adding} more requested")]
    StepOverflow {
        /// Steps already recorded.
        taken: u64,
        /// Steps in the rejected request.
        adding: u64,
    },
    /// No accountant is registered under this name.
    #[error("unknown accountant {name:?}; expected one of: rdp, pld (alias prv)")]
    UnknownAccountant {
        /// The name that was asked for.
        name: String,
    },
    /// Saved state from one mechanism cannot be loaded into another: their numbers mean
    /// different things, and mixing them would misstate the privacy spent.
    #[error("saved state is for the {found:?} accountant, not {expected:?}")]
    MechanismMismatch {
        /// The mechanism of the accountant asked to load.
        expected: String,
        /// The mechanism recorded in the state.
        found: String,
    },
    /// Saved state written by a format this build does not know.
    #[error("saved accountant state has version {found}, this build reads version {supported}")]
    UnsupportedStateVersion {
        /// Version in the state.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// No noise multiplier up to the search limit meets the target.
    #[error(
        "no noise multiplier up to {max_sigma} reaches epsilon {target_epsilon} \
         (epsilon there is {epsilon_at_max}); raise the target or lower steps or q"
    )]
    CalibrationUnreachable {
        /// The ε asked for.
        target_epsilon: f64,
        /// The largest σ tried.
        max_sigma: f64,
        /// ε at that σ.
        epsilon_at_max: f64,
    },
}
