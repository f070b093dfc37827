//! `node.toml` and `job.toml`: the example files parse, unknown fields and bad values are
//! refused by name.

use bastion_actors::config::{NodeConfig, OnNodeLoss};
use bastion_actors::job::{JobSpec, LrSchedule, ModelSpec, OptimSpec};
use std::path::Path;

fn example(dir: &str, name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(dir)
        .join(name)
}

#[test]
fn the_example_configs_parse() {
    let coordinator = NodeConfig::load(&example("resnet-cancer", "coordinator.toml")).unwrap();
    assert!(coordinator.serve_coordinator);
    // The job file named in node.toml is read, relative to it.
    assert_eq!(coordinator.job.schedule.nodes, 3);
    assert_eq!(coordinator.job.schedule.on_node_loss, OnNodeLoss::Continue);
    assert!(matches!(
        coordinator.job.model,
        ModelSpec::Resnet { depth: 18, .. }
    ));
    assert_eq!(coordinator.datasets[0].name, "hospital-a");
    assert_eq!(coordinator.datasets[0].format, "medmnist-npz");
    let member = NodeConfig::load(&example("resnet-cancer", "member.toml")).unwrap();
    assert!(!member.serve_coordinator);
    assert_eq!(member.datasets[0].epsilon_budget, 8.0);
    assert_eq!(member.datasets[0].format, "image-folder");
    // Defaults fill what a member leaves out.
    assert_eq!(member.timeouts.heartbeat_ms, 300);
    let gpt = JobSpec::load(&example("gpt-finetune", "job.toml")).unwrap();
    assert!(matches!(gpt.model, ModelSpec::Gpt2 { .. }));
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
    assert!(matches!(c.job.model, ModelSpec::Resnet { depth: 18, .. }));
}

fn refusal(text: &str) -> String {
    NodeConfig::parse(text, "node.toml")
        .unwrap_err()
        .to_string()
}

fn job_refusal(text: &str) -> String {
    JobSpec::parse(text, "job.toml").unwrap_err().to_string()
}

#[test]
fn unknown_fields_and_bad_values_are_refused_by_name() {
    let e = refusal("name = \"n\"\nbatchsize = 3");
    assert!(e.contains("node.toml") && e.contains("batchsize"), "{e}");
    let e = refusal("name = \"n\"\n[job.privacy]\nepsilon = -1.0");
    assert!(e.contains("privacy.epsilon"), "{e}");
    let e = refusal("name = \"n\"\n[job.model]\nkind = \"resnet\"\ndepth = 50");
    assert!(e.contains("model.depth") && e.contains("50"), "{e}");
    let e = refusal("name = \"n\"\n[[datasets]]\nname = \"a\"\n[[datasets]]\nname = \"a\"");
    assert!(e.contains("datasets[1].name"), "{e}");
    let e = refusal("name = \"n\"\n[[datasets]]\nname = \"a\"\nformat = \"csv\"");
    assert!(e.contains("datasets[0].format") && e.contains("csv"), "{e}");
    let e = refusal("name = \"n\"\n[[datasets]]\nname = \"a\"\nformat = \"jsonl\"");
    assert!(e.contains("datasets[0].path"), "{e}");
    let e = refusal("name = \"n\"\n[[datasets]]\nname = \"a\"\nformat = \"text-lines\"\npath = \"x\"\nfield = \"t\"");
    assert!(e.contains("datasets[0].field"), "{e}");
    let e = refusal("name = \"n\"\n[job.privacy]\naccountant = \"magic\"");
    assert!(e.contains("magic"), "{e}");
    let e = refusal("name = \"n\"\n[job.schedule]\non_node_loss = \"panic\"");
    assert!(e.contains("panic"), "{e}");
    let e = refusal("name = \"n\"\njob = 3");
    assert!(e.contains("job") && e.contains("integer"), "{e}");
    let e = refusal("name = \"n\"\njob = \"/nonexistent/job.toml\"");
    assert!(e.contains("/nonexistent/job.toml"), "{e}");
    let e = refusal("name = \"n\"\n[timeouts]\nheartbeat_ms = 5000\nnode_timeout_ms = 1000");
    assert!(e.contains("timeouts"), "{e}");
    let e = refusal("name = \"\"");
    assert!(e.contains("name"), "{e}");
    let e = NodeConfig::load(Path::new("/nonexistent/node.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/node.toml"), "{e}");
}

