//! deploy/: the SEV-SNP node image's expected measurement and the Kubernetes manifests.
//!
//! - `deploy/snp/measure` (sev-snp-measure from PyPI, installed by scripts/deploy-venv.sh on
//!   first use) is deterministic, binds the kernel, initrd, command line, firmware, vCPU count
//!   and vCPU type, agrees with an independent implementation (the sev crate's measurement
//!   module, Rust), and writes a policy that the real `bastion attest verify --policy` reads:
//!   the real Milan report in shared/vectors/snp is refused on its measurement, then accepted
//!   once the same generator is given that report's measurement.
//! - `deploy/snp/launch --dry-run` prints the QEMU command for exactly the measured inputs.
//! - deploy/k8s validates against Kubernetes 1.30's schema (strict), its node.toml templates
//!   render and load with the node's own config loader, and its dashboards ConfigMap holds
//!   grafana/'s files byte for byte.
//!
//! The firmware here is synthetic (deploy/snp/make-test-ovmf.py: no AmdSev OVMF is installable
//! from Debian or PyPI), as are the kernel and initrd: the measurement only hashes them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use bastion_actors::config::NodeConfig;
use bastion_attestation::policy::MeasurementRule;
use bastion_attestation::Policy;

const AT: &str = "2026-01-01T00:00:00Z";
/// The real Milan report's MEASUREMENT (shared/vectors/snp/virtee-sev/report_milan.hex).
const MILAN_MEASUREMENT: &str =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const MIN_TCB: &str = "bootloader=3,tee=0,snp=8,microcode=115";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vector(path: &str) -> PathBuf {
    root().join("../shared/vectors/snp").join(path)
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

/// Installs the deploy venv once (pip, first use only), for tests running in parallel.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        check(
            run(
                Path::new("bash"),
                &[root().join("scripts/deploy-venv.sh").to_str().unwrap()],
            ),
            "scripts/deploy-venv.sh",
        );
        root().join(".deploy-venv")
    })
}

/// The test image: a synthetic AmdSev-style OVMF, a kernel and an initrd (any bytes).
struct Image {
    ovmf: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    dir: PathBuf,
}

impl Image {
    /// `--ovmf F --kernel K --initrd I`: the image's files, as measure and launch take them.
    fn args(&self) -> [&str; 6] {
        [
            "--ovmf",
            self.ovmf.to_str().unwrap(),
            "--kernel",
            self.kernel.to_str().unwrap(),
            "--initrd",
            self.initrd.to_str().unwrap(),
        ]
    }
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = scratch().join("image");
        std::fs::create_dir_all(&dir).unwrap();
        let ovmf = dir.join("OVMF.amdsev-test.fd");
        check(
            run(
                Path::new("python3"),
                &[
                    root()
                        .join("deploy/snp/make-test-ovmf.py")
                        .to_str()
                        .unwrap(),
                    ovmf.to_str().unwrap(),
                ],
            ),
            "make-test-ovmf.py",
        );
        let kernel = dir.join("vmlinuz");
        std::fs::write(&kernel, b"MZ a stand-in for the kernel image").unwrap();
        let initrd = dir.join("initrd.img");
        std::fs::write(&initrd, b"070701 a stand-in for the initrd cpio").unwrap();
        Image {
            ovmf,
            kernel,
            initrd,
            dir,
        }
    })
}

