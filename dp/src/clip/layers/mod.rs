//! Layers that record on a [`Tape`](super::Tape) what per-sample clipping needs.
//!
//! One file per layer type. Each layer computes exactly what its PyTorch counterpart computes,
//! in both modes, so non-private and private training run the same arithmetic. The
//! per-sample gradient code for each layer sits in `clip/contribution.rs`, entered in
//! one place (`contributions_of`).
//!
//! BatchNorm is deliberately absent: it mixes samples within a batch, so a sample's gradient
//! depends on the others and per-sample clipping bounds nothing. Use [`GroupNorm`] instead.

mod conv2d;
mod embedding;
mod linear;
mod norm;

pub use conv2d::{Conv2d, Conv2dConfig};
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::{GroupNorm, LayerNorm};

use tch::nn::Init;

/// PyTorch's default initialisation for Linear and Conv2d weights and biases:
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
fn fan_in_uniform(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}
