//! The SEV-SNP hardware path without hardware: a fake guest device replays the real Milan
//! report and VCEK from shared/vectors/snp, and the real verifier, with AMD's pinned roots,
//! judges what `SnpGuest` hands out. The fake records every request, so the tests also check
//! what the node asks the Secure Processor for.

use std::sync::{Arc, Mutex};

use bastion_attestation::guest::{
    CertificateSource, GuestDevice, GuestError, GuestReport, HostCertificate, HostCertificateKind,
    KeyRequest, KeyRoot, SnpGuest, SEALING_SALT,
};
use bastion_attestation::tls::{Attester, Binding, Role};
use bastion_attestation::{EvidenceError, TrustAnchors, Verifier, VerifyError};
use x509_cert::der::{Decode, EncodePem};

mod common;
use common::*;

/// What the node asked the device for.
#[derive(Debug, Clone, PartialEq)]
enum Request {
    ExtReport([u8; 64]),
    Report([u8; 64]),
    Key(KeyRequest),
}

/// Replays one captured report (whatever REPORT_DATA is asked for: the signature covers the
/// captured one) and, if set, a host certificate table.
struct FakeDevice {
    report: Vec<u8>,
    table: Option<Vec<HostCertificate>>,
    log: Arc<Mutex<Vec<Request>>>,
}

impl FakeDevice {
    fn new(
        report: Vec<u8>,
        table: Option<Vec<HostCertificate>>,
    ) -> (Self, Arc<Mutex<Vec<Request>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let device = FakeDevice {
            report,
            table,
            log: Arc::clone(&log),
        };
        (device, log)
    }
}

/// The key a fake chip derives: a function of every request field, so a changed field shows.
fn fake_chip_key(r: &KeyRequest) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"fake chip secret");
    h.update([u8::from(r.root == KeyRoot::Vmrk)]);
    h.update(r.mix.bits().to_le_bytes());
    h.update(r.vmpl.to_le_bytes());
    h.update(r.guest_svn.to_le_bytes());
    h.update(r.tcb_version.to_le_bytes());
    h.finalize().into()
}

impl GuestDevice for FakeDevice {
    fn get_ext_report(&mut self, report_data: [u8; 64]) -> Result<GuestReport, GuestError> {
        self.log
            .lock()
            .unwrap()
            .push(Request::ExtReport(report_data));
        Ok(GuestReport {
            report: self.report.clone(),
            certificates: self.table.clone(),
        })
    }

    fn get_report(&mut self, report_data: [u8; 64]) -> Result<Vec<u8>, GuestError> {
        self.log.lock().unwrap().push(Request::Report(report_data));
        Ok(self.report.clone())
    }

    fn derive_key(&mut self, request: &KeyRequest) -> Result<[u8; 32], GuestError> {
        self.log.lock().unwrap().push(Request::Key(*request));
        Ok(fake_chip_key(request))
    }
}

/// A host table as AMD's tooling installs it: ARK, ASK and the VCEK.
fn host_table(vcek: Vec<u8>) -> Vec<HostCertificate> {
    let chain = vector!("virtee-sev/cert_chain_milan");
    vec![
        HostCertificate {
            kind: HostCertificateKind::Ask,
            data: chain.clone(),
        },
        HostCertificate {
            kind: HostCertificateKind::Vcek,
            data: vcek,
        },
        HostCertificate {
            kind: HostCertificateKind::Ark,
            data: chain,
        },
    ]
}

