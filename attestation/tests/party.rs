//! Party mode of attested TLS on loopback with the simulated TEE: a party (no TEE, known by
//! its key) and a node. A known party gets the node's verified evidence; an unknown one is
//! refused and shown nothing; a node the party's policy refuses, or one replaying evidence of
//! another session, is refused by the party; a client without a certificate never gets past
//! TLS; and neither mode can be mistaken for the other.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bastion_attestation::error::PolicyViolation;
use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform, SimulatedTee};
use bastion_attestation::tls::{
    AttestError, AttestedEndpoint, AttestedStream, AttestedTlsError, Attester, Binding,
    BindingError, Evidence, Mode, PartyClient, PartyIdentity, PartyStream, Rejection, Role,
    VerifyFile, PROTOCOL_VERSION,
};
use bastion_attestation::{Policy, TrustAnchors, Verifier, VerifyError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type ClientOutcome = Result<AttestedStream<TcpStream>, AttestedTlsError>;
type ServerOutcome = Result<PartyStream<TcpStream>, AttestedTlsError>;

/// One chain per test binary and run, shared with the other attestation tests.
fn platform() -> &'static SimulatedPlatform {
    static P: OnceLock<SimulatedPlatform> = OnceLock::new();
    P.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        SimulatedPlatform::load_or_generate(platform_dir()).expect("simulated platform")
    })
}

fn platform_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tee")
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

fn node_with(attester: impl Attester + 'static) -> AttestedEndpoint {
    AttestedEndpoint::new(attester, verifier()).unwrap()
}

fn good_node() -> AttestedEndpoint {
    node_with(tee(LaunchConfig::default()))
}

/// Counts the reports it makes.
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

/// Runs `accept_party` on `node` (knowing `known` keys) against `party` over loopback TCP.
async fn party_to_node(
    party: &PartyClient,
    node: &AttestedEndpoint,
    known: Vec<String>,
) -> (ClientOutcome, ServerOutcome) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = node.clone();
    let accepted = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        let is_known = move |key: &str| known.iter().any(|k| k == key);
        node.accept_party(io, &is_known).await
    });
    let both = async {
        let io = TcpStream::connect(addr).await.unwrap();
        let c = party.connect(io).await;
        (c, accepted.await.unwrap())
    };
    tokio::time::timeout(Duration::from_secs(60), both)
        .await
        .expect("the exchange finishes")
}

fn party() -> (PartyIdentity, PartyClient) {
    let id = PartyIdentity::generate().unwrap();
    let client = PartyClient::new(&id, verifier()).unwrap();
    (id, client)
}

#[tokio::test]
async fn a_known_party_gets_the_nodes_verified_evidence() {
    let (id, client) = party();
    let node = good_node();
    let (c, s) = party_to_node(&client, &node, vec![id.fingerprint()]).await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());

    let verdict = c.peer();
    assert!(verdict.simulated && verdict.measurement_checked && verdict.report_data_checked);
    assert_eq!(verdict.measurement, LaunchConfig::default_measurement());
    assert_eq!(c.peer_key(), node.key_fingerprint());
    assert_eq!(s.party_key(), id.fingerprint());
    assert_eq!(s.party_spki(), id.spki_der());

    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    s.write_all(b"pong").await.unwrap();
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

#[tokio::test]
async fn an_unknown_party_is_refused_and_no_evidence_is_made() {
    let (id, client) = party();
    let recording = Arc::new(Recording {
        tee: tee(LaunchConfig::default()),
        given: Mutex::new(Vec::new()),
    });
    let node = node_with(Arc::clone(&recording));
    let other = PartyIdentity::generate().unwrap().fingerprint();
    let (c, s) = party_to_node(&client, &node, vec![other]).await;

    match c {
        Err(AttestedTlsError::RefusedByPeer { code, reason }) => {
            assert_eq!(code, "party.unknown");
            assert!(reason.contains(&id.fingerprint()), "{reason}");
        }
        other => panic!("expected the node's refusal, got {:?}", other.map(|_| ())),
    }
    match s {
        Err(AttestedTlsError::UnknownParty { party_key }) => {
            assert_eq!(party_key, id.fingerprint())
        }
        other => panic!("expected UnknownParty, got {:?}", other.map(|_| ())),
    }
    assert!(
        recording.given.lock().unwrap().is_empty(),
        "no report was made for a stranger"
    );
}

