//! A chain anyone can make: refused against the pinned AMD roots however it names itself, and
//! accepted only through the explicitly simulated door. With it the tests control every field
//! of an authentic report, so each policy refusal is reached on a validly signed report.

use bastion_attestation::{
    ChainError, EvidenceError, Generation, PolicyViolation, TrustAnchors, Verifier, VerifyError,
};

mod common;
use common::*;

/// The real Milan report, re-signed by a self-made VCEK for the same chip and TCB.
fn resigned(fake: &FakeAmd, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut r = milan_report();
    edit(&mut r);
    fake.sign(&mut r);
    r
}

fn fake_milan() -> FakeAmd {
    let chip = &milan_report()[0x1A0..0x1E0];
    FakeAmd::imitating(Generation::Milan, chip, milan_tcb())
}

#[test]
fn self_made_chain_with_amd_names_is_refused_by_the_pinned_roots() {
    let fake = fake_milan();
    let report = resigned(&fake, |_| {});
    let err = verify_amd(vector_policy(), &report, &fake.vcek_der).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::NotSignedByPinnedKey {
                generation: Generation::Milan,
                signer: "ASK",
                ..
            })
        ),
        "{err}"
    );
    // The same evidence is internally sound: the explicitly simulated door accepts it, and says so.
    let v = fake
        .simulated_verifier(vector_policy())
        .verify(&report, &fake.vcek_der, None, fixed_time())
        .unwrap();
    assert!(v.simulated);
    assert_eq!(v.generation, Generation::Milan);
}

#[test]
fn self_made_ark_and_ask_offered_by_the_peer_are_refused() {
    let fake = fake_milan();
    let report = resigned(&fake, |_| {});
    let verifier = Verifier::new(vector_policy(), TrustAnchors::amd());
    let err = verifier
        .verify_with_peer_chain(
            &report,
            &fake.vcek_der,
            &[&fake.ask_der, &fake.ark_der],
            None,
            fixed_time(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::PeerCertificateNotPinned { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("SEV-Milan"), "{err}");
    // The real ASK and ARK sent along with real evidence are fine.
    let ask = vector!("amd-roots/milan/ask.pem");
    let ark = vector!("amd-roots/milan/ark.pem");
    verifier
        .verify_with_peer_chain(
            &milan_report(),
            &milan_vcek(),
            &[&ask, &ark],
            None,
            fixed_time(),
        )
        .unwrap();
}

#[test]
fn a_real_vcek_does_not_verify_under_a_simulated_chain() {
    let fake = fake_milan();
    let err = fake.simulated_verifier(vector_policy()).verify(
        &milan_report(),
        &milan_vcek(),
        None,
        fixed_time(),
    );
    assert!(
        matches!(
            err,
            Err(VerifyError::Chain(ChainError::NotSignedByPinnedKey { .. }))
        ),
        "{err:?}"
    );
}

#[test]
fn simulated_anchors_must_be_consistent() {
    // AMD's real ARK did not sign a self-made ASK.
    let fake = fake_milan();
    let real_ark = vector!("amd-roots/milan/ark.pem");
    let err = TrustAnchors::simulated(&real_ark, &fake.ask_der).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::InvalidSimulatedChain { .. })
        ),
        "{err}"
    );
}

fn refuse_simulated(edit: impl FnOnce(&mut Vec<u8>)) -> VerifyError {
    let fake = fake_milan();
    let report = resigned(&fake, edit);
    fake.simulated_verifier(vector_policy())
        .verify(&report, &fake.vcek_der, None, fixed_time())
        .unwrap_err()
}

#[test]
fn debug_allowed_in_the_guest_policy() {
    let err = refuse_simulated(|r| r[0x08 + 2] |= 1 << 3);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::DebugAllowed { policy: 0xB0000 })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("POLICY.DEBUG"), "{err}");
}

#[test]
fn debug_accepted_when_the_policy_says_so() {
    let fake = fake_milan();
    let report = resigned(&fake, |r| r[0x08 + 2] |= 1 << 3);
    let mut p = vector_policy();
    p.allow_debug = true;
    let v = fake
        .simulated_verifier(p)
        .verify(&report, &fake.vcek_der, None, fixed_time())
        .unwrap();
    assert!(v.policy.debug_allowed);
}

#[test]
fn migration_agent_allowed_in_the_guest_policy() {
    let err = refuse_simulated(|r| r[0x08 + 2] |= 1 << 2);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::MigrationAgentAllowed { .. })
        ),
        "{err}"
    );
}

