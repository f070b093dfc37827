//! LoRA for GPT-2 (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021), as
//! Hugging Face PEFT computes and stores it.
//!
//! Each chosen projection `W` (`out x in`) gets two engine [`Linear`] layers without bias,
//! `A` (`r x in`, kaiming-uniform with `a = sqrt(5)`, i.e. U(-1/sqrt(in), 1/sqrt(in))) and `B`
//! (`out x r`, zeros), and computes `W x + b + (alpha / r) B A x`. Every base parameter is
//! frozen (`requires_grad` off), so the clipping engine records only `A` and `B`: each
//! sample's gradient norm, its clipping and the noise cover exactly the adapter. With `B` zero
//! at the start the model computes exactly what the base model computes.
//!
//! Files, as PEFT reads and writes them for GPT-2 (`target_modules` matched against module
//! names by suffix, so `c_proj` means both `attn.c_proj` and `mlp.c_proj`):
//! - `adapter_model.safetensors`: `base_model.model.transformer.h.{i}.{attn,mlp}.{name}.lora_A.weight`
//!   `(r, in)` and `...lora_B.weight` `(out, r)`. PEFT keeps these in `nn.Linear` layout even
//!   though GPT-2's base projections are `Conv1D` (`fan_in_fan_out = true` transposes only the
//!   merged update), so they are not transposed.
//! - `adapter_config.json`: `peft_type = "LORA"`, `r`, `lora_alpha`, `target_modules`, ...
//!
//! [`Gpt2::save`] of a LoRA model writes the merged weights `W + (alpha / r) B A`: a plain
//! GPT-2 checkpoint that `transformers` loads without PEFT.

use super::{checkpoint, Gpt2, Proj};
use crate::ModelError;
use bastion_dp::clip::layers::Linear;
use bastion_dp::clip::Tape;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// File names inside an adapter directory, as PEFT writes them.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The adapter's configuration file.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// The prefix PEFT puts before a `GPT2LMHeadModel`'s body tensor names.
const PEFT_PREFIX: &str = "base_model.model.transformer.";

/// A GPT-2 projection LoRA can adapt, named as PEFT's `target_modules` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LoraTarget {
    /// `attn.c_attn`, the fused q, k, v projection.
    #[serde(rename = "c_attn")]
    CAttn,
    /// Both `attn.c_proj` and `mlp.c_proj`: PEFT matches target names by suffix.
    #[serde(rename = "c_proj")]
    CProj,
    /// `mlp.c_fc`, the MLP's expansion.
    #[serde(rename = "c_fc")]
    CFc,
}

impl LoraTarget {
    /// The module name PEFT uses.
    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::CAttn => "c_attn",
            LoraTarget::CProj => "c_proj",
            LoraTarget::CFc => "c_fc",
        }
    }

    /// The target a PEFT module name means, if it is one of GPT-2's projections.
    pub fn from_name(name: &str) -> Option<LoraTarget> {
        match name {
            "c_attn" => Some(LoraTarget::CAttn),
            "c_proj" => Some(LoraTarget::CProj),
            "c_fc" => Some(LoraTarget::CFc),
            _ => None,
        }
    }
}

/// Which projections get LoRA adapters, of which rank and scale (the job's `[lora]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// The rank `r` of `A` (`r x in`) and `B` (`out x r`).
    pub rank: i64,
    /// `lora_alpha`: the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// The projections to adapt, in every block.
    pub targets: Vec<LoraTarget>,
}

