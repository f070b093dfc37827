//! Report verification time on real evidence (shared/vectors/snp), printed as a table.
//!
//! `cargo bench -p bastion-attestation --bench verify [-- ITERATIONS]`
//!
//! Rows: the full `Verifier::verify` (decode, pinned chain RSA-PSS check, validity, binding,
//! ECDSA P-384 report signature, policy); its two expensive steps alone; decoding alone; and a
//! refusal (flipped measurement, which costs the whole path up to the signature). Pinned roots
//! are parsed once per process, outside the timed loop, as in a running node.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bastion_attestation::{Policy, Report, TrustAnchors, Verifier};

fn vector(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../shared/vectors/snp/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("read vector {path}: {e}"))
}

fn time<T>(iterations: u32, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    for _ in 0..iterations.div_ceil(10) {
        std::hint::black_box(f());
    }
    let mut samples = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let t = Instant::now();
        std::hint::black_box(f());
        samples.push(t.elapsed());
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn main() {
    let iterations: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let at: SystemTime = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let report = hex::decode(
        String::from_utf8(vector("virtee-sev/report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let vcek = vector("virtee-sev/vcek_milan.der");
    let trustee_report = vector("trustee/test-report.bin");
    let trustee_vcek = vector("trustee/test-vcek.der");
    let verifier = Verifier::new(Policy::any_measurement_dangerous(), TrustAnchors::amd());
    // Warm the pinned roots (parsed and checked once per process).
    verifier
        .verify(&report, &vcek, None, at)
        .expect("the Milan vector verifies");
    let mut tampered = report.clone();
    tampered[0x90] ^= 1;

    let rows: Vec<(&str, (Duration, Duration))> = vec![
        (
            "verify: virtee Milan v2 (VCEK)",
            time(iterations, || {
                verifier.verify(&report, &vcek, None, at).unwrap()
            }),
        ),
        (
            "verify: trustee Milan v2 (VCEK, ID block)",
            time(iterations, || {
                verifier
                    .verify(&trustee_report, &trustee_vcek, None, at)
                    .unwrap()
            }),
        ),
        (
            "verify_signing_certificate (ASK -> VCEK RSA-PSS)",
            time(iterations, || {
                verifier.verify_signing_certificate(&vcek, at).unwrap()
            }),
        ),
        (
            "baseline: same ECDSA check with the p384 crate",
            time(iterations, || ecdsa_only(&report, &vcek)),
        ),
        (
            "Report::decode",
            time(iterations, || Report::decode(&report).unwrap()),
        ),
        (
            "refusal: flipped measurement byte",
            time(iterations, || {
                verifier.verify(&tampered, &vcek, None, at).unwrap_err()
            }),
        ),
    ];

    println!("bastion-attestation verify bench: {iterations} iterations per row, CPU, one thread");
    println!("| {:<50} | {:>10} | {:>10} |", "operation", "median", "p99");
    println!("|{:-<52}|{:->12}|{:->12}|", "", "", "");
    for (name, (median, p99)) in rows {
        println!(
            "| {name:<50} | {:>7.3} ms | {:>7.3} ms |",
            ms(median),
            ms(p99)
        );
    }
}

/// The report signature check with the pure-Rust p384 crate: the baseline ring replaced.
fn ecdsa_only(report: &[u8], vcek_der: &[u8]) {
    use p384::ecdsa::signature::Verifier as _;
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(vcek_der).unwrap();
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(
        cert.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    )
    .unwrap();
    let scalar = |at: usize| {
        let mut b: [u8; 48] = report[at..at + 48].try_into().unwrap();
        b.reverse();
        b
    };
    let sig = p384::ecdsa::Signature::from_scalars(scalar(0x2A0), scalar(0x2A0 + 72)).unwrap();
    key.verify(&report[..0x2A0], &sig).unwrap();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
