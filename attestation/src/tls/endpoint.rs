//! A node's attested TLS endpoint: its in-memory key, its rustls configurations, and the
//! evidence exchange that follows each handshake.
//!
//! The client proves itself first and the server answers only an accepted client:
//!
//! ```text
//!  client                                   server
//!    |== Evidence(client) ==================>|  verified before the server attests itself
//!    |<================= Refuse(code, reason) |  refused: nothing of the server is shown
//!    |<========== Accept, Evidence(server) ===|  accepted: the server's evidence, one flush
//!    |== Accept | Refuse(code, reason) ======>|
//! ```
//!
//! So a stranger that completes TLS learns nothing of the server beyond its TLS key (no
//! report, no VCEK, no measurement) and cannot make it sign a report, until its own evidence
//! passed. The price:
//! the server finishes half a round trip later than when evidence and verdicts crossed at
//! once, and the two sides' signing and verification run one after the other.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::attester::{AttestError, Attester, Evidence};
use super::binding::{spki_fingerprint, Binding, Role, EXPORTER_LEN};
use super::error::{AttestedTlsError, BindingError, Rejection};
use super::party::Mode;
use super::verifiers::{spki_of, PeerKeyVerifier};
use super::wire::{self, Message, ReadError, WireError};
use crate::error::PolicyViolation;
use crate::report::Report;
use crate::{Verdict, Verifier, VerifyError};

/// The name a client asks for. Certificates are not checked against names (see
/// [`super::verifiers`]), but rustls needs one for SNI.
const SERVER_NAME: &str = "bastion-node";

/// One node's end of attested TLS: a TLS key made in memory when the endpoint is created, the
/// node's source of evidence, and the verifier it judges peers with.
///
/// Cheap to clone; clones share the key.
#[derive(Clone)]
pub struct AttestedEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    attester: Box<dyn Attester>,
    verifier: Verifier,
    spki_der: Vec<u8>,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for AttestedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestedEndpoint")
            .field("tls_key_sha256", &self.key_fingerprint())
            .field(
                "simulated_trust",
                &self.inner.verifier.trust().is_simulated(),
            )
            .finish_non_exhaustive()
    }
}

impl AttestedEndpoint {
    /// Makes a fresh TLS key (ECDSA P-256, never written anywhere) and a self-signed
    /// certificate for it; peers are judged by `verifier`, our evidence comes from `attester`.
    pub fn new(
        attester: impl Attester + 'static,
        verifier: Verifier,
    ) -> Result<Self, AttestedTlsError> {
        let config = |e: &dyn std::fmt::Display| AttestedTlsError::Config(e.to_string());
        let key =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| config(&e))?;
        let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .and_then(|params| params.self_signed(&key))
            .map_err(|e| config(&e))?;
        let cert_der: CertificateDer<'static> = cert.der().clone();
        let spki_der = spki_of(&cert_der).map_err(|e| config(&e))?;
        let key_der = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

