//! A party's client: connect to a node, check its evidence, then ask.
//!
//! Every operation opens its own connection with [`Connection::open`]: TCP, attested TLS in
//! party mode (the node's evidence is verified before anything else is sent; on failure the
//! party has sent nothing but its refusal), the hello, then requests. Pushes survive a dropped
//! connection: [`Client::push`] reconnects and continues from what the node holds.

use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bastion_attestation::tls::{AttestedStream, PartyClient, PartyIdentity};
use bastion_attestation::{Verdict, Verifier};
use bastion_wire::FramedConn;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::PartyError;
use crate::protocol::{
    DatasetMeta, Hello, Request, Response, Spent, Status, CHUNK, MAX_DATASET_LEN, MAX_FRAME,
};

/// How long and how hard the client tries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientLimits {
    /// TCP connect.
    pub connect_timeout: Duration,
    /// Attested TLS and the hello.
    pub handshake_timeout: Duration,
    /// Waiting for one response.
    pub response_timeout: Duration,
    /// Reconnections a push makes after its connection drops.
    pub push_retries: u32,
    /// Pause before the first reconnection; it grows linearly.
    pub retry_delay: Duration,
    /// Chunks sent ahead of their answers.
    pub window: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(60),
            response_timeout: Duration::from_secs(300),
            push_retries: 5,
            retry_delay: Duration::from_secs(1),
            window: 4,
        }
    }
}

impl ClientLimits {
    /// Sets [`ClientLimits::push_retries`] and [`ClientLimits::retry_delay`].
    pub fn with_retries(mut self, retries: u32, delay: Duration) -> Self {
        self.push_retries = retries;
        self.retry_delay = delay;
        self
    }
}

/// One attested connection to a node, in step with the protocol.
#[derive(Debug)]
pub struct Connection<S> {
    conn: FramedConn<AttestedStream<S>>,
    node: Verdict,
    node_key: String,
}

impl Connection<TcpStream> {
    /// Connects to `addr` over TCP and attests it; see [`Connection::over`].
    pub async fn open(
        addr: &str,
        party: &PartyClient,
        limits: &ClientLimits,
    ) -> Result<Self, PartyError> {
        let tcp = tokio::time::timeout(limits.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| PartyError::Timeout {
                addr: addr.to_string(),
                stage: "TCP connect",
                after: limits.connect_timeout,
            })?
            .map_err(|source| PartyError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        Self::over(tcp, party, limits, addr).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Attested TLS over `io` (the node's evidence verified before anything else is sent),
    /// then the hello. `addr` names the node in errors.
    pub async fn over(
        io: S,
        party: &PartyClient,
        limits: &ClientLimits,
        addr: &str,
    ) -> Result<Self, PartyError> {
        let timeout = |stage| PartyError::Timeout {
            addr: addr.to_string(),
            stage,
            after: limits.handshake_timeout,
        };
        let stream = tokio::time::timeout(limits.handshake_timeout, party.connect(io))
            .await
            .map_err(|_| timeout("attested TLS"))??;
        let node = stream.peer().clone();
        let node_key = stream.peer_key().to_string();
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
        Ok(Self {
            conn: conn.with_read_timeout(Some(limits.response_timeout)),
            node,
            node_key,
        })
    }

    /// The node's verified verdict (check `simulated`).
    pub fn node(&self) -> &Verdict {
        &self.node
    }

    /// SHA-256 of the node's TLS key, hex.
    pub fn node_key(&self) -> &str {
        &self.node_key
    }

    /// Sends one request.
    pub async fn send(&mut self, request: &Request) -> Result<(), PartyError> {
        Ok(self.conn.send(request).await?)
    }

    /// Receives one response.
    pub async fn recv(&mut self) -> Result<Response, PartyError> {
        Ok(self.conn.recv().await?)
    }

    /// Sends a request and receives its (first) response.
    pub async fn request(&mut self, request: &Request) -> Result<Response, PartyError> {
        self.send(request).await?;
        self.recv().await
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// SHA-256 of the sealed content on the node, hex.
    pub sealed_sha256: String,
    /// SHA-256 of the file pushed, hex.
    pub sha256: String,
    /// Its length.
    pub len: u64,
    /// For each connection used, the bytes the node already held when it began: `[0]` for
    /// a push in one go, `[0, 1048576]` for one resumed once at 1 MiB.
    pub begins: Vec<u64>,
}

/// What a push reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushEvent {
    /// The node holds `held` of `total` bytes.
    Held {
        /// Bytes held.
        held: u64,
        /// The dataset's length.
        total: u64,
    },
    /// The connection dropped; reconnecting.
    Reconnecting {
        /// Which reconnection (from 1).
        attempt: u32,
        /// What happened.
        error: String,
    },
}

/// A fetched release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRelease {
    /// The released job.
    pub job_id: String,
    /// The files written, `receipt.json` last.
    pub files: Vec<PathBuf>,
}

/// A party talking to one node.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    party: PartyClient,
    limits: ClientLimits,
}

impl Client {
    /// A client for the node at `addr` (host:port), authenticating with `identity` and
    /// trusting only what `verifier` accepts.
    pub fn new(
        addr: impl Into<String>,
        identity: &PartyIdentity,
        verifier: Verifier,
    ) -> Result<Self, PartyError> {
        Ok(Self {
            addr: addr.into(),
            party: PartyClient::new(identity, verifier)?,
            limits: ClientLimits::default(),
        })
    }

