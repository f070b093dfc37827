//! Where a node computes: `device` in `node.toml`, `"cpu"` (the default), `"cuda:N"` (one
//! GPU; `"cuda"` is `"cuda:0"`) or `"cuda:N,M,..."` (several GPUs of this VM).
//!
//! On GPUs the Trainer keeps the model there, moves each step's batch there for the forward
//! pass and runs the clipping engine there. With several GPUs the step's Poisson sample is
//! split across them; each clips its part (clipping is per sample, so the parts' sums add up
//! to the whole sample's sum), the parts are summed inside the VM, and the node adds its noise
//! once, on the host: the node's privacy accounting does not change with its GPU count.
//!
//! Noise is made on the CPU, never on a GPU: the noisy share must leave through the host's
//! attested TLS ring anyway, so it has to exist on the host; noising there keeps one audited
//! sampler (`bastion_dp::noise`, AES-256-CTR with grid snapping against floating-point
//! attacks) for every device, keeps its keystream out of GPU memory, and costs only the one
//! device-to-host copy of the clipped sum that the ring needs anyway.
//!
//! A GPU that is asked for and missing stops the node; it never falls back to the CPU.

use tch::Device;

/// The compute devices of a node's Trainer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ComputeDevice {
    /// The CPU (libtorch's intra-op threads, `threads` in `node.toml`).
    #[default]
    Cpu,
    /// GPUs of this VM by CUDA ordinal, distinct, in the order given. The first holds the
    /// model the optimizer updates; the others hold copies that compute their part of each
    /// step's sample and are refreshed from the first after every update.
    Cuda(Vec<usize>),
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeDevice::Cpu => f.write_str("cpu"),
            ComputeDevice::Cuda(gpus) => {
                let list: Vec<String> = gpus.iter().map(|g| g.to_string()).collect();
                write!(f, "cuda:{}", list.join(","))
            }
        }
    }
}

/// What `device` accepts, for error messages.
const FORMS: &str =
    "\"cpu\", \"cuda\" (= \"cuda:0\"), \"cuda:N\" or \"cuda:N,M,...\" (several GPUs of this VM)";

impl ComputeDevice {
    /// Parses `device` from `node.toml`; `Err` says what is wrong and what is accepted.
    pub fn parse(text: &str) -> Result<ComputeDevice, String> {
        if text == "cpu" {
            return Ok(ComputeDevice::Cpu);
        }
        if text == "cuda" {
            return Ok(ComputeDevice::Cuda(vec![0]));
        }
        let Some(list) = text.strip_prefix("cuda:") else {
            return Err(format!("{text:?} is not one of {FORMS}"));
        };
        let mut gpus = Vec::new();
        for part in list.split(',') {
            // Digits only: `u64::from_str` would also take "+1".
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{text:?}: {part:?} is not a GPU number; accepted: {FORMS}"
                ));
            }
            let gpu: usize = part
                .parse()
                .map_err(|_| format!("{text:?}: GPU number {part} is too large"))?;
            if gpus.contains(&gpu) {
                return Err(format!("{text:?} names GPU {gpu} twice"));
            }
            gpus.push(gpu);
        }
        Ok(ComputeDevice::Cuda(gpus))
    }

    /// The libtorch devices, the model's own first.
    pub fn devices(&self) -> Vec<Device> {
        match self {
            ComputeDevice::Cpu => vec![Device::Cpu],
            ComputeDevice::Cuda(gpus) => gpus.iter().map(|&g| Device::Cuda(g)).collect(),
        }
    }

    /// Checks that this process can use the devices: libtorch with CUDA and every named GPU
    /// present. Called at node start and before the Trainer builds its model, so a missing
    /// GPU stops the node with one line instead of falling back to the CPU.
    pub fn check_available(&self) -> Result<(), String> {
        if *self == ComputeDevice::Cpu {
            return Ok(());
        }
        let gpus = if tch::Cuda::is_available() {
            usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
        } else {
            0
        };
        self.check_against(gpus, cfg!(feature = "cuda"))
    }

    /// [`Self::check_available`] against `gpus` visible GPUs, for a binary built with or
    /// without the `cuda` feature (which links libtorch's CUDA library).
    pub fn check_against(&self, gpus: usize, built_with_cuda: bool) -> Result<(), String> {
        let ComputeDevice::Cuda(wanted) = self else {
            return Ok(());
        };
        if gpus == 0 {
            return Err(if built_with_cuda {
                format!(
                    "device = \"{self}\", but libtorch finds no CUDA GPU on this machine (is the \
                     NVIDIA driver loaded and the GPU passed through to this VM?); set device = \
                     \"cpu\" to train on the CPU"
                )
            } else {
                format!(
                    "device = \"{self}\", but this bastion was built without the `cuda` feature, \
                     so its libtorch runs on the CPU only: build it with `--features cuda` \
                     against a CUDA libtorch (see deploy/gpu-check.sh), or set device = \"cpu\""
                )
            });
        }
        if let Some(missing) = wanted.iter().find(|&&g| g >= gpus) {
            let has = if gpus == 1 {
                "1 GPU (cuda:0)".to_string()
            } else {
                format!("{gpus} GPUs (cuda:0 to cuda:{})", gpus - 1)
            };
            return Err(format!(
                "device = \"{self}\", but GPU {missing} does not exist: this machine has {has}"
            ));
        }
        Ok(())
    }
}
