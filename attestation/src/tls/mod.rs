//! Mutually attested TLS 1.3: both ends prove they run an accepted guest on SEV-SNP (or,
//! visibly, on the simulated TEE) before either sends a byte of application data.
//!
//! ```text
//!  client (Role::Client)                                   server (Role::Server)
//!   |---------------- TLS 1.3 handshake, mutual, self-signed certs -------------->|
//!   |   each verifier checks the CertificateVerify signature: the peer holds the  |
//!   |   private key of the SPKI in its certificate                                |
//!   |                                                                              |
//!   |  x = TLS-Exporter("EXPORTER-bastion-ai-attested-tls-v1", no context, 32)     |
//!   |  REPORT_DATA = SHA-512("bastion-ai/tls-key/v1" || role || len || SPKI || x)  |
//!   |                                                                              |
//!   |== Evidence(report, VCEK, claimed binding) ================================>|
//!   |   the server judges it first: AMD chain (or the named simulated one),        |
//!   |   policy, measurement, and REPORT_DATA == binding(peer role, peer SPKI, x)   |
//!   |<========================================== Refuse(code, reason), close ====|  refused
//!   |<=========================================== Accept, Evidence(server) ======|  accepted
//!   |   the client judges the server's evidence the same way                      |
//!   |== Accept | Refuse(code, reason) ==========================================>|
//!   v                       only Accept + Accept yields a stream                   v
//! ```
//!
//! # Why evidence after the handshake, bound to the exporter
//!
//! - **Binding the key.** REPORT_DATA carries a hash of the node's TLS SubjectPublicKeyInfo,
//!   and the key pair is made in memory inside the guest at start ([`AttestedEndpoint::new`]),
//!   so a valid report for that SPKI means the key lives in the attested guest. The receiver
//!   takes the SPKI from the certificate whose key signed the TLS 1.3 handshake, so the report
//!   is pinned to the key that actually authenticated this connection.
//! - **Freshness.** A report for a key alone could be replayed by anyone who once saw it (it is
//!   not secret) over a connection authenticated with *another* key: that fails the key
//!   binding. It could also be replayed by a machine that once held the key; binding the TLS
//!   exporter (RFC 8446 section 7.5; the channel binding of RFC 9266 `tls-exporter`) makes each
//!   report valid for one session only, since the exporter derives from that session's
//!   ephemeral key exchange and is known only to its two ends. No extra nonce round trip is
//!   needed: the handshake already produced a fresh, shared, unpredictable value.
//! - **Roles.** The role byte stops a node's own evidence from being reflected back to it.
//! - **Why not evidence inside the certificate** (RA-TLS style): a certificate is made before
//!   the session exists, so it cannot carry the exporter and would need a second fresh report
//!   anyway; and a failure inside rustls's verifier callbacks can only become a generic TLS
//!   alert, while after the handshake each side can tell the other exactly why it refused,
//!   over the encrypted channel ([`AttestedTlsError::RefusedByPeer`]). The cost is one round
//!   trip and a half more than a plain handshake: the client proves itself first, and the
//!   server shows (and spends work making) its evidence only to a client it accepted.
//! - **Why not raw public keys (RFC 7250).** rustls supports them, but a throwaway
//!   self-signed certificate works with every TLS tool and changes nothing: the certificate's
//!   names, dates and self-signature are ignored; only its key counts.
//! - **No resumption, no 0-RTT**: each connection re-proves key possession and nothing
//!   reaches the application before both verdicts.
//!
//! The sender also sends the binding it claims. It is never trusted: the receiver computes
//! the expected REPORT_DATA from its own view of the session. The claim only serves to name a
//! mismatch ([`BindingError`]: another key, a stale session, a reflected report), and only
//! when it hashes to the report's signed REPORT_DATA.
//!
//! # Parties
//!
//! People and services outside the cluster (data owners, model owners, operators) have no TEE:
//! they connect in [party mode](party), proving only that they hold a key the node knows,
//! and verify the node's evidence exactly as nodes verify each other
//! ([`AttestedEndpoint::accept_party`], [`PartyClient`]).
//!
//! # Example
//!
//! ```no_run
//! use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform};
//! use bastion_attestation::tls::AttestedEndpoint;
//! use bastion_attestation::{Policy, TrustAnchors, Verifier};
//! # async fn run(io: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! let platform = SimulatedPlatform::shared()?;
//! let tee = platform.launch(LaunchConfig::default())?;
//! let policy = Policy::new(vec![LaunchConfig::default_measurement()]);
//! let trust = TrustAnchors::simulated(platform.ark_der(), platform.ask_der())?;
//! let endpoint = AttestedEndpoint::new(tee, Verifier::new(policy, trust))?;
//! let stream = endpoint.connect(io).await?;
//! assert!(stream.peer().simulated);
//! # Ok(()) }
//! ```

mod attester;
mod binding;
mod endpoint;
mod error;
pub mod party;
mod verifiers;
mod wire;

pub use attester::{AttestError, Attester, Evidence};
pub use binding::{spki_fingerprint, Binding, Role, BINDING_LABEL, EXPORTER_LABEL, EXPORTER_LEN};
pub use endpoint::{AttestedEndpoint, AttestedStream};
pub use error::{AttestedTlsError, BindingError, Rejection};
pub use party::{
    Mode, PartyClient, PartyFileError, PartyIdentity, PartyStream, TrustSource, VerifyFile,
    PARTY_EXPORTER_LABEL,
};
pub use wire::{WireError, MAX_FRAME, PROTOCOL_VERSION};
