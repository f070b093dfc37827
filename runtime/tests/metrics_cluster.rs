//! A real two-node cluster (`bastion cluster up`, real processes on loopback, simulated TEE)
//! scraped by a real Prometheus server, with `promtool check metrics` on each node's live
//! exposition and every Grafana dashboard query evaluated against what Prometheus stored.
//!
//! What the metrics must say is checked against independent references: the job report the
//! coordinator prints, the privacy accountant library (epsilon for `q`, `sigma` and a step
//! count), and the cluster's shape (two nodes, ranks 0 and 1, one refused impostor).
//!
//! Needs `prometheus` and `promtool` on PATH (`scripts/prometheus.sh`, run by `./test.sh`);
//! without them the test fails and says so.

#[path = "../../metrics/tests/support/dashboard.rs"]
mod dashboard;
#[path = "../../metrics/tests/support/prometheus.rs"]
mod prometheus;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform};
use bastion_attestation::tls::AttestedEndpoint;
use bastion_attestation::{Policy, TrustAnchors, Verifier};
use bastion_dp::accountant::{self, AccountantKind};
use dashboard::{
    dashboard_queries, interpolate, label_values_query, legend_labels, load_dashboard,
};
use prometheus::{http_get, promtool_check_metrics, Labels, Prometheus};
use serde_json::Value;

const JOB: &str = "bastion-cluster";
const NODES: [&str; 2] = ["node-0", "node-1"];
const DATASETS: [&str; 2] = ["hospital-a", "hospital-b"];
const MAX_STEPS: u64 = 12;
/// `bastion cluster up`'s default `--epsilon`: every party's budget.
const BUDGET: f64 = 8.0;
/// The delta `bastion cluster up` writes into every dataset's config.
const DELTA: f64 = 1e-5;
/// The reason the coordinator must give for the impostor this test sends.
const IMPOSTOR_REASON: &str = "policy.measurement";

/// Generous: a loaded 2-core CI machine builds two ResNets and trains next to the compiler.
const START_TIMEOUT: Duration = Duration::from_secs(180);
const DATA_TIMEOUT: Duration = Duration::from_secs(180);
const FINISH_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// The cluster, as a guard that leaves no process behind.

/// `bastion cluster up` in a process group of its own, so that dropping the guard kills its
/// node processes too, even when the test panics. On a panic it prints the tail of every log.
struct Cluster {
    child: Child,
    /// The process group: `bastion cluster up`'s pid.
    pgid: u32,
    root: PathBuf,
    base_port: u16,
    stdout: Option<std::thread::JoinHandle<String>>,
    /// `cluster up` has been waited for, and its group found empty or killed: the pgid may
    /// now belong to someone else, so `Drop` must not signal it.
    reaped: bool,
}

impl Cluster {
    fn dir(&self) -> PathBuf {
        self.root.join("cluster")
    }

