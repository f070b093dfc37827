//! Ring all-reduce (sum) of `f32` over two byte streams: one to the next rank, one from the
//! previous.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{CollectiveError, PeerId, Side};
use crate::header::{Header, Phase, HEADER_LEN};

// Data travels as the in-memory bytes of the f32 slice, which are little-endian only there.
#[cfg(target_endian = "big")]
compile_error!("bastion-collective sends f32 as their in-memory bytes: little-endian targets only");

/// The stream to the next rank.
pub type LinkWriter = Box<dyn AsyncWrite + Send + Unpin>;
/// The stream from the previous rank.
pub type LinkReader = Box<dyn AsyncRead + Send + Unpin>;

/// Largest single read or write on a link: each is one unit of the I/O timeout, and on the
/// receiving side the reduction of one piece overlaps the arrival of the next.
const PIECE_BYTES: usize = 256 * 1024;
const PIECE_FLOATS: usize = PIECE_BYTES / 4;

/// How a [`Ring`] moves data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    /// Gradients are reduced in buckets of this many bytes (rounded down to whole `f32`),
    /// each split into `world` chunks. Larger buckets mean fewer, longer steps.
    pub bucket_bytes: usize,
    /// A neighbour that makes no progress (no bytes read or written) for this long fails the
    /// all-reduce with [`CollectiveError::Timeout`].
    pub io_timeout: Duration,
    /// How long ring formation waits for its neighbours (TCP connect, attested TLS, hello).
    pub connect_timeout: Duration,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            bucket_bytes: 4 * 1024 * 1024,
            io_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// What one all-reduce moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllReduceStats {
    /// Bytes written to the next rank (headers included).
    pub bytes_sent: u64,
    /// Bytes read from the previous rank (headers included).
    pub bytes_received: u64,
    /// Buckets reduced.
    pub buckets: usize,
    /// Wall time of the call.
    pub elapsed: Duration,
}

/// This rank's place in a ring of `world` ranks and its two links.
///
/// Built over any byte streams ([`Ring::new`]); [`crate::form_ring`] builds one over mutually
/// attested TLS. Each call of [`Ring::all_reduce`] must be made by every rank, in the same
/// order, with the same tag and length. Like any tokio socket, links made by
/// [`crate::form_ring`] belong to the runtime they were made on: call from that runtime.
pub struct Ring {
    rank: usize,
    world: usize,
    epoch: u64,
    config: RingConfig,
    links: Option<Links>,
    /// All-reduces started on this ring: part of every header, so a rank a call ahead or
    /// behind is caught.
    seq: u64,
}

struct Links {
    to_next: LinkWriter,
    from_prev: LinkReader,
    /// Where incoming partial sums land before they are added in; reused across calls.
    scratch: Vec<f32>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("epoch", &self.epoch)
            .field("broken", &self.links.is_none())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// This rank's ring over `to_next` (written only) and `from_prev` (read only). `epoch`
    /// names this ring: every chunk carries it, so a peer from an older ring is refused.
    pub fn new(
        rank: usize,
        world: usize,
        epoch: u64,
        to_next: LinkWriter,
        from_prev: LinkReader,
        config: RingConfig,
    ) -> Result<Ring, CollectiveError> {
        if world == 0 || rank >= world {
            return Err(CollectiveError::Config(format!(
                "rank {rank} is outside a world of {world}"
            )));
        }
        if world > usize::from(u16::MAX) {
            return Err(CollectiveError::Config(format!(
                "a world of {world} ranks exceeds the ring's limit of {}",
                u16::MAX
            )));
        }
        if config.bucket_bytes < 4 {
            return Err(CollectiveError::Config(format!(
                "bucket_bytes is {}: a bucket holds at least one f32 (4 bytes)",
                config.bucket_bytes
            )));
        }
        if config.io_timeout.is_zero() {
            return Err(CollectiveError::Config("io_timeout is zero".into()));
        }
        Ok(Ring {
            rank,
            world,
            epoch,
            config,
            links: Some(Links {
                to_next,
                from_prev,
                scratch: Vec::new(),
            }),
            seq: 0,
        })
    }

