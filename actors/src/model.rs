//! The model a job trains, built identically on every node: the architecture from the
//! job's [`Task`], the weights from the coordinator's initial-weights blob (checked against
//! its SHA-256 before use), so every node starts bitwise identical.

use crate::data::Batch;
use crate::protocol::Task;
use bastion_dp::clip::{trainable_params, Tape};
use bastion_models::gpt2::{Gpt2, LoraConfig, LoraTarget};
use bastion_models::resnet::{ResNet, ResNetConfig};
use bastion_models::{per_sample_cross_entropy, per_sample_lm_loss_masked};
use std::collections::BTreeMap;
use tch::{nn, Device, Tensor};

/// The network of a task.
pub enum Net {
    /// Image classification.
    Classifier(ResNet),
    /// Causal language model (full fine-tuning, or LoRA on a frozen base).
    Lm(Gpt2),
}

/// A model and its variables.
pub struct Model {
    /// Every variable (frozen ones included), on [`Model::device`].
    pub vs: nn::VarStore,
    /// The network.
    pub net: Net,
}

/// The model's LoRA settings in the models crate's terms.
pub fn lora_config(lora: &crate::job::LoraSpec) -> Result<LoraConfig, String> {
    let targets = lora
        .targets
        .iter()
        .map(|t| match t.as_str() {
            "c_attn" => Ok(LoraTarget::CAttn),
            "c_proj" => Ok(LoraTarget::CProj),
            "c_fc" => Ok(LoraTarget::CFc),
            other => Err(format!("unknown LoRA target {other:?}")),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(LoraConfig {
        rank: lora.rank,
        alpha: lora.alpha,
        targets,
    })
}

impl Model {
    /// The task's architecture with fresh weights from `seed` (the coordinator's initial
    /// weights; members overwrite them with [`Model::load_weights`]).
    /// Built on the CPU, so the initial weights do not depend on the coordinator's device.
    pub fn build(task: &Task, seed: i64) -> Result<Model, String> {
        tch::manual_seed(seed);
        Model::make(task, true, Device::Cpu)
    }

    /// The task's architecture with every GPT-2 variable zero (a ResNet is small enough to
    /// initialise), for weights loaded next with [`Model::load_weights`].
    pub fn for_loading(task: &Task) -> Result<Model, String> {
        Model::make(task, false, Device::Cpu)
    }

    /// [`Model::for_loading`] with the variables on `device`.
    pub fn for_loading_on(task: &Task, device: Device) -> Result<Model, String> {
        Model::make(task, false, device)
    }

    fn make(task: &Task, fresh: bool, device: Device) -> Result<Model, String> {
        let vs = nn::VarStore::new(device);
        let net = match task {
            Task::Classify {
                depth,
                classes,
                channels,
                ..
            } => {
                let classes = classes.len() as i64;
                let mut config = match depth {
                    18 => ResNetConfig::resnet18(classes),
                    34 => ResNetConfig::resnet34(classes),
                    d => return Err(format!("unsupported ResNet depth {d}")),
                };
                config.in_channels = *channels;
                Net::Classifier(ResNet::new(&vs.root(), &config).map_err(|e| e.to_string())?)
            }
            Task::CausalLm { config, lora, .. } => {
                let mut model = if fresh {
                    Gpt2::new(&vs.root(), config)
                } else {
                    Gpt2::zeroed(&vs.root(), config)
                }
                .map_err(|e| e.to_string())?;
                if let Some(lora) = lora {
                    model
                        .add_lora(&vs.root(), &lora_config(lora)?)
                        .map_err(|e| e.to_string())?;
                }
                Net::Lm(model)
            }
        };
        Ok(Model { vs, net })
    }

    /// Where the variables live; batches are moved here for the forward pass.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every variable, sorted by name.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// The trainable variables, sorted by name (what checkpoints hold; the frozen base is
    /// the initial weights').
    pub fn trainable_named(&self) -> Vec<(String, Tensor)> {
        self.named()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }

    /// The parameters DP-SGD trains, in the engine's order.
    pub fn trainable(&self) -> Vec<Tensor> {
        trainable_params(&self.vs)
    }

    /// All weights as safetensors (the initial-weights blob).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        crate::weights::to_safetensors(&self.named())
    }

    /// Copies `names` from safetensors `bytes` into the variables (on whatever device they
    /// live); with `all`, every variable must be present. Shapes are checked before anything
    /// changes.
    pub fn load_weights(&self, bytes: &[u8], all: bool) -> Result<(), String> {
        let saved: BTreeMap<String, Tensor> = crate::weights::from_safetensors(bytes)?
            .into_iter()
            .collect();
        let vars = self.vs.variables();
        for (name, value) in &saved {
            let var = vars
                .get(name)
                .ok_or_else(|| format!("weights hold {name}, which the model does not have"))?;
            if value.size() != var.size() {
                return Err(format!(
                    "{name}: weights have shape {:?}, the model {:?}",
                    value.size(),
                    var.size()
                ));
            }
        }
        if all {
            if let Some(name) = vars.keys().find(|n| !saved.contains_key(*n)) {
                return Err(format!("weights lack {name}"));
            }
        }
        tch::no_grad(|| {
            for (name, value) in &saved {
                let mut var = vars[name].shallow_clone();
                var.copy_(value);
            }
        });
        Ok(())
    }

    /// Copies the trainable variables of `source` (the same task, on any device) into this
    /// model's: refreshes a GPU's copy after the optimizer updated the first GPU's model.
    pub fn copy_trainable_from(&self, source: &Model) -> Result<(), String> {
        let (to, from) = (self.trainable(), source.trainable());
        if to.len() != from.len() {
            return Err(format!(
                "copying {} trainable tensors into a model with {}",
                from.len(),
                to.len()
            ));
        }
        tch::no_grad(|| {
            for (to, from) in to.iter().zip(&from) {
                to.shallow_clone().copy_(from);
            }
        });
        Ok(())
    }

    /// Each sample's loss on `batch` (recorded on `tape` for the clipping engine). The batch
    /// is moved to the model's device first.
    pub fn per_sample_loss(&self, tape: &Tape, batch: &Batch) -> Result<Tensor, String> {
        let batch = &batch.to_device(self.device());
        match (&self.net, batch) {
            (Net::Classifier(m), Batch::Images { images, labels }) => {
                Ok(per_sample_cross_entropy(&m.forward(tape, images), labels))
            }
            (Net::Lm(m), Batch::Tokens { ids, mask }) => {
                let logits = m.forward_masked(tape, ids, Some(mask));
                Ok(per_sample_lm_loss_masked(&logits, ids, mask))
            }
            _ => Err("the batch does not fit the model (images vs. tokens)".into()),
        }
    }
}
