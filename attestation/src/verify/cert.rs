//! The VCEK/VLEK certificate: decoded into what the verifier compares with the report.
//!
//! Extension OIDs are from AMD's "Versioned Chip Endorsement Key (VCEK) Certificate and KDS
//! Interface Specification" (57230) and the VLEK specification (58369).

use std::time::SystemTime;

use x509_cert::der::asn1::{Ia5StringRef, OctetStringRef, PrintableStringRef, Utf8StringRef};
use x509_cert::der::{Decode, DecodePem, Encode};
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::error::{ChainError, Input, MalformedError};
use crate::report::{Generation, SigningKeyKind, Tcb};

/// AMD's X.509 extension OIDs in VCEK and VLEK certificates.
pub mod oids {
    /// structVersion.
    pub const STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
    /// productName, an IA5String such as "Milan-B0".
    pub const PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
    /// blSPL: bootloader SVN the key was issued for.
    pub const BOOTLOADER_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
    /// teeSPL: PSP OS SVN.
    pub const TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
    /// snpSPL: SNP firmware SVN.
    pub const SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
    /// ucodeSPL: microcode patch level.
    pub const MICROCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
    /// fmcSPL: FMC SVN (Turin and later).
    pub const FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
    /// hwID: the chip id (VCEK only). 64 bytes (8 on Turin), raw or wrapped in a DER OCTET STRING.
    pub const HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
    /// cspID: the cloud provider (VLEK only).
    pub const CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";
}

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const SECP384R1: &str = "1.3.132.0.34";
const COMMON_NAME: &str = "2.5.4.3";

/// Parses a certificate given as DER or PEM.
pub(crate) fn parse_certificate(bytes: &[u8], input: Input) -> Result<Certificate, MalformedError> {
    if bytes.is_empty() {
        return Err(MalformedError::Empty { input });
    }
    let trimmed = bytes.trim_ascii_start();
    let result = if trimmed.starts_with(b"-----BEGIN") {
        Certificate::from_pem(trimmed).map_err(|e| e.to_string())
    } else {
        Certificate::from_der(bytes).map_err(|e| e.to_string())
    };
    result.map_err(|reason| MalformedError::Certificate { input, reason })
}

/// The common name of an X.509 name, if it has one in a string type we read.
pub(crate) fn common_name(name: &Name) -> Option<String> {
    name.0.iter().flat_map(|rdn| rdn.0.iter()).find_map(|atv| {
        if atv.oid.to_string() != COMMON_NAME {
            return None;
        }
        let v = &atv.value;
        v.decode_as::<Utf8StringRef<'_>>()
            .map(|s| s.as_str().to_string())
            .or_else(|_| {
                v.decode_as::<PrintableStringRef<'_>>()
                    .map(|s| s.as_str().to_string())
            })
            .or_else(|_| {
                v.decode_as::<Ia5StringRef<'_>>()
                    .map(|s| s.as_str().to_string())
            })
            .ok()
    })
}

/// Checks a certificate's validity period against `at`.
pub(crate) fn check_validity(
    cert: &Certificate,
    label: &'static str,
    at: SystemTime,
) -> Result<(), ChainError> {
    let v = &cert.tbs_certificate.validity;
    let not_before = v.not_before.to_system_time();
    let not_after = v.not_after.to_system_time();
    if at < not_before {
        return Err(ChainError::NotYetValid {
            cert: label,
            not_before,
            at,
        });
    }
    if at > not_after {
        return Err(ChainError::Expired {
            cert: label,
            not_after,
            at,
        });
    }
    Ok(())
}

/// A decoded (not verified) VCEK or VLEK certificate.
#[derive(Debug, Clone)]
pub struct SigningCertificate {
    pub(crate) x509: Certificate,
    pub(crate) kind: SigningKeyKind,
    /// The chip id from hwID (VCEK): 64 bytes, or 8 on Turin.
    pub(crate) hw_id: Option<Vec<u8>>,
    /// The generation the issuer name or product name points at.
    pub(crate) generation_hint: Option<Generation>,
    /// The SEC1 uncompressed point, checked to be on P-384 when parsed.
    sec1: Vec<u8>,
}

impl SigningCertificate {
    /// Decodes a VCEK or VLEK from DER or PEM; checks its key is P-384 and its hwID decodes.
    pub fn parse(bytes: &[u8]) -> Result<Self, MalformedError> {
        let x509 = parse_certificate(bytes, Input::SigningCertificate)?;
        let kind = if extension(&x509, oids::HW_ID).is_some() {
            SigningKeyKind::Vcek
        } else if extension(&x509, oids::CSP_ID).is_some() {
            SigningKeyKind::Vlek
        } else {
            return Err(MalformedError::UnknownSigningCertificate);
        };
        let hw_id = match kind {
            SigningKeyKind::Vcek => Some(hw_id(
                extension(&x509, oids::HW_ID).expect("checked above"),
            )?),
            SigningKeyKind::Vlek => None,
        };
        let generation_hint = common_name(&x509.tbs_certificate.issuer)
            .and_then(|cn| generation_in(&cn))
            .or_else(|| {
                let raw = extension(&x509, oids::PRODUCT_NAME)?;
                let name = Ia5StringRef::from_der(raw).ok()?;
                generation_in(name.as_str())
            });
        let sec1 = p384_key(&x509)?;
        Ok(SigningCertificate {
            x509,
            kind,
            hw_id,
            generation_hint,
            sec1,
        })
    }

    /// The public key as a SEC1 uncompressed P-384 point.
    pub fn public_key_sec1(&self) -> &[u8] {
        &self.sec1
    }

