//! Special functions and log-space arithmetic shared by the accountants.
//!
//! Everything here is pure and deterministic. The error functions come from `libm` (a port of
//! musl's, accurate to about one ulp); the only thing added is a log-erfc that stays accurate
//! where `erfc` itself underflows, which the fractional-order RDP series needs.

use std::f64::consts::{PI, SQRT_2};

/// `ln(exp(a) + exp(b))` without overflow; `-inf` stands for zero.
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `ln(exp(a) - exp(b))` for `a >= b`; a difference that rounding drove to zero or below is
/// reported as zero (`-inf`).
pub(crate) fn log_sub(a: f64, b: f64) -> f64 {
    if b == f64::NEG_INFINITY {
        return a;
    }
    if a <= b {
        return f64::NEG_INFINITY;
    }
    let d = (a - b).exp_m1();
    if d.is_infinite() {
        return a;
    }
    d.ln() + b
}

/// Log-sum-exp of a slice; `-inf` for an empty slice or all zeros.
pub(crate) fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY || max.is_infinite() {
        return max;
    }
    let sum: f64 = values.map(|v| (v - max).exp()).sum();
    max + sum.ln()
}

/// Complementary error function.
pub(crate) fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

/// `ln(erfc(x))`, accurate for large `x` where `erfc(x)` underflows.
///
/// Beyond `x = 25` it uses the asymptotic series
/// `erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_k (-1)^k (2k-1)!! / (2x^2)^k`, whose terms at that
/// point fall below `1e-16` by the seventh.
pub(crate) fn log_erfc(x: f64) -> f64 {
    if x < 25.0 {
        erfc(x).ln()
    } else {
        log_erfc_asymptotic(x)
    }
}

fn log_erfc_asymptotic(x: f64) -> f64 {
    let y = 1.0 / (2.0 * x * x);
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..8 {
        term *= -(2.0 * k as f64 - 1.0) * y;
        sum += term;
    }
    -x * x - x.ln() - 0.5 * PI.ln() + sum.ln()
}

/// Standard normal survival function `1 - Phi(x)`, accurate in the upper tail.
pub(crate) fn normal_sf(x: f64) -> f64 {
    0.5 * erfc(x / SQRT_2)
}

/// Standard normal CDF `Phi(x)`, accurate in the lower tail.
pub(crate) fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymptotic_log_erfc_agrees_with_the_direct_value() {
        for x in [15.0, 20.0, 24.9] {
            let (direct, series) = (erfc(x).ln(), log_erfc_asymptotic(x));
            assert!(
                (direct / series - 1.0).abs() < 1e-14,
                "x {x}: {direct} vs {series}"
            );
        }
        assert!(log_erfc(40.0).is_finite() && log_erfc(40.0) < -1600.0);
    }

    #[test]
    fn log_space_arithmetic() {
        assert!((log_add(2f64.ln(), 3f64.ln()) - 5f64.ln()).abs() < 1e-15);
        assert!((log_sub(5f64.ln(), 3f64.ln()) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(log_sub(1.0, 1.0), f64::NEG_INFINITY);
        assert_eq!(log_add(f64::NEG_INFINITY, 1.5), 1.5);
        let lse = log_sum_exp([1f64.ln(), 2f64.ln(), 3f64.ln()].into_iter());
        assert!((lse - 6f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn normal_tails_are_accurate() {
        assert!((normal_cdf(-1.0) + normal_sf(-1.0) - 1.0).abs() < 1e-16);
        // Phi(-10) = 7.619853024160527e-24 (tables); relative accuracy survives the tail.
        assert!((normal_cdf(-10.0) / 7.619_853_024_160_527e-24 - 1.0).abs() < 1e-13);
        assert_eq!(normal_sf(10.0), normal_cdf(-10.0));
    }
}
