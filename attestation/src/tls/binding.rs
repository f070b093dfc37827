//! What a node's report binds: its TLS key, its role, and the session.

use sha2::{Digest, Sha256, Sha512};

/// Domain label hashed first into REPORT_DATA, so a report made for this purpose can never be
/// mistaken for one made for another (a sealing request, a different protocol version).
pub const BINDING_LABEL: &[u8] = b"bastion-ai/tls-key/v1";

/// The TLS exporter label (RFC 8446 section 7.5, RFC 5705): the exporter value is unique to one
/// TLS session and known only to its two ends.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-bastion-ai-attested-tls-v1";

/// Bytes of exporter output bound into a report.
pub const EXPORTER_LEN: usize = 32;

/// Which end of the TLS connection made a report.
///
/// Bound into the report so a node's evidence cannot be reflected back to it as if the peer
/// had made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that connected (the TLS client).
    Client,
    /// The end that accepted (the TLS server).
    Server,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Self {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Role::Client => b'C',
            Role::Server => b'S',
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'C' => Some(Role::Client),
            b'S' => Some(Role::Server),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Client => "client",
            Role::Server => "server",
        })
    }
}

/// A report's claim: "the holder of `spki_der`, acting as `role` in the TLS session with
/// exporter value `exporter`, runs on this platform".
#[derive(Clone, PartialEq, Eq)]
pub struct Binding {
    /// The end that made the report.
    pub role: Role,
    /// DER SubjectPublicKeyInfo of that end's TLS key.
    pub spki_der: Vec<u8>,
    /// The session's TLS exporter value under [`EXPORTER_LABEL`].
    pub exporter: [u8; EXPORTER_LEN],
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("role", &self.role)
            .field("spki_sha256", &spki_fingerprint(&self.spki_der))
            .finish_non_exhaustive()
    }
}

impl Binding {
    /// REPORT_DATA for this claim:
    /// `SHA-512(BINDING_LABEL || role || u64be(len(spki)) || spki || exporter)`.
    ///
    /// Every field but the SPKI has a fixed length and the SPKI is length-prefixed, so two
    /// different claims never hash the same input. SHA-512 fills REPORT_DATA's 64 bytes.
    pub fn report_data(&self) -> [u8; 64] {
        let mut h = Sha512::new();
        h.update(BINDING_LABEL);
        h.update([self.role.to_byte()]);
        h.update((self.spki_der.len() as u64).to_be_bytes());
        h.update(&self.spki_der);
        h.update(self.exporter);
        h.finalize().into()
    }
}

/// SHA-256 of a SubjectPublicKeyInfo, hex: how keys are named in logs and errors.
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}
