//! Availability of ring formation (issue "availability before attestation"): connections to
//! a rank's listener from strangers, silent, sending garbage, or many, neither block nor fail
//! the formation, and at most a fixed number of them is handled at once.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bastion_collective::{form_ring, CollectiveError, Ring, Side};
use common::{config, nodes, rt, spec, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The formation deadline: before, one silent stranger held formation this long, and failed it.
const DEADLINE: Duration = Duration::from_secs(30);

/// Formation with a stranger waiting must finish within this, which is below the 5 s each
/// incoming connection is given: so it did not wait for the stranger's handshake to time out.
const QUICK: Duration = Duration::from_secs(4);

/// Handshakes the accepting side runs at once (`MAX_HANDSHAKES` in src/form.rs).
const MAX_HANDSHAKES: usize = 16;

/// Rank 1 (which accepts rank 0) starts first and gets `head_start` to take in whatever waits
/// at its door; then rank 0 starts. Both rings, and the time from rank 0's start to both formed.
async fn form_pair_late(mut nodes: Vec<Node>, head_start: Duration) -> (Ring, Ring, Duration) {
    let (s0, s1) = (spec(&nodes, 0, 1), spec(&nodes, 1, 1));
    let node1 = nodes.pop().unwrap();
    let node0 = nodes.pop().unwrap();
    let rank1 = tokio::spawn(async move {
        form_ring(&node1.endpoint, &node1.listener, &s1, config(DEADLINE)).await
    });
    tokio::time::sleep(head_start).await;
    let started = Instant::now();
    let rank0 = tokio::spawn(async move {
        form_ring(&node0.endpoint, &node0.listener, &s0, config(DEADLINE)).await
    });
    let both = async { (rank0.await.unwrap(), rank1.await.unwrap()) };
    let (r0, r1) = tokio::time::timeout(DEADLINE * 2, both)
        .await
        .expect("formation hung");
    let elapsed = started.elapsed();
    (
        r0.expect("rank 0 forms its ring"),
        r1.expect("rank 1 forms its ring"),
        elapsed,
    )
}

async fn reduces(mut ring0: Ring, mut ring1: Ring) {
    let (mut a, mut b) = (vec![1.0f32, 2.0], vec![3.0f32, 4.0]);
    let (ra, rb) = tokio::join!(ring0.all_reduce(0, &mut a), ring1.all_reduce(0, &mut b));
    ra.unwrap();
    rb.unwrap();
    assert_eq!((a, b), (vec![4.0f32, 6.0], vec![4.0f32, 6.0]));
}

/// Whether the listener closed this stranger's connection within `within`, and how many
/// bytes it sent before (`None`: still open).
async fn closed_after(stranger: &mut TcpStream, within: Duration) -> Option<usize> {
    let mut buf = [0u8; 1024];
    let mut received = 0;
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, stranger.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received += n,
            Err(_) => return None,
        }
    }
}

async fn garbage(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stranger = TcpStream::connect(addr).await.unwrap();
    stranger.write_all(bytes).await.unwrap();
    stranger
}

#[test]
fn a_silent_stranger_does_not_delay_formation() {
    rt().block_on(async {
        let nodes = nodes(2).await;
        // Connects to rank 1's listener before rank 0 does, and never says a word.
        let mut stranger = TcpStream::connect(nodes[1].addr).await.unwrap();
        let (ring0, ring1, took) = form_pair_late(nodes, Duration::from_millis(300)).await;
        assert!(
            took < QUICK,
            "formation took {took:?} with one silent stranger"
        );
        reduces(ring0, ring1).await;
        // Control: the stranger was taken in (not just left in the backlog) and held no
        // further: its handshake was dropped with the formation, having been sent nothing.
        assert_eq!(
            closed_after(&mut stranger, Duration::from_secs(2)).await,
            Some(0)
        );
    });
}

