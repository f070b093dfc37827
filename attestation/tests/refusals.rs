//! Defects in real evidence, each refused with its exact variant. The defective inputs are made
//! here from the vectors (never copied); `testdata/` holds the few that owe nothing to them.

use std::time::{Duration, UNIX_EPOCH};

use bastion_attestation::error::Input;
use bastion_attestation::{
    ChainError, EvidenceError, Generation, MalformedError, Policy, PolicyViolation, SigningKeyKind,
    TrustAnchors, Verifier, VerifyError,
};

mod common;
use common::*;

fn refuse(report: &[u8], cert: &[u8]) -> VerifyError {
    verify_amd(vector_policy(), report, cert).expect_err("must be refused")
}

fn flipped(mut report: Vec<u8>, offset: usize) -> Vec<u8> {
    report[offset] ^= 0x01;
    report
}

// --- one flipped byte -------------------------------------------------------------------------

#[test]
fn flipped_signature_byte() {
    let err = refuse(&flipped(milan_report(), 0x2A0 + 5), &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Evidence(EvidenceError::Signature {
                kind: SigningKeyKind::Vcek
            })
        ),
        "{err}"
    );
}

#[test]
fn flipped_measurement_byte() {
    let err = refuse(&flipped(milan_report(), 0x90), &milan_vcek());
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::Signature { .. })),
        "{err}"
    );
}

#[test]
fn flipped_report_data_byte() {
    let err = refuse(&flipped(trustee_report(), 0x50 + 63), &trustee_vcek());
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::Signature { .. })),
        "{err}"
    );
}

#[test]
fn flipped_reported_tcb_byte() {
    // REPORTED_TCB.SNP (byte 6 of the Milan layout) no longer matches the VCEK's snpSPL.
    let err = refuse(&flipped(milan_report(), 0x180 + 6), &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Evidence(EvidenceError::Tcb {
                field: "snp",
                expected: 8,
                found: 9
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("REPORTED_TCB.snp is 9"), "{err}");
}

#[test]
fn flipped_policy_debug_bit() {
    // The signature covers POLICY: setting DEBUG on a real report breaks it.
    let mut r = milan_report();
    r[0x08 + 2] |= 1 << 3;
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::Signature { .. })),
        "{err}"
    );
}

#[test]
fn flipped_chip_id_byte() {
    let err = refuse(&flipped(milan_report(), 0x1A0), &milan_vcek());
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::ChipId { .. })),
        "{err}"
    );
}

#[test]
fn flipped_reserved_byte() {
    // The sev parser requires reserved bytes to be zero; the signature, checked over the
    // received bytes rather than a re-encoding, would catch it too.
    let err = refuse(&flipped(milan_report(), 0x1F8 + 10), &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::ReportParse { .. })
        ),
        "{err}"
    );
}

// --- the wrong certificate --------------------------------------------------------------------

#[test]
fn another_chips_vcek() {
    let err = refuse(&milan_report(), &trustee_vcek());
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::ChipId { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("CHIP_ID d49554ec"), "{err}");
}

