//! Privacy loss distributions (PLDs) of the Poisson-subsampled Gaussian mechanism: a
//! pessimistic discretization, composition by FFT, and ε for a δ.
//!
//! # How the bound stays an upper bound
//!
//! 1. **Discretization: "connect the dots"** (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi,
//!    "Connect the Dots: Tighter Discrete Approximations of Privacy Loss Distributions",
//!    PETS 2022). For grid points `e_i = i h`, the privacy-loss mass `P` falling between two
//!    neighbouring points is split between them so that the hockey-stick divergence of the
//!    discrete PLD equals the true one at every grid point and interpolates it linearly in
//!    `exp(eps)` in between. The true curve is convex in `exp(eps)`, so the chords lie above
//!    it: the discrete PLD *dominates* the mechanism at every ε, and dominance survives
//!    composition. Unlike rounding every loss up to the grid, the error does not grow like
//!    `steps * h`. Loss above the top grid point is pessimistically treated as infinite.
//! 2. **Composition** multiplies Fourier transforms on a circular grid of `N` points, raising
//!    each segment's transform to its step count (`z^c = exp(c ln z)`), so 100,000 identical
//!    steps cost one FFT. Circular arithmetic is exact modulo `N`: mass that falls outside
//!    the window `[a, b]` wraps around. Mass below `a` can only land higher (it makes δ
//!    larger); mass above `b` is bounded with a Chernoff bound computed from the exact
//!    moment generating function of the discrete PLDs, and that bound is *added* to δ. The
//!    window is chosen so each tail holds at most `TAIL_SHARE * delta`.
//! 3. **Rounding.** Values the FFT returns negative are set to zero, and the size of the
//!    most negative one (the numerical noise floor) times the window length is added to δ.
//!
//! The remove and add directions of the add-or-remove neighbour relation are composed
//! separately (a pair of neighbouring datasets differs the same way at every step) and the
//! larger ε is reported, as Google's `dp_accounting` PLD accountant does.

use super::special::{log_add, log_sum_exp, normal_cdf, normal_sf};
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use std::f64::consts::SQRT_2;

/// Default grid spacing of the privacy loss, as in `dp_accounting`'s PLD accountant.
pub(crate) const DEFAULT_GRID: f64 = 1e-4;
/// Largest FFT; beyond it the grid is coarsened (still an upper bound, slightly looser).
const MAX_FFT_LEN: usize = 1 << 22;
/// Most grid points for one step's PLD (tiny noise multipliers have huge loss ranges).
const MAX_STEP_POINTS: f64 = (1u64 << 21) as f64;
/// Share of the target δ that each truncated tail of the composed PLD may hold.
const TAIL_SHARE: f64 = 1e-3;
/// Largest |loss| represented: beyond it a loss counts as infinite (above) or is moved up
/// (below), both safe; it keeps `exp(loss)` finite. Only absurdly small noise reaches it.
const LOSS_CAP: f64 = 500.0;
/// Standard deviations kept on the high-loss side of each step (beyond it: infinite loss).
const Z_HIGH: f64 = 10.0;
/// Standard deviations kept on the low-loss side (beyond it: moved up, which is safe).
const Z_LOW: f64 = 8.0;

/// Which neighbour is the larger dataset: `Remove` compares the mechanism on `D` (with the
/// record, `P`) to `D` without it (`Q`); `Add` the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Remove,
    Add,
}

/// A PLD under `P` on the grid `h Z`: `mass[k]` sits at loss `(first + k) h`, plus an atom at
/// `+inf`. The finite masses and the atom add up to one.
#[derive(Clone, Debug)]
pub(crate) struct Pmf {
    pub(crate) first: i64,
    pub(crate) mass: Vec<f64>,
    pub(crate) infinity: f64,
}

/// Privacy loss `ln(1 - q + q exp(u))` with `u = (2x - 1) / (2 sigma^2)`, for the remove
/// direction; the add direction's loss is its negative.
fn mixture_log_ratio(q: f64, sigma: f64, x: f64) -> f64 {
    let u = (2.0 * x - 1.0) / (2.0 * sigma * sigma);
    log_add((-q).ln_1p(), q.ln() + u)
}

/// `exp(l) - (1 - q)` without losing `exp(l)` when it is tiny (q near 1, l very negative) or
/// the difference when `l` is near 0.
fn exp_minus_one_plus_q(l: f64, q: f64) -> f64 {
    if l < -1.0 {
        l.exp() - (1.0 - q)
    } else {
        l.exp_m1() + q
    }
}

