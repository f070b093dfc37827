//! The ATTESTATION_REPORT layout (SNP firmware ABI spec 56860, "ATTESTATION_REPORT Structure") and its signature.

use p384::ecdsa::signature::Signer;
use p384::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha384};

use crate::report::{write_signature, Generation, Tcb, REPORT_LEN, SIGNED_LEN};

/// The generation the simulated chip claims: CPUID in v3 reports, product name in the VCEK,
/// and the TCB layout of both.
pub const GENERATION: Generation = Generation::Milan;

/// Guest policy: bit 17 is reserved and must be one; bit 16 allows SMT.
pub const POLICY_DEFAULT: u64 = (1 << 17) | (1 << 16);
/// Guest policy bit 18: a migration agent may be associated with the guest.
pub const POLICY_MIGRATE_MA: u64 = 1 << 18;
/// Guest policy bit 19: the hypervisor may debug the guest (read its memory).
pub const POLICY_DEBUG: u64 = 1 << 19;
/// Guest policy bit 24 (CIPHERTEXT_HIDING_DRAM): launch only with ciphertext hiding on.
pub const POLICY_CIPHERTEXT_HIDING: u64 = 1 << 24;

/// PLATFORM_INFO bit 0: SMT is enabled on the host.
pub const PLATFORM_SMT_EN: u64 = 1 << 0;
/// PLATFORM_INFO bit 1: TSME is enabled.
pub const PLATFORM_TSME_EN: u64 = 1 << 1;
/// PLATFORM_INFO bit 4: ciphertext hiding for DRAM is enabled.
pub const PLATFORM_CIPHERTEXT_HIDING_EN: u64 = 1 << 4;

/// SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// CPUID of an EPYC Milan (family 19h, model 01h, stepping 1), as version-3 reports carry.
const CPUID_MILAN: (u8, u8, u8) = (0x19, 0x01, 0x01);
/// Firmware 1.55.21: the CURRENT/COMMITTED build, minor, major bytes.
const FIRMWARE_VERSION: [u8; 3] = [21, 55, 1];

/// What a simulated guest was launched with: the fields a report states about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    /// The launch digest (MEASUREMENT) of the guest's initial memory.
    pub measurement: [u8; 48],
    /// The guest policy (use [`POLICY_DEFAULT`], plus [`POLICY_DEBUG`] to simulate a
    /// debuggable guest that a verifier must refuse).
    pub policy: u64,
    /// The chip's TCB; the VCEK is derived from it and the report states it.
    pub tcb: Tcb,
    /// LAUNCH_TCB when the guest was launched under older firmware; `None`: `tcb`.
    pub launch_tcb: Option<Tcb>,
    /// PLATFORM_INFO: the host's SMT, TSME and ciphertext hiding state
    /// (`PLATFORM_*` constants). Default: SMT on, nothing else, as most hosts.
    pub platform_info: u64,
    /// The VM privilege level that asked for the report.
    pub vmpl: u32,
    /// HOST_DATA, chosen by the hypervisor at launch.
    pub host_data: [u8; 32],
    /// FAMILY_ID from the ID block.
    pub family_id: [u8; 16],
    /// IMAGE_ID from the ID block.
    pub image_id: [u8; 16],
    /// The guest SVN from the ID block.
    pub guest_svn: u32,
    /// The report format version: 2, or 3 (adds the CPUID fields).
    pub report_version: u32,
}

impl LaunchConfig {
    /// A guest with this measurement and the defaults for everything else.
    pub fn with_measurement(measurement: [u8; 48]) -> Self {
        Self {
            measurement,
            ..Self::default()
        }
    }

    /// The measurement of [`LaunchConfig::default`]: SHA-384 of a fixed label, for tests of
    /// the verifier. Nodes launch with [`LaunchConfig::for_binary`] instead, so that a
    /// changed binary measures differently.
    pub fn default_measurement() -> [u8; 48] {
        Sha384::digest(b"bastion-ai simulated guest image v1").into()
    }
}

impl Default for LaunchConfig {
    fn default() -> Self {
        Self {
            measurement: Self::default_measurement(),
            policy: POLICY_DEFAULT,
            tcb: default_tcb(),
            launch_tcb: None,
            platform_info: PLATFORM_SMT_EN,
            vmpl: 0,
            host_data: [0; 32],
            family_id: [0; 16],
            image_id: [0; 16],
            guest_svn: 0,
            report_version: 3,
        }
    }
}

/// The TCB of the Milan VCEK in `shared/vectors/snp/virtee-sev/vcek_milan.der`.
pub fn default_tcb() -> Tcb {
    Tcb {
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
        fmc: None,
    }
}

/// Lays out the report body (everything the signature covers), reserved bytes zero.
pub(crate) fn body(
    cfg: &LaunchConfig,
    chip_id: &[u8; 64],
    report_id: &[u8; 32],
    report_data: &[u8; 64],
) -> [u8; REPORT_LEN] {
    let mut r = [0u8; REPORT_LEN];
    let mut put =
        |offset: usize, bytes: &[u8]| r[offset..offset + bytes.len()].copy_from_slice(bytes);
    let tcb = cfg.tcb.to_bytes(GENERATION);
    put(0x00, &cfg.report_version.to_le_bytes());
    put(0x04, &cfg.guest_svn.to_le_bytes());
    put(0x08, &cfg.policy.to_le_bytes());
    put(0x10, &cfg.family_id);
    put(0x20, &cfg.image_id);
    put(0x30, &cfg.vmpl.to_le_bytes());
    put(0x34, &SIG_ALGO_ECDSA_P384_SHA384.to_le_bytes());
    put(0x38, &tcb); // CURRENT_TCB
    put(0x40, &cfg.platform_info.to_le_bytes());
    put(0x48, &0u32.to_le_bytes()); // KEY_INFO: signed by the VCEK, chip id not masked
    put(0x50, report_data);
    put(0x90, &cfg.measurement);
    put(0xC0, &cfg.host_data);
    // ID_KEY_DIGEST (0xE0) and AUTHOR_KEY_DIGEST (0x110) stay zero: no ID block.
    put(0x140, report_id);
    put(0x160, &[0xFF; 32]); // REPORT_ID_MA: no migration agent
    put(0x180, &tcb); // REPORTED_TCB: the TCB the VCEK was derived from
    if cfg.report_version >= 3 {
        put(0x188, &[CPUID_MILAN.0, CPUID_MILAN.1, CPUID_MILAN.2]);
    }
    put(0x1A0, chip_id);
    put(0x1E0, &tcb); // COMMITTED_TCB
    put(0x1E8, &FIRMWARE_VERSION); // CURRENT build, minor, major
    put(0x1EC, &FIRMWARE_VERSION); // COMMITTED build, minor, major
    put(
        0x1F0,
        &cfg.launch_tcb.unwrap_or(cfg.tcb).to_bytes(GENERATION),
    );
    r
}

/// Signs `report[..SIGNED_LEN]` with the VCEK (ECDSA P-384 over SHA-384, RFC 6979 nonces) and
/// writes the signature at 0x2A0 in the ABI's little-endian layout.
pub(crate) fn sign(report: &mut [u8; REPORT_LEN], vcek: &SigningKey) {
    let signature: Signature = vcek.sign(&report[..SIGNED_LEN]);
    let (r, s) = signature.split_bytes();
    let (mut r_be, mut s_be) = ([0u8; 48], [0u8; 48]);
    r_be.copy_from_slice(&r);
    s_be.copy_from_slice(&s);
    write_signature(report, &r_be, &s_be);
}
