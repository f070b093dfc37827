//! The node's party server: accepts parties over attested TLS, authorizes every request by
//! the party's role, and hands what is allowed to the [`PartyBackend`].
//!
//! - **Authentication** is attested TLS in party mode
//!   ([`AttestedEndpoint::accept_party`]): only a key listed in [`Roles`] gets past the
//!   handshake, and only it sees the node's evidence.
//! - **Authorization** is per request, here, before the backend is called: a data owner
//!   only for its own datasets; a model owner only with datasets whose owners allow it, and
//!   only its own job's release; an operator only the status. Every refusal names the role,
//!   the party and the request (see [`crate::protocol::Refusal`]).
//! - **Robustness**: each connection is its own task with a handshake timeout, an idle
//!   timeout per request and a write timeout; a bounded number run at once; a failing or
//!   malicious client ends only its own connection.

mod pushes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bastion_attestation::tls::{AttestedEndpoint, AttestedTlsError, PartyStream};
use bastion_wire::{FramedConn, WireError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::backend::{PartyBackend, Release};
use crate::error::PartyError;
use crate::protocol::{
    job_datasets, Hello, Refusal, ReleaseEntry, Request, Response, CHUNK, MAX_DATASET_LEN,
    MAX_FRAME,
};
use crate::roles::{Party, PartyRole, Roles};
use pushes::{lock, Held, Pushes};

/// How long and how much the server allows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerLimits {
    /// From TCP accept to the end of attested TLS and the hello.
    pub handshake_timeout: Duration,
    /// Waiting for a party's next request (or chunk).
    pub idle_timeout: Duration,
    /// Writing one response.
    pub write_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Largest dataset a push may declare (at most [`MAX_DATASET_LEN`]).
    pub max_dataset_len: u64,
    /// A push nobody continues for this long is dropped.
    pub held_ttl: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(60),
            max_connections: 64,
            max_dataset_len: MAX_DATASET_LEN,
            held_ttl: Duration::from_secs(3600),
        }
    }
}

impl ServerLimits {
    /// Sets [`ServerLimits::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Sets [`ServerLimits::idle_timeout`].
    pub fn with_idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// Sets [`ServerLimits::max_dataset_len`] (capped at [`MAX_DATASET_LEN`]).
    pub fn with_max_dataset_len(mut self, len: u64) -> Self {
        self.max_dataset_len = len.min(MAX_DATASET_LEN);
        self
    }
}

