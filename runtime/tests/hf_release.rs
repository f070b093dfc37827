//! The released GPT-2 of a LoRA job, checked with Hugging Face transformers and PEFT (Python,
//! installed by scripts/hf-venv.sh into the .libtorch venv; nothing is downloaded from a hub).
//!
//! transformers writes a small random GPT-2 with `save_pretrained` and a byte-level BPE
//! tokenizer trained by the Python `tokenizers` library: a checkpoint the project did not
//! write. A real two-node `bastion cluster up --job` fine-tunes it with LoRA on c_attn and c_fc
//! on two parties' JSONL. Then, on the release directory:
//! - transformers loads its merged weights (`GPT2LMHeadModel.from_pretrained` on a copy of
//!   `config.json`, `model.safetensors` and `tokenizer.json`) and computes the loss of a text
//!   that `bastion model perplexity` on the release reports (1e-4 relative) and the greedy
//!   continuation that `bastion model generate` returns (ids exactly); and
//!   `from_pretrained` on the release directory itself, with PEFT installed, gives the same
//!   logits (the adapter sits in `release/adapter/`, where transformers does not apply it a
//!   second time on top of the merged weights);
//! - PEFT applies the released adapter to the *original* base checkpoint
//!   (`PeftModel.from_pretrained`) and gets the logits transformers gets from the merged
//!   weights (1e-4): the adapter is in PEFT's names, shapes and scale, and is the same update
//!   as the merged weights. Its tensor names and shapes are those a fresh PEFT model of the
//!   same LoRA config saves, and every one of them was loaded. The comparison is sensitive:
//!   the adapter moves the logits far more than the tolerance, and PEFT with the scale doubled
//!   misses the merged logits;
//! - training moved exactly the targeted weights: every `c_attn.weight` and `c_fc.weight`
//!   differs from the base's, while every other tensor (embeddings, layer norms, biases,
//!   `c_proj`s) is bitwise the base's (frozen parameters get neither noise nor an update).

mod common;

use common::{free_port, serial};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const MAX_NEW_TOKENS: usize = 12;
const PROMPT: &str = "acme memo 3: the";

/// Writes the base checkpoint into `<dir>/base`: tokenizer trained on `<dir>/corpus.txt`,
/// a random GPT-2 (weights spread out so logits are far from uniform), `save_pretrained`.
const MAKE_BASE: &str = r#"
import os, sys, torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel

d = sys.argv[1]
base = os.path.join(d, "base")
os.makedirs(base, exist_ok=True)
bpe = ByteLevelBPETokenizer()
bpe.train([os.path.join(d, "corpus.txt")], vocab_size=600, min_frequency=2,
          special_tokens=["<|endoftext|>"], show_progress=False)
bpe.save(os.path.join(base, "tokenizer.json"))

torch.manual_seed(0)
# GPT-2's own bos/eos id 50256 (outside this vocabulary), as a hub config has it.
config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64,
                    vocab_size=bpe.get_vocab_size())
model = GPT2LMHeadModel(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if ".ln_" in name or name.startswith("transformer.ln_f"):
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn_like(p))
        else:
            p.copy_(0.2 * torch.randn_like(p))
model.save_pretrained(base)
"#;

/// Everything transformers and PEFT say about the release, as JSON on stdout.
const CHECK_RELEASE: &str = r#"
import json, sys, torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

base_dir, release, merged_only, text_file, prompt, max_new = sys.argv[1:7]
max_new = int(max_new)
out = {}

# transformers on the merged weights alone (the release's config.json, model.safetensors and
# tokenizer.json copied without the adapter files): the windowed loss of the text, as
# `model perplexity` defines it, and a greedy continuation.
tok = PreTrainedTokenizerFast(tokenizer_file=merged_only + "/tokenizer.json")
merged = GPT2LMHeadModel.from_pretrained(merged_only).eval()
out["merged_has_peft"] = bool(getattr(merged, "_hf_peft_config_loaded", False))
ids = tok(open(text_file, encoding="utf-8").read())["input_ids"]
n = merged.config.n_positions
total, count = 0.0, 0
with torch.no_grad():
    for s in range(0, len(ids), n):
        w = ids[s:s + n]
        if len(w) >= 2:
            t = torch.tensor([w])
            total += merged(t, labels=t).loss.double().item() * (len(w) - 1)
            count += len(w) - 1
out["tokens"], out["predicted"], out["loss"] = len(ids), count, total / count
eos = tok.convert_tokens_to_ids("<|endoftext|>")
prompt_ids = tok(prompt)["input_ids"]
with torch.no_grad():
    gen = merged.generate(torch.tensor([prompt_ids]),
                          attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                          max_new_tokens=max_new, do_sample=False, eos_token_id=eos,
                          pad_token_id=eos)
