//! Mutually attested TLS on loopback with the simulated TEE: good peers get each other's
//! verdicts; each kind of bad peer is refused, and both ends say why; the server shows its
//! evidence only to a client whose evidence it accepted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bastion_attestation::error::{ChainError, MalformedError, PolicyViolation};
use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform, SimulatedTee, POLICY_DEBUG};
use bastion_attestation::tls::{
    AttestError, AttestedEndpoint, AttestedStream, AttestedTlsError, Attester, Binding,
    BindingError, Evidence, Rejection, Role, EXPORTER_LABEL, EXPORTER_LEN, PROTOCOL_VERSION,
};
use bastion_attestation::{Policy, TrustAnchors, Verifier, VerifyError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use x509_cert::der::{Decode, Encode};

type Outcome = Result<AttestedStream<TcpStream>, AttestedTlsError>;

/// One chain per test binary and run, shared with tests/sim.rs through the target directory.
fn platform() -> &'static SimulatedPlatform {
    static P: OnceLock<SimulatedPlatform> = OnceLock::new();
    P.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        SimulatedPlatform::load_or_generate(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tee"),
        )
        .expect("simulated platform")
    })
}

/// Accepts the default measurement only, on the simulated chain.
fn verifier() -> Verifier {
    let p = platform();
    Verifier::new(
        Policy::new(vec![LaunchConfig::default_measurement()]),
        TrustAnchors::simulated(p.ark_der(), p.ask_der()).unwrap(),
    )
}

fn tee(config: LaunchConfig) -> SimulatedTee {
    platform().launch(config).unwrap()
}

fn node(attester: impl Attester + 'static) -> AttestedEndpoint {
    AttestedEndpoint::new(attester, verifier()).unwrap()
}

fn good_node() -> AttestedEndpoint {
    node(tee(LaunchConfig::default()))
}

/// Connects `client` to `server` over loopback TCP; both outcomes.
async fn connect(client: &AttestedEndpoint, server: &AttestedEndpoint) -> (Outcome, Outcome) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    let accepted = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        server.accept(io).await
    });
    let io = TcpStream::connect(addr).await.unwrap();
    let both = async {
        let c = client.connect(io).await;
        let s = accepted.await.unwrap();
        (c, s)
    };
    tokio::time::timeout(Duration::from_secs(60), both)
        .await
        .expect("the exchange finishes")
}

/// Records the evidence it gives, for an attacker to replay later.
struct Recording {
    tee: SimulatedTee,
    given: Mutex<Vec<Evidence>>,
}

impl Attester for Recording {
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError> {
        let evidence = self.tee.attest(binding)?;
        self.given.lock().unwrap().push(evidence.clone());
        Ok(evidence)
    }
}

/// Ignores the session and sends fixed evidence.
struct Replay(Evidence);

impl Attester for Replay {
    fn attest(&self, _: &Binding) -> Result<Evidence, AttestError> {
        Ok(self.0.clone())
    }
}

/// A genuine guest that attests once and replays that report for every later session.
struct ReplaysItsFirstReport {
    tee: SimulatedTee,
    first: Mutex<Option<Evidence>>,
}

impl Attester for ReplaysItsFirstReport {
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError> {
        let mut first = self.first.lock().unwrap();
        if first.is_none() {
            *first = Some(self.tee.attest(binding)?);
        }
        Ok(first.clone().unwrap())
    }
}

/// Evidence of a good client from a past session.
async fn recorded_client_evidence() -> Evidence {
    let recording = Arc::new(Recording {
        tee: tee(LaunchConfig::default()),
        given: Mutex::new(Vec::new()),
    });
    let victim = node(Arc::clone(&recording));
    let (c, s) = connect(&victim, &good_node()).await;
    c.unwrap();
    s.unwrap();
    let given = recording.given.lock().unwrap();
    assert_eq!(given.len(), 1);
    given[0].clone()
}

fn rejection(outcome: Outcome) -> (Role, String, Rejection) {
    match outcome {
        Err(AttestedTlsError::PeerRejected {
            peer_role,
            peer_key,
            reason,
        }) => (peer_role, peer_key, reason),
        Err(other) => panic!("expected a rejection of the peer, got: {other}"),
        Ok(_) => panic!("expected a rejection of the peer, got a connection"),
    }
}

