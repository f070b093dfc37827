//! A party's key pair: ECDSA P-256, kept in a PKCS#8 PEM file readable only by its owner.

use std::io::Write;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_cert::der::pem::{self, LineEnding};
use zeroize::Zeroizing;

use super::error::PartyFileError;
use crate::tls::binding::spki_fingerprint;
use crate::tls::verifiers::spki_of;

/// The PEM label of the key file (RFC 7468 section 10: PKCS#8 `PRIVATE KEY`).
const PEM_LABEL: &str = "PRIVATE KEY";

/// A party's key pair, and a self-signed certificate for it that only carries the public key
/// through TLS (its names and dates mean nothing; see [`super`]).
///
/// The private key is zeroized when dropped and never printed.
#[derive(Clone)]
pub struct PartyIdentity {
    key_pkcs8: Zeroizing<Vec<u8>>,
    cert_der: CertificateDer<'static>,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for PartyIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl PartyIdentity {
    /// A fresh ECDSA P-256 key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, PartyFileError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| key_error(None, format!("cannot generate an ECDSA P-256 key: {e}")))?;
        Self::from_key_pair(&key, None)
    }

    /// A key from its PKCS#8 DER encoding; anything but ECDSA P-256 is refused.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, PartyFileError> {
        Self::from_der_at(der, None)
    }

    /// A key from a PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(text: &[u8]) -> Result<Self, PartyFileError> {
        Self::from_pem_at(text, None)
    }

    /// Loads a key file written by [`PartyIdentity::save`] (or any PKCS#8 PEM ECDSA P-256
    /// key). On Unix a file other users can read is refused, as ssh does.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PartyFileError> {
        let path = path.as_ref();
        let text =
            Zeroizing::new(std::fs::read(path).map_err(|e| PartyFileError::io("read", path, e))?);
        check_private(path)?;
        Self::from_pem_at(&text, Some(path))
    }

    /// Writes the key as PKCS#8 PEM to a new file with mode 0600. An existing file is never
    /// overwritten ([`PartyFileError::Exists`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PartyFileError> {
        let path = path.as_ref();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => PartyFileError::Exists {
                path: path.to_path_buf(),
            },
            _ => PartyFileError::io("create", path, e),
        })?;
        let text = self.to_pem();
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| PartyFileError::io("write", path, e))
    }

    /// The key as PKCS#8 PEM text.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let len = pem::encoded_len(PEM_LABEL, LineEnding::LF, &self.key_pkcs8)
            .expect("a PKCS#8 key has a PEM length");
        let mut buf = Zeroizing::new(vec![0u8; len]);
        let text = pem::encode(PEM_LABEL, LineEnding::LF, &self.key_pkcs8, &mut buf)
            .expect("the buffer has the encoded length");
        Zeroizing::new(text.to_string())
    }

    /// SHA-256 of [`PartyIdentity::spki_der`], hex: how node configs name this party.
    pub fn fingerprint(&self) -> String {
        spki_fingerprint(&self.spki_der)
    }

    /// DER SubjectPublicKeyInfo of the public key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub(super) fn certificate(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    pub(super) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.to_vec()))
    }

    fn from_pem_at(text: &[u8], path: Option<&Path>) -> Result<Self, PartyFileError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(text).map_err(|e| {
            key_error(
                path,
                format!("no PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----): {e}"),
            )
        })?;
        Self::from_der_at(der.secret_pkcs8_der(), path)
    }

    fn from_der_at(der: &[u8], path: Option<&Path>) -> Result<Self, PartyFileError> {
        let der = PrivatePkcs8KeyDer::from(der.to_vec());
        let key =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| {
                    key_error(
                        path,
                        format!(
                    "not an ECDSA P-256 PKCS#8 key ({e}); make one with `bastion party keygen`"
                ),
                    )
                })?;
        Self::from_key_pair(&key, path)
    }

    fn from_key_pair(key: &rcgen::KeyPair, path: Option<&Path>) -> Result<Self, PartyFileError> {
        // Any name does: only the key in this certificate is ever looked at.
        let cert = rcgen::CertificateParams::new(vec!["bastion-party".to_string()])
            .and_then(|params| params.self_signed(key))
            .map_err(|e| key_error(path, format!("cannot make its TLS certificate: {e}")))?;
        let cert_der = cert.der().clone();
        let spki_der = spki_of(&cert_der)
            .map_err(|e| key_error(path, format!("its certificate does not decode: {e}")))?;
        Ok(Self {
            key_pkcs8: Zeroizing::new(key.serialize_der()),
            cert_der,
            spki_der,
        })
    }
}

fn key_error(path: Option<&Path>, reason: String) -> PartyFileError {
    PartyFileError::Key {
        path: path.map(Path::to_path_buf),
        reason,
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), PartyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| PartyFileError::io("inspect", path, e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(PartyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), PartyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_with_the_same_fingerprint_and_is_private() {
        let dir = std::env::temp_dir().join(format!("bastion-party-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        let _ = std::fs::remove_file(&path);
        let id = PartyIdentity::generate().unwrap();
        id.save(&path).unwrap();
        let loaded = PartyIdentity::load(&path).unwrap();
        assert_eq!(loaded.fingerprint(), id.fingerprint());
        assert_eq!(loaded.spki_der(), id.spki_der());
        assert_eq!(id.fingerprint().len(), 64);
        // Never overwritten.
        assert!(matches!(
            PartyIdentity::generate().unwrap().save(&path),
            Err(PartyFileError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                PartyIdentity::load(&path),
                Err(PartyFileError::Permissions { mode: 0o644, .. })
            ));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_keys_and_garbage_are_refused_by_name() {
        let err = PartyIdentity::from_pem(b"hello").unwrap_err();
        assert!(err.to_string().contains("BEGIN PRIVATE KEY"), "{err}");
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let err = PartyIdentity::from_pkcs8_der(&p384.serialize_der()).unwrap_err();
        assert!(err.to_string().contains("not an ECDSA P-256"), "{err}");
        // PEM round trip.
        let id = PartyIdentity::generate().unwrap();
        let again = PartyIdentity::from_pem(id.to_pem().as_bytes()).unwrap();
        assert_eq!(again.fingerprint(), id.fingerprint());
        assert!(!format!("{id:?}").contains(&hex::encode(&id.key_pkcs8[..8])));
    }
}
