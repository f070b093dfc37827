//! Real SNP evidence from shared/vectors/snp (see its README for sources): every report verifies
//! with its certificate against the pinned AMD roots, and each defect is refused with its own
//! variant.

use bastion_attestation::{Generation, SigningKeyKind, VerifyError};

mod common;
use common::*;

fn verify(report: &[u8], cert: &[u8]) -> Result<bastion_attestation::Verdict, VerifyError> {
    verify_amd(vector_policy(), report, cert)
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

#[test]
fn turin_vcek_chains_to_the_pinned_turin_roots() {
    let verifier = bastion_attestation::Verifier::new(
        vector_policy(),
        bastion_attestation::TrustAnchors::amd(),
    );
    let (cert, generation) = verifier
        .verify_signing_certificate(&vector!("virtee-sev/vcek_turin.der"), fixed_time())
        .unwrap();
    assert_eq!(generation, Generation::Turin);
    assert_eq!(cert.kind(), SigningKeyKind::Vcek);
    assert_eq!(cert.hw_id().unwrap().len(), 8, "Turin hwID is 8 bytes");
    let tcb = cert.tcb(Generation::Turin).unwrap();
    assert_eq!((tcb.fmc, tcb.microcode), (Some(0), 9));
}

#[test]
fn every_vector_vcek_chains_to_its_pinned_roots() {
    let verifier = bastion_attestation::Verifier::new(
        vector_policy(),
        bastion_attestation::TrustAnchors::amd(),
    );
    for cert in [milan_vcek(), trustee_vcek()] {
        let (_, g) = verifier
            .verify_signing_certificate(&cert, fixed_time())
            .unwrap();
        assert_eq!(g, Generation::Milan);
    }
}

#[test]
fn hw_id_in_both_encodings_seen_in_the_field() {
    // Raw 64 bytes in the extension value, and the same wrapped in a DER OCTET STRING.
    let expected: Vec<u8> = (0..64).collect();
    for path in ["legacy", "new"] {
        let der = match path {
            "legacy" => vector!("trustee/test-vcek-invalid-legacy.der"),
            _ => vector!("trustee/test-vcek-invalid-new.der"),
        };
        let cert = bastion_attestation::SigningCertificate::parse(&der).unwrap();
        assert_eq!(cert.hw_id().unwrap(), expected.as_slice(), "{path}");
    }
    // The legacy one encodes ucodeSPL 169 with a leading zero byte (02 02 00 A9).
    let legacy = bastion_attestation::SigningCertificate::parse(&vector!(
        "trustee/test-vcek-invalid-legacy.der"
    ))
    .unwrap();
    assert_eq!(legacy.tcb(Generation::Milan).unwrap().microcode, 169);
}