impl LoraConfig {
    /// The factor PEFT applies to `B A x`: `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Refuses a rank below 1, a non-positive or non-finite alpha, no targets, or a target
    /// listed twice.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |field, reason: String| ModelError::InvalidConfig {
            path: None,
            field,
            reason,
        };
        if self.rank < 1 {
            return Err(invalid(
                "lora.rank",
                format!("{} is not a positive rank", self.rank),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(invalid(
                "lora.alpha",
                format!("{} is not a positive finite number", self.alpha),
            ));
        }
        if self.targets.is_empty() {
            return Err(invalid(
                "lora.targets",
                "empty; choose any of c_attn, c_proj, c_fc".into(),
            ));
        }
        let distinct: BTreeSet<_> = self.targets.iter().collect();
        if distinct.len() != self.targets.len() {
            return Err(invalid(
                "lora.targets",
                format!("{:?} lists a target twice", self.targets),
            ));
        }
        Ok(())
    }

    /// The targets as a set, for comparisons that ignore order.
    fn target_set(&self) -> BTreeSet<LoraTarget> {
        self.targets.iter().copied().collect()
    }

    /// Reads a PEFT `adapter_config.json`, refusing what this implementation would compute
    /// differently (another PEFT method, rsLoRA, DoRA, per-layer ranks, trained biases,
    /// extra trained modules, targets that are not GPT-2 projection names).
    pub fn from_adapter_config(file: &Path) -> Result<LoraConfig, ModelError> {
        let text = std::fs::read_to_string(file).map_err(|source| ModelError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ModelError::ConfigJson {
                path: file.to_path_buf(),
                source,
            })?;
        let invalid = |field, reason: String| ModelError::InvalidConfig {
            path: Some(file.to_path_buf()),
            field,
            reason,
        };
        let get = |field: &str| json.get(field).filter(|v| !v.is_null());
        match get("peft_type").and_then(|v| v.as_str()) {
            Some("LORA") => {}
            other => {
                return Err(invalid(
                    "peft_type",
                    format!("{other:?}, expected \"LORA\""),
                ))
            }
        }
        let rank = get("r")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| invalid("r", "missing or not an integer".into()))?;
        let alpha = get("lora_alpha")
            .and_then(|v| v.as_f64())
            .ok_or_else(|| invalid("lora_alpha", "missing or not a number".into()))?;
        let names: Vec<String> = match get("target_modules") {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| invalid("target_modules", "not a list of strings".into()))?,
            _ => return Err(invalid("target_modules", "missing".into())),
        };
        let mut targets = BTreeSet::new();
        for name in &names {
            let target = LoraTarget::from_name(name).ok_or_else(|| {
                invalid(
                    "target_modules",
                    format!("`{name}` is not one of c_attn, c_proj, c_fc"),
                )
            })?;
            targets.insert(target);
        }
        // Options that change the arithmetic must be off (or absent, PEFT's default).
        for field in ["use_rslora", "use_dora"] {
            if get(field).is_some_and(|v| v != &serde_json::Value::Bool(false)) {
                return Err(invalid(field, format!("{} is not supported", json[field])));
            }
        }
        if get("bias").is_some_and(|v| v.as_str() != Some("none")) {
            return Err(invalid(
                "bias",
                format!("{}, only \"none\" is supported", json["bias"]),
            ));
        }
        for field in [
            "rank_pattern",
            "alpha_pattern",
            "modules_to_save",
            "layers_to_transform",
        ] {
            let empty = match get(field) {
                None => true,
                Some(serde_json::Value::Object(m)) => m.is_empty(),
                Some(serde_json::Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            };
            if !empty {
                return Err(invalid(field, format!("{} is not supported", json[field])));
            }
        }
        let config = LoraConfig {
            rank,
            alpha,
            targets: targets.into_iter().collect(),
        };
        config.validate().map_err(|e| match e {
            ModelError::InvalidConfig { field, reason, .. } => invalid(field, reason),
            other => other,
        })?;
        Ok(config)
    }
}

/// The low-rank update of one projection: `scale * B(A(x))`.
#[derive(Debug)]
pub(super) struct LoraLayer {
    a: Linear,
    b: Linear,
    scale: f64,
}

impl LoraLayer {
    /// A new adapter for `base` under `path` (variables `lora_A.weight`, `lora_B.weight`),
    /// initialised as PEFT does, in the base weight's kind and device.
    fn new(path: &nn::Path, base: &Linear, rank: i64, scale: f64) -> LoraLayer {
        let (out_dim, in_dim) = base.weight.size2().expect("linear weight is 2-D");
        let mut a = Linear::new(&(path / "lora_A"), in_dim, rank, false);
        let mut b = Linear::new(&(path / "lora_B"), rank, out_dim, false);
        let like = &base.weight;
        tch::no_grad(|| {
            for w in [&mut a.weight, &mut b.weight] {
                if w.kind() != like.kind() || w.device() != like.device() {
                    // Changes the variable in place, so the var store sees it too.
                    w.set_data(&w.to_kind(like.kind()).to_device(like.device()));
                }
            }
            // kaiming_uniform_(a = sqrt(5)): gain sqrt(2 / 6), bound gain * sqrt(3 / fan_in).
            let bound = 1.0 / (in_dim as f64).sqrt();
            let _ = a.weight.uniform_(-bound, bound);
            let _ = b.weight.zero_();
        });
        LoraLayer { a, b, scale }
    }