    fn metrics_addr(&self, node: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + 1 + node as u16))
    }

    fn coordinator_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port))
    }

    fn start(root: PathBuf, base_port: u16, reserved: Vec<TcpListener>) -> Cluster {
        let stderr = std::fs::File::create(root.join("cluster-up.stderr")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_bastion"));
        command
            .args(["cluster", "up", "--nodes", "2", "--fresh", "--dir"])
            .arg(root.join("cluster"))
            .args([
                "--records",
                "48",
                "--image-size",
                "16",
                "--batch-size",
                "16",
                "--max-steps",
                &MAX_STEPS.to_string(),
                "--checkpoint-every",
                "4",
                "--threads",
                "1",
                "--base-port",
                &base_port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        // Released at the last moment so that nothing else takes the ports meanwhile.
        drop(reserved);
        let mut child = command.spawn().expect("start bastion cluster up");
        let pgid = child.id();
        let mut out = child.stdout.take().expect("stdout is piped");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        Cluster {
            child,
            pgid,
            root,
            base_port,
            stdout: Some(stdout),
            reaped: false,
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics (with the logs, from `Drop`) if `bastion cluster up` has exited.
    fn assert_running(&mut self, waiting_for: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("bastion cluster up exited ({status}) while waiting for {waiting_for}");
        }
    }

    /// Polls `f` until it returns `Ok`, while the cluster keeps running.
    fn poll<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let last = f();
            match last {
                Ok(v) => return v,
                Err(e) if Instant::now() > deadline => {
                    panic!("{what}: not after {timeout:?}; last: {e}")
                }
                Err(_) => {}
            }
            self.assert_running(what);
            std::thread::sleep(POLL);
        }
    }

    /// Waits for `bastion cluster up` to end and then for its node processes (it stops them
    /// itself); returns its status, its stdout, and whether node processes outlived it (they
    /// are killed then).
    fn wait(&mut self, timeout: Duration) -> (std::process::ExitStatus, String, bool) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not finish within {timeout:?}"
            );
            std::thread::sleep(POLL);
        };
        let stdout = self.stdout.take().map(|h| h.join().unwrap_or_default());
        // `cluster up` gives its members 10 s to leave before it stops them.
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.group_alive() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let leaked = self.group_alive();
        if leaked {
            self.kill_group();
        }
        self.reaped = true;
        (status, stdout.unwrap_or_default(), leaked)
    }

    fn kill_group(&mut self) {
        // The whole group: `cluster up` and both node processes. Without `kill` on PATH the
        // children would be left behind, so say so loudly.
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status();
        if killed.is_err() {
            eprintln!(
                "cannot run `kill` to stop process group {}: node processes may be left",
                self.pgid
            );
            let _ = self.child.kill();
        }
    }

    /// Whether any process of the cluster's group is still alive (zombies included).
    fn group_alive(&self) -> bool {
        Command::new("kill")
            .args(["-0", "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        let mut files = vec![self.root.join("cluster-up.stderr")];
        files.extend((0..NODES.len()).map(|i| self.dir().join(format!("node-{i}/node.log"))));
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| format!("<{e}>"));
            let _ = writeln!(
                out,
                "----- tail of {}:\n{}",
                file.display(),
                tail(&text, 40)
            );
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.reaped {
            // Until reaped, `cluster up` (running or a zombie) keeps the group id its own.
            self.kill_group();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
            eprintln!("cluster files kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A base port `P` with `P..=P+3` free, held by the returned listeners (best effort: another
/// process may still take one after they are released).
fn reserve_ports() -> (u16, Vec<TcpListener>) {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        if base > u16::MAX - 4 {
            continue;
        }
        let mut held = vec![first];
        for port in base + 1..=base + 3 {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => held.push(l),
                Err(_) => break,
            }
        }
        if held.len() == 4 {
            return (base, held);
        }
    }
    panic!("no four consecutive free loopback ports");
}

fn temp_root() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "bastion-metrics-cluster-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Reading what the nodes expose and what Prometheus stored.

/// One sample of a text exposition: metric name, labels, value.
type Sample = (String, Labels, f64);

/// Parses the text exposition format as the `prometheus` crate writes it (no timestamps).
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let bad = || format!("bad exposition line {line:?}");
        let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| bad())?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Labels::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or_else(bad)?;
                (name, parse_labels(body).ok_or_else(bad)?)
            }
        };
        out.push((name.to_owned(), labels, value));
    }
    Ok(out)
}

