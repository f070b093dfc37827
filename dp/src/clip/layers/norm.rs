//! GroupNorm and LayerNorm with an elementwise affine, the sample-independent norms.
//!
//! Both normalise without affine and then apply `x_hat * weight + bias` as separate ops, so
//! the engine can record `x_hat`: a sample's weight gradient is `sum(g * x_hat)` over every
//! axis but the channel axis.

use crate::clip::tape::{trainable, Tape, Use};
use tch::{nn, Tensor};

fn record_affine(
    tape: &Tape,
    weight: &Tensor,
    bias: &Tensor,
    normalized: &Tensor,
    output: &Tensor,
    channel_dim: i64,
) {
    if !tape.is_recording() {
        return;
    }
    let weight = trainable(weight);
    let bias = trainable(bias);
    if weight.is_none() && bias.is_none() {
        return;
    }
    tape.record(Use::Affine {
        weight,
        bias,
        normalized: normalized.detach(),
        output: output.shallow_clone(),
        channel_dim,
    });
}

/// `torch.nn.GroupNorm` over `(B, C, ...)`, affine initialised to weight 1, bias 0.
#[derive(Debug)]
pub struct GroupNorm {
    /// Per-channel scale, `(C)`.
    pub weight: Tensor,
    /// Per-channel shift, `(C)`.
    pub bias: Tensor,
    groups: i64,
    channels: i64,
    eps: f64,
}

impl GroupNorm {
    /// A new GroupNorm of `channels` channels in `groups` groups.
    pub fn new(path: &nn::Path, groups: i64, channels: i64, eps: f64) -> GroupNorm {
        assert!(
            groups > 0 && channels % groups == 0,
            "GroupNorm: {channels} channels not divisible by {groups} groups"
        );
        GroupNorm {
            weight: path.ones("weight", &[channels]),
            bias: path.zeros("bias", &[channels]),
            groups,
            channels,
            eps,
        }
    }

    /// Normalises `x` of shape `(B, C, ...)`.
    pub fn forward(&self, tape: &Tape, x: &Tensor) -> Tensor {
        let x_hat = x.group_norm(self.groups, None::<Tensor>, None::<Tensor>, self.eps, false);
        let mut shape = vec![1, self.channels];
        shape.resize(x.dim(), 1);
        let y = &x_hat * self.weight.view(&shape[..]) + self.bias.view(&shape[..]);
        record_affine(tape, &self.weight, &self.bias, &x_hat, &y, 1);
        y
    }
}

/// `torch.nn.LayerNorm` over the last axis, affine initialised to weight 1, bias 0.
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale, `(d)`.
    pub weight: Tensor,
    /// Shift, `(d)`.
    pub bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    /// A new LayerNorm over a last axis of size `dim`.
    pub fn new(path: &nn::Path, dim: i64, eps: f64) -> LayerNorm {
        LayerNorm {
            weight: path.ones("weight", &[dim]),
            bias: path.zeros("bias", &[dim]),
            dim,
            eps,
        }
    }

    /// Normalises `x` of shape `(B, ..., d)` over its last axis.
    pub fn forward(&self, tape: &Tape, x: &Tensor) -> Tensor {
        let x_hat = x.layer_norm([self.dim], None::<Tensor>, None::<Tensor>, self.eps, false);
        let y = &x_hat * &self.weight + &self.bias;
        record_affine(
            tape,
            &self.weight,
            &self.bias,
            &x_hat,
            &y,
            x.dim() as i64 - 1,
        );
        y
    }
}