out["prompt_ids"] = prompt_ids
out["generated"] = gen[0, len(prompt_ids):].tolist()

# PEFT: the released adapter on the original base checkpoint.
g = torch.Generator().manual_seed(1)
x = torch.randint(0, merged.config.vocab_size, (2, n), generator=g)
base = GPT2LMHeadModel.from_pretrained(base_dir).eval()
with torch.no_grad():
    merged_logits = merged(x).logits
    base_logits = base(x).logits
peft_model = PeftModel.from_pretrained(base, release + "/adapter").eval()
with torch.no_grad():
    peft_logits = peft_model(x).logits
out["logit_scale"] = merged_logits.abs().max().item()
out["peft_vs_merged"] = (peft_logits - merged_logits).abs().max().item()
out["base_vs_merged"] = (base_logits - merged_logits).abs().max().item()
# transformers pointed at the release directory itself: with PEFT installed it finds
# adapter_config.json beside config.json and loads the adapter on top of the weights.
in_place = GPT2LMHeadModel.from_pretrained(release).eval()
out["in_place_has_peft"] = bool(getattr(in_place, "_hf_peft_config_loaded", False))
with torch.no_grad():
    out["in_place_vs_merged"] = (in_place(x).logits - merged_logits).abs().max().item()
# Every tensor of the file went into the model PEFT built.
file = load_file(release + "/adapter/adapter_model.safetensors")
loaded = get_peft_model_state_dict(peft_model)
out["adapter_keys"] = sorted(file)
out["peft_loaded_keys"] = sorted(loaded)
out["adapter_loaded_exactly"] = sorted(file) == sorted(loaded) and all(
    torch.equal(file[k], loaded[k]) for k in file)
out["adapter_dtypes"] = sorted({str(v.dtype) for v in file.values()})
# Sensitivity: the same adapter at twice its scale misses the merged logits.
for module in peft_model.modules():
    if hasattr(module, "scaling") and isinstance(module.scaling, dict):
        module.scaling = {k: 2 * v for k, v in module.scaling.items()}
with torch.no_grad():
    out["doubled_scale_vs_merged"] = (peft_model(x).logits - merged_logits).abs().max().item()
out["peft_scaling"] = sorted({v for m in peft_model.modules()
                              if hasattr(m, "scaling") and isinstance(m.scaling, dict)
                              for v in m.scaling.values()})

# The names and shapes a fresh PEFT model of the job's LoRA config saves.
cfg = json.load(open(release + "/adapter/adapter_config.json"))
fresh = get_peft_model(GPT2LMHeadModel.from_pretrained(base_dir),
                       LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"],
                                  fan_in_fan_out=True, task_type="CAUSAL_LM"))
out["expected_adapter"] = {k: list(v.shape) for k, v in get_peft_model_state_dict(fresh).items()}
out["adapter_shapes"] = {k: list(v.shape) for k, v in file.items()}
out["adapter_config"] = cfg

# The merged weights against the base's, tensor by tensor, as stored.
def tensors(path):
    f = load_file(path)
    return {k[len("transformer."):] if k.startswith("transformer.") else k: v
            for k, v in f.items()
            if k != "lm_head.weight" and not k.endswith((".attn.bias", ".attn.masked_bias"))}
b, r = tensors(base_dir + "/model.safetensors"), tensors(release + "/model.safetensors")
out["base_keys"], out["release_keys"] = sorted(b), sorted(r)
out["equal"] = sorted(k for k in b if k in r and b[k].dtype == r[k].dtype
                      and b[k].shape == r[k].shape and torch.equal(b[k], r[k]))
out["changed"] = {k: (r[k].double() - b[k].double()).abs().max().item()
                  for k in b if k in r and b[k].shape == r[k].shape and not torch.equal(b[k], r[k])}
print(json.dumps(out))
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_path_buf()
}