    pub(super) fn forward(&self, tape: &Tape, x: &Tensor) -> Tensor {
        self.b.forward(tape, &self.a.forward(tape, x)) * self.scale
    }

    /// `scale * B A`, `(out, in)`, detached.
    fn delta(&self) -> Tensor {
        tch::no_grad(|| self.b.weight.matmul(&self.a.weight) * self.scale)
    }
}

/// A LoRA tensor's name under PEFT's scheme without the prefix, e.g.
/// `h.0.attn.c_attn.lora_A.weight`.
fn lora_names(module: &str) -> [String; 2] {
    [
        format!("{module}.lora_A.weight"),
        format!("{module}.lora_B.weight"),
    ]
}

impl Gpt2 {
    /// Every projection with its module name (`h.{i}.attn.c_attn`, ...) and target.
    fn projections(&self) -> Vec<(String, &Proj, LoraTarget)> {
        let mut out = Vec::with_capacity(4 * self.h.len());
        for (i, block) in self.h.iter().enumerate() {
            out.push((
                format!("h.{i}.attn.c_attn"),
                &block.attn.c_attn,
                LoraTarget::CAttn,
            ));
            out.push((
                format!("h.{i}.attn.c_proj"),
                &block.attn.c_proj,
                LoraTarget::CProj,
            ));
            out.push((format!("h.{i}.mlp.c_fc"), &block.mlp.c_fc, LoraTarget::CFc));
            out.push((
                format!("h.{i}.mlp.c_proj"),
                &block.mlp.c_proj,
                LoraTarget::CProj,
            ));
        }
        out
    }

    /// Adds LoRA adapters as `config` says, with variables under `path` named like the base
    /// (`h.{i}.attn.c_attn.lora_A.weight`, ...; pass the path the model was built under), and
    /// freezes every base parameter. Afterwards [`bastion_dp::clip::trainable_params`] of
    /// the var store, and [`Gpt2::trainable_named`], are exactly the adapters' `A` and `B`.
    ///
    /// Refused if the configuration is invalid or the model already has LoRA.
    pub fn add_lora(&mut self, path: &nn::Path, config: &LoraConfig) -> Result<(), ModelError> {
        config.validate()?;
        if let Some(existing) = &self.lora {
            return Err(ModelError::InvalidConfig {
                path: None,
                field: "lora",
                reason: format!("this model already has LoRA adapters ({existing:?})"),
            });
        }
        for (_, t) in self.named_parameters() {
            let _ = t.set_requires_grad(false);
        }
        let targets = config.target_set();
        let scale = config.scale();
        for (i, block) in self.h.iter_mut().enumerate() {
            let layer = path / "h" / i;
            let (attn, mlp) = (&layer / "attn", &layer / "mlp");
            let projections = [
                (&attn / "c_attn", &mut block.attn.c_attn, LoraTarget::CAttn),
                (&attn / "c_proj", &mut block.attn.c_proj, LoraTarget::CProj),
                (&mlp / "c_fc", &mut block.mlp.c_fc, LoraTarget::CFc),
                (&mlp / "c_proj", &mut block.mlp.c_proj, LoraTarget::CProj),
            ];
            for (p, proj, target) in projections {
                if targets.contains(&target) {
                    proj.lora = Some(LoraLayer::new(&p, &proj.base, config.rank, scale));
                }
            }
        }
        self.lora = Some(config.clone());
        Ok(())
    }