#[tokio::test]
async fn an_unknown_party_reads_nothing_but_the_refusal() {
    // Byte level: a TLS client with an unlisted key sends a party's hello and reads all it
    // gets until the node closes: one frame, the refusal.
    let node = good_node();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        node.accept_party(io, &|_: &str| false).await
    });
    let connector = raw_client(true);
    let io = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("bastion-node").unwrap();
    let mut tls = connector.connect(name, io).await.unwrap();
    tls.write_all(&frame(vec![PROTOCOL_VERSION, b'P']))
        .await
        .unwrap();
    let frames = read_frames(&mut tls, Duration::from_secs(30)).await;
    assert_eq!(frames.len(), 1, "only the refusal: {frames:?}");
    assert_eq!(&frames[0][..2], &[PROTOCOL_VERSION, b'R']);
    let code_len = frames[0][2] as usize;
    assert_eq!(&frames[0][3..3 + code_len], b"party.unknown");
    assert!(matches!(
        server.await.unwrap(),
        Err(AttestedTlsError::UnknownParty { .. })
    ));
}

#[tokio::test]
async fn a_node_measured_outside_the_allow_list_is_refused_by_the_party() {
    let (id, client) = party();
    let stranger = node_with(tee(LaunchConfig::with_measurement([0x66; 48])));
    let (c, s) = party_to_node(&client, &stranger, vec![id.fingerprint()]).await;

    match c {
        Err(AttestedTlsError::PeerRejected {
            peer_role, reason, ..
        }) => {
            assert_eq!(peer_role, Role::Server);
            assert!(
                matches!(
                    reason,
                    Rejection::Verify(VerifyError::Policy(PolicyViolation::Measurement { .. }))
                ),
                "{reason:?}"
            );
        }
        other => panic!("expected the party to refuse, got {:?}", other.map(|_| ())),
    }
    // The node hears why, so its operator can tell.
    match s {
        Err(AttestedTlsError::RefusedByPeer { code, reason }) => {
            assert_eq!(code, "policy.measurement");
            assert!(reason.contains(&"66".repeat(48)), "{reason}");
        }
        other => panic!("expected the party's refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn evidence_relayed_from_another_session_is_refused() {
    let (id, client) = party();
    let node = node_with(ReplaysItsFirstReport {
        tee: tee(LaunchConfig::default()),
        first: Mutex::new(None),
    });
    let (c, s) = party_to_node(&client, &node, vec![id.fingerprint()]).await;
    c.unwrap();
    s.unwrap();

    // Second session: the same node key, the report of the first session's exporter.
    let (c, s) = party_to_node(&client, &node, vec![id.fingerprint()]).await;
    match c {
        Err(AttestedTlsError::PeerRejected { reason, .. }) => assert!(
            matches!(reason, Rejection::Binding(BindingError::StaleSession)),
            "{reason:?}"
        ),
        other => panic!(
            "expected a stale-session refusal, got {:?}",
            other.map(|_| ())
        ),
    }
    assert!(matches!(
        s,
        Err(AttestedTlsError::RefusedByPeer { ref code, .. }) if code == "binding.stale_session"
    ));
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_in_the_handshake() {
    let recording = Arc::new(Recording {
        tee: tee(LaunchConfig::default()),
        given: Mutex::new(Vec::new()),
    });
    let node = node_with(Arc::clone(&recording));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        node.accept_party(io, &|_: &str| true).await
    });
    let connector = raw_client(false);
    let io = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("bastion-node").unwrap();
    // TLS 1.3: the client may finish its side before the server's verdict on its (empty)
    // certificate arrives as an alert; either way nothing of the node's follows.
    if let Ok(mut tls) = connector.connect(name, io).await {
        let _ = tls.write_all(&frame(vec![PROTOCOL_VERSION, b'P'])).await;
        let frames = read_frames(&mut tls, Duration::from_secs(30)).await;
        assert!(frames.is_empty(), "{frames:?}");
    }
    match server.await.unwrap() {
        Err(AttestedTlsError::Io { stage, source }) => {
            assert_eq!(stage, "TLS handshake");
            assert!(
                source.to_string().to_lowercase().contains("certificate"),
                "{source}"
            );
        }
        other => panic!(
            "expected a TLS handshake failure, got {:?}",
            other.map(|_| ())
        ),
    }
    assert!(recording.given.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_node_on_a_party_port_and_a_party_on_a_node_port_are_told_so() {
    let (_, client) = party();

    // A node dials a port serving parties.
    let (dialer, server) = (good_node(), good_node());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        server.accept_party(io, &|_: &str| true).await
    });
    let c = dialer
        .connect(TcpStream::connect(addr).await.unwrap())
        .await;
    let s = accepted.await.unwrap();
    assert!(
        matches!(
            c,
            Err(AttestedTlsError::ModeMismatch {
                ours: Mode::Node,
                peer: Mode::Party
            })
        ),
        "{:?}",
        c.map(|_| ())
    );
    assert!(
        matches!(
            s,
            Err(AttestedTlsError::ModeMismatch {
                ours: Mode::Party,
                peer: Mode::Node
            })
        ),
        "{:?}",
        s.map(|_| ())
    );

    // A party dials a node-to-node port.
    let server = good_node();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        server.accept(io).await
    });
    let c = client
        .connect(TcpStream::connect(addr).await.unwrap())
        .await;
    let s = accepted.await.unwrap();
    assert!(
        matches!(
            c,
            Err(AttestedTlsError::ModeMismatch {
                ours: Mode::Party,
                peer: Mode::Node
            })
        ),
        "{:?}",
        c.map(|_| ())
    );
    match s {
        Err(e @ AttestedTlsError::ModeMismatch { .. }) => {
            assert!(e.to_string().contains("check the address"), "{e}")
        }
        other => panic!("expected ModeMismatch, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_verify_toml_naming_the_simulated_platform_verifies_the_node() {
    let _ = platform();
    let dir = std::env::temp_dir().join(format!("bastion-verify-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("verify.toml");
    std::fs::write(
        &path,
        format!(
            "allowed_measurements = [\"{}\"]\n[trust]\nsimulated = true\nsimulated_platform_dir = {:?}\n",
            hex::encode(LaunchConfig::default_measurement()),
            platform_dir().display().to_string()
        ),
    )
    .unwrap();
    let verifier = VerifyFile::load_verifier(&path).unwrap();
    assert!(verifier.trust().is_simulated());
    let id = PartyIdentity::generate().unwrap();
    let client = PartyClient::new(&id, verifier).unwrap();
    let (c, s) = party_to_node(&client, &good_node(), vec![id.fingerprint()]).await;
    assert!(c.unwrap().peer().simulated);
    s.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

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

/// A plain TLS 1.3 client, with a fresh self-signed certificate or none.
fn raw_client(with_cert: bool) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerKey(provider)));
    let config = if with_cert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["raw-client".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        builder
            .with_client_auth_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `len:u32be body`.
fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// The frame bodies the server sends until it closes or `limit` passes.
async fn read_frames(tls: &mut (impl AsyncRead + Unpin), limit: Duration) -> Vec<Vec<u8>> {
    let (mut bytes, mut frames) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
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
    frames
}
