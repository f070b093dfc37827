//! DP-SGD step against the non-private step on the same engine: time and peak memory.
//!
//! `cargo bench -p bastion-models --bench dp_step -- [--json] [--model NAME] [--steps N]
//! [--rounds R] [--threads N] [--device cpu|cuda:N] [--noise-ahead]`
//!
//! Each (model, mode) runs in its own child process (this binary re-executed with `--child`),
//! so each peak RSS is that mode's own. The two modes alternate for `--rounds` rounds (default
//! 3) of `--steps` measured steps each, so a machine whose load drifts (other builds on the
//! same cores) slows both modes alike instead of whichever ran second. Warm-up steps are
//! excluded; the table shows the median over every measured step of all rounds, each phase's
//! median over the rounds, the highest peak RSS, and the DP / non-private ratios. Rows:
//! - ResNet-18 with GroupNorm, 3x64x64 images, batch 32, 2 classes;
//! - GPT-2, 4 layers, 256 wide, 4 heads, vocab 8192, sequence 128, batch 8 (tied LM head);
//! - GPT-2 small's shape (124M parameters: 12 layers, 768 wide, 12 heads, vocab 50257),
//!   sequence 128, batch 8, random weights.
//!
//! The table prints each phase's median (forward; backward, or per-sample clipping; noise;
//! update) beside the step, and the CPU it ran on. On a GPU (`--device cuda:N`, built with
//! CUDA libtorch: `deploy/gpu-check.sh`) every phase ends with a device synchronisation, and
//! the noise is still drawn on the host (see `bastion_dp::optim::noisy_average`).
//!
//! A DP step is the whole thing: forward on a recording tape, per-sample losses, per-sample
//! norms and clipped sum, secure Gaussian noise on every coordinate, divide by the expected
//! batch size, optimizer update. The non-private step is forward, mean loss, backward, update.

use bastion_dp::clip::{clip_per_sample, trainable_params, ClipConfig, Tape};
use bastion_dp::noise::{PreparedNoise, SecureGaussian};
use bastion_dp::optim::{
    average, flatten, noisy_average, unflatten, DpSettings, Optimizer, UpdateRule,
};
use bastion_models::gpt2::{Gpt2, Gpt2Config};
use bastion_models::resnet::{ResNet, ResNetConfig};
use bastion_models::{per_sample_cross_entropy, per_sample_lm_loss};
use std::process::Command;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

const MODELS: [&str; 3] = ["resnet18-gn", "gpt2-4l", "gpt2-small"];
const MODES: [&str; 2] = ["nonprivate", "dp"];
/// With `--noise-ahead`: DP with each step's noise drawn on its own thread during the step
/// before (`SecureGaussian::prepare`), so the noise phase is only snapping and adding.
const NOISE_AHEAD: &str = "dp-ahead";
const WARMUP: usize = 3;

struct Workload {
    forward: Box<dyn Fn(&Tape) -> Tensor>,
    vs: nn::VarStore,
}

/// The clipping engine's one knob, set per workload: how many bytes of per-sample gradients it
/// may materialise where that beats the ghost norm. The convolutional net is near its memory
/// goal, so it gets the default (32 MiB); the transformer has memory to spare and spends 64 MiB
/// of it on speed.
fn materialize_budget(model: &str) -> usize {
    match model {
        "gpt2-4l" | "gpt2-small" => 64 << 20,
        _ => ClipConfig::default().materialize_budget_bytes,
    }
}

fn workload(model: &str, device: Device) -> Workload {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let opts = (Kind::Float, device);
    match model {
        "resnet18-gn" => {
            let net = ResNet::new(&vs.root(), &ResNetConfig::resnet18(2)).expect("resnet18");
            let images = Tensor::randn([32, 3, 64, 64], opts);
            let labels = Tensor::randint(2, [32], (Kind::Int64, device));
            Workload {
                forward: Box::new(move |tape| {
                    per_sample_cross_entropy(&net.forward(tape, &images), &labels)
                }),
                vs,
            }
        }
        "gpt2-4l" | "gpt2-small" => {
            let config = if model == "gpt2-4l" {
                Gpt2Config::gpt2_bench()
            } else {
                Gpt2Config::gpt2_small()
            };
            let net = Gpt2::new(&vs.root(), &config).expect("gpt2");
            let ids = Tensor::randint(config.vocab_size, [8, 128], (Kind::Int64, device));
            Workload {
                forward: Box::new(move |tape| per_sample_lm_loss(&net.forward(tape, &ids), &ids)),
                vs,
            }
        }
        other => panic!("unknown model {other}"),
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Waits for the device's queued work, so a phase's time is its own (a no-op on the CPU).
fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// `cpu` or `cuda:N`.
fn parse_device(s: &str) -> Device {
    match s.strip_prefix("cuda:") {
        None if s == "cpu" => Device::Cpu,
        Some(n) => Device::Cuda(n.parse().expect("--device cuda:N")),
        None => panic!("--device {s}: expected cpu or cuda:N"),
    }
}

/// CPU seconds used so far by all of this process's threads (the kernel's per-thread
/// scheduler statistics, in nanoseconds).
fn process_cpu_s() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

/// The CPU's model name, family, model and stepping, from /proc/cpuinfo (a VM may show only
/// "AMD EPYC"; family 25 model 1 is Zen 3, EPYC Milan).
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "?".to_string(), |v| v.trim().to_string())
    };
    format!(
        "{} (family {}, model {}, stepping {})",
        field("model name"),
        field("cpu family"),
        field("model"),
        field("stepping")
    )
}

