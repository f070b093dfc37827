//! The clipping pass: one backward for output gradients, per-sample norms, clipped sums.

use super::contribution::{contributions_of, Contribution};
use super::plan::{self, LayerChoice};
use super::tape::Tape;
use std::collections::HashMap;
use tch::Tensor;

/// Settings of the clipping pass.
#[derive(Debug, Clone)]
pub struct ClipConfig {
    /// The clipping bound `C`: each sample's gradient is scaled to norm at most `C`.
    pub max_grad_norm: f64,
    /// Memory the engine may spend on materialised per-sample gradients, for layers where
    /// that is cheaper than ghost norms (few positions, small weights). 0 forces ghost norms.
    pub materialize_budget_bytes: usize,
    /// How each layer's way of computing norms and sums is picked: by timing (default) or
    /// by a fixed cost model (reproducible rounding).
    pub layer_choice: LayerChoice,
}

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig {
            max_grad_norm: 1.0,
            materialize_budget_bytes: 32 << 20,
            layer_choice: LayerChoice::Measured,
        }
    }
}

/// The result of a clipping pass over a batch of `B` samples.
#[derive(Debug)]
pub struct ClippedGradients {
    /// Each sample's gradient norm over all trainable parameters, before clipping, `(B,)`.
    pub norms: Tensor,
    /// `sum_b min(1, C / norms[b]) * grad_b`, one tensor per parameter passed in, same order.
    pub grads: Vec<Tensor>,
}