#[test]
fn report_from_vmpl_1() {
    let err = refuse_simulated(|r| r[0x30] = 1);
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::Vmpl { max: 0, found: 1 })
        ),
        "{err}"
    );
}

#[test]
fn reported_tcb_lower_than_the_vcek() {
    // A report signed by a key for TCB snp=8 but claiming snp=7: the pairing check names it.
    let err = refuse_simulated(|r| r[0x180 + 6] = 7);
    assert!(
        matches!(
            err,
            VerifyError::Evidence(EvidenceError::Tcb {
                field: "snp",
                expected: 8,
                found: 7
            })
        ),
        "{err}"
    );
}

#[test]
fn turin_layout_with_fmc() {
    // A v3 Turin report (family 0x1A, model 0x02): TCB is FMC, bootloader, TEE, SNP, .., microcode.
    let chip: Vec<u8> = (1..=8).collect();
    let mut tcb = milan_tcb();
    tcb.fmc = Some(2);
    let fake = FakeAmd::imitating(Generation::Turin, &chip, tcb);
    let mut r = milan_report();
    r[0] = 3;
    r[0x188] = 0x1A;
    r[0x189] = 0x02;
    r[0x1A0..0x1E0].fill(0);
    r[0x1A0..0x1A8].copy_from_slice(&chip);
    r[0x180..0x188].copy_from_slice(&tcb.to_bytes(Generation::Turin));
    fake.sign(&mut r);
    let v = fake
        .simulated_verifier(vector_policy())
        .verify(&r, &fake.vcek_der, None, fixed_time())
        .unwrap();
    assert_eq!(v.generation, Generation::Turin);
    assert_eq!(v.reported_tcb, tcb);
    // FMC below the policy's minimum.
    let mut p = vector_policy();
    p.min_tcb.fmc = 3;
    let err = fake
        .simulated_verifier(p)
        .verify(&r, &fake.vcek_der, None, fixed_time())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::TcbBelowMinimum {
                field: "fmc",
                min: 3,
                found: 2
            })
        ),
        "{err}"
    );
    // The FMC byte disagreeing with the VCEK's fmcSPL.
    r[0x180] = 1;
    fake.sign(&mut r);
    let err = fake
        .simulated_verifier(vector_policy())
        .verify(&r, &fake.vcek_der, None, fixed_time())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Evidence(EvidenceError::Tcb {
                field: "fmc",
                expected: 2,
                found: 1
            })
        ),
        "{err}"
    );
}

#[test]
fn masked_chip_id_against_a_vcek() {
    let err = refuse_simulated(|r| r[0x1A0..0x1E0].fill(0));
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::ChipId { .. })),
        "{err}"
    );
}

#[test]
fn vlek_signed_report() {
    // KEY_INFO.SIGNING_KEY = 1 (VLEK); the leaf carries cspID, and no chip id is compared.
    let chip = &milan_report()[0x1A0..0x1E0];
    let fake = FakeAmd::with_key_kind(
        "ARK-Milan",
        "SEV-VLEK-Milan",
        chip,
        milan_tcb(),
        false,
        Some("test-csp"),
    );
    let mut r = milan_report();
    r[0x48] = 1 << 2;
    r[0x1A0..0x1E0].fill(0); // VLEK reports commonly mask the chip id
    fake.sign(&mut r);
    let v = fake
        .simulated_verifier(vector_policy())
        .verify(&r, &fake.vcek_der, None, fixed_time())
        .unwrap();
    assert_eq!(v.signing_key, bastion_attestation::SigningKeyKind::Vlek);
    assert_eq!(v.generation, Generation::Milan);
    // A VCEK-only policy refuses it.
    let mut p = vector_policy();
    p.allowed_signing_keys = vec![bastion_attestation::SigningKeyKind::Vcek];
    let err = fake
        .simulated_verifier(p)
        .verify(&r, &fake.vcek_der, None, fixed_time())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::SigningKeyNotAllowed { .. })
        ),
        "{err}"
    );
    // Against the pinned roots it must chain to AMD's ASVK, which did not sign it.
    let err = verify_amd(vector_policy(), &r, &fake.vcek_der).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::NotSignedByPinnedKey {
                signer: "ASVK",
                generation: Generation::Milan,
                ..
            })
        ),
        "{err}"
    );
}
