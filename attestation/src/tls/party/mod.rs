//! Party mode: a person or service outside the cluster (a data owner, a model owner, an
//! operator), which has no TEE, talks to a node.
//!
//! A party holds an ECDSA P-256 key pair ([`PartyIdentity`], a PEM file) and is named by the
//! SHA-256 of its SubjectPublicKeyInfo, hex: the same name [`spki_fingerprint`] gives node
//! keys. The node attests itself to the party; the party, having nothing to attest, is
//! authenticated by its key alone and must be listed by the node's operator.
//!
//! ```text
//!  party (Role::Client)                                       node (Role::Server)
//!   |-------- TLS 1.3, the party's self-signed certificate REQUIRED ----------->|
//!   |   CertificateVerify proves the party holds the key of that certificate    |
//!   |                                                                            |
//!   |  x = TLS-Exporter("EXPORTER-bastion-ai-party-tls-v1", no context, 32)      |
//!   |                                                                            |
//!   |== PartyHello =============================================================>|
//!   |<========================== Refuse("party.unknown"), close =================|  key not listed:
//!   |                                                                            |  no evidence made
//!   |<========================== Accept, Evidence(node: Server, its key, x) =====|  key listed
//!   |  the party verifies the node's evidence exactly as nodes verify each other |
//!   |  (roots, TCB, policy, measurement, REPORT_DATA = binding(Server, key, x))  |
//!   |== Accept | Refuse(code, reason), close ====================================>|
//!   v               only after Accept does the party send a request              v
//! ```
//!
//! - **Possession, not a certificate authority.** The certificate is only a carrier for the
//!   party's public key (as between nodes, see [`super`]): the TLS 1.3 CertificateVerify
//!   signature proves the party holds the private key, and the node decides from the key's
//!   fingerprint alone whether it knows the party.
//! - **Strangers see nothing.** As between nodes, the node makes and shows evidence only to a
//!   client it accepted: an unknown key is refused before any report is signed.
//! - **The party sends nothing before it trusts the node.** [`PartyClient::connect`] returns
//!   only after the node's evidence verified; on any failure the party sends only its refusal
//!   (so the node's log says why) and closes.
//! - **Modes cannot be confused.** A party opens with [`PartyHello`](Mode::Party) where a node
//!   sends evidence, and each mode refuses the other's opening by name
//!   ([`AttestedTlsError::ModeMismatch`]). The exporter label differs too, so even a report
//!   made for one mode binds nothing in the other.
//!
//! What a party may ask once connected is the `bastion-party` crate's business; this module
//! knows only who is at the other end.
//!
//! [`AttestedTlsError::ModeMismatch`]: super::AttestedTlsError::ModeMismatch
//! [`spki_fingerprint`]: super::spki_fingerprint

mod client;
mod error;
mod identity;
mod server;
mod verify_file;

pub use client::PartyClient;
pub use error::PartyFileError;
pub use identity::PartyIdentity;
pub use server::PartyStream;
pub use verify_file::{TrustSource, VerifyFile};

/// The TLS exporter label of party mode; node-to-node sessions use
/// [`EXPORTER_LABEL`](super::EXPORTER_LABEL).
pub const PARTY_EXPORTER_LABEL: &[u8] = b"EXPORTER-bastion-ai-party-tls-v1";

/// Who is at the two ends of an attested TLS connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Node to node: both ends attest.
    Node,
    /// A party (no TEE, known by its key) and a node (attests).
    Party,
}

impl Mode {
    /// The exporter label this mode's evidence binds.
    pub fn exporter_label(self) -> &'static [u8] {
        match self {
            Mode::Node => super::EXPORTER_LABEL,
            Mode::Party => PARTY_EXPORTER_LABEL,
        }
    }

    /// The other mode.
    pub fn other(self) -> Self {
        match self {
            Mode::Node => Mode::Party,
            Mode::Party => Mode::Node,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Node => "node-to-node",
            Mode::Party => "party",
        })
    }
}
