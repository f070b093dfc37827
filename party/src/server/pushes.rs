//! Pushes in progress: each data owner's dataset bytes held in memory until they are
//! complete and checked, so a dropped connection resumes where it stopped.
//!
//! At most one push per (data owner, dataset), and datasets must be listed under their owner,
//! so what is held is bounded by the `[[parties]]` list times the size limit. A push that
//! nobody continues for the limits' `held_ttl` is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::protocol::DatasetMeta;

/// Which push: (data owner key, dataset name).
pub(super) type PushKey = (String, String);

/// One push's bytes so far.
pub(super) struct Held {
    pub(super) meta: DatasetMeta,
    pub(super) len: u64,
    pub(super) sha256: [u8; 32],
    pub(super) bytes: Vec<u8>,
    hasher: Sha256,
    /// The connection that may add to it: the one that began (or resumed) it last. An older
    /// connection the client gave up on is superseded.
    pub(super) conn: u64,
    /// False once completed, dropped or expired: a connection still holding it writes nowhere.
    pub(super) live: bool,
    touched: Instant,
}

impl Held {
    /// Appends the next bytes; the caller checked the offset and the length.
    pub(super) fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        let need = self.bytes.len() + bytes.len();
        if need > self.bytes.capacity() {
            // Grow geometrically, but never past the declared length.
            let target = (self.bytes.capacity() * 2).clamp(need, self.len as usize);
            self.bytes
                .try_reserve_exact(target - self.bytes.len())
                .map_err(|e| format!("the node cannot hold {target} bytes in memory: {e}"))?;
        }
        self.bytes.extend_from_slice(bytes);
        self.hasher.update(bytes);
        self.touched = Instant::now();
        Ok(())
    }

    /// SHA-256 of everything appended.
    pub(super) fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

/// All pushes in progress on this node.
pub(super) struct Pushes {
    map: Mutex<HashMap<PushKey, Arc<Mutex<Held>>>>,
    ttl: Duration,
}

/// Locks, recovering from a panic elsewhere: the data is bytes and flags, always consistent
/// between statements.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pushes {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Begins or resumes the push of `meta.name` by `owner`: the same length and SHA-256 as
    /// the push held resumes it (and this connection takes it over); anything else starts
    /// afresh. Returns the push and the bytes already held.
    pub(super) fn begin(
        &self,
        owner: &str,
        meta: DatasetMeta,
        len: u64,
        sha256: [u8; 32],
        conn: u64,
    ) -> (Arc<Mutex<Held>>, u64) {
        // Lock order everywhere: the map, then a push.
        let mut map = lock(&self.map);
        let ttl = self.ttl;
        map.retain(|_, held| {
            let mut held = lock(held);
            let keep = held.touched.elapsed() < ttl;
            if !keep {
                tracing::info!(dataset = %held.meta.name, held = held.bytes.len(), "dropping a push nobody continued");
                held.live = false;
            }
            keep
        });
        let key = (owner.to_string(), meta.name.clone());
        if let Some(existing) = map.get(&key) {
            let mut held = lock(existing);
            if held.len == len && held.sha256 == sha256 {
                held.conn = conn;
                held.meta = meta;
                held.touched = Instant::now();
                let at = held.bytes.len() as u64;
                drop(held);
                return (Arc::clone(existing), at);
            }
            held.live = false;
        }
        let fresh = Arc::new(Mutex::new(Held {
            meta,
            len,
            sha256,
            bytes: Vec::new(),
            hasher: Sha256::new(),
            conn,
            live: true,
            touched: Instant::now(),
        }));
        map.insert(key, Arc::clone(&fresh));
        (fresh, 0)
    }

    /// Forgets the push of `name` by `owner`, if it is `which` (or any push, with `None`).
    pub(super) fn remove(&self, owner: &str, name: &str, which: Option<&Arc<Mutex<Held>>>) {
        let mut map = lock(&self.map);
        let key = (owner.to_string(), name.to_string());
        let matches = match (map.get(&key), which) {
            (Some(held), Some(which)) => Arc::ptr_eq(held, which),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if matches {
            if let Some(held) = map.remove(&key) {
                let mut held = lock(&held);
                held.live = false;
                held.bytes = Vec::new();
            }
        }
    }

    /// Bytes held across all pushes in progress.
    pub(super) fn held_bytes(&self) -> u64 {
        lock(&self.map)
            .values()
            .map(|h| lock(h).bytes.len() as u64)
            .sum()
    }
}