    /// A ring of one: every all-reduce returns its input.
    pub fn single(epoch: u64, config: RingConfig) -> Result<Ring, CollectiveError> {
        Ring::new(
            0,
            1,
            epoch,
            Box::new(tokio::io::sink()),
            Box::new(tokio::io::empty()),
            config,
        )
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks in the ring.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The ring's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The configuration.
    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// False once an all-reduce failed: the links are closed and the ring must be re-formed.
    pub fn is_usable(&self) -> bool {
        self.links.is_some()
    }

    /// Sums `data` element-wise across all ranks, in place: on return every rank holds the
    /// same sum, bitwise.
    ///
    /// Bucket by bucket: reduce-scatter (`world - 1` steps; chunk `c` is accumulated along
    /// the ring starting at rank `c`, so in one fixed order), then all-gather (`world - 1`
    /// steps; each finished chunk is copied around unchanged). Every step sends to the next
    /// rank and receives from the previous one concurrently, so bounded socket buffers never
    /// deadlock the ring. Every rank must call with the same `tag` and `data.len()`; an
    /// empty `data` still synchronises (a barrier) and checks that.
    ///
    /// On error the links are closed at once, so that the neighbours fail fast too, and the
    /// ring is [broken](CollectiveError::Broken) from then on. The contents of `data` are then
    /// unspecified (partly reduced).
    pub async fn all_reduce(
        &mut self,
        tag: u64,
        data: &mut [f32],
    ) -> Result<AllReduceStats, CollectiveError> {
        let start = Instant::now();
        if self.world == 1 {
            return Ok(AllReduceStats {
                elapsed: start.elapsed(),
                ..AllReduceStats::default()
            });
        }
        let Some(mut links) = self.links.take() else {
            return Err(CollectiveError::Broken);
        };
        let seq = self.seq;
        self.seq += 1;
        let plan = Plan {
            rank: self.rank,
            world: self.world,
            epoch: self.epoch,
            tag,
            seq,
            total: data.len() as u64,
            bucket_floats: (self.config.bucket_bytes / 4).min(u32::MAX as usize),
            timeout: self.config.io_timeout,
        };
        let mut stats = AllReduceStats::default();
        match plan.run(&mut links, data, &mut stats).await {
            Ok(()) => {
                self.links = Some(links);
                stats.elapsed = start.elapsed();
                Ok(stats)
            }
            Err(e) => {
                tracing::warn!(rank = self.rank, epoch = self.epoch, tag, error = %e, "all-reduce failed; closing the ring's links");
                drop(links);
                Err(e)
            }
        }
    }

    /// The two links back (to the next rank, from the previous), or `None` once the ring is
    /// broken. For reusing formed links for something else (the bench measures raw TLS
    /// throughput over them).
    pub fn into_links(mut self) -> Option<(LinkWriter, LinkReader)> {
        self.links.take().map(|l| (l.to_next, l.from_prev))
    }

    /// Ends the ring cleanly: flushes and shuts down the link to the next rank (for TLS, a
    /// close_notify), so the next rank sees an orderly end rather than a reset.
    pub async fn shutdown(mut self) -> Result<(), CollectiveError> {
        if let Some(mut links) = self.links.take() {
            let peer = PeerId {
                rank: (self.rank + 1) % self.world,
                side: Side::Next,
            };
            within(
                self.config.io_timeout,
                peer,
                "shutting the link down",
                links.to_next.shutdown(),
            )
            .await?;
        }
        Ok(())
    }
}

/// One all-reduce's fixed facts.
struct Plan {
    rank: usize,
    world: usize,
    epoch: u64,
    tag: u64,
    seq: u64,
    total: u64,
    bucket_floats: usize,
    timeout: Duration,
}

impl Plan {
    async fn run(
        &self,
        links: &mut Links,
        data: &mut [f32],
        stats: &mut AllReduceStats,
    ) -> Result<(), CollectiveError> {
        let n = self.world;
        let r = self.rank;
        // At least one (possibly empty) bucket, so ranks disagreeing on length, tag or call
        // count are caught even when data is empty.
        let buckets: Vec<&mut [f32]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks_mut(self.bucket_floats).collect()
        };
        for (b, bucket) in buckets.into_iter().enumerate() {
            stats.buckets += 1;
            for step in 0..n - 1 {
                let send = (r + n - step) % n;
                let recv = (r + 2 * n - step - 1) % n;
                self.step(
                    links,
                    Phase::ReduceScatter,
                    step,
                    b,
                    bucket,
                    send,
                    recv,
                    stats,
                )
                .await?;
            }
            for step in 0..n - 1 {
                let send = (r + 1 + n - step) % n;
                let recv = (r + n - step) % n;
                self.step(links, Phase::AllGather, step, b, bucket, send, recv, stats)
                    .await?;
            }
        }
        Ok(())
    }