        // Exactly one provider, chosen here: never the process default, which another crate
        // could install or change.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let peer_verifier = PeerKeyVerifier::new(provider.signature_verification_algorithms);
        let client = client_config(
            &provider,
            peer_verifier.clone(),
            cert_der.clone(),
            key_der(),
        )
        .map_err(|e| config(&e))?;
        let server =
            server_config(&provider, peer_verifier, cert_der, key_der()).map_err(|e| config(&e))?;
        if verifier.trust().is_simulated() {
            tracing::warn!(
                tls_key_sha256 = %spki_fingerprint(&spki_der),
                "attested TLS endpoint trusts a SIMULATED TEE chain: peers are not hardware-protected"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                attester: Box::new(attester),
                verifier,
                spki_der,
                client: Arc::new(client),
                server: Arc::new(server),
            }),
        })
    }

    /// The TLS server configuration (client certificate required), shared by both modes.
    pub(super) fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.inner.server)
    }

    /// DER SubjectPublicKeyInfo of this node's TLS key: what its reports bind.
    pub fn spki_der(&self) -> &[u8] {
        &self.inner.spki_der
    }

    /// SHA-256 of [`AttestedEndpoint::spki_der`], hex: how this key is named in logs.
    pub fn key_fingerprint(&self) -> String {
        spki_fingerprint(&self.inner.spki_der)
    }

    /// Connects over `io` (TLS client), proves itself with its evidence, then verifies the
    /// server's. Returns only once both sides accepted each other. Wrap in a timeout: a peer
    /// that stops talking stalls it. On TCP, set `TCP_NODELAY`: the exchange is a few small
    /// messages, latency-bound.
    pub async fn connect<IO>(&self, io: IO) -> Result<AttestedStream<IO>, AttestedTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
        let tls = TlsConnector::from(Arc::clone(&self.inner.client))
            .connect(name, io)
            .await
            .map_err(io_err("TLS handshake"))?;
        self.client_exchange(TlsStream::Client(tls)).await
    }

    /// Accepts a connection over `io` (TLS server), verifies the client's evidence, and only
    /// if it is accepted sends its own. Returns only once both sides accepted each other.
    /// Wrap in a timeout: a client that completes TLS and then says nothing waits here, and
    /// learns nothing of this node meanwhile.
    pub async fn accept<IO>(&self, io: IO) -> Result<AttestedStream<IO>, AttestedTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let tls = TlsAcceptor::from(Arc::clone(&self.inner.server))
            .accept(io)
            .await
            .map_err(io_err("TLS handshake"))?;
        self.server_exchange(TlsStream::Server(tls)).await
    }

    /// The client's half of the exchange, right after the handshake:
    /// 1. send our evidence for (client, our key, this session's exporter);
    /// 2. hear the server's verdict on it: a refusal ends here, with the server's reason;
    /// 3. on acceptance, receive the server's evidence, verify it against the key the server
    ///    proved in the handshake and the exporter we computed, and send our verdict.
    async fn client_exchange<IO>(
        &self,
        mut tls: TlsStream<IO>,
    ) -> Result<AttestedStream<IO>, AttestedTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let session = Session::of(&tls, Role::Client)?;
        let evidence = match self.attest_self(&session).await {
            Ok(evidence) => evidence,
            Err(e) => return Err(cannot_attest(&mut tls, e).await),
        };
        wire::write(&mut tls, &[Message::Evidence(evidence)])
            .await
            .map_err(io_err("sending evidence"))?;
        hear_verdict(&mut tls, &session, "receiving the peer's verdict").await?;

        let verdict = match self.hear_and_judge(&mut tls, &session).await {
            Ok(verdict) => verdict,
            Err(failed) => return Err(failed.finish(&mut tls, &session).await),
        };
        wire::write(&mut tls, &[Message::Accept])
            .await
            .map_err(io_err("sending our verdict"))?;
        Ok(session.accepted(tls, verdict))
    }

    /// The server's half: the client's evidence is judged before anything of ours is made or
    /// shown, so a stranger can neither learn this node's report nor make it sign one.
    /// 1. receive and verify the client's evidence; on refusal send the reason and close;
    /// 2. on acceptance, make our evidence and send it behind our verdict;
    /// 3. hear the client's verdict on it.
    async fn server_exchange<IO>(
        &self,
        mut tls: TlsStream<IO>,
    ) -> Result<AttestedStream<IO>, AttestedTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let session = Session::of(&tls, Role::Server)?;
        let verdict = match self.hear_and_judge(&mut tls, &session).await {
            Ok(verdict) => verdict,
            Err(failed) => return Err(failed.finish(&mut tls, &session).await),
        };

        self.attest_and_hear_verdict(&mut tls, &session, "receiving the peer's verdict")
            .await?;
        Ok(session.accepted(tls, verdict))
    }

    /// The server's last half, in both modes: our acceptance and our evidence for this
    /// session in one flush (the client reads them back to back), then the client's verdict
    /// on that evidence. `stage` names the read in errors.
    pub(super) async fn attest_and_hear_verdict<IO>(
        &self,
        tls: &mut TlsStream<IO>,
        session: &Session,
        stage: &'static str,
    ) -> Result<(), AttestedTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let evidence = match self.attest_self(session).await {
            Ok(evidence) => evidence,
            Err(e) => return Err(cannot_attest(tls, e).await),
        };
        wire::write(tls, &[Message::Accept, Message::Evidence(evidence)])
            .await
            .map_err(io_err("sending our verdict and evidence"))?;
        match wire::read(tls).await {
            Ok(Message::Accept) => Ok(()),
            Ok(Message::Refuse { code, reason }) => {
                Err(refused_by_peer(tls, session, code, reason).await)
            }
            Ok(other) => Err(AttestedTlsError::Wire(WireError::Unexpected {
                expected: "a verdict",
                found: other.name(),
            })),
            Err(ReadError::Wire(e)) => Err(e.into()),
            Err(ReadError::Io(e)) => Err(io_err(stage)(e)),
        }
    }

    /// Our evidence for this session, made off the executor (signing takes milliseconds).
    pub(super) async fn attest_self(&self, session: &Session) -> Result<Evidence, AttestError> {
        let ours = Binding {
            role: session.role,
            spki_der: self.inner.spki_der.clone(),
            exporter: session.exporter,
        };
        let inner = Arc::clone(&self.inner);
        off_executor(move || inner.attester.attest(&ours)).await
    }

    /// Reads the peer's next message, which must be its evidence, and verifies it against
    /// the peer's role, the key it proved in the handshake and the exporter we computed.
    async fn hear_and_judge<IO>(
        &self,
        tls: &mut TlsStream<IO>,
        session: &Session,
    ) -> Result<Verdict, Failed>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match wire::read(tls).await {
            Ok(Message::Evidence(theirs)) => {
                let expected = Binding {
                    role: session.role.peer(),
                    spki_der: session.peer_spki.clone(),
                    exporter: session.exporter,
                };
                let inner = Arc::clone(&self.inner);
                off_executor(move || inner.judge(&theirs, &expected))
                    .await
                    .map_err(|reason| {
                        Failed::Refuse(AttestedTlsError::PeerRejected {
                            peer_role: session.role.peer(),
                            peer_key: session.peer_key.clone(),
                            reason,
                        })
                    })
            }
            // The peer could not attest itself (or, for a client, was refused).
            Ok(Message::Refuse { code, reason }) => Err(Failed::Refused { code, reason }),
            // A party (no TEE) dialled a node-to-node port.
            Ok(Message::PartyHello) => Err(Failed::Refuse(AttestedTlsError::ModeMismatch {
                ours: Mode::Node,
                peer: Mode::Party,
            })),
            Ok(other) => Err(Failed::Refuse(AttestedTlsError::Wire(
                WireError::Unexpected {
                    expected: "evidence",
                    found: other.name(),
                },
            ))),
            Err(ReadError::Wire(e)) => Err(Failed::Refuse(e.into())),
            Err(ReadError::Io(e)) => Err(Failed::Quiet(io_err("receiving evidence")(e))),
        }
    }
}