fn refused_by_peer(outcome: Outcome) -> (String, String) {
    match outcome {
        Err(AttestedTlsError::RefusedByPeer { code, reason }) => (code, reason),
        Err(other) => panic!("expected the peer's refusal, got: {other}"),
        Ok(_) => panic!("expected the peer's refusal, got a connection"),
    }
}

#[tokio::test]
async fn two_good_peers_attest_each_other_and_talk() {
    let (a, b) = (good_node(), good_node());
    let (c, s) = connect(&a, &b).await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());

    for (stream, peer) in [(&c, &b), (&s, &a)] {
        let verdict = stream.peer();
        assert!(verdict.simulated, "simulated evidence is labelled as such");
        assert!(verdict.report_data_checked && verdict.measurement_checked);
        assert_eq!(verdict.measurement, LaunchConfig::default_measurement());
        assert_eq!(stream.peer_key(), peer.key_fingerprint());
    }
    assert_ne!(
        a.key_fingerprint(),
        b.key_fingerprint(),
        "each node has its own key"
    );

    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    s.write_all(b"pong").await.unwrap();
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

#[tokio::test]
async fn a_peer_whose_measurement_is_not_allowed_is_refused() {
    let stranger = node(tee(LaunchConfig::with_measurement([0x66; 48])));
    let (c, s) = connect(&good_node(), &stranger).await;

    let (role, _, reason) = rejection(c);
    assert_eq!(role, Role::Server);
    assert!(
        matches!(
            reason,
            Rejection::Verify(VerifyError::Policy(PolicyViolation::Measurement { .. }))
        ),
        "{reason:?}"
    );
    let (code, message) = refused_by_peer(s);
    assert_eq!(code, reason.code());
    assert!(
        message.contains(&"66".repeat(48)),
        "names the measurement: {message}"
    );
}

#[tokio::test]
async fn a_peer_that_allows_debugging_is_refused() {
    let debuggable = node(tee(LaunchConfig {
        policy: LaunchConfig::default().policy | POLICY_DEBUG,
        ..LaunchConfig::default()
    }));
    let (c, s) = connect(&debuggable, &good_node()).await;

    let (role, _, reason) = rejection(s);
    assert_eq!(role, Role::Client);
    assert!(
        matches!(
            reason,
            Rejection::Verify(VerifyError::Policy(PolicyViolation::DebugAllowed { .. }))
        ),
        "{reason:?}"
    );
    let (code, message) = refused_by_peer(c);
    assert_eq!(code, reason.code());
    assert!(message.to_lowercase().contains("debug"), "{message}");
}

#[tokio::test]
async fn a_report_replayed_by_a_machine_without_its_key_is_refused() {
    // The attacker has a good node's evidence (report and VCEK, all authentic) but not its
    // TLS key: it handshakes with its own key, which the report does not bind.
    let stolen = recorded_client_evidence().await;
    let victim_key = bastion_attestation::tls::spki_fingerprint(&stolen.binding.spki_der);
    let attacker = node(Replay(stolen));
    let (c, s) = connect(&attacker, &good_node()).await;

    let (role, peer_key, reason) = rejection(s);
    assert_eq!(role, Role::Client);
    assert_eq!(peer_key, attacker.key_fingerprint());
    match &reason {
        Rejection::Binding(BindingError::OtherKey {
            bound_key,
            peer_key,
        }) => {
            assert_eq!(bound_key, &victim_key);
            assert_eq!(peer_key, &attacker.key_fingerprint());
        }
        other => panic!("{other:?}"),
    }
    let (code, message) = refused_by_peer(c);
    assert_eq!(code, "binding.other_key");
    assert!(message.contains("replayed"), "{message}");
}