    /// One step: send chunk `send` to the next rank while receiving chunk `recv` from the
    /// previous one (added in, or copied in for the all-gather).
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        links: &mut Links,
        phase: Phase,
        step: usize,
        bucket_index: usize,
        bucket: &mut [f32],
        send: usize,
        recv: usize,
        stats: &mut AllReduceStats,
    ) -> Result<(), CollectiveError> {
        let n = self.world;
        let send_range = chunk_range(bucket.len(), n, send);
        let recv_range = chunk_range(bucket.len(), n, recv);
        let header = |sender: usize, chunk: usize, len: usize| Header {
            phase,
            step: step as u16,
            bucket: bucket_index as u32,
            chunk: chunk as u32,
            len: len as u32,
            sender: sender as u16,
            world: n as u16,
            epoch: self.epoch,
            tag: self.tag,
            seq: self.seq,
            total: self.total,
        };
        let out = header(self.rank, send, send_range.len());
        let expect = header((self.rank + n - 1) % n, recv, recv_range.len());
        let (src, dst) = split_disjoint(bucket, send_range, recv_range);
        let next = PeerId {
            rank: (self.rank + 1) % n,
            side: Side::Next,
        };
        let prev = PeerId {
            rank: (self.rank + n - 1) % n,
            side: Side::Prev,
        };
        let Links {
            to_next,
            from_prev,
            scratch,
        } = links;
        let sending = send_chunk(to_next, self.timeout, next, &out, src);
        let receiving = recv_chunk(from_prev, self.timeout, prev, &expect, dst, scratch, phase);
        // The first failure drops the other half at once.
        let (sent, received) = tokio::try_join!(sending, receiving)?;
        stats.bytes_sent += sent;
        stats.bytes_received += received;
        Ok(())
    }
}

/// Chunk `c` of `n` over `len` values: as even as possible, in order, possibly empty.
fn chunk_range(len: usize, n: usize, c: usize) -> Range<usize> {
    let at = |i: usize| ((len as u128 * i as u128) / n as u128) as usize;
    at(c)..at(c + 1)
}

/// `data[send]` to read and `data[recv]` to write, which must not overlap.
fn split_disjoint(
    data: &mut [f32],
    send: Range<usize>,
    recv: Range<usize>,
) -> (&[f32], &mut [f32]) {
    if send.end <= recv.start {
        let (a, b) = data.split_at_mut(recv.start);
        (&a[send], &mut b[..recv.end - recv.start])
    } else {
        debug_assert!(recv.end <= send.start, "chunks overlap");
        let (a, b) = data.split_at_mut(send.start);
        (&b[..send.end - send.start], &mut a[recv])
    }
}