/// Why a clipping pass was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClipError {
    /// The per-sample loss is not a vector with one entry per sample.
    #[error("per-sample loss must have shape (B,), found {found:?}; do not reduce over the batch")]
    LossShape {
        /// The shape passed in.
        found: Vec<i64>,
    },
    /// The clipping bound is not a positive finite number.
    #[error("max_grad_norm must be finite and > 0, found {0}")]
    MaxGradNorm(f64),
    /// A parameter in the list is frozen.
    #[error(
        "parameter {index} (shape {shape:?}) does not require grad: pass only trainable parameters"
    )]
    FrozenParam {
        /// Position in the parameter list.
        index: usize,
        /// Its shape.
        shape: Vec<i64>,
    },
    /// A parameter in the list was not used through an engine layer in the forward pass, so
    /// its per-sample gradients are unknown; clipping without it would under-count norms.
    #[error(
        "parameter {index} (shape {shape:?}) was not recorded on the tape: build every trainable \
         layer from bastion_dp::clip::layers and run the forward pass with a recording Tape"
    )]
    Unrecorded {
        /// Position in the parameter list.
        index: usize,
        /// Its shape.
        shape: Vec<i64>,
    },
    /// A recorded layer uses a trainable parameter missing from the parameter list.
    #[error("the forward pass used a trainable parameter of shape {shape:?} that is not in the parameter list")]
    UnlistedParam {
        /// Its shape.
        shape: Vec<i64>,
    },
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The parameters of `vs` that take part in training: trainable and not frozen (LoRA and
/// fine-tuning freeze parameters by switching off `requires_grad`).
pub fn trainable_params(vs: &tch::nn::VarStore) -> Vec<Tensor> {
    vs.trainable_variables()
        .into_iter()
        .filter(|t| t.requires_grad())
        .collect()
}

/// Parameters are identified by their storage, so a tied weight is one parameter however
/// many layers use it.
fn key(t: &Tensor) -> usize {
    t.data_ptr() as usize
}

/// Runs the clipping pass for the forward pass recorded on `tape`.
///
/// `per_sample_loss` is `(B,)`, one independent loss per sample; `params` are the trainable
/// parameters to produce clipped sums for. The tape is emptied. The backward pass frees the
/// forward graph, so call this once per forward pass.
pub fn clip_per_sample(
    tape: &Tape,
    per_sample_loss: &Tensor,
    params: &[Tensor],
    config: &ClipConfig,
) -> Result<ClippedGradients, ClipError> {
    let uses = tape.take();
    if per_sample_loss.dim() != 1 {
        return Err(ClipError::LossShape {
            found: per_sample_loss.size(),
        });
    }
    if !(config.max_grad_norm.is_finite() && config.max_grad_norm > 0.0) {
        return Err(ClipError::MaxGradNorm(config.max_grad_norm));
    }
    if let Some((index, p)) = params.iter().enumerate().find(|(_, p)| !p.requires_grad()) {
        return Err(ClipError::FrozenParam {
            index,
            shape: p.size(),
        });
    }
    let batch = per_sample_loss.size()[0];
    let options = (per_sample_loss.kind(), per_sample_loss.device());
    if batch == 0 {
        // An empty Poisson sample: nothing to clip, the step still gets its noise.
        return Ok(ClippedGradients {
            norms: Tensor::zeros([0], options),
            grads: params.iter().map(|p| p.zeros_like().detach()).collect(),
        });
    }

    if uses.is_empty() {
        return match params.first() {
            Some(p) => Err(ClipError::Unrecorded {
                index: 0,
                shape: p.size(),
            }),
            None => Ok(ClippedGradients {
                norms: Tensor::zeros([batch], options),
                grads: Vec::new(),
            }),
        };
    }
    let outputs: Vec<&Tensor> = uses.iter().map(|u| u.output()).collect();
    let total = per_sample_loss.sum(per_sample_loss.kind());
    let grads_out = Tensor::f_run_backward(&[&total], &outputs, false, false)?;

    tch::no_grad(|| {
        let index: HashMap<usize, usize> = params
            .iter()
            .enumerate()
            .map(|(i, p)| (key(p), i))
            .collect();
        let mut per_param: Vec<Vec<Contribution>> = params.iter().map(|_| Vec::new()).collect();
        let mut recorded = vec![false; params.len()];
        for entry in &uses {
            for param in entry.params() {
                match index.get(&key(param)) {
                    Some(&i) => recorded[i] = true,
                    None => {
                        return Err(ClipError::UnlistedParam {
                            shape: param.size(),
                        })
                    }
                }
            }
        }
        for (entry, grad) in uses.iter().zip(&grads_out) {
            if grad.defined() {
                // An undefined gradient means this output did not reach the loss: zero.
                contributions_of(entry, grad, |param, c| {
                    per_param[index[&key(param)]].push(c)
                });
            }
        }
        for (i, was_recorded) in recorded.iter().enumerate() {
            if !was_recorded {
                return Err(ClipError::Unrecorded {
                    index: i,
                    shape: params[i].size(),
                });
            }
        }
        let choices = plan::choose(
            &per_param,
            config.materialize_budget_bytes,
            config.layer_choice,
            &Tensor::ones([batch], options),
        );
        for (contribs, choice) in per_param.iter_mut().zip(&choices) {
            if choice.materialize {
                contribs[0] = Contribution::PerSample(contribs[0].materialize());
            }
        }

        let mut squared = Tensor::zeros([batch], options);
        for contribs in &per_param {
            for (j, c) in contribs.iter().enumerate() {
                squared += c.squared_norms();
                for other in &contribs[j + 1..] {
                    squared += c.inner(other) * 2.0;
                }
            }
        }
        // Cross terms can make tiny norms round below zero.
        let norms = squared.clamp_min(0.0).sqrt();
        let factors = (norms.reciprocal() * config.max_grad_norm).clamp_max(1.0);
        // Consume the factors as each sum is formed, so their memory goes back early.
        let grads = per_param
            .into_iter()
            .zip(params)
            .zip(&choices)
            .map(|((contribs, p), choice)| {
                contribs
                    .into_iter()
                    .map(|c| c.clipped_sum(&factors, choice.route))
                    .reduce(|a, b| a + b)
                    .unwrap_or_else(|| p.zeros_like().detach())
            })
            .collect();
        Ok(ClippedGradients { norms, grads })
    })
}