#[tokio::test]
async fn a_stale_report_from_an_earlier_session_is_refused() {
    // A genuine guest holding its key, replaying its first report: the second session's
    // exporter differs, so the report is stale.
    let replayer = node(ReplaysItsFirstReport {
        tee: tee(LaunchConfig::default()),
        first: Mutex::new(None),
    });
    let server = good_node();
    let (c, s) = connect(&replayer, &server).await;
    c.expect("the first session is fresh");
    s.expect("the first session is fresh");

    let (c, s) = connect(&replayer, &server).await;
    let (_, _, reason) = rejection(s);
    assert!(
        matches!(reason, Rejection::Binding(BindingError::StaleSession)),
        "{reason:?}"
    );
    let (code, message) = refused_by_peer(c);
    assert_eq!(code, "binding.stale_session");
    assert!(message.contains("another TLS session"), "{message}");
}

#[tokio::test]
async fn a_report_reflected_with_the_wrong_role_is_refused() {
    // A client's evidence, replayed by a server.
    let reflector = node(Replay(recorded_client_evidence().await));
    let (c, s) = connect(&good_node(), &reflector).await;

    let (_, _, reason) = rejection(c);
    assert_eq!(
        reason.to_string(),
        BindingError::Reflected {
            bound: Role::Client,
            peer: Role::Server
        }
        .to_string()
    );
    let (code, _) = refused_by_peer(s);
    assert_eq!(code, "binding.reflected");
}

#[tokio::test]
async fn garbage_evidence_is_refused_as_malformed() {
    let mut evidence = recorded_client_evidence().await;
    evidence.report.truncate(1000);
    let (c, s) = connect(&node(Replay(evidence)), &good_node()).await;

    let (_, _, reason) = rejection(s);
    assert!(
        matches!(
            reason,
            Rejection::Verify(VerifyError::Malformed(MalformedError::ReportLength {
                found: 1000,
                ..
            }))
        ),
        "{reason:?}"
    );
    let (code, _) = refused_by_peer(c);
    assert_eq!(code, reason.code());
}

#[tokio::test]
async fn a_verifier_not_configured_for_the_simulated_chain_refuses_it() {
    let strict = AttestedEndpoint::new(
        tee(LaunchConfig::default()),
        Verifier::new(
            Policy::new(vec![LaunchConfig::default_measurement()]),
            TrustAnchors::amd(),
        ),
    )
    .unwrap();
    let (c, s) = connect(&strict, &good_node()).await;

    // The strict side refuses the simulated server; the server accepted the strict side (it
    // is configured for the simulated chain) and hears the refusal.
    let (_, _, reason) = rejection(c);
    assert!(
        matches!(
            reason,
            Rejection::Verify(VerifyError::Chain(ChainError::NotSignedByPinnedKey { .. }))
        ),
        "{reason:?}"
    );
    let (code, _) = refused_by_peer(s);
    assert_eq!(code, reason.code());
}

#[tokio::test]
async fn a_node_that_cannot_attest_says_so_and_is_refused() {
    struct Broken;
    impl Attester for Broken {
        fn attest(&self, _: &Binding) -> Result<Evidence, AttestError> {
            Err(AttestError {
                reason: "/dev/sev-guest: no such device".into(),
            })
        }
    }
    let (c, s) = connect(&node(Broken), &good_node()).await;
    match c {
        Err(AttestedTlsError::LocalEvidence(e)) => assert!(e.reason.contains("sev-guest")),
        other => panic!("{:?}", other.err()),
    }
    let (code, message) = refused_by_peer(s);
    assert_eq!(code, "local_evidence");
    assert!(message.contains("sev-guest"), "{message}");
}

#[tokio::test]
async fn many_sessions_reuse_one_endpoint() {
    let (a, b) = (good_node(), good_node());
    let mut exporters_seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let (c, s) = connect(&a, &b).await;
        let (c, _s) = (c.unwrap(), s.unwrap());
        // Each session binds a fresh exporter, so each report's REPORT_DATA differs.
        assert!(exporters_seen.insert(c.peer().report_data));
    }
}

/// Counts the reports it is asked for.
struct Counting {
    tee: SimulatedTee,
    made: AtomicUsize,
}

impl Attester for Counting {
    fn attest(&self, binding: &Binding) -> Result<Evidence, AttestError> {
        self.made.fetch_add(1, Ordering::SeqCst);
        self.tee.attest(binding)
    }
}

