//! Ring all-reduce over in-memory pipes: sums against an f64 reference, bitwise agreement
//! between ranks, awkward lengths, refusals of out-of-step peers, failures without hangs.

use std::time::Duration;

use bastion_collective::{AllReduceStats, CollectiveError, Ring, RingConfig, Side};
use rand::Rng;

/// `world` rings joined by in-memory pipes of `pipe` bytes (small pipes force interleaving).
fn rings(world: usize, epochs: &[u64], config: &RingConfig, pipe: usize) -> Vec<Ring> {
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..world {
        let (w, r) = tokio::io::duplex(pipe);
        writers.push(Some(w));
        readers.push(Some(r));
    }
    (0..world)
        .map(|rank| {
            // Pipe `rank` goes from rank to rank + 1.
            let to_next = writers[rank].take().unwrap();
            let from_prev = readers[(rank + world - 1) % world].take().unwrap();
            Ring::new(
                rank,
                world,
                epochs[rank % epochs.len()],
                Box::new(to_next),
                Box::new(from_prev),
                config.clone(),
            )
            .unwrap()
        })
        .collect()
}

fn random_data(world: usize, len: usize) -> Vec<Vec<f32>> {
    let mut rng = rand::rng();
    (0..world)
        .map(|_| {
            (0..len)
                .map(|_| rng.random_range(-100.0f32..100.0))
                .collect()
        })
        .collect()
}

