//! A local cluster of real `bastion node` processes on loopback, for the cluster tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use bastion_attestation::sim::SimulatedPlatform;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Clusters of one test binary run one at a time: two cores cannot train two at once in time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One simulated AMD chain per test binary (RSA-4096 key generation takes seconds).
fn platform() -> &'static SimulatedPlatform {
    static PLATFORM: OnceLock<SimulatedPlatform> = OnceLock::new();
    PLATFORM.get_or_init(|| SimulatedPlatform::generate().expect("simulated platform"))
}

/// A free loopback port (best effort: another process could take it before we bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A node to start: its name, its datasets (name, records, seed), and whether it coordinates.
pub struct NodeSpec {
    pub name: String,
    pub datasets: Vec<(String, usize, u64)>,
    /// Top-level lines of its node.toml beyond the defaults.
    pub settings: Vec<String>,
}

pub fn node(name: &str, datasets: &[(&str, usize, u64)]) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        datasets: datasets
            .iter()
            .map(|(n, r, s)| (n.to_string(), *r, *s))
            .collect(),
        settings: Vec::new(),
    }
}

impl NodeSpec {
    /// Adds a top-level line to the node's config.
    pub fn with(mut self, line: &str) -> NodeSpec {
        self.settings.push(line.to_string());
        self
    }

    /// Opts this node in to plans without noise (the test-only switch of its own config).
    pub fn allowing_unnoised_plans(self) -> NodeSpec {
        self.with("danger_allow_unnoised_plans_for_tests = true")
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub names: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    /// Writes each node's config (the first coordinates) with the given `[job]` and
    /// `[timeouts]` TOML bodies and a per-dataset budget, then starts every node.
    pub fn start(
        test: &str,
        nodes: Vec<NodeSpec>,
        job: &str,
        timeouts: &str,
        budget: f64,
    ) -> Cluster {
        Cluster::start_with(test, nodes, job, timeouts, budget, |_| {})
    }

    /// As [`Cluster::start`], letting `prepare` put files in each node's state directory first.
    pub fn start_with(
        test: &str,
        nodes: Vec<NodeSpec>,
        job: &str,
        timeouts: &str,
        budget: f64,
        prepare: impl Fn(&Path),
    ) -> Cluster {
        let dir = std::env::temp_dir().join(format!("bastion-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut names = Vec::new();
        for (i, spec) in nodes.iter().enumerate() {
            let node_dir = dir.join(&spec.name);
            std::fs::create_dir_all(&node_dir).unwrap();
            let tee = node_dir.join("tee");
            // The node gets its chip, never the platform's root keys.
            platform().issue_chip().unwrap().save(&tee).unwrap();
            let mut text = format!(
                "name = {:?}\ncoordinator = \"127.0.0.1:{port}\"\nserve_coordinator = {}\nstate_dir = {:?}\nthreads = 1\n\n[tee]\nsimulated = true\ntrust_simulated = true\nplatform_dir = {:?}\nmeasurements = [\"{}\"]\n\n",
                spec.name,
                i == 0,
                node_dir.display().to_string(),
                tee.display().to_string(),
                bastion_measurement_hex(),
            );
            for line in &spec.settings {
                text = format!("{line}\n{text}");
            }
            for (name, records, seed) in &spec.datasets {
                text += &format!(
                    "[[datasets]]\nname = {name:?}\nrecords = {records}\nseed = {seed}\nepsilon_budget = {budget:?}\ndelta = 1e-5\n\n"
                );
            }
            text += &format!("[job]\n{}\n\n[timeouts]\n{timeouts}\n", job_tables(job));
            std::fs::write(node_dir.join("node.toml"), text).unwrap();
            prepare(&node_dir);
            names.push(spec.name.clone());
        }
        let mut cluster = Cluster {
            dir,
            names,
            children: Vec::new(),
        };
        for i in 0..cluster.names.len() {
            let child = cluster.spawn(i);
            cluster.children.push(Some(child));
        }
        cluster
    }

    fn spawn(&self, i: usize) -> Child {
        let node_dir = self.dir.join(&self.names[i]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("node.log"))
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_bastion"))
            .arg("node")
            .arg("--config")
            .arg(node_dir.join("node.toml"))
            .env("RUST_LOG", "info,bastion_actors::supervisor=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting bastion node")
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&self.names[i])
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("node.log")).unwrap_or_default()
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for (i, name) in self.names.iter().enumerate() {
            let log = self.log(i);
            let lines: Vec<&str> = log.lines().collect();
            out += &format!("---- {name} ----\n");
            for l in &lines[lines.len().saturating_sub(25)..] {
                out += l;
                out += "\n";
            }
        }
        out
    }

    /// SIGKILL node `i` (no chance to flush or say goodbye).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again with the same config and state directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} is still running");
        let child = self.spawn(i);
        self.children[i] = Some(child);
    }

    /// Polls until `f` holds, failing with the logs after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.logs_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Steps the Supervisor has completed (from node 0's log).
    pub fn steps_done(&self) -> usize {
        self.log(0).matches("step done").count()
    }