#[tokio::test]
async fn a_server_attests_itself_only_for_a_client_it_accepted() {
    let counting = Arc::new(Counting {
        tee: tee(LaunchConfig::default()),
        made: AtomicUsize::new(0),
    });
    let server = node(Arc::clone(&counting));
    let debuggable = node(tee(LaunchConfig {
        policy: LaunchConfig::default().policy | POLICY_DEBUG,
        ..LaunchConfig::default()
    }));

    let (c, s) = connect(&debuggable, &server).await;
    refused_by_peer(c);
    rejection(s);
    assert_eq!(
        counting.made.load(Ordering::SeqCst),
        0,
        "a refused client made the server sign a report"
    );

    // Control: an accepted client gets exactly one report out of it.
    let (c, s) = connect(&good_node(), &server).await;
    c.unwrap();
    s.unwrap();
    assert_eq!(counting.made.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_that_cannot_attest_says_so_after_accepting_the_client() {
    struct Broken;
    impl Attester for Broken {
        fn attest(&self, _: &Binding) -> Result<Evidence, AttestError> {
            Err(AttestError {
                reason: "/dev/sev-guest: no such device".into(),
            })
        }
    }
    let (c, s) = connect(&good_node(), &node(Broken)).await;
    match s {
        Err(AttestedTlsError::LocalEvidence(e)) => assert!(e.reason.contains("sev-guest")),
        other => panic!("{:?}", other.err()),
    }
    let (code, message) = refused_by_peer(c);
    assert_eq!(code, "local_evidence");
    assert!(message.contains("sev-guest"), "{message}");
}

// --- A hand-made client: plain rustls, the exchange written by hand from the documented
// --- wire format, so a test sees every byte the server sends and when.

/// Accepts any server certificate that signed the handshake (as the endpoint's own verifier).
#[derive(Debug)]
struct AnyServerKey(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerKey {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client with its own key, and that key's SPKI (what its evidence must bind).
fn raw_client() -> (tokio_rustls::TlsConnector, Vec<u8>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["raw-client".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let spki = x509_cert::Certificate::from_der(cert.der())
        .unwrap()
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerKey(provider)))
        .with_client_auth_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (tokio_rustls::TlsConnector::from(Arc::new(config)), spki)
}

/// `len:u32be body` with the body as documented in the wire module.
fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn evidence_frame(ev: &Evidence) -> Vec<u8> {
    let mut body = vec![PROTOCOL_VERSION, b'E', b'C'];
    for (i, field) in [&ev.binding.spki_der, &ev.report, &ev.vcek_der]
        .into_iter()
        .enumerate()
    {
        body.extend((field.len() as u16).to_be_bytes());
        body.extend(field);
        if i == 0 {
            body.extend(ev.binding.exporter);
        }
    }
    frame(body)
}

/// The frames the server sends (each frame's body) until it closes, `enough` of them came, or
/// `limit` passes; and the number of application bytes read.
async fn read_frames(
    tls: &mut (impl AsyncRead + Unpin),
    enough: usize,
    limit: Duration,
) -> (Vec<Vec<u8>>, usize) {
    let (mut bytes, mut frames, mut total) = (Vec::new(), Vec::new(), 0);
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + limit;
    while frames.len() < enough {
        match tokio::time::timeout_at(until, tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                total += n;
                bytes.extend_from_slice(&buf[..n]);
            }
            // Closed (with or without close_notify), or `limit` passed.
            _ => break,
        }
        while bytes.len() >= 4 {
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            if bytes.len() < 4 + len {
                break;
            }
            frames.push(bytes[4..4 + len].to_vec());
            bytes.drain(..4 + len);
        }
    }
    assert!(
        bytes.is_empty(),
        "{} bytes of a frame cut short",
        bytes.len()
    );
    (frames, total)
}

fn kinds(frames: &[Vec<u8>]) -> Vec<u8> {
    frames
        .iter()
        .map(|body| {
            assert_eq!(body[0], PROTOCOL_VERSION);
            body[1]
        })
        .collect()
}

/// Runs `server.accept` (given up after `patience`) against the hand-made client; the client
/// sends evidence from `client_tee` (bound to this session) or nothing, then reads up to
/// `enough` frames, or until the server closes.
async fn raw_session(
    server: &AttestedEndpoint,
    client_tee: Option<SimulatedTee>,
    patience: Duration,
    enough: usize,
) -> (
    TlsStream<TcpStream>,
    Vec<Vec<u8>>,
    usize,
    tokio::task::JoinHandle<Result<Outcome, tokio::time::error::Elapsed>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    let accepted = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        tokio::time::timeout(patience, server.accept(io)).await
    });
    let (connector, spki_der) = raw_client();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("bastion-node").unwrap(), tcp)
        .await
        .expect("TLS handshake with the server");
    if let Some(client_tee) = client_tee {
        let exporter = tls
            .get_ref()
            .1
            .export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
            .unwrap();
        let evidence = client_tee
            .attest(&Binding {
                role: Role::Client,
                spki_der,
                exporter,
            })
            .unwrap();
        tls.write_all(&evidence_frame(&evidence)).await.unwrap();
        tls.flush().await.unwrap();
    }
    // Generous: the server answers in milliseconds, or gives up after `patience` and closes.
    let (frames, total) = read_frames(&mut tls, enough, patience + Duration::from_secs(10)).await;
    (tls, frames, total, accepted)
}

