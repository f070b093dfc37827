//! Linear layer on `(B, d)` or sequence `(B, T, d)` input.

use super::fan_in_uniform;
use crate::clip::tape::{trainable, Tape, Use};
use tch::{nn, Tensor};

/// `y = x W^T + b` with `W` of shape `(out, in)`, as `torch.nn.Linear`.
#[derive(Debug)]
pub struct Linear {
    /// Weight, `(out_dim, in_dim)`.
    pub weight: Tensor,
    /// Optional bias, `(out_dim)`.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A new layer under `path` (variables `weight` and `bias`), PyTorch's initialisation.
    pub fn new(path: &nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> Linear {
        let init = fan_in_uniform(in_dim);
        Linear::with_init(path, in_dim, out_dim, bias.then_some(init), init)
    }

    /// A new layer under `path` whose weight starts as `weight` and bias (if any) as `bias`:
    /// for models with an initialisation of their own, or about to load weights (a constant
    /// costs no random numbers).
    pub fn with_init(
        path: &nn::Path,
        in_dim: i64,
        out_dim: i64,
        bias: Option<nn::Init>,
        weight: nn::Init,
    ) -> Linear {
        let weight = path.var("weight", &[out_dim, in_dim], weight);
        let bias = bias.map(|init| path.var("bias", &[out_dim], init));
        Linear { weight, bias }
    }

    /// Applies the layer to `x` of shape `(B, ..., in_dim)`.
    pub fn forward(&self, tape: &Tape, x: &Tensor) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        record_linear(tape, &self.weight, self.bias.as_ref(), x, &y);
        y
    }
}

/// Records a linear use of `weight` (shared by [`Linear`] and the tied output layer of
/// [`super::Embedding::attend`]).
pub(super) fn record_linear(
    tape: &Tape,
    weight: &Tensor,
    bias: Option<&Tensor>,
    x: &Tensor,
    y: &Tensor,
) {
    if !tape.is_recording() {
        return;
    }
    let weight = trainable(weight);
    let bias = bias.and_then(trainable);
    if weight.is_none() && bias.is_none() {
        return;
    }
    tape.record(Use::Linear {
        weight,
        bias,
        input: x.detach(),
        output: y.shallow_clone(),
    });
}
