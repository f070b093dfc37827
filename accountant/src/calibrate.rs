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

/// The search stops once the bracket is this narrow (absolute, in noise-multiplier units).
pub const SIGMA_TOLERANCE: f64 = 1e-4;
/// Noise multipliers searched: below the floor any target is answered with the floor.
const SIGMA_FLOOR: f64 = 0.05;
const SIGMA_CEILING: f64 = 1e4;

/// The smallest noise multiplier whose ε, after `steps` steps at sampling rate `q`, stays at
/// or under `target_epsilon` at `delta`, according to the accountant `kind` (normally
/// [`AccountantKind::Pld`], the tight one).
///
/// The bracket starts from the RDP calibration (cheap, and RDP's ε is never below the tight
/// accountant's, so its σ is usually already feasible); the search inside it is ITP
/// (Oliveira and Takahashi, "An Enhancement of the Bisection Method Average Performance
/// Preserving Minmax Optimality", ACM TOMS 2020): as few evaluations as regula falsi on a
/// smooth curve, never more than bisection plus one. Only multipliers whose ε was computed and
/// met the target are ever returned, so the answer is safe even where the accountant's ε is
/// not perfectly monotone in σ.
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
    let epsilon_with = |kind: AccountantKind, sigma: f64| -> Result<f64, AccountantError> {
        let mut acct = create(kind);
        acct.compose(q, sigma, steps)?;
        acct.epsilon(delta)
    };
    let guess = match kind {
        AccountantKind::Rdp => 1.0,
        _ => search(
            |s| epsilon_with(AccountantKind::Rdp, s),
            target_epsilon,
            1.0,
            1e-3,
        )
        .map_or(1.0, |c| c.sigma),
    };
    search(
        |s| epsilon_with(kind, s),
        target_epsilon,
        guess,
        SIGMA_TOLERANCE,
    )
}

/// Brackets the threshold starting from `guess`, then narrows it to `tolerance` with ITP.
fn search(
    mut epsilon_at: impl FnMut(f64) -> Result<f64, AccountantError>,
    target: f64,
    guess: f64,
    tolerance: f64,
) -> Result<Calibration, AccountantError> {
    // g(sigma) = target - eps(sigma): negative below the answer, >= 0 at and above it.
    let guess = guess.clamp(SIGMA_FLOOR, SIGMA_CEILING);
    let e = epsilon_at(guess)?;
    let (mut lo, mut g_lo, mut hi, mut g_hi);
    if e <= target {
        (hi, g_hi) = (guess, target - e);
        let mut s = guess;
        loop {
            if s <= SIGMA_FLOOR {
                return Ok(Calibration {
                    sigma: hi,
                    epsilon: target - g_hi,
                });
            }
            s = (s * 0.8).max(SIGMA_FLOOR);
            let e = epsilon_at(s)?;
            if e > target {
                (lo, g_lo) = (s, target - e);
                break;
            }
            (hi, g_hi) = (s, target - e);
        }
    } else {
        (lo, g_lo) = (guess, target - e);
        let mut s = guess;
        loop {
            if s >= SIGMA_CEILING {
                return Err(AccountantError::CalibrationUnreachable {
                    target_epsilon: target,
                    max_sigma: s,
                    epsilon_at_max: target - g_lo,
                });
            }
            s = (s * 1.25).min(SIGMA_CEILING);
            let e = epsilon_at(s)?;
            if e <= target {
                (hi, g_hi) = (s, target - e);
                break;
            }
            (lo, g_lo) = (s, target - e);
        }
    }

    // ITP with kappa1 = 0.2 / (hi - lo), kappa2 = 2, n0 = 1.
    let half_tol = 0.5 * tolerance;
    let kappa1 = 0.2 / (hi - lo);
    let n_max = ((hi - lo) / tolerance).log2().ceil().max(0.0) as i32 + 1;
    let mut j = 0;
    while hi - lo > tolerance {
        let width = hi - lo;
        let mid = 0.5 * (lo + hi);
        let radius = half_tol * 2f64.powi(n_max - j) - 0.5 * width;
        let falsi = if g_hi.is_finite() && g_lo.is_finite() && g_hi != g_lo {
            (g_hi * lo - g_lo * hi) / (g_hi - g_lo)
        } else {
            mid
        };
        let toward_mid = (mid - falsi).signum();
        let truncate = kappa1 * width * width;
        let x_t = if truncate <= (mid - falsi).abs() {
            falsi + toward_mid * truncate
        } else {
            mid
        };
        let x = if (x_t - mid).abs() <= radius {
            x_t
        } else {
            mid - toward_mid * radius
        };
        let x = x.clamp(lo + 0.25 * tolerance, hi - 0.25 * tolerance);
        let e = epsilon_at(x)?;
        if e <= target {
            (hi, g_hi) = (x, target - e);
        } else {
            (lo, g_lo) = (x, target - e);
        }
        j += 1;
    }
    Ok(Calibration {
        sigma: hi,
        epsilon: target - g_hi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_finds_a_known_threshold_in_few_evaluations() {
        // eps(sigma) = 3 / sigma: the answer for target 2 is 1.5.
        let mut calls = 0;
        let c = search(
            |s| {
                calls += 1;
                Ok(3.0 / s)
            },
            2.0,
            1.0,
            1e-4,
        )
        .unwrap();
        assert!(c.sigma >= 1.5 && c.sigma - 1.5 <= 1e-4, "{}", c.sigma);
        assert!(c.epsilon <= 2.0);
        assert!(calls <= 12, "{calls} evaluations");
    }

    #[test]
    fn search_survives_a_step_function() {
        // Not smooth at all: ITP must still converge like bisection.
        let c = search(|s| Ok(if s < 2.345_6 { 10.0 } else { 1.0 }), 5.0, 1.0, 1e-4).unwrap();
        assert!(c.sigma >= 2.345_6 && c.sigma - 2.345_6 <= 1e-4);
    }
}
