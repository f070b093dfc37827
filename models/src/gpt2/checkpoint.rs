//! Hugging Face GPT-2 weights in safetensors: reading with every check before any use, and
//! writing in the same layout.
//!
//! Layout facts (from `transformers`' GPT-2): tensor names are `wte.weight`, `wpe.weight`,
//! `h.{i}.{ln_1,attn.c_attn,attn.c_proj,ln_2,mlp.c_fc,mlp.c_proj}.{weight,bias}` and
//! `ln_f.{weight,bias}`, prefixed with `transformer.` when saved from `GPT2LMHeadModel`. The
//! four projections are `Conv1D` modules whose weight is `(in, out)`, the transpose of a
//! linear layer's. Files may also hold the causal-mask buffers `h.{i}.attn.bias` and
//! `h.{i}.attn.masked_bias` (ignored) and `lm_head.weight`, which is the token embedding
//! again (checked equal, then ignored). safetensors data is little-endian, as our targets are.

use super::Gpt2Config;
use crate::ModelError;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The prefix `GPT2LMHeadModel` puts before the body's tensor names.
const PREFIX: &str = "transformer.";
/// The untied output layer's name; equal to `wte.weight` in every GPT-2 checkpoint.
const LM_HEAD: &str = "lm_head.weight";

/// Whether `name` is the weight of a `Conv1D` projection, stored `(in, out)`.
fn is_conv1d(name: &str) -> bool {
    name.ends_with(".weight")
        && [
            ".attn.c_attn.",
            ".attn.c_proj.",
            ".mlp.c_fc.",
            ".mlp.c_proj.",
        ]
        .iter()
        .any(|m| name.contains(m))
}

/// Every trainable tensor a model of `config` has: name and shape in the model's layout
/// (linear weights `(out, in)`), in the order [`super::Gpt2::named_parameters`] lists them.
pub(super) fn layout(config: &Gpt2Config) -> Vec<(String, Vec<i64>)> {
    let c = config.n_embd;
    let inner = config.inner_dim();
    let mut out = vec![
        ("wte.weight".to_string(), vec![config.vocab_size, c]),
        ("wpe.weight".to_string(), vec![config.n_positions, c]),
    ];
    let mut add = |name: String, out_dim: i64, in_dim: Option<i64>| {
        match in_dim {
            Some(in_dim) => out.push((format!("{name}.weight"), vec![out_dim, in_dim])),
            None => out.push((format!("{name}.weight"), vec![out_dim])),
        }
        out.push((format!("{name}.bias"), vec![out_dim]));
    };
    for i in 0..config.n_layer {
        add(format!("h.{i}.ln_1"), c, None);
        add(format!("h.{i}.attn.c_attn"), 3 * c, Some(c));
        add(format!("h.{i}.attn.c_proj"), c, Some(c));
        add(format!("h.{i}.ln_2"), c, None);
        add(format!("h.{i}.mlp.c_fc"), inner, Some(c));
        add(format!("h.{i}.mlp.c_proj"), c, Some(inner));
    }
    add("ln_f".to_string(), c, None);
    out
}

/// The shape a tensor has in the file: Conv1D weights are transposed.
fn file_shape(name: &str, model_shape: &[i64]) -> Vec<i64> {
    let mut shape = model_shape.to_vec();
    if is_conv1d(name) {
        shape.reverse();
    }
    shape
}

/// Whether `name` is one of the causal-mask buffers old checkpoints carry for each layer.
fn is_attention_buffer(name: &str, n_layer: i64) -> bool {
    let Some(rest) = name.strip_prefix("h.") else {
        return false;
    };
    let Some((layer, buffer)) = rest.split_once('.') else {
        return false;
    };
    matches!(buffer, "attn.bias" | "attn.masked_bias")
        && layer
            .parse::<i64>()
            .is_ok_and(|i| (0..n_layer).contains(&i))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::F16 => Some(Kind::Half),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F64 => Some(Kind::Double),
        _ => None,
    }
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    match kind {
        Kind::Float => Some(Dtype::F32),
        Kind::Half => Some(Dtype::F16),
        Kind::BFloat16 => Some(Dtype::BF16),
        Kind::Double => Some(Dtype::F64),
        _ => None,
    }
}

