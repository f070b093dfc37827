//! Forming a ring over mutually attested TLS: connect to the next rank, accept the previous
//! one, concurrently; check each neighbour's TLS key and ring hello; hand both links to a
//! [`Ring`].
//!
//! ```text
//!  rank r-1 ──TLS (r-1 client, r server)──▶ rank r ──TLS (r client, r+1 server)──▶ rank r+1
//!            r reads only                          r writes only
//! ```
//!
//! The keys are the ones the group agreed on when it admitted each node (SHA-256 of the
//! node's TLS SubjectPublicKeyInfo, as [`AttestedStream::peer_key`] gives it): attestation
//! proves a peer is *an* accepted guest; the key proves it is *the* node holding that rank.
//! The hello then proves it is in *this* ring (epoch, size, position), so a node of an older
//! ring is refused before any data flows.
//!
//! The connecting side is strict: the node at the next rank's address is the one we need,
//! and anything wrong with its evidence, key or hello fails the formation. Only a transport
//! that fails before TLS completes (refused, or closed by a next rank busy with strangers) is
//! retried until the deadline.
//!
//! The accepting side must stay available to its previous rank whatever else connects to the
//! listener. Each accepted connection gets its own task: attested TLS, key check and hello
//! within [`HANDSHAKE_TIMEOUT`] (or what is left of the formation deadline). The first one to
//! pass all three is the link; the others are aborted. So a stranger that connects and says
//! nothing, or sends garbage, costs one slot for a few seconds at most and never blocks or
//! fails the formation. At most [`MAX_HANDSHAKES`] run at once; a connection beyond that is
//! closed at once, before any TLS (the previous rank, if it is the one turned away, retries).
//! Refusals are logged, and listed in [`CollectiveError::Formation`] if the right peer never
//! comes, both capped so a flood cannot grow them.
//!
//! [`AttestedStream::peer_key`]: bastion_attestation::tls::AttestedStream::peer_key

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bastion_attestation::tls::{AttestedEndpoint, AttestedStream, AttestedTlsError};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::error::{CollectiveError, PeerId, Side};
use crate::ring::{Ring, RingConfig};

/// Where this rank sits and whom it expects on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSpec {
    /// This rank.
    pub rank: usize,
    /// Ranks in the ring.
    pub world: usize,
    /// Identifies this ring (bumped at every re-formation); both hellos and every chunk
    /// header carry it.
    pub epoch: u64,
    /// The next rank's listening address.
    pub next_addr: SocketAddr,
    /// The next rank's TLS key fingerprint (SHA-256 of its SPKI, hex).
    pub next_key: String,
    /// The previous rank's TLS key fingerprint.
    pub prev_key: String,
}

/// What each end of a ring link says about itself, after the attested handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct RingHello {
    epoch: u64,
    world: u32,
    rank: u32,
    /// True from the connecting (sending) end.
    sender: bool,
}

/// Pause between attempts to reach a next rank that is not listening yet.
const RETRY: Duration = Duration::from_millis(100);

/// Most incoming handshakes run at once while waiting for the previous rank; a connection
/// beyond this is closed as soon as it is accepted. Bounds the sockets, tasks and
/// verification work strangers can cost, and lets the real peer in once slots free.
pub(crate) const MAX_HANDSHAKES: usize = 16;

/// Longest one incoming connection may take from accept to a checked ring hello. An honest
/// neighbour needs milliseconds (report signing and verification included); this only bounds
/// how long a silent stranger holds a slot.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Refusals kept (and logged as warnings) while waiting for the previous rank; later ones
/// are counted and logged at debug level, so that a flood grows neither the error nor the log.
const REFUSALS_KEPT: usize = 16;

/// Pause after a failed `accept` (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Forms this rank's ring: concurrently connects to the next rank (TLS client; the link we
/// write) and accepts the previous one on `listener` (TLS server; the link we read), both
/// mutually attested by `endpoint`, within `config.connect_timeout`.
///
/// Refuses a next rank with another key ([`CollectiveError::WrongKey`]) or in another ring
/// ([`CollectiveError::WrongRing`]); on the accepting side handshakes with every incoming
/// connection concurrently (at most 16 at once, closing any beyond; each within 5 seconds or
/// the deadline), refuses strangers and stale peers and keeps waiting, failing with
/// [`CollectiveError::Formation`] (listing what it refused) if the right one does not come.
/// Sets `TCP_NODELAY` on both links. A world of one forms a ring without any network.
pub async fn form_ring(
    endpoint: &AttestedEndpoint,
    listener: &TcpListener,
    spec: &RingSpec,
    config: RingConfig,
) -> Result<Ring, CollectiveError> {
    if spec.world == 0 || spec.rank >= spec.world {
        return Err(CollectiveError::Config(format!(
            "rank {} is outside a world of {}",
            spec.rank, spec.world
        )));
    }
    if spec.world == 1 {
        return Ring::single(spec.epoch, config);
    }
    let deadline = Instant::now() + config.connect_timeout;
    let (to_next, from_prev) = tokio::try_join!(
        connect_next(endpoint, spec, deadline, config.connect_timeout),
        accept_prev(endpoint, listener, spec, deadline, config.connect_timeout),
    )?;
    let (to_next, _) = to_next.into_parts();
    let (from_prev, _) = from_prev.into_parts();
    tracing::info!(
        rank = spec.rank,
        world = spec.world,
        epoch = spec.epoch,
        next = %spec.next_addr,
        "ring formed over attested TLS"
    );
    Ring::new(
        spec.rank,
        spec.world,
        spec.epoch,
        Box::new(to_next),
        Box::new(from_prev),
        config,
    )
}