fn python(dir: &Path, args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(repo_root().join(".libtorch/bin/python"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("HF_HOME", dir.join("hf-home"))
        .output()
        .expect("running the venv's python");
    assert!(
        output.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn bastion(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(args)
        .output()
        .expect("running bastion");
    assert!(
        output.status.success(),
        "bastion {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("bastion prints JSON")
}

/// A party's texts: short sentences of its own vocabulary.
fn texts(party: &str, n: usize, offset: usize) -> Vec<String> {
    (offset..offset + n)
        .map(|i| {
            format!(
                "{party} memo {i}: the {party} team met on day {} and agreed to ship {} units.",
                i % 7,
                10 + i % 13
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

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

struct Fixture {
    dir: PathBuf,
    release: PathBuf,
    /// What transformers and PEFT computed on the release (CHECK_RELEASE's output).
    hf: Value,
}

/// Installs the venv, writes the base checkpoint with transformers, runs the job on it, runs
/// the Python checks on its release: once for all the tests.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let _one_at_a_time = serial();
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/hf-venv.sh"))
            .status()
            .expect("running scripts/hf-venv.sh");
        assert!(status.success(), "scripts/hf-venv.sh failed: {status}");

        let dir = std::env::temp_dir().join(format!("bastion-hf-release-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        // The base checkpoint, written by transformers.
        let corpus: Vec<String> = ["acme", "globex", "public"]
            .iter()
            .flat_map(|p| texts(p, 60, 0))
            .collect();
        std::fs::write(dir.join("corpus.txt"), corpus.join("\n") + "\n").unwrap();
        python(&dir, &["-c".as_ref(), MAKE_BASE.as_ref(), dir.as_os_str()]);
        let base = dir.join("base");

        // A real two-node LoRA job on it.
        write_jsonl(&dir.join("acme.jsonl"), &texts("acme", 40, 0));
        write_jsonl(&dir.join("globex.jsonl"), &texts("globex", 40, 0));
        write_jsonl(&dir.join("held-out.jsonl"), &texts("public", 12, 100));
        let job = format!(
            r#"[model]
kind = "gpt2"
checkpoint = "{}"
seq_len = 32

[lora]
rank = 4
alpha = 8.0
targets = ["c_attn", "c_fc"]

[optim]
kind = "adamw"
lr = 0.02
warmup_steps = 1
schedule = "linear"

[privacy]
epsilon = 8.0

[schedule]
nodes = 2
batch_size = 16
steps = 4

[eval]
format = "jsonl"
path = "held-out.jsonl"
"#,
            base.display()
        );
        std::fs::write(dir.join("job.toml"), job).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_bastion"))
            .args(["cluster", "up", "--fresh", "--job"])
            .arg(dir.join("job.toml"))
            .arg("--dir")
            .arg(dir.join("cluster"))
            .args(["--base-port", &free_port().to_string()])
            .arg("--dataset")
            .arg(format!("acme=jsonl:{}", dir.join("acme.jsonl").display()))
            .arg("--dataset")
            .arg(format!(
                "globex=jsonl:{}",
                dir.join("globex.jsonl").display()
            ))
            .output()
            .unwrap();
        let logs = (0..2)
            .map(|i| {
                std::fs::read_to_string(dir.join(format!("cluster/node-{i}/node.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n");
        assert!(
            out.status.success(),
            "cluster up failed: {}\n{logs}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["status"], "completed", "{report}");
        assert_eq!(report["steps"], 4, "{report}");
        let release = PathBuf::from(report["release"].as_str().unwrap());

        // The merged weights alone, for transformers to load without PEFT stepping in.
        let merged_only = dir.join("merged-only");
        std::fs::create_dir_all(&merged_only).unwrap();
        for file in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(release.join(file), merged_only.join(file)).unwrap();
        }
        let eval_text: Vec<String> = ["acme", "globex", "public"]
            .iter()
            .flat_map(|p| texts(p, 8, 200))
            .collect();
        std::fs::write(dir.join("eval.txt"), eval_text.join("\n") + "\n").unwrap();
        let stdout = python(
            &dir,
            &[
                "-c".as_ref(),
                CHECK_RELEASE.as_ref(),
                base.as_os_str(),
                release.as_os_str(),
                merged_only.as_os_str(),
                dir.join("eval.txt").as_os_str(),
                PROMPT.as_ref(),
                MAX_NEW_TOKENS.to_string().as_ref(),
            ],
        );
        let hf = serde_json::from_str(stdout.trim()).unwrap();
        Fixture { dir, release, hf }
    })
}

/// The merged release computes in transformers what `bastion model perplexity` and
/// `bastion model generate` compute on it.
#[test]
fn the_release_computes_in_transformers_what_ours_computes() {
    let f = fixture();
    let hf = &f.hf;
    assert_eq!(
        std::fs::read(f.release.join("tokenizer.json")).unwrap(),
        std::fs::read(f.dir.join("base/tokenizer.json")).unwrap(),
        "the release's tokenizer is not the checkpoint's"
    );
    assert_eq!(hf["merged_has_peft"], false);
    let text = f.dir.join("eval.txt");
    let ours = bastion(&[
        "model",
        "perplexity",
        "--checkpoint",
        f.release.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
    ]);
    assert_eq!(ours["tokens"], hf["tokens"], "{ours} {hf}");
    assert_eq!(ours["predicted_tokens"], hf["predicted"]);
    let (loss, expected) = (f64_of(&ours, "loss"), f64_of(hf, "loss"));
    assert!(
        ((loss - expected) / expected).abs() < 1e-4,
        "loss {loss} vs transformers {expected}"
    );
    let perplexity = f64_of(&ours, "perplexity");
    assert!(((perplexity - expected.exp()) / expected.exp()).abs() < 1e-4);
    // Several windows of n_positions, so windowing is exercised.
    assert!(hf["tokens"].as_i64().unwrap() > 2 * 64, "{hf}");

    let generated = bastion(&[
        "model",
        "generate",
        "--checkpoint",
        f.release.to_str().unwrap(),
        "--prompt",
        PROMPT,
        "--max-new-tokens",
        &MAX_NEW_TOKENS.to_string(),
    ]);
    assert_eq!(generated["prompt_ids"], hf["prompt_ids"]);
    assert_eq!(generated["new_ids"], hf["generated"]);
    assert_eq!(
        hf["generated"].as_array().unwrap().len(),
        MAX_NEW_TOKENS,
        "{hf}"
    );
}

/// The adapter: PEFT's names and shapes, all of it loaded, and on the original base it gives
/// the merged release's logits, at the job's scale.
#[test]
fn the_adapter_on_the_base_in_peft_gives_the_merged_logits() {
    let hf = &fixture().hf;
    assert_eq!(
        hf["adapter_shapes"], hf["expected_adapter"],
        "the adapter's tensors are not those PEFT saves for this config"
    );
    assert_eq!(
        hf["adapter_keys"].as_array().unwrap().len(),
        8,
        "2 layers x {{c_attn, c_fc}} x {{A, B}}: {hf}"
    );
    assert_eq!(hf["adapter_loaded_exactly"], true, "{hf}");
    assert_eq!(hf["adapter_dtypes"], serde_json::json!(["torch.float32"]));
    let cfg = &hf["adapter_config"];
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"].as_f64(), Some(8.0));
    // After the check below doubled it: 2 x alpha / r.
    assert_eq!(hf["peft_scaling"], serde_json::json!([4.0]));
    let scale = f64_of(hf, "logit_scale");
    assert!(scale > 2.0, "logits too flat to compare: {scale}");
    let peft_diff = f64_of(hf, "peft_vs_merged");
    assert!(
        peft_diff < 1e-4,
        "PEFT (adapter on the base) vs transformers (merged release): max |diff| {peft_diff}"
    );
    let moved = f64_of(hf, "base_vs_merged");
    assert!(
        moved > 1e-2,
        "the adapter barely moves the logits ({moved}): the comparison would not see a wrong scale"
    );
    let doubled = f64_of(hf, "doubled_scale_vs_merged");
    assert!(doubled > 1e-2, "a doubled scale went unnoticed: {doubled}");
}

/// Training moved exactly the LoRA-targeted weights; every other tensor is bitwise the base's
/// (frozen parameters get neither noise nor an update).
#[test]
fn only_the_targeted_weights_differ_from_the_base() {
    let hf = &fixture().hf;
    assert_eq!(
        hf["release_keys"], hf["base_keys"],
        "the release's tensors are not the base's"
    );
    let changed = hf["changed"].as_object().unwrap();
    let mut changed_names: Vec<&str> = changed.keys().map(String::as_str).collect();
    changed_names.sort();
    assert_eq!(
        changed_names,
        [
            "h.0.attn.c_attn.weight",
            "h.0.mlp.c_fc.weight",
            "h.1.attn.c_attn.weight",
            "h.1.mlp.c_fc.weight"
        ],
        "only the LoRA-targeted weights may change: {changed:?}"
    );
    let equal: Vec<&str> = hf["equal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for frozen in ["wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"] {
        assert!(equal.contains(&frozen), "{frozen} is not the base's");
    }
    for i in 0..2 {
        for frozen in [
            "attn.c_attn.bias",
            "attn.c_proj.weight",
            "attn.c_proj.bias",
            "mlp.c_fc.bias",
            "mlp.c_proj.weight",
            "ln_1.weight",
            "ln_2.bias",
        ] {
            let name = format!("h.{i}.{frozen}");
            assert!(equal.contains(&name.as_str()), "{name} is not the base's");
        }
    }
    assert_eq!(
        equal.len() + changed.len(),
        hf["base_keys"].as_array().unwrap().len(),
        "a tensor changed dtype or shape: {hf}"
    );
}

/// `GPT2LMHeadModel.from_pretrained(release)` with PEFT installed: transformers sees
/// adapter_config.json beside config.json, loads the merged weights and then the adapter on
/// top of them, so the LoRA update would count twice; the release keeps the adapter in
/// `release/adapter/` so that it does not.
#[test]
fn from_pretrained_on_the_release_directory_applies_the_update_once() {
    let hf = &fixture().hf;
    let diff = f64_of(hf, "in_place_vs_merged");
    assert!(
        diff < 1e-4,
        "from_pretrained(release) (PEFT loaded: {}) vs the merged weights alone: max |diff| {diff}",
        hf["in_place_has_peft"]
    );
}