/// Runs one (model, mode) and prints its JSON row.
fn child(model: &str, mode: &str, steps: usize, device: Device) {
    if let Device::Cuda(index) = device {
        assert!(
            tch::Cuda::is_available() && (index as i64) < tch::Cuda::device_count(),
            "--device cuda:{index}: this libtorch sees {} CUDA devices",
            tch::Cuda::device_count()
        );
    }
    let work = workload(model, device);
    let params = trainable_params(&work.vs);
    let rule = UpdateRule::Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let mut optimizer = Optimizer::new(rule, params.iter().map(|p| p.shallow_clone()).collect());
    let batch = (work.forward)(&Tape::disabled()).size()[0] as f64;
    let settings = DpSettings {
        noise_multiplier: 1.0,
        max_grad_norm: 1.0,
        expected_batch_size: batch,
        nodes: 1,
    };
    let mut noise = Some(SecureGaussian::from_os().expect("entropy"));
    let dimension: usize = params.iter().map(|p| p.numel()).sum();
    let std = settings.node_noise_std();
    // The next step's noise, being drawn on its own thread (mode dp-ahead).
    type Drawing = std::thread::JoinHandle<(SecureGaussian, PreparedNoise)>;
    let draw_ahead = |mut rng: SecureGaussian| -> Drawing {
        std::thread::spawn(move || {
            let prepared = rng.prepare(dimension, std).expect("noise");
            (rng, prepared)
        })
    };
    let mut ahead: Option<Drawing> = None;
    if mode == NOISE_AHEAD {
        ahead = Some(draw_ahead(noise.take().expect("generator")));
    }
    let config = ClipConfig {
        max_grad_norm: settings.max_grad_norm,
        materialize_budget_bytes: materialize_budget(model),
        ..ClipConfig::default()
    };
    let mut times = Vec::new();
    // Median seconds of each phase: forward, gradients (backward or clipping), noise, update.
    let mut phases: [Vec<f64>; 4] = Default::default();
    // CPU seconds (all threads) and wall seconds of the forward and gradient phases: how many
    // cores libtorch keeps busy, i.e. whether a core is free for noise drawn alongside.
    let (mut busy_cpu, mut busy_wall) = (0.0, 0.0);
    for step in 0..WARMUP + steps {
        let cpu_at_start = process_cpu_s();
        let start = Instant::now();
        let mut marks = [0.0; 3];
        let cpu_after_gradients: f64;
        match mode {
            "nonprivate" => {
                let loss = (work.forward)(&Tape::disabled()).mean(Kind::Float);
                sync(device);
                marks[0] = start.elapsed().as_secs_f64();
                for p in &params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.zero_();
                    }
                }
                loss.backward();
                let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
                sync(device);
                marks[1] = start.elapsed().as_secs_f64();
                cpu_after_gradients = process_cpu_s();
                marks[2] = marks[1];
                optimizer.step(&grads);
            }
            "dp" | NOISE_AHEAD => {
                let tape = Tape::new();
                let loss = (work.forward)(&tape);
                sync(device);
                marks[0] = start.elapsed().as_secs_f64();
                let clipped = clip_per_sample(&tape, &loss, &params, &config).expect("clip");
                // A training loop lets go of the step's activations here.
                drop((tape, loss));
                sync(device);
                marks[1] = start.elapsed().as_secs_f64();
                cpu_after_gradients = process_cpu_s();
                let grads = match ahead.take() {
                    None => {
                        let rng = noise.as_mut().expect("generator");
                        noisy_average(clipped.grads, &settings, rng).expect("noise")
                    }
                    // This step's noise was drawn during the previous one (waited for if not
                    // done); the next step's starts now.
                    Some(drawing) => {
                        let (rng, prepared) = drawing.join().expect("noise thread");
                        ahead = Some(draw_ahead(rng));
                        let mut flat = flatten(clipped.grads).expect("flatten");
                        prepared.add_to(&mut flat).expect("noise");
                        average(&mut flat, &settings);
                        unflatten(flat, &params).expect("unflatten")
                    }
                };
                sync(device);
                marks[2] = start.elapsed().as_secs_f64();
                optimizer.step(&grads);
            }
            other => panic!("unknown mode {other}"),
        }
        sync(device);
        let total = start.elapsed().as_secs_f64();
        if step >= WARMUP {
            times.push(total);
            busy_cpu += cpu_after_gradients - cpu_at_start;
            busy_wall += marks[1];
            let mut last = 0.0;
            for (phase, mark) in phases.iter_mut().zip(marks.iter().chain([&total])) {
                phase.push(mark - last);
                last = *mark;
            }
        }
    }
    if let Some(drawing) = ahead {
        drawing.join().expect("noise thread");
    }
    let [forward, gradients, noise_s, update] = phases.map(median);
    let row = serde_json::json!({
        "model": model,
        "mode": mode,
        "median_step_s": median(times.clone()),
        "step_times_s": times,
        "peak_rss_mib": peak_rss_mib(),
        "steps": steps,
        "threads": tch::get_num_threads(),
        "device": format!("{device:?}"),
        "busy_cores": busy_cpu / busy_wall,
        "phases_s": {"forward": forward, "gradients": gradients, "noise": noise_s, "update": update},
    });
    println!("{row}");
}