/// Every section of job.toml refuses an unknown field and each bad value, naming it.
#[test]
fn a_job_file_with_any_bad_field_is_refused_naming_it() {
    let cases: &[(&str, &str)] = &[
        ("[model]\nkind = \"resnet\"\nlayers = 3", "layers"),
        ("[model]\nkind = \"vit\"", "vit"),
        ("[model]\nkind = \"resnet\"\nclasses = [\"a\"]", "model.classes"),
        ("[model]\nkind = \"resnet\"\nclasses = [\"a\", \"a\"]", "model.classes"),
        ("[model]\nkind = \"resnet\"\nimage_size = 4", "model.image_size"),
        ("[model]\nkind = \"resnet\"\nchannels = 2", "model.channels"),
        ("[model]\nkind = \"gpt2\"", "model.checkpoint"),
        ("[model]\nkind = \"gpt2\"\ncheckpoint = \"c\"\nseq_len = 1", "model.seq_len"),
        ("[model]\nkind = \"gpt2\"\nconfig = { n_layer = 2, n_embd = 30, n_head = 4, n_positions = 64 }\ntokenizer = \"t.json\"", "model.config"),
        ("[model]\nkind = \"gpt2\"\nconfig = { n_layer = 2, n_embd = 32, n_head = 4, n_positions = 64 }", "model.tokenizer"),
        ("[model]\nkind = \"gpt2\"\nconfig = { n_layer = 2, n_embd = 32, n_head = 4, n_positions = 64 }\ntokenizer = \"t.json\"\nseq_len = 128", "model.seq_len"),
        ("[lora]\nrank = 4", "lora"),
        ("[model]\nkind = \"gpt2\"\ncheckpoint = \"c\"\n[lora]\nrank = 0", "lora.rank"),
        ("[model]\nkind = \"gpt2\"\ncheckpoint = \"c\"\n[lora]\nrank = 4\ntargets = [\"q_proj\"]", "q_proj"),
        ("[model]\nkind = \"gpt2\"\ncheckpoint = \"c\"\n[lora]\nrank = 4\ndropout = 0.1", "dropout"),
        ("[optim]\nkind = \"lion\"", "lion"),
        ("[optim]\nlr = 0.0", "optim.lr"),
        ("[optim]\nmomentum = 1.0", "optim.momentum"),
        ("[optim]\nbetas = [0.9, 1.0]", "optim.betas"),
        ("[optim]\nschedule = \"step\"", "step"),
        ("[privacy]\ndelta = 1.5", "privacy.delta"),
        ("[privacy]\nmax_grad_norm = 0.0", "privacy.max_grad_norm"),
        ("[privacy]\nepsilon = 8.0\nsigma = 1.0", "sigma"),
        ("[schedule]\nnodes = 0", "schedule.nodes"),
        ("[schedule]\nbatch_size = 8\nsampling_rate = 0.1", "schedule.sampling_rate"),
        ("[schedule]\nsampling_rate = 1.5", "schedule.sampling_rate"),
        ("[schedule]\nepochs = 2.0\nsteps = 10", "schedule.steps"),
        ("[schedule]\ncheckpoint_every = 0", "schedule.checkpoint_every"),
        ("[eval]\nformat = \"csv\"\npath = \"x\"", "eval.format"),
        ("[eval]\nformat = \"jsonl\"\npath = \"x\"", "eval.format"),
        ("[eval]\nformat = \"medmnist-npz\"", "eval.path"),
        ("[epochs]\nn = 3", "epochs"),
    ];
    for (text, named) in cases {
        let e = job_refusal(text);
        assert!(
            e.contains("job.toml") && e.contains(named),
            "{text:?}: the error does not name {named:?}: {e}"
        );
    }
}

