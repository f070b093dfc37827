//! Reads the text exposition back with a small independent parser and checks names, labels,
//! types, help text and values.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

type Labels = BTreeMap<String, String>;

#[derive(Debug, Default)]
struct Exposition {
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    samples: Vec<(String, Labels, f64)>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has text");
                out.help.insert(name.into(), help.into());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                out.types.insert(name.into(), kind.into());
            } else {
                out.samples.push(parse_sample(line));
            }
        }
        out
    }

    /// Every sample of `name` whose labels include all of `want`.
    fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<(&Labels, f64)> {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, labels, value)| (labels, *value))
            .collect()
    }

    /// The one value of `name` with exactly the node labels plus `extra`.
    fn value(&self, name: &str, extra: &[(&str, &str)]) -> f64 {
        let found = self.find(name, extra);
        assert_eq!(
            found.len(),
            1,
            "{name}{extra:?}: expected one series, got {found:?}"
        );
        found[0].1
    }
}

fn parse_sample(line: &str) -> (String, Labels, f64) {
    let mut labels = Labels::new();
    let (name, rest) = match line.find('{') {
        Some(open) => {
            let mut rest = &line[open + 1..];
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    break (line[..open].to_owned(), after);
                }
                let eq = rest.find("=\"").expect("label has =\"");
                let key = rest[..eq].to_owned();
                let mut value = String::new();
                let mut chars = rest[eq + 2..].char_indices();
                let end = loop {
                    match chars.next().expect("label value is closed") {
                        (_, '\\') => match chars.next().expect("escape is complete").1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (i, '"') => break eq + 2 + i + 1,
                        (_, c) => value.push(c),
                    }
                };
                labels.insert(key, value);
                rest = rest[end..].strip_prefix(',').unwrap_or(&rest[end..]);
            }
        }
        None => {
            let space = line.find(' ').expect("sample has a value");
            (line[..space].to_owned(), &line[space..])
        }
    };
    let value = match rest.trim() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|e| panic!("{line}: bad value: {e}")),
    };
    (name, labels, value)
}

fn node0() -> NodeMetrics {
    NodeMetrics::new("node-0", 0, "worker").unwrap()
}

const ALWAYS_PRESENT: &[(&str, &str)] = &[
    ("bastion_step_duration_seconds", "histogram"),
    ("bastion_steps_total", "counter"),
    ("bastion_steps_aborted_total", "counter"),
    ("bastion_last_step_timestamp_seconds", "gauge"),
    ("bastion_allreduce_bytes_total", "counter"),
    ("bastion_allreduce_duration_seconds", "histogram"),
    ("bastion_attestations_total", "counter"),
    ("bastion_group_size", "gauge"),
    ("bastion_restarts_total", "counter"),
    ("bastion_rank", "gauge"),
];

#[test]
fn fresh_node_exposes_every_unlabelled_metric_at_zero_with_help_and_type() {
    let text = node0().encode_text();
    let exp = Exposition::parse(&text);
    for (name, kind) in ALWAYS_PRESENT {
        assert_eq!(
            exp.types.get(*name).map(String::as_str),
            Some(*kind),
            "{name} TYPE"
        );
        assert!(!exp.help[*name].is_empty(), "{name} has help text");
        assert!(name.starts_with("bastion_"));
        assert_eq!(
            kind == &"counter",
            name.ends_with("_total"),
            "{name}: _total iff counter"
        );
    }
    assert_eq!(exp.value("bastion_steps_total", &[]), 0.0);
    assert_eq!(exp.value("bastion_step_duration_seconds_count", &[]), 0.0);
    // Labelled families appear only once used: no series claims a dataset or reason yet,
    // and the TEE kind is unknown rather than defaulted.
    for absent in [
        "bastion_epsilon_spent",
        "bastion_epsilon_budget",
        "bastion_attestation_failures_total",
        "bastion_simulated_tee",
    ] {
        assert!(
            !text.contains(absent),
            "{absent} present before use:\n{text}"
        );
    }
}

#[test]
fn every_series_carries_node_rank_and_role() {
    let m = NodeMetrics::new("node-7", 3, "supervisor").unwrap();
    m.set_privacy("d", 1.0, 2.0);
    m.attestation_failed("policy.measurement");
    m.set_simulated_tee(true);
    let exp = Exposition::parse(&m.encode_text());
    assert!(exp.samples.len() > 40, "histogram buckets included");
    for (name, labels, _) in &exp.samples {
        assert_eq!(
            labels.get("node").map(String::as_str),
            Some("node-7"),
            "{name}"
        );
        assert_eq!(labels.get("rank").map(String::as_str), Some("3"), "{name}");
        assert_eq!(
            labels.get("role").map(String::as_str),
            Some("supervisor"),
            "{name}"
        );
    }
}

