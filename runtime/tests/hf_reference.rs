//! Agreement with Hugging Face transformers and tokenizers (Python, installed by
//! scripts/hf-venv.sh into the .libtorch venv; nothing is downloaded from a hub).
//!
//! One Python run (shared by the tests) trains a byte-level BPE tokenizer with the Python
//! `tokenizers` library, builds a small random `GPT2LMHeadModel` (weights spread out so the
//! logits are far from uniform), saves it with `save_pretrained` (`transformer.` prefixes) and
//! as a hub-style prefix-less copy with the old causal-mask buffers, and computes with
//! transformers: token ids, logits, the windowed loss of a text, and a greedy continuation.
//! The tests compare ours against those: ids exactly, logits to 1e-4, loss to 1e-4 relative,
//! generated ids exactly. The config carries GPT-2's bos/eos id 50256, outside the small
//! vocabulary, as transformers tolerates.

use bastion_dp::clip::Tape;
use bastion_models::gpt2::Gpt2;
use bastion_models::tokenizer::{train_byte_level_bpe, TextTokenizer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tch::{nn::VarStore, Device, Kind, Tensor};

const N_POSITIONS: i64 = 64;
const MAX_NEW_TOKENS: usize = 12;

/// Texts whose ids must match: whitespace runs, numbers, accents, other scripts, emoji (with
/// a zero-width joiner), contractions, the special token inside text, control characters.
const PROBES: &[&str] = &[
    "Hello, world! The tissue sample was benign.",
    "  leading and trailing spaces  ",
    "multiple   spaces\tand\t\ttabs\n\nand\r\nnewlines \n",
    "numbers 1234567 3.14159 -42 1e10 2024-11-29 0x1F",
    "Ünïcödé naïve café — 東京 Москва ΑΒΓ ñ",
    "emoji 🎉🧬 👩‍⚕️ done",
    "it's we're they'll I'd you've she's 'quoted'",
    "before<|endoftext|>after <|endoftext|>",
    "",
    "\u{0}\u{1}\u{7f} control",
];

const PYTHON: &str = r#"
import json, os, sys, torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from safetensors.torch import save_file
import shutil

d = sys.argv[1]
n_positions, max_new = int(sys.argv[2]), int(sys.argv[3])
probes = json.load(open(os.path.join(d, "probes.json")))
corpus = os.path.join(d, "corpus.txt")

# Tokenizer trained by the Python library, GPT-2 style.
bpe = ByteLevelBPETokenizer()
bpe.train([corpus], vocab_size=600, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
os.makedirs(os.path.join(d, "prefixed"), exist_ok=True)
tok_file = os.path.join(d, "prefixed", "tokenizer.json")
bpe.save(tok_file)
tok = PreTrainedTokenizerFast(tokenizer_file=tok_file)
ours_tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "ours", "tokenizer.json"))
out = {
    "probe_ids": [tok(t)["input_ids"] for t in probes],
    "probe_decoded": [tok.decode(tok(t)["input_ids"]) for t in probes],
    "ours_probe_ids": [ours_tok(t)["input_ids"] for t in probes],
    "ours_vocab": len(ours_tok),
    "vocab": len(tok),
}
eos = tok.convert_tokens_to_ids("<|endoftext|>")

torch.manual_seed(0)
config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=n_positions, vocab_size=len(tok),
                    bos_token_id=50256, eos_token_id=50256)
model = GPT2LMHeadModel(config).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if ".ln_" in name or name.startswith("transformer.ln_f"):
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn_like(p))
        else:
            p.copy_(0.2 * torch.randn_like(p))
model.save_pretrained(os.path.join(d, "prefixed"))

# The hub's layout: no prefix, no lm_head, the old causal-mask buffers.
bare = os.path.join(d, "bare")
os.makedirs(bare, exist_ok=True)
sd = {k[len("transformer."):]: v.contiguous() for k, v in model.state_dict().items()
      if k.startswith("transformer.") and not k.endswith((".attn.bias", ".attn.masked_bias"))}
for i in range(config.n_layer):
    sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n_positions, n_positions)).view(1, 1, n_positions, n_positions)
    sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
