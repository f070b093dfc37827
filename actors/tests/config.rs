//! `node.toml`: the example files parse, unknown fields and bad values are refused by name.

use bastion_actors::config::{NodeConfig, OnNodeLoss};
use std::path::Path;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/resnet-cancer")
        .join(name)
}

#[test]
fn the_example_configs_parse() {
    let coordinator = NodeConfig::load(&example("coordinator.toml")).unwrap();
    assert!(coordinator.serve_coordinator);
    assert_eq!(coordinator.job.nodes, 3);
    assert_eq!(coordinator.job.on_node_loss, OnNodeLoss::Continue);
    assert_eq!(coordinator.datasets[0].name, "hospital-a");
    let member = NodeConfig::load(&example("member.toml")).unwrap();
    assert!(!member.serve_coordinator);
    assert_eq!(member.datasets[0].epsilon_budget, 8.0);
    // Defaults fill what a member leaves out.
    assert_eq!(member.timeouts.heartbeat_ms, 300);
}

#[test]
fn a_minimal_config_gets_safe_defaults() {
    let c = NodeConfig::parse("name = \"n\"", "inline").unwrap();
    assert!(
        !c.tee.simulated && !c.tee.trust_simulated,
        "hardware by default"
    );
    assert!(!c.serve_coordinator);
    assert!(!c.job.deterministic_for_tests());
    assert!(!c.allows_unnoised_plans());
    assert_eq!(c.job.depth, 18);
}

fn refusal(text: &str) -> String {
    NodeConfig::parse(text, "node.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn unknown_fields_and_bad_values_are_refused_by_name() {
    let e = refusal("name = \"n\"\nbatchsize = 3");
    assert!(e.contains("node.toml") && e.contains("batchsize"), "{e}");
    let e = refusal("name = \"n\"\n[job]\nepsilon = -1.0");
    assert!(e.contains("job.epsilon"), "{e}");
    let e = refusal("name = \"n\"\n[job]\ndepth = 50");
    assert!(e.contains("job.depth") && e.contains("50"), "{e}");
    let e = refusal("name = \"n\"\n[[datasets]]\nname = \"a\"\n[[datasets]]\nname = \"a\"");
    assert!(e.contains("datasets[1].name"), "{e}");
    let e = refusal("name = \"n\"\n[job]\naccountant = \"magic\"");
    assert!(e.contains("magic"), "{e}");
    let e = refusal("name = \"n\"\n[job]\non_node_loss = \"panic\"");
    assert!(e.contains("panic"), "{e}");
    let e = refusal("name = \"n\"\n[timeouts]\nheartbeat_ms = 5000\nnode_timeout_ms = 1000");
    assert!(e.contains("timeouts"), "{e}");
    let e = refusal("name = \"\"");
    assert!(e.contains("name"), "{e}");
    let e = NodeConfig::load(Path::new("/nonexistent/node.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/node.toml"), "{e}");
}

#[test]
fn test_switches_exist_only_in_test_builds() {
    // `.ci/run` runs this file without the feature too (`cargo test -p bastion-actors`),
    // where a config naming a test switch must be refused as unknown.
    let text = "name = \"n\"\ndanger_allow_unnoised_plans_for_tests = true\n[job]\ndanger_deterministic_for_tests = true";
    let parsed = NodeConfig::parse(text, "node.toml");
    if cfg!(feature = "danger-test-switches") {
        let c = parsed.unwrap();
        assert!(c.allows_unnoised_plans() && c.job.deterministic_for_tests());
    } else {
        let e = parsed.unwrap_err().to_string();
        assert!(e.contains("danger_allow_unnoised_plans_for_tests"), "{e}");
        let job_only = NodeConfig::parse(
            "name = \"n\"\n[job]\ndanger_deterministic_for_tests = true",
            "node.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            job_only.contains("danger_deterministic_for_tests"),
            "{job_only}"
        );
    }
}
