//! `bastion cluster up`: a local group of node processes on loopback, on the simulated TEE.
//!
//! With `--job job.toml` and one `--dataset NAME=FORMAT:PATH` per party, it runs the model
//! owner's job on the parties' files, named in each node's config. Without `--job` it is the
//! README's main job, the cancer example, played by its three kinds of party: it writes each
//! hospital's generated tiles as a MedMNIST-layout `.npz`, the model owner's held-out tiles
//! and `job.toml`, and a key for every party; starts nodes that hold nothing and have no job;
//! then, as real `bastion` commands, the model owner submits the job to the coordinator, each
//! hospital verifies its node's attestation and pushes its file to it, and once the job ends
//! the model owner fetches the model and its signed receipt and verifies the receipt.

use anyhow::{bail, ensure, Context};
use bastion_actors::config::OnNodeLoss;
use bastion_attestation::sim::{binary_measurement, SimulatedChip, SimulatedPlatform};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// Start N nodes (node-0 coordinates), train, print the job report.
    Up(Box<UpArgs>),
}

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// The model owner's job file; without it, the cancer example's job from the flags below.
    #[arg(long)]
    job: Option<PathBuf>,
    /// One party: its dataset as NAME=FORMAT:PATH (formats: medmnist-npz, image-folder,
    /// jsonl, text-lines); one node per --dataset. Without it, generated hospital tiles.
    #[arg(long = "dataset", value_name = "NAME=FORMAT:PATH")]
    datasets: Vec<String>,
    /// Each party's epsilon budget for its dataset.
    #[arg(long, default_value_t = 8.0)]
    budget: f64,
    /// Number of nodes (parties) of the cancer example, each with its own tiles.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Working directory: simulated platform, each node's config, sealed store and log.
    #[arg(long, default_value = DEFAULT_DIR)]
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
    /// The cancer example's target epsilon.
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
    /// Where each node computes: cpu, cuda:N or cuda:N,M,... (node.toml's `device`; every
    /// node of a local cluster gets the same). Noise is made on the CPU either way.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub(crate) fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Up(args) => up(*args),
    }
}

/// One party's dataset, as a node.toml `[[datasets]]` entry.
struct Party {
    dataset: String,
    format: String,
    path: PathBuf,
}

fn parse_party(text: &str) -> anyhow::Result<Party> {
    let (name, rest) = text
        .split_once('=')
        .with_context(|| format!("--dataset {text:?}: expected NAME=FORMAT:PATH"))?;
    let (format, path) = rest
        .split_once(':')
        .with_context(|| format!("--dataset {text:?}: expected NAME=FORMAT:PATH"))?;
    ensure!(
        matches!(format, "medmnist-npz" | "image-folder" | "jsonl" | "text-lines"),
        "--dataset {text:?}: format {format:?} is not medmnist-npz, image-folder, jsonl or text-lines"
    );
    ensure!(!name.is_empty(), "--dataset {text:?}: empty name");
    let path = std::path::absolute(path).with_context(|| format!("--dataset {text:?}"))?;
    ensure!(
        path.exists(),
        "--dataset {text:?}: {} does not exist",
        path.display()
    );
    Ok(Party {
        dataset: name.to_string(),
        format: format.to_string(),
        path,
    })
}

impl UpArgs {
    /// The same run as one node (`bastion train`): one party unless `--dataset`s say more.
    pub(crate) fn single(mut self) -> UpArgs {
        if self.datasets.is_empty() {
            self.nodes = 1;
        }
        if self.dir == Path::new(DEFAULT_DIR) {
            self.dir = PathBuf::from("bastion-train");
        }
        self
    }
}

/// The working directory of `cluster up`.
const DEFAULT_DIR: &str = "bastion-cluster";