/// One mode's rounds as one row: median over all measured steps, each phase's median over
/// the rounds, the highest peak RSS.
fn merge_rounds(model: &str, mode: &str, runs: &[serde_json::Value]) -> serde_json::Value {
    let all = |key: &str| -> Vec<f64> { runs.iter().map(|r| r[key].as_f64().unwrap()).collect() };
    let steps: Vec<f64> = runs
        .iter()
        .flat_map(|r| r["step_times_s"].as_array().unwrap().clone())
        .map(|t| t.as_f64().unwrap())
        .collect();
    let phase = |name: &str| {
        median(
            runs.iter()
                .map(|r| r["phases_s"][name].as_f64().unwrap())
                .collect(),
        )
    };
    serde_json::json!({
        "model": model,
        "mode": mode,
        "median_step_s": median(steps.clone()),
        "peak_rss_mib": all("peak_rss_mib").into_iter().fold(0.0, f64::max),
        "steps": steps.len(),
        "rounds": runs.len(),
        "round_medians_s": all("median_step_s"),
        "threads": runs[0]["threads"],
        "device": runs[0]["device"],
        "busy_cores": median(runs.iter().map(|r| r["busy_cores"].as_f64().unwrap()).collect()),
        "phases_s": {
            "forward": phase("forward"),
            "gradients": phase("gradients"),
            "noise": phase("noise"),
            "update": phase("update"),
        },
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let steps: usize = value("--steps").map_or(4, |s| s.parse().expect("--steps N"));
    let rounds: usize = value("--rounds").map_or(3, |s| s.parse().expect("--rounds R"));
    let threads: i32 = value("--threads").map_or(2, |s| s.parse().expect("--threads N"));
    let device_arg = value("--device").unwrap_or_else(|| "cpu".into());
    let device = parse_device(&device_arg);
    tch::set_num_threads(threads);
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], &args[i + 2], steps, device);
        return;
    }
    let json = args.iter().any(|a| a == "--json");
    let mut modes = MODES.to_vec();
    if args.iter().any(|a| a == "--noise-ahead") {
        modes.push(NOISE_AHEAD);
    }
    let only: Option<String> = value("--model");
    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for model in MODELS
        .iter()
        .filter(|m| only.as_deref().is_none_or(|o| o == **m))
    {
        // Per mode, every round's row, in the order they ran: np, dp, np, dp, ...
        let mut runs: Vec<Vec<serde_json::Value>> = vec![Vec::new(); modes.len()];
        for _ in 0..rounds.max(1) {
            for (mode, runs) in modes.iter().zip(runs.iter_mut()) {
                let out = Command::new(&exe)
                    .args([
                        "--child",
                        model,
                        mode,
                        "--steps",
                        &steps.to_string(),
                        "--threads",
                        &threads.to_string(),
                        "--device",
                        &device_arg,
                    ])
                    .output()
                    .expect("run child");
                assert!(
                    out.status.success(),
                    "{model}/{mode} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let line = String::from_utf8_lossy(&out.stdout);
                let row: serde_json::Value = serde_json::from_str(line.trim()).expect("child JSON");
                runs.push(row);
            }
        }
        for (mode, runs) in modes.iter().zip(runs) {
            let row = merge_rounds(model, mode, &runs);
            if json {
                println!("{row}");
            }
            rows.push(row);
        }
    }
    if json {
        return;
    }
    println!(
        "{}, {threads} threads, {device_arg}; {rounds} rounds of {steps} steps per mode",
        cpu_model()
    );
    println!(
        "| model | mode | median step (s) | forward | backward or clipping | noise | update \
         | peak RSS (MiB) | time ratio | memory ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for group in rows.chunks(modes.len()) {
        let base = &group[0];
        for row in group {
            let t = row["median_step_s"].as_f64().unwrap();
            let m = row["peak_rss_mib"].as_f64().unwrap();
            let tr = t / base["median_step_s"].as_f64().unwrap();
            let mr = m / base["peak_rss_mib"].as_f64().unwrap();
            let phase = |name: &str| row["phases_s"][name].as_f64().unwrap();
            println!(
                "| {} | {} | {t:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {m:.0} | {tr:.2}x | {mr:.2}x |",
                row["model"].as_str().unwrap(),
                row["mode"].as_str().unwrap(),
                phase("forward"),
                phase("gradients"),
                phase("noise"),
                phase("update"),
            );
        }
    }
}
