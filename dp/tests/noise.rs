//! Statistical tests of the secure Gaussian sampler.
//!
//! Thresholds are set so a correct sampler fails with probability below about 1e-9 per test,
//! and the negative controls show the same tests reject a sampler whose scale is off by 2%
//! or whose mean is off by 2% of a standard deviation.

use bastion_dp::noise::{self, SecureGaussian};
use tch::Kind;

const N: usize = 1_000_000;

fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Kolmogorov-Smirnov statistic `sqrt(n) * sup |F_n - F|` of `samples` against N(mean, std^2).
fn ks_statistic(samples: &[f64], mean: f64, std: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let mut d = 0.0f64;
    let mut i = 0;
    while i < s.len() {
        // Ties (the noise is on a grid) are one step of the empirical CDF.
        let mut j = i;
        while j + 1 < s.len() && s[j + 1] == s[i] {
            j += 1;
        }
        let f = normal_cdf((s[i] - mean) / std);
        d = d
            .max((f - i as f64 / n).abs())
            .max(((j + 1) as f64 / n - f).abs());
        i = j + 1;
    }
    d * n.sqrt()
}

/// P(sqrt(n) D > x) ~ 2 exp(-2 x^2): 3.3 gives about 7e-10.
const KS_CRITICAL: f64 = 3.3;

fn draw(seed: u64, std: f64) -> Vec<f64> {
    let mut g = SecureGaussian::danger_seeded_for_tests(seed);
    let mut v = vec![0f32; N];
    g.fill(&mut v, std).unwrap();
    v.into_iter().map(f64::from).collect()
}

#[test]
fn mean_and_variance_match() {
    let std = 2.5;
    let v = draw(1, std);
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    // Six standard errors: sd(mean) = std/sqrt(n), sd(var) = std^2 sqrt(2/(n-1)).
    assert!(mean.abs() < 6.0 * std / n.sqrt(), "mean {mean}");
    assert!(
        (var - std * std).abs() < 6.0 * std * std * (2.0 / (n - 1.0)).sqrt(),
        "variance {var}"
    );
}

#[test]
fn kolmogorov_smirnov_accepts_the_sampler_at_several_scales() {
    for (seed, std) in [(2, 1.0), (3, 0.013), (4, 37.0)] {
        let ks = ks_statistic(&draw(seed, std), 0.0, std);
        println!("std {std}: KS statistic {ks:.3}");
        assert!(ks < KS_CRITICAL, "std {std}: KS {ks}");
    }
}

#[test]
fn kolmogorov_smirnov_rejects_a_mis_scaled_or_shifted_sampler() {
    let std = 1.0;
    let v = draw(5, std);
    let wrong_scale = ks_statistic(&v, 0.0, std * 1.02);
    let wrong_mean = ks_statistic(&v, 0.02 * std, std);
    println!("negative controls: scale {wrong_scale:.2}, mean {wrong_mean:.2}");
    assert!(
        wrong_scale > KS_CRITICAL,
        "a 2% scale error went unnoticed: {wrong_scale}"
    );
    assert!(
        wrong_mean > KS_CRITICAL,
        "a 0.02 std shift went unnoticed: {wrong_mean}"
    );
}

#[test]
fn tails_are_populated_symmetrically() {
    // P(|Z| > 3) = 0.0026998; count each side against its binomial standard error.
    let v = draw(6, 1.0);
    let p = 0.5 * 0.002_699_796;
    let sd = (N as f64 * p * (1.0 - p)).sqrt();
    for count in [
        v.iter().filter(|&&x| x > 3.0).count(),
        v.iter().filter(|&&x| x < -3.0).count(),
    ] {
        assert!(
            (count as f64 - N as f64 * p).abs() < 6.0 * sd,
            "tail count {count}"
        );
    }
}

#[test]
fn every_value_lies_on_the_grid() {
    for std in [1.0, 0.3, 123.0] {
        let g = noise::grid(std);
        let v = draw(7, std);
        assert!(
            v.iter().all(|x| (x / g).fract() == 0.0),
            "std {std}: value off the grid"
        );
    }
}

