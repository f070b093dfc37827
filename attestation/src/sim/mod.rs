//! A simulated SEV-SNP platform, for development and CI on machines without SNP.
//!
//! It plays both AMD's part ([`SimulatedPlatform`], held only by whoever makes the cluster) and
//! the secure processor's part ([`SimulatedChip`], one per node, without the root keys):
//! - **AMD's key server**: an ARK (root) and an ASK (signing key), RSA-4096 with RSASSA-PSS
//!   over SHA-384 and a 48-byte salt, as in AMD's published chains (VCEK spec 57230, ch. 3).
//! - **The chip**: a secret from which the chip id and the VCEK (P-384 ECDSA) are derived, the
//!   way the real PSP derives its VCEK from a fused secret and the TCB. The VCEK certificate
//!   carries AMD's extensions: the TCB components (OIDs 1.3.6.1.4.1.3704.1.3.{1,2,3,8}) and the
//!   chip id (hwID, 1.3.6.1.4.1.3704.1.4).
//! - **The guest's report**: the exact 1184-byte ATTESTATION_REPORT of the SNP firmware ABI
//!   (ABI spec 56860, "ATTESTATION_REPORT Structure"), signed with ECDSA P-384 over SHA-384
//!   of bytes `0..0x2A0`, `r` and `s` little-endian in 72-byte fields.
//!
//! So the real verifier runs on simulated evidence unchanged; what makes it accept the result
//! is only that its configuration names this chain explicitly
//! ([`TrustAnchors::simulated`](crate::TrustAnchors)), and then its verdict says `simulated`.
//! Everything here logs a `warn` saying it is simulated.
//!
//! RSA-4096 key generation takes seconds, so a process makes its chain once
//! ([`SimulatedPlatform::shared`]) and a local cluster keeps one in a directory
//! ([`SimulatedPlatform::load_or_generate`]) that only the cluster's maker reads. Each node
//! gets its own chip directory ([`SimulatedPlatform::issue_chip`], [`SimulatedChip::save`]):
//! its VCEK and the ARK and ASK certificates, never their private keys. Key files are 0600 in
//! 0700 directories; their contents are in the clear: it is a simulation, and nothing signed
//! by it is worth more than the directory's permissions.
//!
//! MEASUREMENT is the digest of the node's binary and launch parameters
//! ([`binary_measurement`]), so peers can pin the binary they run.
//!
//! ```no_run
//! use bastion_attestation::sim::{LaunchConfig, SimulatedChip, SimulatedPlatform};
//! // The cluster's maker (the simulation's AMD):
//! let platform = SimulatedPlatform::shared()?;
//! platform.issue_chip()?.save("node-1/tee")?;
//! // The node:
//! let chip = SimulatedChip::load("node-1/tee")?;
//! let tee = chip.launch(LaunchConfig::for_binary(std::env::current_exe()?)?)?;
//! let report = tee.report(&[0u8; 64])?;
//! assert_eq!(report.len(), bastion_attestation::report::REPORT_LEN);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chain;
mod chip;
mod error;
mod machine;
mod measurement;
mod platform;
mod report;

pub use error::SimError;
pub use machine::SimulatedChip;
pub use measurement::{binary_measurement, binary_measurement_with};
pub use platform::{SimulatedPlatform, SimulatedTee, SIM_DIR_ENV};
pub use report::{
    default_tcb, LaunchConfig, GENERATION, PLATFORM_CIPHERTEXT_HIDING_EN, PLATFORM_SMT_EN,
    PLATFORM_TSME_EN, POLICY_CIPHERTEXT_HIDING, POLICY_DEBUG, POLICY_DEFAULT, POLICY_MIGRATE_MA,
};