/// The `x` where `ln(1 - q + q exp(u(x))) = l`, or `-inf` when the mixture ratio never gets
/// that low (`exp(l) <= 1 - q`).
fn mixture_threshold(q: f64, sigma: f64, l: f64) -> f64 {
    let w = exp_minus_one_plus_q(l, q);
    if w <= 0.0 {
        return f64::NEG_INFINITY;
    }
    sigma * sigma * (w.ln() - q.ln()) + 0.5
}

/// Standard normal mass of `(a, b]`, from the smaller tails `ta = min(Phi(a), 1 - Phi(a))`
/// and `tb` so that deep-tail intervals keep their relative accuracy.
fn interval(a: f64, ta: f64, b: f64, tb: f64) -> f64 {
    let m = if a >= 0.0 {
        ta - tb
    } else if b <= 0.0 {
        tb - ta
    } else {
        1.0 - ta - tb
    };
    m.max(0.0)
}

fn smaller_tail(z: f64) -> f64 {
    0.5 * super::special::erfc(z.abs() / SQRT_2)
}

/// The privacy losses one step can take, up to the truncation points.
fn loss_range(q: f64, sigma: f64, direction: Direction) -> (f64, f64) {
    let (lo, hi) = untruncated_loss_range(q, sigma, direction);
    (lo.max(-LOSS_CAP), hi.min(LOSS_CAP))
}

fn untruncated_loss_range(q: f64, sigma: f64, direction: Direction) -> (f64, f64) {
    // The remove-direction loss grows with x; the add-direction loss falls.
    match direction {
        Direction::Remove => (
            mixture_log_ratio(q, sigma, -Z_LOW * sigma),
            mixture_log_ratio(q, sigma, 1.0 + Z_HIGH * sigma),
        ),
        Direction::Add => (
            -mixture_log_ratio(q, sigma, Z_LOW * sigma),
            -mixture_log_ratio(q, sigma, -Z_HIGH * sigma),
        ),
    }
}

/// Connect-the-dots discretization of one step with sampling rate `q` and noise multiplier
/// `sigma`, on the grid `h Z`.
pub(crate) fn discretize(q: f64, sigma: f64, direction: Direction, h: f64) -> Pmf {
    let (lo, hi) = loss_range(q, sigma, direction);
    let first = (lo / h).floor() as i64;
    let last = ((hi / h).ceil() as i64).max(first + 1);
    let n = (last - first) as usize; // intervals; n + 1 points
    let eps = |k: usize| (first + k as i64) as f64 * h;

    // Threshold in x for each grid point, standardised for N(0, s^2) and N(1, s^2).
    // Remove: loss > e  <=>  x > t(e).  Add: loss > e  <=>  x < t(e).
    let thresholds: Vec<f64> = (0..=n)
        .map(|k| match direction {
            Direction::Remove => mixture_threshold(q, sigma, eps(k)),
            Direction::Add => mixture_threshold(q, sigma, -eps(k)),
        })
        .collect();
    let z0: Vec<f64> = thresholds.iter().map(|t| t / sigma).collect();
    let z1: Vec<f64> = thresholds.iter().map(|t| (t - 1.0) / sigma).collect();
    let t0: Vec<f64> = z0.iter().map(|&z| smaller_tail(z)).collect();
    let t1: Vec<f64> = z1.iter().map(|&z| smaller_tail(z)).collect();

    let mut mass = vec![0.0; n + 1];
    let (em1_h, em1_neg_h) = (h.exp_m1(), (-h).exp_m1());
    for k in 0..n {
        // A, B: masses of N(0, s^2) and N(1, s^2) over the x-interval of (e_k, e_{k+1}].
        let (a, b) = match direction {
            Direction::Remove => (
                interval(z0[k], t0[k], z0[k + 1], t0[k + 1]),
                interval(z1[k], t1[k], z1[k + 1], t1[k + 1]),
            ),
            Direction::Add => (
                interval(z0[k + 1], t0[k + 1], z0[k], t0[k]),
                interval(z1[k + 1], t1[k + 1], z1[k], t1[k]),
            ),
        };
        if a == 0.0 && b == 0.0 {
            continue;
        }
        let (em1_lo, em1_hi) = (eps(k).exp_m1(), eps(k + 1).exp_m1());
        // left = x_{k+1} Q - P and right = P - x_k Q, each >= 0 since the loss lies between.
        let (left, right) = match direction {
            // P = (1-q) A + q B, Q = A.
            Direction::Remove => (
                exp_minus_one_plus_q(eps(k + 1), q) * a - q * b,
                q * b - exp_minus_one_plus_q(eps(k), q) * a,
            ),
            // P = A, Q = (1-q) A + q B.
            Direction::Add => (
                ((1.0 - q) * em1_hi - q) * a + (1.0 + em1_hi) * q * b,
                (q - (1.0 - q) * em1_lo) * a - (1.0 + em1_lo) * q * b,
            ),
        };
        mass[k] += left.max(0.0) / em1_h;
        mass[k + 1] += -right.max(0.0) / em1_neg_h;
    }

    // Below the first point: all of P's mass moves up to it. Above the last point: the part
    // that the hockey-stick curve needs stays at the point, the rest becomes infinite loss.
    let (below_p, above_p, above_q) = match direction {
        Direction::Remove => {
            let (zl, zh, wl, wh) = (z0[0], z0[n], z1[0], z1[n]);
            (
                (1.0 - q) * normal_cdf(zl) + q * normal_cdf(wl),
                (1.0 - q) * normal_sf(zh) + q * normal_sf(wh),
                normal_sf(zh),
            )
        }
        Direction::Add => (
            normal_sf(z0[0]),
            normal_cdf(z0[n]),
            (1.0 - q) * normal_cdf(z0[n]) + q * normal_cdf(z1[n]),
        ),
    };
    let x_top = eps(n).exp();
    mass[0] += below_p;
    mass[n] += x_top * above_q;
    let infinity = (above_p - x_top * above_q).max(0.0);
    Pmf {
        first,
        mass,
        infinity,
    }
}