/// Checks a tensor's dtype and file shape, then copies it into a CPU tensor of its own kind.
fn to_tensor(
    file: &Path,
    name: &str,
    view: &TensorView<'_>,
    expected: &[i64],
) -> Result<Tensor, ModelError> {
    let kind = kind_of(view.dtype()).ok_or_else(|| ModelError::Dtype {
        path: file.to_path_buf(),
        name: name.to_string(),
        found: format!("{:?}", view.dtype()),
    })?;
    let found = view.shape();
    if found.len() != expected.len() || found.iter().zip(expected).any(|(&f, &e)| f as i64 != e) {
        return Err(ModelError::Shape {
            path: file.to_path_buf(),
            name: name.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(Tensor::f_from_data_size(view.data(), expected, kind)?)
}

/// Reads `file` and checks it holds exactly the weights of a model of `config`: every tensor
/// present with the right shape and a float dtype, nothing unexpected. Returns the tensors by
/// unprefixed name, in the model's layout (Conv1D weights transposed back), on the CPU in the
/// file's dtype.
pub(super) fn read(
    file: &Path,
    config: &Gpt2Config,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let bytes = std::fs::read(file).map_err(|source| ModelError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|source| ModelError::Safetensors {
        path: file.to_path_buf(),
        source,
    })?;
    let names: HashSet<&str> = st.names().into_iter().collect();
    let prefix = if names.contains(format!("{PREFIX}wte.weight").as_str()) {
        PREFIX
    } else {
        ""
    };

    let mut tensors = HashMap::new();
    for (name, shape) in layout(config) {
        let full = format!("{prefix}{name}");
        if !names.contains(full.as_str()) {
            return Err(ModelError::MissingTensor {
                path: file.to_path_buf(),
                name: full,
            });
        }
        let view = st.tensor(&full).map_err(|source| ModelError::Safetensors {
            path: file.to_path_buf(),
            source,
        })?;
        let t = to_tensor(file, &full, &view, &file_shape(&name, &shape))?;
        let t = if is_conv1d(&name) { t.tr() } else { t };
        tensors.insert(name, t);
    }

    for full in names {
        let name = full.strip_prefix(prefix).unwrap_or(full);
        if (full.starts_with(prefix) && tensors.contains_key(name))
            || is_attention_buffer(name, config.n_layer)
        {
            continue;
        }
        if full == LM_HEAD {
            let wte = &tensors["wte.weight"];
            let view = st.tensor(full).map_err(|source| ModelError::Safetensors {
                path: file.to_path_buf(),
                source,
            })?;
            let head = to_tensor(file, full, &view, &wte.size())?;
            if !head.to_kind(Kind::Double).equal(&wte.to_kind(Kind::Double)) {
                return Err(ModelError::UntiedHead {
                    path: file.to_path_buf(),
                    name: full.to_string(),
                });
            }
            continue;
        }
        return Err(ModelError::UnexpectedTensor {
            path: file.to_path_buf(),
            name: full.to_string(),
        });
    }
    Ok(tensors)
}

/// `path` with `.tmp` appended to its file name, for write-then-rename.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn rename_into_place(tmp: &Path, path: &Path) -> Result<(), ModelError> {
    std::fs::rename(tmp, path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `params` (unprefixed names, model layout) to `file` in Hugging Face's layout, in
/// each tensor's own dtype.
pub(super) fn write(file: &Path, params: &[(String, Tensor)]) -> Result<(), ModelError> {
    let mut buffers = Vec::with_capacity(params.len());
    for (name, t) in params {
        let dtype = dtype_of(t.kind()).ok_or_else(|| ModelError::UnsupportedKind {
            name: name.clone(),
            kind: t.kind(),
        })?;
        let t = if is_conv1d(name) {
            t.tr()
        } else {
            t.shallow_clone()
        };
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let mut data = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, t.numel())?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.as_str(), dtype, shape, data));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, dtype, shape, data) in &buffers {
        let view = TensorView::new(*dtype, shape.clone(), data).map_err(|source| {
            ModelError::Safetensors {
                path: file.to_path_buf(),
                source,
            }
        })?;
        views.push((*name, view));
    }
    // transformers refuses safetensors files without this metadata entry.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let tmp = temporary(file);
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| match e {
        SafeTensorError::IoError(source) => ModelError::Io {
            path: file.to_path_buf(),
            source,
        },
        source => ModelError::Safetensors {
            path: file.to_path_buf(),
            source,
        },
    })?;
    rename_into_place(&tmp, file)
}

/// Writes a text file (config.json) by write-then-rename.
pub(super) fn write_text(path: &Path, text: &str) -> Result<(), ModelError> {
    let tmp = temporary(path);
    std::fs::write(&tmp, text).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    rename_into_place(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv1d_names() {
        assert!(is_conv1d("h.3.attn.c_attn.weight"));
        assert!(is_conv1d("h.0.mlp.c_proj.weight"));
        assert!(!is_conv1d("h.0.mlp.c_proj.bias"));
        assert!(!is_conv1d("h.0.ln_1.weight"));
        assert!(!is_conv1d("wte.weight"));
    }

    #[test]
    fn attention_buffers() {
        assert!(is_attention_buffer("h.0.attn.bias", 2));
        assert!(is_attention_buffer("h.1.attn.masked_bias", 2));
        assert!(!is_attention_buffer("h.2.attn.bias", 2));
        assert!(!is_attention_buffer("h.0.attn.c_attn.bias", 2));
        assert!(!is_attention_buffer("h.x.attn.bias", 2));
    }
}
