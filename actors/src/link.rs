//! The coordinator link: one mutually attested TLS connection per node, carrying
//! [`crate::protocol`] frames. The node side hands each order to its Trainer in sequence and
//! sends heartbeats beside it; the coordinator side admits the node to the Supervisor.

use crate::package::{sha256_hex, JobPackage};
use crate::protocol::{Admitted, BlobInfo, Chunk, JobOffer, Join, ToNode, ToSupervisor};
use crate::supervisor::{MemberAttestation, SupervisorMsg};
use crate::trainer::TrainerMsg;
use bastion_attestation::tls::{AttestedEndpoint, AttestedTlsError};
use bastion_metrics::NodeMetrics;
use bastion_wire::{read_frame, write_frame, FramedConn};
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Control frames are small; anything bigger is a confused or hostile peer.
const MAX_CONTROL_FRAME: usize = 1 << 20;

/// Blobs (tokenizer, initial weights) travel in pieces of this size, under the frame limit.
const CHUNK: usize = 512 * 1024;

/// Initial weights larger than this are refused (GPT-2 XL is 6.2 GB in f32).
const MAX_BLOB: u64 = 8 << 30;

/// How long an offered node may take to load and check its datasets before it joins.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(600);

/// A byte stream (the attested TLS stream, type-erased).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// An attested connection to the coordinator whose job offer has been received and checked.
pub struct Offered {
    conn: FramedConn<Box<dyn Io>>,
    /// The offer.
    pub offer: JobOffer,
    /// The tokenizer.json, checked against the offer.
    pub tokenizer: Option<Vec<u8>>,
    /// The initial weights, checked against the offer.
    pub weights: Vec<u8>,
}

/// Receives one blob announced as `info`, and checks its length and digest.
async fn receive_blob<S>(
    conn: &mut FramedConn<S>,
    info: &BlobInfo,
    what: &str,
) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if info.len > MAX_BLOB {
        return Err(format!(
            "the offered {what} is {} bytes, over the limit of {MAX_BLOB}",
            info.len
        ));
    }
    let mut out = Vec::with_capacity(info.len as usize);
    while (out.len() as u64) < info.len {
        let Chunk(piece) = conn
            .recv()
            .await
            .map_err(|e| format!("receiving the {what}: {e}"))?;
        if piece.is_empty() || out.len() as u64 + piece.len() as u64 > info.len {
            return Err(format!(
                "the {what} does not match its announced size of {} bytes",
                info.len
            ));
        }
        out.extend_from_slice(&piece);
    }
    let digest = sha256_hex(&out);
    if digest != info.sha256 {
        return Err(format!(
            "the {what} received has SHA-256 {digest}, not the {} the job announced",
            info.sha256
        ));
    }
    Ok(out)
}

async fn send_blob<S>(conn: &mut FramedConn<S>, bytes: &[u8]) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for piece in bytes.chunks(CHUNK) {
        conn.send(&Chunk(piece.to_vec()))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Connects to the coordinator, attests it, and receives the job offer with its tokenizer
/// and initial weights, each checked against the offer's digests.
pub async fn connect_member(
    coordinator: std::net::SocketAddr,
    endpoint: &AttestedEndpoint,
    node: &str,
    metrics: &NodeMetrics,
    connect_timeout: Duration,
) -> Result<Offered, String> {
    let tcp = connect_with_retry(coordinator, connect_timeout).await?;
    let _ = tcp.set_nodelay(true);
    let attested = tokio::time::timeout(connect_timeout, endpoint.connect(tcp))
        .await
        .map_err(|_| format!("attesting the coordinator at {coordinator} timed out"))?;
    let stream = match attested {
        Ok(stream) => {
            metrics.attestation_ok();
            stream
        }
        Err(e) => {
            // Count only our refusals of the coordinator, not its refusal of us.
            if !matches!(e, AttestedTlsError::RefusedByPeer { .. }) {
                metrics.attestation_failed(e.code());
            }
            return Err(format!("coordinator at {coordinator}: {e}"));
        }
    };
    let (tls, _verdict) = stream.into_parts();
    let mut conn = FramedConn::new(Box::new(tls) as Box<dyn Io>).with_max_frame(MAX_CONTROL_FRAME);
    conn.handshake(&Hello {
        node: node.to_string(),
    })
    .await
    .map_err(|e| format!("coordinator handshake: {e}"))?;
    let offer: JobOffer = conn.recv().await.map_err(|e| format!("job offer: {e}"))?;
    let tokenizer = match &offer.tokenizer {
        Some(info) => Some(receive_blob(&mut conn, info, "tokenizer").await?),
        None => None,
    };
    let weights = receive_blob(&mut conn, &offer.weights, "initial weights").await?;
    Ok(Offered {
        conn,
        offer,
        tokenizer,
        weights,
    })
}

/// The version hello of the coordinator link.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    node: String,
}

