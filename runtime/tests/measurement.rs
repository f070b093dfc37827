//! The simulated measurement is the running binary's: a node started from a modified copy of
//! `bastion` (one byte appended; it still runs) is refused by the coordinator on its
//! measurement, while the same node from the unmodified binary is admitted.

mod common;

use common::{bastion_measurement_hex, node, serial, Cluster};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const MINUTES: Duration = Duration::from_secs(60);

/// A copy of the binary under test with one byte appended, in its own scratch directory.
fn altered_bastion() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("altered-bastion");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bastion");
    let _ = std::fs::remove_file(&path);
    std::fs::copy(env!("CARGO_BIN_EXE_bastion"), &path).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0])
        .unwrap();
    path
}

#[test]
fn a_node_running_a_modified_binary_is_refused_on_its_measurement() {
    let _one_at_a_time = serial();
    let altered = altered_bastion();
    let altered_hex: String = bastion_attestation::sim::binary_measurement(&altered)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(
        altered_hex,
        bastion_measurement_hex(),
        "one byte changes it"
    );

    // Many small steps, and a long rejoin window: the coordinator is still waiting for node-1
    // when the altered copy knocks.
    let job = "nodes = 2\nimage_size = 8\nbatch_size = 4\nepochs = 30\nmax_steps = 1000\ntest_records = 8\ncheckpoint_every = 1000";
    let timeouts = "heartbeat_ms = 200\nnode_timeout_ms = 2000\nrejoin_timeout_ms = 600000\nconnect_timeout_ms = 15000";
    let mut c = Cluster::start(
        "measurement",
        vec![
            node("node-0", &[("hospital-a", 16, 1)]),
            node("node-1", &[("hospital-b", 16, 2)]),
        ],
        job,
        timeouts,
        1000.0,
    );
    // Positive control: the unmodified binary is admitted.
    c.wait_for("node-1 admitted", 3 * MINUTES, |c| {
        c.log(0).contains("node admitted") && c.log(0).contains("node-1")
    });
    assert!(!c.log(0).contains("node refused"), "{}", c.logs_tail());

    // Same node, same config and chip, from the altered copy. Its sealed state was sealed to
    // the old measurement and would not open: start it from its config and chip alone.
    c.kill(1);
    for entry in std::fs::read_dir(c.node_dir(1)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !["node.toml", "tee", "node.log"].contains(&name.as_str()) {
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    c.restart_with_exe(1, &altered);
    c.wait_for("the coordinator's refusal", 3 * MINUTES, |c| {
        c.log(0).contains("node refused: attestation failed")
    });
    let refusal = c
        .log(0)
        .lines()
        .find(|l| l.contains("node refused: attestation failed"))
        .unwrap()
        .to_string();
    assert!(
        refusal.contains("policy.measurement") && refusal.contains(&altered_hex),
        "refused for another reason: {refusal}"
    );
    // The altered node knows what it runs: its own measurement is not on its allow-list.
    assert!(
        c.log(1).contains(&altered_hex) && c.log(1).contains("own measurement is not in"),
        "{}",
        c.logs_tail()
    );
    assert!(!c.log(0).contains("lost node is back"), "{}", c.logs_tail());
}