/// What one side learned of the session from the TLS handshake.
pub(super) struct Session {
    /// Our role.
    pub(super) role: Role,
    /// Node to node, or a party and a node.
    pub(super) mode: Mode,
    /// The SPKI from the certificate whose key signed the peer's handshake.
    pub(super) peer_spki: Vec<u8>,
    /// Its SHA-256, hex: how the peer is named in logs and errors.
    pub(super) peer_key: String,
    /// This session's exporter value under the mode's label.
    pub(super) exporter: [u8; EXPORTER_LEN],
}

impl Session {
    fn of<IO>(tls: &TlsStream<IO>, role: Role) -> Result<Self, AttestedTlsError> {
        Self::of_mode(tls, role, Mode::Node)
    }

    pub(super) fn of_mode<IO>(
        tls: &TlsStream<IO>,
        role: Role,
        mode: Mode,
    ) -> Result<Self, AttestedTlsError> {
        let (peer_spki, exporter) = session_facts(tls, mode.exporter_label())?;
        Ok(Self {
            role,
            mode,
            peer_key: spki_fingerprint(&peer_spki),
            peer_spki,
            exporter,
        })
    }

    pub(super) fn accepted<IO>(
        self,
        stream: TlsStream<IO>,
        verdict: Verdict,
    ) -> AttestedStream<IO> {
        log_accepted(&verdict, self.role.peer(), &self.peer_key);
        AttestedStream {
            stream,
            peer: verdict,
            peer_key: self.peer_key,
        }
    }
}

/// Why the peer's evidence gave no verdict, and what, if anything, the peer is told.
enum Failed {
    /// We refuse the peer: it is told why.
    Refuse(AttestedTlsError),
    /// The peer sent a refusal instead of evidence.
    Refused { code: String, reason: String },
    /// The transport broke: there is no one to tell.
    Quiet(AttestedTlsError),
}

impl Failed {
    async fn finish<IO>(self, tls: &mut TlsStream<IO>, session: &Session) -> AttestedTlsError
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match self {
            Failed::Refuse(err) => refuse(tls, session, err).await,
            Failed::Refused { code, reason } => refused_by_peer(tls, session, code, reason).await,
            Failed::Quiet(err) => err,
        }
    }
}