/// One `(q, sigma)` of the history with the number of steps it ran.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Group {
    pub(crate) q: f64,
    pub(crate) sigma: f64,
    pub(crate) steps: u64,
}

/// Smallest ε whose δ(ε), for the composition of `groups`, is at most `delta`; an upper bound
/// on the true ε of the mechanism. `+inf` when no finite ε reaches `delta`.
pub(crate) fn epsilon(groups: &[Group], delta: f64, grid: f64) -> f64 {
    if groups.is_empty() {
        return 0.0;
    }
    let remove = epsilon_one_direction(groups, Direction::Remove, delta, grid);
    let add = epsilon_one_direction(groups, Direction::Add, delta, grid);
    remove.max(add)
}

struct Discrete {
    pmf: Pmf,
    steps: u64,
    /// Index (in grid units) the PMF is centred on before the FFT, to keep phases small.
    centre: i64,
    mean: f64,
    var: f64,
    ln_mass: Vec<f64>,
}

impl Discrete {
    fn new(pmf: Pmf, steps: u64, h: f64) -> Self {
        let total: f64 = pmf.mass.iter().sum();
        let z = |k: usize| (pmf.first + k as i64) as f64 * h;
        let mean = pmf
            .mass
            .iter()
            .enumerate()
            .map(|(k, m)| m * z(k))
            .sum::<f64>()
            / total;
        let var = pmf
            .mass
            .iter()
            .enumerate()
            .map(|(k, m)| m * (z(k) - mean).powi(2))
            .sum::<f64>()
            / total;
        let ln_mass = pmf.mass.iter().map(|m| m.ln()).collect();
        Discrete {
            centre: (mean / h).round() as i64,
            pmf,
            steps,
            mean,
            var,
            ln_mass,
        }
    }

    /// `ln E[exp(lambda Z)]` over the finite part (a sub-probability measure).
    fn log_mgf(&self, lambda: f64, h: f64) -> f64 {
        let first = self.pmf.first;
        log_sum_exp(
            self.ln_mass
                .iter()
                .enumerate()
                .map(move |(k, lm)| lm + lambda * (first + k as i64) as f64 * h),
        )
    }
}

fn epsilon_one_direction(groups: &[Group], direction: Direction, delta: f64, grid: f64) -> f64 {
    let widest = groups
        .iter()
        .map(|g| {
            let (lo, hi) = loss_range(g.q, g.sigma, direction);
            hi - lo
        })
        .fold(0.0, f64::max);
    let mut h = grid.max(widest / MAX_STEP_POINTS);
    loop {
        let parts: Vec<Discrete> = groups
            .iter()
            .map(|g| Discrete::new(discretize(g.q, g.sigma, direction, h), g.steps, h))
            .collect();
        let window = Window::choose(&parts, delta, h);
        let needed = ((window.hi - window.lo) / h).ceil() as usize + 1;
        if needed > MAX_FFT_LEN {
            h *= needed as f64 / (0.9 * MAX_FFT_LEN as f64);
            continue;
        }
        return compose_and_solve(&parts, &window, needed.next_power_of_two(), delta, h);
    }
}