/// `a="x",b="y"` with `\"`, `\\` and `\n` escapes.
fn parse_labels(mut body: &str) -> Option<Labels> {
    let mut labels = Labels::new();
    while !body.is_empty() {
        let (name, rest) = body.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        body = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    Some(labels)
}

/// The value of `name` in `samples` whose labels include `want`.
fn value_of(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

fn fetch_metrics(addr: SocketAddr) -> Result<String, String> {
    match http_get(addr, "/metrics")? {
        (200, text) => Ok(text),
        (status, body) => Err(format!("GET http://{addr}/metrics: HTTP {status}: {body}")),
    }
}

/// Prometheus's clock, read through the server so the same clock pins every query.
fn prometheus_now(prom: &Prometheus) -> Result<f64, String> {
    let r = prom.query("time()")?;
    r.first()
        .map(|(_, v)| *v)
        .ok_or_else(|| "time() returned nothing".into())
}

/// `{node: value}` of a per-node query; an error if a series has no `node` label or a node
/// appears twice.
fn by_node(result: &[(Labels, f64)]) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    for (labels, v) in result {
        let node = labels
            .get("node")
            .ok_or_else(|| format!("series without node label: {labels:?}"))?;
        if out.insert(node.clone(), *v).is_some() {
            return Err(format!("node {node} twice in {result:?}"));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The dashboard (the same reading as metrics/tests/prometheus.rs).

/// Whether a panel query may legitimately have no data for a node selection. Only the
/// coordinator accepts connections from strangers, so only it can refuse the impostor: the
/// refusal queries have data for node-0 and for all nodes, and none for node-1 alone (the
/// metrics crate's own test gives both fake nodes refusals and so requires data everywhere).
fn may_be_empty(expr: &str, node: &str) -> bool {
    node == "node-1" && expr.contains("bastion_attestation_failures_total")
}

/// Every dashboard query at `time`, for all nodes and for each node: the problems found.
fn dashboard_problems(prom: &Prometheus, dashboard: &Value, time: f64) -> Vec<String> {
    let mut problems = Vec::new();
    for node in [".*", "node-0", "node-1"] {
        let vars = BTreeMap::from([
            ("job", JOB),
            ("node", node),
            ("__rate_interval", "1m"),
            ("__interval", "15s"),
            ("__range", "5m"),
        ]);
        for (title, ref_id, expr, legend) in dashboard_queries(dashboard) {
            let what = format!("panel {title:?} target {ref_id} (node={node})");
            let result = match interpolate(&expr, &vars).and_then(|q| prom.query_at(&q, Some(time)))
            {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{what}: {e}"));
                    continue;
                }
            };
            if result.is_empty() {
                if !may_be_empty(&expr, node) {
                    problems.push(format!("{what}: no data"));
                }
                continue;
            }
            if let Some((labels, v)) = result.iter().find(|(_, v)| !v.is_finite()) {
                problems.push(format!("{what}: {v} for {labels:?}"));
            }
            for label in legend_labels(&legend) {
                if let Some((labels, _)) = result.iter().find(|(l, _)| !l.contains_key(label)) {
                    problems.push(format!(
                        "{what}: legend {legend:?} names {label}, missing from {labels:?}"
                    ));
                }
            }
            if node != ".*" {
                if let Some((labels, _)) = result
                    .iter()
                    .find(|(l, _)| l.get("node").is_some_and(|n| n != node))
                {
                    problems.push(format!("{what}: node filter let through {labels:?}"));
                }
            }
        }
    }
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    for var in variables.iter().filter(|v| v["type"] == "query") {
        let name = var["name"].as_str().unwrap_or_default();
        let query = var["query"]
            .as_str()
            .or_else(|| var["query"]["query"].as_str())
            .unwrap_or_default();
        let want: BTreeSet<String> = match name {
            "job" => [JOB.to_owned()].into(),
            "node" => NODES.iter().map(|n| n.to_string()).collect(),
            other => {
                problems.push(format!("variable {other}: not known to this test"));
                continue;
            }
        };
        let got = label_values_query(query).and_then(|(q, label)| {
            let q = interpolate(&q, &BTreeMap::from([("job", JOB)]))?;
            Ok(prom
                .query_at(&q, Some(time))?
                .into_iter()
                .filter_map(|(l, _)| l.get(&label).cloned())
                .collect::<BTreeSet<_>>())
        });
        if got.as_ref() != Ok(&want) {
            problems.push(format!("variable {name} ({query}): {got:?}, want {want:?}"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The impostor: a guest with another image on the same (simulated) AMD platform.

/// Connects to the coordinator as a guest whose launch measurement is not on the policy:
/// the coordinator must refuse it with `policy.measurement`. `Ok(error)` once a TLS session
/// was attempted and refused; `Err` while the coordinator is not listening yet.
fn impostor_attempt(platform_dir: &Path, coordinator: SocketAddr) -> Result<String, String> {
    let platform = SimulatedPlatform::load(platform_dir).map_err(|e| e.to_string())?;
    let tee = platform
        .with_new_chip()
        .launch(LaunchConfig::with_measurement([0x66; 48]))
        .map_err(|e| e.to_string())?;
    let trust = TrustAnchors::simulated(platform.ark_der(), platform.ask_der())
        .map_err(|e| e.to_string())?;
    let verifier = Verifier::new(
        Policy::new(vec![LaunchConfig::default_measurement()]),
        trust,
    );
    let endpoint = AttestedEndpoint::new(tee, verifier).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(coordinator)
            .await
            .map_err(|e| format!("connecting to {coordinator}: {e}"))?;
        match tokio::time::timeout(Duration::from_secs(60), endpoint.connect(tcp)).await {
            Ok(Ok(_)) => panic!("the coordinator admitted a guest with a foreign measurement"),
            Ok(Err(e)) => Ok(e.to_string()),
            Err(_) => panic!("the coordinator neither admitted nor refused the impostor"),
        }
    })
}

// ---------------------------------------------------------------------------------------------

fn epsilon(q: f64, sigma: f64, steps: u64) -> f64 {
    let mut a = accountant::create(AccountantKind::Pld);
    a.compose(q, sigma, steps).unwrap();
    a.epsilon(DELTA).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn real_prometheus_scrapes_a_live_two_node_cluster() {
    let started = Instant::now();
    // Checks that do not stop the test: all are reported together with the logs at the end.
    let mut failures: Vec<String> = Vec::new();

    let (base_port, reserved) = reserve_ports();
    let metrics_addrs: Vec<SocketAddr> = (0..NODES.len())
        .map(|i| SocketAddr::from(([127, 0, 0, 1], base_port + 1 + i as u16)))
        .collect();
    // Prometheus first: it scrapes from the nodes' first second on, so even a fast run leaves
    // enough samples for rates and quantiles. Its scrapes fail until the nodes listen.
    let prom = Prometheus::start(JOB, &metrics_addrs).unwrap_or_else(|e| panic!("{e}"));
    let prom_started = prometheus_now(&prom).unwrap_or_else(|e| panic!("{e}"));
    let mut cluster = Cluster::start(temp_root(), base_port, reserved);
    assert_eq!(cluster.metrics_addr(1), metrics_addrs[1]);

    // Both metrics endpoints answer.
    for addr in &metrics_addrs {
        cluster.poll(&format!("metrics on {addr}"), START_TIMEOUT, || {
            fetch_metrics(*addr).map(drop)
        });
    }

    // A stranger with a foreign image knocks while the cluster forms and trains.
    let platform_dir = cluster.dir().join("platform");
    let coordinator = cluster.coordinator_addr();
    let refusal = cluster.poll("the impostor's refusal", START_TIMEOUT, || {
        impostor_attempt(&platform_dir, coordinator)
    });
    eprintln!("impostor refused: {refusal}");

    // Live expositions, once a few steps are done everywhere: promtool's lint, and the
    // counters against each other within one node.
    let mut families = BTreeSet::new();
    let texts = cluster.poll("three steps on both nodes", DATA_TIMEOUT, || {
        let texts = metrics_addrs
            .iter()
            .map(|a| fetch_metrics(*a))
            .collect::<Result<Vec<_>, _>>()?;
        for (text, node) in texts.iter().zip(NODES) {
            let samples = parse_exposition(text)?;
            let reduces = value_of(&samples, "bastion_allreduce_duration_seconds_count", &[])
                .unwrap_or_default();
            if reduces < 3.0 {
                return Err(format!("{node}: {reduces} all-reduces"));
            }
        }
        Ok(texts)
    });
    for (text, node) in texts.iter().zip(NODES) {
        if let Err(e) = promtool_check_metrics(text) {
            failures.push(format!("{node}: {e}\n{text}"));
        }
        families.extend(text.lines().filter_map(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|r| r.split(' ').next())
                .map(str::to_owned)
        }));
        let samples = parse_exposition(text).unwrap();
        let get = |name: &str| value_of(&samples, name, &[]).unwrap_or(f64::NAN);
        let steps = get("bastion_steps_total");
        let reduces = get("bastion_allreduce_duration_seconds_count");
        // A node's trainer records its all-reduce, then its step: the step counter is the
        // all-reduce count or one less (mid-step). Anything else counts steps twice.
        if !(reduces - 1.0..=reduces).contains(&steps) {
            failures.push(format!(
                "{node}: bastion_steps_total {steps} but {reduces} all-reduces: each step of \
                 this node must be counted once (was the Supervisor observing the group's step \
                 on the coordinator's metrics too)"
            ));
        }
        // One observation per step; a scrape may fall between the two updates.
        let step_count = get("bastion_step_duration_seconds_count");
        if (step_count - steps).abs() > 1.0 {
            failures.push(format!(
                "{node}: {step_count} step durations but {steps} steps"
            ));
        }
        if get("bastion_allreduce_bytes_total") <= 0.0 {
            failures.push(format!("{node}: no all-reduce bytes"));
        }
        // Nothing un-noised about the data: no sample sizes, no losses.
        if text.contains("loss") || text.contains("samples") {
            failures.push(format!(
                "{node}: the exposition describes the data:\n{text}"
            ));
        }
    }

    // Prometheus: wait until every dashboard query has data at one instant, then check the
    // values at that instant. Queries name the instant, so they read the same stored samples
    // whatever the cluster does meanwhile.
    let dashboard = load_dashboard();
    let complete_at = |at: f64| -> Result<(), String> {
        let up = prom.query_at(&format!("up{{job=\"{JOB}\"}} == 1"), Some(at))?;
        if up.len() != NODES.len() {
            return Err(format!("targets up: {up:?}"));
        }
        if prom
            .query_at("bastion_attestation_failures_total", Some(at))?
            .is_empty()
        {
            return Err("the impostor's refusal is not scraped yet".into());
        }
        let problems = dashboard_problems(&prom, &dashboard, at);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    };
    let deadline = Instant::now() + DATA_TIMEOUT;
    let at = loop {
        let running = cluster.running();
        let now = prometheus_now(&prom).unwrap_or_else(|e| panic!("{e}"));
        // A little back, so that no scrape in flight can still add a sample before it.
        let last = match complete_at(now - 1.0) {
            Ok(()) => break now - 1.0,
            Err(e) => e,
        };
        if !running {
            // A fast machine may finish before a live check saw everything at once: any
            // instant of the run will do, the latest best (most steps).
            let instants = (1..).map(|i| now - 0.5 * f64::from(i));
            match instants
                .take_while(|t| *t > prom_started)
                .find(|t| complete_at(*t).is_ok())
            {
                Some(t) => break t,
                None => panic!(
                    "the job ended without an instant at which every query had data; \
                     last live check: {last}"
                ),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no instant with data for every query after {DATA_TIMEOUT:?}; last: {last}"
        );
        std::thread::sleep(POLL);
    };
    let checked_at = started.elapsed();
    let q = |expr: &str| {
        prom.query_at(expr, Some(at))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let per_node = |expr: &str| by_node(&q(expr)).unwrap_or_else(|e| panic!("{expr}: {e}"));
    for (expr, want) in [
        ("bastion_group_size", [2.0, 2.0]),
        ("bastion_simulated_tee", [1.0, 1.0]),
        ("bastion_rank", [0.0, 1.0]),
        ("bastion_restarts_total", [0.0, 0.0]),
        ("bastion_steps_aborted_total", [0.0, 0.0]),
    ] {
        let got = per_node(expr);
        let want: BTreeMap<String, f64> = NODES.iter().map(|n| n.to_string()).zip(want).collect();
        if got != want {
            failures.push(format!("{expr}: {got:?}, want {want:?}"));
        }
    }
    let up: BTreeMap<String, f64> = q(&format!("up{{job=\"{JOB}\"}}"))
        .into_iter()
        .map(|(l, v)| (l["instance"].clone(), v))
        .collect();
    let want_up: BTreeMap<String, f64> =
        metrics_addrs.iter().map(|a| (a.to_string(), 1.0)).collect();
    if up != want_up {
        failures.push(format!("up: {up:?}, want {want_up:?}"));
    }
    let roles: BTreeSet<(String, String)> = q("bastion_steps_total")
        .into_iter()
        .map(|(l, _)| (l["node"].clone(), l["role"].clone()))
        .collect();
    let want_roles = BTreeSet::from([
        ("node-0".to_owned(), "coordinator".to_owned()),
        ("node-1".to_owned(), "trainer".to_owned()),
    ]);
    if roles != want_roles {
        failures.push(format!("roles: {roles:?}, want {want_roles:?}"));
    }
    // Prometheus's view at `at` may lag the expositions fetched above by a few steps.
    for (expr, at_least) in [
        ("bastion_steps_total", 1.0),
        ("bastion_step_duration_seconds_count", 1.0),
        ("bastion_allreduce_bytes_total", 1.0),
        ("bastion_allreduce_duration_seconds_count", 1.0),
        ("bastion_last_step_timestamp_seconds", 1.6e9),
    ] {
        let got = per_node(expr);
        if got.len() != 2 || got.values().any(|v| v.is_nan() || *v < at_least) {
            failures.push(format!("{expr}: {got:?}, want >= {at_least} on both nodes"));
        }
    }
    // Both nodes send the same share of the ring's traffic (to within one element per chunk).
    let bytes =
        per_node("bastion_allreduce_bytes_total / bastion_allreduce_duration_seconds_count");
    if let (Some(a), Some(b)) = (bytes.get("node-0"), bytes.get("node-1")) {
        if (a - b).abs() > 1e-3 * a.max(*b) {
            failures.push(format!("all-reduce bytes per step differ: {bytes:?}"));
        }
    }
    // Attestation: the coordinator verified both members and refused the impostor; every
    // member verified the coordinator it joined (its only way in).
    let verified = per_node("bastion_attestations_total");
    let refused: Vec<(String, String, f64)> = q("bastion_attestation_failures_total")
        .into_iter()
        .map(|(l, v)| (l["node"].clone(), l["reason"].clone(), v))
        .collect();
    if refused != [("node-0".to_owned(), IMPOSTOR_REASON.to_owned(), 1.0)] {
        failures.push(format!(
            "attestation failures {refused:?}, want one {IMPOSTOR_REASON} on node-0"
        ));
    }
    if verified.get("node-0").copied().unwrap_or_default() < 3.0 {
        failures.push(format!(
            "node-0 verified {verified:?}: want both members and the impostor (>= 3)"
        ));
    }
    if verified.get("node-1").copied().unwrap_or_default() < 1.0 {
        failures.push(format!(
            "node-1 verified {verified:?}: want >= 1, it verified the coordinator's report when \
             it joined (was actors/src/link.rs serve_member not counting its attestations)"
        ));
    }
    // Privacy: the coordinator's ledger, per dataset, for every party's dataset.
    let spent: BTreeMap<String, f64> = q(r#"bastion_epsilon_spent{node="node-0"}"#)
        .into_iter()
        .map(|(l, v)| (l["dataset"].clone(), v))
        .collect();
    let budgets: BTreeMap<String, f64> = q(r#"bastion_epsilon_budget{node="node-0"}"#)
        .into_iter()
        .map(|(l, v)| (l["dataset"].clone(), v))
        .collect();
    let datasets: BTreeSet<String> = DATASETS.iter().map(|d| d.to_string()).collect();
    if spent.keys().cloned().collect::<BTreeSet<_>>() != datasets
        || spent.values().any(|e| !(*e > 0.0 && *e <= BUDGET))
    {
        failures.push(format!(
            "epsilon spent {spent:?}: want both datasets in (0, {BUDGET}]"
        ));
    }
    if budgets != datasets.iter().map(|d| (d.clone(), BUDGET)).collect() {
        failures.push(format!("epsilon budgets {budgets:?}, want {BUDGET} each"));
    }

    // The job ends by itself, reports success, and takes its node processes with it.
    let (status, stdout, leaked) = cluster.wait(FINISH_TIMEOUT);
    let finished = started.elapsed();
    if leaked {
        failures.push("node processes still alive 15 s after bastion cluster up exited".into());
    }
    assert!(
        status.success(),
        "bastion cluster up: {status}; stdout {stdout:?}"
    );
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report on stdout: {stdout:?}"));
    if report["status"] != "completed"
        || report["simulated_tee"] != true
        || report["steps"] != MAX_STEPS
        || report["reformations"] != 0
        || report["nodes"] != serde_json::json!(NODES)
        || report["lost_nodes"] != serde_json::json!([])
    {
        failures.push(format!("job report {report}"));
    }
    // The epsilon the gauges showed is the accountant's for some prefix of the job, and the
    // report's is the accountant's for all of it.
    let (q_rate, sigma) = (
        report["q"].as_f64().unwrap_or(f64::NAN),
        report["sigma"].as_f64().unwrap_or(f64::NAN),
    );
    let steps = report["steps"].as_u64().unwrap_or(0);
    let final_eps = epsilon(q_rate, sigma, steps);
    for (dataset, eps) in &spent {
        if !(1..=steps).any(|k| close(*eps, epsilon(q_rate, sigma, k))) {
            failures.push(format!(
                "{dataset}: epsilon gauge {eps} is not the accountant's after any of 1..={steps} \
                 steps at q={q_rate}, sigma={sigma}"
            ));
        }
    }
    let reported: BTreeMap<String, (f64, f64)> = report["privacy"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["dataset"].as_str()?.to_owned(),
                (e["epsilon"].as_f64()?, e["epsilon_budget"].as_f64()?),
            ))
        })
        .collect();
    if reported.keys().cloned().collect::<BTreeSet<_>>() != datasets
        || reported
            .values()
            .any(|(e, b)| !close(*e, final_eps) || *b != BUDGET)
    {
        failures.push(format!(
            "report privacy {reported:?}: want epsilon {final_eps} (accountant) of {BUDGET} each"
        ));
    }
    // And Prometheus notices the nodes are gone.
    let down = prom.wait_for(&format!("up{{job=\"{JOB}\"}}"), DATA_TIMEOUT, |r| {
        r.len() == 2 && r.iter().all(|(_, v)| *v == 0.0)
    });
    if let Err(e) = down {
        failures.push(format!("after the job: {e}"));
    }

    // Every family a node exposes is on the dashboard.
    let exprs: String = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, _, e, _)| e)
        .collect::<Vec<_>>()
        .join("\n");
    let unused: Vec<_> = families
        .iter()
        .filter(|f| !exprs.contains(f.as_str()))
        .collect();
    if !unused.is_empty() || families.len() < 14 {
        failures.push(format!("families {families:?}; on no panel: {unused:?}"));
    }

    let steps_at_ready = q(r#"bastion_allreduce_duration_seconds_count{node="node-1"}"#);
    eprintln!(
        "metrics_cluster: Prometheus checked after {checked_at:.1?} at an instant {:.1} s into \
         the run (step {} of {steps} scraped); the job ended after {finished:.1?}; all done in \
         {:.1?}; report {report}",
        at - prom_started,
        steps_at_ready.first().map_or(f64::NAN, |(_, v)| *v),
        started.elapsed()
    );
    if !failures.is_empty() {
        panic!(
            "{} problems (node logs follow):\n{}\n----- tail of the prometheus log:\n{}",
            failures.len(),
            failures.join("\n"),
            tail(&prom.log(), 10),
        );
    }
}