/// The party server of one node.
pub struct PartyServer {
    endpoint: AttestedEndpoint,
    roles: Arc<Roles>,
    backend: Arc<dyn PartyBackend>,
    limits: ServerLimits,
    pushes: Pushes,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for PartyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyServer")
            .field("endpoint", &self.endpoint)
            .field("parties", &self.roles.parties().len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Serves parties on `listener` with the default limits, forever. See [`PartyServer`].
pub async fn serve(
    listener: TcpListener,
    endpoint: AttestedEndpoint,
    roles: Arc<Roles>,
    backend: Arc<dyn PartyBackend>,
) {
    Arc::new(PartyServer::new(endpoint, roles, backend))
        .serve(listener)
        .await
}

/// One connection's state.
struct Conn {
    id: u64,
    party: Party,
    /// The push this connection began, if any.
    push: Option<Arc<Mutex<Held>>>,
}

/// What answering a request takes: one response, or a release to stream.
enum Answer {
    One(Response),
    Release(Release),
}

impl PartyServer {
    /// A server answering the parties in `roles` with `backend`, as `endpoint`.
    pub fn new(
        endpoint: AttestedEndpoint,
        roles: Arc<Roles>,
        backend: Arc<dyn PartyBackend>,
    ) -> Self {
        Self::with_limits(endpoint, roles, backend, ServerLimits::default())
    }

    /// As [`PartyServer::new`], with `limits`.
    pub fn with_limits(
        endpoint: AttestedEndpoint,
        roles: Arc<Roles>,
        backend: Arc<dyn PartyBackend>,
        limits: ServerLimits,
    ) -> Self {
        let ttl = limits.held_ttl;
        Self {
            endpoint,
            roles,
            backend,
            limits,
            pushes: Pushes::new(ttl),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Bytes of unfinished pushes held in memory.
    pub fn held_bytes(&self) -> u64 {
        self.pushes.held_bytes()
    }

    /// Accepts connections forever, each in its own task. Errors of one connection are
    /// logged and end only it; a failing `accept` (out of file descriptors) is retried.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.limits.max_connections));
        loop {
            let permit = match Arc::clone(&slots).acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => return, // the semaphore is never closed
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "party server: accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let server = Arc::clone(&self);
            tokio::spawn(async move {
                let _permit = permit;
                server.serve_tcp(tcp, peer).await;
            });
        }
    }

    async fn serve_tcp(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        if let Err(e) = self.serve_connection(tcp, &peer.to_string()).await {
            match &e {
                PartyError::Link(WireError::Closed) => {}
                e => tracing::info!(%peer, error = %e, "party connection ended"),
            }
        }
    }

    /// Serves one connection over any byte stream until the party closes it or it fails.
    pub async fn serve_connection<IO>(&self, io: IO, peer: &str) -> Result<(), PartyError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = &self.limits;
        let timeout = |stage| PartyError::Timeout {
            addr: peer.to_string(),
            stage,
            after: limits.handshake_timeout,
        };
        let roles = Arc::clone(&self.roles);
        let known = move |key: &str| roles.is_known(key);
        let stream: PartyStream<IO> = tokio::time::timeout(
            limits.handshake_timeout,
            self.endpoint.accept_party(io, &known),
        )
        .await
        .map_err(|_| timeout("attested TLS"))??;
        // accept_party admitted only known keys; kept total all the same.
        let Some(party) = self.roles.party(stream.party_key()).cloned() else {
            return Err(AttestedTlsError::UnknownParty {
                party_key: stream.party_key().to_string(),
            }
            .into());
        };
        let mut conn = FramedConn::new(stream)
            .with_max_frame(MAX_FRAME)
            .with_read_timeout(Some(limits.handshake_timeout));
        let theirs = conn.handshake(&Hello::ours()).await?;
        if theirs != Hello::ours() {
            return Err(PartyError::Protocol {
                expected: Hello::ours().to_string(),
                found: theirs.to_string(),
            });
        }
        let mut conn = conn.with_read_timeout(Some(limits.idle_timeout));
        let mut state = Conn {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            party,
            push: None,
        };
        tracing::info!(party = %state.party.name, role = %state.party.role, %peer, "party connected");
        loop {
            let answer = match conn.recv::<Request>().await {
                Ok(request) => self.answer(&mut state, request).await,
                // A whole frame that is not a request: say so; the link is still in step.
                Err(
                    e @ (WireError::Decode { .. } | WireError::Trailing { .. } | WireError::Empty),
                ) => Answer::One(Response::Failed {
                    request: "(malformed)".into(),
                    reason: format!("not a request of {}: {e}", Hello::ours()),
                }),
                Err(e) => return Err(e.into()),
            };
            match answer {
                Answer::One(response) => self.send(&mut conn, &response, peer).await?,
                Answer::Release(release) => self.send_release(&mut conn, release, peer).await?,
            }
        }
    }

    async fn send<S>(
        &self,
        conn: &mut FramedConn<S>,
        response: &Response,
        peer: &str,
    ) -> Result<(), PartyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio::time::timeout(self.limits.write_timeout, conn.send(response))
            .await
            .map_err(|_| PartyError::Timeout {
                addr: peer.to_string(),
                stage: "sending a response",
                after: self.limits.write_timeout,
            })??;
        Ok(())
    }

    async fn send_release<S>(
        &self,
        conn: &mut FramedConn<S>,
        release: Release,
        peer: &str,
    ) -> Result<(), PartyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut files: Vec<(String, Vec<u8>)> = release
            .files
            .into_iter()
            .map(|f| (f.name, f.bytes))
            .collect();
        files.push(("receipt.json".into(), release.receipt_json));
        let entries = files
            .iter()
            .map(|(name, bytes)| ReleaseEntry {
                name: name.clone(),
                len: bytes.len() as u64,
            })
            .collect();
        let begin = Response::ReleaseBegin {
            job_id: release.job_id,
            files: entries,
        };
        self.send(conn, &begin, peer).await?;
        for (i, (_, bytes)) in files.iter().enumerate() {
            for (k, chunk) in bytes.chunks(CHUNK).enumerate() {
                let response = Response::ReleaseChunk {
                    file: i as u32,
                    offset: (k * CHUNK) as u64,
                    bytes: chunk.to_vec(),
                };
                self.send(conn, &response, peer).await?;
            }
        }
        self.send(conn, &Response::ReleaseEnd, peer).await
    }

