//! What a node does for its parties ([`bastion_party::PartyBackend`]): datasets their owners
//! push, sealed as sent with the owner's terms; a job a model owner submits (coordinator);
//! the release that model owner fetches; the status anyone listed may read.
//!
//! The party server has already authenticated and authorized every call (roles, ownership,
//! allow-lists). What is checked here is the node's own business: that a pushed dataset is
//! one this node was configured to hold, that every record fits the offered job, and that the
//! owner's budget goes into this node's own ledger before anything is sealed.

use crate::data::{load_dataset_from, sealed, DataExpectation, Records, Split};
use crate::job::JobSpec;
use crate::package::sha256_hex;
use bastion_ledger::{Budget, Ledger};
use bastion_party::{
    DatasetMeta, JobState, PartyBackend, Release, ReleaseFile, Roles, Spent, Status,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a push waits for the job's offer, which says what a record must be.
const OFFER_WAIT: Duration = Duration::from_secs(300);
/// How long a submission waits for the coordinator to prepare the job and name its id.
const PREPARE_WAIT: Duration = Duration::from_secs(600);
/// The file in the release directory that is sent last, not as a model file.
pub const RECEIPT_FILE: &str = "receipt.json";

/// A pushed dataset this node holds: the owner's terms and the digest of what was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// The owner's key (SHA-256 of its SubjectPublicKeyInfo).
    pub owner: String,
    /// How to read it and its budget, as the owner pushed it.
    pub meta: DatasetMeta,
    /// SHA-256 of the content as pushed (hex): what the receipt names.
    pub content_sha256: String,
}

impl Held {
    /// Whether a job submitted by `model_owner` may train on this dataset, by the list its
    /// owner pushed with it (the node's roster, checked too, can only narrow that list).
    pub fn allows(&self, model_owner: Option<&str>) -> Result<(), String> {
        let name = &self.meta.name;
        match model_owner {
            Some(key) if self.meta.allow_model_owners.iter().any(|k| k == key) => Ok(()),
            Some(key) => Err(format!(
                "dataset {name}'s owner did not allow model owner {key} when pushing it"
            )),
            None => Err(format!(
                "dataset {name} was pushed for named model owners only, and this job has none"
            )),
        }
    }
}

/// The node's side of the party protocol.
pub struct NodeParties {
    node: String,
    roles: Arc<Roles>,
    /// Sealed pushed datasets: `<dir>/<name>.sealed`.
    dir: PathBuf,
    key: [u8; 32],
    /// The datasets node.toml declares `format = "pushed"`.
    pushable: BTreeSet<String>,
    ledger: Arc<Mutex<Ledger>>,
    coordinator: bool,
    release_dir: PathBuf,
    /// Where a submitted job's relative paths point.
    job_base: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
    /// Where the running job's step count is read from.
    metrics: Mutex<Option<bastion_metrics::NodeMetrics>>,
}

struct State {
    /// What records must be for the offered job.
    expectation: Option<Arc<DataExpectation>>,
    held: BTreeMap<String, Held>,
    /// Datasets a running job trains on: not deleted under it.
    in_use: BTreeSet<String>,
    /// The submitted job, until the coordinator takes it.
    submitted: Option<JobSpec>,
    /// Whether a job was ever submitted (one job per coordinator run).
    taken: bool,
    /// The model owner the release belongs to.
    model_owner: Option<String>,
    /// Whether that model owner has taken the release.
    fetched: bool,
    status: Status,
}

fn idle() -> Status {
    Status {
        job_id: None,
        state: JobState::Idle,
        step: 0,
        planned_steps: 0,
        nodes: Vec::new(),
    }
}

