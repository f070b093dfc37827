//! A node's TEE identity: where its evidence and sealing keys come from (SEV-SNP hardware or
//! the simulated TEE), the verifier it judges peers with, and its attested TLS endpoint.
//!
//! The two paths never mix: `[tee] simulated` picks one, a hardware node whose device is
//! missing stops with an error (no fallback to the simulation), and a hardware node trusts
//! AMD's pinned roots only.

use crate::config::{Measurement, NodeConfig, PolicySource, TeeConfig, POLICY_PIN};
use crate::node::{
    CHECKPOINT_KEY_LABEL, GROUP_LEDGER_KEY_LABEL, LEDGER_KEY_LABEL, SHARD_KEY_LABEL,
};
use bastion_attestation::guest::{GuestDevice, SevGuestDevice, SnpGuest};
use bastion_attestation::sim::{LaunchConfig, SimulatedChip};
use bastion_attestation::tls::{AttestedEndpoint, Attester};
use bastion_attestation::{Policy, TcbMinimum, TrustAnchors, Verdict, Verifier};
use bastion_metrics::NodeMetrics;
use std::sync::Arc;

/// What `run_node` needs from the TEE.
pub(crate) struct TeeIdentity {
    /// Seals checkpoints.
    pub(crate) checkpoint_key: [u8; 32],
    /// Seals data shards.
    pub(crate) shard_key: [u8; 32],
    /// Chains this node's own privacy ledger.
    pub(crate) ledger_key: [u8; 32],
    /// Chains the group's privacy ledger (coordinator).
    pub(crate) group_ledger_key: [u8; 32],
    /// Attests the key that signs the job's privacy receipt (coordinator).
    pub(crate) receipt_attester: Arc<dyn Attester>,
    /// Attested TLS to peers and parties.
    pub(crate) endpoint: AttestedEndpoint,
}

/// Hint appended to every hardware start-up failure: the switch that selects the simulation.
const SIMULATION_HINT: &str =
    "to run without SEV-SNP hardware set [tee] simulated = true (and trust_simulated = true)";

/// A hardware start-up failure as one line: what is wrong, and the switch for simulation.
fn fail(what: &dyn std::fmt::Display) -> String {
    format!("[tee] simulated = false: {what}; {SIMULATION_HINT}")
}

/// Where the kernel exposes the command line it booted with (the measured one).
const KERNEL_CMDLINE: &str = "/proc/cmdline";

/// The identity on SEV-SNP hardware: `[tee] device`, the VCEK from the host's certificate
/// table or `[tee] vcek`, sealing keys from MSG_KEY_REQ, peers judged against AMD's roots,
/// the policy file checked against the pin on the kernel command line.
pub(crate) fn hardware(config: &NodeConfig, metrics: &NodeMetrics) -> Result<TeeIdentity, String> {
    let tee = &config.tee;
    let device = SevGuestDevice::open(tee.device()).map_err(|e| fail(&e))?;
    // Unreadable is an error, not "no pin": it would turn a pinned launch into an unpinned one.
    let cmdline = std::fs::read_to_string(KERNEL_CMDLINE).map_err(|e| {
        fail(&format!(
            "cannot read the kernel command line {KERNEL_CMDLINE} to check its {POLICY_PIN}: {e}"
        ))
    })?;
    hardware_on(
        device,
        &cmdline,
        config.policy.as_ref(),
        tee,
        &config.name,
        metrics,
        std::time::SystemTime::now(),
    )
}

