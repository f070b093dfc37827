//! The simulated TEE against the real verifier: its evidence verifies only under anchors that
//! name the simulated chain, says so, and fails the same checks real evidence would.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bastion_attestation::error::{ChainError, EvidenceError, PolicyViolation};
use bastion_attestation::report::{Report, REPORT_LEN};
use bastion_attestation::sim::{LaunchConfig, SimError, SimulatedPlatform, POLICY_DEBUG};
use bastion_attestation::{Generation, Policy, Tcb, TrustAnchors, Verifier, VerifyError};

/// One chain for every test binary and run: RSA-4096 keygen takes seconds.
fn platform() -> &'static SimulatedPlatform {
    static P: OnceLock<SimulatedPlatform> = OnceLock::new();
    P.get_or_init(|| {
        SimulatedPlatform::load_or_generate(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tee"),
        )
        .expect("simulated platform")
    })
}

fn anchors(p: &SimulatedPlatform) -> TrustAnchors {
    TrustAnchors::simulated(p.ark_der(), p.ask_der()).expect("simulated anchors")
}

fn verifier() -> Verifier {
    Verifier::new(
        Policy::new(vec![LaunchConfig::default_measurement()]),
        anchors(platform()),
    )
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn simulated_report_verifies_under_simulated_anchors_and_says_so() {
    let tee = platform().launch(LaunchConfig::default()).unwrap();
    let report_data = [0x5a; 64];
    let report = tee.report(&report_data).unwrap();
    assert_eq!(report.len(), REPORT_LEN);

    let verdict = verifier()
        .verify(&report, tee.vcek_der(), Some(&report_data), now())
        .expect("simulated evidence verifies");
    assert!(verdict.simulated);
    assert_eq!(verdict.generation, Generation::Milan);
    assert_eq!(verdict.report_version, 3);
    assert_eq!(verdict.measurement, LaunchConfig::default_measurement());
    assert_eq!(verdict.report_data, report_data);
    assert!(verdict.report_data_checked);
    assert_eq!(verdict.chip_id, platform().chip_id());
    assert_eq!(verdict.reported_tcb, tee.config().tcb);
    assert!(!verdict.policy.debug_allowed);
    assert!(verdict.signing_cert_subject.contains("SEV-VCEK"));
    assert!(verdict.signing_cert_issuer.contains("SIMULATED"));
}

#[test]
fn version_2_reports_verify_too() {
    let tee = platform()
        .launch(LaunchConfig {
            report_version: 2,
            ..LaunchConfig::default()
        })
        .unwrap();
    let report = tee.report(&[1; 64]).unwrap();
    let verdict = verifier()
        .verify(&report, tee.vcek_der(), Some(&[1; 64]), now())
        .unwrap();
    assert_eq!(verdict.report_version, 2);
    assert_eq!(verdict.generation, Generation::Milan);
}

#[test]
fn amd_anchors_refuse_simulated_evidence() {
    let tee = platform().launch(LaunchConfig::default()).unwrap();
    let report = tee.report(&[0; 64]).unwrap();
    let mut policy = Policy::new(vec![LaunchConfig::default_measurement()]);
    policy.min_tcb.snp = 1; // AMD's roots need a minimum; the chain refuses first anyway
    let amd = Verifier::try_new(policy, TrustAnchors::amd()).unwrap();
    let err = amd
        .verify(&report, tee.vcek_der(), None, now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::NotSignedByPinnedKey {
                generation: Generation::Milan,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn another_simulated_chain_is_not_trusted() {
    // Same chip secret would not help: a chain is its ARK/ASK keys. A new platform has new ones.
    let other = SimulatedPlatform::generate().unwrap();
    let tee = other.launch(LaunchConfig::default()).unwrap();
    let report = tee.report(&[0; 64]).unwrap();
    let err = verifier()
        .verify(&report, tee.vcek_der(), None, now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Chain(ChainError::NotSignedByPinnedKey { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn every_flipped_byte_in_the_signed_part_breaks_the_signature() {
    let tee = platform().launch(LaunchConfig::default()).unwrap();
    let report = tee.report(&[7; 64]).unwrap();
    // Fields the verifier reads before the signature (version, key info, chip id, TCBs) fail
    // earlier with their own error; pick bytes that only the signature protects.
    for offset in [0x10, 0x20, 0x50, 0x90, 0xC0, 0x140] {
        let mut bad = report.clone();
        bad[offset] ^= 1;
        let err = verifier()
            .verify(&bad, tee.vcek_der(), None, now())
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::Evidence(EvidenceError::Signature { .. })),
            "offset {offset:#x}: {err:?}"
        );
    }
}

#[test]
fn the_layout_is_the_abi_layout() {
    let config = LaunchConfig {
        vmpl: 1,
        host_data: [0x11; 32],
        guest_svn: 9,
        ..LaunchConfig::default()
    };
    let tee = platform().launch(config.clone()).unwrap();
    let rd: [u8; 64] = std::array::from_fn(|i| i as u8);
    let raw = tee.report(&rd).unwrap();
    assert_eq!(u32::from_le_bytes(raw[0..4].try_into().unwrap()), 3);
    assert_eq!(u32::from_le_bytes(raw[4..8].try_into().unwrap()), 9);
    assert_eq!(
        u64::from_le_bytes(raw[8..16].try_into().unwrap()),
        config.policy
    );
    assert_eq!(u32::from_le_bytes(raw[0x30..0x34].try_into().unwrap()), 1);
    assert_eq!(
        u32::from_le_bytes(raw[0x34..0x38].try_into().unwrap()),
        1,
        "SIG_ALGO"
    );
    assert_eq!(&raw[0x50..0x90], &rd);
    assert_eq!(&raw[0x90..0xC0], &config.measurement);
    assert_eq!(&raw[0xC0..0xE0], &config.host_data);
    assert_eq!(&raw[0x1A0..0x1E0], &platform().chip_id());
    assert_eq!(&raw[0x188..0x18B], &[0x19, 0x01, 0x01], "CPUID: Milan");
    // The signature's unused high bytes and the trailing reserved area are zero.
    assert!(raw[0x2A0 + 48..0x2A0 + 72].iter().all(|&b| b == 0));
    assert!(raw[0x2A0 + 72 + 48..].iter().all(|&b| b == 0));

    let report = Report::decode(&raw).unwrap();
    assert_eq!(report.vmpl(), 1);
    assert_eq!(report.reported_tcb(Generation::Milan), config.tcb);
    assert_eq!(report.cpuid_generation(), Some(Generation::Milan));
}

#[test]
fn a_debuggable_guest_is_authentic_but_refused() {
    let tee = platform()
        .launch(LaunchConfig {
            policy: LaunchConfig::default().policy | POLICY_DEBUG,
            ..LaunchConfig::default()
        })
        .unwrap();
    let report = tee.report(&[0; 64]).unwrap();
    let err = verifier()
        .verify(&report, tee.vcek_der(), None, now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Policy(PolicyViolation::DebugAllowed { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn a_vcek_for_another_tcb_does_not_verify_the_report() {
    let old = platform().launch(LaunchConfig::default()).unwrap();
    let new_tcb = Tcb {
        snp: 9,
        ..old.config().tcb
    };
    let new = platform()
        .launch(LaunchConfig {
            tcb: new_tcb,
            ..LaunchConfig::default()
        })
        .unwrap();
    let report = new.report(&[0; 64]).unwrap();
    // The VCEK is derived from the TCB: the old certificate names the old TCB.
    let err = verifier()
        .verify(&report, old.vcek_der(), None, now())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::Tcb { .. })),
        "{err:?}"
    );
    verifier()
        .verify(&report, new.vcek_der(), None, now())
        .unwrap();
}

#[test]
fn a_vcek_from_another_chip_does_not_verify_the_report() {
    let here = platform().launch(LaunchConfig::default()).unwrap();
    let there = platform()
        .with_new_chip()
        .launch(LaunchConfig::default())
        .unwrap();
    let report = here.report(&[0; 64]).unwrap();
    let err = verifier()
        .verify(&report, there.vcek_der(), None, now())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::ChipId { .. })),
        "{err:?}"
    );
}

#[test]
fn certificates_are_valid_for_decades_not_forever() {
    let tee = platform().launch(LaunchConfig::default()).unwrap();
    let report = tee.report(&[0; 64]).unwrap();
    let year = Duration::from_secs(365 * 24 * 3600);
    let in_2030 = SystemTime::UNIX_EPOCH + 60 * year;
    verifier()
        .verify(&report, tee.vcek_der(), None, in_2030)
        .unwrap();
    let in_2060 = SystemTime::UNIX_EPOCH + 90 * year;
    let err = verifier()
        .verify(&report, tee.vcek_der(), None, in_2060)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Chain(ChainError::Expired { .. })),
        "{err:?}"
    );
}

#[test]
fn derived_keys_depend_on_label_image_and_chip_only() {
    let a = platform().launch(LaunchConfig::default()).unwrap();
    let a_again = platform().launch(LaunchConfig::default()).unwrap();
    let other_image = platform()
        .launch(LaunchConfig::with_measurement([9; 48]))
        .unwrap();
    let other_chip = platform()
        .with_new_chip()
        .launch(LaunchConfig::default())
        .unwrap();

    let k = a.derive_key(b"checkpoint-sealing");
    assert_eq!(
        k,
        a_again.derive_key(b"checkpoint-sealing"),
        "same guest, same key"
    );
    assert_ne!(k, a.derive_key(b"ledger-sealing"));
    assert_ne!(k, other_image.derive_key(b"checkpoint-sealing"));
    assert_ne!(k, other_chip.derive_key(b"checkpoint-sealing"));
    assert_ne!(k, [0; 32]);
}

#[test]
fn a_saved_chain_loads_as_the_same_platform() {
    let dir = TempDir::new("roundtrip");
    platform().save(&dir).unwrap();
    let loaded = SimulatedPlatform::load(&dir).unwrap();
    assert_eq!(loaded.ark_der(), platform().ark_der());
    assert_eq!(loaded.chip_id(), platform().chip_id());
    let tee = loaded.launch(LaunchConfig::default()).unwrap();
    assert_eq!(
        tee.derive_key(b"x"),
        platform()
            .launch(LaunchConfig::default())
            .unwrap()
            .derive_key(b"x")
    );
    // Reports from the loaded platform verify under the original anchors.
    let report = tee.report(&[3; 64]).unwrap();
    verifier()
        .verify(&report, tee.vcek_der(), Some(&[3; 64]), now())
        .unwrap();

    // load_or_generate finds it rather than generating another.
    let again = SimulatedPlatform::load_or_generate(&dir).unwrap();
    assert_eq!(again.ask_der(), platform().ask_der());
    // Saving over an existing chain is refused, not merged.
    assert!(matches!(platform().save(&dir), Err(SimError::Io { .. })));
}

#[test]
fn a_damaged_chain_directory_is_refused_with_the_file_named() {
    let dir = TempDir::new("damaged");
    platform().save(&dir).unwrap();
    std::fs::write(dir.join("chip.secret"), [0u8; 5]).unwrap();
    let err = SimulatedPlatform::load(&dir).unwrap_err();
    assert!(
        matches!(&err, SimError::BadChainFile { path, .. } if path.ends_with("chip.secret")),
        "{err:?}"
    );

    let dir = TempDir::new("swapped");
    platform().save(&dir).unwrap();
    std::fs::copy(dir.join("ark.der"), dir.join("ask.der")).unwrap();
    let err = SimulatedPlatform::load(&dir).unwrap_err();
    assert!(
        matches!(&err, SimError::BadChainFile { path, .. } if path.ends_with("ask.der")),
        "{err:?}"
    );

    let err = SimulatedPlatform::load(TempDir::new("missing")).unwrap_err();
    assert!(matches!(err, SimError::Io { .. }), "{err:?}");
}

/// A path under the target's scratch directory that does not exist yet, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sim-test-{name}-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
