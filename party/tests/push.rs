//! Pushing a dataset: resumed after the connection is cut (by a TCP proxy), checked end to
//! end by SHA-256, refused whole when the backend refuses a record, and never started when
//! the node's evidence does not verify.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bastion_attestation::sim::LaunchConfig;
use bastion_attestation::tls::{AttestedEndpoint, AttestedTlsError, PartyClient, Rejection};
use bastion_attestation::VerifyError;
use bastion_party::protocol::{Request, Response, CHUNK};
use bastion_party::{Client, ClientLimits, Connection, PartyError, PushEvent};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_cut_mid_way_resumes_from_what_the_node_holds() {
    let parties = Parties::new();
    let node = TestNode::start(parties.roles()).await;
    let content = dataset(3 * CHUNK + 12345, 1);
    let path = temp_file("a.txt", &content);
    // The first connection dies after 1.3 chunks of the client's bytes.
    let proxy = Proxy::start(node.addr, Some((CHUNK as u64 * 13) / 10)).await;
    let client = node.client(&parties.owner_a, Some(proxy.addr));

    let mut events = Vec::new();
    let outcome = client
        .push(&meta("hospital-a"), &path, &mut |e| events.push(e))
        .await
        .unwrap();

    assert_eq!(outcome.len, content.len() as u64);
    assert_eq!(outcome.sha256, hex::encode(sha256(&content)));
    assert_eq!(outcome.sealed_sha256, sealed_digest(&content));
    assert_eq!(outcome.begins.len(), 2, "{:?}", outcome.begins);
    assert_eq!(outcome.begins[0], 0);
    assert_eq!(
        outcome.begins[1], CHUNK as u64,
        "the node held the one whole chunk that got through"
    );
    assert_eq!(proxy.connections.load(Ordering::SeqCst), 2);
    assert!(events
        .iter()
        .any(|e| matches!(e, PushEvent::Reconnecting { attempt: 1, .. })));
    assert_eq!(
        events.last(),
        Some(&PushEvent::Held {
            held: content.len() as u64,
            total: content.len() as u64
        })
    );
    // Resumed, not restarted: well under two copies crossed the proxy.
    assert!(
        proxy.up() < content.len() as u64 + 2 * CHUNK as u64,
        "{}",
        proxy.up()
    );

    let accepted = node.backend.datasets.lock().unwrap();
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        accepted[0].2, content,
        "the node got the file, whole and in order"
    );
    assert_eq!(
        node.server.held_bytes(),
        0,
        "nothing stays held after a push"
    );
}

/// An attested connection of `party` to `node`.
async fn connect(
    node: &TestNode,
    party: &bastion_attestation::tls::PartyIdentity,
) -> Connection<tokio::net::TcpStream> {
    let client = PartyClient::new(party, verifier()).unwrap();
    Connection::open(&node.addr.to_string(), &client, &ClientLimits::default())
        .await
        .unwrap()
}

