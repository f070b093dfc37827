//! `[tee] simulated = false`: the hardware settings parse and are checked by name, and a node
//! whose SEV-SNP guest device is missing stops at start with one line naming the device and
//! the switch that selects the simulation, never falling back to the simulated TEE.
//! (Evidence and sealing keys themselves are tested on the real Milan vectors in
//! attestation/tests/guest.rs.)

use bastion_actors::config::{ConfigError, NodeConfig, DEFAULT_DEVICE};
use bastion_actors::node::run_node;
use bastion_attestation::sim::SimulatedPlatform;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sev-hardware-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn refused_field(text: &str) -> (String, String) {
    match NodeConfig::parse(text, "inline") {
        Err(ConfigError::Invalid { field, message, .. }) => (field, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn hardware_settings_parse_with_defaults() {
    let c = NodeConfig::parse("name = \"n\"", "inline").unwrap();
    assert!(!c.tee.simulated);
    assert_eq!(c.tee.device(), Path::new(DEFAULT_DEVICE));
    assert_eq!(DEFAULT_DEVICE, "/dev/sev-guest");
    assert!(c.tee.vcek.is_none() && c.tee.min_tcb.is_none());

    let c = NodeConfig::parse(
        "name = \"n\"\n[tee]\ndevice = \"/dev/sev-guest\"\nvcek = \"/etc/bastion/vcek.der\"\n\
         [tee.min_tcb]\nbootloader = 3\nsnp = 8\nmicrocode = 115\n",
        "inline",
    )
    .unwrap();
    let min = c.tee.min_tcb.unwrap();
    assert_eq!(
        (min.bootloader, min.tee, min.snp, min.microcode),
        (3, 0, 8, 115)
    );
    assert_eq!(
        c.tee.vcek.as_deref(),
        Some(Path::new("/etc/bastion/vcek.der"))
    );
}

#[test]
fn the_vcek_path_is_relative_to_the_config_file() {
    let dir = scratch("relative");
    let file = dir.join("node.toml");
    std::fs::write(&file, "name = \"n\"\n[tee]\nvcek = \"certs\"\n").unwrap();
    let c = NodeConfig::load(&file).unwrap();
    assert_eq!(c.tee.vcek.unwrap(), dir.join("certs"));
}

#[test]
fn hardware_settings_that_do_not_fit_are_refused_by_name() {
    // A hardware node never trusts the simulated chain.
    let (field, message) = refused_field("name = \"n\"\n[tee]\ntrust_simulated = true\n");
    assert_eq!(field, "tee.trust_simulated");
    assert!(message.contains("simulated = true"), "{message}");
    // Hardware settings on a simulated node would be silently unused.
    for (setting, field) in [
        ("vcek = \"v.der\"", "tee.vcek"),
        ("device = \"/dev/sev-guest\"", "tee.device"),
        ("min_tcb = { snp = 8 }", "tee.min_tcb"),
    ] {
        let text =
            format!("name = \"n\"\n[tee]\nsimulated = true\ntrust_simulated = true\n{setting}\n");
        assert_eq!(refused_field(&text).0, field, "{setting}");
    }
    // No minimum at all is not a minimum.
    let (field, message) = refused_field("name = \"n\"\n[tee.min_tcb]\nfmc = 1\n");
    assert_eq!(field, "tee.min_tcb");
    assert!(message.contains("never installed a fix"), "{message}");
    let (field, _) = refused_field("name = \"n\"\n[tee]\ndevice = \"dev/sev-guest\"\n");
    assert_eq!(field, "tee.device");
    // Unknown fields stay unknown.
    assert!(matches!(
        NodeConfig::parse(
            "name = \"n\"\n[tee]\nvcek_url = \"https://kdsintf.amd.com\"\n",
            "inline"
        ),
        Err(ConfigError::Parse { .. })
    ));
}

/// A hardware node config whose device is `device`, with a usable simulated chip in
/// `platform_dir`: were there any fallback to the simulation, this node would run.
fn hardware_node(name: &str, device: Option<&str>) -> NodeConfig {
    let dir = scratch(name);
    let platform = SimulatedPlatform::load_or_generate(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tee"),
    )
    .expect("simulated platform");
    platform
        .issue_chip()
        .unwrap()
        .save(dir.join("chip"))
        .unwrap();
    let device = device
        .map(|d| format!("device = {d:?}\n"))
        .unwrap_or_default();
    let text = format!(
        "name = {name:?}\nstate_dir = {:?}\nthreads = 1\n\
         coordinator = \"127.0.0.1:1\"\nring_listen = \"127.0.0.1:0\"\n\
         [tee]\nplatform_dir = {:?}\n{device}",
        dir.join("state"),
        dir.join("chip"),
    );
    NodeConfig::parse(&text, "inline").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_device_stops_the_node_with_one_clear_line() {
    let config = hardware_node("missing", Some("/nonexistent/sev-guest"));
    let started = std::time::Instant::now();
    let err = run_node(config).await.unwrap_err();
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(
        err.contains("/nonexistent/sev-guest"),
        "names the device: {err}"
    );
    assert!(err.contains("does not exist"), "says what is wrong: {err}");
    assert!(
        err.contains("[tee] simulated = true"),
        "names the switch: {err}"
    );
    // Refused at start, not after trying to reach a coordinator.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_device_is_opened_never_the_simulation() {
    if Path::new(DEFAULT_DEVICE).exists() {
        eprintln!("skipped: {DEFAULT_DEVICE} exists here (an SEV-SNP guest)");
        return;
    }
    let err = run_node(hardware_node("default", None)).await.unwrap_err();
    assert!(err.contains(DEFAULT_DEVICE), "{err}");
    assert!(err.contains("[tee] simulated = true"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_at_another_path_is_refused() {
    // An existing file that is not the guest device: the SNP interface would open
    // /dev/sev-guest instead, so the configured path is refused rather than half-used.
    let dir = scratch("other-file");
    let fake = dir.join("sev-guest");
    std::fs::write(&fake, b"").unwrap();
    let err = run_node(hardware_node("other", Some(fake.to_str().unwrap())))
        .await
        .unwrap_err();
    assert!(err.contains("is not /dev/sev-guest"), "{err}");
    assert!(err.contains("[tee] simulated = true"), "{err}");
}
