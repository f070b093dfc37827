//! Accountants against reference numbers, and their invariants.
//!
//! Reference vectors: `shared/vectors/dp/accountant.json`, computed with Google's
//! `dp_accounting` 0.6.0 (RDP with default orders; PLD with value discretization 1e-4) and
//! Microsoft's `prv-accountant` 0.2.0 (eps_error 0.01), whose lower bound no correct
//! accountant may go under.

use bastion_accountant::{
    calibrate_sigma, Accountant, AccountantError, AccountantKind, PldAccountant, RdpAccountant,
    SavedState,
};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/dp/accountant.json"
);

fn vectors() -> Value {
    let text =
        std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("reading {VECTORS}: {e}"));
    serde_json::from_str(&text).expect("accountant.json is JSON")
}

fn f(case: &Value, key: &str) -> f64 {
    case[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {case}"))
}

fn rel(ours: f64, reference: f64) -> f64 {
    (ours - reference) / reference
}

#[test]
fn rdp_matches_dp_accounting_to_a_tenth_of_a_percent() {
    for case in vectors()["cases"].as_array().unwrap() {
        let mut acct = RdpAccountant::new();
        acct.compose(f(case, "q"), f(case, "sigma"), f(case, "steps") as u64)
            .unwrap();
        let (eps, order) = acct.epsilon_and_order(f(case, "delta")).unwrap();
        let reference = f(case, "rdp_eps");
        println!(
            "{}: rdp {eps:.6} (order {order}) vs {reference:.6}: {:+.2e}",
            case["name"],
            rel(eps, reference)
        );
        assert!(
            rel(eps, reference).abs() < 1e-3,
            "{}: {eps} vs {reference}",
            case["name"]
        );
        assert_eq!(order, f(case, "rdp_order"), "{}: best order", case["name"]);
    }
}

#[test]
fn pld_is_within_one_percent_and_never_under_the_prv_lower_bound() {
    for case in vectors()["cases"].as_array().unwrap() {
        let mut acct = PldAccountant::new();
        acct.compose(f(case, "q"), f(case, "sigma"), f(case, "steps") as u64)
            .unwrap();
        let eps = acct.epsilon(f(case, "delta")).unwrap();
        let (pld, low) = (f(case, "pld_eps"), f(case, "prv_eps_low"));
        println!(
            "{}: pld {eps:.6} vs {pld:.6} ({:+.2e}), prv_low {low:.6}",
            case["name"],
            rel(eps, pld)
        );
        assert!(
            eps >= low,
            "{}: epsilon {eps} under the PRV lower bound {low}",
            case["name"]
        );
        assert!(
            rel(eps, pld).abs() < 1e-2,
            "{}: {eps} vs {pld}",
            case["name"]
        );
    }
}

#[test]
fn tight_accountant_is_never_looser_than_rdp() {
    for case in vectors()["cases"].as_array().unwrap() {
        let (q, s, t, d) = (
            f(case, "q"),
            f(case, "sigma"),
            f(case, "steps") as u64,
            f(case, "delta"),
        );
        let mut rdp = RdpAccountant::new();
        let mut pld = PldAccountant::new();
        rdp.compose(q, s, t).unwrap();
        pld.compose(q, s, t).unwrap();
        assert!(
            pld.epsilon(d).unwrap() < rdp.epsilon(d).unwrap(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn calibration_matches_the_reference_sigma() {
    for case in vectors()["calibration"].as_array().unwrap() {
        let target = f(case, "target_eps");
        let c = calibrate_sigma(
            AccountantKind::Pld,
            f(case, "q"),
            f(case, "steps") as u64,
            f(case, "delta"),
            target,
        )
        .unwrap();
        let reference = f(case, "pld_sigma");
        println!(
            "{}: sigma {:.6} (eps {:.6}) vs {reference:.6}: {:+.2e}",
            case["name"],
            c.sigma,
            c.epsilon,
            rel(c.sigma, reference)
        );
        assert!(c.epsilon <= target);
        assert!(
            rel(c.sigma, reference).abs() < 1e-2,
            "{}: {} vs {reference}",
            case["name"],
            c.sigma
        );
    }
}

/// Exact ε of `steps` compositions of the (unsampled) Gaussian mechanism: a Gaussian with
/// `mu = sqrt(steps) / sigma` (Dong, Roth, Su, "Gaussian Differential Privacy").
fn exact_gaussian_epsilon(sigma: f64, steps: u64, delta: f64) -> f64 {
    let mu = (steps as f64).sqrt() / sigma;
    // ln Phi(x), with the asymptotic series where erfc underflows.
    let ln_phi = |x: f64| -> f64 {
        if x > -30.0 {
            (0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)).ln()
        } else {
            let y = 1.0 / (x * x);
            -0.5 * x * x - (-x).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
                + (1.0 - y + 3.0 * y * y - 15.0 * y * y * y).ln()
        }
    };
    let delta_at =
        |e: f64| ln_phi(-e / mu + mu / 2.0).exp() - (e + ln_phi(-e / mu - mu / 2.0)).exp();
    let (mut lo, mut hi) = (0.0, 5000.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if delta_at(mid) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[test]
fn pld_bounds_the_exact_gaussian_from_above_at_every_grid() {
    // The last two exercise the automatic coarsening for tiny noise (huge loss ranges).
    for (sigma, steps, delta) in [
        (2.0, 50, 1e-5),
        (1.0, 10, 1e-6),
        (5.0, 1000, 1e-5),
        (0.7, 1, 1e-3),
        (0.15, 3, 1e-5),
        (0.05, 3, 1e-5),
    ] {
        let exact = exact_gaussian_epsilon(sigma, steps, delta);
        for grid in [1e-4, 1e-3, 1e-2, 5e-2] {
            let mut acct = PldAccountant::with_grid(grid);
            acct.compose(1.0, sigma, steps).unwrap();
            let eps = acct.epsilon(delta).unwrap();
            println!("sigma {sigma} steps {steps} grid {grid}: {eps:.6} vs exact {exact:.6}");
            assert!(eps >= exact, "under-reported: {eps} < {exact}");
            if grid == 1e-4 {
                assert!(rel(eps, exact) < 2e-3, "too loose: {eps} vs {exact}");
            }
        }
    }
}

#[test]
fn calibrated_noise_never_overshoots_the_target() {
    let combos = [
        (0.01, 1000, 1e-5, 1.0),
        (0.004, 5000, 1e-6, 2.0),
        (0.1, 100, 1e-5, 0.5),
        (1.0, 20, 1e-5, 8.0),
        (0.02, 20_000, 1e-5, 10.0),
    ];
    for (q, steps, delta, target) in combos {
        let c = calibrate_sigma(AccountantKind::Pld, q, steps, delta, target).unwrap();
        let mut acct = PldAccountant::new();
        acct.compose(q, c.sigma, steps).unwrap();
        let eps = acct.epsilon(delta).unwrap();
        println!(
            "q {q} steps {steps} delta {delta} target {target}: sigma {:.5} eps {eps:.5}",
            c.sigma
        );
        assert_eq!(eps, c.epsilon, "reported epsilon is the one at sigma");
        assert!(eps <= target, "overshoot: {eps} > {target}");
        // And it is (nearly) the smallest such sigma.
        let mut lower = PldAccountant::new();
        lower.compose(q, c.sigma - 1e-3, steps).unwrap();
        assert!(
            lower.epsilon(delta).unwrap() > target,
            "sigma - 1e-3 also meets the target"
        );
    }
}

#[test]
fn heterogeneous_runs_lie_between_homogeneous_ones_and_ignore_order() {
    let (a, b, delta) = ((0.01, 1.2), (0.02, 0.9), 1e-5);
    for kind in AccountantKind::ALL {
        let eps = |schedule: &[((f64, f64), u64)]| {
            let mut acct = bastion_accountant::create(kind);
            for &((q, s), n) in schedule {
                acct.compose(q, s, n).unwrap();
            }
            acct.epsilon(delta).unwrap()
        };
        let all_a = eps(&[(a, 1000)]);
        let all_b = eps(&[(b, 1000)]);
        let ab = eps(&[(a, 500), (b, 500)]);
        let ba = eps(&[(b, 500), (a, 500)]);
        let interleaved = eps(&[(a, 250), (b, 250), (a, 250), (b, 250)]);
        println!(
            "{kind}: a {all_a:.5} b {all_b:.5} ab {ab:.5} ba {ba:.5} interleaved {interleaved:.5}"
        );
        assert!(all_a < ab && ab < all_b, "{kind}: {all_a} < {ab} < {all_b}");
        assert!(
            rel(ab, ba).abs() < 1e-12,
            "{kind}: order changed epsilon: {ab} vs {ba}"
        );
        assert!(
            rel(ab, interleaved).abs() < 1e-12,
            "{kind}: {ab} vs {interleaved}"
        );
        // Adding steps never lowers epsilon.
        assert!(eps(&[(a, 500), (b, 500), (a, 1)]) >= ab);
    }
}

#[test]
fn one_step_at_a_time_equals_one_compose() {
    for kind in AccountantKind::ALL {
        let mut stepped = bastion_accountant::create(kind);
        for _ in 0..300 {
            stepped.step(0.02, 1.1).unwrap();
        }
        let mut composed = bastion_accountant::create(kind);
        composed.compose(0.02, 1.1, 300).unwrap();
        assert_eq!(stepped.steps(), 300);
        assert_eq!(
            stepped.history().segments().len(),
            1,
            "{kind}: identical steps merge"
        );
        let (x, y) = (
            stepped.epsilon(1e-5).unwrap(),
            composed.epsilon(1e-5).unwrap(),
        );
        assert!(rel(x, y).abs() < 1e-12, "{kind}: {x} vs {y}");
    }
}

#[test]
fn fresh_accountant_has_spent_nothing() {
    for kind in AccountantKind::ALL {
        let acct = bastion_accountant::create(kind);
        assert_eq!(acct.steps(), 0);
        assert_eq!(acct.epsilon(1e-5).unwrap(), 0.0);
        assert_eq!(acct.mechanism(), kind.name());
    }
}

#[test]
fn bad_parameters_are_rejected_with_their_value() {
    for kind in AccountantKind::ALL {
        let mut acct = bastion_accountant::create(kind);
        for q in [0.0, -0.1, 1.5, f64::NAN] {
            let err = acct.compose(q, 1.0, 10).unwrap_err();
            assert!(
                matches!(err, AccountantError::InvalidSamplingRate { .. }),
                "{err}"
            );
            assert!(err.to_string().contains(&format!("{q}")), "{err}");
        }
        for sigma in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let err = acct.compose(0.1, sigma, 10).unwrap_err();
            assert!(
                matches!(err, AccountantError::InvalidNoiseMultiplier { .. }),
                "{err}"
            );
        }
        assert_eq!(acct.compose(0.1, 1.0, 0), Err(AccountantError::ZeroSteps));
        for delta in [0.0, 1.0, -1e-5, 2.0, f64::NAN] {
            let err = acct.epsilon(delta).unwrap_err();
            assert!(matches!(err, AccountantError::InvalidDelta { .. }), "{err}");
        }
        assert_eq!(
            acct.steps(),
            0,
            "{kind}: a rejected request records nothing"
        );
    }
    let err = calibrate_sigma(AccountantKind::Pld, 0.01, 100, 1e-5, 0.0).unwrap_err();
    assert!(matches!(err, AccountantError::InvalidEpsilon { .. }));
    let err = calibrate_sigma(AccountantKind::Pld, 0.01, 0, 1e-5, 1.0).unwrap_err();
    assert_eq!(err, AccountantError::ZeroSteps);
}

#[test]
fn registry_knows_both_accountants_and_prv_means_the_tight_one() {
    assert_eq!(
        bastion_accountant::by_name("rdp").unwrap().mechanism(),
        "rdp"
    );
    assert_eq!(
        bastion_accountant::by_name("pld").unwrap().mechanism(),
        "pld"
    );
    assert_eq!(
        bastion_accountant::by_name("prv").unwrap().mechanism(),
        "pld"
    );
    assert_eq!(AccountantKind::default(), AccountantKind::Pld);
    let err = bastion_accountant::by_name("moments").unwrap_err();
    assert!(err.to_string().contains("moments"), "{err}");
}

#[test]
fn saved_state_round_trips_and_refuses_another_mechanism() {
    for kind in AccountantKind::ALL {
        let mut acct = bastion_accountant::create(kind);
        acct.compose(0.01, 1.0, 700).unwrap();
        acct.compose(0.012, 0.95, 300).unwrap();
        let json = serde_json::to_string(&acct.state()).unwrap();
        let state: SavedState = serde_json::from_str(&json).unwrap();
        let restored = bastion_accountant::from_state(&state).unwrap();
        assert_eq!(restored.steps(), 1000);
        assert_eq!(restored.epsilon(1e-5).unwrap(), acct.epsilon(1e-5).unwrap());

        let other = AccountantKind::ALL
            .into_iter()
            .find(|k| *k != kind)
            .unwrap();
        let mut wrong = bastion_accountant::create(other);
        let err = wrong.load(&state).unwrap_err();
        assert!(
            matches!(err, AccountantError::MechanismMismatch { .. }),
            "{err}"
        );
        assert_eq!(wrong.steps(), 0);
    }
    // Untrusted state is validated like live input.
    let tampered = r#"{"version":1,"mechanism":"rdp","history":[{"q":1.5,"sigma":1.0,"steps":3}]}"#;
    let state: SavedState = serde_json::from_str(tampered).unwrap();
    assert!(matches!(
        bastion_accountant::from_state(&state).unwrap_err(),
        AccountantError::InvalidSamplingRate { .. }
    ));
    let future = r#"{"version":9,"mechanism":"rdp","history":[]}"#;
    let state: SavedState = serde_json::from_str(future).unwrap();
    assert!(matches!(
        bastion_accountant::from_state(&state).unwrap_err(),
        AccountantError::UnsupportedStateVersion { .. }
    ));
}