/// Tells the peer why we refuse it and closes. Nothing of the peer's is left unread at any
/// point we refuse (it is waiting for our word), so the close does not reset the refusal.
pub(super) async fn refuse<IO>(
    tls: &mut TlsStream<IO>,
    session: &Session,
    err: AttestedTlsError,
) -> AttestedTlsError
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let code = err.code().to_string();
    tracing::warn!(peer_key = %session.peer_key, %code, "attested TLS: {err}");
    let refusal = Message::Refuse {
        code,
        reason: refusal_reason(&err),
    };
    let _ = wire::write(tls, &[refusal]).await;
    let _ = tls.shutdown().await;
    err
}

/// Hears the peer's verdict on our evidence (or hello): its acceptance, or its refusal and
/// reason; anything else is answered with our refusal. `stage` names the read in errors.
pub(super) async fn hear_verdict<IO>(
    tls: &mut TlsStream<IO>,
    session: &Session,
    stage: &'static str,
) -> Result<(), AttestedTlsError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match wire::read(tls).await {
        Ok(Message::Accept) => Ok(()),
        Ok(Message::Refuse { code, reason }) => {
            Err(refused_by_peer(tls, session, code, reason).await)
        }
        Ok(other) => {
            let err = WireError::Unexpected {
                expected: "a verdict",
                found: other.name(),
            };
            Err(refuse(tls, session, err.into()).await)
        }
        Err(ReadError::Wire(e)) => Err(refuse(tls, session, e.into()).await),
        Err(ReadError::Io(e)) => Err(io_err(stage)(e)),
    }
}

/// The peer refused us, or could not attest itself: log its reason and close. A refusal for
/// speaking the other mode is named as such ([`AttestedTlsError::ModeMismatch`]).
pub(super) async fn refused_by_peer<IO>(
    tls: &mut TlsStream<IO>,
    session: &Session,
    code: String,
    reason: String,
) -> AttestedTlsError
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    tracing::warn!(peer_key = %session.peer_key, %code, "attested TLS: the peer refused: {reason}");
    let _ = tls.shutdown().await;
    if code == AttestedTlsError::MODE_MISMATCH {
        return AttestedTlsError::ModeMismatch {
            ours: session.mode,
            peer: session.mode.other(),
        };
    }
    AttestedTlsError::RefusedByPeer { code, reason }
}

/// We cannot produce evidence: tell the peer, which is waiting for it, and close.
pub(super) async fn cannot_attest<IO>(tls: &mut TlsStream<IO>, e: AttestError) -> AttestedTlsError
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    tracing::error!(error = %e, "attested TLS: cannot attest ourselves; telling the peer");
    let refusal = Message::Refuse {
        code: "local_evidence".into(),
        reason: format!("the peer could not produce evidence: {e}"),
    };
    let _ = wire::write(tls, &[refusal]).await;
    let _ = tls.shutdown().await;
    e.into()
}

impl Inner {
    /// Verifies the peer's evidence against what this side saw of the session.
    fn judge(&self, theirs: &Evidence, expected: &Binding) -> Result<Verdict, Rejection> {
        judge(&self.verifier, theirs, expected)
    }
}