/// The part of the composed loss that the FFT represents, and the Chernoff bounds on what lies
/// outside it.
struct Window {
    lo: f64,
    hi: f64,
    /// `(lambda, ln E[exp(lambda Z)])` for the composed finite part, lambda > 0.
    upper_mgf: Vec<(f64, f64)>,
}

impl Window {
    fn choose(parts: &[Discrete], delta: f64, h: f64) -> Self {
        let mean: f64 = parts.iter().map(|p| p.steps as f64 * p.mean).sum();
        let var: f64 = parts.iter().map(|p| p.steps as f64 * p.var).sum();
        let sd = var.sqrt().max(h);
        let budget = (TAIL_SHARE * delta).ln();
        let composed = |lambda: f64| -> f64 {
            parts
                .iter()
                .map(|p| p.steps as f64 * p.log_mgf(lambda, h))
                .sum()
        };
        let thetas = [
            0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0,
        ];
        let mut upper_mgf = Vec::with_capacity(thetas.len());
        let mut hi = f64::INFINITY;
        let mut lo = f64::NEG_INFINITY;
        for theta in thetas {
            let lambda = theta / sd;
            let up = composed(lambda);
            if up.is_finite() {
                hi = hi.min((up - budget) / lambda);
                upper_mgf.push((lambda, up));
            }
            let down = composed(-lambda);
            if down.is_finite() {
                lo = lo.max((budget - down) / lambda);
            }
        }
        // Never narrower than the bulk, never absurdly wide.
        let hi = hi.clamp(mean + 4.0 * sd, mean + 1e4 * sd);
        let lo = lo.clamp(mean - 1e4 * sd, mean - 4.0 * sd);
        Window { lo, hi, upper_mgf }
    }

    /// Chernoff bound on the composed finite mass strictly above `top`.
    fn mass_above(&self, top: f64) -> f64 {
        self.upper_mgf
            .iter()
            .map(|&(lambda, k)| (k - lambda * top).exp())
            .fold(1.0, f64::min)
    }
}

/// `z^c` for a complex `z` and a step count `c`, through `exp(c ln z)`.
fn complex_pow(z: Complex<f64>, c: u64) -> Complex<f64> {
    let norm_sqr = z.norm_sqr();
    if norm_sqr == 0.0 {
        return Complex::new(0.0, 0.0);
    }
    let log_mag = 0.5 * c as f64 * norm_sqr.ln();
    if log_mag < -745.0 {
        return Complex::new(0.0, 0.0);
    }
    let angle = c as f64 * z.im.atan2(z.re);
    let mag = log_mag.exp();
    Complex::new(mag * angle.cos(), mag * angle.sin())
}

fn compose_and_solve(parts: &[Discrete], window: &Window, n: usize, delta: f64, h: f64) -> f64 {
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let mut spectrum = forward.make_output_vec();
    let mut acc = vec![Complex::new(1.0, 0.0); spectrum.len()];
    let mut buf = forward.make_input_vec();
    let n_i = n as i64;
    let mut offset: i128 = 0;
    let mut log_finite = 0.0;
    for part in parts {
        buf.iter_mut().for_each(|v| *v = 0.0);
        for (k, &m) in part.pmf.mass.iter().enumerate() {
            let idx = (part.pmf.first + k as i64 - part.centre).rem_euclid(n_i) as usize;
            buf[idx] += m;
        }
        forward
            .process(&mut buf, &mut spectrum)
            .expect("buffer lengths come from the plan");
        for (a, &s) in acc.iter_mut().zip(&spectrum) {
            if *a != Complex::new(0.0, 0.0) {
                *a *= complex_pow(s, part.steps);
            }
        }
        offset += part.centre as i128 * part.steps as i128;
        log_finite += part.steps as f64 * (-part.pmf.infinity).ln_1p();
    }
    // The DC and Nyquist terms of a real signal are real.
    acc[0].im = 0.0;
    if let Some(last) = acc.last_mut() {
        last.im = 0.0;
    }
    let mut out = inverse.make_output_vec();
    inverse
        .process(&mut acc, &mut out)
        .expect("buffer lengths come from the plan");

    // Unwrap the circle into the window [lo_idx, lo_idx + n).
    let lo_idx = (window.lo / h).floor() as i64;
    let shift = ((lo_idx as i128 - offset).rem_euclid(n as i128)) as usize;
    let scale = 1.0 / n as f64;
    let mut noise_floor = 0.0f64;
    let mut peak = 0.0f64;
    let w: Vec<f64> = (0..n)
        .map(|t| {
            let v = out[(shift + t) % n] * scale;
            noise_floor = noise_floor.max(-v);
            peak = peak.max(v);
            v.max(0.0)
        })
        .collect();
    let noise_floor = noise_floor.max(f64::EPSILON * peak);
    let top = (lo_idx + n_i - 1) as f64 * h;
    let base = -log_finite.exp_m1() + window.mass_above(top) + 2.0 * noise_floor * n as f64;
    solve(&w, lo_idx, h, base, delta)
}