/// Runs deploy/snp/measure on the test image plus `extra` arguments; returns its stdout.
fn measure_with(ovmf: &Path, kernel: &Path, initrd: &Path, extra: &[&str]) -> String {
    venv();
    let mut args = vec![
        "--ovmf",
        ovmf.to_str().unwrap(),
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    check(
        run(&root().join("deploy/snp/measure"), &args),
        "deploy/snp/measure",
    )
}

fn measure(extra: &[&str]) -> String {
    let i = image();
    measure_with(&i.ovmf, &i.kernel, &i.initrd, extra)
}

/// The `[tee]` snippet measure prints, loaded by the node's config loader: its measurements.
fn node_toml_measurements(stdout: &str) -> Vec<String> {
    let snippet: String = stdout
        .lines()
        .skip_while(|l| *l != "[tee]")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(snippet.starts_with("[tee]\nmeasurements = ["), "{stdout}");
    let config = NodeConfig::parse(&format!("name = \"n\"\n{snippet}"), "measure's output")
        .expect("measure's [tee] line parses as node.toml");
    config.tee.measurements.iter().map(|m| m.to_hex()).collect()
}

/// The one measurement of a single-shape run.
fn digest(extra: &[&str]) -> String {
    let found = node_toml_measurements(&measure(extra));
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn the_measurement_is_deterministic_and_binds_every_input() {
    let i = image();
    let base = digest(&[]);
    assert_eq!(base.len(), 96);
    assert_eq!(digest(&[]), base, "same inputs, same digest");
    // The default command line is deploy/snp/cmdline, the file deploy/snp/launch reads.
    let cmdline = std::fs::read_to_string(root().join("deploy/snp/cmdline")).unwrap();
    let cmdline = cmdline.lines().next().unwrap();
    assert_eq!(digest(&["--append", cmdline]), base);
    assert_eq!(digest(&["--vcpus", "4", "--vcpu-type", "EPYC-v4"]), base);

    let other_initrd = i.dir.join("initrd-other.img");
    std::fs::write(&other_initrd, b"070701 a stand-in for the initrd cpiO").unwrap();
    let other_kernel = i.dir.join("vmlinuz-other");
    std::fs::write(&other_kernel, b"MZ a stand-in for the kernel imagE").unwrap();
    let other_ovmf = i.dir.join("OVMF.other.fd");
    check(
        run(
            Path::new("python3"),
            &[
                root()
                    .join("deploy/snp/make-test-ovmf.py")
                    .to_str()
                    .unwrap(),
                other_ovmf.to_str().unwrap(),
                "--seed",
                "another build",
            ],
        ),
        "make-test-ovmf.py",
    );
    let one = |s: String| {
        let found = node_toml_measurements(&s);
        assert_eq!(found.len(), 1);
        found[0].clone()
    };
    let variants = [
        (
            "command line",
            digest(&["--append", &format!("{cmdline} x")]),
        ),
        ("vCPU count", digest(&["--vcpus", "8"])),
        ("vCPU type", digest(&["--vcpu-type", "EPYC-Milan"])),
        (
            "initrd",
            one(measure_with(&i.ovmf, &i.kernel, &other_initrd, &[])),
        ),
        (
            "kernel",
            one(measure_with(&i.ovmf, &other_kernel, &i.initrd, &[])),
        ),
        (
            "firmware",
            one(measure_with(&other_ovmf, &i.kernel, &i.initrd, &[])),
        ),
    ];
    for (what, d) in &variants {
        assert_ne!(d, &base, "changing the {what} must change the measurement");
    }
    for (a, (wa, da)) in variants.iter().enumerate() {
        for (wb, db) in &variants[a + 1..] {
            assert_ne!(da, db, "{wa} and {wb} changes collide");
        }
    }
}

/// An independent implementation: the sev crate's measurement module (Rust, virtee) against
/// sev-snp-measure (Python) through deploy/snp/measure.
#[test]
fn the_measurement_agrees_with_the_sev_crate() {
    use sev::measurement::snp::{snp_calc_launch_digest, SnpMeasurementArgs};
    use sev::measurement::vcpu_types::CpuType;
    use sev::measurement::vmsa::{GuestFeatures, VMMType};

    let i = image();
    let cmdline = "console=ttyS0 rdinit=/init bastion.test=1";
    for (vcpus, cpu, name) in [
        (4u32, CpuType::EpycV4, "EPYC-v4"),
        (2, CpuType::EpycMilan, "EPYC-Milan"),
        (16, CpuType::EpycGenoa, "EPYC-Genoa"),
    ] {
        let ours = digest(&[
            "--vcpus",
            &vcpus.to_string(),
            "--vcpu-type",
            name,
            "--append",
            cmdline,
        ]);
        let theirs = snp_calc_launch_digest(SnpMeasurementArgs {
            vcpus,
            vcpu_type: cpu,
            ovmf_file: i.ovmf.clone(),
            guest_features: GuestFeatures::default(),
            kernel_file: Some(i.kernel.clone()),
            initrd_file: Some(i.initrd.clone()),
            append: Some(cmdline),
            ovmf_hash_str: None,
            vmm_type: Some(VMMType::QEMU),
        })
        .expect("the sev crate measures the test image");
        assert_eq!(ours, theirs.get_hex_ld(), "{vcpus} x {name}");
    }
}

fn bastion_verify(policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["attest", "verify", "--report"])
        .arg(vector("virtee-sev/report_milan.hex"))
        .arg("--cert")
        .arg(vector("virtee-sev/vcek_milan.der"))
        .args(["--at", AT, "--policy"])
        .arg(policy)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run bastion")
}

#[test]
fn the_generated_policy_is_what_bastion_attest_verify_reads() {
    let dir = scratch();
    let ours = dir.join("policy-ours.toml");
    let stdout = measure(&[
        "--vcpus",
        "4",
        "--vcpus",
        "8",
        "--policy",
        ours.to_str().unwrap(),
        "--min-tcb",
        MIN_TCB,
    ]);
    let image_digests = node_toml_measurements(&stdout);
    assert_eq!(image_digests.len(), 2, "one per vCPU count: {stdout}");
    assert!(!image_digests.contains(&MILAN_MEASUREMENT.to_string()));

    // The file parses as the verifier's policy, with exactly these measurements and the TCB.
    let text = std::fs::read_to_string(&ours).unwrap();
    let policy = Policy::from_toml(&text).expect("the generated policy parses");
    let MeasurementRule::AllowList(list) = &policy.measurements else {
        panic!("an allow-list, not any measurement: {text}");
    };
    let listed: Vec<String> = list.iter().map(hex::encode).collect();
    assert_eq!(listed, image_digests);
    assert_eq!(
        (
            policy.min_tcb.bootloader,
            policy.min_tcb.tee,
            policy.min_tcb.snp,
            policy.min_tcb.microcode
        ),
        (3, 0, 8, 115)
    );

    // Our image is not the one that produced the real Milan report: refused, by measurement.
    let out = bastion_verify(&ours);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected a refusal: {stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("MEASUREMENT") && stderr.contains(MILAN_MEASUREMENT),
        "{stderr}"
    );

    // The same generator, told the report's measurement too: accepted, measurement checked.
    let with_milan = dir.join("policy-with-milan.toml");
    measure(&[
        "--vcpus",
        "4",
        "--vcpus",
        "8",
        "--add-measurement",
        &MILAN_MEASUREMENT.to_uppercase(),
        "--policy",
        with_milan.to_str().unwrap(),
        "--min-tcb",
        MIN_TCB,
    ]);
    let out = bastion_verify(&with_milan);
    let v: serde_json::Value =
        serde_json::from_str(&check(out, "bastion attest verify")).expect("one JSON verdict");
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["measurement"], MILAN_MEASUREMENT);
    assert_eq!(v["measurement_checked"], true);
    assert_eq!(v["policy_file"], with_milan.to_str().unwrap());
}