fn next_of(spec: &RingSpec) -> PeerId {
    PeerId {
        rank: (spec.rank + 1) % spec.world,
        side: Side::Next,
    }
}

fn prev_of(spec: &RingSpec) -> PeerId {
    PeerId {
        rank: (spec.rank + spec.world - 1) % spec.world,
        side: Side::Prev,
    }
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

async fn connect_next(
    endpoint: &AttestedEndpoint,
    spec: &RingSpec,
    deadline: Instant,
    limit: Duration,
) -> Result<AttestedStream<TcpStream>, CollectiveError> {
    let peer = next_of(spec);
    let timeout = |during| CollectiveError::Timeout {
        peer,
        during,
        after: limit,
    };
    // The next rank may not be listening yet, or may close us before TLS while its handshake
    // slots are held by strangers: retry those until the deadline. Anything later (a verdict
    // on either side's evidence, a hang-up mid-exchange) is final.
    let mut stream = loop {
        let tcp = connect_tcp(spec, peer, deadline, limit).await?;
        set_nodelay(&tcp, peer)?;
        match tokio::time::timeout(left(deadline), endpoint.connect(tcp)).await {
            Err(_) => return Err(timeout("attested TLS handshake")),
            Ok(Ok(stream)) => break stream,
            Ok(Err(
                e @ AttestedTlsError::Io {
                    stage: "TLS handshake",
                    ..
                },
            )) if Instant::now() + RETRY < deadline => {
                tracing::debug!(%peer, addr = %spec.next_addr, error = %e, "next rank dropped the connection; retrying");
                tokio::time::sleep(RETRY).await;
            }
            Ok(Err(source)) => {
                return Err(CollectiveError::Attestation {
                    peer,
                    source: Box::new(source),
                })
            }
        }
    };
    if stream.peer_key() != spec.next_key {
        return Err(CollectiveError::WrongKey {
            peer,
            expected: spec.next_key.clone(),
            found: stream.peer_key().to_string(),
        });
    }
    let theirs = hello(&mut stream, spec, true, peer, deadline, limit).await?;
    check_hello(&theirs, spec, peer, false)?;
    Ok(stream)
}

async fn connect_tcp(
    spec: &RingSpec,
    peer: PeerId,
    deadline: Instant,
    limit: Duration,
) -> Result<TcpStream, CollectiveError> {
    loop {
        match tokio::time::timeout(left(deadline), TcpStream::connect(spec.next_addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) if Instant::now() + RETRY < deadline => {
                tracing::debug!(%peer, addr = %spec.next_addr, error = %e, "next rank not reachable yet; retrying");
                tokio::time::sleep(RETRY).await;
            }
            Ok(Err(source)) => {
                return Err(CollectiveError::Peer {
                    peer,
                    during: "connecting",
                    source,
                })
            }
            Err(_) => {
                return Err(CollectiveError::Timeout {
                    peer,
                    during: "connecting",
                    after: limit,
                })
            }
        }
    }
}

/// Accepts connections until one is the previous rank: each is handshaken in its own task,
/// so no connection waits for another; see the [module docs](self).
async fn accept_prev(
    endpoint: &AttestedEndpoint,
    listener: &TcpListener,
    spec: &RingSpec,
    deadline: Instant,
    waited: Duration,
) -> Result<AttestedStream<TcpStream>, CollectiveError> {
    let peer = prev_of(spec);
    let mut refusals = Refusals::default();
    // Dropping the set, on return or when the caller gives up, aborts the handshakes left.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            // Finished handshakes first: one may be the neighbour, and each frees a slot.
            biased;
            Some(done) = handshakes.join_next() => match done {
                Ok((_, Ok(stream))) => return Ok(stream),
                Ok((from, Err(e))) => refusals.refused(peer, from, &e),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {} // cancelled: only the set's drop cancels, and then we are gone
            },
            () = tokio::time::sleep_until(deadline.into()) => {
                return Err(CollectiveError::Formation {
                    peer,
                    waited,
                    refused: refusals.into_list(handshakes.len()),
                });
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, from)) if handshakes.len() >= MAX_HANDSHAKES => {
                    drop(tcp);
                    refusals.busy(peer, from);
                }
                Ok((tcp, from)) => {
                    handshakes.spawn(incoming(endpoint.clone(), tcp, from, spec.clone(), deadline));
                }
                // Per-connection or resource errors (a connection reset in the backlog, no
                // file descriptors left): the listener itself stays usable.
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "accepting a connection failed; still listening");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// One incoming connection: attested TLS, the previous rank's key, its hello, all within
/// [`HANDSHAKE_TIMEOUT`] (or the formation deadline, if sooner).
async fn incoming(
    endpoint: AttestedEndpoint,
    tcp: TcpStream,
    from: SocketAddr,
    spec: RingSpec,
    deadline: Instant,
) -> (
    SocketAddr,
    Result<AttestedStream<TcpStream>, CollectiveError>,
) {
    let peer = prev_of(&spec);
    let limit = HANDSHAKE_TIMEOUT.min(left(deadline));
    let handshake = async {
        set_nodelay(&tcp, peer)?;
        let mut stream =
            endpoint
                .accept(tcp)
                .await
                .map_err(|source| CollectiveError::Attestation {
                    peer,
                    source: Box::new(source),
                })?;
        if stream.peer_key() != spec.prev_key {
            return Err(CollectiveError::WrongKey {
                peer,
                expected: spec.prev_key.clone(),
                found: stream.peer_key().to_string(),
            });
        }
        let theirs = hello(&mut stream, &spec, false, peer, deadline, limit).await?;
        check_hello(&theirs, &spec, peer, true)?;
        Ok(stream)
    };
    let outcome =
        tokio::time::timeout(limit, handshake)
            .await
            .unwrap_or(Err(CollectiveError::Timeout {
                peer,
                during: "accepting (attested TLS and ring hello)",
                after: limit,
            }));
    (from, outcome)
}

