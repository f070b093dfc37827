//! A node's TEE on SEV-SNP hardware: its evidence, its signing certificate and its sealing keys.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use hkdf::Hkdf;
use sha2::Sha256;
use x509_cert::der::Encode;
use zeroize::Zeroize;

use super::{
    GuestDevice, GuestError, HostCertificate, HostCertificateKind, KeyMix, KeyRequest, KeyRoot,
};
use crate::error::VerifyError;
use crate::report::{Report, SigningKeyKind};
use crate::tls::{AttestError, Attester, Binding, Evidence};
use crate::verify::{SigningCertificate, TrustAnchors, Verdict, Verifier};
use crate::Policy;

/// HKDF salt for sealing keys: names this scheme, so a derived key used elsewhere under the
/// same label cannot collide with ours.
pub const SEALING_SALT: &[u8] = b"bastion-snp-sealing-v1";

/// Where the certificate that signs this guest's reports comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// The host's certificate table, fetched with every report (it follows TCB updates).
    HostTable,
    /// A file the operator installed (the host has no table; nodes may have no route to
    /// AMD's key server).
    File(PathBuf),
}

/// The SEV-SNP guest as a node's TEE: an [`Attester`] whose reports the peer side verifies
/// against AMD's pinned roots, and the source of sealing keys.
///
/// Made once at start with [`SnpGuest::new`], which fetches a first report and settles where
/// the signing certificate comes from; every later report comes from the device.
pub struct SnpGuest<D: GuestDevice> {
    device: Mutex<D>,
    source: CertificateSource,
    kind: SigningKeyKind,
    /// The configured certificate, DER (`File` source only).
    file_certificate: Option<Vec<u8>>,
    /// The first report and its certificate: this guest's identity.
    identity: Report,
    identity_certificate: Vec<u8>,
}

impl<D: GuestDevice> SnpGuest<D> {
    /// Takes the device, fetches a report and the host's certificate table, and picks the
    /// signing certificate: the table's VCEK or VLEK (whichever KEY_INFO names) when the host
    /// installed one, else `certificate` (a DER or PEM file, or a directory holding `vcek.der`,
    /// `vcek.pem`, `vlek.der` or `vlek.pem`), else [`GuestError::NoSigningCertificate`].
    ///
    /// A host that does not serve the extended request at all (some hypervisors refuse it) is
    /// no obstacle when `certificate` is given: the plain request is used from then on.
    pub fn new(mut device: D, certificate: Option<&Path>) -> Result<Self, GuestError> {
        let first = match (device.get_ext_report([0; 64]), certificate) {
            (Ok(first), _) => first,
            (Err(e), Some(_)) => {
                tracing::info!(error = %e, "no extended report from this host; using the plain request and the configured certificate");
                super::GuestReport {
                    report: device.get_report([0; 64])?,
                    certificates: None,
                }
            }
            (Err(e), None) => return Err(e),
        };
        let identity = Report::decode(&first.report).map_err(GuestError::Report)?;
        let kind = identity.signing_key();
        let from_host = first
            .certificates
            .as_deref()
            .and_then(|table| from_table(table, kind));
        let (source, identity_certificate, file_certificate) = match (from_host, certificate) {
            (Some(der), _) => (CertificateSource::HostTable, der, None),
            (None, Some(path)) => {
                let der = load_certificate(path, kind)?;
                (
                    CertificateSource::File(path.to_path_buf()),
                    der.clone(),
                    Some(der),
                )
            }
            (None, None) => return Err(GuestError::NoSigningCertificate { kind }),
        };
        tracing::info!(signing_key = %kind, source = ?source, "SEV-SNP guest device ready");
        Ok(SnpGuest {
            device: Mutex::new(device),
            source,
            kind,
            file_certificate,
            identity,
            identity_certificate,
        })
    }

    /// Where the signing certificate comes from.
    pub fn certificate_source(&self) -> &CertificateSource {
        &self.source
    }

    /// The first report this guest made (its measurement, policy, TCB, chip).
    pub fn identity(&self) -> &Report {
        &self.identity
    }

    /// The certificate that signed [`SnpGuest::identity`], DER.
    pub fn identity_certificate(&self) -> &[u8] {
        &self.identity_certificate
    }

    /// Verifies this guest's own first report as a peer would, against `trust` at `at`,
    /// with its own measurement allowed and any TCB (the caller reads the TCB from the
    /// verdict): a wrong certificate file, a debug policy or an unexpected VMPL shows at
    /// start, in one error, instead of as every peer's refusal.
    pub fn self_verify(&self, trust: TrustAnchors, at: SystemTime) -> Result<Verdict, VerifyError> {
        let mut policy = Policy::new(vec![*self.identity.measurement()]);
        policy.allow_any_tcb = true;
        Verifier::new(policy, trust).verify(
            self.identity.bytes(),
            &self.identity_certificate,
            None,
            at,
        )
    }