/// [`hardware`] on an opened device (a fake one in tests) and the kernel command line
/// `cmdline`, with the policy file `policy` the config came with; certificates checked at `at`.
fn hardware_on<D: GuestDevice + 'static>(
    device: D,
    cmdline: &str,
    policy: Option<&PolicySource>,
    tee: &TeeConfig,
    node: &str,
    metrics: &NodeMetrics,
    at: std::time::SystemTime,
) -> Result<TeeIdentity, String> {
    check_policy_pin(cmdline, policy).map_err(|e| fail(&e))?;
    let guest = SnpGuest::new(device, tee.vcek.as_deref()).map_err(|e| match e {
        bastion_attestation::guest::GuestError::NoSigningCertificate { .. } => {
            fail(&format!("{e}; set [tee] vcek to that file"))
        }
        other => fail(&other),
    })?;
    // This node's own evidence, checked as a peer will check it: a wrong VCEK file or a
    // debug policy stops the node here rather than at every peer.
    let own = guest.self_verify(TrustAnchors::amd(), at).map_err(|e| {
        fail(&format!(
            "this node's own SEV-SNP evidence does not verify against AMD's roots: {e}"
        ))
    })?;
    metrics.set_simulated_tee(false);
    let own_measurement = Measurement(own.measurement);
    let policy = peer_policy(tee, &own);
    let min_tcb = policy.min_tcb;
    let key = |label: &[u8]| {
        guest
            .sealing_key(label)
            .map_err(|e| fail(&format!("sealing key: {e}")))
    };
    let checkpoint_key = key(CHECKPOINT_KEY_LABEL)?;
    let shard_key = key(SHARD_KEY_LABEL)?;
    let ledger_key = key(LEDGER_KEY_LABEL)?;
    let group_ledger_key = key(GROUP_LEDGER_KEY_LABEL)?;
    let verifier = Verifier::try_new(policy, TrustAnchors::amd()).map_err(|e| fail(&e))?;
    let guest = Arc::new(guest);
    let endpoint = AttestedEndpoint::new(Arc::clone(&guest), verifier).map_err(|e| fail(&e))?;
    tracing::info!(
        node = %node,
        measurement = %own_measurement.to_hex(),
        generation = %own.generation,
        signing_key = %own.signing_key,
        certificate = ?guest.certificate_source(),
        min_tcb = ?min_tcb,
        "running on SEV-SNP hardware"
    );
    Ok(TeeIdentity {
        checkpoint_key,
        shard_key,
        ledger_key,
        group_ledger_key,
        receipt_attester: guest,
        endpoint,
    })
}

/// Checks the policy file against `bastion.policy_sha256` on the kernel command line. A pin
/// needs a policy file with exactly that SHA-256; without a pin the node runs as configured,
/// with a warning, since its peer policy and roster then come from the unmeasured config disk
/// (peers see that: a measurement computed with the pin differs from one without).
fn check_policy_pin(cmdline: &str, policy: Option<&PolicySource>) -> Result<(), String> {
    let mut pins = cmdline
        .split_whitespace()
        .filter(|arg| arg.split('=').next() == Some(POLICY_PIN));
    let (pin, again) = (pins.next(), pins.next());
    if again.is_some() {
        // Which one counts would be up to whoever parses: refuse rather than guess.
        return Err(format!(
            "{POLICY_PIN} appears more than once on the kernel command line {:?}",
            cmdline.trim()
        ));
    }
    let Some(pin) = pin else {
        let found = policy.map_or("no policy file".to_string(), |p| {
            format!(
                "policy file {} (SHA-256 {})",
                p.path.display(),
                p.sha256_hex()
            )
        });
        tracing::warn!(
            "the kernel command line pins no policy ({POLICY_PIN}): this node's peer measurements, minimum TCB and party roster ({found}) are not covered by its launch measurement"
        );
        return Ok(());
    };
    let pinned = pin[POLICY_PIN.len()..].strip_prefix('=').unwrap_or("");
    if pinned.len() != 64 || !pinned.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{pin:?} on the kernel command line is malformed: {POLICY_PIN} takes the 64 hex digits of a SHA-256"
        ));
    }
    let pinned = pinned.to_ascii_lowercase();
    match policy {
        None => Err(format!(
            "the kernel command line pins {POLICY_PIN}={pinned}, but node.toml names no policy file (policy = \"...\")"
        )),
        Some(p) if p.sha256_hex() != pinned => Err(format!(
            "the kernel command line pins {POLICY_PIN}={pinned}, but the policy file {} has SHA-256 {}: it is not the policy this node was launched with",
            p.path.display(),
            p.sha256_hex()
        )),
        Some(p) => {
            tracing::info!(policy = %p.path.display(), sha256 = %pinned, "policy file matches the pin on the measured kernel command line");
            Ok(())
        }
    }
}

