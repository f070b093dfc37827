//! GPT-2's configuration, read from a Hugging Face `config.json`.
//!
//! The file is parsed into a raw form that accepts Hugging Face's many extra fields, then
//! validated into [`Gpt2Config`]. Extra fields are ignored unless they would change the
//! arithmetic (another activation, untied embeddings, other attention scaling): those are
//! refused rather than silently loaded into a model that computes something else.
//!
//! Tolerant where transformers is: token ids (`bos_token_id`, `eos_token_id`, `pad_token_id`,
//! in or outside the vocabulary, numbers or lists) and every other unknown key are ignored;
//! `n_inner` and `layer_norm_epsilon` may be absent (transformers' defaults, `4 * n_embd` and
//! 1e-5). The five shape fields stay required: transformers would default a missing one to
//! GPT-2 small's, and a wrong `n_head` changes no tensor shape, so no later check would catch
//! the guess.

use crate::ModelError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The shape of a GPT-2 model.
///
/// Deserialising it directly (our own TOML or JSON) rejects unknown fields; Hugging Face files
/// go through [`Gpt2Config::from_file`], which accepts theirs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpt2Config {
    /// Number of transformer blocks.
    pub n_layer: i64,
    /// Attention heads per block; must divide `n_embd`.
    pub n_head: i64,
    /// Width of the residual stream.
    pub n_embd: i64,
    /// Token vocabulary size.
    pub vocab_size: i64,
    /// Longest sequence the position embedding covers.
    pub n_positions: i64,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: f64,
    /// Hidden width of the MLP; `None` means `4 * n_embd`, as in Hugging Face.
    #[serde(default)]
    pub n_inner: Option<i64>,
}

/// What we read from Hugging Face's config.json: the required fields, plus the optional ones
/// that change the arithmetic and so must be checked. Anything else is ignored.
#[derive(Deserialize)]
struct RawHfConfig {
    n_layer: i64,
    n_head: i64,
    n_embd: i64,
    vocab_size: i64,
    n_positions: i64,
    /// transformers' default when a config omits it.
    #[serde(default = "default_layer_norm_epsilon")]
    layer_norm_epsilon: f64,
    #[serde(default)]
    n_inner: Option<i64>,
    model_type: Option<String>,
    activation_function: Option<String>,
    tie_word_embeddings: Option<bool>,
    scale_attn_weights: Option<bool>,
    scale_attn_by_inverse_layer_idx: Option<bool>,
    add_cross_attention: Option<bool>,
}

fn default_layer_norm_epsilon() -> f64 {
    1e-5
}

impl Gpt2Config {
    /// GPT-2 small, 124M parameters (Hugging Face `gpt2`).
    pub fn gpt2_small() -> Gpt2Config {
        Gpt2Config::openai(12, 12, 768)
    }

    /// GPT-2 medium, 355M parameters (`gpt2-medium`).
    pub fn gpt2_medium() -> Gpt2Config {
        Gpt2Config::openai(24, 16, 1024)
    }

    /// GPT-2 large, 774M parameters (`gpt2-large`).
    pub fn gpt2_large() -> Gpt2Config {
        Gpt2Config::openai(36, 20, 1280)
    }

    /// GPT-2 XL, 1.5B parameters (`gpt2-xl`).
    pub fn gpt2_xl() -> Gpt2Config {
        Gpt2Config::openai(48, 25, 1600)
    }

    /// A small model for tests and benchmarks: 4 layers, 256 wide, 4 heads, an 8192-token
    /// vocabulary and 256 positions (5,322,240 parameters).
    pub fn gpt2_bench() -> Gpt2Config {
        Gpt2Config {
            n_layer: 4,
            n_head: 4,
            n_embd: 256,
            vocab_size: 8192,
            n_positions: 256,
            layer_norm_epsilon: 1e-5,
            n_inner: None,
        }
    }

