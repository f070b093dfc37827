//! Rings formed over mutually attested TLS on loopback, with the simulated TEE: a good ring
//! reduces correctly; a neighbour with another key or from another epoch is refused.

mod common;

use std::time::Duration;

use bastion_collective::{form_ring, CollectiveError, Ring, RingSpec, Side};
use common::{config, endpoint, nodes, rt, spec, Node};

/// Forms every node's ring concurrently with the given specs.
async fn form_all(
    nodes: Vec<Node>,
    specs: Vec<RingSpec>,
    timeout: Duration,
) -> Vec<Result<Ring, CollectiveError>> {
    let tasks: Vec<_> = nodes
        .into_iter()
        .zip(specs)
        .map(|(node, spec)| {
            tokio::spawn(async move {
                let ring = form_ring(&node.endpoint, &node.listener, &spec, config(timeout)).await;
                drop(node); // the listener lives until formation ends
                ring
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            tokio::time::timeout(timeout * 3, t)
                .await
                .expect("formation hung")
                .unwrap(),
        );
    }
    out
}

#[test]
fn a_three_rank_attested_ring_reduces_exactly_and_identically() {
    rt().block_on(async {
        let nodes = nodes(3).await;
        let specs = (0..3).map(|r| spec(&nodes, r, 7)).collect();
        let rings = form_all(nodes, specs, Duration::from_secs(20)).await;
        let len = 100_003; // several 64 KiB buckets, not divisible by 3
        let inputs: Vec<Vec<f32>> = (0..3)
            .map(|r| {
                (0..len)
                    .map(|i| ((i * 7 + r * 13) % 1000) as f32 * 0.37 - 150.0)
                    .collect()
            })
            .collect();
        let tasks: Vec<_> = rings
            .into_iter()
            .zip(inputs.clone())
            .map(|(ring, mut x)| {
                let mut ring = ring.expect("ring formed");
                tokio::spawn(async move {
                    let stats = ring.all_reduce(1, &mut x).await.unwrap();
                    ring.shutdown().await.unwrap();
                    (stats, x)
                })
            })
            .collect();
        let mut outs = Vec::new();
        for t in tasks {
            outs.push(
                tokio::time::timeout(Duration::from_secs(60), t)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        for (stats, x) in &outs {
            assert!(stats.bytes_sent > (len * 4 * 4 / 3) as u64);
            for i in 0..len {
                let reference: f64 = inputs.iter().map(|v| f64::from(v[i])).sum();
                let magnitude: f64 = inputs.iter().map(|v| f64::from(v[i]).abs()).sum();
                assert!((f64::from(x[i]) - reference).abs() <= 1e-6 * magnitude.max(1e-30));
                assert_eq!(x[i].to_bits(), outs[0].1[i].to_bits());
            }
        }
    });
}

#[test]
fn a_next_rank_with_another_key_is_refused() {
    rt().block_on(async {
        let nodes = nodes(2).await;
        let impostor_key = endpoint().key_fingerprint();
        let mut s0 = spec(&nodes, 0, 1);
        let real_key = std::mem::replace(&mut s0.next_key, impostor_key.clone());
        let s1 = spec(&nodes, 1, 1);
        let results = form_all(nodes, vec![s0, s1], Duration::from_secs(3)).await;
        match &results[0] {
            Err(CollectiveError::WrongKey {
                peer,
                expected,
                found,
            }) => {
                assert_eq!((peer.rank, peer.side), (1, Side::Next));
                assert_eq!(expected, &impostor_key);
                assert_eq!(found, &real_key);
            }
            other => panic!("expected a key refusal, got {other:?}"),
        }
        // Rank 1 never gets a usable ring: rank 0 hung up on it.
        assert!(results[1].is_err());
    });
}

#[test]
fn a_neighbour_from_another_epoch_is_refused() {
    rt().block_on(async {
        let nodes = nodes(2).await;
        let specs = vec![spec(&nodes, 0, 5), spec(&nodes, 1, 6)];
        let results = form_all(nodes, specs, Duration::from_secs(3)).await;
        let mut named = 0;
        for (rank, result) in results.iter().enumerate() {
            match result {
                // The connecting side names it...
                Err(CollectiveError::WrongRing {
                    field: "epoch",
                    expected,
                    found,
                    peer,
                }) => {
                    assert_eq!(peer.side, Side::Next);
                    assert_eq!((*expected, *found), if rank == 0 { (5, 6) } else { (6, 5) });
                    named += 1;
                }
                // ...unless the other rank, having refused first, hung up on it (mid-exchange,
                // or before TLS completed, after which it retried and found nobody listening).
                Err(
                    CollectiveError::Wire { .. }
                    | CollectiveError::Attestation { .. }
                    | CollectiveError::Peer {
                        during: "connecting",
                        ..
                    },
                ) => {}
                other => panic!("rank {rank}: expected an epoch refusal, got {other:?}"),
            }
        }
        assert!(named >= 1, "{results:?}");
    });
}

#[test]
fn a_stranger_at_the_door_is_refused_and_the_right_peer_still_gets_in() {
    rt().block_on(async {
        let mut nodes = nodes(2).await;
        let (s0, s1) = (spec(&nodes, 0, 3), spec(&nodes, 1, 3));
        let node1 = nodes.pop().unwrap();
        let node0 = nodes.pop().unwrap();
        let rank1 = tokio::spawn(async move {
            form_ring(
                &node1.endpoint,
                &node1.listener,
                &s1,
                config(Duration::from_secs(20)),
            )
            .await
        });
        // An attested node that is not rank 0 (another key) claims rank 0's place first.
        let stranger = nodes_of_one().await;
        let stranger_spec = RingSpec {
            next_key: s0.next_key.clone(),
            prev_key: s0.prev_key.clone(),
            ..s0.clone()
        };
        let refused = form_ring(
            &stranger.endpoint,
            &stranger.listener,
            &stranger_spec,
            config(Duration::from_secs(5)),
        )
        .await;
        assert!(
            matches!(
                refused,
                Err(CollectiveError::Wire { .. } | CollectiveError::Peer { .. })
            ),
            "the stranger should be hung up on: {refused:?}"
        );
        // The real rank 0 then forms the ring with rank 1, which kept waiting.
        let mut ring0 = form_ring(
            &node0.endpoint,
            &node0.listener,
            &s0,
            config(Duration::from_secs(20)),
        )
        .await
        .unwrap();
        let mut ring1 = rank1.await.unwrap().unwrap();
        let (mut a, mut b) = (vec![1.0f32, 2.0], vec![3.0f32, 4.0]);
        let (ra, rb) = tokio::join!(ring0.all_reduce(0, &mut a), ring1.all_reduce(0, &mut b));
        ra.unwrap();
        rb.unwrap();
        assert_eq!(
            (a.as_slice(), b.as_slice()),
            (&[4.0f32, 6.0][..], &[4.0f32, 6.0][..])
        );
    });
}

async fn nodes_of_one() -> Node {
    nodes(1).await.pop().unwrap()
}