fn refusal(response: Response) -> String {
    match response {
        Response::Refused(r) => r.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sha256_is_refused_and_nothing_reaches_the_backend() {
    let parties = Parties::new();
    let node = TestNode::start(parties.roles()).await;
    let content = dataset(CHUNK + 100, 2);
    let mut conn = connect(&node, &parties.owner_a).await;
    let wrong = sha256(b"another file");
    let begin = Request::PushBegin {
        meta: meta("hospital-a"),
        len: content.len() as u64,
        sha256: wrong,
    };
    assert_eq!(
        conn.request(&begin).await.unwrap(),
        Response::PushHeld { held: 0 }
    );
    let mut offset = 0;
    for chunk in content.chunks(CHUNK) {
        let request = Request::PushChunk {
            offset,
            bytes: chunk.to_vec(),
        };
        offset += chunk.len() as u64;
        assert_eq!(
            conn.request(&request).await.unwrap(),
            Response::PushHeld { held: offset }
        );
    }
    let text = refusal(conn.request(&Request::PushEnd).await.unwrap());
    assert!(text.contains(&hex::encode(sha256(&content))), "{text}");
    assert!(
        text.contains(&hex::encode(wrong)) && text.contains("nothing was kept"),
        "{text}"
    );
    assert!(
        node.backend.offered.lock().unwrap().is_empty(),
        "nothing reached the backend"
    );
    assert_eq!(node.server.held_bytes(), 0);
    // Nothing is held to resume either.
    assert_eq!(
        conn.request(&begin).await.unwrap(),
        Response::PushHeld { held: 0 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_overruns_and_oversized_declarations_are_refused() {
    let parties = Parties::new();
    let node = TestNode::start(parties.roles()).await;
    let mut conn = connect(&node, &parties.owner_a).await;
    let content = dataset(1000, 3);
    let too_big = Request::PushBegin {
        meta: meta("hospital-a"),
        len: 4 * 1024 * 1024 * 1024 + 1,
        sha256: [0; 32],
    };
    assert!(refusal(conn.request(&too_big).await.unwrap()).contains("declares 4294967297"));
    let begin = Request::PushBegin {
        meta: meta("hospital-a"),
        len: content.len() as u64,
        sha256: sha256(&content),
    };
    assert_eq!(
        conn.request(&begin).await.unwrap(),
        Response::PushHeld { held: 0 }
    );
    let gap = Request::PushChunk {
        offset: 10,
        bytes: content[10..20].to_vec(),
    };
    assert!(refusal(conn.request(&gap).await.unwrap()).contains("chunks must be contiguous"));
    let over = Request::PushChunk {
        offset: 0,
        bytes: dataset(1001, 3),
    };
    assert!(refusal(conn.request(&over).await.unwrap()).contains("exceed the declared length 1000"));
    let early = refusal(conn.request(&Request::PushEnd).await.unwrap());
    assert!(early.contains("0 of 1000 bytes"), "{early}");
    // Still in step: the push completes.
    let rest = Request::PushChunk {
        offset: 0,
        bytes: content.clone(),
    };
    assert_eq!(
        conn.request(&rest).await.unwrap(),
        Response::PushHeld { held: 1000 }
    );
    assert!(matches!(
        conn.request(&Request::PushEnd).await.unwrap(),
        Response::Pushed { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_refusal_reaches_the_client_verbatim_and_nothing_stays_held() {
    let parties = Parties::new();
    let node = TestNode::start(parties.roles()).await;
    let mut content = dataset(2 * CHUNK, 4);
    content.extend_from_slice(BAD_RECORD);
    let path = temp_file("bad.txt", &content);
    let client = node.client(&parties.owner_a, None);
    match client.push(&meta("hospital-a"), &path, &mut |_| {}).await {
        Err(PartyError::Backend { request, reason }) => {
            assert_eq!(request, "PushEnd");
            assert_eq!(reason, "hospital-a: record 2 is not a JSON object");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        node.backend.offered.lock().unwrap().len(),
        1,
        "offered once, not retried"
    );
    assert!(node.backend.datasets.lock().unwrap().is_empty());
    assert_eq!(node.server.held_bytes(), 0);
    let mut conn = connect(&node, &parties.owner_a).await;
    let begin = Request::PushBegin {
        meta: meta("hospital-a"),
        len: content.len() as u64,
        sha256: sha256(&content),
    };
    assert_eq!(
        conn.request(&begin).await.unwrap(),
        Response::PushHeld { held: 0 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_verification_receives_no_request_byte() {
    let parties = Parties::new();
    // The node runs an image the party's policy does not list.
    let stranger = AttestedEndpoint::new(
        platform()
            .launch(LaunchConfig::with_measurement([0x66; 48]))
            .unwrap(),
        verifier(),
    )
    .unwrap();
    let node = TestNode::start_with(parties.roles(), stranger).await;
    let content = dataset(2 * CHUNK, 5);
    let path = temp_file("never.txt", &content);

    // Baseline: the bytes a party sends when it connects, refuses the node, and stops.
    let baseline = Proxy::start(node.addr, None).await;
    let party = PartyClient::new(&parties.owner_a, verifier()).unwrap();
    let tcp = tokio::net::TcpStream::connect(baseline.addr).await.unwrap();
    assert!(party.connect(tcp).await.is_err());

    // The push: the same bytes, not one more (no request frame, no retry).
    let proxy = Proxy::start(node.addr, None).await;
    let client = Client::new(proxy.addr.to_string(), &parties.owner_a, verifier())
        .unwrap()
        .with_limits(ClientLimits::default().with_retries(3, Duration::from_millis(10)));
    match client.push(&meta("hospital-a"), &path, &mut |_| {}).await {
        Err(PartyError::Attestation(e)) => match *e {
            AttestedTlsError::PeerRejected { reason, .. } => assert!(
                matches!(reason, Rejection::Verify(VerifyError::Policy(_))),
                "{reason:?}"
            ),
            other => panic!("{other}"),
        },
        other => panic!("{other:?}"),
    }
    // Let both proxies see the connections close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (push, base) = (proxy.up(), baseline.up());
    assert_eq!(proxy.connections.load(Ordering::SeqCst), 1, "no retry");
    // The only variable part is the ECDSA signature in the CertificateVerify (DER, +-2).
    // The smallest request frame would add a whole TLS record (22 bytes and more).
    assert!(
        push.abs_diff(base) <= 8,
        "the push sent {push} bytes, a bare refused handshake {base}"
    );
    assert!(node.backend.offered.lock().unwrap().is_empty());
    assert_eq!(node.server.held_bytes(), 0);
}
