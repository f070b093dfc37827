//! GPT-2, for DP fine-tuning of pre-trained checkpoints on confidential text.
//!
//! Radford et al., "Language Models are Unsupervised Multitask Learners" (2019), as Hugging
//! Face's `GPT2LMHeadModel` computes it: token plus learned position embeddings, pre-LN
//! blocks (`x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`) with causal multi-head
//! self-attention and a tanh-GELU MLP, a final LayerNorm, and an output layer TIED to the
//! token embedding (`logits = h wte^T`, [`Embedding::attend`]). The tie matters for DP: a
//! sample's gradient for `wte` is the sum of its input-side and output-side parts, and the
//! clipping engine clips the norm of that sum, cross term included.
//!
//! Variables are named as in Hugging Face checkpoints (`wte`, `h.0.attn.c_attn`, `ln_f`, ...);
//! [`Gpt2::load`] reads a checkpoint directory (`config.json`, `model.safetensors`) and
//! [`Gpt2::save`] writes one back in the same layout. Dropout is left out: DP fine-tuning
//! already regularises through noise, and a deterministic forward keeps private and
//! non-private passes identical.
//!
//! Batches of different-length sequences are right-padded and run through
//! [`Gpt2::forward_masked`] with an attention mask, with [`crate::per_sample_lm_loss_masked`]
//! as the loss: padding then contributes nothing to any sample's loss or gradient. LoRA
//! ([`Gpt2::add_lora`], module `lora`) freezes the base and trains low-rank adapters, saved
//! merged ([`Gpt2::save`]) or as PEFT adapter files ([`Gpt2::save_adapter`]).
//!
//! ```no_run
//! # fn main() -> Result<(), bastion_models::ModelError> {
//! use bastion_dp::clip::Tape;
//! use bastion_models::gpt2::Gpt2;
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let model = Gpt2::load(&vs.root(), std::path::Path::new("checkpoints/gpt2"))?;
//! let ids = tch::Tensor::from_slice(&[464i64, 2068, 7586, 21831]).view([1, 4]);
//! let logits = model.forward(&Tape::disabled(), &ids); // (1, 4, 50257)
//! # Ok(()) }
//! ```

mod checkpoint;
mod config;
mod lora;

pub use config::Gpt2Config;
pub use lora::{LoraConfig, LoraTarget, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};

use crate::ModelError;
use bastion_dp::clip::layers::{Embedding, LayerNorm, Linear};
use bastion_dp::clip::Tape;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// Hugging Face's `initializer_range`: weights start as N(0, 0.02^2).
const INIT_STD: f64 = 0.02;

/// File names inside a checkpoint directory, as Hugging Face writes them.
const CONFIG_FILE: &str = "config.json";
const WEIGHTS_FILE: &str = "model.safetensors";

/// How new variables start: as GPT-2 initialises them, or zeroed because a checkpoint's
/// weights are copied in next (drawing 124M random numbers to overwrite them was half of
/// loading GPT-2 small).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    Fresh,
    Loading,
}

impl Start {
    /// N(0, std^2) when fresh.
    fn normal(self, std: f64) -> nn::Init {
        match self {
            Start::Fresh => nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            },
            Start::Loading => nn::Init::Const(0.0),
        }
    }
}

/// A linear layer initialised as GPT-2 is: N(0, std^2) weight, zero bias.
fn linear(path: &nn::Path, c_in: i64, c_out: i64, std: f64, start: Start) -> Linear {
    Linear::with_init(
        path,
        c_in,
        c_out,
        Some(nn::Init::Const(0.0)),
        start.normal(std),
    )
}

/// One of the four projections: the base linear layer plus, once LoRA is added, its
/// low-rank update.
#[derive(Debug)]
struct Proj {
    base: Linear,
    lora: Option<lora::LoraLayer>,
}

impl Proj {
    fn new(base: Linear) -> Proj {
        Proj { base, lora: None }
    }

    fn forward(&self, tape: &Tape, x: &Tensor) -> Tensor {
        let y = self.base.forward(tape, x);
        match &self.lora {
            Some(lora) => y + lora.forward(tape, x),
            None => y,
        }
    }
}

/// Causal multi-head self-attention: `c_attn` makes q, k, v in one projection, `c_proj`
/// mixes the heads.
#[derive(Debug)]
struct Attention {
    c_attn: Proj,
    c_proj: Proj,
    n_head: i64,
}

