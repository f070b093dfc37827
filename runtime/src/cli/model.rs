//! `bastion model`: GPT-2 checkpoints in Hugging Face layout (`config.json`,
//! `model.safetensors`, `tokenizer.json`) from the command line, JSON on stdout.
//!
//! - `perplexity`: the checkpoint's loss on a text file, computed as transformers computes it.
//! - `generate`: a greedy continuation of a prompt.
//! - `eval`: a released classifier's accuracy and ROC AUC on an `.npz` or an image folder.
//! - `pretrain`: NON-private training of a fresh small GPT-2 on public text (the base model the
//!   GPT example fine-tunes with DP when the user brings no checkpoint).

use anyhow::{bail, ensure, Context};
use bastion_dp::clip::Tape;
use bastion_dp::optim::{Optimizer, UpdateRule};
use bastion_models::gpt2::{Gpt2, Gpt2Config};
use bastion_models::per_sample_lm_loss;
use bastion_models::tokenizer::{train_byte_level_bpe, TextTokenizer};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(clap::Subcommand)]
pub(crate) enum ModelCommand {
    /// Loss and perplexity of a checkpoint on a text file, as transformers computes them.
    ///
    /// The whole file is tokenized with the checkpoint's tokenizer.json (no token is added
    /// unless its post-processor adds one), split into consecutive non-overlapping windows of
    /// --window tokens (default: the model's n_positions; the last window may be shorter),
    /// and each window is scored independently: loss = the mean next-token cross-entropy over
    /// every predicted token of every window (a window of T tokens predicts T-1),
    /// perplexity = exp(loss). This equals transformers' `model(w, labels=w).loss` per window
    /// weighted by its T-1 predicted tokens. Prints {"tokens", "loss", "perplexity", ...}.
    Perplexity(PerplexityArgs),
    /// Greedy continuation of a prompt: prints the new ids and their text.
    Generate(GenerateArgs),
    /// NON-PRIVATE training of a fresh small GPT-2 on PUBLIC text only.
    ///
    /// No differential privacy: the model may memorise and reveal its training text. Use it
    /// only on public data, to make a base model that `bastion cluster` then fine-tunes with
    /// DP on private data. Trains a byte-level BPE tokenizer on the file unless the output
    /// directory already has a tokenizer.json, then trains with AdamW on random windows of
    /// --seq tokens, and writes config.json, model.safetensors and tokenizer.json.
    Pretrain(PretrainArgs),
    /// Accuracy and ROC AUC (macro one-vs-rest for more than two classes) of a released
    /// classifier (a release directory: model.safetensors, config.json) on a MedMNIST `.npz`
    /// or an image folder (one subfolder per class), checked as a node checks its data.
    Eval(EvalArgs),
    /// Model owners: fetch your job's released model and its receipt.json from a node, over
    /// attested TLS (the node's evidence is checked against --policy first).
    Fetch(super::party::FetchArgs),
}

#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    /// The release directory (model.safetensors and config.json), or its model.safetensors.
    #[arg(long)]
    checkpoint: PathBuf,
    /// A MedMNIST-layout `.npz` or an image folder.
    #[arg(long)]
    data: PathBuf,
    /// The `.npz` split to evaluate: train, val or test.
    #[arg(long, default_value = "test")]
    split: String,
}

fn eval(args: EvalArgs) -> anyhow::Result<serde_json::Value> {
    use bastion_actors::data::{DataSource, Split};
    let dir = if args.checkpoint.is_file() {
        args.checkpoint
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf()
    } else {
        args.checkpoint.clone()
    };
    let data = if args.data.is_dir() {
        DataSource::ImageFolder {
            path: args.data.clone(),
        }
    } else {
        let split = match args.split.as_str() {
            "train" => Split::Train,
            "val" => Split::Val,
            "test" => Split::Test,
            other => bail!("--split must be train, val or test, got {other:?}"),
        };
        DataSource::MedmnistNpz {
            path: args.data.clone(),
            split,
        }
    };
    let evaluation =
        bastion_actors::evaluate::evaluate_released(&dir, &data).map_err(|e| anyhow::anyhow!(e))?;
    Ok(serde_json::json!({
        "records": evaluation.records,
        "accuracy": evaluation.test_accuracy,
        "auc": evaluation.auc,
    }))
}

