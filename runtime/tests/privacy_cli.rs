//! `bastion privacy`: good inputs print one JSON object that agrees with the library; bad
//! inputs fail with a message naming the parameter and a non-zero exit.

use bastion_dp::accountant::{self, AccountantKind};
use serde_json::Value;
use std::process::{Command, Output};

fn bastion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bastion"))
        .arg("privacy")
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run bastion")
}

fn json_ok(args: &[&str]) -> Value {
    let out = bastion(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "bastion privacy {args:?} failed: {stderr}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON line expected, got {stdout:?}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn library_epsilon(kind: AccountantKind, q: f64, sigma: f64, steps: u64, delta: f64) -> f64 {
    let mut a = accountant::create(kind);
    a.compose(q, sigma, steps).unwrap();
    a.epsilon(delta).unwrap()
}

#[test]
fn epsilon_defaults_to_the_tight_accountant() {
    let args = [
        "epsilon", "--q", "0.01", "--sigma", "1.0", "--steps", "10000", "--delta", "1e-5",
    ];
    let v = json_ok(&args);
    let eps = v["epsilon"].as_f64().unwrap();
    assert_eq!(v["accountant"], "pld");
    assert_eq!(
        eps,
        library_epsilon(AccountantKind::Pld, 0.01, 1.0, 10_000, 1e-5)
    );
    // Reference (dp_accounting PLD): 6.1877; the PRV lower bound 6.1774.
    assert!((6.1774..6.25).contains(&eps), "{eps}");
}

#[test]
fn epsilon_with_each_accountant() {
    let base = [
        "epsilon", "--q", "0.004", "--sigma", "0.8", "--steps", "2000", "--delta", "1e-6",
    ];
    let mut prv = base.to_vec();
    prv.extend(["--accountant", "prv"]);
    let mut rdp = base.to_vec();
    rdp.extend(["--accountant", "rdp"]);
    let (tight, loose) = (json_ok(&prv), json_ok(&rdp));
    assert_eq!(loose["accountant"], "rdp");
    let (t, l) = (
        tight["epsilon"].as_f64().unwrap(),
        loose["epsilon"].as_f64().unwrap(),
    );
    assert_eq!(
        l,
        library_epsilon(AccountantKind::Rdp, 0.004, 0.8, 2000, 1e-6)
    );
    assert!((l - 2.636_967).abs() < 1e-3, "rdp {l}");
    assert!(t < l, "tight {t} vs rdp {l}");
}

#[test]
fn sigma_meets_the_target() {
    let v = json_ok(&[
        "sigma",
        "--q",
        "0.01",
        "--steps",
        "3000",
        "--delta",
        "1e-5",
        "--epsilon",
        "3",
    ]);
    let sigma = v["sigma"].as_f64().unwrap();
    assert!((sigma / 1.033_336 - 1.0).abs() < 1e-2, "sigma {sigma}");
    assert!(library_epsilon(AccountantKind::Pld, 0.01, sigma, 3000, 1e-5) <= 3.0);
    assert!(v["epsilon"].as_f64().unwrap() <= 3.0);
}

fn assert_rejected(args: &[&str], needle: &str) {
    let out = bastion(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(out.stdout.is_empty(), "{args:?} printed a result");
    assert!(
        stderr.contains(needle),
        "{args:?}: {needle:?} not in {stderr:?}"
    );
}

#[test]
fn nonsense_is_rejected_with_the_parameter_named() {
    let e = |q: &str, sigma: &str, steps: &str, delta: &str| {
        [
            "epsilon", "--q", q, "--sigma", sigma, "--steps", steps, "--delta", delta,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<String>>()
    };
    let cases = [
        (e("0", "1", "10", "1e-5"), "sampling rate q"),
        (e("1.5", "1", "10", "1e-5"), "got 1.5"),
        (e("-0.1", "1", "10", "1e-5"), "sampling rate q"),
        (e("0.1", "0", "10", "1e-5"), "noise multiplier sigma"),
        (e("0.1", "-2", "10", "1e-5"), "got -2"),
        (e("0.1", "inf", "10", "1e-5"), "noise multiplier sigma"),
        (e("0.1", "1", "0", "1e-5"), "steps must be at least 1"),
        (e("0.1", "1", "10", "0"), "delta must be in (0, 1)"),
        (e("0.1", "1", "10", "1"), "delta must be in (0, 1)"),
        (e("0.1", "1", "10", "-1e-5"), "got -0.00001"),
        (e("0.1", "1", "-3", "1e-5"), "--steps"),
        (e("abc", "1", "10", "1e-5"), "--q"),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_rejected(&args, needle);
    }
    assert_rejected(
        &[
            "sigma",
            "--q",
            "0.01",
            "--steps",
            "100",
            "--delta",
            "1e-5",
            "--epsilon",
            "0",
        ],
        "target epsilon",
    );
    assert_rejected(
        &[
            "sigma",
            "--q",
            "2",
            "--steps",
            "100",
            "--delta",
            "1e-5",
            "--epsilon",
            "1",
        ],
        "sampling rate q",
    );
    assert_rejected(
        &[
            "epsilon",
            "--q",
            "0.1",
            "--sigma",
            "1",
            "--steps",
            "10",
            "--delta",
            "1e-5",
            "--accountant",
            "moments",
        ],
        "--accountant",
    );
}
