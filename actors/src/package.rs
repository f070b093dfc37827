//! What the coordinator prepares from the model owner's job before admitting anyone: the task,
//! the tokenizer and the initial weights, with their digests. Members get these over the
//! attested link and never need the model owner's files.

use crate::job::{JobSpec, ModelSpec};
use crate::model::Model;
use crate::protocol::{BlobInfo, JobOffer, Task};
use bastion_models::gpt2::{Gpt2, Gpt2Config};
use std::sync::Arc;

/// The job as the coordinator ships it.
#[derive(Clone)]
pub struct JobPackage {
    /// The offer every node receives (its `coordinator` field is filled per connection).
    pub offer: JobOffer,
    /// The tokenizer.json bytes (language models).
    pub tokenizer: Option<Arc<Vec<u8>>>,
    /// The initial weights (safetensors).
    pub weights: Arc<Vec<u8>>,
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn blob(bytes: &[u8]) -> BlobInfo {
    BlobInfo {
        len: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    }
}

/// Reads the model owner's files and makes the initial weights (blocking work).
pub fn prepare(job: &JobSpec, coordinator: &str) -> Result<JobPackage, String> {
    let (task, tokenizer, base) = match &job.model {
        ModelSpec::Resnet {
            depth,
            classes,
            image_size,
            channels,
        } => (
            Task::Classify {
                depth: *depth,
                classes: classes.clone(),
                image_size: *image_size,
                channels: *channels,
            },
            None,
            None,
        ),
        ModelSpec::Gpt2 {
            checkpoint,
            config,
            tokenizer,
            seq_len,
        } => {
            let tokenizer_path = match (tokenizer, checkpoint) {
                (Some(t), _) => t.clone(),
                (None, Some(dir)) => dir.join("tokenizer.json"),
                (None, None) => return Err("[model] a GPT-2 job needs a tokenizer".into()),
            };
            let tokenizer_bytes = std::fs::read(&tokenizer_path)
                .map_err(|e| format!("tokenizer {}: {e}", tokenizer_path.display()))?;
            let parsed = bastion_models::tokenizer::TextTokenizer::from_bytes(&tokenizer_bytes)
                .map_err(|e| format!("tokenizer {}: {e}", tokenizer_path.display()))?;
            let (gpt2_config, base) = match (checkpoint, config) {
                (Some(dir), _) => {
                    // Loaded once here to check it and to take its weights.
                    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
                    let model = Gpt2::load(&vs.root(), dir)
                        .map_err(|e| format!("checkpoint {}: {e}", dir.display()))?;
                    let named = model.named_parameters();
                    (model.config().clone(), Some(named))
                }
                (None, Some(shape)) => (
                    Gpt2Config {
                        n_layer: shape.n_layer,
                        n_head: shape.n_head,
                        n_embd: shape.n_embd,
                        vocab_size: parsed.vocab_size() as i64,
                        n_positions: shape.n_positions,
                        layer_norm_epsilon: 1e-5,
                        n_inner: None,
                    },
                    None,
                ),
                (None, None) => return Err("[model] needs a checkpoint or a config".into()),
            };
            if (parsed.vocab_size() as i64) > gpt2_config.vocab_size {
                return Err(format!(
                    "tokenizer {} has {} tokens, more than the model's vocabulary of {}",
                    tokenizer_path.display(),
                    parsed.vocab_size(),
                    gpt2_config.vocab_size
                ));
            }
            if *seq_len > gpt2_config.n_positions {
                return Err(format!(
                    "[model] seq_len {seq_len} exceeds the model's n_positions {}",
                    gpt2_config.n_positions
                ));
            }
            (
                Task::CausalLm {
                    config: gpt2_config,
                    lora: job.lora.clone(),
                    seq_len: *seq_len,
                    base: checkpoint
                        .as_ref()
                        .and_then(|d| d.file_name())
                        .map_or("fresh".into(), |n| n.to_string_lossy().into_owned()),
                },
                Some(tokenizer_bytes),
                base,
            )
        }
    };
    let model = Model::build(&task, job.schedule.init_seed)?;
    if let Some(base) = base {
        // The checkpoint's weights replace the fresh base; LoRA adapters keep their init.
        tch::no_grad(|| -> Result<(), String> {
            let vars = model.vs.variables();
            for (name, value) in base {
                let mut var = vars
                    .get(&name)
                    .ok_or_else(|| format!("the model has no variable {name}"))?
                    .shallow_clone();
                var.f_copy_(&value).map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(())
        })?;
    }
    let weights = model.to_bytes()?;
    let weights_info = blob(&weights);
    let tokenizer_info = tokenizer.as_deref().map(blob);
    // The job's identity covers its settings and the bytes it starts from.
    let spec = serde_json::to_string(job).map_err(|e| e.to_string())?;
    let identity = format!(
        "{spec}\n{}\n{}\n{}",
        weights_info.sha256,
        tokenizer_info.as_ref().map_or("", |t| t.sha256.as_str()),
        job.model_owner.as_deref().unwrap_or("")
    );
    let id = sha256_hex(identity.as_bytes())[..32].to_string();
    Ok(JobPackage {
        offer: JobOffer {
            coordinator: coordinator.to_string(),
            job: id,
            task,
            optim: job.optim.clone(),
            tokenizer: tokenizer_info,
            weights: weights_info,
            datasets: job.datasets.clone(),
            model_owner: job.model_owner.clone(),
        },
        tokenizer: tokenizer.map(Arc::new),
        weights: Arc::new(weights),
    })
}
