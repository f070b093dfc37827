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
use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform};
use bastion_attestation::tls::AttestedEndpoint;
use bastion_attestation::{Policy, TrustAnchors, Verifier};
use bastion_checkpoint::CheckpointStore;
use bastion_ledger::Ledger;
use bastion_metrics::NodeMetrics;
use ractor::Actor;
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

/// Runs the node until the job ends.
pub async fn run_node(config: NodeConfig) -> Result<NodeOutcome, String> {
    tch::set_num_threads(config.threads);
    let dir = &config.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("state dir {}: {e}", dir.display()))?;
    let role = if config.serve_coordinator {
        "coordinator"
    } else {
        "trainer"
    };
    let metrics = NodeMetrics::new(&config.name, 0, role).map_err(|e| e.to_string())?;

    // Identity: the TEE, its sealing keys, and the attested TLS endpoint.
    if !config.tee.simulated {
        return Err(
            "tee.simulated = false: SEV-SNP hardware attestation is not wired into the node yet"
                .into(),
        );
    }
    let platform = SimulatedPlatform::load(&config.tee.platform_dir).map_err(|e| {
        format!(
            "simulated platform {}: {e}",
            config.tee.platform_dir.display()
        )
    })?;
    metrics.set_simulated_tee(true);
    let tee = platform
        .launch(LaunchConfig::default())
        .map_err(|e| e.to_string())?;
    let checkpoint_key = tee.derive_key(CHECKPOINT_KEY_LABEL);
    let shard_key = tee.derive_key(SHARD_KEY_LABEL);
    let trust = TrustAnchors::simulated(platform.ark_der(), platform.ask_der())
        .map_err(|e| e.to_string())?;
    let verifier = Verifier::new(
        Policy::new(vec![LaunchConfig::default_measurement()]),
        trust,
    );
    let endpoint = AttestedEndpoint::new(tee, verifier).map_err(|e| e.to_string())?;
    tracing::warn!(node = %config.name, "running on the SIMULATED TEE: not hardware-protected");
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
    std::fs::create_dir_all(&shard_dir).map_err(|e| format!("{}: {e}", shard_dir.display()))?;
    let mut shards = Vec::new();
    let mut infos = Vec::new();
    for d in &config.datasets {
        let path = shard_dir.join(format!("{}.sealed", d.name));
        let records: ImageSet = if path.exists() {
            sealed::unseal(&shard_key, &path).map_err(|e| e.to_string())?
        } else {
            let set = cancer_tiles(d.records, config.job.image_size, d.seed);
            sealed::seal(&set, &shard_key, &path).map_err(|e| e.to_string())?;
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
        dir.join("checkpoints"),
        checkpoint_key,
        crate::supervisor::CHECKPOINTS_KEPT,
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
        },
    )
    .await
    .map_err(|e| format!("trainer: {e}"))?;

    // The coordinator: Accountant over the durable ledger, Supervisor, and the node listener.
    let mut report_rx = None;
    if config.serve_coordinator {
        let (ledger, recovery) = Ledger::open(&dir.join("privacy.ledger"), config.job.accountant)
            .map_err(|e| format!("privacy ledger: {e}"))?;
        tracing::info!(steps = recovery.steps, torn_tail = ?recovery.torn_tail, "privacy ledger opened");
        let (accountant, _) = Actor::spawn(None, Accountant, ledger)
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
        let held = checkpoints
            .lock()
            .map_err(|_| "checkpoint store poisoned".to_string())?
            .steps()
            .map_err(|e| format!("checkpoint store: {e}"))?;
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