#[test]
fn steps_update_counters_timestamp_and_histogram_buckets() {
    let m = node0();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    m.observe_step(Duration::from_millis(300));
    m.observe_step(Duration::from_millis(40));
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(exp.value("bastion_steps_total", &[]), 2.0);
    let stamp = exp.value("bastion_last_step_timestamp_seconds", &[]);
    assert!(
        (before..=after).contains(&stamp),
        "{before} <= {stamp} <= {after}"
    );
    let h = "bastion_step_duration_seconds";
    assert_eq!(exp.value(&format!("{h}_count"), &[]), 2.0);
    assert!((exp.value(&format!("{h}_sum"), &[]) - 0.34).abs() < 1e-12);
    // Buckets are cumulative: 0.04 s is in le=0.05 and up, 0.3 s in le=0.5 and up.
    for (le, want) in [
        ("0.025", 0.0),
        ("0.05", 1.0),
        ("0.25", 1.0),
        ("0.5", 2.0),
        ("+Inf", 2.0),
    ] {
        assert_eq!(
            exp.value(&format!("{h}_bucket"), &[("le", le)]),
            want,
            "le={le}"
        );
    }
}

#[test]
fn no_series_describes_the_data() {
    // Sample sizes and losses are un-noised statistics of private records: never exported.
    let m = node0();
    m.observe_step(Duration::from_millis(1));
    m.set_privacy("hospital-a", 1.0, 8.0);
    let text = m.encode_text();
    for name in ["loss", "samples", "batch", "records"] {
        assert!(
            !text
                .lines()
                .any(|l| !l.starts_with('#') && l.contains(name)),
            "a series mentions {name}:\n{text}"
        );
    }
}

#[test]
fn privacy_is_per_dataset_and_overwritten() {
    let m = node0();
    m.set_privacy("hospital-a", 0.5, 8.0);
    m.set_privacy("hospital-b", 0.25, 3.0);
    m.set_privacy("hospital-a", 1.75, 8.0);
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(
        exp.value("bastion_epsilon_spent", &[("dataset", "hospital-a")]),
        1.75
    );
    assert_eq!(
        exp.value("bastion_epsilon_budget", &[("dataset", "hospital-a")]),
        8.0
    );
    assert_eq!(
        exp.value("bastion_epsilon_spent", &[("dataset", "hospital-b")]),
        0.25
    );
    assert_eq!(
        exp.value("bastion_epsilon_budget", &[("dataset", "hospital-b")]),
        3.0
    );
    assert_eq!(exp.find("bastion_epsilon_spent", &[]).len(), 2);
    assert_eq!(exp.types["bastion_epsilon_spent"], "gauge");
}

#[test]
fn allreduce_counts_bytes_and_durations() {
    let m = node0();
    m.observe_allreduce(1 << 20, Duration::from_millis(3));
    m.observe_allreduce(3 << 20, Duration::from_millis(12));
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(
        exp.value("bastion_allreduce_bytes_total", &[]),
        4.0 * 1048576.0
    );
    assert_eq!(
        exp.value("bastion_allreduce_duration_seconds_count", &[]),
        2.0
    );
    let b = "bastion_allreduce_duration_seconds_bucket";
    assert_eq!(exp.value(b, &[("le", "0.0025")]), 0.0);
    assert_eq!(exp.value(b, &[("le", "0.005")]), 1.0);
    assert_eq!(exp.value(b, &[("le", "0.025")]), 2.0);
}

#[test]
fn attestations_count_all_verifications_and_failures_by_reason() {
    let m = node0();
    m.attestation_ok();
    m.attestation_ok();
    assert_eq!(
        m.attestation_failed("policy.measurement"),
        "policy.measurement"
    );
    assert_eq!(
        m.attestation_failed("policy.measurement"),
        "policy.measurement"
    );
    assert_eq!(m.attestation_failed("tls.handshake"), "tls.handshake");
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(exp.value("bastion_attestations_total", &[]), 5.0);
    let f = "bastion_attestation_failures_total";
    assert_eq!(exp.value(f, &[("reason", "policy.measurement")]), 2.0);
    assert_eq!(exp.value(f, &[("reason", "tls.handshake")]), 1.0);
    assert_eq!(exp.find(f, &[]).len(), 2);
}

