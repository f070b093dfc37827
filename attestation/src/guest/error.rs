//! Why the guest device could not give evidence or a key.

use std::path::PathBuf;

use crate::error::MalformedError;
use crate::report::SigningKeyKind;

/// The SEV-SNP guest device, or the evidence around it, is missing or unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The device node does not exist.
    #[error("SEV-SNP guest device {} does not exist: this machine is not an SEV-SNP guest, or its kernel lacks the sev-guest driver (modprobe sev-guest)", path.display())]
    DeviceMissing {
        /// The path looked at.
        path: PathBuf,
    },
    /// The device exists but could not be opened (permissions, a busy or broken driver).
    #[error("SEV-SNP guest device {} cannot be opened: {reason}", path.display())]
    DeviceOpen {
        /// The path.
        path: PathBuf,
        /// The operating system's message.
        reason: String,
    },
    /// A device path other than the one the guest driver creates: the sev crate's guest
    /// interface opens `/dev/sev-guest` only, so another path would be checked but not used.
    #[error("SEV-SNP guest device {} is not {expected}, the only device the SNP guest interface opens", path.display())]
    DevicePath {
        /// The path configured.
        path: PathBuf,
        /// [`DEFAULT_DEVICE`](super::DEFAULT_DEVICE).
        expected: &'static str,
    },
    /// The guest device exists only on Linux.
    #[error("the SEV-SNP guest device is available on Linux only")]
    Unsupported,
    /// The driver, the hypervisor or the Secure Processor refused a request.
    #[error("SEV-SNP {operation} failed: {reason}")]
    Firmware {
        /// "report request", "extended report request" or "key request".
        operation: &'static str,
        /// The firmware's or the VMM's error, in the sev crate's words.
        reason: String,
    },
    /// The device returned bytes that are not a report this crate can read.
    #[error("the SEV-SNP guest device returned an unusable report: {0}")]
    Report(#[source] MalformedError),
    /// Neither the host's certificate table nor a configured file provides the certificate
    /// that signs this guest's reports.
    #[error("no {kind} certificate: the host's certificate table has none and no certificate file or directory is configured (fetch it from AMD's key server, e.g. `snpguest fetch vcek der DIR`, onto the node)")]
    NoSigningCertificate {
        /// The key that signs this guest's reports (KEY_INFO).
        kind: SigningKeyKind,
    },
    /// The host's certificate table had the signing certificate at start and lost it since.
    #[error(
        "the host's certificate table no longer holds the {kind} certificate it held at start"
    )]
    HostCertificateGone {
        /// The key that signs this guest's reports.
        kind: SigningKeyKind,
    },
    /// The configured certificate file could not be read or decoded.
    #[error("certificate {}: {reason}", path.display())]
    CertificateFile {
        /// The file (or directory) configured.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The configured certificate is a VCEK where the reports are signed by a VLEK, or the
    /// reverse.
    #[error("certificate {} is a {found}, but this guest's reports are signed by its {expected}", path.display())]
    CertificateKind {
        /// The file.
        path: PathBuf,
        /// The key KEY_INFO names.
        expected: SigningKeyKind,
        /// The kind of certificate in the file.
        found: SigningKeyKind,
    },
}