fn amd_verifier() -> Verifier {
    Verifier::try_new(vector_policy(), TrustAnchors::amd()).unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("guest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn evidence_with_the_host_tables_vcek_verifies_against_amds_roots() {
    let (device, log) = FakeDevice::new(milan_report(), Some(host_table(milan_vcek())));
    let tee = SnpGuest::new(device, None).unwrap();
    assert_eq!(tee.certificate_source(), &CertificateSource::HostTable);

    let asked = [0x5a; 64];
    let (report, vcek) = tee.attest_report_data(&asked).unwrap();
    // The extended request (the table follows TCB updates), carrying exactly our data.
    assert_eq!(log.lock().unwrap().last(), Some(&Request::ExtReport(asked)));
    assert_eq!(vcek, milan_vcek());
    let verdict = amd_verifier()
        .verify(&report, &vcek, None, fixed_time())
        .unwrap();
    assert!(!verdict.simulated);
    assert_eq!(hex::encode(verdict.measurement), MILAN_MEASUREMENT);

    // The node's start-up self check reads its own measurement and TCB the same way.
    let own = tee.self_verify(TrustAnchors::amd(), fixed_time()).unwrap();
    assert_eq!(hex::encode(own.measurement), MILAN_MEASUREMENT);
    assert_eq!(
        (
            own.reported_tcb.bootloader,
            own.reported_tcb.snp,
            own.reported_tcb.microcode
        ),
        (3, 8, 115)
    );
}

#[test]
fn without_a_host_table_the_configured_vcek_file_is_used() {
    let dir = scratch("file");
    let file = dir.join("chip-vcek.der");
    std::fs::write(&file, milan_vcek()).unwrap();
    let (device, log) = FakeDevice::new(milan_report(), None);
    let tee = SnpGuest::new(device, Some(&file)).unwrap();
    assert_eq!(
        tee.certificate_source(),
        &CertificateSource::File(file.clone())
    );

    let asked = [0x11; 64];
    let (report, vcek) = tee.attest_report_data(&asked).unwrap();
    // The plain request: the table is known to be absent.
    assert_eq!(log.lock().unwrap().last(), Some(&Request::Report(asked)));
    amd_verifier()
        .verify(&report, &vcek, None, fixed_time())
        .unwrap();
}

#[test]
fn a_directory_holding_vcek_pem_is_read_and_converted_to_der() {
    let dir = scratch("dir");
    let pem = x509_cert::Certificate::from_der(&milan_vcek())
        .unwrap()
        .to_pem(x509_cert::der::pem::LineEnding::LF)
        .unwrap();
    std::fs::write(dir.join("vcek.pem"), pem).unwrap();
    let (device, _) = FakeDevice::new(milan_report(), Some(Vec::new()));
    let tee = SnpGuest::new(device, Some(&dir)).unwrap();
    // Peers get DER, whatever the operator installed.
    assert_eq!(tee.identity_certificate(), milan_vcek().as_slice());
    let (report, vcek) = tee.attest_report_data(&[0; 64]).unwrap();
    amd_verifier()
        .verify(&report, &vcek, None, fixed_time())
        .unwrap();
}

#[test]
fn no_table_and_no_file_is_refused_by_name() {
    let (device, _) = FakeDevice::new(milan_report(), None);
    let err = SnpGuest::new(device, None).unwrap_err();
    assert!(
        matches!(err, GuestError::NoSigningCertificate { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("VCEK"), "{err}");
}

#[test]
fn unusable_certificate_files_are_refused_by_name() {
    let dir = scratch("bad");
    // A directory without the file.
    let (device, _) = FakeDevice::new(milan_report(), None);
    let err = SnpGuest::new(device, Some(&dir)).unwrap_err();
    assert!(matches!(err, GuestError::CertificateFile { .. }), "{err}");
    assert!(err.to_string().contains("vcek.der"), "{err}");
    // Not a certificate.
    let junk = dir.join("vcek.der");
    std::fs::write(&junk, b"not a certificate").unwrap();
    let (device, _) = FakeDevice::new(milan_report(), None);
    let err = SnpGuest::new(device, Some(&junk)).unwrap_err();
    assert!(matches!(err, GuestError::CertificateFile { .. }), "{err}");
    // Missing.
    let (device, _) = FakeDevice::new(milan_report(), None);
    let err = SnpGuest::new(device, Some(&dir.join("absent.der"))).unwrap_err();
    assert!(matches!(err, GuestError::CertificateFile { .. }), "{err}");
}

#[test]
fn a_garbled_report_from_the_device_is_an_error_not_evidence() {
    let (device, _) = FakeDevice::new(vec![0; 100], Some(host_table(milan_vcek())));
    let err = SnpGuest::new(device, None).unwrap_err();
    assert!(matches!(err, GuestError::Report(_)), "{err}");
}

#[test]
fn a_flipped_byte_in_the_devices_report_fails_verification() {
    let mut report = milan_report();
    report[0x90] ^= 1; // in MEASUREMENT, under the signature
    let (device, _) = FakeDevice::new(report, Some(host_table(milan_vcek())));
    let tee = SnpGuest::new(device, None).unwrap();
    let (report, vcek) = tee.attest_report_data(&[0; 64]).unwrap();
    let err = amd_verifier()
        .verify(&report, &vcek, None, fixed_time())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Evidence(EvidenceError::Signature { .. })),
        "{err:?}"
    );
    // And the node's own self check catches it at start.
    assert!(tee.self_verify(TrustAnchors::amd(), fixed_time()).is_err());
}

#[test]
fn attest_puts_the_tls_bindings_report_data_in_the_request() {
    let (device, log) = FakeDevice::new(milan_report(), Some(host_table(milan_vcek())));
    let tee = SnpGuest::new(device, None).unwrap();
    let binding = Binding {
        role: Role::Server,
        spki_der: vec![1, 2, 3],
        exporter: [7; bastion_attestation::tls::EXPORTER_LEN],
    };
    let evidence = tee.attest(&binding).unwrap();
    assert_eq!(
        log.lock().unwrap().last(),
        Some(&Request::ExtReport(binding.report_data()))
    );
    assert_eq!(evidence.binding, binding);
    assert_eq!(evidence.vcek_der, milan_vcek());
    // The real report's REPORT_DATA is the captured one, so a peer expecting this binding
    // refuses it: the binding check is what stands between a replayed report and a session.
    let err = amd_verifier()
        .verify(
            &evidence.report,
            &evidence.vcek_der,
            Some(&binding.report_data()),
            fixed_time(),
        )
        .unwrap_err();
    assert_eq!(err.code(), "policy.report_data");
}

#[test]
fn a_host_table_that_loses_the_vcek_after_start_is_an_error() {
    struct Fickle(FakeDevice, usize);
    impl GuestDevice for Fickle {
        fn get_ext_report(&mut self, d: [u8; 64]) -> Result<GuestReport, GuestError> {
            self.1 += 1;
            let mut r = self.0.get_ext_report(d)?;
            if self.1 > 1 {
                r.certificates = None;
            }
            Ok(r)
        }
        fn get_report(&mut self, d: [u8; 64]) -> Result<Vec<u8>, GuestError> {
            self.0.get_report(d)
        }
        fn derive_key(&mut self, r: &KeyRequest) -> Result<[u8; 32], GuestError> {
            self.0.derive_key(r)
        }
    }
    let (device, _) = FakeDevice::new(milan_report(), Some(host_table(milan_vcek())));
    let tee = SnpGuest::new(Fickle(device, 0), None).unwrap();
    let err = tee.attest_report_data(&[0; 64]).unwrap_err();
    assert!(err.reason.contains("no longer holds"), "{}", err.reason);
}

#[test]
fn sealing_keys_come_from_msg_key_req_bound_to_measurement_policy_and_svn() {
    // The trustee vector has an ID block and GUEST_SVN 4, so the SVN field is visible.
    let dir = scratch("seal");
    let file = dir.join("vcek.der");
    std::fs::write(&file, trustee_vcek()).unwrap();
    let (device, log) = FakeDevice::new(trustee_report(), None);
    let tee = SnpGuest::new(device, Some(&file)).unwrap();

    let checkpoint = tee.sealing_key(b"bastion-checkpoint-v1").unwrap();
    let request = match log.lock().unwrap().last() {
        Some(Request::Key(r)) => *r,
        other => panic!("expected a key request, got {other:?}"),
    };
    assert_eq!(request.root, KeyRoot::Vcek);
    assert!(request.mix.measurement && request.mix.guest_policy && request.mix.guest_svn);
    // Not the TCB (sealed state survives firmware updates), nor the ID block's ids.
    assert!(!request.mix.tcb_version && !request.mix.image_id && !request.mix.family_id);
    assert_eq!(request.mix.bits(), 0b1_1001);
    assert_eq!(request.guest_svn, 4);
    assert_eq!(request.vmpl, tee.identity().vmpl());
    assert_eq!(request, tee.sealing_request());

    // HKDF-SHA256 of the chip's key with the label: each use its own key, all reproducible.
    let mut expected = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(SEALING_SALT), &fake_chip_key(&request))
        .expand(b"bastion-checkpoint-v1", &mut expected)
        .unwrap();
    assert_eq!(checkpoint, expected);
    assert_ne!(
        checkpoint,
        fake_chip_key(&request),
        "the raw derived key is never used"
    );
    let shard = tee.sealing_key(b"bastion-shard-v1").unwrap();
    assert_ne!(checkpoint, shard);
    assert_eq!(
        tee.sealing_key(b"bastion-checkpoint-v1").unwrap(),
        checkpoint
    );
}

