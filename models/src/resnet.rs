//! ResNet-18 and ResNet-34 with GroupNorm, for DP image classification.
//!
//! He et al., "Deep Residual Learning for Image Recognition" (2015), in torchvision's layout:
//! a 7x7 stride-2 stem with a 3x3 stride-2 max pool, four stages of BasicBlocks (64, 128,
//! 256 and 512 channels; stages 2-4 halve the resolution in their first block, whose shortcut
//! is a 1x1 convolution plus norm), global average pooling and a linear classifier.
//!
//! BatchNorm is replaced by GroupNorm with `min(32, channels)` groups (Wu and He, "Group
//! Normalization", 2018): BatchNorm mixes the samples of a batch, so one sample's gradient
//! would depend on the others and per-sample clipping would bound nothing. GroupNorm has the
//! same two affine parameters per channel, so parameter counts equal torchvision's.
//! Variable names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`,
//! `fc`), so a GroupNorm ResNet state dict maps onto this one name for name.
//!
//! Pooling is adaptive, so any input of at least 32x32 works (smaller ones too, down to the
//! point where the stem leaves no pixels).

use crate::ModelError;
use bastion_dp::clip::layers::{Conv2d, Conv2dConfig, GroupNorm, Linear};
use bastion_dp::clip::Tape;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Channels of the four stages.
const STAGE_WIDTHS: [i64; 4] = [64, 128, 256, 512];

/// The shape of a GroupNorm ResNet built from BasicBlocks.
///
/// Read from TOML or JSON with unknown fields rejected; usually made by a preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// BasicBlocks in each of the four stages: `[2, 2, 2, 2]` is ResNet-18.
    pub blocks: [i64; 4],
    /// Number of output classes.
    pub num_classes: i64,
    /// Channels of the input images (3 for RGB).
    #[serde(default = "default_in_channels")]
    pub in_channels: i64,
    /// Upper bound on GroupNorm groups; a norm over `c` channels uses `min(max_norm_groups, c)`.
    #[serde(default = "default_max_norm_groups")]
    pub max_norm_groups: i64,
    /// GroupNorm epsilon.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
}

fn default_in_channels() -> i64 {
    3
}
fn default_max_norm_groups() -> i64 {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}

impl ResNetConfig {
    /// ResNet-18: stages of 2, 2, 2, 2 BasicBlocks (11.7M parameters at 1000 classes).
    pub fn resnet18(num_classes: i64) -> ResNetConfig {
        ResNetConfig::with_blocks([2, 2, 2, 2], num_classes)
    }

    /// ResNet-34: stages of 3, 4, 6, 3 BasicBlocks (21.8M parameters at 1000 classes).
    pub fn resnet34(num_classes: i64) -> ResNetConfig {
        ResNetConfig::with_blocks([3, 4, 6, 3], num_classes)
    }

    fn with_blocks(blocks: [i64; 4], num_classes: i64) -> ResNetConfig {
        ResNetConfig {
            blocks,
            num_classes,
            in_channels: default_in_channels(),
            max_norm_groups: default_max_norm_groups(),
            norm_eps: default_norm_eps(),
        }
    }

    /// Checks that the configuration describes a buildable network.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |field, reason: String| {
            Err(ModelError::InvalidConfig {
                path: None,
                field,
                reason,
            })
        };
        if let Some(b) = self.blocks.iter().find(|&&b| b < 1) {
            return invalid(
                "blocks",
                format!("every stage needs at least one block, found {b}"),
            );
        }
        if self.num_classes < 1 {
            return invalid(
                "num_classes",
                format!("must be >= 1, found {}", self.num_classes),
            );
        }
        if self.in_channels < 1 {
            return invalid(
                "in_channels",
                format!("must be >= 1, found {}", self.in_channels),
            );
        }
        if self.max_norm_groups < 1 {
            return invalid(
                "max_norm_groups",
                format!("must be >= 1, found {}", self.max_norm_groups),
            );
        }
        for width in STAGE_WIDTHS {
            if width % self.norm_groups(width) != 0 {
                return invalid(
                    "max_norm_groups",
                    format!(
                        "{} groups do not divide {width} channels; use a power of two",
                        self.norm_groups(width)
                    ),
                );
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return invalid(
                "norm_eps",
                format!("must be finite and > 0, found {}", self.norm_eps),
            );
        }
        Ok(())
    }

    fn norm_groups(&self, channels: i64) -> i64 {
        self.max_norm_groups.min(channels)
    }

    fn norm(&self, path: &nn::Path, channels: i64) -> GroupNorm {
        GroupNorm::new(path, self.norm_groups(channels), channels, self.norm_eps)
    }
}