#[test]
fn strangers_sending_garbage_are_refused_at_once_and_do_not_delay_formation() {
    rt().block_on(async {
        let nodes = nodes(2).await;
        let addr = nodes[1].addr;
        let mut http = garbage(addr, b"GET / HTTP/1.1\r\nHost: bastion\r\n\r\n").await;
        // A TLS handshake record header announcing far more than any ClientHello.
        let mut huge = garbage(addr, &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00]).await;
        let mut zeros = garbage(addr, &[0u8; 1024]).await;

        let (ring0, ring1, took) = form_pair_late(nodes, Duration::from_millis(300)).await;
        assert!(
            took < QUICK,
            "formation took {took:?} with garbage at the door"
        );
        reduces(ring0, ring1).await;
        for (name, stranger) in [
            ("http", &mut http),
            ("huge", &mut huge),
            ("zeros", &mut zeros),
        ] {
            // Closed (perhaps after a TLS alert), not kept waiting for the handshake timeout.
            assert!(
                closed_after(stranger, Duration::from_secs(1))
                    .await
                    .is_some(),
                "the {name} stranger is still connected"
            );
        }
    });
}

#[test]
fn fifty_silent_strangers_hold_at_most_the_handshake_slots_and_formation_still_succeeds() {
    rt().block_on(async {
        let nodes = nodes(2).await;
        let addr = nodes[1].addr;
        let mut strangers = Vec::new();
        for _ in 0..50 {
            strangers.push(TcpStream::connect(addr).await.unwrap());
        }
        let forming = tokio::spawn(form_pair_late(nodes, Duration::from_millis(800)));

        // Rank 1 takes all fifty in: the first MAX_HANDSHAKES wait in their handshakes, the
        // rest are closed at once, unanswered.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut closed_at_once = 0;
        for stranger in &mut strangers {
            match closed_after(stranger, Duration::from_millis(20)).await {
                Some(0) => closed_at_once += 1,
                Some(n) => panic!("a silent stranger was sent {n} bytes"),
                None => {}
            }
        }
        assert_eq!(closed_at_once, 50 - MAX_HANDSHAKES);

        // Rank 0 is turned away while the slots are held, retries, and gets in once the
        // strangers' handshakes time out (5 s after they were taken in): well before the
        // deadline.
        let (ring0, ring1, took) = forming.await.unwrap();
        assert!(
            took < DEADLINE / 3,
            "formation took {took:?} behind fifty silent strangers"
        );
        reduces(ring0, ring1).await;
    });
}

#[test]
fn when_the_previous_rank_never_comes_the_formation_error_lists_the_strangers() {
    rt().block_on(async {
        let nodes = nodes(2).await;
        // Rank 0 connects to an address where nobody listens, so it never reaches rank 1.
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let mut s0 = spec(&nodes, 0, 1);
        s0.next_addr = dead;
        let s1 = spec(&nodes, 1, 1);
        let http = garbage(nodes[1].addr, b"GET / HTTP/1.1\r\n\r\n").await;
        let from = http.local_addr().unwrap();
        let _silent = TcpStream::connect(nodes[1].addr).await.unwrap();

        let deadline = Duration::from_secs(3);
        let mut nodes = nodes;
        let node1 = nodes.pop().unwrap();
        let node0 = nodes.pop().unwrap();
        let started = Instant::now();
        let (r0, r1) = tokio::join!(
            form_ring(&node0.endpoint, &node0.listener, &s0, config(deadline)),
            form_ring(&node1.endpoint, &node1.listener, &s1, config(deadline)),
        );
        assert!(r0.is_err(), "rank 0 cannot reach its next rank");
        match r1 {
            Err(CollectiveError::Formation {
                peer,
                waited,
                refused,
            }) => {
                assert_eq!((peer.rank, peer.side), (0, Side::Prev));
                assert_eq!(waited, deadline);
                assert!(
                    refused.iter().any(|r| r.starts_with(&from.to_string())),
                    "the garbage sender {from} is named: {refused:?}"
                );
            }
            other => panic!("expected a formation error, got {:?}", other.err()),
        }
        assert!(started.elapsed() < deadline + Duration::from_secs(2));
    });
}