/// Smallest ε with `base + sum_{z > eps} w(z) (1 - exp(eps - z)) <= delta`.
///
/// Scans down from the top keeping `sp = sum w` and `sq = sum w exp(z_t - z)` over the bins
/// above the current one, relative to the current bin so nothing overflows however large the
/// losses are.
fn solve(w: &[f64], lo_idx: i64, h: f64, base: f64, delta: f64) -> f64 {
    if base >= delta {
        return f64::INFINITY;
    }
    let decay = (-h).exp();
    let (mut sp, mut sq) = (0.0f64, 0.0f64);
    for t in (0..w.len()).rev() {
        let z = (lo_idx + t as i64) as f64 * h;
        // Here sq = sum_{j > t} w_j exp(z_t - z_j), so delta(z_t) = base + sp - sq.
        if base + sp - sq > delta {
            // On (z_t, z_{t+1}] the set {loss > eps} is fixed and
            // delta(eps) = base + sp - exp(eps - z_{t+1}) sq_{t+1}, with sq_{t+1} = sq / decay.
            let eps = z + h + ((base + sp - delta) / (sq / decay)).ln();
            return eps.clamp(z, z + h).max(0.0);
        }
        sp += w[t];
        sq = (sq + w[t]) * decay;
    }
    // Below the window: sq is now relative to one bin under it.
    let z = (lo_idx - 1) as f64 * h;
    if base + sp <= delta || sq == 0.0 {
        return 0.0;
    }
    (z + ((base + sp - delta) / sq).ln()).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(p: &Pmf) -> f64 {
        p.mass.iter().sum::<f64>() + p.infinity
    }

    #[test]
    fn discretization_is_a_distribution() {
        for dir in [Direction::Remove, Direction::Add] {
            for (q, s) in [
                (0.01, 1.0),
                (1.0, 2.0),
                (0.3, 0.7),
                (0.001, 5.0),
                (1.0, 0.15),
                (0.9, 0.2),
            ] {
                let p = discretize(q, s, dir, 1e-3);
                assert!(
                    (total(&p) - 1.0).abs() < 1e-10,
                    "{dir:?} {q} {s}: {}",
                    total(&p)
                );
                assert!(p.mass.iter().all(|&m| m >= 0.0));
            }
        }
    }

    #[test]
    fn discrete_hockey_stick_matches_the_gaussian_at_grid_points() {
        // q = 1: loss ~ N(mu, 2 mu) with mu = 1 / (2 s^2); delta(e) = Phi(-e/sqrt(2mu) + sqrt(mu/2))
        // - e^e Phi(-e/sqrt(2mu) - sqrt(mu/2)).
        let s: f64 = 1.5;
        let mu = 1.0 / (2.0 * s * s);
        let h = 1e-3;
        let p = discretize(1.0, s, Direction::Remove, h);
        for e in [0.0, 0.5, 1.0, 2.0] {
            let exact = normal_cdf(-e / (2.0 * mu).sqrt() + (mu / 2.0).sqrt())
                - e.exp() * normal_cdf(-e / (2.0 * mu).sqrt() - (mu / 2.0).sqrt());
            let ours: f64 = p
                .mass
                .iter()
                .enumerate()
                .map(|(k, m)| {
                    let z = (p.first + k as i64) as f64 * h;
                    if z > e {
                        m * (1.0 - (e - z).exp())
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
                + p.infinity;
            assert!((ours - exact).abs() < 1e-9, "eps {e}: {ours} vs {exact}");
        }
    }

    #[test]
    fn complex_pow_agrees_with_repeated_multiplication() {
        let z = Complex::new(0.6, -0.7);
        let mut want = Complex::new(1.0, 0.0);
        for _ in 0..13 {
            want *= z;
        }
        let got = complex_pow(z, 13);
        assert!((got - want).norm() < 1e-14);
    }
}