#[derive(clap::Args)]
pub(crate) struct PerplexityArgs {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    checkpoint: PathBuf,
    /// UTF-8 text file to score.
    #[arg(long)]
    text: PathBuf,
    /// Window length in tokens; at most and by default the model's n_positions.
    #[arg(long)]
    window: Option<i64>,
    /// Windows per forward pass (memory only; the result does not depend on it).
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

#[derive(clap::Args)]
pub(crate) struct GenerateArgs {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The text to continue.
    #[arg(long)]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Keep generating after <|endoftext|> (by default generation stops there, as
    /// transformers' generate does when the end-of-text id is known).
    #[arg(long)]
    ignore_eos: bool,
}

#[derive(clap::Args)]
pub(crate) struct PretrainArgs {
    /// Output directory; a tokenizer.json already there is used instead of training one.
    #[arg(long)]
    checkpoint: PathBuf,
    /// PUBLIC UTF-8 text to train on (never private data: this training is not private).
    #[arg(long)]
    text: PathBuf,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    layers: i64,
    /// Width of the residual stream.
    #[arg(long, default_value_t = 256)]
    width: i64,
    /// Attention heads; must divide --width.
    #[arg(long, default_value_t = 4)]
    heads: i64,
    /// Training window and the model's n_positions.
    #[arg(long, default_value_t = 128)]
    seq: i64,
    /// Size of the tokenizer trained when OUT has none (at most; ids 0..vocab).
    #[arg(long, alias = "vocab", default_value_t = 8192)]
    vocab_size: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Windows per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// AdamW learning rate (betas 0.9, 0.95; weight decay 0.01), after a linear warmup over
    /// the first 5% of steps.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed for the initial weights and the windows drawn.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    let out = match cmd {
        ModelCommand::Perplexity(args) => perplexity(args)?,
        ModelCommand::Generate(args) => generate(args)?,
        ModelCommand::Pretrain(args) => pretrain(args)?,
        ModelCommand::Eval(args) => eval(args)?,
        ModelCommand::Fetch(args) => super::party::fetch(args)?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// A checkpoint's model and tokenizer, checked to agree on the vocabulary.
fn load(dir: &Path) -> anyhow::Result<(VarStore, Gpt2, TextTokenizer)> {
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt2::load(&vs.root(), dir)
        .with_context(|| format!("loading the GPT-2 checkpoint in {}", dir.display()))?;
    let tokenizer = TextTokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
    Ok((vs, model, tokenizer))
}

/// Checks that every id has an embedding row in `model`.
fn checked_ids(ids: &[i64], model: &Gpt2, what: &str) -> anyhow::Result<()> {
    let vocab = model.config().vocab_size;
    if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| id >= vocab) {
        bail!(
            "{what}: token {i} has id {id}, outside the model's vocab_size {vocab} \
             (tokenizer.json and config.json do not belong together)"
        );
    }
    Ok(())
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn perplexity(args: PerplexityArgs) -> anyhow::Result<serde_json::Value> {
    ensure!(args.batch > 0, "--batch must be positive");
    let (_vs, model, tokenizer) = load(&args.checkpoint)?;
    let n_positions = model.config().n_positions;
    let window = args.window.unwrap_or(n_positions);
    ensure!(
        (2..=n_positions).contains(&window),
        "--window {window} must be between 2 and the model's n_positions {n_positions}"
    );
    let text = read_text(&args.text)?;
    let ids = tokenizer.encode(&text)?;
    checked_ids(&ids, &model, &args.text.display().to_string())?;
    ensure!(
        ids.len() >= 2,
        "{}: {} token(s), nothing to predict",
        args.text.display(),
        ids.len()
    );

    // Full windows go through in batches; the last, shorter one alone. A 1-token tail
    // predicts nothing and is skipped, as transformers' loss over it would be empty.
    let window = window as usize;
    let chunks: Vec<&[i64]> = ids.chunks(window).filter(|c| c.len() >= 2).collect();
    let mut nll_sum = 0f64;
    let mut predicted = 0usize;
    tch::no_grad(|| {
        let tape = Tape::disabled();
        let (full, tail): (Vec<&[i64]>, Vec<&[i64]>) =
            chunks.iter().partition(|c| c.len() == window);
        for group in full.chunks(args.batch).chain(tail.chunks(1)) {
            let t = group[0].len() as i64;
            let flat: Vec<i64> = group.iter().flat_map(|c| c.iter().copied()).collect();
            let input = Tensor::from_slice(&flat).view([group.len() as i64, t]);
            let logits = model.forward(&tape, &input);
            // Mean per window times its predicted tokens: the window's summed NLL, in f64.
            let losses = per_sample_lm_loss(&logits.to_kind(Kind::Double), &input);
            nll_sum += losses.sum(Kind::Double).double_value(&[]) * (t - 1) as f64;
            predicted += group.len() * (t as usize - 1);
        }
    });
    let loss = nll_sum / predicted as f64;
    Ok(serde_json::json!({
        "tokens": ids.len(),
        "loss": loss,
        "perplexity": loss.exp(),
        "predicted_tokens": predicted,
        "windows": chunks.len(),
        "window": window,
    }))
}

fn generate(args: GenerateArgs) -> anyhow::Result<serde_json::Value> {
    let (_vs, model, tokenizer) = load(&args.checkpoint)?;
    let prompt_ids = tokenizer.encode(&args.prompt)?;
    ensure!(!prompt_ids.is_empty(), "the prompt encodes to no token");
    checked_ids(&prompt_ids, &model, "--prompt")?;
    let eos = if args.ignore_eos {
        None
    } else {
        tokenizer.eos_id()
    };
    let n_positions = model.config().n_positions as usize;
    let mut ids = prompt_ids.clone();
    let mut stopped_at_eos = false;
    tch::no_grad(|| {
        let tape = Tape::disabled();
        for _ in 0..args.max_new_tokens {
            // Beyond n_positions the model sees the most recent n_positions tokens.
            let context = &ids[ids.len().saturating_sub(n_positions)..];
            let input = Tensor::from_slice(context).view([1, context.len() as i64]);
            let logits = model.forward(&tape, &input);
            let next = logits
                .get(0)
                .get(context.len() as i64 - 1)
                .argmax(-1, false);
            let next = next.int64_value(&[]);
            ids.push(next);
            if Some(next) == eos {
                stopped_at_eos = true;
                break;
            }
        }
    });
    let new_ids = ids[prompt_ids.len()..].to_vec();
    Ok(serde_json::json!({
        "prompt": args.prompt,
        "prompt_ids": prompt_ids,
        "new_ids": new_ids,
        "text": tokenizer.decode(&new_ids)?,
        "stopped_at_eos": stopped_at_eos,
    }))
}

const NON_PRIVATE: &str = "NON-PRIVATE training (no differential privacy): for public data only; \
     the model may reveal its training text";

fn pretrain(args: PretrainArgs) -> anyhow::Result<serde_json::Value> {
    ensure!(args.steps > 0, "--steps must be positive");
    ensure!(args.batch > 0, "--batch must be positive");
    ensure!(args.seq >= 2, "--seq must be at least 2");
    ensure!(
        args.lr.is_finite() && args.lr > 0.0,
        "--lr must be positive"
    );
    eprintln!("bastion model pretrain: {NON_PRIVATE}");
    let started = Instant::now();
    std::fs::create_dir_all(&args.checkpoint)
        .with_context(|| format!("creating {}", args.checkpoint.display()))?;
    let text = read_text(&args.text)?;
    let tokenizer_file = args.checkpoint.join(TOKENIZER_FILE);
    let (tokenizer, tokenizer_trained) = if tokenizer_file.exists() {
        (TextTokenizer::from_file(&tokenizer_file)?, false)
    } else {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (
            train_byte_level_bpe(&lines, args.vocab_size, &tokenizer_file)?,
            true,
        )
    };
    let ids = tokenizer.encode(&text)?;
    let seq = args.seq as usize;
    ensure!(
        ids.len() > seq,
        "{}: {} tokens, fewer than one training window of --seq {} + 1",
        args.text.display(),
        ids.len(),
        seq
    );

    let config = Gpt2Config {
        n_layer: args.layers,
        n_head: args.heads,
        n_embd: args.width,
        vocab_size: tokenizer.vocab_size() as i64,
        n_positions: args.seq,
        layer_norm_epsilon: 1e-5,
        n_inner: None,
    };
    config.validate()?;
    tch::manual_seed(args.seed as i64);
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt2::new(&vs.root(), &config)?;
    let params: Vec<Tensor> = model
        .named_parameters()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let parameters: i64 = params.iter().map(|p| p.numel() as i64).sum();
    let rule = UpdateRule::AdamW {
        lr: args.lr,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let mut optimizer = Optimizer::new(rule, params.iter().map(Tensor::shallow_clone).collect());
    let warmup = (args.steps / 20).max(1);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(args.seed);
    let tape = Tape::disabled();
    let mut first_loss = None;
    let mut last_losses = Vec::new();
    for step in 0..args.steps {
        // Random windows of seq tokens anywhere in the stream.
        let flat: Vec<i64> = (0..args.batch)
            .flat_map(|_| {
                let start = rng.random_range(0..=ids.len() - seq);
                ids[start..start + seq].iter().copied()
            })
            .collect();
        let input = Tensor::from_slice(&flat).view([args.batch as i64, args.seq]);
        let loss = per_sample_lm_loss(&model.forward(&tape, &input), &input).mean(Kind::Float);
        loss.backward();
        let grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
        optimizer.set_lr(args.lr * ((step + 1) as f64 / warmup as f64).min(1.0));
        optimizer.step(&grads);
        for p in &params {
            let mut p = p.shallow_clone();
            p.zero_grad();
        }
        let value = loss.double_value(&[]);
        ensure!(value.is_finite(), "step {step}: the loss is {value}");
        first_loss.get_or_insert(value);
        last_losses.push(value);
        if last_losses.len() > 10 {
            last_losses.remove(0);
        }
        if (step + 1) % 50 == 0 || step + 1 == args.steps {
            eprintln!(
                "pretrain: step {}/{} loss {value:.4} ({:.1}s)",
                step + 1,
                args.steps,
                started.elapsed().as_secs_f64()
            );
        }
    }
    model
        .save(&args.checkpoint)
        .with_context(|| format!("saving to {}", args.checkpoint.display()))?;
    let final_loss = last_losses.iter().sum::<f64>() / last_losses.len() as f64;
    Ok(serde_json::json!({
        "privacy": NON_PRIVATE,
        "non_private": true,
        "checkpoint": args.checkpoint,
        "text": args.text,
        "tokens": ids.len(),
        "tokenizer_trained": tokenizer_trained,
        "vocab_size": config.vocab_size,
        "config": config,
        "parameters": parameters,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "first_loss": first_loss,
        "final_loss_last_10_steps": final_loss,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
