//! Every request as every kind of party, against the real server over loopback TCP with the
//! in-memory backend: exactly the allowed ones succeed, every refusal names the role, the
//! party and the request, and no response to anyone carries a record.

mod common;

use bastion_attestation::tls::{AttestedTlsError, PartyClient};
use bastion_party::protocol::{Request, Response};
use bastion_party::{ClientLimits, Connection, PartyError, Status};
use common::*;

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Ok,
    /// Refused, the reason containing this.
    Refused(&'static str),
}
use Expect::{Ok as Allowed, Refused};

const PUSHED: &[u8] = b"SECRET-RECORD-0 first\nSECRET-RECORD-1 second\n";

fn requests() -> Vec<Request> {
    vec![
        Request::PushBegin {
            meta: meta("hospital-a"),
            len: PUSHED.len() as u64,
            sha256: sha256(PUSHED),
        },
        Request::PushChunk {
            offset: 0,
            bytes: PUSHED.to_vec(),
        },
        Request::PushEnd,
        Request::Spent {
            name: "hospital-a".into(),
        },
        Request::SubmitJob {
            job_toml: "datasets = [\"hospital-a\"]\n[model]\nkind = \"resnet\"\n".into(),
        },
        Request::FetchRelease,
        Request::Status,
        // Last: it removes the dataset.
        Request::DeleteDataset {
            name: "hospital-a".into(),
        },
    ]
}

/// One row per party, one column per request of [`requests`].
fn row(who: &str) -> [Expect; 8] {
    let owners_only = Refused("only a data owner may");
    match who {
        "hospital-a" => [
            Allowed,
            Allowed,
            Allowed,
            Allowed,
            Refused("only a model owner may submit jobs"),
            Refused("only a model owner may fetch a release"),
            Allowed,
            Allowed,
        ],
        "hospital-b" => [
            Refused("dataset \"hospital-a\" belongs to another data owner"),
            Refused("no push in progress"),
            Refused("no push in progress"),
            Refused("dataset \"hospital-a\" belongs to another data owner"),
            Refused("only a model owner may submit jobs"),
            Refused("only a model owner may fetch a release"),
            Allowed,
            Refused("dataset \"hospital-a\" belongs to another data owner"),
        ],
        "lab" => [
            owners_only,
            owners_only,
            owners_only,
            owners_only,
            Allowed,
            Allowed,
            Allowed,
            owners_only,
        ],
        "other-lab" => [
            owners_only,
            owners_only,
            owners_only,
            owners_only,
            Refused(
                "dataset \"hospital-a\", whose owner hospital-a has not allowed this model owner",
            ),
            Refused("submitted by another model owner"),
            Allowed,
            owners_only,
        ],
        "ops" => [
            owners_only,
            owners_only,
            owners_only,
            owners_only,
            Refused("only a model owner may submit jobs"),
            Refused("only a model owner may fetch a release"),
            Allowed,
            owners_only,
        ],
        other => panic!("no row for {other}"),
    }
}

/// Sends `request` and reads its whole answer (a release is several frames).
async fn ask(conn: &mut Connection<tokio::net::TcpStream>, request: &Request) -> Vec<Response> {
    let mut out = vec![conn.request(request).await.unwrap()];
    if matches!(out[0], Response::ReleaseBegin { .. }) {
        loop {
            let next = conn.recv().await.unwrap();
            let end = next == Response::ReleaseEnd;
            out.push(next);
            if end {
                break;
            }
        }
    }
    out
}

