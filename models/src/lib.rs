//! DP-ready models for BastionAI, built from the clipping engine's layers.
//!
//! Every trainable parameter lives in a layer from [`bastion_dp::clip::layers`], so one
//! forward pass on a recording [`Tape`](bastion_dp::clip::Tape) gives the engine what it
//! needs for per-sample gradient norms and the clipped sum; on a disabled tape the same
//! forward is plain libtorch. The models keep samples independent (GroupNorm, never
//! BatchNorm; losses per sample, never averaged over the batch), and never modify a recorded
//! output in place.
//!
//! - [`resnet`]: ResNet-18 / ResNet-34 with GroupNorm, for image classification
//!   (histopathology, MedMNIST).
//! - [`gpt2`]: GPT-2 with its output layer tied to the token embedding, loadable from and
//!   savable to Hugging Face checkpoints.
//! - [`loss`]: per-sample losses for both.
//!
//! One module per model family: a serde configuration (read from the checkpoint's
//! `config.json` where there is one) with named presets, a constructor whose variable paths
//! mirror the checkpoint's tensor names, then `forward`.
//!
//! ```no_run
//! use bastion_dp::clip::{clip_per_sample, ClipConfig, Tape};
//! use bastion_models::resnet::{ResNet, ResNetConfig};
//! use bastion_models::per_sample_cross_entropy;
//! use tch::{nn::VarStore, Device, Kind, Tensor};
//!
//! let vs = VarStore::new(Device::Cpu);
//! let model = ResNet::new(&vs.root(), &ResNetConfig::resnet18(2)).unwrap();
//! let images = Tensor::randn([8, 3, 64, 64], (Kind::Float, Device::Cpu));
//! let labels = Tensor::zeros([8], (Kind::Int64, Device::Cpu));
//! let tape = Tape::new();
//! let loss = per_sample_cross_entropy(&model.forward(&tape, &images), &labels);
//! let clipped = clip_per_sample(&tape, &loss, &vs.trainable_variables(), &ClipConfig {
//!     max_grad_norm: 1.0,
//!     ..Default::default()
//! })
//! .unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod gpt2;
pub mod loss;
pub mod resnet;
pub mod tokenizer;

pub use error::ModelError;
pub use loss::{per_sample_cross_entropy, per_sample_lm_loss, per_sample_lm_loss_masked};
