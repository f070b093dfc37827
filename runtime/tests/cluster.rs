//! Real `bastion node` processes on loopback: N-node DP-SGD equals one node over the union
//! of the data (noise off, same sampled batches), and every failure path ends as promised.

mod common;

use common::{node, serial, Cluster};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const MINUTES: Duration = Duration::from_secs(60);

/// Tiny ResNet-18 work: 16x16 tiles, a handful of steps.
fn job(nodes: usize, extra: &str) -> String {
    format!(
        "nodes = {nodes}\nimage_size = 16\nbatch_size = 12\nepochs = 1\ntest_records = 32\n{extra}"
    )
}

const TIMEOUTS: &str = "heartbeat_ms = 200\nnode_timeout_ms = 2000\nrejoin_timeout_ms = 30000\nconnect_timeout_ms = 15000";

/// Epsilon per dataset recomputed from a ledger file's raw records, with an accountant of
/// our own: every step record charged to the dataset, grouped by (q, sigma), at its delta.
fn epsilon_from_ledger(path: &std::path::Path) -> BTreeMap<String, f64> {
    let log = bastion_ledger::read_log(path)
        .unwrap_or_else(|e| panic!("ledger {} unreadable: {e}", path.display()));
    let mut deltas = BTreeMap::new();
    let mut steps: BTreeMap<String, BTreeMap<(u64, u64), u64>> = BTreeMap::new();
    for r in &log.records {
        match &r.record {
            bastion_ledger::Record::Dataset(d) => {
                deltas.insert(d.name.clone(), d.budget.delta);
            }
            bastion_ledger::Record::Step(s) => {
                for (name, q) in &s.datasets {
                    *steps
                        .entry(name.clone())
                        .or_default()
                        .entry((q.to_bits(), s.sigma.to_bits()))
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }
    deltas
        .iter()
        .map(|(name, delta)| {
            let mut acct = bastion_accountant::create(bastion_accountant::AccountantKind::Pld);
            for ((q, sigma), n) in steps.get(name).into_iter().flatten() {
                acct.compose(f64::from_bits(*q), f64::from_bits(*sigma), *n)
                    .unwrap();
            }
            (name.clone(), acct.epsilon(*delta).unwrap())
        })
        .collect()
}

/// The report's epsilon for every dataset is the coordinator ledger's figure, recomputed
/// independently, and no member's own ledger shows more released than the report says.
fn assert_privacy_is_the_ledgers(c: &Cluster, report: &Value) {
    let group = epsilon_from_ledger(&c.node_dir(0).join("privacy.ledger"));
    let shown: BTreeMap<String, f64> = report["privacy"]
        .as_array()
        .unwrap_or_else(|| panic!("no privacy in {report}"))
        .iter()
        .map(|d| {
            (
                d["dataset"].as_str().unwrap().to_string(),
                d["epsilon"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown.keys().collect::<Vec<_>>(),
        group.keys().collect::<Vec<_>>(),
        "{report}"
    );
    for (name, eps) in &group {
        assert!(*eps > 0.0, "{name} was charged");
        assert!(
            (shown[name] - eps).abs() <= 1e-9 * eps.max(1.0),
            "{name}: report says {}, the ledger's records give {eps}",
            shown[name]
        );
    }
    for i in 0..c.names.len() {
        let own = c.node_dir(i).join("own-privacy.ledger");
        // Every share this node released was charged to its own ledger first.
        let charged = bastion_ledger::read_log(&own)
            .unwrap()
            .records
            .iter()
            .filter(|r| matches!(r.record, bastion_ledger::Record::Step(_)))
            .count();
        let released = c.log(i).matches("releasing the noisy share").count();
        assert!(
            charged >= released && released > 0,
            "{}: released {released} shares, its own ledger charged {charged}",
            c.names[i]
        );
        for (name, eps) in epsilon_from_ledger(&own) {
            assert!(
                eps <= group[&name] + 1e-9,
                "{}'s own ledger has {name} at {eps}, more than the report's {}",
                c.names[i],
                group[&name]
            );
        }
    }
}

#[test]
fn two_nodes_end_with_the_weights_of_one_node_over_the_union() {
    let _one_at_a_time = serial();
    let extra = "max_steps = 4\ncheckpoint_every = 100\ndanger_deterministic_for_tests = true";
    let mut pair = Cluster::start(
        "equiv-pair",
        vec![
            node("node-0", &[("hospital-a", 40, 1)]).allowing_unnoised_plans(),
            node("node-1", &[("hospital-b", 40, 2)]).allowing_unnoised_plans(),
        ],
        &job(2, extra),
        TIMEOUTS,
        8.0,
    );
    let (ok, report) = pair.wait_coordinator(3 * MINUTES);
    assert!(ok, "two-node run failed: {report:?}\n{}", pair.logs_tail());
    assert_eq!(pair.wait_members(MINUTES), vec![true]);
    let two = pair.final_weights(0);
    // Every member ends bitwise identical (fixed reduction order).
    assert_eq!(two, pair.final_weights(1), "members disagree");

    let mut single = Cluster::start(
        "equiv-single",
        vec![
            node("node-0", &[("hospital-a", 40, 1), ("hospital-b", 40, 2)])
                .allowing_unnoised_plans(),
        ],
        &job(1, extra),
        TIMEOUTS,
        8.0,
    );
    let (ok, _) = single.wait_coordinator(3 * MINUTES);
    assert!(ok, "single-node run failed\n{}", single.logs_tail());
    let one = single.final_weights(0);

    assert_eq!(two.len(), one.len());
    let mut worst = 0f32;
    let mut moved = 0f32;
    for ((name_a, a), (name_b, b)) in two.iter().zip(&one) {
        assert_eq!(name_a, name_b);
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
        moved = moved.max(a.iter().map(|v| v.abs()).fold(0.0, f32::max));
    }
    assert!(worst <= 1e-5, "weights differ by {worst}");
    // And the comparison is not vacuous: training moved the weights (the report counts steps).
    assert!(moved > 0.0);
    let report = report.expect("report");
    assert_eq!(report["status"], "completed");
    assert_eq!(report["steps"], 4);
    assert_eq!(report["deterministic_for_tests"], true);
}

#[test]
fn a_killed_node_rejoins_and_training_completes_with_a_consistent_ledger() {
    let _one_at_a_time = serial();
    let mut c = Cluster::start(
        "rejoin",
        vec![
            node("node-0", &[("hospital-a", 36, 1)]),
            node("node-1", &[("hospital-b", 36, 2)]),
            node("node-2", &[("hospital-c", 36, 3)]),
        ],
        &job(3, "max_steps = 10\ncheckpoint_every = 3\nepsilon = 8.0"),
        TIMEOUTS,
        50.0,
    );
    c.wait_for("4 steps", 3 * MINUTES, |c| c.steps_done() >= 4);
    c.kill(2);
    c.wait_for("the loss to be noticed", MINUTES, |c| {
        c.log(0).contains("node lost")
    });
    c.restart(2);
    let (ok, report) = c.wait_coordinator(4 * MINUTES);
    let report = report.unwrap_or_else(|| panic!("no report\n{}", c.logs_tail()));
    assert!(
        ok && report["status"] == "completed",
        "{report}\n{}",
        c.logs_tail()
    );
    assert_eq!(
        report["steps"],
        report["planned_steps"],
        "{report}\n{}",
        c.logs_tail()
    );
    assert_privacy_is_the_ledgers(&c, &report);
    assert!(report["reformations"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["nodes"].as_array().unwrap().len(), 3);
    assert!(c.log(0).contains("lost node is back"));
    // The restarted node resumed from a checkpoint, reloading its sealed shard.
    assert!(
        c.log(2).contains("restored checkpoint"),
        "{}",
        c.logs_tail()
    );
    // Every step any node released is in the ledger; the wasted ones are charged too.
    let released = c.released_ledger_steps();
    let recorded = c.ledger_steps();
    assert!(
        released.is_subset(&recorded),
        "released {released:?} recorded {recorded:?}"
    );
    assert!(
        recorded.len() as u64 > report["steps"].as_u64().unwrap(),
        "the aborted step is charged too"
    );
    assert_eq!(c.wait_members(MINUTES), vec![true, true]);
}

#[test]
fn a_node_lost_for_good_stops_the_job_under_policy_stop() {
    let _one_at_a_time = serial();
    let mut c = Cluster::start(
        "loss-stop",
        vec![
            node("node-0", &[("hospital-a", 36, 1)]),
            node("node-1", &[("hospital-b", 36, 2)]),
        ],
        &job(2, "max_steps = 40\ncheckpoint_every = 3\non_node_loss = \"stop\""),
        "heartbeat_ms = 200\nnode_timeout_ms = 1500\nrejoin_timeout_ms = 3000\nconnect_timeout_ms = 10000",
        50.0,
    );
    c.wait_for("2 steps", 3 * MINUTES, |c| c.steps_done() >= 2);
    c.kill(1);
    let (ok, report) = c.wait_coordinator(2 * MINUTES);
    assert!(
        !ok,
        "the job should fail under policy stop\n{}",
        c.logs_tail()
    );
    let report = report.expect("a report even on failure");
    assert_eq!(report["status"], "stopped", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("node-1") && reason.contains("hospital-b") && reason.contains("stop"),
        "{reason}"
    );
    assert!(report["steps"].as_u64().unwrap() < 40);
    // The model as it stands is still evaluated and released.
    let accuracy = report["evaluation"]["test_accuracy"].as_f64();
    assert!(
        accuracy.is_some_and(|a| (0.0..=1.0).contains(&a)),
        "{report}"
    );
    assert!(c
        .node_dir(0)
        .join("release")
        .join("model.safetensors")
        .exists());
    assert_privacy_is_the_ledgers(&c, &report);
}

#[test]
fn a_node_lost_for_good_leaves_with_its_data_under_policy_continue() {
    let _one_at_a_time = serial();
    let mut c = Cluster::start(
        "loss-continue",
        vec![
            node("node-0", &[("hospital-a", 36, 1)]),
            node("node-1", &[("hospital-b", 36, 2)]),
            node("node-2", &[("hospital-c", 36, 3)]),
        ],
        &job(3, "max_steps = 8\ncheckpoint_every = 2\non_node_loss = \"continue\""),
        "heartbeat_ms = 200\nnode_timeout_ms = 1500\nrejoin_timeout_ms = 3000\nconnect_timeout_ms = 10000",
        50.0,
    );
    c.wait_for("3 steps", 3 * MINUTES, |c| c.steps_done() >= 3);
    c.kill(2);
    let (ok, report) = c.wait_coordinator(4 * MINUTES);
    let report = report.unwrap_or_else(|| panic!("no report\n{}", c.logs_tail()));
    assert!(
        ok && report["status"] == "completed",
        "{report}\n{}",
        c.logs_tail()
    );
    // Every planned step ran: the group kept q (the privacy parameter) when it shrank, so
    // the plan's budget held; the expected batch shrank with the data instead.
    assert_eq!(report["steps"], report["planned_steps"]);
    assert_eq!(report["steps"], 8);
    assert_eq!(report["q"].as_f64().unwrap(), 12.0 / 108.0);
    assert!(c.log(0).contains("expected_batch=8"), "{}", c.logs_tail());
    assert_eq!(report["lost_nodes"], serde_json::json!(["node-2"]));
    assert!(
        report["evaluation"]["test_accuracy"].as_f64().is_some(),
        "{report}"
    );
    assert_privacy_is_the_ledgers(&c, &report);
    // Every step charged hospital-a and hospital-b at the plan's q, aborted ones included.
    let ledger = bastion_ledger::read_log(c.node_dir(0).join("privacy.ledger")).unwrap();
    for r in &ledger.records {
        if let bastion_ledger::Record::Step(s) = &r.record {
            assert!(s.datasets.iter().all(|(_, q)| *q == 12.0 / 108.0), "{s:?}");
        }
    }
    assert!(c.log(0).contains("continuing without it and its datasets"));
    // hospital-c stopped being charged when its node left: fewer steps than the others.
    let ledger = bastion_ledger::read_log(c.node_dir(0).join("privacy.ledger")).unwrap();
    let charged = |name: &str| {
        ledger
            .records
            .iter()
            .filter(|r| matches!(&r.record, bastion_ledger::Record::Step(s) if s.datasets.iter().any(|(d, _)| d == name)))
            .count()
    };
    assert!(
        charged("hospital-c") < charged("hospital-a"),
        "{} vs {}",
        charged("hospital-c"),
        charged("hospital-a")
    );
}

#[test]
fn killing_the_accountant_at_random_moments_never_loses_a_released_step() {
    let _one_at_a_time = serial();
    let mut c = Cluster::start(
        "kill-accountant",
        vec![
            node("node-0", &[("hospital-a", 36, 1)]),
            node("node-1", &[("hospital-b", 36, 2)]),
        ],
        &job(2, "max_steps = 12\ncheckpoint_every = 2"),
        TIMEOUTS,
        80.0,
    );
    // Kill the coordinator (Supervisor + Accountant) at pseudo-random moments after the
    // group forms: sometimes mid-step, sometimes between the ledger write and the release.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..4 {
        c.wait_for("the group to run", 3 * MINUTES, |c| {
            c.log(0).matches("group formed").count() > round
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 2500));
        c.kill(0);
        let released = c.released_ledger_steps();
        let recorded = c.ledger_steps();
        assert!(
            released.is_subset(&recorded),
            "round {round}: released {released:?} but the ledger has {recorded:?}"
        );
        c.restart(0);
    }
    let (ok, report) = c.wait_coordinator(5 * MINUTES);
    let report = report.unwrap_or_else(|| panic!("no report\n{}", c.logs_tail()));
    assert!(
        ok && report["status"] == "completed",
        "{report}\n{}",
        c.logs_tail()
    );
    assert_eq!(report["steps"], report["planned_steps"], "{report}");
    assert_privacy_is_the_ledgers(&c, &report);
    let released = c.released_ledger_steps();
    let recorded = c.ledger_steps();
    assert!(released.is_subset(&recorded));
    // Spent budget survived every crash: the final epsilon covers every recorded step.
    assert!(recorded.len() as u64 >= report["steps"].as_u64().unwrap());
}

#[test]
fn a_plan_without_noise_is_refused_by_a_member_that_did_not_opt_in() {
    let _one_at_a_time = serial();
    // The coordinator's job switches noise off; node-1's own config does not allow that.
    let mut c = Cluster::start(
        "no-noise-refused",
        vec![
            node("node-0", &[("hospital-a", 36, 1)]).allowing_unnoised_plans(),
            node("node-1", &[("hospital-b", 36, 2)]),
        ],
        &job(2, "max_steps = 4\ndanger_deterministic_for_tests = true"),
        TIMEOUTS,
        8.0,
    );
    let (ok, report) = c.wait_coordinator(3 * MINUTES);
    assert!(!ok, "the job must fail\n{}", c.logs_tail());
    let report = report.expect("report");
    assert_eq!(report["status"], "failed", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("node-1 refused") && reason.contains("noise"),
        "{reason}"
    );
    assert_eq!(report["steps"], 0);
    assert!(c.released_ledger_steps().is_empty(), "{}", c.logs_tail());
}

/// Rewrites a line of node `i`'s config.
fn set_config(c: &Cluster, i: usize, from: &str, to: &str) {
    let path = c.node_dir(i).join("node.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn budgets_hold_across_jobs_at_the_coordinator_and_at_each_member() {
    let _one_at_a_time = serial();
    // A first job spends most of each hospital's budget of 8.
    let mut c = Cluster::start(
        "budget-across-jobs",
        vec![
            node("node-0", &[("hospital-a", 36, 1)]),
            node("node-1", &[("hospital-b", 36, 2)]),
        ],
        &job(2, "max_steps = 4\nepsilon = 7.0"),
        TIMEOUTS,
        8.0,
    );
    let (ok, first) = c.wait_coordinator(3 * MINUTES);
    let first = first.unwrap_or_else(|| panic!("no report\n{}", c.logs_tail()));
    assert!(ok && first["status"] == "completed", "{first}");
    assert_eq!(c.wait_members(MINUTES), vec![true]);
    let charged_b = epsilon_from_ledger(&c.node_dir(1).join("own-privacy.ledger"))["hospital-b"];
    assert!(charged_b > 5.0 && charged_b <= 7.0, "{charged_b}");

    // A second job wanting 8 more does not fit what is left: the coordinator refuses it
    // before step 0, and nothing is released or charged.
    set_config(&c, 0, "epsilon = 7.0", "epsilon = 8.0");
    let recorded = c.ledger_steps().len();
    c.restart(0);
    c.restart(1);
    let (ok, second) = c.wait_coordinator(3 * MINUTES);
    assert!(!ok, "the second job must be refused\n{}", c.logs_tail());
    let second = second.expect("report");
    assert_eq!(second["status"], "failed", "{second}");
    let reason = second["reason"].as_str().unwrap();
    assert!(reason.contains("refused before it started"), "{reason}");
    assert_eq!(c.ledger_steps().len(), recorded);
    assert_eq!(c.wait_members(MINUTES), vec![false]);

    // The coordinator's host replaces its state (ledger included): the new coordinator
    // knows nothing of what hospital-b spent and plans the full budget again. node-1
    // enforces its own owner's budget from its own ledger and refuses the plan.
    for entry in std::fs::read_dir(c.node_dir(0)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name != "node.toml" && name != "tee" && name != "node.log" {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    let before = c.log(1).matches("releasing the noisy share").count();
    c.restart(0);
    c.restart(1);
    let (ok, third) = c.wait_coordinator(3 * MINUTES);
    assert!(!ok, "node-1 must refuse\n{}", c.logs_tail());
    let third = third.expect("report");
    assert_eq!(third["status"], "failed", "{third}");
    let reason = third["reason"].as_str().unwrap();
    assert!(
        reason.contains("node-1 refused") && reason.contains("own budget"),
        "{reason}"
    );
    assert_eq!(
        c.log(1).matches("releasing the noisy share").count(),
        before,
        "node-1 released nothing"
    );
    let after = epsilon_from_ledger(&c.node_dir(1).join("own-privacy.ledger"))["hospital-b"];
    assert_eq!(after, charged_b, "nothing more was charged to hospital-b");
}