#[test]
fn job_paths_are_taken_from_the_job_files_folder() {
    let dir = std::env::temp_dir().join(format!("bastion-job-paths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("job.toml");
    std::fs::write(
        &path,
        "[model]\nkind = \"gpt2\"\ncheckpoint = \"base\"\n[eval]\nformat = \"jsonl\"\npath = \"held-out.jsonl\"\n",
    )
    .unwrap();
    let job = JobSpec::load(&path).unwrap();
    match &job.model {
        ModelSpec::Gpt2 { checkpoint, .. } => {
            assert_eq!(checkpoint.as_deref(), Some(dir.join("base").as_path()))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        job.eval.unwrap().path.as_deref(),
        Some(dir.join("held-out.jsonl").as_path())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The schedules against hand-computed values: warm-up is linear from lr/w, linear decays to
/// 0 at the last step, cosine is lr/2 (1 + cos(pi t)).
#[test]
fn learning_rate_schedules() {
    let spec = |schedule, warmup_steps| OptimSpec {
        lr: 1.0,
        warmup_steps,
        schedule,
        ..OptimSpec::default()
    };
    let constant = spec(LrSchedule::Constant, 0);
    assert_eq!(constant.lr_at(0, 10), 1.0);
    assert_eq!(constant.lr_at(9, 10), 1.0);
    let linear = spec(LrSchedule::Linear, 0);
    assert_eq!(linear.lr_at(0, 10), 1.0);
    assert!((linear.lr_at(5, 10) - 0.5).abs() < 1e-12);
    let cosine = spec(LrSchedule::Cosine, 4);
    assert_eq!(cosine.lr_at(0, 14), 0.25);
    assert_eq!(cosine.lr_at(3, 14), 1.0);
    assert_eq!(cosine.lr_at(4, 14), 1.0);
    // Halfway through the 10 post-warm-up steps: cos(pi/2) = 0.
    assert!((cosine.lr_at(9, 14) - 0.5).abs() < 1e-12);
}

/// q and steps: from the batch size or the rate, from epochs or steps, capped by max_steps.
#[test]
fn sampling_rate_and_steps() {
    let job = |text: &str| JobSpec::parse(text, "job.toml").unwrap();
    assert_eq!(
        job("[schedule]\nbatch_size = 64\nepochs = 2.0").sampling(1024),
        (0.0625, 32)
    );
    assert_eq!(
        job("[schedule]\nsampling_rate = 0.5\nsteps = 7").sampling(1024),
        (0.5, 7)
    );
    assert_eq!(
        job("[schedule]\nbatch_size = 64\nepochs = 2.0\nmax_steps = 5").sampling(1024),
        (0.0625, 5)
    );
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

/// The parties' example, with its key placeholders filled in as `bastion party keygen` would.
#[test]
fn the_parties_example_parses_once_its_keys_are_filled_in() {
    let path = example("resnet-cancer", "parties/coordinator.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let filled = ["HOSPITAL-A", "HOSPITAL-B", "ONCOLOGY-LAB", "OPERATOR"]
        .iter()
        .enumerate()
        .fold(text.clone(), |t, (i, who)| {
            t.replace(
                &format!("REPLACE-WITH-{who}-KEY-64-HEX"),
                &format!("{i}").repeat(64),
            )
        });
    let c = NodeConfig::parse(&filled, "parties/coordinator.toml").unwrap();
    assert!(
        c.serve_coordinator && !c.job_given,
        "the model owner submits the job"
    );
    assert_eq!(c.datasets[0].format, "pushed");
    assert_eq!(c.parties.len(), 4);
    assert!(c.party_listen.is_some());
    // As shipped (placeholders), the keys are refused by name.
    let err = NodeConfig::parse(&text, "as shipped")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parties") && err.contains("hospital-a"),
        "{err}"
    );
}

#[test]
fn pushed_datasets_and_parties_are_checked_by_name() {
    let owner = format!(
        "party_listen = \"127.0.0.1:7900\"\n[[parties]]\nname = \"h\"\nkey = \"{}\"\nrole = \"data-owner\"\ndatasets = [\"a\"]\n",
        "ab".repeat(32)
    );
    let ok = format!("name = \"n\"\n{owner}[[datasets]]\nname = \"a\"\nformat = \"pushed\"\n");
    NodeConfig::parse(&ok, "ok").unwrap();
    for (text, field, why) in [
        (
            // The owner's push sets the budget; the node's operator may not.
            format!("name = \"n\"\n{owner}[[datasets]]\nname = \"a\"\nformat = \"pushed\"\nepsilon_budget = 50.0\n"),
            "datasets[0].epsilon_budget",
            "owner's push",
        ),
        (
            format!("name = \"n\"\n{owner}[[datasets]]\nname = \"a\"\nformat = \"pushed\"\npath = \"x.npz\"\n"),
            "datasets[0].path",
            "only its name",
        ),
        (
            format!("name = \"n\"\n{owner}[[datasets]]\nname = \"b\"\nformat = \"pushed\"\n"),
            "datasets[0].name",
            "no owner",
        ),
        (
            format!("name = \"n\"\n{}", owner.replace("party_listen = \"127.0.0.1:7900\"\n", "")),
            "party_listen",
            "does not listen",
        ),
        (
            format!("name = \"n\"\n{}", owner.replace(&"ab".repeat(32), "xyz")),
            "parties",
            "64 hex",
        ),
    ] {
        let err = NodeConfig::parse(&text, "t").unwrap_err().to_string();
        assert!(err.contains(field) && err.contains(why), "{field}: {err}");
    }
}

#[test]
fn a_job_names_its_datasets_and_never_its_model_owner() {
    let job = JobSpec::parse("datasets = [\"a\", \"b\"]\n", "job").unwrap();
    assert_eq!(job.datasets, ["a", "b"]);
    assert_eq!(job.model_owner, None);
    // The model owner is who submitted it, never something the file can claim.
    let err = JobSpec::parse("model_owner = \"ab\"\n", "job")
        .unwrap_err()
        .to_string();
    assert!(err.contains("model_owner"), "{err}");
}

#[test]
fn device_is_the_cpu_unless_the_config_names_gpus() {
    use bastion_actors::device::ComputeDevice::{Cpu, Cuda};
    let c = NodeConfig::parse("name = \"n\"", "inline").unwrap();
    assert_eq!(c.compute_device().unwrap(), Cpu);
    for (value, device) in [
        ("cpu", Cpu),
        ("cuda", Cuda(vec![0])),
        ("cuda:1", Cuda(vec![1])),
        ("cuda:0,1,3", Cuda(vec![0, 1, 3])),
    ] {
        let c = NodeConfig::parse(&format!("name = \"n\"\ndevice = {value:?}"), "inline").unwrap();
        assert_eq!(c.compute_device().unwrap(), device, "{value}");
        assert_eq!(
            c.compute_device().unwrap().devices().len(),
            match value {
                "cuda:0,1,3" => 3,
                _ => 1,
            }
        );
    }
}

#[test]
fn a_bad_device_is_refused_by_name() {
    for (value, says) in [
        ("gpu", "is not one of \"cpu\", \"cuda\""),
        ("CUDA:0", "is not one of"),
        ("cuda:", "\"\" is not a GPU number"),
        ("cuda:x", "\"x\" is not a GPU number"),
        ("cuda:-1", "\"-1\" is not a GPU number"),
        ("cuda:+1", "\"+1\" is not a GPU number"),
        ("cuda:0,", "\"\" is not a GPU number"),
        ("cuda:0,0", "names GPU 0 twice"),
        ("cuda:99999999999999999999999", "is too large"),
    ] {
        let e = refusal(&format!("name = \"n\"\ndevice = {value:?}"));
        assert!(
            e.starts_with(&format!("config node.toml: device: {value:?}")),
            "{value}: {e}"
        );
        assert!(e.contains(says), "{value}: {e}");
    }
}

/// A fresh folder for one test's node.toml and policy file.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A deployment's policy: two peer images, a minimum TCB, a data owner and a model owner.
fn policy_toml() -> String {
    format!(
        "[tee]\nmeasurements = [\"{}\", \"{}\"]\n[tee.min_tcb]\nbootloader = 3\nsnp = 8\nmicrocode = 115\n\n\
         [[parties]]\nname = \"hospital-a\"\nkey = \"{}\"\nrole = \"data-owner\"\ndatasets = [\"a\"]\n\n\
         [[parties]]\nname = \"lab\"\nkey = \"{}\"\nrole = \"model-owner\"\n",
        "11".repeat(48),
        "22".repeat(48),
        "ab".repeat(32),
        "cd".repeat(32),
    )
}

const NODE_WITH_POLICY: &str = "name = \"n\"\npolicy = \"node-policy.toml\"\n\
    party_listen = \"127.0.0.1:7900\"\n[[datasets]]\nname = \"a\"\nformat = \"pushed\"\n";

/// `sha256sum FILE`'s digest: computed outside the code under test.
fn sha256sum(file: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let digest = text.split_whitespace().next().unwrap().to_string();
    assert_eq!(digest.len(), 64, "{text}");
    digest
}

#[test]
fn a_policy_file_supplies_the_peer_policy_and_roster_and_its_sha256_is_kept() {
    let dir = scratch("policy");
    let policy = dir.join("node-policy.toml");
    std::fs::write(&policy, policy_toml()).unwrap();
    let node = dir.join("node.toml");
    std::fs::write(&node, NODE_WITH_POLICY).unwrap();
    let c = NodeConfig::load(&node).unwrap();
    let measurements: Vec<String> = c.tee.measurements.iter().map(|m| m.to_hex()).collect();
    assert_eq!(measurements, ["11".repeat(48), "22".repeat(48)]);
    let min = c.tee.min_tcb.expect("min_tcb from the policy file");
    assert_eq!(
        (min.bootloader, min.tee, min.snp, min.microcode),
        (3, 0, 8, 115)
    );
    assert!(!c.tee.trust_simulated);
    let names: Vec<&str> = c.parties.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["hospital-a", "lab"]);
    let source = c.policy.expect("the policy file is recorded");
    assert_eq!(source.path, policy, "relative to node.toml");
    assert_eq!(source.sha256_hex(), sha256sum(&policy));

    // One byte more in the file, another hash.
    std::fs::write(&policy, policy_toml() + "\n").unwrap();
    let changed = NodeConfig::load(&node).unwrap().policy.unwrap();
    assert_eq!(changed.sha256_hex(), sha256sum(&policy));
    assert_ne!(changed.sha256, source.sha256);

    // Without `policy`, nothing is recorded and node.toml's own settings count, as before.
    let plain = NodeConfig::parse("name = \"n\"", "node.toml").unwrap();
    assert!(plain.policy.is_none());
}

#[test]
fn a_setting_in_both_node_toml_and_the_policy_file_is_refused_by_name() {
    let dir = scratch("both");
    std::fs::write(dir.join("node-policy.toml"), policy_toml()).unwrap();
    let node = dir.join("node.toml");
    for (extra, field, shown) in [
        (
            format!("[tee]\nmeasurements = [\"{}\"]\n", "33".repeat(48)),
            "tee.measurements",
            "[tee] measurements",
        ),
        (
            "[tee.min_tcb]\nsnp = 1\n".to_string(),
            "tee.min_tcb",
            "[tee] min_tcb",
        ),
        (
            // Even the safe value: a second place for it is what the pin must rule out.
            "[tee]\ntrust_simulated = false\n".to_string(),
            "tee.trust_simulated",
            "[tee] trust_simulated",
        ),
        (
            format!(
                "[[parties]]\nname = \"x\"\nkey = \"{}\"\nrole = \"operator\"\n",
                "ef".repeat(32)
            ),
            "parties",
            "[[parties]]",
        ),
    ] {
        std::fs::write(&node, format!("{NODE_WITH_POLICY}{extra}")).unwrap();
        let err = NodeConfig::load(&node).unwrap_err().to_string();
        assert!(err.contains(&format!(": {field}: ")), "{field}: {err}");
        assert!(
            err.contains(&format!("{shown} is in node.toml")),
            "{field}: {err}"
        );
        assert!(err.contains("node-policy.toml only"), "{field}: {err}");
    }
}

#[test]
fn a_missing_or_malformed_policy_file_is_refused_naming_it() {
    let dir = scratch("bad-policy");
    let node = dir.join("node.toml");
    std::fs::write(&node, NODE_WITH_POLICY).unwrap();
    let policy = dir.join("node-policy.toml");
    let err = NodeConfig::load(&node).unwrap_err().to_string();
    assert!(err.contains("cannot read the policy file"), "{err}");
    assert!(err.contains(&policy.display().to_string()), "{err}");

    for (text, why) in [
        ("[tee]\nmeasurements = [\"abcd\"]\n".to_string(), "96 hex"),
        // Only the shared security settings belong in it.
        ("name = \"n\"\n".to_string(), "name"),
        (
            policy_toml().replace("[tee]\n", "[tee]\nsimulated = true\n"),
            "simulated",
        ),
        ("[tee\n".to_string(), "TOML parse error"),
    ] {
        std::fs::write(&policy, &text).unwrap();
        let err = NodeConfig::load(&node).unwrap_err().to_string();
        assert!(
            err.contains(&format!("config {}: ", policy.display())),
            "{text}: {err}"
        );
        assert!(err.contains(why), "{text}: {err}");
    }
    // A value the policy file gives that the node refuses names the policy file too.
    std::fs::write(&policy, "[tee]\ntrust_simulated = true\n").unwrap();
    std::fs::write(&node, "name = \"n\"\npolicy = \"node-policy.toml\"\n").unwrap();
    let err = NodeConfig::load(&node).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "config {}: tee.trust_simulated: ",
            policy.display()
        )),
        "{err}"
    );
}
