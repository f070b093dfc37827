//! One node, assembled: TEE identity, sealed shards, metrics, the Trainer and its DataShards,
//! and on the coordinator the Accountant and the Supervisor.

use crate::accountant::Accountant;
use crate::config::NodeConfig;
use crate::data::{cancer_tiles, sealed, ImageSet};
use crate::link::{serve_coordinator, serve_member, LinkEnd};
use crate::protocol::{DatasetInfo, Join};
use crate::shard::DataShard;
use crate::supervisor::{JobReport, Supervisor, SupervisorArgs};
use crate::trainer::{Trainer, TrainerArgs};
use bastion_attestation::sim::{LaunchConfig, SimulatedChip};
use bastion_attestation::tls::AttestedEndpoint;
use bastion_attestation::{Policy, TrustAnchors, Verifier};
use bastion_checkpoint::CheckpointStore;
use bastion_ledger::Ledger;
use bastion_metrics::NodeMetrics;
use ractor::Actor;
use std::path::Path;
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
    tch::set_num_threads(config.threads);
    let dir = &config.state_dir;
    private_dir(dir).map_err(|e| format!("state dir {e}"))?;
    let role = if config.serve_coordinator {
        "coordinator"
    } else {
        "trainer"
    };
    let metrics = NodeMetrics::new(&config.name, 0, role).map_err(|e| e.to_string())?;

    // Identity: the TEE, its sealing keys, and the attested TLS endpoint.
    if !config.tee.simulated {
        return Err("SEV-SNP hardware evidence is not wired in yet; set [tee] simulated = true to run on the simulated TEE".into());
    }
    // Simulated peers only on this node's own say-so. Without it the node could admit only
    // hardware peers, whose evidence is not wired in either: refuse now, not at every join.
    if !config.tee.trust_simulated {
        return Err("[tee] trust_simulated = false: this node would refuse every peer on the simulated TEE, and SEV-SNP hardware peers are not wired in yet; set [tee] trust_simulated = true to accept simulated peers".into());
    }
    let chip_dir = &config.tee.platform_dir;
    let chip = SimulatedChip::load(chip_dir)
        .map_err(|e| format!("[tee] platform_dir {}: {e}", chip_dir.display()))?;
    metrics.set_simulated_tee(true);
    // The measurement of the binary actually running, so a changed binary is another guest.
    let exe = std::env::current_exe()
        .map_err(|e| format!("locating this node's binary to measure it: {e}"))?;
    let launch = LaunchConfig::for_binary(&exe).map_err(|e| e.to_string())?;
    let own_measurement = crate::config::Measurement(launch.measurement);
    let tee = chip.launch(launch).map_err(|e| e.to_string())?;
    let checkpoint_key = tee.derive_key(CHECKPOINT_KEY_LABEL);
    let shard_key = tee.derive_key(SHARD_KEY_LABEL);
    let ledger_key = tee.derive_key(LEDGER_KEY_LABEL);
    let group_ledger_key = tee.derive_key(GROUP_LEDGER_KEY_LABEL);
    let trust =
        TrustAnchors::simulated(chip.ark_der(), chip.ask_der()).map_err(|e| e.to_string())?;
    let allowed = config.tee.allowed_measurements(own_measurement.0);
    if !allowed.contains(&own_measurement.0) {
        tracing::warn!(
            measurement = %own_measurement.to_hex(),
            "this node's own measurement is not in [tee] measurements: peers with the same list will refuse it"
        );
    }
    let verifier = Verifier::try_new(Policy::new(allowed), trust).map_err(|e| e.to_string())?;
    let endpoint = AttestedEndpoint::new(tee, verifier).map_err(|e| e.to_string())?;
    tracing::warn!(
        node = %config.name,
        measurement = %own_measurement.to_hex(),
        "running on the SIMULATED TEE: not hardware-protected"
    );
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
        config.job.accountant,
        &ledger_key,
        &[&shard_dir, &checkpoint_dir],
    )?;
    let own_ledger = Arc::new(Mutex::new(own_ledger));
    let mut group_ledger = if config.serve_coordinator {
        Some(open_ledger(
            &dir.join(GROUP_LEDGER_FILE),
            config.job.accountant,
            &group_ledger_key,
            &[&shard_dir, &checkpoint_dir],
        )?)
    } else {
        None
    };
    let mut shards = Vec::new();
    let mut infos = Vec::new();
    for d in &config.datasets {
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
        let path = shard_dir.join(format!("{}.sealed", d.name));
        // Sealed for this dataset on this node: shards cannot be swapped between owners.
        let binding = format!("dataset={};node={}", d.name, config.name);
        let records: ImageSet = if path.exists() {
            sealed::unseal(&shard_key, &path, &binding).map_err(|e| e.to_string())?
        } else {
            let set = cancer_tiles(d.records, config.job.image_size, d.seed);
            sealed::seal(&set, &shard_key, &path, &binding).map_err(|e| e.to_string())?;
            set
        };
        infos.push(DatasetInfo {
            name: d.name.clone(),
            records: records.len() as u64,
            epsilon_budget: d.epsilon_budget,
            delta: d.delta,
        });
        let (shard, _) = Actor::spawn(None, DataShard, (d.name.clone(), records))
            .await
            .map_err(|e| format!("data shard {}: {e}", d.name))?;
        shards.push(shard);
    }

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
    let (trainer, _) = Actor::spawn(
        None,
        Trainer,
        TrainerArgs {
            shards,
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
        },
    )
    .await
    .map_err(|e| format!("trainer: {e}"))?;

    // The coordinator: Accountant over the durable ledger, Supervisor, and the node listener.
    let mut report_rx = None;
    if config.serve_coordinator {
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
                job: config.job.clone(),
                timeouts: config.timeouts.clone(),
                accountant,
                metrics: metrics.clone(),
                simulated_tee: config.tee.simulated,
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
            config.name.clone(),
            connect_timeout,
        ));
        report_rx = Some(done_rx);
    }

    // Membership: join the coordinator, serve its orders; reconnect if it restarts.
    let heartbeat = Duration::from_millis(config.timeouts.heartbeat_ms);
    let rejoin = Duration::from_millis(config.timeouts.rejoin_timeout_ms);
    let mut started_waiting = tokio::time::Instant::now();
    let (reason, failed) = loop {
        let held = held_checkpoints(&checkpoints)?;
        let join = Join {
            node: config.name.clone(),
            ring_addr: ring_addr.to_string(),
            datasets: infos.clone(),
            checkpoints: held,
        };
        match serve_member(
            config.coordinator,
            &endpoint,
            join,
            trainer.clone(),
            &generation,
            &metrics,
            heartbeat,
            connect_timeout,
        )
        .await
        {
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
    Ok(NodeOutcome {
        report,
        reason,
        failed,
    })
}