/// How a node's membership ended.
#[derive(Debug)]
pub enum LinkEnd {
    /// The Supervisor ended the job.
    Finished {
        /// Why.
        reason: String,
        /// Whether it failed.
        failed: bool,
    },
    /// The coordinator went away (it may come back).
    Lost(String),
}

/// Joins over an offered connection and serves the coordinator's orders until the job ends
/// or the link breaks.
pub async fn serve_member(
    offered: Offered,
    join: Join,
    trainer: ActorRef<TrainerMsg>,
    generation: &tokio::sync::watch::Sender<u64>,
    heartbeat: Duration,
) -> Result<LinkEnd, String> {
    let mut conn = offered.conn;
    crate::tap::record_frame(&join.node, &join);
    conn.send(&join)
        .await
        .map_err(|e| format!("joining: {e}"))?;
    let admitted: Result<Admitted, String> =
        conn.recv().await.map_err(|e| format!("joining: {e}"))?;
    let admitted =
        admitted.map_err(|reason| format!("the coordinator refused this node: {reason}"))?;
    tracing::info!(coordinator = %admitted.coordinator, "admitted to the group");

    let (mut reader, mut writer) = tokio::io::split(conn.into_inner());
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ToSupervisor>();
    let me = join.node.clone();
    let writer_task = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            crate::tap::record_frame(&me, &msg);
            if let Err(e) = write_frame(&mut writer, &msg, MAX_CONTROL_FRAME).await {
                return Err(e.to_string());
            }
        }
        let _ = writer.shutdown().await;
        Ok(())
    });
    let beats = out_tx.clone();
    let heartbeat_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(heartbeat);
        loop {
            tick.tick().await;
            if beats.send(ToSupervisor::Heartbeat).is_err() {
                break;
            }
        }
    });
    // Orders run one at a time, in the order sent; the reader keeps reading meanwhile so a
    // dead coordinator is noticed even during a long step.
    let (order_tx, mut order_rx) = mpsc::unbounded_channel::<(ToNode, u64)>();
    let replies = out_tx.clone();
    let worker = trainer.clone();
    // Set once the model is released on the Supervisor's order: Finish then writes nothing.
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let released_by_order = std::sync::Arc::clone(&released);
    let order_task = tokio::spawn(async move {
        while let Some((order, generation)) = order_rx.recv().await {
            let answer = match order {
                ToNode::Form(plan) => Some(
                    ask(&worker, |reply| TrainerMsg::Form {
                        plan,
                        generation,
                        reply,
                    })
                    .await,
                ),
                ToNode::Step {
                    epoch,
                    step,
                    ledger_step,
                    checkpoint,
                } => Some(
                    ask(&worker, |reply| TrainerMsg::Step {
                        epoch,
                        step,
                        ledger_step,
                        checkpoint,
                        generation,
                        reply,
                    })
                    .await,
                ),
                ToNode::Evaluate => {
                    Some(ask(&worker, |reply| TrainerMsg::Evaluate { reply }).await)
                }
                ToNode::Release => Some(
                    match worker
                        .call(|reply| TrainerMsg::SaveFinal { reply }, None)
                        .await
                    {
                        Ok(ractor::rpc::CallResult::Success(Ok(path))) => {
                            released_by_order.store(true, std::sync::atomic::Ordering::SeqCst);
                            ToSupervisor::Released {
                                path: path.display().to_string(),
                            }
                        }
                        Ok(ractor::rpc::CallResult::Success(Err(reason))) => {
                            ToSupervisor::ReleaseFailed { reason }
                        }
                        other => ToSupervisor::ReleaseFailed {
                            reason: format!("trainer unavailable: {other:?}"),
                        },
                    },
                ),
                ToNode::Abort { .. } | ToNode::Finish { .. } => None,
            };
            if let Some(answer) = answer {
                if replies.send(answer).is_err() {
                    break;
                }
            }
        }
    });

    let end = loop {
        match read_frame::<_, ToNode>(&mut reader, MAX_CONTROL_FRAME).await {
            Ok(ToNode::Abort { reason }) => {
                tracing::warn!(%reason, "step aborted by the supervisor");
                generation.send_modify(|g| *g += 1);
                let _ = trainer.cast(TrainerMsg::Abort);
            }
            Ok(ToNode::Finish { reason, failed }) => {
                // Let the last orders finish, then save the released model.
                drop(order_tx);
                let _ = order_task.await;
                if released.load(std::sync::atomic::Ordering::SeqCst) {
                    // Written on the Release order and named in the receipt: left as it is.
                    break LinkEnd::Finished { reason, failed };
                }
                match trainer
                    .call(|reply| TrainerMsg::SaveFinal { reply }, None)
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(Ok(path))) => {
                        tracing::info!(path = %path.display(), "final weights written")
                    }
                    other => tracing::warn!(?other, "final weights not written"),
                }
                break LinkEnd::Finished { reason, failed };
            }
            Ok(order) => {
                if matches!(order, ToNode::Form(_)) {
                    generation.send_modify(|g| *g += 1);
                }
                let _ = order_tx.send((order, *generation.borrow()));
            }
            Err(e) => {
                order_task.abort();
                // Whatever the trainer is doing belongs to a group that no longer exists.
                generation.send_modify(|g| *g += 1);
                break LinkEnd::Lost(format!("coordinator link: {e}"));
            }
        }
    };
    heartbeat_task.abort();
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer_task).await;
    Ok(end)
}

