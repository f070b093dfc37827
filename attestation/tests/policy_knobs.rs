//! Policy knobs for the platform and firmware: ciphertext hiding, host SMT, TSME, LAUNCH_TCB,
//! and the minimum TCB that AMD's roots require. Each on the real vectors (both Milan reports
//! carry PLATFORM_INFO 0x1: SMT on, TSME and ciphertext hiding off; guest policy bit 24 clear)
//! and on simulated evidence that sets the bits, so every knob is seen to accept and refuse.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

use bastion_attestation::error::{PolicyError, PolicyViolation};
use bastion_attestation::sim::{
    default_tcb, LaunchConfig, SimulatedPlatform, PLATFORM_CIPHERTEXT_HIDING_EN, PLATFORM_SMT_EN,
    PLATFORM_TSME_EN, POLICY_CIPHERTEXT_HIDING, POLICY_DEFAULT,
};
use bastion_attestation::{Policy, Tcb, TcbMinimum, TrustAnchors, Verifier, VerifyError};
use common::*;

fn platform() -> &'static SimulatedPlatform {
    static P: OnceLock<SimulatedPlatform> = OnceLock::new();
    P.get_or_init(|| {
        SimulatedPlatform::load_or_generate(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tee"),
        )
        .expect("simulated platform")
    })
}

/// Verifies a simulated guest launched with `config` under `policy` (its measurement allowed).
fn sim_verify(edit: impl FnOnce(&mut Policy), config: LaunchConfig) -> Result<(), VerifyError> {
    let mut policy = Policy::new(vec![config.measurement]);
    edit(&mut policy);
    let tee = platform().launch(config).unwrap();
    let report = tee.report(&[0; 64]).unwrap();
    let trust = TrustAnchors::simulated(platform().ark_der(), platform().ask_der()).unwrap();
    Verifier::try_new(policy, trust)
        .unwrap()
        .verify(&report, tee.vcek_der(), None, SystemTime::now())
        .map(drop)
}

fn milan_with(edit: impl FnOnce(&mut Policy)) -> Result<(), VerifyError> {
    let mut policy = vector_policy();
    edit(&mut policy);
    verify_amd(policy, &milan_report(), &milan_vcek()).map(drop)
}

fn launch(policy: u64, platform_info: u64) -> LaunchConfig {
    LaunchConfig {
        policy,
        platform_info,
        ..LaunchConfig::with_measurement([5; 48])
    }
}

#[test]
fn ciphertext_hiding_needs_the_guest_policy_bit_and_the_platform_bit() {
    let require = |p: &mut Policy| p.require_ciphertext_hiding = true;
    // Real Milan evidence: policy 0x30000 does not demand it.
    milan_with(|_| {}).unwrap();
    let err = milan_with(require).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::CiphertextHidingNotRequired { policy: 0x30000 })
        ),
        "{err}"
    );
    assert_eq!(err.code(), "policy.ciphertext_hiding_not_required");

    let both = launch(
        POLICY_DEFAULT | POLICY_CIPHERTEXT_HIDING,
        PLATFORM_SMT_EN | PLATFORM_CIPHERTEXT_HIDING_EN,
    );
    sim_verify(require, both).unwrap();
    // The guest asks for it but the platform says it is off.
    let err = sim_verify(
        require,
        launch(POLICY_DEFAULT | POLICY_CIPHERTEXT_HIDING, PLATFORM_SMT_EN),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::CiphertextHidingDisabled { platform_info: 1 })
        ),
        "{err}"
    );
    // The platform has it on, but the guest did not make it a launch condition.
    let err = sim_verify(
        require,
        launch(
            POLICY_DEFAULT,
            PLATFORM_SMT_EN | PLATFORM_CIPHERTEXT_HIDING_EN,
        ),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::CiphertextHidingNotRequired { .. })
        ),
        "{err}"
    );
}