fn carries_records(response: &Response) -> bool {
    let bytes = postcard::to_allocvec(response).unwrap();
    bytes.windows(RECORD_MARK.len()).any(|w| w == RECORD_MARK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_ask_exactly_what_it_owns() {
    let parties = Parties::new();
    let node = TestNode::start(parties.roles()).await;
    let addr = node.addr.to_string();
    let roles = [
        ("hospital-a", "data owner", &parties.owner_a),
        ("hospital-b", "data owner", &parties.owner_b),
        // The allowed model owner goes first: the other one asks for its release after.
        ("lab", "model owner", &parties.model_ok),
        ("other-lab", "model owner", &parties.model_not),
        ("ops", "operator", &parties.operator),
    ];
    let mut all = Vec::new();
    for (name, role, id) in roles {
        let party = PartyClient::new(id, verifier()).unwrap();
        let mut conn = Connection::open(&addr, &party, &ClientLimits::default())
            .await
            .unwrap();
        for (request, expect) in requests().iter().zip(row(name)) {
            let answer = ask(&mut conn, request).await;
            let first = &answer[0];
            match (expect, first) {
                (Allowed, Response::Refused(r)) => {
                    panic!("{name} {}: refused: {r}", request.name())
                }
                (Allowed, Response::Failed { reason, .. }) => {
                    panic!("{name} {}: failed: {reason}", request.name())
                }
                (Allowed, _) => {}
                (Refused(why), Response::Refused(r)) => {
                    assert_eq!(r.role, role, "{name} {}", request.name());
                    assert_eq!(r.party, name);
                    assert_eq!(r.request, request.name());
                    assert!(
                        r.reason.contains(why),
                        "{name} {}: {}",
                        request.name(),
                        r.reason
                    );
                    let text = r.to_string();
                    assert!(
                        text.contains(role) && text.contains(request.name()),
                        "{text}"
                    );
                }
                (Refused(why), other) => panic!(
                    "{name} {}: expected a refusal ({why}), got {other:?}",
                    request.name()
                ),
            }
            all.extend(answer);
        }
    }

    // What the allowed requests did.
    let b = &node.backend;
    let accepted = b.datasets.lock().unwrap();
    assert_eq!(accepted.len(), 1, "one push, by hospital-a");
    assert_eq!(accepted[0].0, parties.owner_a.fingerprint());
    assert_eq!(accepted[0].2, PUSHED);
    let job = b.job.lock().unwrap().clone().unwrap();
    assert_eq!(
        job.0,
        parties.model_ok.fingerprint(),
        "only lab's job reached the node"
    );
    assert_eq!(job.2, vec!["hospital-a".to_string()]);
    assert_eq!(*b.deleted.lock().unwrap(), vec!["hospital-a".to_string()]);

    // The answers themselves.
    assert!(all.iter().any(|r| matches!(r, Response::Pushed { sealed_sha256 } if *sealed_sha256 == sealed_digest(PUSHED))));
    assert!(all
        .iter()
        .any(|r| matches!(r, Response::Spent(s) if s.epsilon_spent == 1.5)));
    assert_eq!(
        all.iter()
            .filter(|r| matches!(r, Response::ReleaseBegin { .. }))
            .count(),
        1,
        "one release, to lab"
    );
    assert!(
        all.iter().all(|r| !carries_records(r)),
        "a response carried a record"
    );
    // Sanity of the check itself: a response quoting a record would be caught.
    assert!(carries_records(&Response::Failed {
        request: "x".into(),
        reason: String::from_utf8_lossy(PUSHED).into(),
    }));
    assert_eq!(node.server.held_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_gets_no_request_through() {
    let parties = Parties::new();
    let node = TestNode::start(parties.roles()).await;
    let party = PartyClient::new(&parties.stranger, verifier()).unwrap();
    let err = Connection::open(&node.addr.to_string(), &party, &ClientLimits::default())
        .await
        .unwrap_err();
    match err {
        PartyError::Attestation(e) => match *e {
            AttestedTlsError::RefusedByPeer { code, reason } => {
                assert_eq!(code, "party.unknown");
                assert!(reason.contains(&parties.stranger.fingerprint()), "{reason}");
            }
            other => panic!("{other}"),
        },
        other => panic!("{other}"),
    }
    // Every client operation fails the same way, and nothing reaches the backend.
    let client = node.client(&parties.stranger, None);
    assert!(matches!(
        client.status().await,
        Err(PartyError::Attestation(_))
    ));
    assert!(matches!(
        client.spent("hospital-a").await,
        Err(PartyError::Attestation(_))
    ));
    assert!(!node
        .backend
        .release_asked
        .load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_api_round_trips_for_allowed_parties_and_names_refusals() {
    let parties = Parties::new();
    let node = TestNode::start(parties.roles()).await;
    let owner = node.client(&parties.owner_a, None);
    let lab = node.client(&parties.model_ok, None);
    let other_lab = node.client(&parties.model_not, None);
    let ops = node.client(&parties.operator, None);

    let spent = owner.spent("hospital-a").await.unwrap();
    assert_eq!((spent.epsilon_spent, spent.epsilon_budget), (1.5, 8.0));
    let status: Status = ops.status().await.unwrap();
    assert_eq!((status.step, status.planned_steps), (3, 10));

    // A job naming a dataset nobody lists, one naming none, and one not allowed.
    for (job, why) in [
        (
            "datasets = [\"nowhere\"]",
            "which no data owner of this node lists",
        ),
        ("[model]\nkind = \"resnet\"", "names no datasets"),
        (
            "datasets = [\"hospital-a\", \"hospital-b\"]",
            "whose owner hospital-b has not allowed",
        ),
    ] {
        match lab.submit_job(job).await {
            Err(PartyError::Refused(r)) => assert!(r.reason.contains(why), "{r}"),
            other => panic!("{job}: {other:?}"),
        }
    }
    match other_lab.submit_job("datasets = [\"hospital-a\"]").await {
        Err(PartyError::Refused(r)) => {
            assert_eq!(
                (r.role.as_str(), r.request.as_str()),
                ("model owner", "SubmitJob")
            );
            assert!(r.reason.contains("hospital-a"), "{r}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        node.backend.job.lock().unwrap().is_none(),
        "no refused job reached the node"
    );

    // Before any job: the backend's own refusal, verbatim.
    match lab.fetch_release(&temp_dir("none").join("out")).await {
        Err(PartyError::Backend { request, reason }) => {
            assert_eq!(request, "FetchRelease");
            assert_eq!(reason, "no job has been released");
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(
        lab.submit_job("datasets = [\"hospital-a\"]").await.unwrap(),
        "job-1"
    );
    let out = temp_dir("release").join("out");
    let fetched = lab.fetch_release(&out).await.unwrap();
    assert_eq!(fetched.job_id, "job-1");
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        model_bytes()
    );
    assert_eq!(
        std::fs::read(out.join("adapter/config.json")).unwrap(),
        b"{\"r\": 8}"
    );
    assert_eq!(
        std::fs::read(out.join("receipt.json")).unwrap(),
        b"{\"epsilon\": 1.5}"
    );
    assert_eq!(fetched.files.last().unwrap(), &out.join("receipt.json"));
    // Not into a directory that holds something.
    assert!(matches!(
        lab.fetch_release(&out).await,
        Err(PartyError::File { .. })
    ));
    // Not to another model owner, though the backend would hand it out.
    match other_lab
        .fetch_release(&temp_dir("stolen").join("out"))
        .await
    {
        Err(PartyError::Refused(r)) => assert!(r.reason.contains("another model owner"), "{r}"),
        other => panic!("{other:?}"),
    }
    owner.delete("hospital-a").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_end_only_their_own_connection() {
    use tokio::io::AsyncWriteExt;
    let parties = Parties::new();
    let node = TestNode::start(parties.roles()).await;
    // One says nothing, one sends garbage instead of TLS, one hangs up mid-handshake.
    let _silent = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let mut garbage = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    garbage.write_all(&[0xff; 4096]).await.unwrap();
    let mut quitter = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    quitter.write_all(&[0x16, 0x03, 0x01, 0x00]).await.unwrap();
    drop(quitter);
    // A known party, mid-session, that disappears.
    let party = PartyClient::new(&parties.owner_a, verifier()).unwrap();
    let mut gone = Connection::open(&node.addr.to_string(), &party, &ClientLimits::default())
        .await
        .unwrap();
    gone.send(&Request::Status).await.unwrap();
    drop(gone);

    let status = node.client(&parties.operator, None).status().await.unwrap();
    assert_eq!(status.nodes, vec!["node-0", "node-1"]);
    let spent = node
        .client(&parties.owner_a, None)
        .spent("hospital-a")
        .await
        .unwrap();
    assert_eq!(spent.epsilon_budget, 8.0);
}
