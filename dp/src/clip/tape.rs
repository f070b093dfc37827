//! The tape on which layers record what the engine needs for per-sample gradients.

use std::cell::RefCell;
use tch::Tensor;

/// Convolution hyper-parameters, kept so the engine can unfold the input exactly as the
/// convolution saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub(crate) kernel: [i64; 2],
    pub(crate) stride: [i64; 2],
    pub(crate) padding: [i64; 2],
    pub(crate) dilation: [i64; 2],
    pub(crate) groups: i64,
}

/// One use of trainable parameters in the forward pass. `output` is the tensor whose gradient
/// the engine asks autograd for; the other tensors are detached views kept alive for the
/// norm and clipped-sum computation.
pub(crate) enum Use {
    /// `output = input @ weight^T + bias`, input `(B, ..., d)`. Also the tied output layer.
    Linear {
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        input: Tensor,
        output: Tensor,
    },
    /// `output = conv2d(input, weight) + bias`, input `(B, C, H, W)`.
    Conv2d {
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        input: Tensor,
        output: Tensor,
        geometry: ConvGeometry,
    },
    /// `output = weight[indices]`, indices `(B, ...)`.
    Embedding {
        weight: Tensor,
        indices: Tensor,
        output: Tensor,
    },
    /// `output = normalized * weight + bias` along `channel_dim` (GroupNorm, LayerNorm).
    Affine {
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        normalized: Tensor,
        output: Tensor,
        channel_dim: i64,
    },
}

impl Use {
    /// The trainable parameters this use involves.
    pub(crate) fn params(&self) -> impl Iterator<Item = &Tensor> {
        let (a, b) = match self {
            Use::Linear { weight, bias, .. }
            | Use::Conv2d { weight, bias, .. }
            | Use::Affine { weight, bias, .. } => (weight.as_ref(), bias.as_ref()),
            Use::Embedding { weight, .. } => (Some(weight), None),
        };
        a.into_iter().chain(b)
    }

    pub(crate) fn output(&self) -> &Tensor {
        match self {
            Use::Linear { output, .. }
            | Use::Conv2d { output, .. }
            | Use::Embedding { output, .. }
            | Use::Affine { output, .. } => output,
        }
    }
}

/// Records parameter uses during one forward pass. A disabled tape (non-private training,
/// evaluation) records nothing and costs nothing.
pub struct Tape {
    uses: RefCell<Vec<Use>>,
    recording: bool,
}

impl Tape {
    /// A tape that records, for a DP step.
    pub fn new() -> Tape {
        Tape {
            uses: RefCell::new(Vec::new()),
            recording: true,
        }
    }

    /// A tape that records nothing: non-private training and evaluation.
    pub fn disabled() -> Tape {
        Tape {
            uses: RefCell::new(Vec::new()),
            recording: false,
        }
    }

    /// Whether layers should record on this tape.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of uses recorded so far.
    pub fn len(&self) -> usize {
        self.uses.borrow().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn record(&self, entry: Use) {
        if self.recording {
            self.uses.borrow_mut().push(entry);
        }
    }

    pub(crate) fn take(&self) -> Vec<Use> {
        std::mem::take(&mut *self.uses.borrow_mut())
    }
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

/// A parameter takes part in per-sample clipping only when it is trainable.
pub(crate) fn trainable(t: &Tensor) -> Option<Tensor> {
    t.requires_grad().then(|| t.shallow_clone())
}