save_file(sd, os.path.join(bare, "model.safetensors"), metadata={"format": "pt"})
shutil.copy(os.path.join(d, "prefixed", "config.json"), bare)
shutil.copy(tok_file, bare)
out["prefixed_keys"] = sorted(__import__("safetensors").safe_open(os.path.join(d, "prefixed", "model.safetensors"), "pt").keys())

# Logits of two sequences; transformers must read the bare copy back to the same logits.
g = torch.Generator().manual_seed(1)
ids = torch.randint(0, len(tok), (2, n_positions), generator=g)
with torch.no_grad():
    logits = model(ids).logits
    bare_logits = GPT2LMHeadModel.from_pretrained(bare).eval()(ids).logits
assert torch.allclose(logits, bare_logits, atol=1e-6), "transformers reads the bare copy differently"
out["logit_ids"] = ids.tolist()
out["logits"] = logits.flatten().tolist()

# Loss of the eval text: consecutive non-overlapping windows, each scored as
# model(w, labels=w).loss over its len-1 predicted tokens, weighted by that count.
text = open(os.path.join(d, "eval.txt"), encoding="utf-8").read()
text_ids = tok(text)["input_ids"]
out["eval_tokens"] = len(text_ids)
out["eval"] = {}
for window in (n_positions, 16):
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(text_ids), window):
            w = text_ids[start:start + window]
            if len(w) < 2:
                continue
            t = torch.tensor([w])
            total += model(t, labels=t).loss.double().item() * (len(w) - 1)
            count += len(w) - 1
    out["eval"][str(window)] = {"loss": total / count, "predicted": count}

# Greedy continuation.
prompt = "The patient was seen"
prompt_ids = tok(prompt)["input_ids"]
with torch.no_grad():
    gen = model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                         max_new_tokens=max_new, do_sample=False, eos_token_id=eos, pad_token_id=eos)
out["prompt"] = prompt
out["prompt_ids"] = prompt_ids
out["generated"] = gen[0, len(prompt_ids):].tolist()
json.dump(out, open(os.path.join(d, "reference.json"), "w"))
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_path_buf()
}

/// The corpus both tokenizers are trained on: clinical-note-like lines with numbers,
/// punctuation and some accented words.
fn corpus() -> String {
    let subjects = [
        "The patient",
        "A sample",
        "Dr. Müller",
        "The clinic",
        "Our team",
    ];
    let verbs = ["was seen", "reported", "reviewed", "confirmed", "noted"];
    let objects = [
        "benign tissue",
        "a malignant lesion",
        "normal results",
        "the follow-up scan",
        "café-au-lait spots",
    ];
    (0..400)
        .map(|i| {
            format!(
                "{} {} {} on day {}; it's week {} of {}.\n",
                subjects[i % 5],
                verbs[(i / 5) % 5],
                objects[(i / 25) % 5],
                i % 31,
                i % 13,
                2020 + i % 6
            )
        })
        .collect()
}

/// Text not in the corpus (other numbers, words, an emoji), several windows long.
fn eval_text() -> String {
    (0..40)
        .map(|i| {
            format!(
                "On day {} the patient reviewed {} scans 🩺 and noted {}.\n",
                100 + i * 7,
                i % 4,
                ["nothing", "a lesion", "benign tissue", "Ünusual spots"][i % 4]
            )
        })
        .collect()
}

struct Fixture {
    dir: PathBuf,
    reference: Value,
}

/// Installs the venv (once per machine), writes the inputs, trains our tokenizer, runs the
/// Python reference once for all tests.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = repo_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/hf-venv.sh"))
            .status()
            .expect("running scripts/hf-venv.sh");
        assert!(status.success(), "scripts/hf-venv.sh failed: {status}");

        let dir = std::env::temp_dir().join(format!("bastion-hf-reference-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ours")).unwrap();
        std::fs::write(dir.join("corpus.txt"), corpus()).unwrap();
        std::fs::write(dir.join("eval.txt"), eval_text()).unwrap();
        std::fs::write(
            dir.join("probes.json"),
            serde_json::to_string(PROBES).unwrap(),
        )
        .unwrap();
        let lines: Vec<String> = corpus().lines().map(str::to_owned).collect();
        train_byte_level_bpe(&lines, 600, &dir.join("ours/tokenizer.json")).unwrap();

        let output = Command::new(root.join(".libtorch/bin/python"))
            .arg("-c")
            .arg(PYTHON)
            .arg(&dir)
            .arg(N_POSITIONS.to_string())
            .arg(MAX_NEW_TOKENS.to_string())
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("HF_HOME", dir.join("hf-home"))
            .output()
            .expect("running the transformers reference");
        assert!(
            output.status.success(),
            "transformers reference failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let reference =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        Fixture { dir, reference }
    })
}

fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_i64().expect("an integer id"))
        .collect()
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

#[test]
fn token_ids_match_transformers() {
    let f = fixture();
    let tok = TextTokenizer::from_file(&f.dir.join("prefixed/tokenizer.json")).unwrap();
    assert_eq!(
        tok.vocab_size() as i64,
        f.reference["vocab"].as_i64().unwrap()
    );
    let mut merged = 0;
    for (i, text) in PROBES.iter().enumerate() {
        let expected = ids(&f.reference["probe_ids"][i]);
        let ours = tok.encode(text).unwrap();
        assert_eq!(ours, expected, "probe {i} {text:?}");
        assert_eq!(
            tok.decode(&ours).unwrap(),
            f.reference["probe_decoded"][i].as_str().unwrap(),
            "decode of probe {i}"
        );
        // More tokens than bytes would mean no merge applied: the check would be weak.
        merged += usize::from(ours.len() < text.len());
    }
    assert!(merged >= 5, "only {merged} probes used merges");
}

#[test]
fn our_trained_tokenizer_loads_in_transformers_with_the_same_ids() {
    let f = fixture();
    let tok = TextTokenizer::from_file(&f.dir.join("ours/tokenizer.json")).unwrap();
    assert_eq!(
        tok.vocab_size() as i64,
        f.reference["ours_vocab"].as_i64().unwrap()
    );
    for (i, text) in PROBES.iter().enumerate() {
        assert_eq!(
            tok.encode(text).unwrap(),
            ids(&f.reference["ours_probe_ids"][i]),
            "probe {i} {text:?}"
        );
    }
}

