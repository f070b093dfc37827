//! The node's side of party mode: [`AttestedEndpoint::accept_party`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsStream};

use super::Mode;
use crate::tls::binding::Role;
use crate::tls::endpoint::{io_err, refuse, refused_by_peer, AttestedEndpoint, Session};
use crate::tls::error::AttestedTlsError;
use crate::tls::wire::{self, Message, ReadError, WireError};

impl AttestedEndpoint {
    /// Accepts a party's connection over `io` (TLS server, client certificate required).
    ///
    /// 1. TLS 1.3: the party proves it holds the key of its certificate;
    /// 2. its opening must be a party's hello (a node's evidence is refused as
    ///    [`AttestedTlsError::ModeMismatch`]);
    /// 3. `is_known(fingerprint)` decides: an unknown key is refused
    ///    ([`AttestedTlsError::UnknownParty`]) before any evidence is made;
    /// 4. a known party receives this node's evidence, bound to this session, and answers with
    ///    its verdict; only its acceptance yields a [`PartyStream`].
    ///
    /// Wrap in a timeout: a client that completes TLS and then says nothing waits here, and
    /// learns nothing of this node meanwhile.
    pub async fn accept_party<IO>(
        &self,
        io: IO,
        is_known: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<PartyStream<IO>, AttestedTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let tls = TlsAcceptor::from(self.server_config())
            .accept(io)
            .await
            .map_err(io_err("TLS handshake"))?;
        let mut tls = TlsStream::Server(tls);
        let session = Session::of_mode(&tls, Role::Server, Mode::Party)?;

        match wire::read(&mut tls).await {
            Ok(Message::PartyHello) => {}
            Ok(Message::Evidence(_)) => {
                let err = AttestedTlsError::ModeMismatch {
                    ours: Mode::Party,
                    peer: Mode::Node,
                };
                return Err(refuse(&mut tls, &session, err).await);
            }
            Ok(Message::Refuse { code, reason }) => {
                return Err(refused_by_peer(&mut tls, &session, code, reason).await)
            }
            Ok(other) => {
                let err = WireError::Unexpected {
                    expected: "a party's hello",
                    found: other.name(),
                };
                return Err(refuse(&mut tls, &session, err.into()).await);
            }
            Err(ReadError::Wire(e)) => return Err(refuse(&mut tls, &session, e.into()).await),
            Err(ReadError::Io(e)) => return Err(io_err("receiving the party's hello")(e)),
        }

        // Decided on the key the party proved in the handshake, before anything of ours is
        // made or shown.
        if !is_known(&session.peer_key) {
            let err = AttestedTlsError::UnknownParty {
                party_key: session.peer_key.clone(),
            };
            return Err(refuse(&mut tls, &session, err).await);
        }

        self.attest_and_hear_verdict(&mut tls, &session, "receiving the party's verdict")
            .await?;
        tracing::info!(party_key = %session.peer_key, "attested TLS: a known party accepted this node's evidence");
        Ok(PartyStream {
            stream: tls,
            party_key: session.peer_key,
            party_spki: session.peer_spki,
        })
    }
}

/// A TLS stream from a known party that accepted this node's evidence. Reads and writes go to
/// the TLS stream.
#[derive(Debug)]
pub struct PartyStream<IO> {
    stream: TlsStream<IO>,
    party_key: String,
    party_spki: Vec<u8>,
}

impl<IO> PartyStream<IO> {
    /// SHA-256 of the party's SubjectPublicKeyInfo, hex: its name in the node's config.
    pub fn party_key(&self) -> &str {
        &self.party_key
    }

    /// DER SubjectPublicKeyInfo of the party's key, as proved in the handshake.
    pub fn party_spki(&self) -> &[u8] {
        &self.party_spki
    }

    /// The underlying TLS stream.
    pub fn get_ref(&self) -> &TlsStream<IO> {
        &self.stream
    }

    /// The TLS stream.
    pub fn into_inner(self) -> TlsStream<IO> {
        self.stream
    }
}

crate::tls::endpoint::forward_io_to_tls!(PartyStream);
