//! The simulated AMD side: ARK and ASK keys and the certificates they issue.
//!
//! Certificates mirror AMD's (compare `shared/vectors/snp/amd-roots/milan/*.pem`): RSA-4096
//! keys in `rsaEncryption` SPKIs, signatures RSASSA-PSS with SHA-384, MGF1-SHA-384 and a
//! 48-byte salt, ARK self-signed, ASK a CA with path length 0, VCEK signed by the ASK. The
//! names say SIMULATED so a human reading a certificate cannot mistake it for AMD's.

use std::str::FromStr;

use der::asn1::{BitString, OctetString, UtcTime};
use der::{DateTime, Decode, Encode};
use rand_core::OsRng;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::pss::BlindedSigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::RsaPrivateKey;
use sha2::Sha384;
use x509_cert::der;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};
use zeroize::Zeroizing;

use super::SimError;

/// AMD's ARK and ASK are RSA-4096.
const RSA_BITS: usize = 4096;

const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// Subject of the simulated ARK (AMD's reads `CN=ARK-Milan`).
pub(crate) const ARK_NAME: &str =
    "CN=ARK-Simulated,O=BastionAI SIMULATED TEE - not AMD,OU=Engineering,C=US";
/// Subject of the simulated ASK (AMD's reads `CN=SEV-Milan`).
pub(crate) const ASK_NAME: &str =
    "CN=SEV-Simulated,O=BastionAI SIMULATED TEE - not AMD,OU=Engineering,C=US";

/// The ARK and ASK private keys and their certificates.
pub(crate) struct Roots {
    pub(crate) ark_key: RsaPrivateKey,
    pub(crate) ask_key: RsaPrivateKey,
    pub(crate) ark_der: Vec<u8>,
    pub(crate) ask_der: Vec<u8>,
}

impl Roots {
    /// Generates both RSA-4096 keys (seconds each) and issues their certificates.
    pub(crate) fn generate() -> Result<Self, SimError> {
        let ark_key = RsaPrivateKey::new(&mut OsRng, RSA_BITS)
            .map_err(|e| SimError::crypto("generate the ARK key", e))?;
        let ask_key = RsaPrivateKey::new(&mut OsRng, RSA_BITS)
            .map_err(|e| SimError::crypto("generate the ASK key", e))?;
        Self::from_keys(ark_key, ask_key)
    }

    /// Issues fresh ARK and ASK certificates for existing keys.
    pub(crate) fn from_keys(
        ark_key: RsaPrivateKey,
        ask_key: RsaPrivateKey,
    ) -> Result<Self, SimError> {
        let ark_spki = rsa_spki(&ark_key)?;
        let ask_spki = rsa_spki(&ask_key)?;
        let ark_der = issue(
            &ark_key,
            ARK_NAME,
            ARK_NAME,
            ark_spki,
            &[0x01, 0x00, 0x00],
            ca_extensions(None)?,
        )?;
        let ask_der = issue(
            &ark_key,
            ARK_NAME,
            ASK_NAME,
            ask_spki,
            &[0x01, 0x00, 0x01],
            ca_extensions(Some(0))?,
        )?;
        Ok(Self {
            ark_key,
            ask_key,
            ark_der,
            ask_der,
        })
    }

    /// PKCS#8 DER of one of the private keys, for saving.
    pub(crate) fn key_pkcs8(key: &RsaPrivateKey) -> Result<Zeroizing<Vec<u8>>, SimError> {
        let doc = key
            .to_pkcs8_der()
            .map_err(|e| SimError::crypto("encode an RSA key as PKCS#8", e))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Parses a PKCS#8 RSA key saved by [`Roots::key_pkcs8`].
    pub(crate) fn key_from_pkcs8(der: &[u8]) -> Result<RsaPrivateKey, String> {
        let key = RsaPrivateKey::from_pkcs8_der(der).map_err(|e| e.to_string())?;
        if rsa::traits::PublicKeyParts::size(&key) * 8 != RSA_BITS {
            return Err(format!("expected an RSA-{RSA_BITS} key"));
        }
        Ok(key)
    }
}

/// The `rsaEncryption` SubjectPublicKeyInfo of an RSA key.
fn rsa_spki(key: &RsaPrivateKey) -> Result<SubjectPublicKeyInfoOwned, SimError> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| SimError::crypto("encode an RSA public key", e))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes())
        .map_err(|e| SimError::crypto("decode an RSA public key", e))
}

