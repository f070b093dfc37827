//! Test support: the real vectors, and a self-made "AMD" chain an attacker (or a test) could
//! build, to re-sign reports whose fields a test wants to control.
#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bastion_attestation::report::{write_signature, REPORT_LEN, SIGNED_LEN};
use bastion_attestation::{
    oids, Generation, Policy, Tcb, TcbMinimum, TrustAnchors, Verdict, Verifier, VerifyError,
};
use p384::ecdsa::signature::Signer as _;
use rand_core::OsRng;
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::RsaPrivateKey;
use x509_cert::der::asn1::{BitString, OctetString, UtcTime};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{DateTime, Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

#[macro_export]
macro_rules! vector {
    ($path:literal) => {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/snp/",
            $path
        ))
        .expect(concat!("read vector ", $path))
    };
}

/// 2026-01-01T00:00:00Z: inside every vector certificate's validity.
pub fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

pub fn milan_report() -> Vec<u8> {
    hex::decode(
        String::from_utf8(vector!("virtee-sev/report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}
pub fn milan_vcek() -> Vec<u8> {
    vector!("virtee-sev/vcek_milan.der")
}
pub fn trustee_report() -> Vec<u8> {
    vector!("trustee/test-report.bin")
}
pub fn trustee_vcek() -> Vec<u8> {
    vector!("trustee/test-vcek.der")
}

pub const MILAN_MEASUREMENT: &str =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
pub const TRUSTEE_MEASUREMENT: &str =
    "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c";

pub fn m48(h: &str) -> [u8; 48] {
    hex::decode(h).unwrap().try_into().unwrap()
}

/// The REPORTED_TCB of both Milan vectors (bootloader 3, TEE 0, SNP 8, microcode 115).
pub fn milan_vector_tcb() -> TcbMinimum {
    TcbMinimum {
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
        fmc: 0,
    }
}

/// Safe defaults, both real measurements allowed, the vectors' TCB as the minimum (AMD's roots
/// refuse a policy without one).
pub fn vector_policy() -> Policy {
    let mut p = Policy::new(vec![m48(MILAN_MEASUREMENT), m48(TRUSTEE_MEASUREMENT)]);
    p.min_tcb = milan_vector_tcb();
    p
}

pub fn verify_amd(policy: Policy, report: &[u8], cert: &[u8]) -> Result<Verdict, VerifyError> {
    Verifier::new(policy, TrustAnchors::amd()).verify(report, cert, None, fixed_time())
}

/// A self-made ARK -> ASK -> VCEK chain (RSA-2048 CAs, RSASSA-PSS/SHA-384; P-384 VCEK).
pub struct FakeAmd {
    pub ark_der: Vec<u8>,
    pub ask_der: Vec<u8>,
    pub vcek_der: Vec<u8>,
    vcek_key: p384::ecdsa::SigningKey,
}

/// Two RSA keys, generated once per test binary (key generation is the slow part).
fn rsa_keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
            RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        )
    })
}

impl FakeAmd {
    /// A chain whose names copy AMD's for `generation` ("ARK-Milan", "SEV-Milan"), issuing a
    /// VCEK for `chip_id` at `tcb`.
    pub fn imitating(generation: Generation, chip_id: &[u8], tcb: Tcb) -> Self {
        let g = generation.name();
        Self::new(
            &format!("ARK-{g}"),
            &format!("SEV-{g}"),
            chip_id,
            tcb,
            generation.has_fmc(),
        )
    }

    pub fn new(ark_cn: &str, ask_cn: &str, chip_id: &[u8], tcb: Tcb, fmc: bool) -> Self {
        Self::with_key_kind(ark_cn, ask_cn, chip_id, tcb, fmc, None)
    }