    /// The LoRA configuration, if [`Gpt2::add_lora`] added adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// The LoRA tensors, named `h.{i}.{attn,mlp}.{c_attn,c_proj,c_fc}.lora_{A,B}.weight`,
    /// `A` as `(r, in)` and `B` as `(out, r)`, in model order. Empty without LoRA.
    pub fn lora_named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (module, proj, _) in self.projections() {
            if let Some(lora) = &proj.lora {
                let [a, b] = lora_names(&module);
                out.push((a, lora.a.weight.shallow_clone()));
                out.push((b, lora.b.weight.shallow_clone()));
            }
        }
        out
    }

    /// The tensors that train, with their names: every parameter whose `requires_grad` is on
    /// (base tensors under Hugging Face names, then LoRA tensors). With LoRA these are
    /// exactly the adapters; pass the tensors to the clipping engine and the optimizer.
    pub fn trainable_named(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
            .into_iter()
            .chain(self.lora_named_parameters())
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }

    /// The base tensors under Hugging Face names (as [`Gpt2::named_parameters`]), with each
    /// adapted projection's weight replaced by `W + (alpha / r) B A` (detached): the weights
    /// of a plain GPT-2 that computes what this model computes. Without LoRA, the parameters
    /// themselves.
    pub fn merged_named_parameters(&self) -> Vec<(String, Tensor)> {
        let deltas: HashMap<String, Tensor> = self
            .projections()
            .into_iter()
            .filter_map(|(module, proj, _)| {
                let lora = proj.lora.as_ref()?;
                Some((format!("{module}.weight"), lora.delta()))
            })
            .collect();
        self.named_parameters()
            .into_iter()
            .map(|(name, t)| match deltas.get(&name) {
                Some(delta) => {
                    let merged = tch::no_grad(|| &t + delta.to_kind(t.kind()));
                    (name, merged)
                }
                None => (name, t),
            })
            .collect()
    }

    /// Writes the adapter in PEFT's layout into `dir` (created if needed):
    /// `adapter_model.safetensors` and `adapter_config.json`, which records
    /// `base_model_name_or_path` (a hub name or a directory) as the base it applies to.
    /// Each file is written under a temporary name and renamed into place.
    ///
    /// Refused if the model has no LoRA.
    pub fn save_adapter(
        &self,
        dir: &Path,
        base_model_name_or_path: &str,
    ) -> Result<(), ModelError> {
        let config = self
            .lora
            .as_ref()
            .ok_or_else(|| ModelError::InvalidConfig {
                path: None,
                field: "lora",
                reason: "this model has no LoRA adapters to save".into(),
            })?;
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let tensors: Vec<(String, Tensor)> = self
            .lora_named_parameters()
            .into_iter()
            .map(|(name, t)| (format!("{PEFT_PREFIX}{name}"), t))
            .collect();
        write_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE), &tensors)?;
        let target_modules: Vec<&str> = config.target_set().iter().map(|t| t.name()).collect();
        let json = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model_name_or_path,
            "r": config.rank,
            "lora_alpha": config.alpha,
            "target_modules": target_modules,
            "lora_dropout": 0.0,
            // GPT-2's projections are Conv1D, weights (in, out).
            "fan_in_fan_out": true,
            "bias": "none",
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
            "layers_to_transform": null,
            "rank_pattern": {},
            "alpha_pattern": {},
        });
        let text = serde_json::to_string_pretty(&json).expect("a JSON value serialises");
        checkpoint::write_text(&dir.join(ADAPTER_CONFIG_FILE), &text)
    }

    /// Reads a PEFT adapter directory into this model's LoRA tensors. The model must already
    /// have LoRA with the adapter's configuration (build it with
    /// [`LoraConfig::from_adapter_config`] and [`Gpt2::add_lora`]). Every tensor is checked
    /// (present, shape, float dtype, nothing unexpected) before any is copied, so on error
    /// nothing has changed; errors name the file and tensor.
    pub fn load_adapter(&self, dir: &Path) -> Result<(), ModelError> {
        let config_file = dir.join(ADAPTER_CONFIG_FILE);
        let file_config = LoraConfig::from_adapter_config(&config_file)?;
        let mismatch = |field, reason: String| ModelError::InvalidConfig {
            path: Some(config_file.clone()),
            field,
            reason,
        };
        let ours = self.lora.as_ref().ok_or_else(|| {
            mismatch(
                "peft_type",
                "the model has no LoRA adapters; add them with add_lora first".into(),
            )
        })?;
        if file_config.rank != ours.rank {
            return Err(mismatch(
                "r",
                format!(
                    "{}, the model's LoRA rank is {}",
                    file_config.rank, ours.rank
                ),
            ));
        }
        if file_config.alpha != ours.alpha {
            return Err(mismatch(
                "lora_alpha",
                format!("{}, the model's is {}", file_config.alpha, ours.alpha),
            ));
        }
        if file_config.target_set() != ours.target_set() {
            return Err(mismatch(
                "target_modules",
                format!(
                    "{:?}, the model's LoRA targets are {:?}",
                    file_config.target_set(),
                    ours.target_set()
                ),
            ));
        }

        let file = dir.join(ADAPTER_WEIGHTS_FILE);
        let bytes = std::fs::read(&file).map_err(|source| ModelError::Io {
            path: file.clone(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|source| ModelError::Safetensors {
            path: file.clone(),
            source,
        })?;
        let params = self.lora_named_parameters();
        let mut loaded = Vec::with_capacity(params.len());
        for (name, var) in &params {
            let full = format!("{PEFT_PREFIX}{name}");
            let view = st.tensor(&full).map_err(|e| match e {
                SafeTensorError::TensorNotFound(_) => ModelError::MissingTensor {
                    path: file.clone(),
                    name: full.clone(),
                },
                source => ModelError::Safetensors {
                    path: file.clone(),
                    source,
                },
            })?;
            loaded.push(read_tensor(&file, &full, &view, &var.size())?);
        }
        let expected: HashSet<String> = params
            .iter()
            .map(|(name, _)| format!("{PEFT_PREFIX}{name}"))
            .collect();
        if let Some(extra) = st.names().into_iter().find(|n| !expected.contains(*n)) {
            return Err(ModelError::UnexpectedTensor {
                path: file.clone(),
                name: extra.to_string(),
            });
        }
        tch::no_grad(|| {
            for ((_, mut var), src) in params.into_iter().zip(loaded) {
                var.f_copy_(&src)?;
            }
            Ok(())
        })
    }
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

/// Checks an adapter tensor's dtype and shape and copies it into a CPU tensor.
fn read_tensor(
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

/// Writes `tensors` to `file` as they are (no transposition), by write-then-rename.
fn write_safetensors(file: &Path, tensors: &[(String, Tensor)]) -> Result<(), ModelError> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let dtype = dtype_of(t.kind()).ok_or_else(|| ModelError::UnsupportedKind {
            name: name.clone(),
            kind: t.kind(),
        })?;
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let mut data = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, t.numel())?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.as_str(), dtype, shape, data));
    }
    let safetensors_error = |source| ModelError::Safetensors {
        path: file.to_path_buf(),
        source,
    };
    let mut views = Vec::with_capacity(buffers.len());
    for (name, dtype, shape, data) in &buffers {
        let view = TensorView::new(*dtype, shape.clone(), data).map_err(safetensors_error)?;
        views.push((*name, view));
    }
    // transformers and PEFT refuse safetensors files without this metadata entry.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut tmp_name = file.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp: PathBuf = file.with_file_name(tmp_name);
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| match e {
        SafeTensorError::IoError(source) => ModelError::Io {
            path: file.to_path_buf(),
            source,
        },
        source => safetensors_error(source),
    })?;
    std::fs::rename(&tmp, file).map_err(|source| ModelError::Io {
        path: file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_round_trip_through_serde() {
        for t in [LoraTarget::CAttn, LoraTarget::CProj, LoraTarget::CFc] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
            assert_eq!(serde_json::from_str::<LoraTarget>(&json).unwrap(), t);
            assert_eq!(LoraTarget::from_name(t.name()), Some(t));
        }
        assert!(serde_json::from_str::<LoraTarget>("\"q_proj\"").is_err());
        let config: LoraConfig =
            serde_json::from_str(r#"{"rank": 4, "alpha": 8, "targets": ["c_attn", "c_fc"]}"#)
                .unwrap();
        assert_eq!(config.targets, [LoraTarget::CAttn, LoraTarget::CFc]);
        assert_eq!(config.scale(), 2.0);
        assert!(serde_json::from_str::<LoraConfig>(
            r#"{"rank": 4, "alpha": 8, "targets": [], "dropout": 0.1}"#
        )
        .is_err());
    }

    #[test]
    fn invalid_configs_are_refused_naming_the_field() {
        let good = LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: vec![LoraTarget::CAttn],
        };
        good.validate().unwrap();
        let cases = [
            (
                LoraConfig {
                    rank: 0,
                    ..good.clone()
                },
                "lora.rank",
            ),
            (
                LoraConfig {
                    alpha: f64::NAN,
                    ..good.clone()
                },
                "lora.alpha",
            ),
            (
                LoraConfig {
                    alpha: 0.0,
                    ..good.clone()
                },
                "lora.alpha",
            ),
            (
                LoraConfig {
                    targets: vec![],
                    ..good.clone()
                },
                "lora.targets",
            ),
            (
                LoraConfig {
                    targets: vec![LoraTarget::CFc, LoraTarget::CFc],
                    ..good.clone()
                },
                "lora.targets",
            ),
        ];
        for (config, expected) in cases {
            match config.validate() {
                Err(ModelError::InvalidConfig { field, .. }) => assert_eq!(field, expected),
                other => panic!("{config:?}: {other:?}"),
            }
        }
    }
}