    fn openai(n_layer: i64, n_head: i64, n_embd: i64) -> Gpt2Config {
        Gpt2Config {
            n_layer,
            n_head,
            n_embd,
            vocab_size: 50257,
            n_positions: 1024,
            layer_norm_epsilon: 1e-5,
            n_inner: None,
        }
    }

    /// The MLP's hidden width.
    pub fn inner_dim(&self) -> i64 {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> Result<Gpt2Config, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Gpt2Config::parse_hf(&text, Some(path))
    }

    /// Parses and validates the text of a Hugging Face `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Gpt2Config, ModelError> {
        Gpt2Config::parse_hf(text, None)
    }

    fn parse_hf(text: &str, path: Option<&Path>) -> Result<Gpt2Config, ModelError> {
        let raw: RawHfConfig =
            serde_json::from_str(text).map_err(|source| ModelError::ConfigJson {
                path: path
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| "config.json".into()),
                source,
            })?;
        let refuse = |field, reason: String| {
            Err(ModelError::InvalidConfig {
                path: path.map(Path::to_path_buf),
                field,
                reason,
            })
        };
        if let Some(t) = raw.model_type.as_deref().filter(|t| *t != "gpt2") {
            return refuse("model_type", format!("expected \"gpt2\", found {t:?}"));
        }
        // Both names denote the tanh approximation of GELU that GPT-2 was trained with.
        if let Some(a) = raw
            .activation_function
            .as_deref()
            .filter(|a| !matches!(*a, "gelu_new" | "gelu_pytorch_tanh"))
        {
            return refuse(
                "activation_function",
                format!("only \"gelu_new\" (tanh GELU) is supported, found {a:?}"),
            );
        }
        if raw.tie_word_embeddings == Some(false) {
            return refuse(
                "tie_word_embeddings",
                "this GPT-2 always ties its output layer to the token embedding".into(),
            );
        }
        if raw.scale_attn_weights == Some(false) {
            return refuse(
                "scale_attn_weights",
                "only the standard 1/sqrt(head_dim) attention scaling is supported".into(),
            );
        }
        if raw.scale_attn_by_inverse_layer_idx == Some(true) {
            return refuse(
                "scale_attn_by_inverse_layer_idx",
                "per-layer attention scaling is not supported".into(),
            );
        }
        if raw.add_cross_attention == Some(true) {
            return refuse(
                "add_cross_attention",
                "cross-attention is not supported".into(),
            );
        }
        let config = Gpt2Config {
            n_layer: raw.n_layer,
            n_head: raw.n_head,
            n_embd: raw.n_embd,
            vocab_size: raw.vocab_size,
            n_positions: raw.n_positions,
            layer_norm_epsilon: raw.layer_norm_epsilon,
            n_inner: raw.n_inner,
        };
        config.check(path)?;
        Ok(config)
    }

    /// Checks that the configuration describes a buildable model.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.check(None)
    }

    fn check(&self, path: Option<&Path>) -> Result<(), ModelError> {
        let refuse = |field, reason: String| {
            Err(ModelError::InvalidConfig {
                path: path.map(Path::to_path_buf),
                field,
                reason,
            })
        };
        let positive = [
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_inner", self.inner_dim()),
        ];
        if let Some((field, value)) = positive.into_iter().find(|(_, v)| *v < 1) {
            return refuse(field, format!("must be >= 1, found {value}"));
        }
        if self.n_embd % self.n_head != 0 {
            return refuse(
                "n_head",
                format!(
                    "{} heads do not divide n_embd = {}",
                    self.n_head, self.n_embd
                ),
            );
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0) {
            return refuse(
                "layer_norm_epsilon",
                format!("must be finite and > 0, found {}", self.layer_norm_epsilon),
            );
        }
        Ok(())
    }

    /// A Hugging Face `config.json` for this model, loadable by `transformers` as
    /// `GPT2LMHeadModel`.
    pub fn to_hf_json(&self) -> String {
        let value = serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_inner": self.n_inner,
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "tie_word_embeddings": true,
        });
        // Serialising a `Value` cannot fail.
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }
}
