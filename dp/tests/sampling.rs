//! Statistical tests of Poisson sampling: batch sizes, per-record rates, independence.
//! Tolerances are six standard errors, so a correct sampler fails with probability ~1e-9.

use bastion_dp::sampling::{PoissonSampler, SamplingError};

#[test]
fn batch_sizes_have_binomial_mean_and_variance() {
    let (q, n, draws) = (0.01, 20_000, 2_000);
    let mut s = PoissonSampler::danger_seeded_for_tests(q, 1).unwrap();
    let sizes: Vec<f64> = (0..draws).map(|_| s.sample(n).len() as f64).collect();
    let k = draws as f64;
    let mean = sizes.iter().sum::<f64>() / k;
    let var = sizes.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
    let (mu, v) = (q * n as f64, q * (1.0 - q) * n as f64);
    assert!(
        (mean - mu).abs() < 6.0 * (v / k).sqrt(),
        "mean batch {mean} vs {mu}"
    );
    // sd of a sample variance ~ v sqrt(2/(k-1)) for near-normal sizes.
    assert!(
        (var - v).abs() < 6.0 * v * (2.0 / (k - 1.0)).sqrt(),
        "variance {var} vs {v}"
    );
}

#[test]
fn every_record_is_included_at_rate_q() {
    let (q, n, draws) = (0.1, 50, 20_000);
    let mut s = PoissonSampler::danger_seeded_for_tests(q, 2).unwrap();
    let mut counts = vec![0u32; n];
    for _ in 0..draws {
        for i in s.sample(n) {
            counts[i] += 1;
        }
    }
    // Chi-square over records with n - 1 = 49 degrees of freedom; 110 is far out in the tail
    // (p ~ 1e-6), while a sampler favouring some records would blow past it.
    let expect = q * draws as f64;
    let var = expect * (1.0 - q);
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expect).powi(2) / var)
        .sum();
    assert!(chi2 < 110.0, "chi-square {chi2}");
}

#[test]
fn inclusions_are_independent_across_records_and_steps() {
    let (q, n, draws) = (0.3, 40, 20_000);
    let mut s = PoissonSampler::danger_seeded_for_tests(q, 3).unwrap();
    let (mut both_neighbours, mut both_steps, mut prev) = (0u64, 0u64, vec![false; n]);
    for _ in 0..draws {
        let mut cur = vec![false; n];
        for i in s.sample(n) {
            cur[i] = true;
        }
        both_neighbours += (0..n - 1).filter(|&i| cur[i] && cur[i + 1]).count() as u64;
        both_steps += (0..n).filter(|&i| cur[i] && prev[i]).count() as u64;
        prev = cur;
    }
    let p = q * q;
    for (count, trials) in [
        (both_neighbours, (n - 1) * draws),
        (both_steps, n * (draws - 1)),
    ] {
        let t = trials as f64;
        let sd = (t * p * (1.0 - p)).sqrt();
        assert!(
            (count as f64 - t * p).abs() < 6.0 * sd,
            "joint inclusion {count} of {t}"
        );
    }
}

#[test]
fn empty_batches_happen_at_the_right_rate() {
    let (q, n, draws) = (0.1, 10, 20_000);
    let mut s = PoissonSampler::danger_seeded_for_tests(q, 4).unwrap();
    let empty = (0..draws).filter(|_| s.sample(n).is_empty()).count() as f64;
    let p = (1.0 - q).powi(n as i32);
    let sd = (draws as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (empty - draws as f64 * p).abs() < 6.0 * sd,
        "{empty} empty batches"
    );
}

#[test]
fn full_rate_includes_everything_in_order() {
    let mut s = PoissonSampler::from_os(1.0).unwrap();
    assert_eq!(s.sample(1000), (0..1000).collect::<Vec<_>>());
    assert!(s.sample(0).is_empty());
}

#[test]
fn bad_rates_are_rejected() {
    for q in [0.0, -0.5, 1.01, f64::NAN] {
        let err = PoissonSampler::from_os(q).unwrap_err();
        assert!(matches!(err, SamplingError::InvalidRate { .. }));
        assert!(err.to_string().contains("sampling rate"), "{err}");
    }
}

#[test]
fn os_seeded_samplers_differ() {
    let mut a = PoissonSampler::from_os(0.5).unwrap();
    let mut b = PoissonSampler::from_os(0.5).unwrap();
    assert_ne!(a.sample(256), b.sample(256));
}