impl NodeParties {
    /// Opens the sealed pushed datasets in `dir` (made 0700 by the caller).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        node: &str,
        roles: Arc<Roles>,
        dir: &Path,
        key: [u8; 32],
        pushable: impl IntoIterator<Item = String>,
        ledger: Arc<Mutex<Ledger>>,
        coordinator: bool,
        release_dir: PathBuf,
        job_base: PathBuf,
    ) -> Result<Self, String> {
        let pushable: BTreeSet<String> = pushable.into_iter().collect();
        let mut held = BTreeMap::new();
        for name in &pushable {
            let path = dir.join(format!("{name}.sealed"));
            if path.exists() {
                let (h, _) = open_sealed(&key, &path, &binding(name, node))?;
                held.insert(name.clone(), h);
            }
        }
        Ok(NodeParties {
            node: node.to_string(),
            roles,
            dir: dir.to_path_buf(),
            key,
            pushable,
            ledger,
            coordinator,
            release_dir,
            job_base,
            state: Mutex::new(State {
                expectation: None,
                held,
                in_use: BTreeSet::new(),
                submitted: None,
                taken: false,
                model_owner: None,
                fetched: false,
                status: idle(),
            }),
            changed: Condvar::new(),
            metrics: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job was offered: from now on pushes are checked against `expect`.
    pub fn job_offered(&self, job: &str, expect: Arc<DataExpectation>) {
        let mut s = self.lock();
        s.expectation = Some(expect);
        if s.status.state == JobState::Idle {
            s.status.state = JobState::Waiting;
        }
        s.status.job_id = Some(job.to_string());
        self.changed.notify_all();
    }

    /// The pushed dataset `name`, once its owner has pushed it: its terms, and its records
    /// read for `expect`. Waits as long as the owner takes.
    pub async fn wait_pushed(
        self: &Arc<Self>,
        name: &str,
        expect: Arc<DataExpectation>,
    ) -> Result<(Held, Records), String> {
        let mut told = false;
        loop {
            // Bound first, so the lock is not held across the read below.
            let held = self.lock().held.get(name).cloned();
            if let Some(h) = held {
                let me = Arc::clone(self);
                let name = name.to_string();
                return tokio::task::spawn_blocking(move || {
                    let content = me.content(&name)?;
                    let records = read_records(&name, &h.meta, &content, &expect)?;
                    Ok((h, records))
                })
                .await
                .map_err(|e| format!("reading pushed dataset panicked: {e}"))?;
            }
            if !told {
                tracing::info!(
                    dataset = name,
                    "waiting for the data owner to push this dataset"
                );
                told = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The bytes of a held pushed dataset.
    fn content(&self, name: &str) -> Result<Vec<u8>, String> {
        let path = self.dir.join(format!("{name}.sealed"));
        open_sealed(&self.key, &path, &binding(name, &self.node)).map(|(_, c)| c)
    }

    /// The job a model owner submitted (coordinator): waits for it.
    pub async fn next_job(&self) -> JobSpec {
        tracing::info!("no job in node.toml: waiting for a model owner to submit one");
        loop {
            if let Some(job) = self.lock().submitted.take() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The coordinator prepared job `id` (its offer is out).
    pub fn job_prepared(&self, id: &str, model_owner: Option<String>) {
        let mut s = self.lock();
        s.status.job_id = Some(id.to_string());
        s.status.state = JobState::Waiting;
        s.model_owner = model_owner;
        self.changed.notify_all();
    }

    /// Status reads the running job's steps from this node's metrics.
    pub fn with_metrics(&self, metrics: bastion_metrics::NodeMetrics) {
        *self.metrics.lock().unwrap_or_else(|e| e.into_inner()) = Some(metrics);
    }

    /// A job is training on `datasets`.
    pub fn running(&self, datasets: &[String]) {
        let mut s = self.lock();
        s.in_use = datasets.iter().cloned().collect();
        s.status.state = JobState::Running;
    }

    /// The job ended: released (coordinator, with its report's figures) or not.
    pub fn finished(&self, released: bool, steps: u64, planned: u64, nodes: Vec<String>) {
        let mut s = self.lock();
        s.in_use.clear();
        s.status.state = if released {
            JobState::Released
        } else {
            JobState::Failed
        };
        s.status.step = steps;
        s.status.planned_steps = planned;
        s.status.nodes = nodes;
        self.changed.notify_all();
    }

    /// After a released job of a submitted (model owner's) job, keeps answering until that
    /// model owner has fetched the release, or `max` passed: the release leaves the node only
    /// over the party channel, so a coordinator that exited at once would strand it.
    pub async fn hold_release(&self, max: Duration) {
        let (waiting, owner) = {
            let s = self.lock();
            (
                s.status.state == JobState::Released && !s.fetched,
                s.model_owner.clone(),
            )
        };
        let Some(owner) = owner.filter(|_| waiting) else {
            return;
        };
        tracing::info!(model_owner = %owner, seconds = max.as_secs(), "holding the release until its model owner fetches it");
        let deadline = tokio::time::Instant::now() + max;
        while !self.lock().fetched && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The last file may still be on its way.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    /// The roles this node answers to.
    pub fn roles(&self) -> &Roles {
        &self.roles
    }
}

impl NodeParties {
    /// Puts the owner's budget in this node's ledger: registered the first time, afterwards
    /// only lowered (a budget already spent against can never be raised, by anyone).
    fn set_owner_budget(&self, name: &str, budget: Budget) -> Result<(), String> {
        let mut ledger = self
            .ledger
            .lock()
            .map_err(|_| "the node's ledger is poisoned".to_string())?;
        let result = match ledger.budget(name) {
            Err(_) => ledger.register_dataset(name, budget),
            Ok(registered) if registered == budget => Ok(()),
            Ok(registered) if registered.delta != budget.delta => {
                return Err(format!(
                    "dataset {name} is accounted at delta {} in this node's ledger; its delta cannot change",
                    registered.delta
                ))
            }
            Ok(_) => ledger.lower_budget(name, budget.epsilon).map(|_| ()),
        };
        result.map_err(|e| format!("dataset {name}: {e}"))
    }
}

/// What binds a pushed dataset's sealed file to its name and this node.
fn binding(name: &str, node: &str) -> String {
    format!("pushed={name};node={node}")
}

/// Sealed body: `u32 LE length | Held as JSON | content as pushed`.
fn seal_pushed(
    key: &[u8; 32],
    path: &Path,
    binding: &str,
    held: &Held,
    content: &[u8],
) -> Result<(), String> {
    let head = serde_json::to_vec(held).map_err(|e| e.to_string())?;
    let mut body = Vec::with_capacity(4 + head.len() + content.len());
    body.extend_from_slice(&(head.len() as u32).to_le_bytes());
    body.extend_from_slice(&head);
    body.extend_from_slice(content);
    sealed::seal_bytes(body, key, path, binding).map_err(|e| e.to_string())
}

fn open_sealed(key: &[u8; 32], path: &Path, binding: &str) -> Result<(Held, Vec<u8>), String> {
    let mut body = sealed::unseal_bytes(key, path, binding).map_err(|e| e.to_string())?;
    let bad = || format!("pushed dataset {}: malformed sealed body", path.display());
    let len =
        u32::from_le_bytes(body.get(..4).ok_or_else(bad)?.try_into().expect("4 bytes")) as usize;
    let head = body.get(4..4 + len).ok_or_else(bad)?;
    let held: Held = serde_json::from_slice(head).map_err(|_| bad())?;
    let content = body.split_off(4 + len);
    Ok((held, content))
}

/// Reads a pushed dataset's records for the job, from memory (never written out in the clear).
fn read_records(
    name: &str,
    meta: &DatasetMeta,
    content: &[u8],
    expect: &DataExpectation,
) -> Result<Records, String> {
    let source = crate::node::source(
        &format!("pushed dataset {name}"),
        &meta.format,
        Some(PathBuf::from(format!("pushed:{name}"))),
        meta.field.clone(),
        meta.split.as_deref(),
        Split::Train,
        (0, 0),
    )?;
    load_dataset_from(&source, Some(content), expect).map_err(|e| e.to_string())
}

impl PartyBackend for NodeParties {
    fn accept_dataset(
        &self,
        owner_key: &str,
        meta: &DatasetMeta,
        content: Vec<u8>,
    ) -> Result<String, String> {
        let name = &meta.name;
        if !self.pushable.contains(name) {
            return Err(format!(
                "node {} holds no pushed dataset {name:?}: its node.toml declares {:?}",
                self.node, self.pushable
            ));
        }
        let sha = sha256_hex(&content);
        let budget = Budget {
            epsilon: meta.epsilon_budget,
            delta: meta.delta,
        };
        if !(budget.epsilon > 0.0 && budget.epsilon.is_finite()) {
            return Err(format!(
                "budget epsilon {} must be positive and finite",
                budget.epsilon
            ));
        }
        if !(budget.delta > 0.0 && budget.delta < 1.0) {
            return Err(format!("delta {} is outside (0, 1)", budget.delta));
        }
        // The owner's allow-list, in the one spelling keys are compared in.
        let mut meta = meta.clone();
        for key in &mut meta.allow_model_owners {
            *key = bastion_party::roles::parse_key(key)
                .map_err(|e| format!("allow_model_owners: {key:?}: {e}"))?;
        }
        let meta = &meta;
        let held = self.lock().held.get(name).cloned();
        if let Some(h) = held {
            // The same data again may carry the owner's new terms (a lower budget, another
            // allow-list); anything else is another dataset.
            let same_data = DatasetMeta {
                epsilon_budget: h.meta.epsilon_budget,
                delta: h.meta.delta,
                allow_model_owners: h.meta.allow_model_owners.clone(),
                ..meta.clone()
            } == h.meta;
            if h.content_sha256 != sha || !same_data {
                return Err(format!(
                    "dataset {name} is already held (sha256 {}): delete it before pushing another",
                    h.content_sha256
                ));
            }
            // The same data again: the owner may only lower its budget this way.
            self.set_owner_budget(name, budget)?;
            if h.meta != *meta {
                let held = Held {
                    meta: meta.clone(),
                    ..h
                };
                let path = self.dir.join(format!("{name}.sealed"));
                seal_pushed(
                    &self.key,
                    &path,
                    &binding(name, &self.node),
                    &held,
                    &content,
                )?;
                tracing::info!(dataset = %name, epsilon = budget.epsilon, "its owner changed the dataset's terms");
                self.lock().held.insert(name.clone(), held);
            }
            return Ok(sha);
        }
        // Every record is checked against the job before anything is kept.
        let expect = {
            let mut s = self.lock();
            let deadline = std::time::Instant::now() + OFFER_WAIT;
            while s.expectation.is_none() && std::time::Instant::now() < deadline {
                s = self
                    .changed
                    .wait_timeout(s, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            s.expectation.clone().ok_or(
                "this node has not been offered a job yet, so it cannot check the records: push again once the job is submitted",
            )?
        };
        read_records(name, meta, &content, &expect)?;
        // The owner's budget enters this node's ledger first: nothing is sealed that the
        // ledger does not account for.
        self.set_owner_budget(name, budget)?;
        let held = Held {
            owner: owner_key.to_string(),
            meta: meta.clone(),
            content_sha256: sha.clone(),
        };
        let path = self.dir.join(format!("{name}.sealed"));
        seal_pushed(
            &self.key,
            &path,
            &binding(name, &self.node),
            &held,
            &content,
        )?;
        tracing::info!(dataset = %name, sha256 = %sha, "pushed dataset checked and sealed");
        self.lock().held.insert(name.clone(), held);
        Ok(sha)
    }

    fn delete_dataset(&self, owner_key: &str, name: &str) -> Result<(), String> {
        let mut s = self.lock();
        let held = s
            .held
            .get(name)
            .ok_or_else(|| format!("node {} holds no pushed dataset {name:?}", self.node))?;
        if held.owner != owner_key {
            return Err(format!("dataset {name} was pushed by another key"));
        }
        if s.in_use.contains(name) {
            return Err(format!(
                "dataset {name} is in use by the running job; delete it when the job ends"
            ));
        }
        let path = self.dir.join(format!("{name}.sealed"));
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        s.held.remove(name);
        tracing::info!(dataset = %name, "pushed dataset deleted by its owner (its ledger entries stay)");
        Ok(())
    }

    fn spent(&self, name: &str) -> Result<Spent, String> {
        let ledger = self
            .ledger
            .lock()
            .map_err(|_| "the node's ledger is poisoned".to_string())?;
        let budget = ledger.budget(name).map_err(|e| e.to_string())?;
        Ok(Spent {
            epsilon_spent: ledger.spent(name).map_err(|e| e.to_string())?,
            epsilon_budget: budget.epsilon,
            delta: budget.delta,
        })
    }

    fn submit_job(
        &self,
        model_owner_key: &str,
        job_toml: &str,
        datasets: &[String],
    ) -> Result<String, String> {
        if !self.coordinator {
            return Err(format!(
                "node {} is not the coordinator: submit the job there",
                self.node
            ));
        }
        let mut job =
            JobSpec::parse_file(job_toml, "the submitted job").map_err(|e| e.to_string())?;
        if job.datasets != datasets {
            return Err("the job's datasets changed while it was read".into());
        }
        job.resolve_paths(&self.job_base);
        job.model_owner = Some(model_owner_key.to_string());
        let mut s = self.lock();
        if s.taken {
            return Err(format!(
                "this coordinator already took job {}; one job per run",
                s.status.job_id.as_deref().unwrap_or("(being prepared)")
            ));
        }
        s.taken = true;
        s.submitted = Some(job);
        self.changed.notify_all();
        // Answer with the job's id once the coordinator has prepared it.
        let deadline = std::time::Instant::now() + PREPARE_WAIT;
        while s.status.job_id.is_none() && std::time::Instant::now() < deadline {
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(500))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.status
            .job_id
            .clone()
            .ok_or_else(|| "the coordinator did not prepare the job in time".into())
    }

    fn release(&self, model_owner_key: &str) -> Result<Release, String> {
        let (job_id, owner) = {
            let s = self.lock();
            if s.status.state != JobState::Released {
                return Err(format!("no release: the job is {:?}", s.status.state));
            }
            (
                s.status.job_id.clone().unwrap_or_default(),
                s.model_owner.clone(),
            )
        };
        if owner.as_deref() != Some(model_owner_key) {
            return Err("the release belongs to the model owner who submitted the job".into());
        }
        let receipt_path = self.release_dir.join(RECEIPT_FILE);
        let receipt_json = std::fs::read(&receipt_path).map_err(|e| {
            format!(
                "the release has no receipt ({}): {e}",
                receipt_path.display()
            )
        })?;
        let mut files = Vec::new();
        collect_files(&self.release_dir, &self.release_dir, &mut files)?;
        files.retain(|f| f.name != RECEIPT_FILE);
        self.lock().fetched = true;
        Ok(Release {
            job_id,
            model_owner_key: model_owner_key.to_string(),
            files,
            receipt_json,
        })
    }

    fn status(&self) -> Status {
        let mut status = self.lock().status.clone();
        if status.state == JobState::Running {
            if let Some(m) = &*self.metrics.lock().unwrap_or_else(|e| e.into_inner()) {
                status.step = m.steps_completed();
            }
        }
        status
    }
}

/// Every file under `dir`, named relative to `root` with `/`.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<ReleaseFile>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let name = path
                .strip_prefix(root)
                .expect("under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            out.push(ReleaseFile { name, bytes });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_model_owners_pushed_with_the_data_may_train_on_it() {
        let held = Held {
            owner: "aa".repeat(32),
            meta: DatasetMeta {
                name: "hospital-a".into(),
                format: "medmnist-npz".into(),
                field: None,
                split: None,
                epsilon_budget: 8.0,
                delta: 1e-5,
                allow_model_owners: vec!["bb".repeat(32)],
            },
            content_sha256: "00".repeat(32),
        };
        assert!(held.allows(Some(&"bb".repeat(32))).is_ok());
        let other = held.allows(Some(&"cc".repeat(32))).unwrap_err();
        assert!(
            other.contains("did not allow") && other.contains(&"cc".repeat(32)),
            "{other}"
        );
        let none = held.allows(None).unwrap_err();
        assert!(none.contains("has none"), "{none}");
    }
}