/// Verifies a peer's evidence with `verifier` against what this side saw of the session: the
/// same steps for a node judging a node and a party judging a node.
pub(super) fn judge(
    verifier: &Verifier,
    theirs: &Evidence,
    expected: &Binding,
) -> Result<Verdict, Rejection> {
    let want = expected.report_data();
    match verifier.verify(
        &theirs.report,
        &theirs.vcek_der,
        Some(&want),
        SystemTime::now(),
    ) {
        Ok(verdict) => Ok(verdict),
        // Authentic and acceptable in every other respect, but bound to something else.
        Err(VerifyError::Policy(PolicyViolation::ReportData { .. })) => {
            Err(explain_binding(theirs, expected, &want).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs CPU-bound work (report signing, verification: milliseconds of pure-Rust P-384 and
/// RSA) on tokio's blocking pool, so one handshake does not stall other connections' I/O.
/// Outside a tokio runtime it runs inline.
pub(super) async fn off_executor<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(work).await {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("blocking task for the attestation exchange was cancelled: {e}"),
        },
        Err(_) => work(),
    }
}

/// Names what an authentic report binds instead of this session's peer. The sender's claimed
/// binding is used only if it hashes to the report's signed REPORT_DATA, which makes it what
/// the report actually binds (SHA-512 collision resistance).
fn explain_binding(theirs: &Evidence, expected: &Binding, want: &[u8; 64]) -> BindingError {
    let found = match Report::decode(&theirs.report) {
        Ok(report) => *report.report_data(),
        // Unreachable in practice: the verifier decoded this report before it got this far.
        Err(_) => [0u8; 64],
    };
    let claim = &theirs.binding;
    if claim.report_data() != found {
        return BindingError::Unexplained {
            expected: hex::encode(want),
            found: hex::encode(found),
        };
    }
    if claim.role != expected.role {
        BindingError::Reflected {
            bound: claim.role,
            peer: expected.role,
        }
    } else if claim.spki_der != expected.spki_der {
        BindingError::OtherKey {
            bound_key: spki_fingerprint(&claim.spki_der),
            peer_key: spki_fingerprint(&expected.spki_der),
        }
    } else if claim.exporter != expected.exporter {
        BindingError::StaleSession
    } else {
        // Equal claims hash equal; kept total rather than panicking on untrusted input.
        BindingError::Unexplained {
            expected: hex::encode(want),
            found: hex::encode(found),
        }
    }
}

/// What we tell a peer we refuse: the reason without our own wrapper text.
fn refusal_reason(err: &AttestedTlsError) -> String {
    match err {
        AttestedTlsError::PeerRejected { reason, .. } => reason.to_string(),
        other => other.to_string(),
    }
}

pub(super) fn log_accepted(verdict: &Verdict, peer_role: Role, peer_key: &str) {
    let measurement = hex::encode(verdict.measurement);
    if verdict.simulated {
        tracing::warn!(
            %peer_role, %peer_key, %measurement,
            "attested TLS: accepted peer on SIMULATED attestation (no hardware protection)"
        );
    } else {
        tracing::info!(%peer_role, %peer_key, %measurement, "attested TLS: accepted SEV-SNP attested peer");
    }
}

/// The peer's SubjectPublicKeyInfo (from the certificate whose key signed the handshake) and
/// this session's exporter value.
fn session_facts<IO>(
    tls: &TlsStream<IO>,
    label: &[u8],
) -> Result<(Vec<u8>, [u8; EXPORTER_LEN]), AttestedTlsError> {
    let fail = |what: String| AttestedTlsError::Io {
        stage: "reading the TLS session",
        source: io::Error::other(what),
    };
    let (certs, exporter) = match tls {
        TlsStream::Client(s) => {
            let conn = s.get_ref().1;
            (
                conn.peer_certificates(),
                conn.export_keying_material([0u8; EXPORTER_LEN], label, None),
            )
        }
        TlsStream::Server(s) => {
            let conn = s.get_ref().1;
            (
                conn.peer_certificates(),
                conn.export_keying_material([0u8; EXPORTER_LEN], label, None),
            )
        }
    };
    let cert = certs
        .and_then(|c| c.first())
        .ok_or_else(|| fail("the peer presented no certificate".into()))?;
    let spki = spki_of(cert).map_err(|e| fail(format!("the peer's certificate: {e}")))?;
    let exporter = exporter.map_err(|e| fail(format!("TLS exporter: {e}")))?;
    Ok((spki, exporter))
}

pub(super) fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<PeerKeyVerifier>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)?;
    // No resumption: a resumed session skips certificate authentication, so every connection
    // proves key possession afresh; and no 0-RTT data can precede the evidence exchange.
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<PeerKeyVerifier>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

pub(super) fn io_err(stage: &'static str) -> impl Fn(io::Error) -> AttestedTlsError {
    move |source| AttestedTlsError::Io { stage, source }
}

/// A TLS stream whose peer passed attestation, with the verdict. Reads and writes go to the
/// TLS stream.
#[derive(Debug)]
pub struct AttestedStream<IO> {
    stream: TlsStream<IO>,
    peer: Verdict,
    peer_key: String,
}

impl<IO> AttestedStream<IO> {
    /// The peer's verified verdict (check `simulated`).
    pub fn peer(&self) -> &Verdict {
        &self.peer
    }

    /// SHA-256 of the peer's TLS SubjectPublicKeyInfo, hex.
    pub fn peer_key(&self) -> &str {
        &self.peer_key
    }

    /// The underlying TLS stream.
    pub fn get_ref(&self) -> &TlsStream<IO> {
        &self.stream
    }

    /// The TLS stream and the verdict.
    pub fn into_parts(self) -> (TlsStream<IO>, Verdict) {
        (self.stream, self.peer)
    }
}

/// Reads and writes of a stream type that wraps a `TlsStream` in its `stream` field go
/// straight to it (the attested streams of both modes).
macro_rules! forward_io_to_tls {
    ($stream:ident) => {
        impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for $stream<IO> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
            }
        }

        impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for $stream<IO> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().stream).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
            }
        }
    };
}
pub(super) use forward_io_to_tls;

forward_io_to_tls!(AttestedStream);