#[test]
fn turin_vcek_for_a_milan_report() {
    let err = refuse(&milan_report(), &vector!("virtee-sev/vcek_turin.der"));
    assert!(
        matches!(
            err,
            VerifyError::Evidence(EvidenceError::Generation {
                certificate: Generation::Turin,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn vcek_with_a_forged_signature() {
    // trustee's test VCEKs claim the Milan ASK as issuer but it did not sign them.
    for cert in [
        vector!("trustee/test-vcek-invalid-legacy.der"),
        vector!("trustee/test-vcek-invalid-new.der"),
    ] {
        let err = refuse(&trustee_report(), &cert);
        assert!(
            matches!(
                err,
                VerifyError::Chain(ChainError::NotSignedByPinnedKey {
                    kind: SigningKeyKind::Vcek,
                    signer: "ASK",
                    generation: Generation::Milan,
                    ..
                })
            ),
            "{err}"
        );
    }
}

#[test]
fn roots_of_the_wrong_generation() {
    let verifier = Verifier::new(
        vector_policy(),
        TrustAnchors::amd_only(&[Generation::Genoa, Generation::Turin]),
    );
    let err = verifier
        .verify(&milan_report(), &milan_vcek(), None, fixed_time())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::GenerationNotTrusted {
                generation: Generation::Milan,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn report_cpuid_says_genoa_but_the_vcek_is_milans() {
    // A v3 report naming Genoa (family 0x19, model 0x11) paired with a Milan VCEK.
    let mut r = milan_report();
    r[0] = 3;
    r[0x188] = 0x19;
    r[0x189] = 0x11;
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Evidence(EvidenceError::Generation {
                certificate: Generation::Milan,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn report_says_vlek_but_the_certificate_is_a_vcek() {
    let mut r = milan_report();
    r[0x48] = 1 << 2;
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Evidence(EvidenceError::SigningKeyKind {
                expected: SigningKeyKind::Vlek,
                found: SigningKeyKind::Vcek
            })
        ),
        "{err}"
    );
}

// --- time -------------------------------------------------------------------------------------

#[test]
fn expired_vcek() {
    // The Milan VCEK's notAfter is 2030-04-03T19:23:43Z.
    let after = UNIX_EPOCH + Duration::from_secs(1_901_474_623 + 1);
    let err = Verifier::new(vector_policy(), TrustAnchors::amd())
        .verify(&milan_report(), &milan_vcek(), None, after)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::Expired { cert: "VCEK", .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("notAfter 2030-04-03T19:23:43Z"),
        "{err}"
    );
    // One second earlier it is still valid.
    let last = UNIX_EPOCH + Duration::from_secs(1_901_474_623);
    Verifier::new(vector_policy(), TrustAnchors::amd())
        .verify(&milan_report(), &milan_vcek(), None, last)
        .unwrap();
}

#[test]
fn vcek_not_yet_valid() {
    // notBefore 2023-04-03T19:23:43Z; the pinned ARK is valid from 2020.
    let before = UNIX_EPOCH + Duration::from_secs(1_680_549_823 - 1);
    let err = Verifier::new(vector_policy(), TrustAnchors::amd())
        .verify(&milan_report(), &milan_vcek(), None, before)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::NotYetValid { cert: "VCEK", .. })
        ),
        "{err}"
    );
}

#[test]
fn ark_expired() {
    // 2046: past the Milan ARK's notAfter (2045-10-22); the ARK is checked before the VCEK.
    let at = UNIX_EPOCH + Duration::from_secs(2_398_377_600);
    let err = Verifier::new(vector_policy(), TrustAnchors::amd())
        .verify(&milan_report(), &milan_vcek(), None, at)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::Expired { cert: "ARK", .. })
        ),
        "{err}"
    );
}

// --- policy on authentic real reports ---------------------------------------------------------

fn refuse_with(
    policy: Policy,
    report: &[u8],
    cert: &[u8],
    expected: Option<&[u8; 64]>,
) -> VerifyError {
    Verifier::new(policy, TrustAnchors::amd())
        .verify(report, cert, expected, fixed_time())
        .unwrap_err()
}

#[test]
fn measurement_not_in_the_allow_list() {
    let mut only_trustee = Policy::new(vec![m48(TRUSTEE_MEASUREMENT)]);
    only_trustee.min_tcb = milan_vector_tcb();
    let err = refuse_with(only_trustee, &milan_report(), &milan_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::Measurement { allowed: 1, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(MILAN_MEASUREMENT), "{err}");
}

#[test]
fn report_data_is_not_the_expected_binding() {
    let err = refuse_with(
        vector_policy(),
        &milan_report(),
        &milan_vcek(),
        Some(&[0u8; 64]),
    );
    assert!(
        matches!(err, VerifyError::Policy(PolicyViolation::ReportData { .. })),
        "{err}"
    );
    // The right binding passes.
    let r = milan_report();
    let expected: [u8; 64] = r[0x50..0x90].try_into().unwrap();
    let v = Verifier::new(vector_policy(), TrustAnchors::amd())
        .verify(&r, &milan_vcek(), Some(&expected), fixed_time())
        .unwrap();
    assert!(v.report_data_checked);
}

#[test]
fn tcb_below_the_minimum() {
    let mut p = vector_policy();
    p.min_tcb.snp = 9;
    let err = refuse_with(p, &milan_report(), &milan_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::TcbBelowMinimum {
                field: "snp",
                min: 9,
                found: 8
            })
        ),
        "{err}"
    );
}

#[test]
fn smt_forbidden_by_the_policy() {
    let mut p = vector_policy();
    p.allow_smt = false;
    let err = refuse_with(p, &milan_report(), &milan_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::SmtAllowed { policy: 0x30000 })
        ),
        "{err}"
    );
}

#[test]
fn single_socket_required() {
    let mut p = vector_policy();
    p.require_single_socket = true;
    let err = refuse_with(p, &milan_report(), &milan_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::SingleSocketNotRequired { .. })
        ),
        "{err}"
    );
}

#[test]
fn only_vlek_accepted() {
    let mut p = vector_policy();
    p.allowed_signing_keys = vec![SigningKeyKind::Vlek];
    let err = refuse_with(p, &milan_report(), &milan_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::SigningKeyNotAllowed {
                found: SigningKeyKind::Vcek
            })
        ),
        "{err}"
    );
}

#[test]
fn report_version_below_the_minimum() {
    let mut p = vector_policy();
    p.min_report_version = 3;
    let err = refuse_with(p, &milan_report(), &milan_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::ReportVersion { min: 3, found: 2 })
        ),
        "{err}"
    );
}

#[test]
fn guest_svn_below_the_minimum() {
    let mut p = vector_policy();
    p.min_guest_svn = 5;
    let err = refuse_with(p, &trustee_report(), &trustee_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::GuestSvn { min: 5, found: 4 })
        ),
        "{err}"
    );
}