#[test]
fn reason_codes_that_are_not_codes_fold_into_other() {
    let m = node0();
    for bad in [
        "",
        "Policy.Measurement",
        "measurement 0xdeadbeef does not match",
        "policy..measurement",
        ".policy",
        "9lives",
        "policy.measurement\n",
        &"a".repeat(65),
    ] {
        assert_eq!(m.attestation_failed(bad), OTHER_REASON, "{bad:?}");
    }
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(exp.find("bastion_attestation_failures_total", &[]).len(), 1);
    assert_eq!(
        exp.value("bastion_attestation_failures_total", &[("reason", "other")]),
        8.0
    );
}

#[test]
fn reason_set_is_capped() {
    let m = node0();
    for i in 0..MAX_REASONS {
        assert_eq!(
            m.attestation_failed(&format!("test.code_{i}")),
            format!("test.code_{i}")
        );
    }
    assert_eq!(m.attestation_failed("test.one_too_many"), OTHER_REASON);
    // Codes already admitted keep their own label past the cap.
    assert_eq!(m.attestation_failed("test.code_0"), "test.code_0");
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(
        exp.find("bastion_attestation_failures_total", &[]).len(),
        MAX_REASONS + 1
    );
}

#[test]
fn rank_change_moves_every_series_and_keeps_counter_values() {
    let m = node0();
    m.observe_step(Duration::from_millis(10));
    m.restart();
    m.set_rank(2);
    assert_eq!(m.rank(), 2);
    let exp = Exposition::parse(&m.encode_text());
    assert!(exp.find("bastion_steps_total", &[("rank", "0")]).is_empty());
    assert_eq!(exp.value("bastion_steps_total", &[("rank", "2")]), 1.0);
    assert_eq!(exp.value("bastion_restarts_total", &[("rank", "2")]), 1.0);
    assert_eq!(exp.value("bastion_rank", &[("rank", "2")]), 2.0);
    assert!(exp.samples.iter().all(|(_, l, _)| l["rank"] == "2"));
}

#[test]
fn group_size_and_restarts() {
    let m = node0();
    m.set_group_size(4);
    m.set_group_size(3);
    m.restart();
    m.set_restarts(5).unwrap();
    let err = m.set_restarts(2).unwrap_err();
    assert!(
        matches!(
            err,
            MetricsError::CounterDecrease {
                metric: "bastion_restarts_total",
                current: 5,
                requested: 2
            }
        ),
        "{err:?}"
    );
    m.set_restarts(5).unwrap();
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(exp.value("bastion_group_size", &[]), 3.0);
    assert_eq!(exp.value("bastion_restarts_total", &[]), 5.0);
}

#[test]
fn simulated_tee_appears_once_set() {
    let m = node0();
    m.set_simulated_tee(true);
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(exp.value("bastion_simulated_tee", &[]), 1.0);
    assert_eq!(exp.types["bastion_simulated_tee"], "gauge");
    m.set_simulated_tee(false);
    assert_eq!(
        Exposition::parse(&m.encode_text()).value("bastion_simulated_tee", &[]),
        0.0
    );
}

#[test]
fn label_values_are_escaped() {
    let m = NodeMetrics::new(r#"node "a"\b"#, 1, "worker").unwrap();
    m.set_privacy("line\nbreak", 1.0, 2.0);
    let exp = Exposition::parse(&m.encode_text());
    assert_eq!(
        exp.value("bastion_steps_total", &[("node", r#"node "a"\b"#)]),
        0.0
    );
    assert_eq!(
        exp.value("bastion_epsilon_spent", &[("dataset", "line\nbreak")]),
        1.0
    );
}

#[test]
fn bad_node_or_role_is_refused_with_the_label_named() {
    for (node, role, label) in [
        ("", "worker", "node"),
        ("n\n", "worker", "node"),
        ("node-0", "", "role"),
        ("node-0", &"r".repeat(129), "role"),
    ] {
        match NodeMetrics::new(node, 0, role) {
            Err(MetricsError::InvalidLabel { label: got, .. }) => assert_eq!(got, label),
            other => panic!("{node:?}/{role:?}: {other:?}"),
        }
    }
}

#[test]
fn registries_are_per_node_and_clones_share_one() {
    let a = node0();
    let b = NodeMetrics::new("node-1", 1, "worker").unwrap();
    let a2 = a.clone();
    a2.observe_step(Duration::from_millis(1));
    assert_eq!(
        Exposition::parse(&a.encode_text()).value("bastion_steps_total", &[]),
        1.0
    );
    assert_eq!(
        Exposition::parse(&b.encode_text()).value("bastion_steps_total", &[]),
        0.0
    );
}