#[test]
fn host_smt_refused_when_the_policy_requires_it_off() {
    let require = |p: &mut Policy| p.require_smt_disabled = true;
    let err = milan_with(require).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::PlatformSmtEnabled { platform_info: 1 })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("SMT_EN"), "{err}");
    sim_verify(require, launch(POLICY_DEFAULT, 0)).unwrap();
    // The guest policy's SMT bit is another matter: a guest may allow SMT on a host without it.
    sim_verify(require, launch(POLICY_DEFAULT, PLATFORM_TSME_EN)).unwrap();
}

#[test]
fn tsme_required() {
    let require = |p: &mut Policy| p.require_tsme = true;
    let err = milan_with(require).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::TsmeDisabled { platform_info: 1 })
        ),
        "{err}"
    );
    sim_verify(
        require,
        launch(POLICY_DEFAULT, PLATFORM_SMT_EN | PLATFORM_TSME_EN),
    )
    .unwrap();
    let err = sim_verify(require, launch(POLICY_DEFAULT, PLATFORM_SMT_EN)).unwrap_err();
    assert_eq!(err.code(), "policy.tsme_disabled");
}

#[test]
fn launch_tcb_minimum_reads_launch_tcb_not_reported_tcb() {
    // Real evidence launched at 3/0/8/115: that minimum accepts, one microcode above refuses.
    milan_with(|p| p.min_launch_tcb = milan_vector_tcb()).unwrap();
    let err = milan_with(|p| {
        p.min_launch_tcb = TcbMinimum {
            microcode: 116,
            ..milan_vector_tcb()
        }
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::LaunchTcbBelowMinimum {
                field: "microcode",
                min: 116,
                found: 115
            })
        ),
        "{err}"
    );

    // A guest launched under SNP firmware 7 whose platform has since been patched to 8: the
    // REPORTED_TCB minimum passes, the LAUNCH_TCB one does not.
    let updated = LaunchConfig {
        launch_tcb: Some(Tcb {
            snp: 7,
            ..default_tcb()
        }),
        ..LaunchConfig::with_measurement([6; 48])
    };
    let snp8 = TcbMinimum {
        snp: 8,
        ..TcbMinimum::default()
    };
    sim_verify(|p| p.min_tcb = snp8, updated.clone()).unwrap();
    let err = sim_verify(|p| p.min_launch_tcb = snp8, updated).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::LaunchTcbBelowMinimum {
                field: "snp",
                min: 8,
                found: 7
            })
        ),
        "{err}"
    );
}

#[test]
fn amd_roots_refuse_a_policy_without_a_minimum_tcb() {
    let no_min = Policy::new(vec![m48(MILAN_MEASUREMENT)]);
    let err = Verifier::try_new(no_min.clone(), TrustAnchors::amd()).unwrap_err();
    assert!(matches!(err, PolicyError::NoMinimumTcb), "{err}");
    assert!(err.to_string().contains("min_tcb"), "{err}");

    // The infallible constructor is no way around it: every report is refused, unverified.
    let err = Verifier::new(no_min.clone(), TrustAnchors::amd())
        .verify(&milan_report(), &milan_vcek(), None, fixed_time())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Configuration(PolicyError::NoMinimumTcb)),
        "{err}"
    );
    assert_eq!(err.code(), "configuration.no_minimum_tcb");

    // An FMC minimum alone constrains nothing on Milan: still refused.
    let mut fmc_only = no_min.clone();
    fmc_only.min_tcb.fmc = 1;
    assert!(Verifier::try_new(fmc_only, TrustAnchors::amd()).is_err());

    // Controls: a real minimum, the spelled-out opt-out, and simulated anchors are accepted.
    let mut with_min = no_min.clone();
    with_min.min_tcb.snp = 8;
    Verifier::try_new(with_min, TrustAnchors::amd())
        .unwrap()
        .verify(&milan_report(), &milan_vcek(), None, fixed_time())
        .unwrap();
    let any = Policy::from_toml(&format!(
        "allowed_measurements = [\"{MILAN_MEASUREMENT}\"]\nallow_any_tcb = true"
    ))
    .unwrap();
    Verifier::try_new(any, TrustAnchors::amd()).unwrap();
    let sim = TrustAnchors::simulated(platform().ark_der(), platform().ask_der()).unwrap();
    Verifier::try_new(no_min, sim).unwrap();
}
