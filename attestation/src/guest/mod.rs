//! Evidence and sealing keys from SEV-SNP hardware: the guest side of attestation.
//!
//! Inside an SEV-SNP guest the AMD Secure Processor answers two requests through the guest
//! device (`/dev/sev-guest`, SNP firmware ABI spec 56860, "MSG_REPORT_REQ" and
//! "MSG_KEY_REQ"):
//! - an **attestation report** carrying 64 bytes of REPORT_DATA the guest chooses, signed by
//!   the chip's VCEK (or the cloud provider's VLEK); the extended request also returns the
//!   certificate table the host installed (VCEK, ASK, ARK), when it installed one;
//! - a **derived key**: 32 bytes only this chip can compute, mixed with what the guest selects
//!   (its launch measurement, guest policy, SVN...), so only the same image under the same
//!   policy on the same chip gets the same key. It seals state at rest.
//!
//! [`GuestDevice`] is that interface as a trait, so the code above it runs in tests on captured
//! evidence ([`SevGuestDevice`] is the real one, over the sev crate's ioctls). [`SnpGuest`] is
//! a node's TEE on hardware: an [`Attester`](crate::tls::Attester) for attested TLS, the
//! party channel and the receipt (peers verify with the same [`Verifier`](crate::Verifier) and
//! AMD's pinned roots), and the source of per-purpose sealing keys ([`SnpGuest::sealing_key`]).
//!
//! Nothing here falls back to the simulated TEE: a missing or unusable device is an error.
//!
//! ```no_run
//! use bastion_attestation::guest::{SevGuestDevice, SnpGuest, DEFAULT_DEVICE};
//! let device = SevGuestDevice::open(DEFAULT_DEVICE.as_ref())?;
//! // The VCEK comes from the host's certificate table, or from this file when there is none.
//! let tee = SnpGuest::new(device, Some("vcek.der".as_ref()))?;
//! let key = tee.sealing_key(b"bastion-checkpoint-v1")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod device;
mod error;
mod snp;

pub use device::{SevGuestDevice, DEFAULT_DEVICE};
pub use error::GuestError;
pub use snp::{CertificateSource, SnpGuest, SEALING_SALT};

/// The AMD Secure Processor as seen from inside a guest: reports and derived keys.
///
/// Implemented by [`SevGuestDevice`] on hardware and by test doubles that replay captured
/// evidence. Requests are numbered by the firmware and must not interleave, hence `&mut self`.
pub trait GuestDevice: Send {
    /// MSG_REPORT_REQ through the extended request: a report whose REPORT_DATA is
    /// `report_data`, requested at VMPL 0, and the host's certificate table if it set one.
    fn get_ext_report(&mut self, report_data: [u8; 64]) -> Result<GuestReport, GuestError>;

    /// MSG_REPORT_REQ: a report whose REPORT_DATA is `report_data`, requested at VMPL 0,
    /// without the certificate table.
    fn get_report(&mut self, report_data: [u8; 64]) -> Result<Vec<u8>, GuestError>;

    /// MSG_KEY_REQ: a 32-byte key derived as `request` selects.
    fn derive_key(&mut self, request: &KeyRequest) -> Result<[u8; 32], GuestError>;
}

/// What the extended report request returns.
#[derive(Debug, Clone)]
pub struct GuestReport {
    /// The 1184-byte report, as the firmware wrote it.
    pub report: Vec<u8>,
    /// The certificate table the host installed (`None`: the host installed none).
    pub certificates: Option<Vec<HostCertificate>>,
}

/// One entry of the host's certificate table (GHCB spec 56421, "SNP Extended Guest Request").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertificate {
    /// Which certificate, by the table's GUID.
    pub kind: HostCertificateKind,
    /// The certificate as the host stored it (AMD's KDS serves DER).
    pub data: Vec<u8>,
}

/// The GUIDs of the certificate table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostCertificateKind {
    /// AMD root key.
    Ark,
    /// AMD SEV signing key.
    Ask,
    /// Versioned chip endorsement key.
    Vcek,
    /// Versioned loaded endorsement key (cloud provider).
    Vlek,
    /// Revocation list.
    Crl,
    /// A GUID this code does not use.
    Other,
}

/// Which root key MSG_KEY_REQ derives from (ROOT_KEY_SELECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRoot {
    /// The chip's VCEK: keys that never leave this machine.
    Vcek,
    /// The VM root key (shared with a migration agent's destination).
    Vmrk,
}

/// What MSG_KEY_REQ mixes into the key (GUEST_FIELD_SELECT, bits 0 to 6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyMix {
    /// Bit 0: the guest policy.
    pub guest_policy: bool,
    /// Bit 1: the ID block's image id.
    pub image_id: bool,
    /// Bit 2: the ID block's family id.
    pub family_id: bool,
    /// Bit 3: the launch measurement.
    pub measurement: bool,
    /// Bit 4: [`KeyRequest::guest_svn`].
    pub guest_svn: bool,
    /// Bit 5: [`KeyRequest::tcb_version`].
    pub tcb_version: bool,
}

impl KeyMix {
    /// The GUEST_FIELD_SELECT word.
    pub fn bits(&self) -> u64 {
        [
            self.guest_policy,
            self.image_id,
            self.family_id,
            self.measurement,
            self.guest_svn,
            self.tcb_version,
        ]
        .iter()
        .enumerate()
        .map(|(bit, on)| u64::from(*on) << bit)
        .sum()
    }
}

/// A MSG_KEY_REQ request (SNP firmware ABI spec 56860, "MSG_KEY_REQ Message Structure").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest {
    /// ROOT_KEY_SELECT.
    pub root: KeyRoot,
    /// GUEST_FIELD_SELECT.
    pub mix: KeyMix,
    /// The VMPL mixed in: at least the guest's current VMPL.
    pub vmpl: u32,
    /// The SVN mixed in when selected: at most the SVN the guest launched with.
    pub guest_svn: u32,
    /// The TCB mixed in when selected: at most the committed TCB.
    pub tcb_version: u64,
}
