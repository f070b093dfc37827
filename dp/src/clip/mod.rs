//! The per-sample clipping engine.
//!
//! DP-SGD needs, for every sample `i` in a batch, the norm of that sample's gradient `g_i`
//! over all trainable parameters, and then the sum `sum_i min(1, C/|g_i|) g_i`. Computing
//! each `g_i` naively costs a batch-sized copy of every weight. This engine avoids that:
//!
//! 1. During the forward pass, every layer built from [`layers`] records on a [`Tape`] what its
//!    parameters' gradients are made of: its input activation and its output tensor.
//! 2. One backward pass asks autograd only for the gradients of those recorded outputs
//!    (`Tensor::run_backward`), which skips every weight gradient.
//! 3. For each parameter the engine forms the per-sample gradient in a factored form
//!    (`contribution.rs`): an outer product of output gradients and inputs (Linear, Conv2d
//!    via im2col), rows scattered into a table (Embedding), or a small exact per-sample tensor
//!    (biases, norm affines). Per-sample norms come from these factors: "ghost norms" through
//!    Gram matrices where that is cheaper, or per-sample gradients materialised within a memory
//!    budget where that is cheaper (the book-keeping idea of Bu et al. 2023, mixed per layer
//!    as in Li et al. 2022 / fastDP).
//!    A convolution's Gram of patches is read off the Gram of its input pixels where that is
//!    cheaper than unfolding. Which layers materialise is decided by timing ([`LayerChoice`]).
//! 4. The clipped sum is formed from the same factors with each sample's output gradient
//!    scaled by its clip factor: one GEMM per layer (or, for a convolution, one convolution
//!    with samples and channels swapped), the same work as the ordinary weight gradient,
//!    with no second backward pass.
//!
//! Shared weights (GPT-2 ties its token embedding to its output layer) are exact: a sample's
//! gradient for a shared weight is the sum over its uses, and its norm is taken of that sum,
//! including the cross terms `2<G_use1, G_use2>` (computed from the factors as well).
//!
//! Rules for models: build every trainable layer from [`layers`]; do not modify a layer's
//! output in place (autograd would then hand back the gradient of the modified tensor); keep
//! per-sample losses independent (no batch statistics such as BatchNorm).

mod contribution;
mod engine;
pub mod layers;
mod plan;
mod tape;

pub use engine::{clip_per_sample, trainable_params, ClipConfig, ClipError, ClippedGradients};
pub use plan::LayerChoice;
pub use tape::Tape;