    /// The MSG_KEY_REQ request behind sealing keys: the VCEK root (the key never leaves this
    /// chip), mixed with the launch measurement, the guest policy and the guest SVN, at this
    /// guest's VMPL. The TCB is not mixed in, so sealed state survives a firmware update;
    /// rollback to old firmware is what peers' minimum TCB refuses.
    pub fn sealing_request(&self) -> KeyRequest {
        KeyRequest {
            root: KeyRoot::Vcek,
            mix: KeyMix {
                guest_policy: true,
                measurement: true,
                guest_svn: true,
                ..KeyMix::default()
            },
            vmpl: self.identity.vmpl(),
            guest_svn: self.identity.guest_svn(),
            tcb_version: 0,
        }
    }

    /// A 32-byte key for `label` (one per use: checkpoints, shards, ledgers), as
    /// HKDF-SHA256(salt = [`SEALING_SALT`], ikm = the derived key of
    /// [`SnpGuest::sealing_request`], info = `label`). Only the same image under the same
    /// policy and SVN on the same chip gets it; distinct labels give independent keys. The
    /// firmware's key is asked for each time and wiped after use.
    pub fn sealing_key(&self, label: &[u8]) -> Result<[u8; 32], GuestError> {
        let request = self.sealing_request();
        let mut root = self.lock().derive_key(&request)?;
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(SEALING_SALT), &root)
            .expand(label, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        root.zeroize();
        Ok(key)
    }

    /// A fresh report for `report_data` and the certificate that signs it.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<(Vec<u8>, Vec<u8>), GuestError> {
        let mut device = self.lock();
        match &self.file_certificate {
            Some(der) => Ok((device.get_report(*report_data)?, der.clone())),
            None => {
                let fresh = device.get_ext_report(*report_data)?;
                let der = fresh
                    .certificates
                    .as_deref()
                    .and_then(|table| from_table(table, self.kind))
                    .ok_or(GuestError::HostCertificateGone { kind: self.kind })?;
                Ok((fresh.report, der))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, D> {
        // A panic mid-request leaves no state in the device handle worth distrusting.
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<D: GuestDevice> std::fmt::Debug for SnpGuest<D> {
    // Without the device: a test double need not be Debug, and the handle says nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnpGuest")
            .field("source", &self.source)
            .field("signing_key", &self.kind)
            .field("measurement", &hex::encode(self.identity.measurement()))
            .finish_non_exhaustive()
    }
}

impl<D: GuestDevice> Attester for SnpGuest<D> {
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError> {
        let (report, vcek_der) = self.attest_report_data(&binding.report_data())?;
        Ok(Evidence {
            report,
            vcek_der,
            binding: binding.clone(),
        })
    }

    fn attest_report_data(
        &self,
        report_data: &[u8; 64],
    ) -> Result<(Vec<u8>, Vec<u8>), AttestError> {
        self.evidence(report_data).map_err(|e| AttestError {
            reason: e.to_string(),
        })
    }
}

/// The table's certificate for `kind`, as DER (hosts store DER; PEM is converted).
fn from_table(table: &[HostCertificate], kind: SigningKeyKind) -> Option<Vec<u8>> {
    let wanted = match kind {
        SigningKeyKind::Vcek => HostCertificateKind::Vcek,
        SigningKeyKind::Vlek => HostCertificateKind::Vlek,
    };
    let entry = table.iter().find(|c| c.kind == wanted)?;
    Some(to_der(&entry.data).unwrap_or_else(|_| entry.data.clone()))
}

/// Reads the certificate for `kind` from a file, or from a directory by its usual name.
fn load_certificate(path: &Path, kind: SigningKeyKind) -> Result<Vec<u8>, GuestError> {
    let bad = |reason: String| GuestError::CertificateFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = if path.is_dir() {
        let stem = match kind {
            SigningKeyKind::Vcek => "vcek",
            SigningKeyKind::Vlek => "vlek",
        };
        ["der", "pem"]
            .iter()
            .map(|ext| path.join(format!("{stem}.{ext}")))
            .find(|p| p.is_file())
            .ok_or_else(|| bad(format!("directory holds neither {stem}.der nor {stem}.pem")))?
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|e| GuestError::CertificateFile {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    let parsed = SigningCertificate::parse(&bytes).map_err(|e| GuestError::CertificateFile {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    if parsed.kind() != kind {
        return Err(GuestError::CertificateKind {
            path: file,
            expected: kind,
            found: parsed.kind(),
        });
    }
    parsed
        .x509
        .to_der()
        .map_err(|e| GuestError::CertificateFile {
            path: file,
            reason: e.to_string(),
        })
}

/// DER of a DER or PEM certificate.
fn to_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let parsed = SigningCertificate::parse(bytes).map_err(|e| e.to_string())?;
    parsed.x509.to_der().map_err(|e| e.to_string())
}