pub(crate) fn up(args: UpArgs) -> anyhow::Result<()> {
    let on_loss = match args.on_node_loss.as_str() {
        "continue" => OnNodeLoss::Continue,
        "stop" => OnNodeLoss::Stop,
        other => bail!("--on-node-loss must be continue or stop, got {other:?}"),
    };
    // The nodes run this same binary here: a device they would refuse is refused now,
    // before any node starts and the cluster waits for it.
    bastion_actors::device::ComputeDevice::parse(&args.device)
        .and_then(|d| d.check_available())
        .map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("removing {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut parties = args
        .datasets
        .iter()
        .map(|d| parse_party(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let job_path = match &args.job {
        Some(job) => std::path::absolute(job)?,
        None => {
            if parties.is_empty() {
                parties = cancer_example_data(&args)?;
            }
            cancer_example_job(&args, parties.len(), on_loss)?
        }
    };
    ensure!(
        (1..=16).contains(&parties.len()),
        "need 1 to 16 parties (--dataset), got {}",
        parties.len()
    );
    let job = bastion_actors::job::JobSpec::load(&job_path)?;
    ensure!(
        job.schedule.nodes == parties.len(),
        "{}: [schedule] nodes = {}, but {} parties were given",
        job_path.display(),
        job.schedule.nodes,
        parties.len()
    );
    let exe = std::env::current_exe().context("locating the bastion binary")?;
    // Every node runs this very binary, so its measurement is the group's allow-list.
    let measurement =
        binary_measurement(&exe).with_context(|| format!("measuring {}", exe.display()))?;
    // The cancer example is played by its parties, who push their files; a --job run (or
    // image folders, which are not one file to push) names the files in node.toml.
    let pushable = parties.iter().all(|p| p.format != "image-folder");
    let keys = match args.job {
        None if pushable => Some(PartyKeys::make(&args, &parties, &hex::encode(measurement))?),
        _ => None,
    };
    let configs = write_configs(
        &args,
        &parties,
        &job_path,
        &hex::encode(measurement),
        keys.as_ref(),
    )?;
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
        configs.len(),
        args.dir.display()
    );
    let (_, mut coordinator) = children.remove(0);
    let progress = super::progress::Progress::follow(args.dir.join("node-0").join("node.log"));
    if let Some(keys) = &keys {
        if let Err(e) = keys.submit_and_push(&exe, &args, &parties, &job_path) {
            for (_, child) in std::iter::once(("node-0".to_string(), coordinator)).chain(children) {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(e);
        }
    }
    let mut fetched = None;
    // A member that exits on its own with a failure (its data refused, its config wrong)
    // ends the run: the coordinator would wait for it. One killed by a signal is a failure
    // the job's loss policy handles.
    loop {
        if coordinator.try_wait()?.is_some() {
            break;
        }
        if let (Some(keys), None) = (&keys, &fetched) {
            // The model owner takes the release as soon as the job has one; the
            // coordinator holds it until then.
            fetched = keys.fetch_when_released(&exe, &args)?;
            std::thread::sleep(std::time::Duration::from_millis(800));
        }
        if let Some((name, status)) =
            children
                .iter_mut()
                .find_map(|(name, child)| match child.try_wait() {
                    Ok(Some(status)) if status.code().is_some_and(|c| c != 0) => {
                        Some((name.clone(), status))
                    }
                    _ => None,
                })
        {
            let _ = coordinator.kill();
            let _ = coordinator.wait();
            for (_, child) in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            let log = args.dir.join(&name).join("node.log");
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let last: Vec<&str> = tail.lines().rev().take(3).collect();
            bail!(
                "{name} stopped ({status}); the job cannot run without it. Its log ({}) ends:\n{}",
                log.display(),
                last.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let output = coordinator
        .wait_with_output()
        .context("waiting for node-0")?;
    drop(progress);
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
    if let (Some(keys), Some(release)) = (&keys, &fetched) {
        keys.verify_receipt(&exe, release)?;
    }
    Ok(())
}

/// The cancer example's parties: a key for each hospital (data owner), the model owner and
/// the operator, and the `verify.toml` with which each checks a node before sending a byte.
struct PartyKeys {
    dir: PathBuf,
    /// Per hospital: its key file and fingerprint.
    hospitals: Vec<(PathBuf, String)>,
    lab: (PathBuf, String),
    operator: (PathBuf, String),
    verify: PathBuf,
}

impl PartyKeys {
    fn make(args: &UpArgs, parties: &[Party], measurement_hex: &str) -> anyhow::Result<PartyKeys> {
        use bastion_attestation::tls::PartyIdentity;
        let dir = std::path::absolute(args.dir.join("parties"))?;
        std::fs::create_dir_all(&dir)?;
        let key = |name: &str| -> anyhow::Result<(PathBuf, String)> {
            let path = dir.join(format!("{name}.pem"));
            let identity = if path.exists() {
                PartyIdentity::load(&path)?
            } else {
                let id = PartyIdentity::generate()?;
                id.save(&path)?;
                id
            };
            Ok((path, identity.fingerprint()))
        };
        let hospitals = parties
            .iter()
            .map(|p| key(&p.dataset))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let lab = key("oncology-lab")?;
        let operator = key("operator")?;
        // What every party requires of a node: this binary's measurement, on the simulated
        // chain `cluster up` made (said out loud: no hardware protection).
        let verify = dir.join("verify.toml");
        std::fs::write(
            &verify,
            format!(
                "# Written by `bastion cluster up`: what a party requires of a node before it sends anything.\nallowed_measurements = [\"{measurement_hex}\"]\n\n[trust]\nsimulated = true\nsimulated_platform_dir = {:?}\n",
                abs(&args.dir.join("platform"))?
            ),
        )?;
        Ok(PartyKeys {
            dir,
            hospitals,
            lab,
            operator,
            verify,
        })
    }

    /// The `[[parties]]` of every node: the group's roster (every hospital with the model
    /// owners it allows, the model owner, the operator). The coordinator needs every data
    /// owner's allow-list to authorize a job; a hospital can still push only the dataset it
    /// owns, and only to the node that declares it.
    fn roster(&self, datasets: &[String]) -> String {
        let mut out = String::new();
        for (dataset, (_, key)) in datasets.iter().zip(&self.hospitals) {
            out += &format!(
                "[[parties]]\nname = {dataset:?}\nkey = \"{key}\"\nrole = \"data-owner\"\ndatasets = [{dataset:?}]\nallow_model_owners = [\"{}\"]\n\n",
                self.lab.1
            );
        }
        out + &format!(
            "[[parties]]\nname = \"oncology-lab\"\nkey = \"{}\"\nrole = \"model-owner\"\n\n[[parties]]\nname = \"operator\"\nkey = \"{}\"\nrole = \"operator\"\n",
            self.lab.1, self.operator.1
        )
    }

    /// `bastion <command>` as the party holding `key`, talking to node i.
    fn party_argv(&self, command: &[&str], args: &UpArgs, i: usize, key: &Path) -> Vec<String> {
        let mut argv: Vec<String> = command.iter().map(|c| c.to_string()).collect();
        for (flag, value) in [
            ("--node", party_addr(args, i)),
            ("--key", path_str(key)),
            ("--policy", path_str(&self.verify)),
        ] {
            argv.extend([flag.to_string(), value]);
        }
        argv
    }

    /// The model owner submits the job to the coordinator; then every hospital pushes its
    /// file to its own node (at once, as separate parties would).
    fn submit_and_push(
        &self,
        exe: &Path,
        args: &UpArgs,
        parties: &[Party],
        job: &Path,
    ) -> anyhow::Result<()> {
        for i in 0..parties.len() {
            wait_listening(party_port(args, i))?;
        }
        let submit = self.party_argv(&["job", "submit"], args, 0, &self.lab.0);
        run_party(
            exe,
            "the model owner's job submission",
            &[submit, vec!["--job".into(), path_str(job)]].concat(),
        )?;
        let pushes: Vec<_> = parties
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut argv = self.party_argv(&["data", "push"], args, i, &self.hospitals[i].0);
                for (flag, value) in [
                    ("--dataset", path_str(&p.path)),
                    ("--format", p.format.clone()),
                    ("--name", p.dataset.clone()),
                    ("--budget-epsilon", args.budget.to_string()),
                    ("--delta", "1e-5".into()),
                    ("--allow-model-owner", self.lab.1.clone()),
                ] {
                    argv.extend([flag.to_string(), value]);
                }
                let exe = exe.to_path_buf();
                let what = format!("{}'s push", p.dataset);
                std::thread::spawn(move || run_party(&exe, &what, &argv))
            })
            .collect();
        for push in pushes {
            push.join()
                .map_err(|_| anyhow::anyhow!("a push thread panicked"))??;
        }
        Ok(())
    }

    /// Once the coordinator reports the job released, the model owner fetches it (real
    /// `bastion model fetch`); returns where it went, or None while the job runs.
    fn fetch_when_released(&self, exe: &Path, args: &UpArgs) -> anyhow::Result<Option<PathBuf>> {
        use bastion_party::JobState;
        let status = self.status(args)?;
        match status.state {
            JobState::Released => {}
            JobState::Failed => bail!("the job failed; see {}/node-0/node.log", args.dir.display()),
            _ => return Ok(None),
        }
        let out = self.dir.join("oncology-lab-release");
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        let fetch = self.party_argv(&["model", "fetch"], args, 0, &self.lab.0);
        run_party(
            exe,
            "the model owner's fetch",
            &[fetch, vec!["--out".into(), path_str(&out)]].concat(),
        )?;
        Ok(Some(out))
    }

    /// The job's state, as the operator sees it (the role that sees only status).
    fn status(&self, args: &UpArgs) -> anyhow::Result<bastion_party::Status> {
        use bastion_attestation::tls::{PartyIdentity, VerifyFile};
        let identity = PartyIdentity::load(&self.operator.0)?;
        let verifier = VerifyFile::load_verifier(&self.verify)?;
        let client = bastion_party::Client::new(party_addr(args, 0), &identity, verifier)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Polled every second: its per-connection warnings (simulated trust) would bury the
        // progress line, and the submission and pushes already printed them once.
        let status = tracing::subscriber::with_default(
            tracing::subscriber::NoSubscriber::default(),
            || runtime.block_on(client.status()),
        )?;
        Ok(status)
    }

    /// The model owner checks the receipt offline: evidence, signature, model hash, epsilon.
    fn verify_receipt(&self, exe: &Path, release: &Path) -> anyhow::Result<()> {
        let argv = ["receipt", "verify"]
            .map(String::from)
            .into_iter()
            .chain([path_str(&release.join("receipt.json")), "--model".into()])
            .chain([path_str(release), "--policy".into(), path_str(&self.verify)])
            .collect::<Vec<_>>();
        run_party(exe, "the model owner's receipt check", &argv)?;
        eprintln!(
            "cluster: the model owner fetched the model into {} and verified its signed receipt",
            release.display()
        );
        Ok(())
    }
}

/// Node i's party port: after the coordinator's and the N metrics ports.
fn party_port(args: &UpArgs, i: usize) -> u16 {
    args.base_port + 1 + args.nodes.max(16) as u16 + i as u16
}

fn party_addr(args: &UpArgs, i: usize) -> String {
    format!("127.0.0.1:{}", party_port(args, i))
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Waits until something listens on loopback `port` (a node just started).
fn wait_listening(port: u16) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(
            std::time::Instant::now() < deadline,
            "no node answers on 127.0.0.1:{port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

/// Runs one party's `bastion` command; its output goes to the party's log line on failure.
fn run_party(exe: &Path, what: &str, argv: &[String]) -> anyhow::Result<()> {
    eprintln!("cluster: bastion {}", argv.join(" "));
    let out = Command::new(exe)
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The cancer example's parties: each hospital's generated tiles written as a MedMNIST
/// `.npz` (train split), and the model owner's held-out tiles (test split).
fn cancer_example_data(args: &UpArgs) -> anyhow::Result<Vec<Party>> {
    ensure!(
        (1..=16).contains(&args.nodes),
        "--nodes must be 1..=16, got {}",
        args.nodes
    );
    let data = args.dir.join("data");
    std::fs::create_dir_all(&data)?;
    let mut parties = Vec::new();
    for i in 0..args.nodes {
        let path = abs(&data.join(format!("{}.npz", hospital(i))))?;
        if !Path::new(&path).exists() {
            let tiles =
                bastion_actors::data::cancer_tiles(args.records, args.image_size, i as u64 + 1);
            bastion_actors::data::npz::write_medmnist_npz(
                Path::new(&path),
                &[(bastion_actors::data::Split::Train, &tiles)],
            )
            .with_context(|| format!("writing {path}"))?;
        }
        parties.push(Party {
            dataset: hospital(i),
            format: "medmnist-npz".into(),
            path: PathBuf::from(path),
        });
    }
    Ok(parties)
}

/// The cancer example's i-th hospital.
fn hospital(i: usize) -> String {
    format!("hospital-{}", (b'a' + (i as u8 % 26)) as char)
}

/// The cancer example's `job.toml`, from the flags.
fn cancer_example_job(args: &UpArgs, nodes: usize, on_loss: OnNodeLoss) -> anyhow::Result<PathBuf> {
    let held_out = abs(&args.dir.join("data").join("held-out.npz"))?;
    if !Path::new(&held_out).exists() {
        std::fs::create_dir_all(args.dir.join("data"))?;
        let tiles = bastion_actors::data::cancer_tiles(256, args.image_size, u64::MAX);
        bastion_actors::data::npz::write_medmnist_npz(
            Path::new(&held_out),
            &[(bastion_actors::data::Split::Test, &tiles)],
        )
        .with_context(|| format!("writing {held_out}"))?;
    }
    let names: Vec<String> = (0..nodes).map(hospital).collect();
    let text = format!(
        r#"# Written by `bastion cluster up` from its flags: the cancer example's job.
datasets = {names:?}

[model]
kind = "resnet"
depth = 18
classes = ["benign", "malignant"]
image_size = {image}
channels = 3

[optim]
kind = "sgd"
lr = 0.5
momentum = 0.9

[privacy]
epsilon = {eps}
delta = 1e-5
max_grad_norm = 1.0

[schedule]
nodes = {nodes}
batch_size = {batch}
epochs = {epochs}
max_steps = {max_steps}
checkpoint_every = {ckpt}
on_node_loss = "{loss}"

[eval]
format = "medmnist-npz"
path = {held_out:?}
split = "test"
"#,
        image = args.image_size,
        eps = args.epsilon,
        batch = args.batch_size,
        epochs = args.epochs,
        max_steps = args.max_steps,
        ckpt = args.checkpoint_every,
        loss = match on_loss {
            OnNodeLoss::Continue => "continue",
            OnNodeLoss::Stop => "stop",
        },
    );
    let path = args.dir.join("job.toml");
    std::fs::write(&path, text)?;
    Ok(std::path::absolute(path)?)
}

/// The simulated platform (one AMD chain, one chip per node) and each node's `node.toml`.
/// The chain's private keys stay in `<dir>/platform`, which no node reads: each node's `tee`
/// directory holds only its own chip (VCEK) and the public ARK and ASK certificates.
fn write_configs(
    args: &UpArgs,
    parties: &[Party],
    job: &Path,
    measurement_hex: &str,
    keys: Option<&PartyKeys>,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let platform_dir = args.dir.join("platform");
    let platform =
        SimulatedPlatform::load_or_generate(&platform_dir).context("the simulated AMD chain")?;
    let datasets: Vec<String> = parties.iter().map(|p| p.dataset.clone()).collect();
    let mut out = Vec::new();
    for (i, party) in parties.iter().enumerate() {
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
        // The parties' version: no job (the model owner submits it), pushed data.
        let (job_line, dataset, party_lines) = match keys {
            Some(k) => (
                format!("party_listen = \"{}\"\n", party_addr(args, i)),
                format!("[[datasets]]\nname = \"{}\"\nformat = \"pushed\"\n", party.dataset),
                k.roster(&datasets),
            ),
            None => (
                if i == 0 {
                    format!("job = {:?}\n", job.display().to_string())
                } else {
                    String::new()
                },
                format!(
                    "[[datasets]]\nname = \"{}\"\nformat = \"{}\"\npath = {:?}\nepsilon_budget = {}\ndelta = 1e-5\n",
                    party.dataset,
                    party.format,
                    party.path.display().to_string(),
                    args.budget
                ),
                String::new(),
            ),
        };
        let text = format!(
            r#"# Generated by `bastion cluster up`.
name = "{name}"
coordinator = "127.0.0.1:{coord}"
serve_coordinator = {is_coord}
ring_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:{metrics}"
state_dir = {state:?}
threads = {threads}
device = {device:?}
{job_line}
[tee]
simulated = true
trust_simulated = true
platform_dir = {tee:?}
measurements = ["{measurement_hex}"]

{dataset}
{party_lines}"#,
            coord = args.base_port,
            is_coord = i == 0,
            metrics = args.base_port as usize + 1 + i,
            state = abs(&dir)?,
            threads = args.threads,
            device = args.device,
            tee = abs(&tee)?,
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
