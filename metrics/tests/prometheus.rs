//! Two nodes' metrics endpoints scraped by a real Prometheus, checked with promtool, and every
//! query of the Grafana dashboard run against the live server.
//!
//! Needs `prometheus` and `promtool` on PATH (`scripts/prometheus.sh`); without them the tests
//! fail and say so.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bastion_metrics::{serve_with_shutdown, NodeMetrics};
use support::dashboard::{
    all_panels, dashboard_path, dashboard_queries, interpolate, label_values_query, legend_labels,
    load_dashboard,
};
use support::prometheus::{http_get, promtool_check_metrics, Labels, Prometheus};

const JOB: &str = "bastion";
/// How long the live checks wait for Prometheus to have enough samples (two scrapes suffice).
const DATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Two nodes with the values a short training run would leave, updated in the background so
/// rates and quantiles have fresh increases at every scrape.
struct Cluster {
    /// Runs the servers and the trainer on its own threads; held only to keep them alive.
    _runtime: tokio::runtime::Runtime,
    nodes: Vec<(NodeMetrics, SocketAddr)>,
    stop: Arc<AtomicBool>,
}

impl Cluster {
    fn start() -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut nodes = Vec::new();
        for (rank, (name, role)) in [("node-0", "supervisor"), ("node-1", "worker")]
            .into_iter()
            .enumerate()
        {
            let metrics = NodeMetrics::new(name, rank, role).unwrap();
            metrics.set_simulated_tee(true);
            metrics.set_group_size(2);
            metrics.attestation_ok();
            metrics.set_privacy("hospital-a", 0.0, 8.0);
            metrics.set_privacy("hospital-b", 0.0, 3.0);
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let stopped = stop.clone();
            runtime.spawn(serve_with_shutdown(metrics.clone(), listener, async move {
                while !stopped.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
            nodes.push((metrics, addr));
        }
        nodes[0].0.attestation_failed("policy.measurement");
        nodes[1].0.attestation_failed("chain.expired");
        nodes[1].0.restart();
        nodes[1].0.step_aborted();

        let trainers: Vec<NodeMetrics> = nodes.iter().map(|(m, _)| m.clone()).collect();
        let stopped = stop.clone();
        runtime.spawn(async move {
            // Bounded: at most a minute of simulated steps even if the test never stops it.
            for step in 0u32..1200 {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                for (rank, m) in trainers.iter().enumerate() {
                    let jitter = u64::from((step * 7 + rank as u32 * 13) % 40);
                    m.observe_step(Duration::from_millis(120 + 5 * jitter));
                    m.observe_allreduce(4 << 20, Duration::from_millis(4 + jitter / 4));
                    let spent = 0.01 * f64::from(step);
                    m.set_privacy("hospital-a", spent, 8.0);
                    m.set_privacy("hospital-b", spent / 2.0, 3.0);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Cluster {
            _runtime: runtime,
            nodes,
            stop,
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|(_, a)| *a).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The servers and the trainer see this and end; dropping the runtime then reaps them.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn finite_and_nonempty(result: &[(Labels, f64)]) -> bool {
    !result.is_empty() && result.iter().all(|(_, v)| v.is_finite())
}

#[test]
fn real_prometheus_scrapes_both_nodes_and_every_dashboard_query_has_data() {
    let cluster = Cluster::start();
    let addrs = cluster.addrs();

    // Each node's exposition, fetched over its HTTP endpoint, passes promtool's lint.
    let mut families = BTreeSet::new();
    for (metrics, addr) in &cluster.nodes {
        let (status, text) = http_get(*addr, "/metrics").unwrap();
        assert_eq!(status, 200, "{}: {text}", metrics.node());
        promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", metrics.node()));
        families.extend(text.lines().filter_map(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|r| r.split(' ').next())
                .map(str::to_owned)
        }));
    }

    let prom = Prometheus::start(JOB, &addrs).unwrap_or_else(|e| panic!("{e}"));
    prom.wait_for_targets_up(DATA_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\nprometheus log:\n{}", prom.log()));
    let up = prom.query(&format!("up{{job=\"{JOB}\"}}")).unwrap();
    let up: BTreeMap<String, f64> = up
        .into_iter()
        .map(|(l, v)| (l["instance"].clone(), v))
        .collect();
    let want: BTreeMap<String, f64> = addrs.iter().map(|a| (a.to_string(), 1.0)).collect();
    assert_eq!(up, want, "up == 1 for both nodes and nothing else");

    // Labels and values survive the scrape end to end.
    let by_node = |expr: &str| -> BTreeMap<String, f64> {
        prom.wait_for(expr, DATA_TIMEOUT, |r| r.len() == 2)
            .unwrap()
            .into_iter()
            .map(|(l, v)| (l["node"].clone(), v))
            .collect()
    };
    let both = |v: f64| BTreeMap::from([("node-0".to_owned(), v), ("node-1".to_owned(), v)]);
    assert_eq!(by_node("bastion_simulated_tee"), both(1.0));
    assert_eq!(by_node("bastion_group_size"), both(2.0));
    assert_eq!(
        by_node("bastion_rank"),
        BTreeMap::from([("node-0".into(), 0.0), ("node-1".into(), 1.0)])
    );
    let refused = prom.query("bastion_attestation_failures_total").unwrap();
    let refused: BTreeSet<(String, String, String, String)> = refused
        .iter()
        .map(|(l, v)| {
            (
                l["node"].clone(),
                l["rank"].clone(),
                l["reason"].clone(),
                v.to_string(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        BTreeSet::from([
            (
                "node-0".into(),
                "0".into(),
                "policy.measurement".into(),
                "1".into()
            ),
            (
                "node-1".into(),
                "1".into(),
                "chain.expired".into(),
                "1".into()
            ),
        ])
    );

    // The dashboard: every variable query and every panel expression, against the live server,
    // once with all nodes selected and once with one.
    let dashboard = load_dashboard();
    let mut failures = Vec::new();
    for node in [".*", "node-1"] {
        let vars = BTreeMap::from([
            ("job", JOB),
            ("node", node),
            ("__rate_interval", "1m"),
            ("__interval", "15s"),
            ("__range", "5m"),
        ]);
        for (title, ref_id, expr, legend) in dashboard_queries(&dashboard) {
            let what = format!("panel {title:?} target {ref_id} (node={node})");
            let result = interpolate(&expr, &vars)
                .and_then(|q| prom.wait_for(&q, DATA_TIMEOUT, finite_and_nonempty));
            let result = match result {
                Ok(result) => result,
                Err(e) => {
                    failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            for label in legend_labels(&legend) {
                if let Some((labels, _)) = result.iter().find(|(l, _)| !l.contains_key(label)) {
                    failures.push(format!(
                        "{what}: legend {legend:?} names {label}, missing from series {labels:?}"
                    ));
                }
            }
            if node != ".*" {
                if let Some((labels, _)) = result
                    .iter()
                    .find(|(l, _)| l.get("node").is_some_and(|n| n != node))
                {
                    failures.push(format!("{what}: node filter let through {labels:?}"));
                }
            }
        }
    }
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    for var in variables.iter().filter(|v| v["type"] == "query") {
        let name = var["name"].as_str().unwrap();
        let query = var["query"]
            .as_str()
            .or_else(|| var["query"]["query"].as_str())
            .unwrap_or_default();
        let vars = BTreeMap::from([("job", JOB)]);
        let values = label_values_query(query)
            .and_then(|(q, label)| interpolate(&q, &vars).map(|q| (q, label)))
            .and_then(|(q, label)| {
                let result = prom.wait_for(&q, DATA_TIMEOUT, |r| !r.is_empty())?;
                Ok(result
                    .into_iter()
                    .filter_map(|(l, _)| l.get(&label).cloned())
                    .collect::<BTreeSet<_>>())
            });
        let want: BTreeSet<String> = match name {
            "job" => [JOB.to_owned()].into(),
            "node" => ["node-0".to_owned(), "node-1".to_owned()].into(),
            other => {
                failures.push(format!("variable {other}: not known to this test"));
                continue;
            }
        };
        match values {
            Ok(values) if values == want => {}
            other => failures.push(format!(
                "variable {name} ({query}): {other:?}, want {want:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard {} has {} broken queries:\n{}",
        dashboard_path().display(),
        failures.len(),
        failures.join("\n")
    );

    // Every metric a node exposes is on the dashboard somewhere.
    let exprs: String = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, _, expr, _)| expr)
        .collect::<Vec<_>>()
        .join("\n");
    let unused: Vec<_> = families
        .iter()
        .filter(|f| !exprs.contains(f.as_str()))
        .collect();
    assert!(
        unused.is_empty(),
        "metrics on no dashboard panel: {unused:?}"
    );
    assert!(families.len() >= 14, "{families:?}");
}

#[test]
fn promtool_lint_refuses_a_bad_exposition() {
    // The checker must be able to fail, or passing it proves nothing.
    let err = promtool_check_metrics("# TYPE requests counter\nrequests 1\n").unwrap_err();
    assert!(err.contains("_total"), "{err}");
    assert!(err.contains("help"), "{err}");
    promtool_check_metrics(
        "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total 1\n",
    )
    .unwrap();
}

#[test]
fn dashboard_is_well_formed() {
    let dashboard = load_dashboard();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let ds = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let mut ids = BTreeSet::new();
    let mut targets = 0;
    for panel in all_panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "untitled panel {panel}");
        assert!(
            ids.insert(panel["id"].as_u64().expect("numeric id")),
            "{title}: duplicate id"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && w > 0 && grid["h"].as_u64().unwrap() > 0,
            "{title}: {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let panel_targets = panel["targets"].as_array().expect("panel has targets");
        assert!(!panel_targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for t in panel_targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "{title}: duplicate refId"
            );
            assert!(
                !t["expr"].as_str().unwrap().trim().is_empty(),
                "{title}: empty expr"
            );
            targets += 1;
        }
    }
    assert!(targets >= 20, "{targets} targets");
    // Nothing un-noised about the data is shown: no loss, no sample sizes.
    let text = dashboard.to_string().to_lowercase();
    for leak in ["bastion_loss", "bastion_samples"] {
        assert!(!text.contains(leak), "the dashboard queries {leak}");
    }
    // The operator's questions each have a panel.
    let titles: Vec<String> = all_panels(&dashboard)
        .iter()
        .map(|p| p["title"].as_str().unwrap_or_default().to_lowercase())
        .collect();
    for needed in [
        "steps per second",
        "step duration",
        "epsilon",
        "all-reduce throughput",
        "all-reduce duration",
        "attestation failures",
        "group size",
        "restarts",
        "node up",
        "tee",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(needed)),
            "no panel about {needed}: {titles:?}"
        );
    }
}

#[test]
fn interpolation_and_label_values_helpers() {
    let vars = BTreeMap::from([
        ("job", "bastion"),
        ("__rate_interval", "1m"),
        ("__range", "5m"),
    ]);
    assert_eq!(
        interpolate(
            r#"rate(x{job=~"$job"}[$__rate_interval]) + y[${__range}]"#,
            &vars
        )
        .unwrap(),
        r#"rate(x{job=~"bastion"}[1m]) + y[5m]"#
    );
    assert!(interpolate("x{node=~\"$node\"}", &vars).is_err());
    assert_eq!(legend_labels("p95 {{node}} {{ le }}"), vec!["node", "le"]);
    assert_eq!(
        label_values_query(r#"label_values(up{job=~"$job"}, node)"#).unwrap(),
        (
            r#"group by (node) (up{job=~"$job"})"#.to_owned(),
            "node".to_owned()
        )
    );
}