/// Runs one all-reduce on every rank concurrently (one task each, multi-threaded runtime),
/// under a test timeout so that a hang fails instead of blocking.
fn all_reduce(
    rings: Vec<Ring>,
    data: Vec<Vec<f32>>,
    tags: &[u64],
) -> Vec<(Ring, Vec<f32>, Result<AllReduceStats, CollectiveError>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tags = tags.to_vec();
    rt.block_on(async move {
        let tasks: Vec<_> = rings
            .into_iter()
            .zip(data)
            .enumerate()
            .map(|(rank, (mut ring, mut x))| {
                let tag = tags[rank % tags.len()];
                tokio::spawn(async move {
                    let result = ring.all_reduce(tag, &mut x).await;
                    (ring, x, result)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(
                tokio::time::timeout(Duration::from_secs(60), t)
                    .await
                    .expect("all-reduce hung")
                    .unwrap(),
            );
        }
        out
    })
}

fn check_sum(inputs: &[Vec<f32>], outputs: &[Vec<f32>]) {
    let len = inputs[0].len();
    for i in 0..len {
        let reference: f64 = inputs.iter().map(|x| f64::from(x[i])).sum();
        let magnitude: f64 = inputs.iter().map(|x| f64::from(x[i]).abs()).sum();
        let got = f64::from(outputs[0][i]);
        assert!(
            (got - reference).abs() <= 1e-6 * magnitude.max(1e-30),
            "element {i}: {got} vs reference {reference}"
        );
    }
    for (rank, out) in outputs.iter().enumerate() {
        assert_eq!(out.len(), len);
        let same = out
            .iter()
            .zip(&outputs[0])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "rank {rank} differs bitwise from rank 0");
    }
}

fn run_and_check(world: usize, len: usize, bucket_bytes: usize, pipe: usize) {
    let config = RingConfig {
        bucket_bytes,
        ..RingConfig::default()
    };
    let inputs = random_data(world, len);
    let out = all_reduce(rings(world, &[1], &config, pipe), inputs.clone(), &[42]);
    let mut outputs = Vec::new();
    let (mut sent, mut received) = (0, 0);
    let buckets = len.div_ceil(bucket_bytes / 4).max(1);
    for (ring, x, result) in out {
        let stats = result.unwrap_or_else(|e| panic!("rank {}: {e}", ring.rank()));
        assert_eq!(stats.buckets, buckets);
        sent += stats.bytes_sent;
        received += stats.bytes_received;
        outputs.push(x);
    }
    // Per bucket, each rank sends 2 (N-1) chunks; all chunks of a bucket together cross
    // 2 (N-1) links each: headers plus 2 (N-1) times the data, over the whole ring.
    assert_eq!(sent, received);
    let headers = (world * buckets * 2 * (world - 1) * 56) as u64;
    assert_eq!(sent, headers + (2 * (world - 1) * len * 4) as u64);
    check_sum(&inputs, &outputs);
}

#[test]
fn awkward_lengths_sum_correctly_and_identically_on_2_3_and_4_ranks() {
    for world in [2, 3, 4] {
        for len in [0, 1, world - 1, world + 1, 1001, 4099] {
            // 64-byte buckets: 16 floats, so the longer lengths take many buckets.
            run_and_check(world, len, 64, 1 << 16);
        }
    }
}

#[test]
fn large_chunks_through_small_pipes_do_not_deadlock() {
    // 300k floats in 256 KiB buckets, through 4 KiB pipes: every step needs the neighbour
    // to be reading while it writes.
    for world in [2, 3] {
        run_and_check(world, 300_001, 256 * 1024, 4096);
    }
}

#[test]
fn one_bucket_with_the_default_configuration() {
    run_and_check(3, 100_000, RingConfig::default().bucket_bytes, 1 << 16);
}

#[test]
fn a_single_rank_is_a_no_op() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ring = Ring::single(1, RingConfig::default()).unwrap();
    let mut x = vec![1.5f32, -2.0];
    let stats = rt.block_on(ring.all_reduce(0, &mut x)).unwrap();
    assert_eq!(x, [1.5, -2.0]);
    assert_eq!(stats.bytes_sent, 0);
}

#[test]
fn ranks_with_different_tags_lengths_or_epochs_are_refused_by_name() {
    let config = RingConfig::default();
    let expect_field = |out: Vec<(Ring, Vec<f32>, Result<AllReduceStats, CollectiveError>)>,
                        field: &str| {
        let mut named = 0;
        for (ring, _, result) in out {
            assert!(!ring.is_usable());
            match result {
                Err(CollectiveError::OutOfStep { field: f, peer, .. }) => {
                    assert_eq!(f, field);
                    assert_eq!(peer.side, Side::Prev);
                    named += 1;
                }
                // A rank whose neighbour refused first sees its link close.
                Err(CollectiveError::Peer { .. }) => {}
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        assert!(named >= 1);
    };
    let data = random_data(3, 10);
    expect_field(
        all_reduce(rings(3, &[1], &config, 1 << 16), data.clone(), &[5, 5, 6]),
        "tag",
    );
    expect_field(
        all_reduce(rings(3, &[1, 1, 2], &config, 1 << 16), data.clone(), &[5]),
        "epoch",
    );
    let mut short = data.clone();
    short[1].pop();
    expect_field(
        all_reduce(rings(3, &[1], &config, 1 << 16), short, &[5]),
        "total",
    );
    // Even with nothing to reduce, a length mismatch is caught.
    let empty_and_not = vec![vec![], vec![1.0], vec![]];
    expect_field(
        all_reduce(rings(3, &[1], &config, 1 << 16), empty_and_not, &[5]),
        "total",
    );
}

/// A reader that delivers `left` bytes, then tells the test and never delivers another:
/// a rank parked mid-reduce at a known point, for the test to kill.
struct StallAfter {
    inner: tokio::io::DuplexStream,
    left: usize,
    stalled: Option<tokio::sync::oneshot::Sender<()>>,
}

impl tokio::io::AsyncRead for StallAfter {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            if let Some(tx) = self.stalled.take() {
                let _ = tx.send(());
            }
            return std::task::Poll::Pending;
        }
        let want = self.left.min(buf.remaining());
        let mut limited = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(want));
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.advance(n);
        self.left -= n;
        poll
    }
}