#[test]
fn host_data_differs() {
    let mut p = vector_policy();
    p.host_data = Some([0xAB; 32]);
    let err = refuse_with(p, &milan_report(), &milan_vcek(), None);
    assert!(
        matches!(err, VerifyError::Policy(PolicyViolation::HostData { .. })),
        "{err}"
    );
}

#[test]
fn id_key_digest_not_allowed_and_allowed() {
    let r = trustee_report();
    let digest: [u8; 48] = r[0xE0..0x110].try_into().unwrap();
    let mut p = vector_policy();
    p.allowed_id_key_digests = vec![[0x11; 48]];
    let err = refuse_with(p.clone(), &r, &trustee_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::IdKeyDigest { allowed: 1, .. })
        ),
        "{err}"
    );
    p.allowed_id_key_digests.push(digest);
    verify_amd(p.clone(), &r, &trustee_vcek()).unwrap();
    p.allowed_author_key_digests = vec![[0x22; 48]];
    let err = refuse_with(p, &r, &trustee_vcek(), None);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::AuthorKeyDigest { .. })
        ),
        "{err}"
    );
}

// --- malformed input --------------------------------------------------------------------------

#[test]
fn truncated_report() {
    let r = milan_report();
    let err = refuse(&r[..1183], &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::ReportLength {
                expected: 1184,
                found: 1183
            })
        ),
        "{err}"
    );
}

#[test]
fn oversized_report() {
    let mut r = milan_report();
    r.push(0);
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::ReportLength {
                expected: 1184,
                found: 1185
            })
        ),
        "{err}"
    );
}

#[test]
fn empty_report_file() {
    let empty = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/empty.bin")).unwrap();
    let err = refuse(&empty, &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::Empty {
                input: Input::Report
            })
        ),
        "{err}"
    );
    let err = refuse(&milan_report(), &empty);
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::Empty {
                input: Input::SigningCertificate
            })
        ),
        "{err}"
    );
}

#[test]
fn certificate_that_is_not_x509() {
    let junk = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/vcek-not-a-certificate.pem"
    ))
    .unwrap();
    let err = refuse(&milan_report(), &junk);
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::Certificate {
                input: Input::SigningCertificate,
                ..
            })
        ),
        "{err}"
    );
    let err = refuse(&milan_report(), &milan_report());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::Certificate { .. })
        ),
        "{err}"
    );
}

#[test]
fn certificate_that_is_a_ca_not_a_vcek() {
    // The pinned Milan ASK has neither hwID nor cspID.
    let ask = vector!("amd-roots/milan/ask.pem");
    let err = refuse(&milan_report(), &ask);
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::UnknownSigningCertificate)
        ),
        "{err}"
    );
}

#[test]
fn unsupported_report_versions() {
    for v in [0u8, 1, 6] {
        let mut r = milan_report();
        r[0] = v;
        let err = refuse(&r, &milan_vcek());
        assert!(
            matches!(err, VerifyError::Malformed(MalformedError::ReportVersion { min: 2, max: 5, found }) if found == v as u32),
            "{err}"
        );
    }
}

#[test]
fn unknown_signature_algorithm() {
    let mut r = milan_report();
    r[0x34] = 2;
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::SignatureAlgorithm { found: 2 })
        ),
        "{err}"
    );
}

#[test]
fn unsigned_report() {
    let mut r = milan_report();
    r[0x48] = 7 << 2;
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(err, VerifyError::Malformed(MalformedError::Unsigned { .. })),
        "{err}"
    );
    let mut r = milan_report();
    r[0x48] = 0b10; // MASK_CHIP_KEY
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(err, VerifyError::Malformed(MalformedError::Unsigned { .. })),
        "{err}"
    );
    let mut r = milan_report();
    r[0x48] = 3 << 2; // reserved encoding
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::SigningKeyEncoding { found: 3 })
        ),
        "{err}"
    );
}

#[test]
fn non_zero_signature_padding() {
    let mut r = milan_report();
    r[0x2A0 + 72 + 60] = 1;
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::SignaturePadding { component: "S" })
        ),
        "{err}"
    );
}

#[test]
fn unknown_cpu_in_a_v3_report() {
    let mut r = milan_report();
    r[0] = 3;
    r[0x188] = 0x17; // Zen 2: no SNP
    let err = refuse(&r, &milan_vcek());
    assert!(
        matches!(
            err,
            VerifyError::Malformed(MalformedError::UnknownCpu { family: 0x17, .. })
        ),
        "{err}"
    );
}

#[test]
fn every_refusal_has_a_stable_code() {
    let err = refuse(&flipped(milan_report(), 0x90), &milan_vcek());
    assert_eq!(err.code(), "evidence.signature");
    let err = refuse(&milan_report()[..10], &milan_vcek());
    assert_eq!(err.code(), "malformed.report_length");
}