impl Attention {
    /// `allowed`: `None` for plain causal attention, or a boolean `(B, 1, T, T)` mask where
    /// `true` means the query (row) may attend to the key (column).
    fn forward(&self, tape: &Tape, x: &Tensor, allowed: Option<&Tensor>) -> Tensor {
        let (b, t, c) = x.size3().expect("attention input must be (B, T, C)");
        let qkv = self.c_attn.forward(tape, x);
        let heads = |part: &Tensor| {
            part.view([b, t, self.n_head, c / self.n_head])
                .transpose(1, 2)
        };
        let parts = qkv.split(c, -1);
        let (q, k, v) = (heads(&parts[0]), heads(&parts[1]), heads(&parts[2]));
        // softmax(q k^T / sqrt(head_dim) + mask) v, fused where the device allows. Without a
        // padding mask, is_causal lets the kernel skip the masked half.
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            allowed,
            0.0,
            allowed.is_none(),
            None,
            false,
        );
        let y = y.transpose(1, 2).contiguous().view([b, t, c]);
        self.c_proj.forward(tape, &y)
    }
}

/// The position-wise MLP: `c_proj(gelu_tanh(c_fc(x)))`.
#[derive(Debug)]
struct Mlp {
    c_fc: Proj,
    c_proj: Proj,
}

impl Mlp {
    fn forward(&self, tape: &Tape, x: &Tensor) -> Tensor {
        let hidden = self.c_fc.forward(tape, x).gelu("tanh");
        self.c_proj.forward(tape, &hidden)
    }
}

/// One pre-LN transformer block.
#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(path: &nn::Path, config: &Gpt2Config, start: Start) -> Block {
        let c = config.n_embd;
        let inner = config.inner_dim();
        // GPT-2 scales the layers that write into the residual stream by 1/sqrt(2 n_layer).
        let proj_std = INIT_STD / ((2 * config.n_layer) as f64).sqrt();
        let attn = path / "attn";
        let mlp = path / "mlp";
        Block {
            ln_1: LayerNorm::new(&(path / "ln_1"), c, config.layer_norm_epsilon),
            attn: Attention {
                c_attn: Proj::new(linear(&(&attn / "c_attn"), c, 3 * c, INIT_STD, start)),
                c_proj: Proj::new(linear(&(&attn / "c_proj"), c, c, proj_std, start)),
                n_head: config.n_head,
            },
            ln_2: LayerNorm::new(&(path / "ln_2"), c, config.layer_norm_epsilon),
            mlp: Mlp {
                c_fc: Proj::new(linear(&(&mlp / "c_fc"), c, inner, INIT_STD, start)),
                c_proj: Proj::new(linear(&(&mlp / "c_proj"), inner, c, proj_std, start)),
            },
        }
    }

    fn forward(&self, tape: &Tape, x: &Tensor, allowed: Option<&Tensor>) -> Tensor {
        let x = x + self
            .attn
            .forward(tape, &self.ln_1.forward(tape, x), allowed);
        let m = self.mlp.forward(tape, &self.ln_2.forward(tape, &x));
        x + m
    }
}

/// GPT-2 with its language-model head tied to the token embedding.
#[derive(Debug)]
pub struct Gpt2 {
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
    config: Gpt2Config,
    /// The LoRA configuration, once [`Gpt2::add_lora`] has added the adapters.
    lora: Option<LoraConfig>,
}

impl Gpt2 {
    /// A freshly initialised model under `path`, initialised as Hugging Face does.
    pub fn new(path: &nn::Path, config: &Gpt2Config) -> Result<Gpt2, ModelError> {
        Gpt2::build(path, config, Start::Fresh)
    }

    /// A model of `config` under `path` with every variable zero, for weights copied in next
    /// (a checkpoint, or the coordinator's initial weights): no random initialisation.
    pub fn zeroed(path: &nn::Path, config: &Gpt2Config) -> Result<Gpt2, ModelError> {
        Gpt2::build(path, config, Start::Loading)
    }

    fn build(path: &nn::Path, config: &Gpt2Config, start: Start) -> Result<Gpt2, ModelError> {
        config.validate()?;
        let h = path / "h";
        let (c, std) = (config.n_embd, INIT_STD);
        Ok(Gpt2 {
            wte: Embedding::with_init(&(path / "wte"), config.vocab_size, c, start.normal(std)),
            wpe: Embedding::with_init(&(path / "wpe"), config.n_positions, c, start.normal(std)),
            h: (0..config.n_layer)
                .map(|i| Block::new(&(&h / i), config, start))
                .collect(),
            ln_f: LayerNorm::new(&(path / "ln_f"), config.n_embd, config.layer_norm_epsilon),
            config: config.clone(),
            lora: None,
        })
    }

    /// Loads a Hugging Face checkpoint directory (`config.json` and `model.safetensors`)
    /// into new variables under `path`.
    ///
    /// The whole checkpoint is read and checked before any variable is created, so on error
    /// the var store is untouched.
    pub fn load(path: &nn::Path, dir: &Path) -> Result<Gpt2, ModelError> {
        let config = Gpt2Config::from_file(&dir.join(CONFIG_FILE))?;
        let tensors = checkpoint::read(&dir.join(WEIGHTS_FILE), &config)?;
        let model = Gpt2::zeroed(path, &config)?;
        model.assign(tensors)?;
        Ok(model)
    }