    /// Authorizes `request` for this connection's party and answers it.
    async fn answer(&self, conn: &mut Conn, request: Request) -> Answer {
        let name = request.name();
        let party = conn.party.clone();
        let refuse = |reason: String| {
            tracing::warn!(party = %party.name, role = %party.role, request = name, %reason, "party request refused");
            Answer::One(Response::Refused(Refusal {
                role: party.role.to_string(),
                party: party.name.clone(),
                request: name.to_string(),
                reason,
            }))
        };
        let failed = |reason: String| {
            tracing::warn!(party = %party.name, request = name, %reason, "party request failed");
            Answer::One(Response::Failed {
                request: name.to_string(),
                reason,
            })
        };
        match request {
            Request::Status => {
                let status = self.blocking(|b| b.status()).await;
                match status {
                    Ok(status) => Answer::One(Response::Status(status)),
                    Err(reason) => failed(reason),
                }
            }
            Request::PushBegin { meta, len, sha256 } => {
                if let Err(reason) = self.owns(&party, &meta.name, "push datasets") {
                    return refuse(reason);
                }
                if len == 0 || len > self.limits.max_dataset_len {
                    return refuse(format!(
                        "a dataset must be 1 byte to {} bytes, and this one declares {len}",
                        self.limits.max_dataset_len
                    ));
                }
                let (held, at) = self.pushes.begin(&party.key, meta, len, sha256, conn.id);
                conn.push = Some(held);
                if at > 0 {
                    tracing::info!(party = %party.name, held = at, len, "push resumed");
                }
                Answer::One(Response::PushHeld { held: at })
            }
            Request::PushChunk { offset, bytes } => {
                if party.role != PartyRole::DataOwner {
                    return refuse(only(PartyRole::DataOwner, "push datasets"));
                }
                let Some(push) = &conn.push else {
                    return refuse(
                        "no push in progress on this connection: send PushBegin first".into(),
                    );
                };
                let mut held = lock(push);
                if let Err(reason) = current(&held, conn.id) {
                    return refuse(reason);
                }
                let at = held.bytes.len() as u64;
                if offset != at {
                    return refuse(format!(
                        "chunk at offset {offset}, but the node holds {at} bytes of {:?}: chunks must be contiguous",
                        held.meta.name
                    ));
                }
                if bytes.is_empty() || bytes.len() > CHUNK {
                    return refuse(format!(
                        "a chunk must be 1 to {CHUNK} bytes, this one is {}",
                        bytes.len()
                    ));
                }
                if at + bytes.len() as u64 > held.len {
                    return refuse(format!(
                        "{} more bytes at offset {at} exceed the declared length {}",
                        bytes.len(),
                        held.len
                    ));
                }
                match held.append(&bytes) {
                    Ok(()) => Answer::One(Response::PushHeld {
                        held: held.bytes.len() as u64,
                    }),
                    Err(reason) => failed(reason),
                }
            }
            Request::PushEnd => {
                if party.role != PartyRole::DataOwner {
                    return refuse(only(PartyRole::DataOwner, "push datasets"));
                }
                let Some(push) = conn.push.clone() else {
                    return refuse(
                        "no push in progress on this connection: send PushBegin first".into(),
                    );
                };
                self.finish_push(&party, push, conn.id, refuse, failed)
                    .await
            }
            Request::DeleteDataset { name: dataset } => {
                if let Err(reason) = self.owns(&party, &dataset, "delete datasets") {
                    return refuse(reason);
                }
                self.pushes.remove(&party.key, &dataset, None);
                let key = party.key.clone();
                let target = dataset.clone();
                match self
                    .blocking(move |b| b.delete_dataset(&key, &target))
                    .await
                {
                    Ok(Ok(())) => Answer::One(Response::Deleted { name: dataset }),
                    Ok(Err(reason)) | Err(reason) => failed(reason),
                }
            }
            Request::Spent { name: dataset } => {
                if let Err(reason) = self.owns(&party, &dataset, "read a dataset's spent budget") {
                    return refuse(reason);
                }
                match self.blocking(move |b| b.spent(&dataset)).await {
                    Ok(Ok(spent)) => Answer::One(Response::Spent(spent)),
                    Ok(Err(reason)) | Err(reason) => failed(reason),
                }
            }
            Request::SubmitJob { job_toml } => {
                if party.role != PartyRole::ModelOwner {
                    return refuse(only(PartyRole::ModelOwner, "submit jobs"));
                }
                let datasets = match job_datasets(&job_toml) {
                    Ok(datasets) => datasets,
                    Err(reason) => return refuse(reason),
                };
                for dataset in &datasets {
                    match self.roles.owner_of(dataset) {
                        None => {
                            return refuse(format!(
                                "the job names dataset {dataset:?}, which no data owner of this node lists"
                            ))
                        }
                        Some(owner) if !self.roles.may_train(&party.key, dataset) => {
                            return refuse(format!(
                                "the job names dataset {dataset:?}, whose owner {} has not allowed this model owner to train on it (allow_model_owners)",
                                owner.name
                            ))
                        }
                        Some(_) => {}
                    }
                }
                let key = party.key.clone();
                match self
                    .blocking(move |b| b.submit_job(&key, &job_toml, &datasets))
                    .await
                {
                    Ok(Ok(job_id)) => Answer::One(Response::JobSubmitted { job_id }),
                    Ok(Err(reason)) | Err(reason) => failed(reason),
                }
            }
            Request::FetchRelease => {
                if party.role != PartyRole::ModelOwner {
                    return refuse(only(PartyRole::ModelOwner, "fetch a release"));
                }
                let key = party.key.clone();
                match self.blocking(move |b| b.release(&key)).await {
                    // Checked here whatever the backend did: a release goes to its job's
                    // model owner only.
                    Ok(Ok(release)) if release.model_owner_key.eq_ignore_ascii_case(&party.key) => {
                        Answer::Release(release)
                    }
                    Ok(Ok(_)) => refuse(
                        "the released job was submitted by another model owner; only it may fetch the release".into(),
                    ),
                    Ok(Err(reason)) | Err(reason) => failed(reason),
                }
            }
        }
    }