#[test]
fn a_host_refusing_the_extended_request_is_no_obstacle_with_a_configured_vcek() {
    struct NoExt(FakeDevice);
    impl GuestDevice for NoExt {
        fn get_ext_report(&mut self, _: [u8; 64]) -> Result<GuestReport, GuestError> {
            Err(GuestError::Firmware {
                operation: "extended report request",
                reason: "VMM error: invalid guest request".into(),
            })
        }
        fn get_report(&mut self, d: [u8; 64]) -> Result<Vec<u8>, GuestError> {
            self.0.get_report(d)
        }
        fn derive_key(&mut self, r: &KeyRequest) -> Result<[u8; 32], GuestError> {
            self.0.derive_key(r)
        }
    }
    // Without a file the firmware's refusal is the error, by name.
    let (device, _) = FakeDevice::new(milan_report(), None);
    let err = SnpGuest::new(NoExt(device), None).unwrap_err();
    assert!(matches!(err, GuestError::Firmware { .. }), "{err}");
    // With one, the plain request serves every report.
    let dir = scratch("noext");
    let file = dir.join("vcek.der");
    std::fs::write(&file, milan_vcek()).unwrap();
    let (device, log) = FakeDevice::new(milan_report(), None);
    let tee = SnpGuest::new(NoExt(device), Some(&file)).unwrap();
    let (report, vcek) = tee.attest_report_data(&[3; 64]).unwrap();
    assert_eq!(log.lock().unwrap().last(), Some(&Request::Report([3; 64])));
    amd_verifier()
        .verify(&report, &vcek, None, fixed_time())
        .unwrap();
}