    /// Replaces this model's weights with those of a Hugging Face `model.safetensors` made
    /// for the same configuration. On error no weight has changed.
    pub fn load_weights(&self, file: &Path) -> Result<(), ModelError> {
        let tensors = checkpoint::read(file, &self.config)?;
        self.assign(tensors)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed) in Hugging
    /// Face's layout, so [`Gpt2::load`] and `transformers` can read them back. Each file is
    /// written under a temporary name and renamed into place. With LoRA, the weights written
    /// are the merged ones ([`Gpt2::merged_named_parameters`]): a plain GPT-2 that computes
    /// what this model computes.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        checkpoint::write(&dir.join(WEIGHTS_FILE), &self.merged_named_parameters())?;
        checkpoint::write_text(&dir.join(CONFIG_FILE), &self.config.to_hf_json())
    }

    /// The configuration this model was built from.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Every base tensor with its Hugging Face name (no `transformer.` prefix), in the
    /// model's own layout (linear weights `(out, in)`). LoRA tensors are not included (see
    /// [`Gpt2::trainable_named`]); with LoRA these base tensors are frozen.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        fn linear(out: &mut Vec<(String, Tensor)>, name: &str, p: &Proj) {
            let l = &p.base;
            out.push((format!("{name}.weight"), l.weight.shallow_clone()));
            if let Some(b) = &l.bias {
                out.push((format!("{name}.bias"), b.shallow_clone()));
            }
        }
        fn norm(out: &mut Vec<(String, Tensor)>, name: &str, n: &LayerNorm) {
            out.push((format!("{name}.weight"), n.weight.shallow_clone()));
            out.push((format!("{name}.bias"), n.bias.shallow_clone()));
        }
        let mut out = vec![
            ("wte.weight".to_string(), self.wte.weight.shallow_clone()),
            ("wpe.weight".to_string(), self.wpe.weight.shallow_clone()),
        ];
        for (i, block) in self.h.iter().enumerate() {
            norm(&mut out, &format!("h.{i}.ln_1"), &block.ln_1);
            linear(&mut out, &format!("h.{i}.attn.c_attn"), &block.attn.c_attn);
            linear(&mut out, &format!("h.{i}.attn.c_proj"), &block.attn.c_proj);
            norm(&mut out, &format!("h.{i}.ln_2"), &block.ln_2);
            linear(&mut out, &format!("h.{i}.mlp.c_fc"), &block.mlp.c_fc);
            linear(&mut out, &format!("h.{i}.mlp.c_proj"), &block.mlp.c_proj);
        }
        norm(&mut out, "ln_f", &self.ln_f);
        out
    }

    /// Copies checked checkpoint tensors (model layout, any float kind) into the variables.
    fn assign(
        &self,
        mut tensors: std::collections::HashMap<String, Tensor>,
    ) -> Result<(), ModelError> {
        let params = self.named_parameters();
        // The checkpoint reader and this model agree on names by construction; check anyway
        // before changing anything.
        if let Some((name, _)) = params.iter().find(|(n, _)| !tensors.contains_key(n)) {
            return Err(ModelError::MissingTensor {
                path: WEIGHTS_FILE.into(),
                name: name.clone(),
            });
        }
        tch::no_grad(|| {
            for (name, mut var) in params {
                if let Some(src) = tensors.remove(&name) {
                    var.f_copy_(&src)?;
                }
            }
            Ok(())
        })
    }

    /// Logits `(B, T, vocab_size)` for int64 token ids `(B, T)`, every position a real token.
    ///
    /// # Panics
    /// If `T` exceeds `n_positions`.
    pub fn forward(&self, tape: &Tape, input_ids: &Tensor) -> Tensor {
        self.forward_masked(tape, input_ids, None)
    }

    /// Logits `(B, T, vocab_size)` for int64 token ids `(B, T)` and an optional
    /// `attention_mask` `(B, T)` (1 or `true` for a real token, 0 for padding; any integer,
    /// bool or float kind).
    ///
    /// Sequences are right-padded: positions are `0..T` for every sample, so a real token's
    /// position embedding is the one it has in the unpadded sequence. A query attends to the
    /// real keys at or before it; a padded position's id may be anything (it is replaced by
    /// 0 before the lookup), and it influences no real position. Logits at padded positions
    /// are meaningless; exclude them from the loss ([`crate::per_sample_lm_loss_masked`]). A
    /// padded query still attends to itself, so no softmax row is empty and no NaN reaches
    /// the gradients. `None` is plain causal attention ([`Gpt2::forward`]).
    ///
    /// # Panics
    /// If `T` exceeds `n_positions` or the mask's shape is not `(B, T)`.
    pub fn forward_masked(
        &self,
        tape: &Tape,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Tensor {
        let (b, t) = input_ids.size2().expect("input_ids must be (B, T)");
        assert!(
            t <= self.config.n_positions,
            "sequence of {t} tokens exceeds n_positions = {}",
            self.config.n_positions
        );
        // Positions per sample, (B, T): the engine attributes embedding rows to samples by
        // the leading axis of the indices.
        let positions = Tensor::arange(t, (Kind::Int64, input_ids.device()))
            .unsqueeze(0)
            .expand([b, t], false)
            .contiguous();
        let (ids, allowed) = match attention_mask {
            None => (input_ids.shallow_clone(), None),
            Some(mask) => {
                assert_eq!(
                    mask.size(),
                    [b, t],
                    "attention_mask must be (B, T) matching input_ids"
                );
                let real = mask.to_device(input_ids.device()).ne(0);
                let ids = input_ids.masked_fill(&real.logical_not(), 0);
                let device = input_ids.device();
                let causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
                let own = Tensor::eye(t, (Kind::Bool, device));
                // allowed[b, i, j] = j <= i and (key j is real or j == i), as (B, 1, T, T).
                let keys = real.view([b, 1, 1, t]).logical_or(&own.view([1, 1, t, t]));
                (ids, Some(keys.logical_and(&causal.view([1, 1, t, t]))))
            }
        };
        let mut x = self.wte.forward(tape, &ids) + self.wpe.forward(tape, &positions);
        for block in &self.h {
            x = block.forward(tape, &x, allowed.as_ref());
        }
        let x = self.ln_f.forward(tape, &x);
        self.wte.attend(tape, &x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(config: &Gpt2Config) -> i64 {
        checkpoint::layout(config)
            .iter()
            .map(|(_, shape)| shape.iter().product::<i64>())
            .sum()
    }

    /// Hugging Face's `gpt2` has 124,439,808 parameters (the tied head counted once).
    #[test]
    fn preset_parameter_counts() {
        assert_eq!(count(&Gpt2Config::gpt2_small()), 124_439_808);
        assert_eq!(count(&Gpt2Config::gpt2_bench()), 5_322_240);
    }

    /// The checkpoint layout and the model list the same tensors, in the same order, with
    /// the same shapes; and the var store names them the same way.
    #[test]
    fn checkpoint_layout_matches_model() {
        let config = Gpt2Config {
            n_inner: Some(48),
            ..Gpt2Config::gpt2_bench()
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = Gpt2::new(&vs.root(), &config).unwrap();
        let from_model: Vec<(String, Vec<i64>)> = model
            .named_parameters()
            .into_iter()
            .map(|(name, t)| (name, t.size()))
            .collect();
        assert_eq!(from_model, checkpoint::layout(&config));
        let vars = vs.variables();
        assert_eq!(vars.len(), from_model.len());
        for (name, shape) in &from_model {
            assert_eq!(&vars[name].size(), shape, "{name}");
        }
        assert_eq!(
            vs.trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum::<i64>(),
            count(&config)
        );
    }

    #[test]
    fn bench_preset_forward_shape_and_loss() {
        let config = Gpt2Config::gpt2_bench();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = Gpt2::new(&vs.root(), &config).unwrap();
        let ids = Tensor::randint(config.vocab_size, [2, 128], (Kind::Int64, tch::Device::Cpu));
        let logits = tch::no_grad(|| model.forward(&Tape::disabled(), &ids));
        assert_eq!(logits.size(), [2, 128, 8192]);
        // Freshly initialised, logits have a standard deviation of about
        // 0.02 * sqrt(n_embd) = 0.32, so the loss is near that of a uniform guess, ln(V).
        let loss = crate::per_sample_lm_loss(&logits, &ids);
        assert_eq!(loss.size(), [2]);
        let uniform = (config.vocab_size as f64).ln();
        for i in 0..2 {
            let l = loss.double_value(&[i]);
            assert!((l - uniform).abs() < 0.5, "loss {l}, ln(V) = {uniform}");
        }
    }

    #[test]
    #[should_panic(expected = "exceeds n_positions")]
    fn too_long_sequence_panics() {
        let config = Gpt2Config {
            n_positions: 8,
            ..Gpt2Config::gpt2_bench()
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = Gpt2::new(&vs.root(), &config).unwrap();
        let ids = Tensor::zeros([1, 9], (Kind::Int64, tch::Device::Cpu));
        let _ = model.forward(&Tape::disabled(), &ids);
    }
}