async fn ask(
    trainer: &ActorRef<TrainerMsg>,
    msg: impl FnOnce(ractor::RpcReplyPort<ToSupervisor>) -> TrainerMsg,
) -> ToSupervisor {
    match trainer.call(msg, None).await {
        Ok(ractor::rpc::CallResult::Success(answer)) => answer,
        other => ToSupervisor::Failed {
            epoch: 0,
            reason: format!("trainer unavailable: {other:?}"),
        },
    }
}

async fn connect_with_retry(
    addr: std::net::SocketAddr,
    within: Duration,
) -> Result<TcpStream, String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("cannot reach the coordinator at {addr}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The coordinator side: accepts nodes, attests them, and admits them to the Supervisor.
///
/// Bounded against strangers: at most 32 connections are in their handshake (attested TLS,
/// then hello and join) at once, and one beyond that is closed unhandled, with a warning; the
/// attested accept and then the hello and join each get `handshake_timeout`, so a node that
/// attests and then says nothing is dropped. A slot is held until the node's admission is
/// answered, not for its membership.
pub async fn serve_coordinator(
    listener: TcpListener,
    endpoint: AttestedEndpoint,
    supervisor: ActorRef<SupervisorMsg>,
    metrics: NodeMetrics,
    package: JobPackage,
    handshake_timeout: Duration,
) {
    // Room for a whole group re-joining at once; few enough that strangers holding every
    // slot cost little (each slot is one task, one socket, one verification at most).
    const MAX_HANDSHAKES: usize = 32;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let mut turned_away: u64 = 0;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Taken before anything is spent on the connection.
        let Ok(slot) = std::sync::Arc::clone(&slots).try_acquire_owned() else {
            turned_away += 1;
            // Loud at the first and at each doubling: visible without a line per socket.
            // Not an attestation metric: nothing was attested.
            if turned_away.is_power_of_two() {
                tracing::warn!(
                    %peer, turned_away, limit = MAX_HANDSHAKES,
                    "connection closed unhandled: too many node handshakes in progress"
                );
            }
            drop(tcp);
            continue;
        };
        let endpoint = endpoint.clone();
        let supervisor = supervisor.clone();
        let metrics = metrics.clone();
        let package = package.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let attested = tokio::time::timeout(handshake_timeout, endpoint.accept(tcp)).await;
            let stream = match attested {
                Ok(Ok(stream)) => {
                    metrics.attestation_ok();
                    stream
                }
                Ok(Err(e)) => {
                    let code = metrics.attestation_failed(e.code());
                    tracing::warn!(%peer, reason = code, error = %e, "node refused: attestation failed");
                    return;
                }
                Err(_) => {
                    metrics.attestation_failed("timeout");
                    tracing::warn!(%peer, "node refused: attestation timed out");
                    return;
                }
            };
            let key = stream.peer_key().to_string();
            let (tls, verdict) = stream.into_parts();
            let attestation = MemberAttestation::from(&verdict);
            if let Err(e) = admit(
                tls,
                key,
                attestation,
                supervisor,
                package,
                handshake_timeout,
                slot,
            )
            .await
            {
                tracing::warn!(%peer, error = %e, "node not admitted");
            }
        });
    }
}

