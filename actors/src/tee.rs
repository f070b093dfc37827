//! A node's TEE identity: where its evidence and sealing keys come from (SEV-SNP hardware or
//! the simulated TEE), the verifier it judges peers with, and its attested TLS endpoint.
//!
//! The two paths never mix: `[tee] simulated` picks one, a hardware node whose device is
//! missing stops with an error (no fallback to the simulation), and a hardware node trusts
//! AMD's pinned roots only.

use crate::config::{Measurement, TeeConfig};
use crate::node::{
    CHECKPOINT_KEY_LABEL, GROUP_LEDGER_KEY_LABEL, LEDGER_KEY_LABEL, SHARD_KEY_LABEL,
};
use bastion_attestation::guest::{SevGuestDevice, SnpGuest};
use bastion_attestation::sim::{LaunchConfig, SimulatedChip};
use bastion_attestation::tls::{AttestedEndpoint, Attester};
use bastion_attestation::{Policy, TcbMinimum, TrustAnchors, Verifier};
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

/// The identity on SEV-SNP hardware: `[tee] device`, the VCEK from the host's certificate
/// table or `[tee] vcek`, sealing keys from MSG_KEY_REQ, peers judged against AMD's roots.
pub(crate) fn hardware(
    tee: &TeeConfig,
    node: &str,
    metrics: &NodeMetrics,
) -> Result<TeeIdentity, String> {
    let fail = |what: &dyn std::fmt::Display| {
        format!("[tee] simulated = false: {what}; {SIMULATION_HINT}")
    };
    let device = SevGuestDevice::open(tee.device()).map_err(|e| fail(&e))?;
    let guest = SnpGuest::new(device, tee.vcek.as_deref()).map_err(|e| match e {
        bastion_attestation::guest::GuestError::NoSigningCertificate { .. } => {
            fail(&format!("{e}; set [tee] vcek to that file"))
        }
        other => fail(&other),
    })?;
    // This node's own evidence, checked as a peer will check it: a wrong VCEK file or a
    // debug policy stops the node here rather than at every peer.
    let own = guest
        .self_verify(TrustAnchors::amd(), std::time::SystemTime::now())
        .map_err(|e| {
            fail(&format!(
                "this node's own SEV-SNP evidence does not verify against AMD's roots: {e}"
            ))
        })?;
    metrics.set_simulated_tee(false);
    let own_measurement = Measurement(own.measurement);
    let own_tcb = TcbMinimum {
        bootloader: own.reported_tcb.bootloader,
        tee: own.reported_tcb.tee,
        snp: own.reported_tcb.snp,
        microcode: own.reported_tcb.microcode,
        fmc: own.reported_tcb.fmc.unwrap_or(0),
    };
    let min_tcb = tee.min_tcb.unwrap_or(own_tcb);
    let key = |label: &[u8]| {
        guest
            .sealing_key(label)
            .map_err(|e| fail(&format!("sealing key: {e}")))
    };
    let checkpoint_key = key(CHECKPOINT_KEY_LABEL)?;
    let shard_key = key(SHARD_KEY_LABEL)?;
    let ledger_key = key(LEDGER_KEY_LABEL)?;
    let group_ledger_key = key(GROUP_LEDGER_KEY_LABEL)?;
    let allowed = tee.allowed_measurements(own_measurement.0);
    warn_if_self_excluded(&allowed, &own_measurement);
    let mut policy = Policy::new(allowed);
    policy.min_tcb = min_tcb;
    // The self check above did not apply the minimum TCB: peers with this config would.
    let t = own.reported_tcb;
    let meets = t.bootloader >= min_tcb.bootloader
        && t.tee >= min_tcb.tee
        && t.snp >= min_tcb.snp
        && t.microcode >= min_tcb.microcode
        && t.fmc.is_none_or(|fmc| fmc >= min_tcb.fmc);
    if !meets {
        tracing::warn!(own = ?own.reported_tcb, minimum = ?min_tcb, "this node's own REPORTED_TCB is below [tee] min_tcb: peers with the same minimum will refuse it");
    }
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