    /// As [`FakeAmd::new`]; with `vlek_csp` the leaf is a VLEK for that cloud provider.
    pub fn with_key_kind(
        ark_cn: &str,
        ask_cn: &str,
        chip_id: &[u8],
        tcb: Tcb,
        fmc: bool,
        vlek_csp: Option<&str>,
    ) -> Self {
        let (ark_key, ask_key) = rsa_keys();
        let ark_name = format!("CN={ark_cn},O=Advanced Micro Devices,OU=Engineering,C=US");
        let ask_name = format!("CN={ask_cn},O=Advanced Micro Devices,OU=Engineering,C=US");
        let ark_der = issue(ark_key, &ark_name, &ark_name, rsa_spki(ark_key), 1, vec![]);
        let ask_der = issue(ark_key, &ark_name, &ask_name, rsa_spki(ask_key), 2, vec![]);
        let vcek_key = p384::ecdsa::SigningKey::random(&mut OsRng);
        let spki_der = vcek_key.verifying_key().to_public_key_der().unwrap();
        let vcek_spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).unwrap();
        let int = |v: u8| v.to_der().unwrap();
        let mut exts = vec![
            ext(oids::BOOTLOADER_SPL, int(tcb.bootloader)),
            ext(oids::TEE_SPL, int(tcb.tee)),
            ext(oids::SNP_SPL, int(tcb.snp)),
            ext(oids::MICROCODE_SPL, int(tcb.microcode)),
        ];
        // A VLEK carries the cloud provider's id (cspID) instead of the chip's (hwID).
        match vlek_csp {
            Some(csp) => exts.push(ext(
                oids::CSP_ID,
                x509_cert::der::asn1::Ia5StringRef::new(csp)
                    .unwrap()
                    .to_der()
                    .unwrap(),
            )),
            None => exts.push(ext(oids::HW_ID, chip_id.to_vec())),
        }
        if fmc {
            exts.push(ext(oids::FMC_SPL, int(tcb.fmc.unwrap_or(0))));
        }
        let vcek_name = match vlek_csp {
            Some(_) => "CN=SEV-VLEK,O=Advanced Micro Devices,OU=Engineering,C=US",
            None => "CN=SEV-VCEK,O=Advanced Micro Devices,OU=Engineering,C=US",
        };
        let vcek_der = issue(ask_key, &ask_name, vcek_name, vcek_spki, 3, exts);
        FakeAmd {
            ark_der,
            ask_der,
            vcek_der,
            vcek_key,
        }
    }

    /// Signs `report` in place with the self-made VCEK.
    pub fn sign(&self, report: &mut [u8]) {
        let report: &mut [u8; REPORT_LEN] = report.try_into().unwrap();
        let sig: p384::ecdsa::Signature = self.vcek_key.sign(&report[..SIGNED_LEN]);
        let (r, s) = sig.split_bytes();
        write_signature(report, &r.into(), &s.into());
    }

    pub fn simulated_verifier(&self, policy: Policy) -> Verifier {
        Verifier::new(
            policy,
            TrustAnchors::simulated(&self.ark_der, &self.ask_der).unwrap(),
        )
    }
}

fn ext(oid: &str, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical: false,
        extn_value: OctetString::new(value).unwrap(),
    }
}

fn rsa_spki(key: &RsaPrivateKey) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_der(key.to_public_key().to_public_key_der().unwrap().as_bytes())
        .unwrap()
}

fn issue(
    signer: &RsaPrivateKey,
    issuer: &str,
    subject: &str,
    spki: SubjectPublicKeyInfoOwned,
    serial: u8,
    extensions: Vec<Extension>,
) -> Vec<u8> {
    let t = |y| {
        Time::UtcTime(UtcTime::from_date_time(DateTime::new(y, 1, 1, 0, 0, 0).unwrap()).unwrap())
    };
    let algorithm = rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha384>().unwrap();
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).unwrap(),
        signature: algorithm.clone(),
        issuer: Name::from_str(issuer).unwrap(),
        validity: Validity {
            not_before: t(2020),
            not_after: t(2045),
        },
        subject: Name::from_str(subject).unwrap(),
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: if extensions.is_empty() {
            None
        } else {
            Some(extensions)
        },
    };
    let key = rsa::pss::BlindedSigningKey::<sha2::Sha384>::new(signer.clone());
    let sig = key.sign_with_rng(&mut OsRng, &tbs.to_der().unwrap());
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&sig.to_bytes()).unwrap(),
    };
    cert.to_der().unwrap()
}

/// The Milan TCB of the real vectors (bootloader 3, tee 0, snp 8, microcode 0x73).
pub fn milan_tcb() -> Tcb {
    Tcb {
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 0x73,
        fmc: None,
    }
}
