//! 2-D convolution with stride, padding, dilation and groups.

use super::fan_in_uniform;
use crate::clip::tape::{trainable, ConvGeometry, Tape, Use};
use tch::{nn, Tensor};

/// Hyper-parameters of a [`Conv2d`].
#[derive(Debug, Clone, Copy)]
pub struct Conv2dConfig {
    /// Stride (height, width).
    pub stride: [i64; 2],
    /// Zero padding (height, width).
    pub padding: [i64; 2],
    /// Dilation (height, width).
    pub dilation: [i64; 2],
    /// Number of groups; both channel counts must be divisible by it.
    pub groups: i64,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }
}

/// `torch.nn.Conv2d`: weight `(out, in / groups, kh, kw)`.
#[derive(Debug)]
pub struct Conv2d {
    /// Weight, `(out_channels, in_channels / groups, kh, kw)`.
    pub weight: Tensor,
    /// Optional bias, `(out_channels)`.
    pub bias: Option<Tensor>,
    geometry: ConvGeometry,
}

impl Conv2d {
    /// A new layer under `path` with a square `kernel`, PyTorch's initialisation.
    ///
    /// Panics if a channel count is not divisible by `config.groups` (a model-building bug).
    pub fn new(
        path: &nn::Path,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        config: Conv2dConfig,
    ) -> Conv2d {
        assert!(
            config.groups > 0
                && in_channels % config.groups == 0
                && out_channels % config.groups == 0,
            "Conv2d: channels {in_channels}->{out_channels} not divisible by groups {}",
            config.groups
        );
        let fan_in = in_channels / config.groups * kernel * kernel;
        let weight = path.var(
            "weight",
            &[out_channels, in_channels / config.groups, kernel, kernel],
            fan_in_uniform(fan_in),
        );
        let bias = config
            .bias
            .then(|| path.var("bias", &[out_channels], fan_in_uniform(fan_in)));
        Conv2d {
            weight,
            bias,
            geometry: ConvGeometry {
                kernel: [kernel, kernel],
                stride: config.stride,
                padding: config.padding,
                dilation: config.dilation,
                groups: config.groups,
            },
        }
    }

    /// Applies the convolution to `x` of shape `(B, C, H, W)`.
    pub fn forward(&self, tape: &Tape, x: &Tensor) -> Tensor {
        let g = &self.geometry;
        let y = x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            g.stride,
            g.padding,
            g.dilation,
            g.groups,
        );
        if tape.is_recording() {
            let weight = trainable(&self.weight);
            let bias = self.bias.as_ref().and_then(trainable);
            if weight.is_some() || bias.is_some() {
                tape.record(Use::Conv2d {
                    weight,
                    bias,
                    input: x.detach(),
                    output: y.shallow_clone(),
                    geometry: *g,
                });
            }
        }
        y
    }
}
