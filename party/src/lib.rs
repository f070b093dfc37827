//! What the people outside a BastionAI cluster may ask a node, and the server that answers.
//!
//! Three kinds of party talk to a node: **data owners** push their datasets, delete them and
//! read their spent privacy budget; **model owners** submit jobs on datasets whose owners
//! allowed them and fetch their job's release and receipt; **operators** read the job's
//! status. None runs in a TEE; each holds an ECDSA P-256 key and is named by its
//! fingerprint in the node's `[[parties]]` ([`roles`]).
//!
//! ```text
//!   party (Client)                                     node (PartyServer)
//!     | attested TLS, party mode: the node proves its   |
//!     | image and TCB, the party its key; nothing is    |  Roles: who is this key?
//!     | sent before the node's evidence verified        |
//!     |== Request (postcard frame) =====================>|  authorized by role, here
//!     |<================================ Response ========|  PartyBackend (the node) acts
//! ```
//!
//! - [`roles`]: the `[[parties]]` config, validated ([`Roles`]).
//! - [`protocol`]: requests and responses, and what each role may send.
//! - [`PartyBackend`]: what the node implements; the server calls it only for allowed
//!   requests, and a push only once its SHA-256 checked.
//! - [`PartyServer`] / [`serve`]: the node's side. [`Client`]: the party's side.
//!
//! Authentication (which key) is attested TLS's ([`bastion_attestation::tls::PartyClient`],
//! [`AttestedEndpoint::accept_party`](bastion_attestation::tls::AttestedEndpoint::accept_party));
//! authorization (what that key may ask) is this crate's, in one place
//! ([`server`](PartyServer)); action is the backend's.
//!
//! # Example
//!
//! ```no_run
//! use bastion_attestation::tls::{PartyIdentity, VerifyFile};
//! use bastion_party::{Client, DatasetMeta};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = PartyIdentity::load("hospital-a.pem")?;
//! let verifier = VerifyFile::load_verifier("verify.toml")?;
//! let client = Client::new("node-0.example:7400", &identity, verifier)?;
//! let meta = DatasetMeta {
//!     name: "hospital-a".into(),
//!     format: "medmnist-npz".into(),
//!     field: None,
//!     split: Some("train".into()),
//!     epsilon_budget: 8.0,
//!     delta: 1e-5,
//!     allow_model_owners: vec!["9f4e".repeat(16)],
//! };
//! let outcome = client.push(&meta, "tiles.npz".as_ref(), &mut |_| {}).await?;
//! println!("sealed as {}", outcome.sealed_sha256);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod client;
mod error;
pub mod protocol;
pub mod roles;
mod server;

pub use backend::{PartyBackend, Release, ReleaseFile};
pub use client::{Client, ClientLimits, Connection, FetchedRelease, PushEvent, PushOutcome};
pub use error::{PartyError, RolesError};
pub use protocol::{DatasetMeta, JobState, Refusal, Spent, Status};
pub use roles::{Party, PartyEntry, PartyRole, Roles};
pub use server::{serve, PartyServer, ServerLimits};
