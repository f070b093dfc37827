//! The party's side of party mode: [`PartyClient`].

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsConnector, TlsStream};

use super::{Mode, PartyIdentity};
use crate::tls::binding::{Binding, Role};
use crate::tls::endpoint::{
    client_config, hear_verdict, io_err, judge, off_executor, refuse, AttestedStream, Session,
};
use crate::tls::error::AttestedTlsError;
use crate::tls::verifiers::PeerKeyVerifier;
use crate::tls::wire::{self, Message, ReadError, WireError};
use crate::Verifier;

/// The name a party asks for; names are not checked (see the module docs), rustls needs one.
const SERVER_NAME: &str = "bastion-node";

/// A party's end of party mode: its key, and the verifier it judges nodes with.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct PartyClient {
    config: Arc<ClientConfig>,
    verifier: Verifier,
    fingerprint: String,
}

impl std::fmt::Debug for PartyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyClient")
            .field("party_key", &self.fingerprint)
            .field("simulated_trust", &self.verifier.trust().is_simulated())
            .finish_non_exhaustive()
    }
}

impl PartyClient {
    /// A client that authenticates with `identity` and accepts only nodes whose evidence
    /// `verifier` accepts.
    pub fn new(identity: &PartyIdentity, verifier: Verifier) -> Result<Self, AttestedTlsError> {
        let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
        let peer_verifier = PeerKeyVerifier::new(provider.signature_verification_algorithms);
        let config = client_config(
            &provider,
            peer_verifier,
            identity.certificate(),
            identity.private_key(),
        )
        .map_err(|e| AttestedTlsError::Config(e.to_string()))?;
        if verifier.trust().is_simulated() {
            // Once per process: a party that polls a node makes a client a second.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    party_key = %identity.fingerprint(),
                    "this party trusts a SIMULATED TEE chain: the node it talks to is not hardware-protected"
                )
            });
        }
        Ok(Self {
            config: Arc::new(config),
            verifier,
            fingerprint: identity.fingerprint(),
        })
    }

    /// This party's key fingerprint.
    pub fn party_key(&self) -> &str {
        &self.fingerprint
    }

    /// Connects over `io`: TLS with this party's certificate, then receives the node's
    /// evidence and verifies it as nodes verify each other, against the key the node proved
    /// in this handshake and this session's exporter. Returns the node's verdict with the
    /// stream; on any failure it has sent only its refusal, never application data. Wrap in
    /// a timeout.
    pub async fn connect<IO>(&self, io: IO) -> Result<AttestedStream<IO>, AttestedTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
        let tls = TlsConnector::from(Arc::clone(&self.config))
            .connect(name, io)
            .await
            .map_err(io_err("TLS handshake"))?;
        let mut tls = TlsStream::Client(tls);
        let session = Session::of_mode(&tls, Role::Client, Mode::Party)?;
        wire::write(&mut tls, &[Message::PartyHello])
            .await
            .map_err(io_err("sending the party's hello"))?;
        hear_verdict(&mut tls, &session, "receiving the node's verdict").await?;

        let theirs = match wire::read(&mut tls).await {
            Ok(Message::Evidence(theirs)) => theirs,
            Ok(other) => {
                let err = WireError::Unexpected {
                    expected: "evidence",
                    found: other.name(),
                };
                return Err(refuse(&mut tls, &session, err.into()).await);
            }
            Err(ReadError::Wire(e)) => return Err(refuse(&mut tls, &session, e.into()).await),
            Err(ReadError::Io(e)) => return Err(io_err("receiving the node's evidence")(e)),
        };
        let expected = Binding {
            role: Role::Server,
            spki_der: session.peer_spki.clone(),
            exporter: session.exporter,
        };
        let verifier = self.verifier.clone();
        match off_executor(move || judge(&verifier, &theirs, &expected)).await {
            Ok(verdict) => {
                wire::write(&mut tls, &[Message::Accept])
                    .await
                    .map_err(io_err("sending our verdict"))?;
                Ok(session.accepted(tls, verdict))
            }
            Err(reason) => {
                let err = AttestedTlsError::PeerRejected {
                    peer_role: Role::Server,
                    peer_key: session.peer_key.clone(),
                    reason,
                };
                Err(refuse(&mut tls, &session, err).await)
            }
        }
    }
}