/// What the accepting side turned away while waiting for the previous rank, kept short.
#[derive(Debug, Default)]
struct Refusals {
    kept: Vec<String>,
    /// Refused beyond [`REFUSALS_KEPT`].
    more: usize,
    /// Closed unhandled because [`MAX_HANDSHAKES`] were running.
    busy: usize,
}

impl Refusals {
    fn refused(&mut self, peer: PeerId, from: SocketAddr, e: &CollectiveError) {
        if self.kept.len() < REFUSALS_KEPT {
            tracing::warn!(%peer, %from, error = %e, "refused a connection while forming the ring");
            self.kept.push(format!("{from}: {e}"));
        } else {
            tracing::debug!(%peer, %from, error = %e, "refused a connection while forming the ring");
            self.more += 1;
        }
    }

    fn busy(&mut self, peer: PeerId, from: SocketAddr) {
        self.busy += 1;
        // Loud at the first and then at each doubling: visible, but not one line per socket.
        if self.busy.is_power_of_two() {
            tracing::warn!(
                %peer, %from, dropped = self.busy, limit = MAX_HANDSHAKES,
                "closed a connection unhandled: too many handshakes in progress while forming the ring"
            );
        }
    }

    fn into_list(mut self, in_flight: usize) -> Vec<String> {
        if self.more > 0 {
            self.kept.push(format!("{} more refused", self.more));
        }
        if self.busy > 0 {
            self.kept.push(format!(
                "{} connections closed unhandled ({MAX_HANDSHAKES} handshakes already in progress)",
                self.busy
            ));
        }
        if in_flight > 0 {
            self.kept
                .push(format!("{in_flight} handshakes unfinished at the deadline"));
        }
        self.kept
    }
}

async fn hello(
    stream: &mut AttestedStream<TcpStream>,
    spec: &RingSpec,
    sender: bool,
    peer: PeerId,
    deadline: Instant,
    limit: Duration,
) -> Result<RingHello, CollectiveError> {
    let ours = RingHello {
        epoch: spec.epoch,
        world: spec.world as u32,
        rank: spec.rank as u32,
        sender,
    };
    tokio::time::timeout(left(deadline), bastion_wire::handshake(stream, &ours))
        .await
        .map_err(|_| CollectiveError::Timeout {
            peer,
            during: "ring hello",
            after: limit,
        })?
        .map_err(|source| CollectiveError::Wire { peer, source })
}

fn check_hello(
    theirs: &RingHello,
    spec: &RingSpec,
    peer: PeerId,
    they_send: bool,
) -> Result<(), CollectiveError> {
    let checks = [
        ("epoch", spec.epoch, theirs.epoch),
        ("world", spec.world as u64, u64::from(theirs.world)),
        ("rank", peer.rank as u64, u64::from(theirs.rank)),
        ("link", u64::from(they_send), u64::from(theirs.sender)),
    ];
    for (field, expected, found) in checks {
        if expected != found {
            return Err(CollectiveError::WrongRing {
                peer,
                field,
                expected,
                found,
            });
        }
    }
    Ok(())
}

fn set_nodelay(tcp: &TcpStream, peer: PeerId) -> Result<(), CollectiveError> {
    tcp.set_nodelay(true)
        .map_err(|source| CollectiveError::Peer {
            peer,
            during: "setting TCP_NODELAY",
            source,
        })
}