    /// Checks the SHA-256 and hands the complete dataset to the backend. Whatever happens,
    /// nothing of it stays held.
    async fn finish_push(
        &self,
        party: &Party,
        push: Arc<Mutex<Held>>,
        conn_id: u64,
        refuse: impl Fn(String) -> Answer,
        failed: impl Fn(String) -> Answer,
    ) -> Answer {
        let (meta, content) = {
            let mut held = lock(&push);
            if let Err(reason) = current(&held, conn_id) {
                return refuse(reason);
            }
            let at = held.bytes.len() as u64;
            if at != held.len {
                return refuse(format!(
                    "PushEnd with {at} of {} bytes of {:?} held: send the rest first",
                    held.len, held.meta.name
                ));
            }
            let digest = held.digest();
            let meta = held.meta.clone();
            let content = std::mem::take(&mut held.bytes);
            held.live = false;
            if digest != held.sha256 {
                let declared = hex::encode(held.sha256);
                drop(held);
                self.pushes.remove(&party.key, &meta.name, Some(&push));
                return refuse(format!(
                    "the {} bytes received hash to sha256 {}, but PushBegin declared {declared}; nothing was kept",
                    content.len(),
                    hex::encode(digest)
                ));
            }
            (meta, content)
        };
        self.pushes.remove(&party.key, &meta.name, Some(&push));
        let key = party.key.clone();
        let name = meta.name.clone();
        match self
            .blocking(move |b| b.accept_dataset(&key, &meta, content))
            .await
        {
            Ok(Ok(sealed_sha256)) => {
                tracing::info!(party = %party.name, dataset = %name, %sealed_sha256, "dataset pushed");
                Answer::One(Response::Pushed { sealed_sha256 })
            }
            Ok(Err(reason)) | Err(reason) => failed(reason),
        }
    }

    /// A data owner's request on `dataset` is allowed only to that dataset's owner.
    fn owns(&self, party: &Party, dataset: &str, what: &str) -> Result<(), String> {
        if party.role != PartyRole::DataOwner {
            return Err(only(PartyRole::DataOwner, what));
        }
        match self.roles.owner_of(dataset) {
            Some(owner) if owner.key == party.key => Ok(()),
            Some(_) => Err(format!(
                "dataset {dataset:?} belongs to another data owner; this one owns {:?}",
                party.datasets
            )),
            None => Err(format!(
                "no data owner of this node lists dataset {dataset:?}; this one owns {:?}",
                party.datasets
            )),
        }
    }

    /// Runs a backend call on the blocking pool; a panic in it becomes a failure of this
    /// request only.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn PartyBackend) -> T + Send + 'static,
    ) -> Result<T, String> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || call(&*backend))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the party backend failed");
                "the node failed to answer this request (an internal error; its log says more)"
                    .to_string()
            })
    }
}

/// "only a data owner may push datasets".
fn only(role: PartyRole, what: &str) -> String {
    let article = match role {
        PartyRole::Operator => "an",
        _ => "a",
    };
    format!("only {article} {role} may {what}")
}

/// A push this connection may still add to.
fn current(held: &Held, conn: u64) -> Result<(), String> {
    if !held.live {
        return Err(format!(
            "the push of {:?} is no longer held (completed, deleted, or dropped after waiting too long): begin again",
            held.meta.name
        ));
    }
    if held.conn != conn {
        return Err(format!(
            "the push of {:?} was resumed by a newer connection, which continues it",
            held.meta.name
        ));
    }
    Ok(())
}