/// What a hardware node requires of its peers: `[tee] measurements` (default: its own),
/// `[tee] min_tcb` (default: its own REPORTED_TCB), the verifier's safe defaults otherwise.
fn peer_policy(tee: &TeeConfig, own: &Verdict) -> Policy {
    let own_measurement = Measurement(own.measurement);
    let t = own.reported_tcb;
    let own_tcb = TcbMinimum {
        bootloader: t.bootloader,
        tee: t.tee,
        snp: t.snp,
        microcode: t.microcode,
        fmc: t.fmc.unwrap_or(0),
    };
    let min_tcb = tee.min_tcb.unwrap_or(own_tcb);
    let allowed = tee.allowed_measurements(own_measurement.0);
    warn_if_self_excluded(&allowed, &own_measurement);
    // The self check did not apply the minimum TCB: peers with this config would.
    let meets = t.bootloader >= min_tcb.bootloader
        && t.tee >= min_tcb.tee
        && t.snp >= min_tcb.snp
        && t.microcode >= min_tcb.microcode
        && t.fmc.is_none_or(|fmc| fmc >= min_tcb.fmc);
    if !meets {
        tracing::warn!(own = ?t, minimum = ?min_tcb, "this node's own REPORTED_TCB is below [tee] min_tcb: peers with the same minimum will refuse it");
    }
    let mut policy = Policy::new(allowed);
    policy.min_tcb = min_tcb;
    policy
}

/// The identity on the simulated TEE: the chip in `[tee] platform_dir`, this binary's
/// measurement, peers judged against the simulated chain (only with `trust_simulated`).
pub(crate) fn simulated(
    tee: &TeeConfig,
    node: &str,
    metrics: &NodeMetrics,
) -> Result<TeeIdentity, String> {
    // Simulated peers only on this node's own say-so; a simulated node is never admitted by
    // hardware peers, so without it the node could admit nobody: refuse now, not at every join.
    if !tee.trust_simulated {
        return Err("[tee] trust_simulated = false: this node would refuse every peer on the simulated TEE, and hardware peers refuse a simulated node; set [tee] trust_simulated = true to accept simulated peers".into());
    }
    let chip_dir = &tee.platform_dir;
    let chip = SimulatedChip::load(chip_dir)
        .map_err(|e| format!("[tee] platform_dir {}: {e}", chip_dir.display()))?;
    metrics.set_simulated_tee(true);
    // The measurement of the binary actually running, so a changed binary is another guest.
    let exe = std::env::current_exe()
        .map_err(|e| format!("locating this node's binary to measure it: {e}"))?;
    let launch = LaunchConfig::for_binary(&exe).map_err(|e| e.to_string())?;
    let own_measurement = Measurement(launch.measurement);
    let sim = chip.launch(launch).map_err(|e| e.to_string())?;
    let checkpoint_key = sim.derive_key(CHECKPOINT_KEY_LABEL);
    let shard_key = sim.derive_key(SHARD_KEY_LABEL);
    let ledger_key = sim.derive_key(LEDGER_KEY_LABEL);
    let group_ledger_key = sim.derive_key(GROUP_LEDGER_KEY_LABEL);
    let trust =
        TrustAnchors::simulated(chip.ark_der(), chip.ask_der()).map_err(|e| e.to_string())?;
    let allowed = tee.allowed_measurements(own_measurement.0);
    warn_if_self_excluded(&allowed, &own_measurement);
    let verifier = Verifier::try_new(Policy::new(allowed), trust).map_err(|e| e.to_string())?;
    let receipt_attester = Arc::new(sim.clone());
    let endpoint = AttestedEndpoint::new(sim, verifier).map_err(|e| e.to_string())?;
    tracing::warn!(
        node = %node,
        measurement = %own_measurement.to_hex(),
        "running on the SIMULATED TEE: not hardware-protected"
    );
    Ok(TeeIdentity {
        checkpoint_key,
        shard_key,
        ledger_key,
        group_ledger_key,
        receipt_attester,
        endpoint,
    })
}

fn warn_if_self_excluded(allowed: &[[u8; 48]], own: &Measurement) {
    if !allowed.contains(&own.0) {
        tracing::warn!(
            measurement = %own.to_hex(),
            "this node's own measurement is not in [tee] measurements: peers with the same list will refuse it"
        );
    }
}

