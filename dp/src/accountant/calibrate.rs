//! Noise calibration: the smallest noise multiplier that meets a privacy target.

use super::{create, validate_delta, validate_step, AccountantError, AccountantKind};

/// The outcome of [`calibrate_sigma`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The noise multiplier: at most [`SIGMA_TOLERANCE`] above the smallest one that meets the
    /// target, and never one that misses it.
    pub sigma: f64,
    /// ε at `sigma` (at or under the target).
    pub epsilon: f64,
}

/// Bisection stops once the bracket is this narrow (absolute, in noise-multiplier units).
pub const SIGMA_TOLERANCE: f64 = 1e-4;
/// Noise multipliers searched: below the floor any target is answered with the floor.
const SIGMA_FLOOR: f64 = 0.05;
const SIGMA_CEILING: f64 = 1e4;

/// The smallest noise multiplier whose ε, after `steps` steps at sampling rate `q`, stays at
/// or under `target_epsilon` at `delta`, found by bisection on the accountant `kind`
/// (normally [`AccountantKind::Pld`], the tight one).
///
/// Only multipliers whose ε was computed and met the target are ever returned, so the answer
/// is safe even where the accountant's ε is not perfectly monotone in σ.
pub fn calibrate_sigma(
    kind: AccountantKind,
    q: f64,
    steps: u64,
    delta: f64,
    target_epsilon: f64,
) -> Result<Calibration, AccountantError> {
    validate_step(q, 1.0, steps)?;
    validate_delta(delta)?;
    if !(target_epsilon > 0.0 && target_epsilon.is_finite()) {
        return Err(AccountantError::InvalidEpsilon {
            epsilon: target_epsilon,
        });
    }
    let epsilon_at = |sigma: f64| -> Result<f64, AccountantError> {
        let mut acct = create(kind);
        acct.compose(q, sigma, steps)?;
        acct.epsilon(delta)
    };

    // Bracket: `hi` meets the target, `lo` misses it.
    let (mut lo, mut hi, mut hi_eps);
    let e1 = epsilon_at(1.0)?;
    if e1 <= target_epsilon {
        (hi, hi_eps) = (1.0, e1);
        lo = 0.5;
        loop {
            let e = epsilon_at(lo)?;
            if e > target_epsilon {
                break;
            }
            (hi, hi_eps) = (lo, e);
            if lo <= SIGMA_FLOOR {
                return Ok(Calibration {
                    sigma: hi,
                    epsilon: hi_eps,
                });
            }
            lo = (lo / 2.0).max(SIGMA_FLOOR);
        }
    } else {
        lo = 1.0;
        hi = 2.0;
        loop {
            let e = epsilon_at(hi)?;
            if e <= target_epsilon {
                hi_eps = e;
                break;
            }
            if hi >= SIGMA_CEILING {
                return Err(AccountantError::CalibrationUnreachable {
                    target_epsilon,
                    max_sigma: hi,
                    epsilon_at_max: e,
                });
            }
            lo = hi;
            hi = (hi * 2.0).min(SIGMA_CEILING);
        }
    }
    while hi - lo > SIGMA_TOLERANCE {
        let mid = 0.5 * (lo + hi);
        let e = epsilon_at(mid)?;
        if e <= target_epsilon {
            (hi, hi_eps) = (mid, e);
        } else {
            lo = mid;
        }
    }
    Ok(Calibration {
        sigma: hi,
        epsilon: hi_eps,
    })
}