/// Checks that a certificate's public key is the public half of `key`.
pub(crate) fn cert_matches_key(cert_der: &[u8], key: &RsaPrivateKey) -> Result<(), String> {
    let cert = Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
    let want = rsa_spki(key).map_err(|e| e.to_string())?;
    if cert.tbs_certificate.subject_public_key_info != want {
        return Err("the certificate's public key is not the saved private key's".into());
    }
    Ok(())
}

/// Basic constraints (critical, CA) and key usage (critical, certificate and CRL signing).
fn ca_extensions(path_len: Option<u8>) -> Result<Vec<Extension>, SimError> {
    let bc = BasicConstraints {
        ca: true,
        path_len_constraint: path_len,
    };
    let ku = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign);
    Ok(vec![
        extension(OID_BASIC_CONSTRAINTS, true, encode(&bc)?)?,
        extension(OID_KEY_USAGE, true, encode(&ku)?)?,
    ])
}

pub(crate) fn encode(value: &impl Encode) -> Result<Vec<u8>, SimError> {
    value
        .to_der()
        .map_err(|e| SimError::crypto("DER-encode a certificate field", e))
}

pub(crate) fn extension(
    oid: ObjectIdentifier,
    critical: bool,
    value: Vec<u8>,
) -> Result<Extension, SimError> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value)
            .map_err(|e| SimError::crypto("encode an extension", e))?,
    })
}

/// A fixed validity, 2020-01-01 to 2049-12-31, so tests with a fixed clock and chains saved
/// long ago both keep working (AMD's ARK runs 25 years, its VCEKs 7).
fn validity() -> Result<Validity, SimError> {
    let t = |y, mo, d, h, mi, s| {
        DateTime::new(y, mo, d, h, mi, s)
            .and_then(UtcTime::from_date_time)
            .map(Time::UtcTime)
            .map_err(|e| SimError::crypto("encode a validity date", e))
    };
    Ok(Validity {
        not_before: t(2020, 1, 1, 0, 0, 0)?,
        not_after: t(2049, 12, 31, 23, 59, 59)?,
    })
}

/// Builds and signs one certificate with `signer` (RSASSA-PSS, SHA-384, 48-byte salt).
pub(crate) fn issue(
    signer: &RsaPrivateKey,
    issuer: &str,
    subject: &str,
    spki: SubjectPublicKeyInfoOwned,
    serial: &[u8],
    extensions: Vec<Extension>,
) -> Result<Vec<u8>, SimError> {
    let name = |s: &str| Name::from_str(s).map_err(|e| SimError::crypto("encode a name", e));
    // BlindedSigningKey: RSA blinding, so the private-key operation's timing does not depend
    // on the key (the simulated keys are not valuable, but the habit is cheap).
    let signing_key = BlindedSigningKey::<Sha384>::new(signer.clone());
    let algorithm = rsa::pss::get_default_pss_signature_algo_id::<Sha384>()
        .map_err(|e| SimError::crypto("encode the RSASSA-PSS algorithm identifier", e))?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(serial)
            .map_err(|e| SimError::crypto("encode a serial number", e))?,
        signature: algorithm.clone(),
        issuer: name(issuer)?,
        validity: validity()?,
        subject: name(subject)?,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = encode(&tbs)?;
    let signature = signing_key
        .try_sign_with_rng(&mut OsRng, &tbs_der)
        .map_err(|e| SimError::crypto("sign a certificate", e))?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature.to_bytes())
            .map_err(|e| SimError::crypto("encode a signature", e))?,
    };
    encode(&cert)
}
