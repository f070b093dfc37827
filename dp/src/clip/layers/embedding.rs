//! Embedding table, optionally tied to an output layer.

use super::linear::record_linear;
use crate::clip::tape::{Tape, Use};
use tch::{nn, Tensor};

/// `torch.nn.Embedding`: a `(num_embeddings, dim)` table looked up by index.
#[derive(Debug)]
pub struct Embedding {
    /// The table, `(num_embeddings, dim)`.
    pub weight: Tensor,
}

impl Embedding {
    /// A new table under `path` (variable `weight`), initialised N(0, std^2).
    pub fn new(path: &nn::Path, num_embeddings: i64, dim: i64, std: f64) -> Embedding {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        Embedding::with_init(path, num_embeddings, dim, init)
    }

    /// A new table under `path` starting as `init` (a constant when weights are about to be
    /// loaded into it).
    pub fn with_init(path: &nn::Path, num_embeddings: i64, dim: i64, init: nn::Init) -> Embedding {
        Embedding {
            weight: path.var("weight", &[num_embeddings, dim], init),
        }
    }

    /// Looks up `indices` (int64, `(B, ...)`), giving `(B, ..., dim)`.
    pub fn forward(&self, tape: &Tape, indices: &Tensor) -> Tensor {
        let y = Tensor::embedding(&self.weight, indices, -1, false, false);
        if tape.is_recording() && self.weight.requires_grad() {
            tape.record(Use::Embedding {
                weight: self.weight.shallow_clone(),
                indices: indices.shallow_clone(),
                output: y.shallow_clone(),
            });
        }
        y
    }

    /// The tied output layer: `h W^T`, logits over the table's rows (GPT-2's LM head).
    /// The engine sees a second use of the same weight and clips the sum of both uses.
    pub fn attend(&self, tape: &Tape, h: &Tensor) -> Tensor {
        let y = h.linear(&self.weight, None::<Tensor>);
        record_linear(tape, &self.weight, None, h, &y);
        y
    }
}
