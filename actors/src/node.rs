//! One node, assembled: TEE identity, sealed shards, metrics, the Trainer and its DataShards,
//! and on the coordinator the Accountant and the Supervisor.

use crate::accountant::Accountant;
use crate::config::DatasetConfig;
use crate::config::NodeConfig;
use crate::data::{
    load_dataset, sealed, ClassSpec, DataExpectation, DataSource, DataSourceSpec, Format, Split,
};
use crate::link::{connect_member, serve_coordinator, serve_member, LinkEnd, Offered};
use crate::package::sha256_hex;
use crate::parties::NodeParties;
use crate::protocol::{DatasetInfo, Join, Task};
use crate::shard::DataShard;
use crate::supervisor::{JobReport, Supervisor, SupervisorArgs};
use crate::trainer::{JobContext, Trainer, TrainerArgs, TrainerMsg};
use bastion_checkpoint::CheckpointStore;
use bastion_ledger::Ledger;
use bastion_metrics::NodeMetrics;
use ractor::{Actor, ActorRef};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a node's run ended.
#[derive(Debug)]
pub struct NodeOutcome {
    /// The Supervisor's report (coordinator only).
    pub report: Option<JobReport>,
    /// Why this node stopped.
    pub reason: String,
    /// Whether the job failed.
    pub failed: bool,
}

/// Label of the key that seals this node's checkpoints.
pub const CHECKPOINT_KEY_LABEL: &[u8] = b"bastion-checkpoint-v1";
/// Label of the key that seals this node's data shards.
pub const SHARD_KEY_LABEL: &[u8] = b"bastion-shard-v1";
/// Label of the key that chains this node's own privacy ledger.
pub const LEDGER_KEY_LABEL: &[u8] = b"bastion-ledger-v1";
/// Label of the key that chains the group's privacy ledger (coordinator).
pub const GROUP_LEDGER_KEY_LABEL: &[u8] = b"bastion-group-ledger-v1";
/// This node's own privacy ledger, in its state directory.
pub const OWN_LEDGER_FILE: &str = "own-privacy.ledger";
/// The group's privacy ledger, in the coordinator's state directory.
pub const GROUP_LEDGER_FILE: &str = "privacy.ledger";

/// Creates `dir` (and parents) readable by this user only: it holds sealed state.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// True when `dir` holds any file: sealed state that a ledger must already account for.
fn holds_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// The checkpoints this node can resume from, with the job each belongs to (sealed inside,
/// so each is opened: a few per node). One that does not open is left out, loudly.
fn held_checkpoints(store: &Mutex<CheckpointStore>) -> Result<Vec<(u64, String)>, String> {
    let store = store
        .lock()
        .map_err(|_| "checkpoint store poisoned".to_string())?;
    let steps = store
        .steps()
        .map_err(|e| format!("checkpoint store: {e}"))?;
    Ok(steps
        .into_iter()
        .filter_map(|step| match store.load(step) {
            Ok(c) => Some((step, c.job)),
            Err(e) => {
                tracing::warn!(step, error = %e, "checkpoint left out: it does not open");
                None
            }
        })
        .collect())
}

