//! `device` in node.toml: the Trainer's compute on the CPU or on GPUs.
//!
//! On any machine: a GPU the node does not have stops it at start (never a CPU fallback),
//! and a step's sample split across several devices clips to the same sum as on one (the
//! multi-GPU path, run here with several CPU copies of the model). The `#[ignore]`d tests
//! need an NVIDIA GPU and a binary built with `--features cuda` against CUDA libtorch;
//! `deploy/gpu-check.sh` runs them.

use bastion_actors::config::NodeConfig;
use bastion_actors::data::{cancer_tiles, Batch, Records};
use bastion_actors::device::ComputeDevice;
use bastion_actors::model::Model;
use bastion_actors::node::run_node;
use bastion_actors::protocol::Task;
use bastion_actors::trainer::clipped_sum;
use bastion_dp::clip::ClipConfig;
use std::path::PathBuf;
use tch::Device;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("devices-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gpus() -> usize {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count() as usize
    } else {
        0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_the_node_does_not_have_stops_it_at_start_with_one_line() {
    // Here: cuda:0 without CUDA; on a GPU machine, the first ordinal past its GPUs.
    let have = gpus();
    let device = format!("cuda:{have}");
    let state = scratch("missing-gpu").join("state");
    let text = format!(
        "name = \"n\"\nstate_dir = {:?}\ndevice = {device:?}\n\
         coordinator = \"127.0.0.1:1\"\n[tee]\nsimulated = true\n",
        state.display().to_string()
    );
    let config = NodeConfig::parse(&text, "inline").unwrap();
    let started = std::time::Instant::now();
    let err = run_node(config).await.unwrap_err();
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(
        err.contains(&format!("device = \"{device}\"")),
        "names the setting: {err}"
    );
    if have == 0 {
        assert!(
            err.contains("built without the `cuda` feature") || err.contains("finds no CUDA GPU"),
            "says what is missing: {err}"
        );
    } else {
        assert!(err.contains(&format!("GPU {have} does not exist")), "{err}");
    }
    // Refused before anything else: not even the state directory was made.
    assert!(!state.exists(), "the node went on after the refusal");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn the_refusal_says_what_is_missing() {
    let cuda = |g: &[usize]| ComputeDevice::Cuda(g.to_vec());
    assert_eq!(ComputeDevice::Cpu.check_against(0, false), Ok(()));
    assert_eq!(cuda(&[0, 1]).check_against(2, true), Ok(()));
    let without_feature = cuda(&[0]).check_against(0, false).unwrap_err();
    assert!(
        without_feature.starts_with(
            "device = \"cuda:0\", but this bastion was built without the `cuda` feature"
        ),
        "{without_feature}"
    );
    assert!(
        without_feature.contains("--features cuda"),
        "{without_feature}"
    );
    let no_gpu = cuda(&[0]).check_against(0, true).unwrap_err();
    assert!(
        no_gpu.starts_with("device = \"cuda:0\", but libtorch finds no CUDA GPU"),
        "{no_gpu}"
    );
    assert_eq!(
        cuda(&[1]).check_against(1, true).unwrap_err(),
        "device = \"cuda:1\", but GPU 1 does not exist: this machine has 1 GPU (cuda:0)"
    );
    assert_eq!(
        cuda(&[0, 3]).check_against(2, true).unwrap_err(),
        "device = \"cuda:0,3\", but GPU 3 does not exist: this machine has 2 GPUs (cuda:0 to cuda:1)"
    );
    for e in [without_feature, no_gpu] {
        assert!(!e.contains('\n'), "one line: {e}");
    }
}

fn task() -> Task {
    Task::Classify {
        depth: 18,
        classes: vec!["benign".into(), "malignant".into()],
        image_size: 32,
        channels: 3,
    }
}

/// The same initial weights on each of `devices`. Made once: libtorch's seeded generator is
/// global, and tests run in parallel.
fn models_on(devices: &[Device]) -> Vec<Model> {
    static WEIGHTS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let weights = WEIGHTS.get_or_init(|| Model::build(&task(), 7).unwrap().to_bytes().unwrap());
    devices
        .iter()
        .map(|&d| {
            let m = Model::for_loading_on(&task(), d).unwrap();
            m.load_weights(weights, true).unwrap();
            assert_eq!(m.device(), d);
            m
        })
        .collect()
}

/// `rows` generated tiles (seeded by their own generator, not libtorch's global one).
fn images(rows: i64) -> Batch {
    let tiles = Records::Images(cancer_tiles(rows as usize, 32, 11));
    tiles.batch(&(0..rows as usize).collect::<Vec<_>>())
}

/// A bound that some samples' gradients exceed and some do not, so clipping matters.
fn clip() -> ClipConfig {
    ClipConfig {
        max_grad_norm: 2.0,
        ..ClipConfig::default()
    }
}

/// `|a - b| / |b|` over the whole flat sum.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
    assert!(norm > 0.0, "an all-zero sum compares nothing");
    diff / norm
}

#[test]
fn a_sample_split_across_devices_clips_to_the_same_sum() {
    let whole = clipped_sum(&mut models_on(&[Device::Cpu]), Some(images(5)), &clip()).unwrap();
    // Split in 2 and 3 parts (sizes 3+2, 2+2+1); below, 4 copies for 3 rows (one idle).
    for copies in [2, 3] {
        let mut models = models_on(&vec![Device::Cpu; copies]);
        let split = clipped_sum(&mut models, Some(images(5)), &clip()).unwrap();
        let e = relative_error(&split, &whole);
        assert!(e < 1e-5, "{copies} copies: relative error {e}");
    }
    let three = clipped_sum(&mut models_on(&[Device::Cpu]), Some(images(3)), &clip()).unwrap();
    let idle = clipped_sum(&mut models_on(&[Device::Cpu; 4]), Some(images(3)), &clip()).unwrap();
    assert!(relative_error(&idle, &three) < 1e-5);
    // An empty sample: zeros, one per trainable value.
    let empty = clipped_sum(&mut models_on(&[Device::Cpu; 2]), None, &clip()).unwrap();
    assert_eq!(empty.len(), whole.len());
    assert!(empty.iter().all(|v| *v == 0.0));
}

#[test]
fn copies_on_other_devices_are_refreshed_from_the_first() {
    let first = Model::build(&task(), 1).unwrap();
    let copy = Model::build(&task(), 2).unwrap();
    let differs = |a: &Model, b: &Model| {
        a.trainable()
            .iter()
            .zip(b.trainable())
            .any(|(x, y)| !x.equal(&y))
    };
    assert!(differs(&first, &copy));
    copy.copy_trainable_from(&first).unwrap();
    assert!(!differs(&first, &copy));
}

fn assert_close_on(devices: &[Device], reference: Device, tolerance: f64) {
    let on = clipped_sum(&mut models_on(devices), Some(images(16)), &clip()).unwrap();
    let want = clipped_sum(&mut models_on(&[reference]), Some(images(16)), &clip()).unwrap();
    let e = relative_error(&on, &want);
    eprintln!("{devices:?} vs {reference:?}: relative error {e:.2e}");
    assert!(e < tolerance, "{devices:?} vs {reference:?}: {e}");
}

#[test]
#[ignore = "needs an NVIDIA GPU with CUDA libtorch (deploy/gpu-check.sh)"]
fn one_gpu_clips_like_the_cpu() {
    assert!(gpus() > 0, "libtorch sees no GPU");
    // cuDNN may use TF32 for convolutions (10-bit mantissa): close, not equal.
    assert_close_on(&[Device::Cuda(0)], Device::Cpu, 1e-2);
}

#[test]
#[ignore = "needs an NVIDIA GPU with CUDA libtorch (deploy/gpu-check.sh)"]
fn the_gpus_of_a_vm_sum_like_one_gpu() {
    let n = gpus();
    assert!(n > 0, "libtorch sees no GPU");
    // Every GPU of the machine; with only one, two copies on it (the split and the sum
    // across copies still run).
    let devices: Vec<Device> = if n > 1 {
        (0..n).map(Device::Cuda).collect()
    } else {
        vec![Device::Cuda(0); 2]
    };
    assert_close_on(&devices, Device::Cuda(0), 1e-2);
}

#[test]
#[ignore = "needs an NVIDIA GPU with CUDA libtorch (deploy/gpu-check.sh)"]
fn weights_on_a_gpu_are_written_from_the_host() {
    let model = &models_on(&[Device::Cuda(0)])[0];
    let cpu = &models_on(&[Device::Cpu])[0];
    // Serialized from the GPU, the bytes are those of the same weights on the CPU.
    assert_eq!(model.to_bytes().unwrap(), cpu.to_bytes().unwrap());
    let back = Model::for_loading_on(&task(), Device::Cuda(0)).unwrap();
    back.load_weights(&model.to_bytes().unwrap(), true).unwrap();
    assert_eq!(back.to_bytes().unwrap(), cpu.to_bytes().unwrap());
}