#[tokio::test]
async fn a_client_that_sends_no_evidence_receives_nothing_from_the_server() {
    let counting = Arc::new(Counting {
        tee: tee(LaunchConfig::default()),
        made: AtomicUsize::new(0),
    });
    let server = node(Arc::clone(&counting));
    let patience = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let (_tls, frames, total, accepted) = raw_session(&server, None, patience, usize::MAX).await;

    // The server waited for evidence, gave up, and closed, having written nothing.
    assert_eq!(
        total,
        0,
        "the server sent {total} bytes: {:?}",
        kinds(&frames)
    );
    assert!(
        accepted.await.unwrap().is_err(),
        "the server's accept should still be waiting when given up"
    );
    assert!(started.elapsed() >= patience);
    assert_eq!(
        counting.made.load(Ordering::SeqCst),
        0,
        "no report was made"
    );
}

#[tokio::test]
async fn a_refused_client_receives_the_refusal_and_no_server_evidence() {
    let debuggable = tee(LaunchConfig {
        policy: LaunchConfig::default().policy | POLICY_DEBUG,
        ..LaunchConfig::default()
    });
    let (_tls, frames, _, accepted) = raw_session(
        &good_node(),
        Some(debuggable),
        Duration::from_secs(10),
        usize::MAX,
    )
    .await;

    assert_eq!(
        kinds(&frames),
        vec![b'R'],
        "exactly one refusal, then the close"
    );
    let refusal = String::from_utf8_lossy(&frames[0]);
    assert!(refusal.contains("policy.debug"), "{refusal}");
    let (role, _, reason) = rejection(accepted.await.unwrap().expect("the server answered"));
    assert_eq!(role, Role::Client);
    assert!(
        matches!(
            reason,
            Rejection::Verify(VerifyError::Policy(PolicyViolation::DebugAllowed { .. }))
        ),
        "{reason:?}"
    );
}

#[tokio::test]
async fn an_accepted_client_receives_acceptance_then_the_server_evidence() {
    // The control for the two tests above: the same hand-made client, with good evidence.
    let server = good_node();
    let (mut tls, frames, _, accepted) = raw_session(
        &server,
        Some(tee(LaunchConfig::default())),
        Duration::from_secs(10),
        2,
    )
    .await;
    assert_eq!(kinds(&frames), vec![b'A', b'E']);
    assert_eq!(frames[1][2], b'S', "the server's evidence binds its role");

    tls.write_all(&frame(vec![PROTOCOL_VERSION, b'A']))
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let stream = accepted
        .await
        .unwrap()
        .unwrap()
        .expect("the server accepts");
    assert_eq!(
        stream.peer().measurement,
        LaunchConfig::default_measurement()
    );
}