#[test]
fn measure_refuses_what_the_verifier_would() {
    venv();
    let i = image();
    let program = root().join("deploy/snp/measure");
    let base = i.args();
    let policy = scratch().join("never-written.toml");
    let refusals: [(&[&str], &str); 4] = [
        (&["--policy", policy.to_str().unwrap()], "--min-tcb"),
        (
            &["--policy", policy.to_str().unwrap(), "--min-tcb", "fmc=1"],
            "all zero",
        ),
        (&["--add-measurement", "abcd"], "96 hex digits"),
        (&["--vcpu-type", "Pentium"], "sev-snp-measure failed"),
    ];
    for (extra, reason) in refusals {
        let out = run(&program, &[&base[..], extra].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} should be refused");
        assert!(stderr.contains(reason), "{extra:?}: {stderr}");
    }
    assert!(!policy.exists());
    // A real Debian OVMF (OvmfPkgX64, no SNP_KERNEL_HASHES section) cannot check a kernel:
    // measuring one with a kernel is an error, not a digest nobody will ever see. Stand in
    // for it with firmware whose metadata lacks the section.
    let without = i.dir.join("OVMF.no-metadata.fd");
    std::fs::write(&without, vec![0u8; 64 * 1024]).unwrap();
    let out = run(
        &program,
        &[
            "--ovmf",
            without.to_str().unwrap(),
            "--kernel",
            i.kernel.to_str().unwrap(),
            "--initrd",
            i.initrd.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SNP_KERNEL_HASHES"));
}

#[test]
fn launch_dry_run_prints_the_measured_command() {
    let i = image();
    let out = check(
        run(
            &root().join("deploy/snp/launch"),
            &[
                &["--dry-run"][..],
                &i.args(),
                &["--vcpus", "8", "--cpu", "EPYC-Milan"],
            ]
            .concat(),
        ),
        "deploy/snp/launch --dry-run",
    );
    let line = out.trim_end();
    assert_eq!(out.lines().count(), 1, "one command: {out}");
    for part in [
        "qemu-system-x86_64 ".to_string(),
        " -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on,policy=0x30000 ".into(),
        " -machine q35,confidential-guest-support=sev0,memory-backend=ram0,".into(),
        " -object memory-backend-memfd,id=ram0,".into(),
        " -cpu EPYC-Milan ".into(),
        " -smp 8 ".into(),
        format!(" -bios {} ", i.ovmf.display()),
        format!(" -kernel {} ", i.kernel.display()),
        format!(" -initrd {} ", i.initrd.display()),
        format!(" -append '{}' ", default_cmdline()),
    ] {
        assert!(line.contains(&part), "missing {part:?} in {line}");
    }
    // Policy 0x30000 is the real Milan report's: what the verifier's defaults accept.
    assert!(!line.contains("debug"));
}

/// `sha256sum FILE`'s digest: the pin computed outside deploy/snp and the node.
fn sha256sum(file: &Path) -> String {
    let out = check(
        run(Path::new("sha256sum"), &[file.to_str().unwrap()]),
        "sha256sum",
    );
    let digest = out.split_whitespace().next().unwrap().to_string();
    assert_eq!(digest.len(), 64, "{out}");
    digest
}

/// A nodes' policy file in the test image's folder, loadable by the node's config loader.
fn node_policy(name: &str, measurement: &str) -> PathBuf {
    let file = image().dir.join(name);
    std::fs::write(
        &file,
        format!("[tee]\nmeasurements = [\"{measurement}\"]\n[tee.min_tcb]\nsnp = 8\n"),
    )
    .unwrap();
    file
}

/// deploy/snp/cmdline's line, what measure and launch start from.
fn default_cmdline() -> String {
    let text = std::fs::read_to_string(root().join("deploy/snp/cmdline")).unwrap();
    text.lines().next().unwrap().to_string()
}

#[test]
fn measure_node_policy_pins_the_policy_files_sha256_on_the_command_line() {
    let policy = node_policy("node-policy.toml", MILAN_MEASUREMENT);
    let policy_arg = policy.to_str().unwrap();
    let unpinned = digest(&[]);
    let pinned = digest(&["--node-policy", policy_arg]);
    assert_ne!(pinned, unpinned, "the pin is measured");
    // Exactly the command line with the parameter appended, the hash computed independently.
    let explicit = format!(
        "{} bastion.policy_sha256={}",
        default_cmdline(),
        sha256sum(&policy)
    );
    assert_eq!(digest(&["--append", &explicit]), pinned);
    // Another policy file, another measurement.
    let other = node_policy("node-policy-other.toml", &"00".repeat(48));
    assert_ne!(digest(&["--node-policy", other.to_str().unwrap()]), pinned);
    // The node's loader records the same SHA-256 for the file that the pin names.
    let node = image().dir.join("node-with-policy.toml");
    std::fs::write(&node, "name = \"n\"\npolicy = \"node-policy.toml\"\n").unwrap();
    let config = NodeConfig::load(&node).expect("node.toml with the policy file loads");
    assert_eq!(config.policy.unwrap().sha256_hex(), sha256sum(&policy));
    assert_eq!(config.tee.measurements[0].to_hex(), MILAN_MEASUREMENT);
    // A pin already on the command line and --node-policy: two pins, refused.
    venv();
    let i = image();
    let out = run(
        &root().join("deploy/snp/measure"),
        &[
            &i.args()[..],
            &["--append", &explicit, "--node-policy", policy_arg],
        ]
        .concat(),
    );
    assert!(!out.status.success(), "two pins were measured");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
}

#[test]
fn launch_dry_run_with_node_policy_appends_the_pin() {
    let i = image();
    let policy = node_policy("node-policy-launch.toml", MILAN_MEASUREMENT);
    let launch = |extra: &[&str]| {
        let args = [&["--dry-run"][..], &i.args(), extra].concat();
        run(&root().join("deploy/snp/launch"), &args)
    };
    let out = check(
        launch(&["--node-policy", policy.to_str().unwrap()]),
        "deploy/snp/launch --dry-run --node-policy",
    );
    let expected = format!(
        " -append '{} bastion.policy_sha256={}' ",
        default_cmdline(),
        sha256sum(&policy)
    );
    assert!(out.contains(&expected), "missing {expected:?} in {out}");
    let missing = i.dir.join("no-such-policy.toml");
    let out = launch(&["--node-policy", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-policy.toml"));
}

#[test]
fn k8s_manifests_validate_against_kubernetes_1_30() {
    venv();
    let out = check(
        run(&root().join("deploy/k8s/validate"), &["1.30.0"]),
        "deploy/k8s/validate",
    );
    let _ = out;
    // The validator is not vacuous: a misspelled field is an error under --strict.
    let bad = scratch().join("bad-statefulset.yaml");
    let text = std::fs::read_to_string(root().join("deploy/k8s/bastion.yaml")).unwrap();
    std::fs::write(
        &bad,
        text.replace("serviceName: bastion", "servicName: bastion"),
    )
    .unwrap();
    let out = run(
        &venv().join("bin/kubernetes-validate"),
        &[
            "--strict",
            "--kubernetes-version",
            "1.30.0",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "a typo must fail validation");
}

/// ConfigMap `name` of deploy/k8s/`file`, extracted as a pod would see it mounted.
fn extract(file: &str, name: &str, dir: &Path) {
    venv();
    check(
        run(
            &root().join("deploy/k8s/configmap-data"),
            &[
                root().join("deploy/k8s").join(file).to_str().unwrap(),
                name,
                "--extract",
                dir.to_str().unwrap(),
            ],
        ),
        "deploy/k8s/configmap-data",
    );
}

#[test]
fn k8s_node_toml_renders_and_loads_with_the_config_loader() {
    let etc = scratch().join("k8s-etc");
    let _ = std::fs::remove_dir_all(&etc);
    extract("config.yaml", "bastion-node", &etc.join("node"));
    extract("config.yaml", "bastion-job", &etc.join("job"));
    let coordinator_ip = "10.244.1.7";
    for ordinal in 0..3 {
        let pod = format!("bastion-{ordinal}");
        let pod_ip = format!("10.244.{}.7", ordinal + 1);
        let run_dir = scratch().join(format!("k8s-run-{ordinal}"));
        let mut render = Command::new("sh");
        render
            .arg(etc.join("node/render.sh"))
            .env("POD_NAME", &pod)
            .env("POD_IP", &pod_ip)
            .env("BASTION_CONFIG_DIR", &etc)
            .env("BASTION_RUN_DIR", &run_dir);
        if ordinal > 0 {
            // In the cluster render.sh resolves pod 0 through the headless Service.
            render.env("COORDINATOR_IP", coordinator_ip);
        }
        check(render.output().unwrap(), "render.sh");
        let config = NodeConfig::load(&run_dir.join("node.toml"))
            .unwrap_or_else(|e| panic!("{pod}'s node.toml: {e}"));
        assert_eq!(config.name, pod);
        assert_eq!(config.serve_coordinator, ordinal == 0);
        assert_eq!(
            config.coordinator.to_string(),
            format!("{coordinator_ip}:7700")
        );
        assert_eq!(config.ring_listen.to_string(), format!("{pod_ip}:7800"));
        assert_eq!(config.metrics_listen.unwrap().port(), 9100);
        assert_eq!(config.party_listen.unwrap().port(), 7900);
        assert!(!config.tee.simulated && !config.tee.trust_simulated);
        assert_eq!(config.tee.measurements.len(), 1);
        assert_eq!(config.datasets.len(), 1);
        assert_eq!(config.datasets[0].name, format!("dataset-{ordinal}"));
        assert_eq!(config.datasets[0].format, "pushed");
        assert_eq!(config.parties.len(), 5);
        assert_eq!(config.job_given, ordinal == 0);
        if ordinal == 0 {
            assert_eq!(config.job.schedule.nodes, 3);
        }
    }
    // The Service and the containers expose the ports the configs listen on.
    let manifest = std::fs::read_to_string(root().join("deploy/k8s/bastion.yaml")).unwrap();
    for port in ["7700", "7800", "7900", "9100"] {
        assert!(
            manifest.contains(&format!("port: {port}")),
            "Service port {port}"
        );
        assert!(
            manifest.contains(&format!("containerPort: {port}")),
            "containerPort {port}"
        );
    }
}

#[test]
fn k8s_policy_configmap_is_a_verification_policy() {
    let dir = scratch().join("k8s-policy");
    let _ = std::fs::remove_dir_all(&dir);
    extract("config.yaml", "bastion-policy", &dir);
    let text = std::fs::read_to_string(dir.join("policy.toml")).unwrap();
    let policy = Policy::from_toml(&text).expect("policy.toml parses");
    assert!(!policy.min_tcb.is_unset());
    assert!(matches!(policy.measurements, MeasurementRule::AllowList(ref l) if l.len() == 1));
}

#[test]
fn k8s_dashboards_configmap_equals_grafanas_files() {
    for (name, source) in [
        ("bastion-grafana-dashboards", "grafana/dashboards"),
        (
            "bastion-grafana-provider",
            "grafana/provisioning/dashboards",
        ),
    ] {
        let dir = scratch().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        extract("grafana-dashboards.yaml", name, &dir);
        let mut expected: Vec<String> = std::fs::read_dir(root().join(source))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        expected.sort();
        found.sort();
        assert_eq!(found, expected, "{name} holds every file of {source}");
        for file in &expected {
            assert_eq!(
                std::fs::read(dir.join(file)).unwrap(),
                std::fs::read(root().join(source).join(file)).unwrap(),
                "{name}: {file} differs from {source}/{file}: run deploy/k8s/generate-dashboards"
            );
        }
    }
}
