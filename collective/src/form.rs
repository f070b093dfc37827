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
//! and anything wrong with it fails the formation. The accepting side keeps listening until
//! the right previous rank arrives or the deadline passes, refusing (and logging) strangers
//! and stale peers meanwhile, so that one bad connection cannot stop the ring from forming.
//!
//! [`AttestedStream::peer_key`]: bastion_attestation::tls::AttestedStream::peer_key

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bastion_attestation::tls::{AttestedEndpoint, AttestedStream};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

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

/// Forms this rank's ring: concurrently connects to the next rank (TLS client; the link we
/// write) and accepts the previous one on `listener` (TLS server; the link we read), both
/// mutually attested by `endpoint`, within `config.connect_timeout`.
///
/// Refuses a next rank with another key ([`CollectiveError::WrongKey`]) or in another ring
/// ([`CollectiveError::WrongRing`]); on the accepting side refuses such peers and keeps
/// waiting, failing with [`CollectiveError::Formation`] (listing what it refused) if the
/// right one does not come. Sets `TCP_NODELAY` on both links. A world of one forms a ring
/// without any network.
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
    // The next rank may not be listening yet: retry refused connections until the deadline.
    let tcp = loop {
        match tokio::time::timeout(left(deadline), TcpStream::connect(spec.next_addr)).await {
            Ok(Ok(tcp)) => break tcp,
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
            Err(_) => return Err(timeout("connecting")),
        }
    };
    set_nodelay(&tcp, peer)?;
    let mut stream = tokio::time::timeout(left(deadline), endpoint.connect(tcp))
        .await
        .map_err(|_| timeout("attested TLS handshake"))?
        .map_err(|source| CollectiveError::Attestation { peer, source })?;
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

async fn accept_prev(
    endpoint: &AttestedEndpoint,
    listener: &TcpListener,
    spec: &RingSpec,
    deadline: Instant,
    waited: Duration,
) -> Result<AttestedStream<TcpStream>, CollectiveError> {
    let peer = prev_of(spec);
    let mut refused = Vec::new();
    loop {
        let attempt = async {
            let (tcp, from) = listener
                .accept()
                .await
                .map_err(|source| CollectiveError::Peer {
                    peer,
                    during: "accepting",
                    source,
                })?;
            let outcome = async {
                set_nodelay(&tcp, peer)?;
                let mut stream = endpoint
                    .accept(tcp)
                    .await
                    .map_err(|source| CollectiveError::Attestation { peer, source })?;
                if stream.peer_key() != spec.prev_key {
                    return Err(CollectiveError::WrongKey {
                        peer,
                        expected: spec.prev_key.clone(),
                        found: stream.peer_key().to_string(),
                    });
                }
                let theirs = hello(&mut stream, spec, false, peer, deadline, waited).await?;
                check_hello(&theirs, spec, peer, true)?;
                Ok(stream)
            }
            .await;
            Ok::<_, CollectiveError>((from, outcome))
        };
        match tokio::time::timeout(left(deadline), attempt).await {
            Err(_) => {
                return Err(CollectiveError::Formation {
                    peer,
                    waited,
                    refused,
                })
            }
            // The listener itself failed: nothing more will come.
            Ok(Err(e)) => return Err(e),
            Ok(Ok((_, Ok(stream)))) => return Ok(stream),
            Ok(Ok((from, Err(e)))) => {
                tracing::warn!(%peer, %from, error = %e, "refused a connection while forming the ring");
                refused.push(format!("{from}: {e}"));
            }
        }
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