#[cfg(test)]
mod tests {
    //! The hardware assembly on a fake device replaying the real Milan report and VCEK
    //! (shared/vectors/snp): self check at start, sealing keys, the peers' policy.
    use super::*;
    use bastion_attestation::guest::{
        GuestError, GuestReport, HostCertificate, HostCertificateKind, KeyRequest,
    };
    use bastion_attestation::MeasurementRule;
    use std::path::PathBuf;

    const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

    fn vector(path: &str) -> Vec<u8> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/snp");
        std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("vector {path}: {e}"))
    }

    fn milan_report() -> Vec<u8> {
        let text = String::from_utf8(vector("virtee-sev/report_milan.hex")).unwrap();
        let text = text.trim();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// 2026-01-01T00:00:00Z: inside every vector certificate's validity.
    fn vector_time() -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600)
    }

    struct Fake {
        table: Option<Vec<HostCertificate>>,
    }

    impl GuestDevice for Fake {
        fn get_ext_report(&mut self, _: [u8; 64]) -> Result<GuestReport, GuestError> {
            Ok(GuestReport {
                report: milan_report(),
                certificates: self.table.clone(),
            })
        }
        fn get_report(&mut self, _: [u8; 64]) -> Result<Vec<u8>, GuestError> {
            Ok(milan_report())
        }
        fn derive_key(&mut self, r: &KeyRequest) -> Result<[u8; 32], GuestError> {
            Ok([r.mix.bits() as u8; 32])
        }
    }

    fn with_host_vcek() -> Fake {
        Fake {
            table: Some(vec![HostCertificate {
                kind: HostCertificateKind::Vcek,
                data: vector("virtee-sev/vcek_milan.der"),
            }]),
        }
    }

    fn metrics() -> NodeMetrics {
        NodeMetrics::new("n", 0, "trainer").unwrap()
    }

    #[test]
    fn the_real_milan_guest_assembles_with_distinct_sealing_keys() {
        let id = hardware_on(
            with_host_vcek(),
            "",
            None,
            &TeeConfig::default(),
            "n",
            &metrics(),
            vector_time(),
        )
        .unwrap();
        let keys = [
            id.checkpoint_key,
            id.shard_key,
            id.ledger_key,
            id.group_ledger_key,
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "each label its own key");
            }
        }
        let (report, _) = id.receipt_attester.attest_report_data(&[0; 64]).unwrap();
        assert_eq!(report, milan_report());
    }

    #[test]
    fn peers_must_match_this_nodes_measurement_and_tcb_unless_configured() {
        let device = with_host_vcek();
        let guest = SnpGuest::new(device, None).unwrap();
        let own = guest
            .self_verify(TrustAnchors::amd(), vector_time())
            .unwrap();
        let policy = peer_policy(&TeeConfig::default(), &own);
        let own_m = Measurement::from_hex(MILAN_MEASUREMENT).unwrap().0;
        assert_eq!(policy.measurements, MeasurementRule::AllowList(vec![own_m]));
        let m = policy.min_tcb;
        assert_eq!((m.bootloader, m.tee, m.snp, m.microcode), (3, 0, 8, 115));
        let configured = TeeConfig {
            measurements: vec![Measurement([9; 48])],
            min_tcb: Some(TcbMinimum {
                snp: 22,
                ..TcbMinimum::default()
            }),
            ..TeeConfig::default()
        };
        let policy = peer_policy(&configured, &own);
        assert_eq!(
            policy.measurements,
            MeasurementRule::AllowList(vec![[9; 48]])
        );
        assert_eq!(policy.min_tcb.snp, 22);
    }

    #[test]
    fn a_vcek_file_for_another_chip_stops_the_node_at_its_self_check() {
        let dir =
            std::env::temp_dir().join(format!("bastion-tee-wrong-vcek-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vcek.der");
        std::fs::write(&file, vector("trustee/test-vcek.der")).unwrap();
        let config = TeeConfig {
            vcek: Some(file),
            ..TeeConfig::default()
        };
        let err = match hardware_on(
            Fake { table: None },
            "",
            None,
            &config,
            "n",
            &metrics(),
            vector_time(),
        ) {
            Err(e) => e,
            Ok(_) => panic!("another chip's VCEK was accepted"),
        };
        assert!(
            err.contains("own SEV-SNP evidence does not verify"),
            "{err}"
        );
        assert!(err.contains("[tee] simulated = true"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn no_certificate_anywhere_names_the_vcek_setting() {
        let err = match hardware_on(
            Fake { table: None },
            "",
            None,
            &TeeConfig::default(),
            "n",
            &metrics(),
            vector_time(),
        ) {
            Err(e) => e,
            Ok(_) => panic!("started without a VCEK"),
        };
        assert!(err.contains("set [tee] vcek"), "{err}");
    }

    /// A policy file as `NodeConfig::load` records it (the hash itself is tested there).
    fn policy(sha256: [u8; 32]) -> PolicySource {
        PolicySource {
            path: PathBuf::from("/config/node-policy.toml"),
            sha256,
        }
    }

    /// The node assembled on the fake Milan device with this command line and policy file.
    fn start(cmdline: &str, policy: Option<&PolicySource>) -> Result<TeeIdentity, String> {
        hardware_on(
            with_host_vcek(),
            cmdline,
            policy,
            &TeeConfig::default(),
            "n",
            &metrics(),
            vector_time(),
        )
    }

    fn refused(cmdline: &str, policy: Option<&PolicySource>) -> String {
        match start(cmdline, policy) {
            Err(e) => e,
            Ok(_) => panic!("started with command line {cmdline:?} and policy {policy:?}"),
        }
    }

    const CMDLINE: &str = "console=ttyS0 rdinit=/init panic=-1 quiet";

    #[test]
    fn a_pin_equal_to_the_policy_files_sha256_starts_the_node() {
        let p = policy([0xab; 32]);
        let pin = "ab".repeat(32);
        assert!(start(&format!("{CMDLINE} {POLICY_PIN}={pin}"), Some(&p)).is_ok());
        // OVMF's loader may add its own argument after ours; upper-case hex is the same hash.
        let upper = pin.to_ascii_uppercase();
        assert!(start(&format!("{POLICY_PIN}={upper} initrd=initrd\n"), Some(&p)).is_ok());
    }

    #[test]
    fn a_pin_that_differs_from_the_policy_file_is_refused_naming_both_hashes() {
        let found = "ab".repeat(32);
        let pinned = "cd".repeat(32);
        let err = refused(
            &format!("{CMDLINE} {POLICY_PIN}={pinned}"),
            Some(&policy([0xab; 32])),
        );
        assert!(
            err.contains(&format!("pins {POLICY_PIN}={pinned}")),
            "{err}"
        );
        assert!(err.contains(&format!("has SHA-256 {found}")), "{err}");
        assert!(
            err.contains("/config/node-policy.toml"),
            "names the file: {err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        // A pin with no policy file to match is refused too.
        let err = refused(&format!("{CMDLINE} {POLICY_PIN}={pinned}"), None);
        assert!(err.contains("names no policy file"), "{err}");
        assert!(err.contains(&pinned), "{err}");
    }

    #[test]
    fn a_malformed_or_repeated_pin_is_refused() {
        let p = policy([0xab; 32]);
        let good = "ab".repeat(32);
        for pin in [
            format!("{POLICY_PIN}={}", &good[..63]),
            format!("{POLICY_PIN}={good}0"),
            format!("{POLICY_PIN}={}g", &good[..63]),
            format!("{POLICY_PIN}="),
            POLICY_PIN.to_string(),
        ] {
            let err = refused(&format!("{CMDLINE} {pin}"), Some(&p));
            assert!(err.contains("malformed"), "{pin}: {err}");
            assert!(
                err.contains(&format!("{pin:?}")),
                "quotes what it found: {err}"
            );
        }
        let twice = format!("{POLICY_PIN}={good} {CMDLINE} {POLICY_PIN}={good}");
        assert!(refused(&twice, Some(&p)).contains("more than once"));
        // A look-alike parameter is not the pin: no pin, so the node starts (with a warning).
        assert!(start(&format!("{CMDLINE} {POLICY_PIN}x={good}"), None).is_ok());
    }

    #[test]
    fn no_pin_starts_the_node_with_or_without_a_policy_file() {
        assert!(start(CMDLINE, None).is_ok());
        assert!(start(CMDLINE, Some(&policy([0xab; 32]))).is_ok());
        assert!(start("", Some(&policy([0xab; 32]))).is_ok());
    }
}
