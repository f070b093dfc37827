//! `bastion attest verify` on the real SNP vectors in shared/vectors/snp: good evidence prints
//! one JSON verdict and exits 0; bad evidence exits 1 naming the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AT: &str = "2026-01-01T00:00:00Z";
const MILAN_MEASUREMENT: &str =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

fn vector(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors/snp")
        .join(path)
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("attest_cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn bastion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["attest", "verify"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run bastion")
}

fn verify(report: &Path, cert: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--report",
        report.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    bastion(&args)
}

fn accepted(out: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "expected success, stderr: {stderr}");
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn refused(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1, stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "no verdict on refusal");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn milan_hex() -> PathBuf {
    vector("virtee-sev/report_milan.hex")
}

fn milan_vcek() -> PathBuf {
    vector("virtee-sev/vcek_milan.der")
}

fn milan_raw() -> Vec<u8> {
    hex::decode(std::fs::read_to_string(milan_hex()).unwrap().trim()).unwrap()
}

#[test]
fn milan_hex_report_without_policy() {
    let v = accepted(&verify(&milan_hex(), &milan_vcek(), &["--at", AT]));
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["simulated"], false);
    assert_eq!(v["generation"], "Milan");
    assert_eq!(v["report_version"], 2);
    assert_eq!(v["signing_key"], "vcek");
    assert_eq!(v["measurement"], MILAN_MEASUREMENT);
    assert_eq!(v["measurement_checked"], false);
    assert_eq!(v["policy_file"], serde_json::Value::Null);
    assert_eq!(v["policy"]["raw"], "0x30000");
    assert_eq!(v["policy"]["debug_allowed"], false);
    assert_eq!(v["policy"]["smt_allowed"], true);
    assert_eq!(v["reported_tcb"]["snp"], 8);
    assert_eq!(v["reported_tcb"]["microcode"], 115);
    assert!(v["chip_id"].as_str().unwrap().starts_with("d49554ec"));
    assert_eq!(v["report_data"].as_str().unwrap().len(), 128);
}

#[test]
fn trustee_raw_report_with_a_policy() {
    let policy = scratch(
        "trustee-policy.toml",
        b"allowed_measurements = [\"a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c\"]\nmin_guest_svn = 4\n[min_tcb]\nsnp = 8\n",
    );
    let out = verify(
        &vector("trustee/test-report.bin"),
        &vector("trustee/test-vcek.der"),
        &["--at", AT, "--policy", policy.to_str().unwrap()],
    );
    let v = accepted(&out);
    assert_eq!(v["measurement_checked"], true);
    assert_eq!(v["guest_svn"], 4);
    assert_eq!(v["policy"]["raw"], "0x3001f");
    assert_eq!(v["policy"]["abi_minor"], 31);
}

#[test]
fn expected_report_data_is_checked() {
    let rd = hex::encode(&milan_raw()[0x50..0x90]);
    let v = accepted(&verify(
        &milan_hex(),
        &milan_vcek(),
        &["--at", AT, "--expect-report-data", &rd],
    ));
    assert_eq!(v["report_data_checked"], true);
    let err = refused(&verify(
        &milan_hex(),
        &milan_vcek(),
        &["--at", AT, "--expect-report-data", &"00".repeat(64)],
    ));
    assert!(err.contains("REPORT_DATA"), "{err}");
}

#[test]
fn flipped_measurement_byte_is_refused() {
    let mut raw = milan_raw();
    raw[0x90] ^= 1;
    let report = scratch("milan-flipped-measurement.bin", &raw);
    let err = refused(&verify(&report, &milan_vcek(), &["--at", AT]));
    assert!(
        err.contains("evidence.signature") && err.contains("SIGNATURE does not verify"),
        "{err}"
    );
}

#[test]
fn another_chips_vcek_is_refused() {
    let err = refused(&verify(
        &milan_hex(),
        &vector("trustee/test-vcek.der"),
        &["--at", AT],
    ));
    assert!(err.contains("CHIP_ID"), "{err}");
}

#[test]
fn turin_vcek_for_a_milan_report_is_refused() {
    let err = refused(&verify(
        &milan_hex(),
        &vector("virtee-sev/vcek_turin.der"),
        &["--at", AT],
    ));
    assert!(err.contains("signing certificate is for Turin"), "{err}");
}

#[test]
fn expired_certificate_is_refused() {
    let err = refused(&verify(
        &milan_hex(),
        &milan_vcek(),
        &["--at", "2031-01-01T00:00:00Z"],
    ));
    assert!(err.contains("VCEK has expired"), "{err}");
}

