//! The Linux SEV-SNP guest device, through the sev crate's guest firmware API (its ioctls sit
//! in one module there, `firmware/linux/guest/ioctl.rs`; this crate has no unsafe code).

use std::path::{Path, PathBuf};

use super::{
    GuestDevice, GuestError, GuestReport, HostCertificate, HostCertificateKind, KeyRequest,
};

/// Where the sev-guest driver puts the device, and the only path the sev crate opens.
pub const DEFAULT_DEVICE: &str = "/dev/sev-guest";

/// Message version for MSG_REPORT_REQ and MSG_KEY_REQ: 1 is understood by every SNP
/// firmware (version 2 needs firmware 1.58 and a launch mitigation vector we do not mix in).
const MESSAGE_VERSION: u32 = 1;

/// Reports are requested at VMPL 0, the level peers' policies accept by default (`max_vmpl`).
const REPORT_VMPL: u32 = 0;

/// `/dev/sev-guest`, opened.
#[derive(Debug)]
pub struct SevGuestDevice {
    #[cfg(target_os = "linux")]
    firmware: sev::firmware::guest::Firmware,
}

impl SevGuestDevice {
    /// Opens the guest device at `path`, which must be [`DEFAULT_DEVICE`] (or a link to it):
    /// the sev crate opens that path itself. Errors name the path and what is wrong with it.
    pub fn open(path: &Path) -> Result<Self, GuestError> {
        check_path(path)?;
        #[cfg(target_os = "linux")]
        {
            let firmware =
                sev::firmware::guest::Firmware::open().map_err(|e| GuestError::DeviceOpen {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            Ok(SevGuestDevice { firmware })
        }
        #[cfg(not(target_os = "linux"))]
        Err(GuestError::Unsupported)
    }
}

/// Missing first (the common case off hardware), then openable, then the one path sev uses.
fn check_path(path: &Path) -> Result<(), GuestError> {
    let owned = || path.to_path_buf();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(GuestError::DeviceMissing { path: owned() })
        }
        Err(e) => {
            return Err(GuestError::DeviceOpen {
                path: owned(),
                reason: e.to_string(),
            })
        }
        Ok(_) => {}
    }
    // Opening it here too names the configured path in a permission error.
    std::fs::File::open(path).map_err(|e| GuestError::DeviceOpen {
        path: owned(),
        reason: e.to_string(),
    })?;
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    if canonical(path) != canonical(Path::new(DEFAULT_DEVICE)) {
        return Err(GuestError::DevicePath {
            path: owned(),
            expected: DEFAULT_DEVICE,
        });
    }
    Ok(())
}

#[cfg(target_os = "linux")]
impl GuestDevice for SevGuestDevice {
    fn get_ext_report(&mut self, report_data: [u8; 64]) -> Result<GuestReport, GuestError> {
        let (report, table) = self
            .firmware
            .get_ext_report(Some(MESSAGE_VERSION), Some(report_data), Some(REPORT_VMPL))
            .map_err(|e| GuestError::Firmware {
                operation: "extended report request",
                reason: e.to_string(),
            })?;
        let certificates = table.map(|entries| {
            entries
                .into_iter()
                .map(|entry| HostCertificate {
                    kind: kind_of(&entry.cert_type),
                    data: entry.data,
                })
                .collect()
        });
        Ok(GuestReport {
            report,
            certificates,
        })
    }

    fn get_report(&mut self, report_data: [u8; 64]) -> Result<Vec<u8>, GuestError> {
        self.firmware
            .get_report(Some(MESSAGE_VERSION), Some(report_data), Some(REPORT_VMPL))
            .map_err(|e| GuestError::Firmware {
                operation: "report request",
                reason: e.to_string(),
            })
    }

    fn derive_key(&mut self, request: &KeyRequest) -> Result<[u8; 32], GuestError> {
        use sev::firmware::guest::{DerivedKey, GuestFieldSelect};
        let derived = DerivedKey::new(
            request.root == super::KeyRoot::Vmrk,
            GuestFieldSelect(request.mix.bits()),
            request.vmpl,
            request.guest_svn,
            request.tcb_version,
            None,
        );
        self.firmware
            .get_derived_key(Some(MESSAGE_VERSION), derived)
            .map_err(|e| GuestError::Firmware {
                operation: "key request",
                reason: e.to_string(),
            })
    }
}

#[cfg(not(target_os = "linux"))]
impl GuestDevice for SevGuestDevice {
    fn get_ext_report(&mut self, _: [u8; 64]) -> Result<GuestReport, GuestError> {
        Err(GuestError::Unsupported)
    }
    fn get_report(&mut self, _: [u8; 64]) -> Result<Vec<u8>, GuestError> {
        Err(GuestError::Unsupported)
    }
    fn derive_key(&mut self, _: &KeyRequest) -> Result<[u8; 32], GuestError> {
        Err(GuestError::Unsupported)
    }
}

#[cfg(target_os = "linux")]
fn kind_of(kind: &sev::firmware::host::CertType) -> HostCertificateKind {
    use sev::firmware::host::CertType;
    match kind {
        CertType::ARK => HostCertificateKind::Ark,
        CertType::ASK => HostCertificateKind::Ask,
        CertType::VCEK => HostCertificateKind::Vcek,
        CertType::VLEK => HostCertificateKind::Vlek,
        CertType::CRL => HostCertificateKind::Crl,
        CertType::Empty | CertType::OTHER(_) => HostCertificateKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_named() {
        let path = Path::new("/nonexistent/sev-guest");
        let err = SevGuestDevice::open(path).unwrap_err();
        assert!(matches!(err, GuestError::DeviceMissing { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/sev-guest"), "{err}");
    }

    #[test]
    fn another_existing_file_is_refused_not_silently_replaced() {
        // An existing file that is not /dev/sev-guest: the sev crate would open the real
        // device instead, so the configured path is refused.
        let err = SevGuestDevice::open(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_err();
        assert!(matches!(err, GuestError::DevicePath { .. }), "{err}");
    }

    #[test]
    fn guest_field_select_bits_follow_the_abi() {
        let mix = super::super::KeyMix {
            guest_policy: true,
            measurement: true,
            guest_svn: true,
            ..Default::default()
        };
        assert_eq!(mix.bits(), 0b1_1001);
        let all = super::super::KeyMix {
            guest_policy: true,
            image_id: true,
            family_id: true,
            measurement: true,
            guest_svn: true,
            tcb_version: true,
        };
        assert_eq!(all.bits(), 0b11_1111);
    }
}
