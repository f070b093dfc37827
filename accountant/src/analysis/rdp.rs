//! Rényi DP of the Poisson-subsampled Gaussian mechanism, and its conversion to (ε, δ).
//!
//! Sources (formulas only):
//! - Mironov, Talwar, Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"
//!   (2019), Sections 3.3: the quantity `A_alpha` whose log divided by `alpha - 1` is the RDP,
//!   as a binomial sum at integer orders and as a two-sided series with Gaussian tail
//!   integrals at fractional orders.
//! - Canonne, Kamath, Steinke (2020), Proposition 12, and Asoodeh et al. (2020): the conversion
//!   `eps = rdp + ln(1 - 1/alpha) - ln(delta * alpha) / (alpha - 1)`, tighter than Mironov's
//!   `rdp - ln(delta) / (alpha - 1)`.
//!
//! The default orders are those of Google's `dp_accounting` 0.6 `RdpAccountant`, so results
//! can be compared number for number.

use super::special::{log_add, log_erfc, log_sub};
use std::f64::consts::SQRT_2;

/// `1.1, 1.2, ..., 10.9`, then `11..=63`, then `128, 256, 512, 1024`.
pub(crate) fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + x as f64 / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

/// RDP at `order` of one step of the Gaussian mechanism with noise multiplier `sigma` applied
/// to a Poisson sample with rate `q`. May be `+inf` when it overflows.
pub(crate) fn subsampled_gaussian(q: f64, sigma: f64, order: f64) -> f64 {
    if q == 1.0 {
        return order / (2.0 * sigma * sigma);
    }
    let log_a = if order.fract() == 0.0 {
        log_a_int(q, sigma, order as u64)
    } else {
        log_a_frac(q, sigma, order)
    };
    log_a / (order - 1.0)
}

/// `ln A_alpha` for integer `alpha`: `sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / 2 sigma^2)`.
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let (ln_q, ln_1mq) = (q.ln(), (-q).ln_1p());
    let two_s2 = 2.0 * sigma * sigma;
    let mut log_binom = 0.0; // ln C(alpha, 0)
    let mut log_a = f64::NEG_INFINITY;
    for i in 0..=alpha {
        if i > 0 {
            log_binom += ((alpha - i + 1) as f64).ln() - (i as f64).ln();
        }
        let fi = i as f64;
        let term = log_binom + fi * ln_q + (alpha - i) as f64 * ln_1mq + (fi * fi - fi) / two_s2;
        log_a = log_add(log_a, term);
    }
    log_a
}

/// `ln A_alpha` for fractional `alpha`, splitting the integral at `z0`, where the two
/// densities' likelihood ratio crosses; the series stops once both new terms fall below
/// `exp(-30)`, as the reference implementation does.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (ln_q, ln_1mq) = (q.ln(), (-q).ln_1p());
    let two_s2 = 2.0 * sigma * sigma;
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let ln_half = 0.5f64.ln();
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    // Generalised binomial coefficient C(alpha, i), tracked as sign and log-magnitude.
    let (mut log_coef, mut positive) = (0.0f64, true);
    let mut i = 0u64;
    loop {
        let fi = i as f64;
        if i > 0 {
            let factor = (alpha - fi + 1.0) / fi;
            if factor < 0.0 {
                positive = !positive;
            }
            log_coef += factor.abs().ln();
        }
        let j = alpha - fi;
        let log_t0 = log_coef + fi * ln_q + j * ln_1mq;
        let log_t1 = log_coef + j * ln_q + fi * ln_1mq;
        let log_e0 = ln_half + log_erfc((fi - z0) / (SQRT_2 * sigma));
        let log_e1 = ln_half + log_erfc((z0 - j) / (SQRT_2 * sigma));
        let log_s0 = log_t0 + (fi * fi - fi) / two_s2 + log_e0;
        let log_s1 = log_t1 + (j * j - j) / two_s2 + log_e1;
        if positive {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        i += 1;
        if log_s0.max(log_s1) < -30.0 || i > 100_000 {
            break;
        }
    }
    log_add(log_a0, log_a1)
}

/// Best (ε, order) over `orders` for the composed RDP curve `rdp` at `delta`.
///
/// Per order: zero when the KL bound already gives `delta` (`delta^2 > 1 - exp(-rdp)`), the
/// improved conversion above order 1.01, and no bound below it (numerically unstable there).
pub(crate) fn epsilon(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, orders.first().copied().unwrap_or(f64::NAN));
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r.is_nan() || r == f64::INFINITY {
            f64::INFINITY
        } else if delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_orders_match_dp_accounting() {
        let o = default_orders();
        assert_eq!(o.len(), 99 + 53 + 4);
        assert_eq!(o[0], 1.1);
        assert_eq!(o[98], 10.9);
        assert_eq!(o[99], 11.0);
        assert_eq!(*o.last().unwrap(), 1024.0);
    }

    #[test]
    fn full_batch_is_the_plain_gaussian() {
        assert_eq!(subsampled_gaussian(1.0, 2.0, 3.0), 3.0 / 8.0);
    }

    #[test]
    fn fractional_orders_interpolate_integer_ones() {
        // RDP is non-decreasing in the order; the fractional series must sit between the
        // neighbouring integer binomial sums.
        let (q, s) = (0.01, 1.1);
        let r2 = subsampled_gaussian(q, s, 2.0);
        let r25 = subsampled_gaussian(q, s, 2.5);
        let r3 = subsampled_gaussian(q, s, 3.0);
        assert!(r2 <= r25 && r25 <= r3, "{r2} {r25} {r3}");
        // And agree with the integer formula when evaluated just off an integer.
        let near = subsampled_gaussian(q, s, 3.000_000_1);
        assert!((near / r3 - 1.0).abs() < 1e-5, "{near} vs {r3}");
    }
}