/// A convolution without bias (the norm that follows has one), initialised as torchvision
/// does: Kaiming normal in fan-out mode for ReLU, `std = sqrt(2 / (out * k * k))`.
fn conv(path: &nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Conv2d {
    let mut layer = Conv2d::new(
        path,
        c_in,
        c_out,
        kernel,
        Conv2dConfig {
            stride: [stride, stride],
            padding: [kernel / 2, kernel / 2],
            bias: false,
            ..Default::default()
        },
    );
    let std = (2.0 / (c_out * kernel * kernel) as f64).sqrt();
    tch::no_grad(|| {
        let _ = layer.weight.normal_(0.0, std);
    });
    layer
}

/// Two 3x3 convolutions with a residual connection; the first may downsample.
#[derive(Debug)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: GroupNorm,
    conv2: Conv2d,
    bn2: GroupNorm,
    /// 1x1 convolution and norm on the shortcut when the shape changes.
    downsample: Option<(Conv2d, GroupNorm)>,
}

impl BasicBlock {
    fn new(path: &nn::Path, config: &ResNetConfig, c_in: i64, c_out: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let p = path / "downsample";
            (
                conv(&(&p / 0), c_in, c_out, 1, stride),
                config.norm(&(&p / 1), c_out),
            )
        });
        BasicBlock {
            conv1: conv(&(path / "conv1"), c_in, c_out, 3, stride),
            bn1: config.norm(&(path / "bn1"), c_out),
            conv2: conv(&(path / "conv2"), c_out, c_out, 3, 1),
            bn2: config.norm(&(path / "bn2"), c_out),
            downsample,
        }
    }

    fn forward(&self, tape: &Tape, x: &Tensor) -> Tensor {
        let out = self.bn1.forward(tape, &self.conv1.forward(tape, x)).relu();
        let out = self.bn2.forward(tape, &self.conv2.forward(tape, &out));
        let shortcut = match &self.downsample {
            Some((conv, norm)) => norm.forward(tape, &conv.forward(tape, x)),
            None => x.shallow_clone(),
        };
        // Out of place: the norm's output is recorded on the tape.
        (out + shortcut).relu()
    }
}

/// A GroupNorm ResNet built from BasicBlocks (ResNet-18, ResNet-34).
#[derive(Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: GroupNorm,
    stages: Vec<Vec<BasicBlock>>,
    fc: Linear,
    config: ResNetConfig,
}

impl ResNet {
    /// Builds the network under `path` (variables named as torchvision names them) with
    /// torchvision's initialisation.
    pub fn new(path: &nn::Path, config: &ResNetConfig) -> Result<ResNet, ModelError> {
        config.validate()?;
        let conv1 = conv(&(path / "conv1"), config.in_channels, 64, 7, 2);
        let bn1 = config.norm(&(path / "bn1"), 64);
        let mut c_in = 64;
        let mut stages = Vec::with_capacity(4);
        for (i, (&n, &width)) in config.blocks.iter().zip(&STAGE_WIDTHS).enumerate() {
            let stage_path = path / format!("layer{}", i + 1);
            let first_stride = if i == 0 { 1 } else { 2 };
            let stage = (0..n)
                .map(|j| {
                    let stride = if j == 0 { first_stride } else { 1 };
                    let block = BasicBlock::new(&(&stage_path / j), config, c_in, width, stride);
                    c_in = width;
                    block
                })
                .collect();
            stages.push(stage);
        }
        let fc = Linear::new(&(path / "fc"), c_in, config.num_classes, true);
        Ok(ResNet {
            conv1,
            bn1,
            stages,
            fc,
            config: config.clone(),
        })
    }

    /// The configuration this network was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Logits `(B, num_classes)` for `images` of shape `(B, in_channels, H, W)`.
    pub fn forward(&self, tape: &Tape, images: &Tensor) -> Tensor {
        let x = self
            .bn1
            .forward(tape, &self.conv1.forward(tape, images))
            .relu();
        let mut x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in self.stages.iter().flatten() {
            x = block.forward(tape, &x);
        }
        let pooled = x.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        self.fc.forward(tape, &pooled)
    }
}