async fn send_chunk(
    w: &mut LinkWriter,
    timeout: Duration,
    peer: PeerId,
    header: &Header,
    src: &[f32],
) -> Result<u64, CollectiveError> {
    const DURING: &str = "sending a chunk";
    within(timeout, peer, DURING, w.write_all(&header.encode())).await?;
    let bytes: &[u8] = bytemuck::cast_slice(src);
    for piece in bytes.chunks(PIECE_BYTES) {
        within(timeout, peer, DURING, w.write_all(piece)).await?;
    }
    // TLS holds the last records until flushed; the peer waits for them.
    within(timeout, peer, DURING, w.flush()).await?;
    Ok((HEADER_LEN + bytes.len()) as u64)
}

async fn recv_chunk(
    r: &mut LinkReader,
    timeout: Duration,
    peer: PeerId,
    expect: &Header,
    dst: &mut [f32],
    scratch: &mut Vec<f32>,
    phase: Phase,
) -> Result<u64, CollectiveError> {
    const DURING: &str = "receiving a chunk";
    let mut head = [0u8; HEADER_LEN];
    within(timeout, peer, DURING, r.read_exact(&mut head)).await?;
    expect.check(&head, peer)?;
    match phase {
        // Finished sums: straight into place.
        Phase::AllGather => {
            for piece in bytemuck::cast_slice_mut::<f32, u8>(dst).chunks_mut(PIECE_BYTES) {
                within(timeout, peer, DURING, r.read_exact(piece)).await?;
            }
        }
        // Partial sums: each piece is added as soon as it is in, while the next arrives.
        Phase::ReduceScatter => {
            if scratch.len() < PIECE_FLOATS.min(dst.len()) {
                scratch.resize(PIECE_FLOATS.min(dst.len()), 0.0);
            }
            for piece in dst.chunks_mut(PIECE_FLOATS) {
                let incoming = &mut scratch[..piece.len()];
                within(
                    timeout,
                    peer,
                    DURING,
                    r.read_exact(bytemuck::cast_slice_mut(incoming)),
                )
                .await?;
                add_into(piece, incoming);
            }
        }
    }
    Ok((HEADER_LEN + dst.len() * 4) as u64)
}

/// `acc[i] += incoming[i]`: one fixed operation per element (IEEE addition is commutative,
/// so which side holds the running sum does not change the bits).
fn add_into(acc: &mut [f32], incoming: &[f32]) {
    for (a, b) in acc.iter_mut().zip(incoming) {
        *a += *b;
    }
}

/// Runs one I/O operation under the progress timeout, naming the peer on failure.
async fn within<T>(
    limit: Duration,
    peer: PeerId,
    during: &'static str,
    op: impl Future<Output = io::Result<T>>,
) -> Result<T, CollectiveError> {
    match tokio::time::timeout(limit, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(CollectiveError::Peer {
            peer,
            during,
            source,
        }),
        Err(_) => Err(CollectiveError::Timeout {
            peer,
            during,
            after: limit,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_bucket_in_order_without_overlap() {
        for len in [0usize, 1, 2, 3, 5, 7, 100, 1001] {
            for n in 1..6 {
                let mut next = 0;
                for c in 0..n {
                    let r = chunk_range(len, n, c);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= len / n + 1);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn disjoint_halves_are_the_requested_ranges() {
        let mut data: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let (src, dst) = split_disjoint(&mut data, 6..9, 1..3);
        assert_eq!(src, &[6.0, 7.0, 8.0]);
        assert_eq!(dst, &mut [1.0, 2.0]);
        let (src, dst) = split_disjoint(&mut data, 0..2, 2..5);
        assert_eq!(src, &[0.0, 1.0]);
        assert_eq!(dst, &mut [2.0, 3.0, 4.0]);
        let (src, dst) = split_disjoint(&mut data, 3..3, 3..3);
        assert!(src.is_empty() && dst.is_empty());
    }
}
