//! The receipt key: ECDSA P-256 with SHA-256, made fresh inside the coordinator's TEE for one
//! receipt and bound to it by an attestation report.
//!
//! ```text
//! REPORT_DATA = SHA-512("bastion-ai/receipt-key/v1" || u64be(len(spki)) || spki)
//! ```
//!
//! `spki` is the key's SubjectPublicKeyInfo DER (RFC 5480: id-ecPublicKey, prime256v1, the
//! uncompressed point). The label differs from the TLS binding's (`bastion-ai/tls-key/v1`)
//! from its twelfth byte on, so neither kind of report can stand in for the other. The private
//! key never leaves the process and is dropped once the receipt is signed.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::error::ReceiptError;

/// Domain label hashed first into the receipt key's REPORT_DATA.
pub const KEY_LABEL: &[u8] = b"bastion-ai/receipt-key/v1";

/// The DER of a P-256 SubjectPublicKeyInfo up to the point: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }, for a 65-byte point.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// REPORT_DATA that binds `spki` as a receipt key.
pub fn key_report_data(spki: &[u8]) -> [u8; 64] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
    ctx.update(KEY_LABEL);
    ctx.update(&(spki.len() as u64).to_be_bytes());
    ctx.update(spki);
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-512 is 64 bytes")
}

/// A fresh signing key for one receipt.
pub(crate) struct ReceiptKey {
    pair: EcdsaKeyPair,
    spki: Vec<u8>,
    rng: SystemRandom,
}

impl ReceiptKey {
    /// A new key from the system's CSPRNG.
    pub(crate) fn generate() -> Result<Self, ReceiptError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| ReceiptError::Crypto("generating a P-256 key failed".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| ReceiptError::Crypto(format!("the new P-256 key does not load: {e}")))?;
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        Ok(ReceiptKey { pair, spki, rng })
    }

    /// The public key, SubjectPublicKeyInfo DER.
    pub(crate) fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// An ASN.1 DER ECDSA signature over SHA-256 of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ReceiptError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| ReceiptError::Crypto("signing failed".into()))
    }
}

/// The uncompressed point of a P-256 SubjectPublicKeyInfo, refusing any other key or
/// encoding.
pub(crate) fn point(spki: &[u8]) -> Result<&[u8], ReceiptError> {
    let point = spki
        .strip_prefix(&SPKI_PREFIX[..])
        .ok_or_else(|| ReceiptError::Key {
            reason: "not an ECDSA P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1)".into(),
        })?;
    if point.len() != 65 || point[0] != 0x04 {
        return Err(ReceiptError::Key {
            reason: format!(
                "the P-256 point must be 65 bytes, uncompressed (0x04 first); found {} bytes",
                point.len()
            ),
        });
    }
    Ok(point)
}

/// Checks an ASN.1 DER ECDSA P-256/SHA-256 `signature` over `message`.
pub(crate) fn verify(spki: &[u8], message: &[u8], signature: &[u8]) -> Result<(), ReceiptError> {
    let point = point(spki)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(message, signature)
        .map_err(|_| ReceiptError::Signature {
            reason: "the ECDSA P-256 signature does not verify over the signed fields with the receipt key".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_refuse_another_message() {
        let key = ReceiptKey::generate().unwrap();
        let sig = key.sign(b"hello").unwrap();
        verify(key.spki(), b"hello", &sig).unwrap();
        assert!(matches!(
            verify(key.spki(), b"hellp", &sig),
            Err(ReceiptError::Signature { .. })
        ));
        let other = ReceiptKey::generate().unwrap();
        assert!(verify(other.spki(), b"hello", &sig).is_err());
        assert_ne!(key_report_data(key.spki()), key_report_data(other.spki()));
    }

    /// The SPKI and the signature in the formats OpenSSL reads: an independent
    /// implementation checks what ours made.
    #[test]
    fn openssl_reads_the_key_and_verifies_the_signature() {
        let key = ReceiptKey::generate().unwrap();
        let message = b"bastion-ai/receipt/v1\nbody.x 00\n";
        let sig = key.sign(message).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.der"), key.spki()).unwrap();
        std::fs::write(dir.path().join("msg"), message).unwrap();
        std::fs::write(dir.path().join("sig.der"), &sig).unwrap();
        let run = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl command")
        };
        let text = run(&[
            "pkey", "-pubin", "-inform", "DER", "-in", "key.der", "-text", "-noout",
        ]);
        assert!(
            text.status.success(),
            "{}",
            String::from_utf8_lossy(&text.stderr)
        );
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("prime256v1") || text.contains("P-256"),
            "{text}"
        );
        let ok = run(&[
            "dgst",
            "-sha256",
            "-keyform",
            "DER",
            "-verify",
            "key.der",
            "-signature",
            "sig.der",
            "msg",
        ]);
        assert!(
            ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("Verified OK"),
            "{}{}",
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        std::fs::write(dir.path().join("msg"), b"something else").unwrap();
        let bad = run(&[
            "dgst",
            "-sha256",
            "-keyform",
            "DER",
            "-verify",
            "key.der",
            "-signature",
            "sig.der",
            "msg",
        ]);
        assert!(!bad.status.success());
    }

    #[test]
    fn other_keys_are_refused_by_name() {
        let key = ReceiptKey::generate().unwrap();
        let mut compressed = key.spki().to_vec();
        compressed[SPKI_PREFIX.len()] = 0x02;
        assert!(point(&compressed).is_err());
        let mut p384ish = key.spki().to_vec();
        p384ish[20] ^= 1; // the curve OID
        let err = point(&p384ish).unwrap_err();
        assert_eq!(err.field(), Some("key"));
    }
}
