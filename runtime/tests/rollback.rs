//! A node's host rolls back its privacy ledger behind its checkpoints (an older copy of the
//! ledger file, checkpoints kept): the node refuses to resume rather than forget spent budget.

mod common;

use common::{node, serial, Cluster};
use std::time::Duration;

const MINUTES: Duration = Duration::from_secs(60);

#[test]
fn a_member_refuses_to_resume_past_its_rolled_back_ledger() {
    let _one_at_a_time = serial();
    let mut c = Cluster::start(
        "ledger-rollback",
        vec![
            node("node-0", &[("hospital-a", 36, 1)]),
            node("node-1", &[("hospital-b", 36, 2)]),
        ],
        "nodes = 2\nimage_size = 16\nbatch_size = 12\nepochs = 1\ntest_records = 32\nmax_steps = 12\ncheckpoint_every = 2",
        "heartbeat_ms = 200\nnode_timeout_ms = 2000\nrejoin_timeout_ms = 30000\nconnect_timeout_ms = 15000",
        50.0,
    );
    let ledger = c.node_dir(1).join("own-privacy.ledger");
    let saved = c.dir.join("own-privacy.ledger.old");
    c.wait_for("1 step", 3 * MINUTES, |c| c.steps_done() >= 1);
    std::fs::copy(&ledger, &saved).unwrap();
    c.wait_for("5 steps", 3 * MINUTES, |c| c.steps_done() >= 5);
    c.kill(1);
    // The host puts the old ledger back and keeps the newer checkpoints.
    std::fs::copy(&saved, &ledger).unwrap();
    assert!(
        std::fs::read_dir(c.node_dir(1).join("checkpoints"))
            .unwrap()
            .count()
            > 0
    );
    c.restart(1);
    let (ok, report) = c.wait_coordinator(3 * MINUTES);
    assert!(!ok, "the job must not complete\n{}", c.logs_tail());
    let report = report.unwrap_or_else(|| panic!("no report\n{}", c.logs_tail()));
    assert_eq!(report["status"], "stopped", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("node-1 refused") && reason.contains("checkpoint newer than the ledger"),
        "{reason}"
    );
    // The model as it stood was still evaluated and released.
    assert!(
        report["evaluation"]["test_accuracy"].as_f64().is_some(),
        "{report}"
    );
    assert!(
        c.log(1).contains("refusing the group's plan"),
        "{}",
        c.logs_tail()
    );
}