/// Hello (within `handshake_timeout`), the job offer with its blobs, the join (within
/// [`PREPARE_TIMEOUT`]: the node loads its data for the offered task), the Supervisor's
/// answer, then the node's session. `slot` is released once the answer is sent.
async fn admit<S>(
    tls: S,
    key: String,
    attestation: MemberAttestation,
    supervisor: ActorRef<SupervisorMsg>,
    package: JobPackage,
    handshake_timeout: Duration,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut conn = FramedConn::new(tls).with_max_frame(MAX_CONTROL_FRAME);
    let coordinator = package.offer.coordinator.clone();
    // Attested but not yet introduced: a node that went quiet here would hold its slot.
    let hello = tokio::time::timeout(
        handshake_timeout,
        conn.handshake(&Hello {
            node: coordinator.clone(),
        }),
    )
    .await
    .map_err(|_| {
        format!("attested node (TLS key sha256:{key}) sent no hello within {handshake_timeout:?}")
    })?
    .map_err(|e| format!("hello: {e}"))?;
    conn.send(&package.offer)
        .await
        .map_err(|e| format!("offer: {e}"))?;
    if let Some(tokenizer) = &package.tokenizer {
        send_blob(&mut conn, tokenizer).await?;
    }
    send_blob(&mut conn, &package.weights).await?;
    let join: Join = tokio::time::timeout(PREPARE_TIMEOUT, conn.recv())
        .await
        .map_err(|_| {
            format!(
                "node {} did not join within {PREPARE_TIMEOUT:?} of the offer",
                hello.node
            )
        })?
        .map_err(|e| format!("join: {e}"))?;
    if join.node != hello.node {
        let refusal: Result<Admitted, String> = Err("hello and join name different nodes".into());
        let _ = conn.send(&refusal).await;
        return Err(format!("node {} joined as {}", hello.node, join.node));
    }
    let node = join.node.clone();
    let (link_tx, mut link_rx) = mpsc::unbounded_channel::<ToNode>();
    let verdict = supervisor
        .call(
            |reply| SupervisorMsg::Joined {
                join,
                key,
                attestation,
                link: link_tx,
                reply,
            },
            Some(Duration::from_secs(30)),
        )
        .await;
    let admitted = match verdict {
        Ok(ractor::rpc::CallResult::Success(r)) => r,
        other => Err(format!("supervisor unavailable: {other:?}")),
    };
    let me = coordinator.clone();
    let answer = admitted.clone().map(|()| Admitted { coordinator });
    crate::tap::record_frame(&me, &answer);
    conn.send(&answer).await.map_err(|e| e.to_string())?;
    drop(slot);
    if let Err(reason) = admitted {
        return Err(format!("node {node} refused: {reason}"));
    }

    let (mut reader, mut writer) = tokio::io::split(conn.into_inner());
    let writer_task = tokio::spawn(async move {
        while let Some(msg) = link_rx.recv().await {
            crate::tap::record_frame(&me, &msg);
            if write_frame(&mut writer, &msg, MAX_CONTROL_FRAME)
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let reason = loop {
        match read_frame::<_, ToSupervisor>(&mut reader, MAX_CONTROL_FRAME).await {
            Ok(msg) => {
                let _ = supervisor.cast(SupervisorMsg::From {
                    node: node.clone(),
                    msg,
                });
            }
            Err(e) => break e.to_string(),
        }
    };
    let _ = supervisor.cast(SupervisorMsg::Closed { node, reason });
    writer_task.abort();
    Ok(())
}