    /// Sets the limits.
    pub fn with_limits(mut self, limits: ClientLimits) -> Self {
        self.limits = limits;
        self
    }

    /// A new attested connection to the node.
    pub async fn connect(&self) -> Result<Connection<TcpStream>, PartyError> {
        Connection::open(&self.addr, &self.party, &self.limits).await
    }

    /// Pushes the file at `path` as `meta.name`, reporting progress to `progress`, and
    /// reconnecting and continuing from what the node holds when the connection drops (up
    /// to [`ClientLimits::push_retries`] times). Refusals and attestation failures are not
    /// retried.
    pub async fn push(
        &self,
        meta: &DatasetMeta,
        path: &Path,
        progress: &mut (dyn FnMut(PushEvent) + Send),
    ) -> Result<PushOutcome, PartyError> {
        let (len, sha256) = hash_file(path).await?;
        if len == 0 || len > MAX_DATASET_LEN {
            return Err(PartyError::DatasetSize {
                path: path.to_path_buf(),
                len,
                max: MAX_DATASET_LEN,
            });
        }
        let mut begins = Vec::new();
        let mut attempt = 0;
        loop {
            match self
                .push_once(meta, path, len, sha256, &mut begins, progress)
                .await
            {
                Ok(sealed_sha256) => {
                    return Ok(PushOutcome {
                        sealed_sha256,
                        sha256: hex::encode(sha256),
                        len,
                        begins,
                    })
                }
                Err(e) if e.is_transient() && attempt < self.limits.push_retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "push: connection lost; reconnecting");
                    progress(PushEvent::Reconnecting {
                        attempt,
                        error: e.to_string(),
                    });
                    tokio::time::sleep(self.limits.retry_delay * attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn push_once(
        &self,
        meta: &DatasetMeta,
        path: &Path,
        len: u64,
        sha256: [u8; 32],
        begins: &mut Vec<u64>,
        progress: &mut (dyn FnMut(PushEvent) + Send),
    ) -> Result<String, PartyError> {
        const BEGIN: &str = "PushBegin";
        let mut conn = self.connect().await?;
        let begin = Request::PushBegin {
            meta: meta.clone(),
            len,
            sha256,
        };
        let mut held = match conn.request(&begin).await? {
            Response::PushHeld { held } if held <= len => held,
            other => return Err(answer_error(BEGIN, "PushHeld", other)),
        };
        begins.push(held);
        progress(PushEvent::Held { held, total: len });

        let file_err = |op| {
            move |source| PartyError::File {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(file_err("open"))?;
        file.seek(SeekFrom::Start(held))
            .await
            .map_err(file_err("seek in"))?;
        let mut offset = held;
        let mut pending = 0usize;
        while offset < len {
            let n = (len - offset).min(CHUNK as u64) as usize;
            let mut bytes = vec![0u8; n];
            file.read_exact(&mut bytes).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    PartyError::Changed {
                        path: path.to_path_buf(),
                        reason: format!("it ended before the {len} bytes hashed"),
                    }
                } else {
                    file_err("read")(e)
                }
            })?;
            conn.send(&Request::PushChunk { offset, bytes }).await?;
            offset += n as u64;
            pending += 1;
            if pending >= self.limits.window.max(1) {
                held = expect_held(&mut conn, held, len).await?;
                pending -= 1;
                progress(PushEvent::Held { held, total: len });
            }
        }
        while pending > 0 {
            held = expect_held(&mut conn, held, len).await?;
            pending -= 1;
            progress(PushEvent::Held { held, total: len });
        }
        match conn.request(&Request::PushEnd).await? {
            Response::Pushed { sealed_sha256 } => Ok(sealed_sha256),
            other => Err(answer_error("PushEnd", "Pushed", other)),
        }
    }

    /// Deletes a dataset this party owns.
    pub async fn delete(&self, name: &str) -> Result<(), PartyError> {
        let request = Request::DeleteDataset { name: name.into() };
        match self.connect().await?.request(&request).await? {
            Response::Deleted { .. } => Ok(()),
            other => Err(answer_error("DeleteDataset", "Deleted", other)),
        }
    }

    /// The privacy budget spent on a dataset this party owns.
    pub async fn spent(&self, name: &str) -> Result<Spent, PartyError> {
        let request = Request::Spent { name: name.into() };
        match self.connect().await?.request(&request).await? {
            Response::Spent(spent) => Ok(spent),
            other => Err(answer_error("Spent", "Spent", other)),
        }
    }

    /// Submits a job (its `job.toml` names its datasets in `datasets = [...]`); returns its id.
    pub async fn submit_job(&self, job_toml: &str) -> Result<String, PartyError> {
        let request = Request::SubmitJob {
            job_toml: job_toml.into(),
        };
        match self.connect().await?.request(&request).await? {
            Response::JobSubmitted { job_id } => Ok(job_id),
            other => Err(answer_error("SubmitJob", "JobSubmitted", other)),
        }
    }

    /// The job's state.
    pub async fn status(&self) -> Result<Status, PartyError> {
        match self.connect().await?.request(&Request::Status).await? {
            Response::Status(status) => Ok(status),
            other => Err(answer_error("Status", "Status", other)),
        }
    }

    /// Fetches this model owner's release into `dir`, which must not exist yet (or be
    /// empty). Files are written into a sibling directory first and moved into place once
    /// all arrived whole, so `dir` never holds half a release.
    pub async fn fetch_release(&self, dir: &Path) -> Result<FetchedRelease, PartyError> {
        const FETCH: &str = "FetchRelease";
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(PartyError::File {
                op: "fetch a release into",
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the directory is not empty; choose a new one",
                ),
            });
        }
        let mut conn = self.connect().await?;
        conn.send(&Request::FetchRelease).await?;
        let (job_id, entries) = match conn.recv().await? {
            Response::ReleaseBegin { job_id, files } => (job_id, files),
            other => return Err(answer_error(FETCH, "ReleaseBegin", other)),
        };
        let mut rel = Vec::with_capacity(entries.len());
        for entry in &entries {
            let path = safe_relative(&entry.name)?;
            if rel.contains(&path) {
                return Err(PartyError::Release(format!(
                    "{:?} is sent twice",
                    entry.name
                )));
            }
            rel.push(path);
        }
        let staging = staging_dir(dir);
        let result = receive_files(&mut conn, &staging, &rel, &entries).await;
        let result = match result {
            Ok(()) => publish(&staging, dir),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result?;
        Ok(FetchedRelease {
            job_id,
            files: rel.iter().map(|p| dir.join(p)).collect(),
        })
    }
}

/// Reads the answer to one chunk.
async fn expect_held<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    before: u64,
    len: u64,
) -> Result<u64, PartyError> {
    match conn.recv().await? {
        Response::PushHeld { held } if held > before && held <= len => Ok(held),
        other => Err(answer_error("PushChunk", "PushHeld", other)),
    }
}

/// A refusal, a backend failure, or an answer out of protocol.
fn answer_error(request: &'static str, expected: &'static str, got: Response) -> PartyError {
    match got {
        Response::Refused(refusal) => PartyError::Refused(refusal),
        Response::Failed { request, reason } => PartyError::Backend { request, reason },
        other => PartyError::Unexpected {
            request,
            expected,
            found: other.name(),
        },
    }
}

/// Length and SHA-256 of a file, read once in chunks on the blocking pool.
async fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), PartyError> {
    let owned = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, [u8; 32])> {
        use std::io::Read;
        let mut file = std::fs::File::open(&owned)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok((len, hasher.finalize().into()))
    })
    .await
    .map_err(|e| PartyError::File {
        op: "hash",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    result.map_err(|source| PartyError::File {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// A release file name as a relative path that stays inside the output directory.
fn safe_relative(name: &str) -> Result<PathBuf, PartyError> {
    let bad = |why: &str| PartyError::Release(format!("file name {name:?} {why}"));
    if name.is_empty() || name.contains('\\') || name.contains('\0') {
        return Err(bad("is empty or holds a backslash or NUL"));
    }
    let path = PathBuf::from(name);
    let mut depth = 0;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            _ => return Err(bad("leaves the release directory (absolute, `.` or `..`)")),
        }
    }
    if depth == 0 || depth > 8 {
        return Err(bad("has no file name or is nested too deep"));
    }
    Ok(path)
}

/// A fresh sibling of `dir` to receive into.
fn staging_dir(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "release".into());
    dir.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

async fn receive_files<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    staging: &Path,
    rel: &[PathBuf],
    entries: &[crate::protocol::ReleaseEntry],
) -> Result<(), PartyError> {
    const FETCH: &str = "FetchRelease";
    let file_err = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| PartyError::File { op, path, source }
    };
    let _ = std::fs::remove_dir_all(staging);
    std::fs::create_dir_all(staging).map_err(file_err("create", staging))?;
    let mut files = Vec::with_capacity(rel.len());
    for path in rel {
        let path = staging.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(file_err("create", parent))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(file_err("create", &path))?;
        files.push((file, path, 0u64));
    }
    loop {
        match conn.recv().await? {
            Response::ReleaseChunk {
                file,
                offset,
                bytes,
            } => {
                let index = file as usize;
                let (Some((out, path, written)), Some(entry)) =
                    (files.get_mut(index), entries.get(index))
                else {
                    return Err(PartyError::Release(format!(
                        "a chunk for file #{file}, of {}",
                        entries.len()
                    )));
                };
                if offset != *written || *written + bytes.len() as u64 > entry.len {
                    return Err(PartyError::Release(format!(
                        "{:?}: a chunk of {} bytes at {offset}, after {written} of {} bytes",
                        entry.name,
                        bytes.len(),
                        entry.len
                    )));
                }
                out.write_all(&bytes)
                    .await
                    .map_err(file_err("write", path))?;
                *written += bytes.len() as u64;
            }
            Response::ReleaseEnd => break,
            other => return Err(answer_error(FETCH, "ReleaseChunk", other)),
        }
    }
    for ((mut out, path, written), entry) in files.into_iter().zip(entries) {
        if written != entry.len {
            return Err(PartyError::Release(format!(
                "{:?} ended at {written} of {} bytes",
                entry.name, entry.len
            )));
        }
        out.flush().await.map_err(file_err("write", &path))?;
        out.sync_all().await.map_err(file_err("sync", &path))?;
    }
    Ok(())
}

/// Moves the staged release to `dir` (absent or empty).
fn publish(staging: &Path, dir: &Path) -> Result<(), PartyError> {
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|source| PartyError::File {
            op: "replace the empty directory",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::rename(staging, dir).map_err(|source| PartyError::File {
        op: "move the release into",
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_stay_inside() {
        assert_eq!(
            safe_relative("adapter/config.json").unwrap(),
            PathBuf::from("adapter/config.json")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a\\b", "./"] {
            assert!(safe_relative(bad).is_err(), "{bad:?}");
        }
    }
}