#[test]
fn a_rank_dropping_mid_reduce_fails_the_others_fast_not_by_timeout() {
    let config = RingConfig {
        bucket_bytes: 64 * 1024,
        // Far longer than the test's own limit: only the closed links can end it in time.
        io_timeout: Duration::from_secs(600),
        ..RingConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = 3;
    let (mut writers, mut readers): (Vec<_>, Vec<_>) = (0..world)
        .map(|_| tokio::io::duplex(4096))
        .map(|(w, r)| (Some(w), Some(r)))
        .unzip();
    let (stalled_tx, stalled_rx) = tokio::sync::oneshot::channel();
    let mut stalled_tx = Some(stalled_tx);
    let mut all: Vec<Ring> = (0..world)
        .map(|rank| {
            let to_next = writers[rank].take().unwrap();
            let from_prev = readers[(rank + world - 1) % world].take().unwrap();
            let from_prev: bastion_collective::LinkReader = if rank == 1 {
                // Rank 1 stops about a tenth of the way in (it receives ~10.7 MB in all).
                Box::new(StallAfter {
                    inner: from_prev,
                    left: 1_000_000,
                    stalled: stalled_tx.take(),
                })
            } else {
                Box::new(from_prev)
            };
            Ring::new(rank, world, 1, Box::new(to_next), from_prev, config.clone()).unwrap()
        })
        .collect();
    let data = random_data(world, 2_000_000);
    rt.block_on(async move {
        let mut dying = all.remove(1);
        let mut dying_data = data[1].clone();
        let died = tokio::spawn(async move {
            tokio::select! {
                _ = dying.all_reduce(9, &mut dying_data) => panic!("the dying rank finished"),
                _ = stalled_rx => {}
            }
            // Leaving the select dropped the all-reduce, and with it this rank's links.
            assert!(!dying.is_usable());
        });
        let survivors: Vec<_> = all
            .into_iter()
            .zip([data[0].clone(), data[2].clone()])
            .map(|(mut ring, mut x)| {
                tokio::spawn(async move {
                    let first = ring.all_reduce(9, &mut x).await;
                    let second = ring.all_reduce(10, &mut x).await;
                    (ring.rank(), first, second)
                })
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(30), died)
            .await
            .expect("rank 1 never stalled")
            .unwrap();
        for s in survivors {
            let (rank, first, second) = tokio::time::timeout(Duration::from_secs(30), s)
                .await
                .expect("a survivor hung")
                .unwrap();
            match first {
                Err(CollectiveError::Peer { peer, .. }) => {
                    assert!(peer.rank != rank, "rank {rank} blamed itself")
                }
                other => panic!("rank {rank}: expected a peer failure, got {other:?}"),
            }
            assert!(
                matches!(second, Err(CollectiveError::Broken)),
                "rank {rank}: {second:?}"
            );
        }
    });
}

#[test]
fn a_silent_peer_times_out_naming_it() {
    let config = RingConfig {
        io_timeout: Duration::from_millis(200),
        ..RingConfig::default()
    };
    let mut all = rings(2, &[1], &config, 1 << 16);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _silent = all.pop().unwrap(); // rank 1: alive, never calls
    let mut ring = all.pop().unwrap();
    let mut x = vec![1.0f32; 1000];
    let err = rt.block_on(ring.all_reduce(1, &mut x)).unwrap_err();
    match &err {
        CollectiveError::Timeout { peer, after, .. } => {
            assert_eq!(peer.rank, 1);
            assert_eq!(*after, Duration::from_millis(200));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("rank 1 (prev) made no progress for 200ms"),
        "{err}"
    );
}

#[test]
fn impossible_configurations_are_refused() {
    let sink = || Box::new(tokio::io::sink());
    let empty = || Box::new(tokio::io::empty());
    let config = RingConfig::default();
    assert!(matches!(
        Ring::new(3, 3, 0, sink(), empty(), config.clone()),
        Err(CollectiveError::Config(_))
    ));
    assert!(matches!(
        Ring::new(0, 0, 0, sink(), empty(), config.clone()),
        Err(CollectiveError::Config(_))
    ));
    let tiny = RingConfig {
        bucket_bytes: 3,
        ..config
    };
    let err = Ring::new(0, 2, 0, sink(), empty(), tiny).unwrap_err();
    assert!(err.to_string().contains("bucket_bytes is 3"), "{err}");
}
