//! `bastion cluster up --nodes N`: a local group of N node processes on loopback, on the
//! simulated TEE, each holding one party's generated cancer tiles. The README's main job.

use anyhow::{bail, ensure, Context};
use bastion_actors::config::OnNodeLoss;
use bastion_attestation::sim::{binary_measurement, SimulatedChip, SimulatedPlatform};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// Start N nodes (node-0 coordinates), train, print the job report.
    Up(UpArgs),
}

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Number of nodes (parties), each with its own dataset.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Working directory: simulated platform, each node's config, sealed store and log.
    #[arg(long, default_value = "bastion-cluster")]
    dir: PathBuf,
    /// Start from nothing (delete the directory first) instead of resuming.
    #[arg(long)]
    fresh: bool,
    /// Generated tiles per party.
    #[arg(long, default_value_t = 512)]
    records: usize,
    /// Tile side in pixels.
    #[arg(long, default_value_t = 32)]
    image_size: i64,
    /// Expected batch size of the whole group.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Passes over the pooled data.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Stop after this many steps (0: as planned).
    #[arg(long, default_value_t = 0)]
    max_steps: u64,
    /// Each party's epsilon budget (and the job's target).
    #[arg(long, default_value_t = 8.0)]
    epsilon: f64,
    /// Checkpoint every this many steps.
    #[arg(long, default_value_t = 5)]
    checkpoint_every: u64,
    /// What to do when a node stays away: continue or stop.
    #[arg(long, default_value = "continue")]
    on_node_loss: String,
    /// First loopback port: the coordinator; metrics use the next N.
    #[arg(long, default_value_t = 7700)]
    base_port: u16,
    /// libtorch threads per node.
    #[arg(long, default_value_t = 1)]
    threads: i32,
}

pub(crate) fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Up(args) => up(args),
    }
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=16).contains(&args.nodes),
        "--nodes must be 1..=16, got {}",
        args.nodes
    );
    let on_loss = match args.on_node_loss.as_str() {
        "continue" => OnNodeLoss::Continue,
        "stop" => OnNodeLoss::Stop,
        other => bail!("--on-node-loss must be continue or stop, got {other:?}"),
    };
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("removing {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("locating the bastion binary")?;
    // Every node runs this very binary, so its measurement is the group's allow-list.
    let measurement =
        binary_measurement(&exe).with_context(|| format!("measuring {}", exe.display()))?;
    let configs = write_configs(&args, on_loss, &hex::encode(measurement))?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for (name, config) in &configs {
        let log = std::fs::File::create(args.dir.join(name).join("node.log"))?;
        let child = Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(config)
            .stdout(if children.is_empty() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        children.push((name.clone(), child));
    }
    eprintln!(
        "cluster: {} nodes on loopback (simulated TEE); logs in {}/node-*/node.log",
        args.nodes,
        args.dir.display()
    );
    let (_, coordinator) = children.remove(0);
    let output = coordinator
        .wait_with_output()
        .context("waiting for node-0")?;
    // Members exit on the coordinator's Finish; give them a moment, then make sure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for (name, child) in &mut children {
        while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if matches!(child.try_wait(), Ok(None)) {
            eprintln!("cluster: {name} did not exit; stopping it");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let report = String::from_utf8_lossy(&output.stdout);
    print!("{report}");
    ensure!(
        output.status.success(),
        "the job failed (see {}/node-0/node.log)",
        args.dir.display()
    );
    Ok(())
}

/// The simulated platform (one AMD chain, one chip per node) and each node's `node.toml`.
/// The chain's private keys stay in `<dir>/platform`, which no node reads: each node's `tee`
/// directory holds only its own chip (VCEK) and the public ARK and ASK certificates.
fn write_configs(
    args: &UpArgs,
    on_loss: OnNodeLoss,
    measurement_hex: &str,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let platform_dir = args.dir.join("platform");
    let platform =
        SimulatedPlatform::load_or_generate(&platform_dir).context("the simulated AMD chain")?;
    let mut out = Vec::new();
    for i in 0..args.nodes {
        let name = format!("node-{i}");
        let dir = args.dir.join(&name);
        std::fs::create_dir_all(&dir)?;
        let tee = dir.join("tee");
        if tee.exists() {
            // Resuming: the chip must be one (older layouts held the root keys).
            SimulatedChip::load(&tee)
                .with_context(|| format!("{name}'s simulated chip; start over with --fresh"))?;
        } else {
            platform.issue_chip()?.save(&tee)?;
        }
        let party = (b'a' + (i as u8 % 26)) as char;
        let text = format!(
            r#"# Generated by `bastion cluster up`.
name = "{name}"
coordinator = "127.0.0.1:{coord}"
serve_coordinator = {is_coord}
ring_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:{metrics}"
state_dir = {state:?}
threads = {threads}

[tee]
simulated = true
trust_simulated = true
platform_dir = {tee:?}
measurements = ["{measurement_hex}"]

[[datasets]]
name = "hospital-{party}"
records = {records}
seed = {seed}
epsilon_budget = {eps}
delta = 1e-5

[job]
nodes = {nodes}
image_size = {image}
batch_size = {batch}
epochs = {epochs}
max_steps = {max_steps}
epsilon = {eps}
checkpoint_every = {ckpt}
on_node_loss = "{loss}"
"#,
            coord = args.base_port,
            is_coord = i == 0,
            metrics = args.base_port as usize + 1 + i,
            state = abs(&dir)?,
            threads = args.threads,
            tee = abs(&tee)?,
            records = args.records,
            seed = i + 1,
            eps = args.epsilon,
            nodes = args.nodes,
            image = args.image_size,
            batch = args.batch_size,
            epochs = args.epochs,
            max_steps = args.max_steps,
            ckpt = args.checkpoint_every,
            loss = match on_loss {
                OnNodeLoss::Continue => "continue",
                OnNodeLoss::Stop => "stop",
            },
        );
        let path = dir.join("node.toml");
        std::fs::write(&path, text)?;
        out.push((name, path));
    }
    Ok(out)
}

fn abs(p: &Path) -> anyhow::Result<String> {
    Ok(std::path::absolute(p)?.display().to_string())
}