#[test]
fn add_to_snaps_then_adds_exactly() {
    let std = 0.8;
    let g = noise::grid(std) as f32;
    let mut values: Vec<f32> = (0..10_000)
        .map(|i| (i as f32).sin() * 3.0 + 1e-7 * i as f32)
        .collect();
    let original = values.clone();
    let mut a = SecureGaussian::danger_seeded_for_tests(8);
    a.add_to(&mut values, std).unwrap();
    let mut noise = vec![0f32; values.len()];
    let mut b = SecureGaussian::danger_seeded_for_tests(8);
    b.fill(&mut noise, std).unwrap();
    for ((out, x), n) in values.iter().zip(&original).zip(&noise) {
        assert_eq!((out / g).fract(), 0.0, "output off the grid");
        // Ties go to even (the snapping rule; any fixed rule is as good).
        assert_eq!(*out, (x / g).round_ties_even() * g + n);
    }
}

/// Noise drawn ahead and added later gives exactly what drawing it in the adding pass gives,
/// over several parallel chunks and both snapping paths (a normal grid, and a subnormal one
/// whose reciprocal overflows).
#[test]
fn prepared_noise_adds_what_add_to_adds() {
    let n = 3 * (1 << 18) + 1001;
    let original: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
    for (seed, std) in [(21, 0.8), (22, 1e-310)] {
        let mut direct = original.clone();
        SecureGaussian::danger_seeded_for_tests(seed)
            .add_to(&mut direct, std)
            .unwrap();
        let prepared = SecureGaussian::danger_seeded_for_tests(seed)
            .prepare(n, std)
            .unwrap();
        assert_eq!((prepared.len(), prepared.std()), (n, std));
        let mut later = original.clone();
        prepared.add_to(&mut later).unwrap();
        assert!(
            direct
                .iter()
                .zip(&later)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "std {std}"
        );
        assert_ne!(direct, original, "no noise was added");
    }
}

/// Noising and dividing in one pass is noising, then dividing.
#[test]
fn add_to_and_divide_is_add_to_then_a_division() {
    let n = (1 << 18) + 333;
    let original: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos() * 7.0).collect();
    let mut two_passes = original.clone();
    SecureGaussian::danger_seeded_for_tests(24)
        .add_to(&mut two_passes, 1.3)
        .unwrap();
    two_passes.iter_mut().for_each(|v| *v /= 48.0);
    let mut one_pass = original.clone();
    SecureGaussian::danger_seeded_for_tests(24)
        .add_to_and_divide(&mut one_pass, 1.3, 48.0)
        .unwrap();
    assert!(one_pass
        .iter()
        .zip(&two_passes)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn prepared_noise_refuses_a_buffer_of_another_length() {
    let prepared = SecureGaussian::danger_seeded_for_tests(23)
        .prepare(10, 1.0)
        .unwrap();
    let mut values = vec![0f32; 11];
    let err = prepared.add_to(&mut values).unwrap_err();
    assert_eq!(
        err.to_string(),
        "prepared noise has 10 values but 11 were given to noise"
    );
    assert_eq!(values, vec![0f32; 11], "values changed on a refusal");
}

#[test]
fn seeded_streams_repeat_and_os_streams_differ() {
    assert_eq!(draw(9, 1.0)[..100], draw(9, 1.0)[..100]);
    let mut a = SecureGaussian::from_os().unwrap();
    let mut b = SecureGaussian::from_os().unwrap();
    let (mut x, mut y) = (vec![0f32; 64], vec![0f32; 64]);
    a.fill(&mut x, 1.0).unwrap();
    b.fill(&mut y, 1.0).unwrap();
    assert_ne!(x, y);
}

#[test]
fn tensors_have_the_requested_shape_and_kind() {
    let mut g = SecureGaussian::danger_seeded_for_tests(10);
    let t = g.tensor(&[3, 4, 5], Kind::Float, 2.0).unwrap();
    assert_eq!(t.size(), vec![3, 4, 5]);
    assert_eq!(t.kind(), Kind::Float);
    let t = g.tensor(&[1000, 100], Kind::Double, 2.0).unwrap();
    assert_eq!(t.kind(), Kind::Double);
    let std = t.std(true).double_value(&[]);
    assert!((std - 2.0).abs() < 0.05, "tensor std {std}");
    assert!(g.tensor(&[2], Kind::Half, 1.0).is_err());

    let x = tch::Tensor::from_slice(&[0.1f32, -2.0, 3.7]);
    let y = g.add_to_tensor(&x, 1e-6).unwrap();
    assert_eq!(y.size(), vec![3]);
    let diff = (y - x).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "noise of std 1e-6 moved a value by {diff}");
}

#[test]
fn bad_std_is_rejected() {
    let mut g = SecureGaussian::danger_seeded_for_tests(11);
    let mut v = vec![0f32; 4];
    for std in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = g.fill(&mut v, std).unwrap_err();
        assert!(err.to_string().contains("standard deviation"), "{err}");
    }
}