/// Opens a privacy ledger; creates it only on a node with no sealed state yet. A missing
/// ledger beside existing shards or checkpoints was deleted or never synced: recreating it
/// empty would forget the budget already spent, so the node refuses to start.
fn open_ledger(
    path: &Path,
    kind: bastion_ledger::AccountantKind,
    key: &[u8; 32],
    state: &[&Path],
) -> Result<Ledger, String> {
    let (ledger, recovery) = if path.exists() || !state.iter().any(|d| holds_files(d)) {
        Ledger::open(path, kind, key)
    } else {
        Ledger::open_existing(path, kind, key)
    }
    .map_err(|e| format!("privacy ledger {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), steps = recovery.steps, torn_tail = ?recovery.torn_tail, "privacy ledger opened");
    Ok(ledger)
}

/// Runs the node until the job ends.
pub async fn run_node(config: NodeConfig) -> Result<NodeOutcome, String> {
    crate::tap::refuse_if_set()?;
    // A GPU asked for and missing stops the node now, with one line: never a CPU fallback.
    let device = config.compute_device()?;
    device.check_available()?;
    tch::set_num_threads(config.threads);
    let dir = &config.state_dir;
    private_dir(dir).map_err(|e| format!("state dir {e}"))?;
    let role = if config.serve_coordinator {
        "coordinator"
    } else {
        "trainer"
    };
    let metrics = NodeMetrics::new(&config.name, 0, role).map_err(|e| e.to_string())?;

    // Identity: the TEE, its sealing keys, and the attested TLS endpoint. Hardware or the
    // simulation, as [tee] simulated says; a hardware node never falls back to simulation.
    let crate::tee::TeeIdentity {
        checkpoint_key,
        shard_key,
        ledger_key,
        group_ledger_key,
        receipt_attester,
        endpoint,
    } = if config.tee.simulated {
        crate::tee::simulated(&config.tee, &config.name, &metrics)?
    } else {
        crate::tee::hardware(&config, &metrics)?
    };
    if crate::tap::enabled() {
        tracing::warn!("the test-only wire tap is ON: plaintext of all traffic is written to disk");
    }

    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("metrics listener {addr}: {e}"))?;
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = bastion_metrics::serve(m, listener).await {
                tracing::warn!(error = %e, "metrics endpoint stopped");
            }
        });
    }

    // Shards: loaded from the sealed store, or generated and sealed on first start.
    let shard_dir = dir.join("shards");
    let checkpoint_dir = dir.join("checkpoints");
    private_dir(&shard_dir)?;
    // This node's own ledger comes first: nothing is sealed that it does not account for.
    let own_ledger = open_ledger(
        &dir.join(OWN_LEDGER_FILE),
        config.accountant,
        &ledger_key,
        &[&shard_dir, &checkpoint_dir],
    )?;
    let own_ledger = Arc::new(Mutex::new(own_ledger));
    let mut group_ledger = if config.serve_coordinator {
        Some(open_ledger(
            &dir.join(GROUP_LEDGER_FILE),
            config.job.privacy.accountant,
            &group_ledger_key,
            &[&shard_dir, &checkpoint_dir],
        )?)
    } else {
        None
    };
    for d in config.datasets.iter().filter(|d| d.format != "pushed") {
        own_ledger
            .lock()
            .map_err(|_| "own ledger poisoned")?
            .register_dataset(
                &d.name,
                bastion_ledger::Budget {
                    epsilon: d.epsilon_budget,
                    delta: d.delta,
                },
            )
            .map_err(|e| format!("dataset {}: {e}", d.name))?;
    }

    // The parties: data owners push here, model owners submit and fetch, operators look.
    let parties = match config.party_listen {
        None => None,
        Some(addr) => {
            let roles = Arc::new(
                bastion_party::Roles::new(config.parties.clone()).map_err(|e| e.to_string())?,
            );
            let pushed_dir = dir.join("pushed");
            private_dir(&pushed_dir)?;
            let parties = Arc::new(NodeParties::open(
                &config.name,
                Arc::clone(&roles),
                &pushed_dir,
                shard_key,
                config
                    .datasets
                    .iter()
                    .filter(|d| d.format == "pushed")
                    .map(|d| d.name.clone()),
                Arc::clone(&own_ledger),
                config.serve_coordinator,
                dir.join(RELEASE_DIR),
                dir.clone(),
            )?);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("party listener {addr}: {e}"))?;
            tracing::info!(%addr, parties = roles.parties().len(), "answering parties over attested TLS");
            parties.with_metrics(metrics.clone());
            let backend: Arc<dyn bastion_party::PartyBackend> = parties.clone();
            tokio::spawn(bastion_party::serve(
                listener,
                endpoint.clone(),
                roles,
                backend,
            ));
            Some(parties)
        }
    };

    let checkpoints = CheckpointStore::open(
        &checkpoint_dir,
        checkpoint_key,
        crate::supervisor::CHECKPOINTS_KEPT,
        &format!("node={}", config.name),
    )
    .map_err(|e| format!("checkpoint store: {e}"))?;
    let checkpoints = Arc::new(Mutex::new(checkpoints));
    let ring_listener = tokio::net::TcpListener::bind(config.ring_listen)
        .await
        .map_err(|e| format!("ring listener {}: {e}", config.ring_listen))?;
    let ring_addr = ring_listener.local_addr().map_err(|e| e.to_string())?;
    let connect_timeout = Duration::from_millis(config.timeouts.connect_timeout_ms);
    let (generation, generation_rx) = tokio::sync::watch::channel(0u64);
    let trainer_args = TrainerArgs {
        shards: Vec::new(),
        endpoint: endpoint.clone(),
        ring_listener: Arc::new(ring_listener),
        checkpoints: Arc::clone(&checkpoints),
        state_dir: dir.clone(),
        metrics: metrics.clone(),
        connect_timeout,
        io_timeout: Duration::from_millis(config.timeouts.node_timeout_ms),
        generation: generation_rx,
        ledger: Arc::clone(&own_ledger),
        datasets: config.datasets.iter().map(|d| d.name.clone()).collect(),
        allow_unnoised: config.allows_unnoised_plans(),
        job: None,
        device: device.clone(),
    };
    let mut trainer_args = Some(trainer_args);

    // The coordinator: Accountant over the durable ledger, Supervisor, and the node listener.
    let mut report_rx = None;
    let mut job_eval = None;
    if config.serve_coordinator {
        let job = match &parties {
            Some(p) if !config.job_given => p.next_job().await,
            _ => config.job.clone(),
        };
        job_eval = job.eval.clone();
        let spec = job.clone();
        let name = config.name.clone();
        let package = tokio::task::spawn_blocking(move || crate::package::prepare(&job, &name))
            .await
            .map_err(|e| format!("preparing the job panicked: {e}"))?
            .map_err(|e| format!("the job: {e}"))?;
        tracing::info!(
            job = %package.offer.job,
            weights_sha256 = %package.offer.weights.sha256,
            bytes = package.offer.weights.len,
            "job prepared: initial weights made once, sent to every node"
        );
        if let Some(p) = &parties {
            p.job_prepared(&package.offer.job, spec.model_owner.clone());
        }
        let ledger = group_ledger
            .take()
            .expect("opened above on the coordinator");
        let (accountant, _) = Actor::spawn(None, Accountant, (ledger, metrics.clone()))
            .await
            .map_err(|e| format!("accountant: {e}"))?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (supervisor, _) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                job: spec,
                job_id: package.offer.job.clone(),
                job_shape: package.offer.task.data_shape(),
                coordinator: config.name.clone(),
                release_dir: dir.join(RELEASE_DIR),
                timeouts: config.timeouts.clone(),
                accountant,
                metrics: metrics.clone(),
                simulated_tee: config.tee.simulated,
                receipt_attester: receipt_attester.clone(),
                done: done_tx,
            },
        )
        .await
        .map_err(|e| format!("supervisor: {e}"))?;
        let listener = tokio::net::TcpListener::bind(config.coordinator)
            .await
            .map_err(|e| format!("coordinator listener {}: {e}", config.coordinator))?;
        tokio::spawn(serve_coordinator(
            listener,
            endpoint.clone(),
            supervisor,
            metrics.clone(),
            package,
            connect_timeout,
        ));
        report_rx = Some(done_rx);
    }

    // Membership: join the coordinator, serve its orders; reconnect if it restarts.
    let heartbeat = Duration::from_millis(config.timeouts.heartbeat_ms);
    let rejoin = Duration::from_millis(config.timeouts.rejoin_timeout_ms);
    let mut started_waiting = tokio::time::Instant::now();
    let mut member: Option<Member> = None;
    let (reason, failed) = loop {
        let offered = match connect_member(
            config.coordinator,
            &endpoint,
            &config.name,
            &metrics,
            connect_timeout,
        )
        .await
        {
            Ok(offered) => offered,
            Err(why) => {
                if started_waiting.elapsed() > rejoin + connect_timeout {
                    break (format!("gave up on the coordinator: {why}"), true);
                }
                tracing::warn!(reason = %why, "coordinator link lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let m = match &member {
            Some(m) if m.job != offered.offer.job => {
                break (
                    format!(
                        "the coordinator now offers job {}, but this node serves job {}: restart it to take the new job",
                        offered.offer.job, m.job
                    ),
                    true,
                );
            }
            Some(m) => m,
            None => {
                let args = trainer_args.take().expect("taken once");
                let m = prepare_member(
                    &config,
                    &shard_dir,
                    &shard_key,
                    &offered,
                    args,
                    parties.as_ref(),
                    job_eval.clone(),
                )
                .await?;
                member.insert(m)
            }
        };
        let join = Join {
            node: config.name.clone(),
            ring_addr: ring_addr.to_string(),
            datasets: m.infos.clone(),
            checkpoints: held_checkpoints(&checkpoints)?,
        };
        match serve_member(offered, join, m.trainer.clone(), &generation, heartbeat).await {
            Ok(LinkEnd::Finished { reason, failed }) => break (reason, failed),
            Ok(LinkEnd::Lost(why)) => {
                tracing::warn!(reason = %why, "coordinator link lost; reconnecting");
                started_waiting = tokio::time::Instant::now();
            }
            Err(why) => {
                if started_waiting.elapsed() > rejoin + connect_timeout {
                    break (format!("gave up on the coordinator: {why}"), true);
                }
                tracing::warn!(reason = %why, "coordinator link lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let report = match report_rx {
        Some(rx) => rx.await.ok(),
        None => None,
    };
    if let Some(p) = &parties {
        match &report {
            Some(r) => p.finished(
                r.release.is_some(),
                r.steps,
                r.planned_steps,
                r.nodes.clone(),
            ),
            None => p.finished(false, 0, 0, Vec::new()),
        }
    }
    if let Some(p) = &parties {
        p.hold_release(RELEASE_HOLD).await;
    }
    // The coordinator alone reports a finished job, so a group counts once.
    if let Some(r) = &report {
        let usage = bastion_telemetry::Usage {
            jobs: 1,
            steps: r.steps,
            nodes: r.nodes.len() as u64,
            version: bastion_telemetry::version(),
        };
        match bastion_telemetry::report(&config.telemetry, &usage).await {
            Ok(bastion_telemetry::Outcome::Sent(status)) => {
                tracing::info!(status, "telemetry sent: jobs, steps and nodes only")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "telemetry not sent"),
        }
    }
    Ok(NodeOutcome {
        report,
        reason,
        failed,
    })
}

/// How long a coordinator keeps answering after a model owner's job, for it to fetch the release.
const RELEASE_HOLD: Duration = Duration::from_secs(600);

/// The released model and its privacy figures, in the state directory.
pub const RELEASE_DIR: &str = "release";

/// A member prepared for one job: its data loaded and checked for the job's task, its
/// Trainer holding the job's initial weights.
struct Member {
    job: String,
    infos: Vec<DatasetInfo>,
    trainer: ActorRef<TrainerMsg>,
}

/// What a dataset must be for `task` (the tokenizer.json bytes for a language model).
pub fn expectation(task: &Task, tokenizer: Option<&[u8]>) -> Result<DataExpectation, String> {
    Ok(match task {
        Task::Classify {
            classes,
            image_size,
            channels,
            ..
        } => DataExpectation::Images {
            classes: ClassSpec::Names(classes.clone()),
            image_size: *image_size,
            channels: *channels,
        },
        Task::CausalLm {
            config, seq_len, ..
        } => {
            let bytes = tokenizer.ok_or("a language-model job without a tokenizer")?;
            DataExpectation::Text {
                tokenizer: bastion_models::tokenizer::TextTokenizer::from_bytes(bytes)
                    .map_err(|e| format!("the job's tokenizer: {e}"))?,
                seq_len: *seq_len as usize,
                vocab_size: config.vocab_size as usize,
            }
        }
    })
}

/// Where a dataset comes from, as the data loaders take it: the table's source fields
/// through the data module's own conversion ([`DataSourceSpec`]), which refuses a field the
/// format does not take. `records` and `seed` count only for `generated`, `split` only for
/// `medmnist-npz` (default `default_split`).
pub fn source(
    label: &str,
    format: &str,
    path: Option<PathBuf>,
    field: Option<String>,
    split: Option<&str>,
    default_split: Split,
    (records, seed): (usize, u64),
) -> Result<DataSource, String> {
    fn named<T: serde::de::DeserializeOwned>(
        label: &str,
        what: &str,
        value: &str,
    ) -> Result<T, String> {
        serde_json::from_value(serde_json::Value::String(value.into()))
            .map_err(|_| format!("{label}: {what} {value:?} is not known"))
    }
    let format: Format = named(label, "format", format)?;
    let split = match (format, split) {
        (Format::MedmnistNpz, Some(s)) => Some(named(label, "split", s)?),
        (Format::MedmnistNpz, None) => Some(default_split),
        _ => None,
    };
    let generated = format == Format::Generated;
    DataSource::try_from(DataSourceSpec {
        format,
        path,
        field,
        split,
        records: generated.then_some(records),
        seed: generated.then_some(seed),
    })
    .map_err(|e| format!("{label}: {e}"))
}

/// A node's dataset as the data loaders take it.
pub fn source_of(d: &DatasetConfig) -> Result<DataSource, String> {
    source(
        &format!("dataset {}", d.name),
        &d.format,
        d.path.clone(),
        d.field.clone(),
        d.split.as_deref(),
        Split::Train,
        (d.records, d.seed),
    )
}

/// Loads (or unseals) each dataset for the offered task, checks it, seals it, and starts its
/// DataShard and the Trainer. Nothing is joined before every dataset has passed.
async fn prepare_member(
    config: &NodeConfig,
    shard_dir: &Path,
    shard_key: &[u8; 32],
    offered: &Offered,
    mut args: TrainerArgs,
    parties: Option<&Arc<NodeParties>>,
    eval: Option<crate::job::EvalSpec>,
) -> Result<Member, String> {
    let offer = &offered.offer;
    let shape = offer.task.data_shape();
    tracing::info!(job = %offer.job, task = %shape, "job offered; loading this node's datasets for it");
    // Only the datasets the job names, and only if each one's owner allows its model owner:
    // this node defends its data owners itself, whatever the coordinator says.
    let datasets: Vec<&DatasetConfig> = config
        .datasets
        .iter()
        .filter(|d| offer.datasets.is_empty() || offer.datasets.contains(&d.name))
        .collect();
    if let Some(p) = parties {
        for d in &datasets {
            let Some(owner) = p.roles().owner_of(&d.name) else {
                continue;
            };
            match &offer.model_owner {
                Some(key) if p.roles().may_train(key, &d.name) => {}
                Some(key) => {
                    return Err(format!(
                        "job {} was submitted by model owner {key}, whom {} (owner of dataset {}) does not allow: this node will not train on it",
                        offer.job, owner.name, d.name
                    ))
                }
                None => {
                    return Err(format!(
                        "job {} has no model owner, and dataset {} belongs to {}, who allows only named model owners: this node will not train on it",
                        offer.job, d.name, owner.name
                    ))
                }
            }
        }
    }
    let expect = Arc::new(expectation(&offer.task, offered.tokenizer.as_deref())?);
    if let Some(p) = parties {
        p.job_offered(&offer.job, Arc::clone(&expect));
    }
    let mut loaded = Vec::new();
    for d in &datasets {
        if d.format == "pushed" {
            let p = parties.ok_or_else(|| {
                format!(
                    "dataset {} is pushed, but the node has no party_listen",
                    d.name
                )
            })?;
            let (held, records) = p.wait_pushed(&d.name, Arc::clone(&expect)).await?;
            held.allows(offer.model_owner.as_deref()).map_err(|why| {
                format!("job {}: this node will not train on it: {why}", offer.job)
            })?;
            let info = DatasetInfo {
                name: d.name.clone(),
                records: records.len() as u64,
                epsilon_budget: held.meta.epsilon_budget,
                delta: held.meta.delta,
                shape: shape.clone(),
                content_sha256: held.content_sha256.clone(),
                owner: Some(held.owner.clone()),
            };
            // Already sealed as pushed; nothing more to seal.
            loaded.push((info, records, None));
            continue;
        }
        let source = source_of(d)?;
        // The sealed copy is keyed by what was loaded and for which task, so another source
        // or task loads afresh instead of reusing a shard made for something else.
        let key_text = format!(
            "{source:?}|{shape}|{}",
            offer.tokenizer.as_ref().map_or("", |t| t.sha256.as_str())
        );
        let digest = &sha256_hex(key_text.as_bytes())[..16];
        let path = shard_dir.join(format!("{}-{digest}.sealed", d.name));
        let binding = format!("dataset={};node={};source={digest}", d.name, config.name);
        let (records, to_seal) = if path.exists() {
            let records =
                sealed::unseal_records(shard_key, &path, &binding).map_err(|e| e.to_string())?;
            (records, None)
        } else {
            let expect = Arc::clone(&expect);
            let name = d.name.clone();
            let records = tokio::task::spawn_blocking(move || load_dataset(&source, &expect))
                .await
                .map_err(|e| format!("loading dataset {name} panicked: {e}"))?
                .map_err(|e| format!("dataset {}: {e}", d.name))?;
            (records, Some((path, binding)))
        };
        // Serialised once: hashed for the receipt, and sealed as is when newly loaded.
        let body = records.to_bytes().map_err(|e| e.to_string())?;
        let info = DatasetInfo {
            name: d.name.clone(),
            records: records.len() as u64,
            epsilon_budget: d.epsilon_budget,
            delta: d.delta,
            shape: shape.clone(),
            // The records as loaded for this task (the node's own files have no pushed bytes).
            content_sha256: sha256_hex(&body),
            owner: parties
                .and_then(|p| p.roles().owner_of(&d.name))
                .map(|o| o.key.clone()),
        };
        loaded.push((info, records, to_seal.map(|s| (s, body))));
    }
    // Every dataset passed: only now is anything sealed.
    let mut infos = Vec::new();
    args.datasets.clear();
    for (info, records, to_seal) in loaded {
        if let Some(((path, binding), body)) = to_seal {
            sealed::seal_bytes(body, shard_key, &path, &binding).map_err(|e| e.to_string())?;
        }
        let (shard, _) = Actor::spawn(None, DataShard, (info.name.clone(), records))
            .await
            .map_err(|e| format!("data shard {}: {e}", info.name))?;
        args.shards.push(shard);
        args.datasets.push(info.name.clone());
        infos.push(info);
    }
    if let Some(p) = parties {
        p.running(&args.datasets);
    }
    args.job = Some(JobContext {
        offer: offer.clone(),
        weights: Arc::new(offered.weights.clone()),
        tokenizer: offered.tokenizer.clone().map(Arc::new),
        eval: if config.serve_coordinator { eval } else { None },
        release_dir: config.state_dir.join(RELEASE_DIR),
    });
    let (trainer, _) = Actor::spawn(None, Trainer, args)
        .await
        .map_err(|e| format!("trainer: {e}"))?;
    Ok(Member {
        job: offer.job.clone(),
        infos,
        trainer,
    })
}