    /// VCEK or VLEK.
    pub fn kind(&self) -> SigningKeyKind {
        self.kind
    }

    /// The chip id in the hwID extension (VCEK only): 64 bytes, or 8 on Turin.
    pub fn hw_id(&self) -> Option<&[u8]> {
        self.hw_id.as_deref()
    }

    /// The generation named by the issuer ("SEV-Milan") or product name, if any. Unverified.
    pub fn named_generation(&self) -> Option<Generation> {
        self.generation_hint
    }

    /// notBefore and notAfter.
    pub fn validity(&self) -> (SystemTime, SystemTime) {
        let v = &self.x509.tbs_certificate.validity;
        (v.not_before.to_system_time(), v.not_after.to_system_time())
    }

    /// The TCB this key was issued for, read from its extensions for `generation`.
    pub fn tcb(&self, generation: Generation) -> Result<Tcb, MalformedError> {
        let spl = |oid: &'static str, name: &'static str| -> Result<u8, MalformedError> {
            let raw =
                extension(&self.x509, oid).ok_or(MalformedError::MissingExtension { oid, name })?;
            u8::from_der(raw).map_err(|e| MalformedError::BadExtension {
                oid,
                name,
                reason: e.to_string(),
            })
        };
        Ok(Tcb {
            bootloader: spl(oids::BOOTLOADER_SPL, "blSPL")?,
            tee: spl(oids::TEE_SPL, "teeSPL")?,
            snp: spl(oids::SNP_SPL, "snpSPL")?,
            microcode: spl(oids::MICROCODE_SPL, "ucodeSPL")?,
            fmc: if generation.has_fmc() {
                Some(spl(oids::FMC_SPL, "fmcSPL")?)
            } else {
                None
            },
        })
    }

    /// The issuer name (RFC 4514).
    pub fn issuer(&self) -> String {
        self.x509.tbs_certificate.issuer.to_string()
    }

    /// The subject name (RFC 4514).
    pub fn subject(&self) -> String {
        self.x509.tbs_certificate.subject.to_string()
    }
}

/// "SEV-Milan", "SEV-VLEK-Genoa", "Turin", "Milan-B0" -> the generation named in it.
fn generation_in(name: &str) -> Option<Generation> {
    Generation::ALL
        .into_iter()
        .find(|g| name.split('-').any(|part| part == g.name()))
}

/// The raw extnValue of the extension `oid`, if present.
pub(crate) fn extension<'a>(cert: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id.to_string() == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// The hwID value: AMD has issued it both as the raw chip id (64 bytes, 8 on Turin) in the
/// extension value, and wrapped in a DER OCTET STRING. Lengths tell them apart: raw is 8 or 64
/// bytes, wrapped is 10 or 66.
fn hw_id(raw: &[u8]) -> Result<Vec<u8>, MalformedError> {
    let bad = |reason: String| MalformedError::BadExtension {
        oid: oids::HW_ID,
        name: "hwID",
        reason,
    };
    match raw.len() {
        8 | 64 => Ok(raw.to_vec()),
        10 | 66 => {
            let inner = OctetStringRef::from_der(raw)
                .map_err(|e| bad(format!("not a DER OCTET STRING: {e}")))?;
            match inner.as_bytes().len() {
                8 | 64 => Ok(inner.as_bytes().to_vec()),
                n => Err(bad(format!(
                    "wrapped chip id has {n} bytes, expected 8 or 64"
                ))),
            }
        }
        n => Err(bad(format!(
            "{n} bytes, expected a 64- or 8-byte chip id, raw or DER-wrapped"
        ))),
    }
}

fn p384_key(cert: &Certificate) -> Result<Vec<u8>, MalformedError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let bad = |reason: String| MalformedError::SigningKeyType { reason };
    if spki.algorithm.oid.to_string() != ID_EC_PUBLIC_KEY {
        return Err(bad(format!(
            "algorithm {} instead of id-ecPublicKey",
            spki.algorithm.oid
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
        .ok_or_else(|| bad("EC parameters are not a named curve".into()))?;
    if curve.to_string() != SECP384R1 {
        return Err(bad(format!("curve {curve} instead of secp384r1")));
    }
    let point = spki.subject_public_key.raw_bytes();
    p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
        .map_err(|e| bad(format!("invalid point: {e}")))?;
    if point.first() != Some(&0x04) {
        return Err(bad("point is not in uncompressed form".into()));
    }
    Ok(point.to_vec())
}

/// DER of a certificate, for comparing with pinned ones.
pub(crate) fn der(cert: &Certificate) -> Vec<u8> {
    cert.to_der().expect("a decoded certificate re-encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hw_id_both_encodings() {
        let chip: Vec<u8> = (0..64).collect();
        assert_eq!(hw_id(&chip).unwrap(), chip);
        let mut wrapped = vec![0x04, 0x40];
        wrapped.extend_from_slice(&chip);
        assert_eq!(hw_id(&wrapped).unwrap(), chip);
        assert!(hw_id(&chip[..10]).is_err());
        assert!(
            hw_id(&[0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap() == vec![1, 2, 3, 4, 5, 6, 7, 8]
        );
    }

    #[test]
    fn generation_names() {
        assert_eq!(generation_in("SEV-Milan"), Some(Generation::Milan));
        assert_eq!(generation_in("SEV-VLEK-Genoa"), Some(Generation::Genoa));
        assert_eq!(generation_in("Milan-B0"), Some(Generation::Milan));
        assert_eq!(generation_in("Turin"), Some(Generation::Turin));
        assert_eq!(generation_in("SEV-VCEK"), None);
    }
}