#[test]
fn logits_match_transformers_on_both_layouts() {
    let f = fixture();
    let names = f.reference["prefixed_keys"].as_array().unwrap();
    assert!(
        names
            .iter()
            .all(|n| n.as_str().unwrap().starts_with("transformer.")),
        "save_pretrained wrote {names:?}"
    );
    let input: Vec<i64> = f.reference["logit_ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(ids)
        .collect();
    let input = Tensor::from_slice(&input).view([2, N_POSITIONS]);
    let expected: Vec<f64> = f.reference["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let expected = Tensor::from_slice(&expected);
    let scale = expected.abs().max().double_value(&[]);
    assert!(
        scale > 2.0,
        "logits too flat to compare: max |logit| {scale}"
    );
    for layout in ["prefixed", "bare"] {
        let vs = VarStore::new(Device::Cpu);
        let model = Gpt2::load(&vs.root(), &f.dir.join(layout)).unwrap();
        let logits = tch::no_grad(|| model.forward(&Tape::disabled(), &input));
        let diff = (logits.to_kind(Kind::Double).flatten(0, -1) - &expected)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-4, "{layout}: max |ours - transformers| = {diff}");
    }
}

#[test]
fn perplexity_cli_matches_transformers() {
    let f = fixture();
    let text = f.dir.join("eval.txt");
    for layout in ["prefixed", "bare"] {
        for window in [N_POSITIONS, 16] {
            let checkpoint = f.dir.join(layout);
            let out = bastion(&[
                "model",
                "perplexity",
                "--checkpoint",
                checkpoint.to_str().unwrap(),
                "--text",
                text.to_str().unwrap(),
                "--window",
                &window.to_string(),
                "--batch",
                "3",
            ]);
            let reference = &f.reference["eval"][window.to_string()];
            let expected = reference["loss"].as_f64().unwrap();
            let loss = out["loss"].as_f64().unwrap();
            assert_eq!(out["tokens"], f.reference["eval_tokens"], "{layout}");
            assert_eq!(out["predicted_tokens"], reference["predicted"], "{layout}");
            assert!(
                ((loss - expected) / expected).abs() < 1e-4,
                "{layout}, window {window}: loss {loss} vs transformers {expected}"
            );
            let perplexity = out["perplexity"].as_f64().unwrap();
            assert!(((perplexity - expected.exp()) / expected.exp()).abs() < 1e-4);
        }
    }
    // Several full windows and a shorter tail, so windowing itself is exercised.
    let tokens = f.reference["eval_tokens"].as_i64().unwrap();
    assert!(
        tokens > 3 * N_POSITIONS && tokens % N_POSITIONS > 1,
        "{tokens} tokens"
    );
}

#[test]
fn greedy_generation_matches_transformers() {
    let f = fixture();
    for layout in ["prefixed", "bare"] {
        let checkpoint = f.dir.join(layout);
        let out = bastion(&[
            "model",
            "generate",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--prompt",
            f.reference["prompt"].as_str().unwrap(),
            "--max-new-tokens",
            &MAX_NEW_TOKENS.to_string(),
        ]);
        assert_eq!(out["prompt_ids"], f.reference["prompt_ids"], "{layout}");
        assert_eq!(out["new_ids"], f.reference["generated"], "{layout}");
    }
}

/// `bastion model pretrain` learns (the loss falls), and what it writes is a checkpoint
/// transformers loads, with our trained tokenizer, to the loss `bastion model perplexity`
/// reports.
#[test]
fn pretrained_checkpoint_loads_in_transformers_with_the_same_loss() {
    let f = fixture();
    let out_dir = f.dir.join("pretrained");
    let corpus = f.dir.join("corpus.txt");
    let summary = bastion(&[
        "model",
        "pretrain",
        "--checkpoint",
        out_dir.to_str().unwrap(),
        "--text",
        corpus.to_str().unwrap(),
        "--layers",
        "2",
        "--width",
        "32",
        "--heads",
        "2",
        "--seq",
        "32",
        "--vocab-size",
        "500",
        "--steps",
        "60",
        "--batch",
        "8",
        "--lr",
        "3e-3",
    ]);
    assert_eq!(summary["non_private"], true);
    assert!(summary["privacy"]
        .as_str()
        .unwrap()
        .contains("public data only"));
    let first = summary["first_loss"].as_f64().unwrap();
    let last = summary["final_loss_last_10_steps"].as_f64().unwrap();
    assert!(
        last < first - 1.0,
        "loss {first} -> {last}: nothing learned"
    );

    let text = f.dir.join("eval.txt");
    let ours = bastion(&[
        "model",
        "perplexity",
        "--checkpoint",
        out_dir.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
    ]);
    let script = r#"
import sys, torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
d, text = sys.argv[1], sys.argv[2]
tok = PreTrainedTokenizerFast(tokenizer_file=d + "/tokenizer.json")
model = GPT2LMHeadModel.from_pretrained(d).eval()
ids = tok(open(text, encoding="utf-8").read())["input_ids"]
n = model.config.n_positions
total, count = 0.0, 0
with torch.no_grad():
    for s in range(0, len(ids), n):
        w = ids[s:s + n]
        if len(w) >= 2:
            t = torch.tensor([w])
            total += model(t, labels=t).loss.double().item() * (len(w) - 1)
            count += len(w) - 1
print(len(ids), total / count)
"#;
    let output = Command::new(repo_root().join(".libtorch/bin/python"))
        .arg("-c")
        .arg(script)
        .arg(&out_dir)
        .arg(&text)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("HF_HOME", f.dir.join("hf-home"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "transformers could not load the pretrained checkpoint:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (tokens, loss) = stdout.trim().split_once(' ').unwrap();
    assert_eq!(
        ours["tokens"].as_i64().unwrap(),
        tokens.parse::<i64>().unwrap()
    );
    let expected: f64 = loss.parse().unwrap();
    let got = ours["loss"].as_f64().unwrap();
    assert!(
        ((got - expected) / expected).abs() < 1e-4,
        "loss {got} vs transformers {expected}"
    );
}