    /// Waits for node 0 (the coordinator) to exit; returns its success and its report.
    pub fn wait_coordinator(&mut self, timeout: Duration) -> (bool, Option<serde_json::Value>) {
        let start = Instant::now();
        loop {
            let child = self.children[0].as_mut().expect("coordinator running");
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                use std::io::Read;
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                self.children[0] = None;
                let report = out
                    .lines()
                    .last()
                    .and_then(|l| serde_json::from_str(l).ok());
                return (status.success(), report);
            }
            assert!(
                start.elapsed() < timeout,
                "the job did not end within {timeout:?}\n{}",
                self.logs_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for every other node to exit (they leave on the coordinator's Finish).
    pub fn wait_members(&mut self, timeout: Duration) -> Vec<bool> {
        let start = Instant::now();
        let mut ok = Vec::new();
        for i in 1..self.children.len() {
            let Some(child) = self.children[i].as_mut() else {
                ok.push(false);
                continue;
            };
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    ok.push(status.success());
                    break;
                }
                assert!(
                    start.elapsed() < timeout,
                    "node {i} did not exit\n{}",
                    self.logs_tail()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            self.children[i] = None;
        }
        ok
    }

    /// Ledger step numbers that any node logged as released to the ring.
    pub fn released_ledger_steps(&self) -> std::collections::BTreeSet<u64> {
        let mut steps = std::collections::BTreeSet::new();
        for i in 0..self.names.len() {
            for line in self.log(i).lines() {
                if line.contains("releasing the noisy share") {
                    if let Some(v) = field(line, "ledger_step=") {
                        steps.insert(v);
                    }
                }
            }
        }
        steps
    }

    /// Step numbers recorded in the coordinator's privacy ledger (it must open cleanly).
    pub fn ledger_steps(&self) -> std::collections::BTreeSet<u64> {
        let path = self.node_dir(0).join("privacy.ledger");
        let log = bastion_ledger::read_log(&path)
            .unwrap_or_else(|e| panic!("ledger {} unreadable: {e}", path.display()));
        log.records
            .iter()
            .filter_map(|r| match &r.record {
                bastion_ledger::Record::Step(s) => Some(s.step),
                _ => None,
            })
            .collect()
    }

    pub fn final_weights(&self, i: usize) -> Vec<(String, Vec<f32>)> {
        let bytes =
            std::fs::read(self.node_dir(i).join("release").join("model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut out: Vec<(String, Vec<f32>)> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let values = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                (name, values)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The integer after `key` in a log line (`key=123`).
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Measurement: what the nodes' allow-lists hold, and nodes running another executable
// (runtime/tests/measurement.rs).

/// Hex measurement of the `bastion` binary under test: every node's `[tee] measurements`.
pub fn bastion_measurement_hex() -> &'static str {
    static HEX: OnceLock<String> = OnceLock::new();
    HEX.get_or_init(|| {
        let m = bastion_attestation::sim::binary_measurement(env!("CARGO_BIN_EXE_bastion"))
            .expect("measuring the bastion binary");
        m.iter().map(|b| format!("{b:02x}")).collect()
    })
}

impl Cluster {
    /// Starts node `i` again (it must be stopped) from another executable, with the same
    /// config and state directory.
    pub fn restart_with_exe(&mut self, i: usize, exe: &Path) {
        assert!(self.children[i].is_none(), "node {i} is still running");
        let node_dir = self.node_dir(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("node.log"))
            .unwrap();
        let child = Command::new(exe)
            .arg("node")
            .arg("--config")
            .arg(node_dir.join("node.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        self.children[i] = Some(child);
    }
}

/// The tests' short job (`key = value` lines: nodes, image_size, batch_size, epochs,
/// max_steps, checkpoint_every, on_node_loss, epsilon, test_records and the test switch) as
/// job.toml's tables under `[job]`: a ResNet on generated tiles, evaluated on generated tiles.
pub fn job_tables(short: &str) -> String {
    let (mut top, mut model, mut privacy, mut schedule, mut eval) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    for line in short.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let key = line.split('=').next().unwrap().trim();
        let target = match key {
            "image_size" | "depth" => &mut model,
            "epsilon" | "delta" | "max_grad_norm" => &mut privacy,
            "nodes" | "batch_size" | "epochs" | "max_steps" | "checkpoint_every"
            | "on_node_loss" | "retry_reserve" | "steps" => &mut schedule,
            "test_records" => {
                eval += &line.replace("test_records", "records");
                eval += "\n";
                continue;
            }
            _ => &mut top,
        };
        *target += line;
        *target += "\n";
    }
    let mut out = top;
    out += &format!("[job.model]\nkind = \"resnet\"\n{model}\n");
    if !privacy.is_empty() {
        out += &format!("[job.privacy]\n{privacy}\n");
    }
    out += &format!("[job.schedule]\n{schedule}\n");
    out += &format!("[job.eval]\nformat = \"generated\"\n{eval}\n");
    out
}
