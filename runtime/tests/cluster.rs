//! Real `bastion node` processes on loopback: N-node DP-SGD equals one node over the union
//! of the data (noise off, same sampled batches), and every failure path ends as promised.

mod common;

use common::{node, serial, Cluster};
use std::time::Duration;

const MINUTES: Duration = Duration::from_secs(60);

/// Tiny ResNet-18 work: 16x16 tiles, a handful of steps.
fn job(nodes: usize, extra: &str) -> String {
    format!(
        "nodes = {nodes}\nimage_size = 16\nbatch_size = 12\nepochs = 1\ntest_records = 32\n{extra}"
    )
}

const TIMEOUTS: &str = "heartbeat_ms = 200\nnode_timeout_ms = 2000\nrejoin_timeout_ms = 30000\nconnect_timeout_ms = 15000";

#[test]
fn two_nodes_end_with_the_weights_of_one_node_over_the_union() {
    let _one_at_a_time = serial();
    let extra = "max_steps = 4\ncheckpoint_every = 100\ndanger_deterministic_for_tests = true";
    let mut pair = Cluster::start(
        "equiv-pair",
        vec![
            node("node-0", &[("hospital-a", 40, 1)]),
            node("node-1", &[("hospital-b", 40, 2)]),
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
        vec![node(
            "node-0",
            &[("hospital-a", 40, 1), ("hospital-b", 40, 2)],
        )],
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
        ok && report["completed"] == true,
        "{report}\n{}",
        c.logs_tail()
    );
    assert_eq!(
        report["steps"],
        report["planned_steps"],
        "{report}\n{}",
        c.logs_tail()
    );
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
    assert_eq!(report["completed"], false);
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("node-1") && reason.contains("hospital-b") && reason.contains("stop"),
        "{reason}"
    );
    assert!(report["steps"].as_u64().unwrap() < 40);
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
        ok && report["completed"] == true,
        "{report}\n{}",
        c.logs_tail()
    );
    assert_eq!(report["steps"], report["planned_steps"]);
    assert_eq!(report["lost_nodes"], serde_json::json!(["node-2"]));
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
        ok && report["completed"] == true,
        "{report}\n{}",
        c.logs_tail()
    );
    let released = c.released_ledger_steps();
    let recorded = c.ledger_steps();
    assert!(released.is_subset(&recorded));
    // Spent budget survived every crash: the final epsilon covers every recorded step.
    assert!(recorded.len() as u64 >= report["steps"].as_u64().unwrap());
}

#[test]
fn a_job_that_would_exceed_a_remaining_budget_is_refused_before_it_starts() {
    let _one_at_a_time = serial();
    // hospital-b already spent part of its budget in an earlier job on this coordinator.
    let dir = std::env::temp_dir().join(format!("bastion-refusal-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let earlier = dir.join("privacy.ledger");
    {
        use bastion_ledger::{Budget, Ledger, StepCharge};
        let (mut ledger, _) = Ledger::open(&earlier, Default::default()).unwrap();
        let budget = Budget {
            epsilon: 8.0,
            delta: 1e-5,
        };
        ledger.register_dataset("hospital-b", budget).unwrap();
        for step in 0..10 {
            let datasets = vec![("hospital-b".to_string(), 0.05)];
            ledger
                .authorize(&StepCharge {
                    step,
                    sigma: 1.0,
                    datasets,
                })
                .unwrap();
        }
    }
    let mut c = Cluster::start_with(
        "refusal",
        vec![
            node("node-0", &[("hospital-a", 36, 1)]),
            node("node-1", &[("hospital-b", 36, 2)]),
        ],
        &job(2, "max_steps = 6\nepsilon = 8.0"),
        TIMEOUTS,
        8.0,
        |node_dir| {
            if node_dir.ends_with("node-0") {
                std::fs::copy(&earlier, node_dir.join("privacy.ledger")).unwrap();
            }
        },
    );
    let (ok, report) = c.wait_coordinator(3 * MINUTES);
    assert!(!ok, "the job must be refused\n{}", c.logs_tail());
    let report = report.expect("report");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("refused before it started") && reason.contains("hospital-b"),
        "{reason}"
    );
    assert_eq!(report["steps"], 0);
    // Nothing was released and nothing new was charged.
    assert!(c.released_ledger_steps().is_empty());
    assert_eq!(c.ledger_steps().len(), 10);
    let _ = std::fs::remove_dir_all(&dir);
}