#[test]
fn measurement_outside_the_policy_is_refused() {
    let policy = scratch(
        "other-measurement.toml",
        format!(
            "allowed_measurements = [\"{}\"]\n[min_tcb]\nsnp = 8\n",
            "ab".repeat(48)
        )
        .as_bytes(),
    );
    let err = refused(&verify(
        &milan_hex(),
        &milan_vcek(),
        &["--at", AT, "--policy", policy.to_str().unwrap()],
    ));
    assert!(
        err.contains("MEASUREMENT") && err.contains(MILAN_MEASUREMENT),
        "{err}"
    );
}

#[test]
fn policy_with_an_unknown_field_is_refused() {
    let policy = scratch(
        "typo.toml",
        b"allow_any_measurement = true\nalow_debug = true\n",
    );
    let err = refused(&verify(
        &milan_hex(),
        &milan_vcek(),
        &["--at", AT, "--policy", policy.to_str().unwrap()],
    ));
    assert!(
        err.contains("typo.toml") && err.contains("alow_debug"),
        "{err}"
    );
}

#[test]
fn truncated_oversized_and_empty_reports_are_refused() {
    let raw = milan_raw();
    let truncated = scratch("truncated.bin", &raw[..1000]);
    let err = refused(&verify(&truncated, &milan_vcek(), &["--at", AT]));
    assert!(err.contains("1000 bytes, expected exactly 1184"), "{err}");
    let mut big = raw.clone();
    big.extend_from_slice(&[0; 16]);
    let oversized = scratch("oversized.bin", &big);
    let err = refused(&verify(&oversized, &milan_vcek(), &["--at", AT]));
    assert!(err.contains("1200 bytes"), "{err}");
    let empty = scratch("empty.bin", b"");
    let err = refused(&verify(&empty, &milan_vcek(), &["--at", AT]));
    assert!(err.contains("attestation report is empty"), "{err}");
}

#[test]
fn missing_file_and_bad_time_are_named() {
    let err = refused(&verify(
        Path::new("/nonexistent/report.bin"),
        &milan_vcek(),
        &["--at", AT],
    ));
    assert!(err.contains("/nonexistent/report.bin"), "{err}");
    let err = refused(&verify(&milan_hex(), &milan_vcek(), &["--at", "yesterday"]));
    assert!(err.contains("RFC 3339"), "{err}");
}

#[test]
fn a_policy_without_a_minimum_tcb_is_refused_before_the_evidence() {
    let no_min = scratch(
        "no-min-tcb.toml",
        format!("allowed_measurements = [\"{MILAN_MEASUREMENT}\"]\n").as_bytes(),
    );
    let err = refused(&verify(
        &milan_hex(),
        &milan_vcek(),
        &["--at", AT, "--policy", no_min.to_str().unwrap()],
    ));
    assert!(
        err.contains("no-min-tcb.toml") && err.contains("min_tcb"),
        "{err}"
    );
    // Control: the same policy with the report's TCB as its minimum accepts it.
    let with_min = scratch(
        "with-min-tcb.toml",
        format!(
            "allowed_measurements = [\"{MILAN_MEASUREMENT}\"]\n[min_tcb]\nbootloader = 3\nsnp = 8\nmicrocode = 115\n"
        )
        .as_bytes(),
    );
    let v = accepted(&verify(
        &milan_hex(),
        &milan_vcek(),
        &["--at", AT, "--policy", with_min.to_str().unwrap()],
    ));
    assert_eq!(v["measurement_checked"], true);
}

#[test]
fn platform_requirements_refuse_the_milan_host() {
    // The Milan vector's PLATFORM_INFO is 0x1: SMT on, TSME off, no ciphertext hiding.
    for (knob, reason) in [
        ("require_smt_disabled", "SMT_EN"),
        ("require_tsme", "TSME_EN"),
        ("require_ciphertext_hiding", "CIPHERTEXT_HIDING_DRAM"),
    ] {
        let policy = scratch(
            &format!("{knob}.toml"),
            format!("allow_any_measurement = true\n{knob} = true\n[min_tcb]\nsnp = 8\n").as_bytes(),
        );
        let err = refused(&verify(
            &milan_hex(),
            &milan_vcek(),
            &["--at", AT, "--policy", policy.to_str().unwrap()],
        ));
        assert!(err.contains(reason), "{knob}: {err}");
    }
}
