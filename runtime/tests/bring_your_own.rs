//! The model owner's job on the parties' files, with real `bastion` processes on loopback:
//! a GPT-2 with LoRA fine-tuned on two parties' JSONL, every node starting from the
//! coordinator's bitwise-identical weights, the release in Hugging Face's and PEFT's layout
//! with its privacy figures; and a party whose file has a bad record refused before anything
//! of it is sealed or joined.

mod common;

use common::{free_port, serial};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bastion() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bastion"))
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bastion-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A party's texts: short sentences of its own vocabulary.
fn texts(party: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{party} memo {i}: the {party} team met on day {} and agreed.",
                i % 7
            )
        })
        .collect()
}

fn write_jsonl(path: &Path, lines: &[String]) {
    let body: String = lines
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string() + "\n")
        .collect();
    std::fs::write(path, body).unwrap();
}

/// A tokenizer and a job for a tiny fresh GPT-2 with LoRA on c_attn, in `dir`.
fn gpt_job(dir: &Path, nodes: usize) -> PathBuf {
    let corpus: Vec<String> = ["acme", "globex", "public"]
        .iter()
        .flat_map(|p| texts(p, 50))
        .collect();
    bastion_models::tokenizer::train_byte_level_bpe(&corpus, 320, &dir.join("tokenizer.json"))
        .unwrap();
    write_jsonl(&dir.join("held-out.jsonl"), &texts("public", 12));
    let job = format!(
        r#"[model]
kind = "gpt2"
config = {{ n_layer = 2, n_embd = 32, n_head = 2, n_positions = 32 }}
tokenizer = "tokenizer.json"
seq_len = 24

[lora]
rank = 2
alpha = 4.0
targets = ["c_attn", "c_fc"]

[optim]
kind = "adamw"
lr = 0.01
warmup_steps = 1
schedule = "linear"

[privacy]
epsilon = 8.0

[schedule]
nodes = {nodes}
batch_size = 16
steps = 4
checkpoint_every = 2

[eval]
format = "jsonl"
path = "held-out.jsonl"
"#
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job).unwrap();
    path
}

fn cluster_up(dir: &Path, job: &Path, datasets: &[String]) -> (bool, String, String) {
    let mut cmd = bastion();
    cmd.args(["cluster", "up", "--fresh", "--job"])
        .arg(job)
        .arg("--dir")
        .arg(dir.join("cluster"))
        .args(["--base-port", &free_port().to_string()]);
    for d in datasets {
        cmd.args(["--dataset", d]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn log(dir: &Path, node: usize) -> String {
    std::fs::read_to_string(dir.join(format!("cluster/node-{node}/node.log"))).unwrap_or_default()
}

#[test]
fn a_gpt2_with_lora_fine_tunes_on_two_parties_jsonl_and_is_released() {
    let _one_at_a_time = serial();
    let dir = scratch("byo-gpt");
    let job = gpt_job(&dir, 2);
    write_jsonl(&dir.join("acme.jsonl"), &texts("acme", 40));
    write_jsonl(&dir.join("globex.jsonl"), &texts("globex", 40));
    let datasets = [
        format!("acme=jsonl:{}", dir.join("acme.jsonl").display()),
        format!("globex=jsonl:{}", dir.join("globex.jsonl").display()),
    ];
    let (ok, stdout, stderr) = cluster_up(&dir, &job, &datasets);
    let logs = format!("{}\n---\n{}", log(&dir, 0), log(&dir, 1));
    assert!(ok, "cluster up failed: {stderr}\n{logs}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["status"], "completed", "{report}");
    assert_eq!(report["steps"], 4);

    // Every node started from the same bytes: the digest each logs of the model it built.
    let digest = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("model built from the job's initial weights"))
            .map(|l| l.rsplit("sha256=").next().unwrap().trim().to_string())
            .collect()
    };
    let (d0, d1) = (digest(&log(&dir, 0)), digest(&log(&dir, 1)));
    assert!(!d0.is_empty() && !d1.is_empty(), "{logs}");
    assert!(d0.iter().chain(&d1).all(|d| d == &d0[0]), "{d0:?} {d1:?}");

    // Perplexity on the model owner's held-out text, before and after.
    let eval = &report["evaluation"];
    let (before, after) = (
        eval["perplexity_before"].as_f64().unwrap(),
        eval["perplexity_after"].as_f64().unwrap(),
    );
    assert!(
        before.is_finite() && after.is_finite() && before > 1.0,
        "{eval}"
    );
    assert_eq!(eval["records"], 12);

    // The release: Hugging Face layout, the adapter in PEFT's, and the privacy figures.
    let release = PathBuf::from(report["release"].as_str().unwrap());
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "privacy.json",
    ] {
        assert!(
            release.join(file).exists(),
            "{file} missing in {}",
            release.display()
        );
    }
    let adapter: Value = serde_json::from_slice(
        &std::fs::read(release.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(adapter["r"], 2);
    assert_eq!(adapter["peft_type"], "LORA");
    let privacy: Value =
        serde_json::from_slice(&std::fs::read(release.join("privacy.json")).unwrap()).unwrap();
    for (shown, ledger) in privacy["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .zip(report["privacy"].as_array().unwrap())
    {
        assert_eq!(shown["dataset"], ledger["dataset"]);
        assert_eq!(shown["epsilon"], ledger["epsilon"]);
        assert!(shown["epsilon"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(privacy["sigma"], report["sigma"]);

    // The released model loads, and `bastion model perplexity` on it runs.
    let out = bastion()
        .args(["model", "perplexity", "--checkpoint"])
        .arg(&release)
        .arg("--text")
        .arg(dir.join("acme.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No record's text is in any node's log.
    for text in texts("acme", 40).iter().chain(&texts("globex", 40)) {
        assert!(
            !logs.contains(text.as_str()),
            "a record reached a log: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_party_with_a_bad_record_is_refused_before_anything_is_sealed() {
    let _one_at_a_time = serial();
    let dir = scratch("byo-bad");
    let job = gpt_job(&dir, 2);
    write_jsonl(&dir.join("acme.jsonl"), &texts("acme", 20));
    let mut lines: Vec<String> = texts("globex", 10)
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    lines[6] = "{\"text\": \"an unterminated string}".into();
    std::fs::write(dir.join("globex.jsonl"), lines.join("\n") + "\n").unwrap();
    let datasets = [
        format!("acme=jsonl:{}", dir.join("acme.jsonl").display()),
        format!("globex=jsonl:{}", dir.join("globex.jsonl").display()),
    ];
    let (ok, stdout, _) = cluster_up(&dir, &job, &datasets);
    assert!(!ok, "a bad record must stop the job: {stdout}");
    let member = log(&dir, 1);
    assert!(
        member.contains("globex.jsonl") && member.contains("line 7"),
        "the refusal must name the file and the line:\n{member}"
    );
    // Nothing of the bad dataset was sealed, and no step was trained.
    let shards = dir.join("cluster/node-1/shards");
    let sealed: Vec<_> = std::fs::read_dir(&shards)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(sealed.is_empty(), "{sealed:?}");
    assert!(!log(&dir, 0).contains("releasing the noisy share"));
    let _ = std::fs::remove_dir_all(&dir);
}
