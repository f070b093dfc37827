//! The simulated chip: one secret, from which everything chip-specific is derived.
//!
//! On real hardware the PSP derives the VCEK from a fused chip-unique secret and the TCB it
//! runs, so a firmware update changes the key (VCEK spec 57230, ch. 2). We do the same with
//! HKDF-SHA384 (RFC 5869), one `info` label per derived value, so the chip id, each TCB's VCEK
//! and each sealing key are independent of one another.

use der::asn1::Ia5StringRef;
use hkdf::Hkdf;
use p384::ecdsa::SigningKey;
use p384::pkcs8::EncodePublicKey;
use rand_core::{OsRng, RngCore};
use rsa::RsaPrivateKey;
use sha2::Sha384;
use x509_cert::der;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use zeroize::Zeroizing;

use super::chain::{encode, extension, issue, ASK_NAME};
use super::report::GENERATION;
use super::SimError;
use crate::report::Tcb;

/// Length of the chip secret: one SHA-384 block of key material.
pub(crate) const CHIP_SECRET_LEN: usize = 48;

/// HKDF salt: names the scheme and its version, so a key derived here never equals one
/// derived elsewhere from the same secret.
const HKDF_SALT: &[u8] = b"bastion-ai/sim-tee/v1";

const OID_STRUCT_VERSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
const OID_BOOTLOADER: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_MICROCODE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_HWID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// Subject of a simulated VCEK (AMD's reads `CN=SEV-VCEK`).
const VCEK_NAME: &str = "CN=SEV-VCEK,O=BastionAI SIMULATED TEE - not AMD,OU=Engineering,C=US";

/// The product the simulated chip claims to be; it matches the CPUID family and model the
/// reports carry, so generation checks see a consistent Milan.
const PRODUCT_NAME: &str = "Milan-B0";

/// A chip: its secret. Cloning copies the secret (it is zeroized on drop).
#[derive(Clone)]
pub(crate) struct Chip {
    secret: Zeroizing<[u8; CHIP_SECRET_LEN]>,
}

impl Chip {
    pub(crate) fn random() -> Self {
        let mut secret = Zeroizing::new([0u8; CHIP_SECRET_LEN]);
        OsRng.fill_bytes(secret.as_mut());
        Self { secret }
    }

    pub(crate) fn from_secret(secret: [u8; CHIP_SECRET_LEN]) -> Self {
        Self {
            secret: Zeroizing::new(secret),
        }
    }

    pub(crate) fn secret(&self) -> &[u8; CHIP_SECRET_LEN] {
        &self.secret
    }

    /// HKDF-SHA384 expand of the chip secret under `info` (the parts are concatenated).
    pub(crate) fn derive(&self, info: &[&[u8]], out: &mut [u8]) {
        let hk = Hkdf::<Sha384>::new(Some(HKDF_SALT), self.secret.as_ref());
        // Only fails for outputs over 255 * 48 bytes; every caller asks for at most 64.
        hk.expand_multi_info(info, out)
            .expect("HKDF output length is at most 64 bytes");
    }

    /// The 64-byte CHIP_ID the reports and the VCEK's hwID carry.
    pub(crate) fn chip_id(&self) -> [u8; 64] {
        let mut id = [0u8; 64];
        self.derive(&[b"chip-id"], &mut id);
        // Real Milan/Genoa ids use all 64 bytes; parsers take an id whose last 56 bytes are
        // zero for Turin's 8-byte id. Keep ours unambiguous (a 2^-448 event, but cheap).
        if id[8..].iter().all(|&b| b == 0) {
            id[63] = 1;
        }
        id
    }

    /// The VCEK for a TCB: a P-384 key derived from the chip secret and the TCB.
    pub(crate) fn vcek_key(&self, tcb: Tcb) -> SigningKey {
        let tcb = tcb.to_bytes(GENERATION);
        for counter in 0u8..=255 {
            let mut scalar = Zeroizing::new([0u8; 48]);
            self.derive(&[b"vcek", &tcb, &[counter]], scalar.as_mut());
            // A candidate is rejected only if it is zero or >= the group order (~2^-190).
            if let Ok(key) = SigningKey::from_slice(scalar.as_ref()) {
                return key;
            }
        }
        unreachable!("256 HKDF outputs in a row were not valid P-384 scalars")
    }

    /// Issues the VCEK certificate for `tcb`, signed by the simulated ASK.
    pub(crate) fn vcek_cert(&self, ask: &RsaPrivateKey, tcb: Tcb) -> Result<Vec<u8>, SimError> {
        let key = self.vcek_key(tcb);
        let spki_der = key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| SimError::crypto("encode the VCEK public key", e))?;
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())
            .map_err(|e| SimError::crypto("decode the VCEK public key", e))?;
        let product = Ia5StringRef::new(PRODUCT_NAME)
            .map_err(|e| SimError::crypto("encode the product name", e))?;
        // Same extensions, encodings and order as AMD's KDS: INTEGER values for the version
        // and TCB components, an IA5String product name, the raw 64-byte chip id as hwID.
        let extensions = vec![
            extension(OID_STRUCT_VERSION, false, encode(&0u8)?)?,
            extension(OID_PRODUCT_NAME, false, encode(&product)?)?,
            extension(OID_BOOTLOADER, false, encode(&tcb.bootloader)?)?,
            extension(OID_TEE, false, encode(&tcb.tee)?)?,
            extension(OID_SNP, false, encode(&tcb.snp)?)?,
            extension(OID_MICROCODE, false, encode(&tcb.microcode)?)?,
            extension(OID_HWID, false, self.chip_id().to_vec())?,
        ];
        issue(ask, ASK_NAME, VCEK_NAME, spki, &[0x00], extensions)
    }
}
