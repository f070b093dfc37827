//! GPT-2 small fine-tuning: the DP step against the non-private step on the same engine, for
//! LoRA (rank 8 on `c_attn`, base frozen) and for full fine-tuning; time and peak memory.
//!
//! `cargo bench -p bastion-models --bench gpt2_finetune -- [--json] [--steps N] [--warmup N]
//! [--threads N] [--workload lora-r8-c_attn|full] [--budget-mib N]`
//!
//! Shape: `Gpt2Config::gpt2_small()` (12 layers, 768 wide, 12 heads, vocab 50257, tied LM
//! head, 124M parameters), sequence 128, batch 8, random init, random token ids, AdamW.
//!
//! Each (workload, mode) runs in its own child process (this binary re-executed with
//! `--child`), so each peak RSS (`VmHWM`) is that configuration's own: model, optimizer state,
//! activations and gradients of that mode alone. Warm-up steps are excluded; the table shows
//! medians and the DP / non-private ratios. Besides wall-clock seconds it shows CPU seconds
//! per step (user + system of all threads, from `/proc/self/stat`), which other processes
//! competing for the cores disturb much less than wall time.
//!
//! The DP step is the trainer's (`actors/src/trainer.rs`, `local_share` and the update):
//! forward on a recording tape, per-sample LM losses, `clip_per_sample` (per-sample norms and
//! clipped sum), `flatten`, secure Gaussian noise on every coordinate (`add_noise`), divide by
//! the expected batch size (`average`), `unflatten`, AdamW update. The non-private step is
//! forward on a disabled tape, mean loss, `backward`, AdamW update with `p.grad()`.
//!
//! `--budget-mib` sets the clipping engine's `materialize_budget_bytes` (default: the
//! engine's default, which the trainer uses).

use bastion_dp::clip::{clip_per_sample, trainable_params, ClipConfig, Tape};
use bastion_dp::noise::SecureGaussian;
use bastion_dp::optim::{
    add_noise, average, flatten, unflatten, DpSettings, Optimizer, UpdateRule,
};
use bastion_models::gpt2::{Gpt2, Gpt2Config, LoraConfig, LoraTarget};
use bastion_models::per_sample_lm_loss;
use std::process::Command;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

const WORKLOADS: [&str; 2] = ["lora-r8-c_attn", "full"];
const MODES: [&str; 2] = ["nonprivate", "dp"];
const BATCH: i64 = 8;
const SEQ: i64 = 128;

struct Workload {
    model: Gpt2,
    vs: nn::VarStore,
    ids: Tensor,
}

fn workload(name: &str) -> Workload {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let config = Gpt2Config::gpt2_small();
    let mut model = Gpt2::new(&vs.root(), &config).expect("gpt2 small");
    match name {
        "lora-r8-c_attn" => {
            let lora = LoraConfig {
                rank: 8,
                alpha: 16.0,
                targets: vec![LoraTarget::CAttn],
            };
            model.add_lora(&vs.root(), &lora).expect("lora");
        }
        "full" => {}
        other => panic!("unknown workload {other}"),
    }
    let ids = Tensor::randint(config.vocab_size, [BATCH, SEQ], (Kind::Int64, Device::Cpu));
    Workload { model, vs, ids }
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

/// CPU seconds (user + system, all threads) this process has used so far: less sensitive than
/// wall time to other processes competing for the cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // Linux reports these in USER_HZ, 100 per second on every architecture we run on.
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct ChildArgs<'a> {
    workload: &'a str,
    mode: &'a str,
    steps: usize,
    warmup: usize,
    budget: usize,
}

/// Runs one (workload, mode) and prints its JSON row.
fn child(args: &ChildArgs) {
    let work = workload(args.workload);
    let params = trainable_params(&work.vs);
    let trainable: usize = params.iter().map(|p| p.numel()).sum();
    let rule = UpdateRule::AdamW {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let mut optimizer = Optimizer::new(rule, params.iter().map(|p| p.shallow_clone()).collect());
    let mut noise = SecureGaussian::from_os().expect("entropy");
    let settings = DpSettings {
        noise_multiplier: 1.0,
        max_grad_norm: 1.0,
        expected_batch_size: BATCH as f64,
        nodes: 1,
    };
    let config = ClipConfig {
        max_grad_norm: settings.max_grad_norm,
        materialize_budget_bytes: args.budget,
        ..ClipConfig::default()
    };
    let rss_before_steps = peak_rss_mib();
    let mut times = Vec::new();
    let mut cpu_times = Vec::new();
    // Seconds of each phase: forward (incl. loss), gradients (backward or clipping), noise
    // (flatten, noise, average, unflatten), update.
    let mut phases: [Vec<f64>; 4] = Default::default();
    for step in 0..args.warmup + args.steps {
        let start = Instant::now();
        let cpu_start = cpu_seconds();
        let mut marks = [0.0; 3];
        match args.mode {
            "nonprivate" => {
                let logits = work.model.forward(&Tape::disabled(), &work.ids);
                let loss = per_sample_lm_loss(&logits, &work.ids).mean(Kind::Float);
                drop(logits);
                marks[0] = start.elapsed().as_secs_f64();
                for p in &params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.zero_();
                    }
                }
                loss.backward();
                drop(loss);
                let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
                marks[1] = start.elapsed().as_secs_f64();
                marks[2] = marks[1];
                optimizer.step(&grads);
            }
            "dp" => {
                let tape = Tape::new();
                let logits = work.model.forward(&tape, &work.ids);
                let loss = per_sample_lm_loss(&logits, &work.ids);
                drop(logits);
                marks[0] = start.elapsed().as_secs_f64();
                let clipped = clip_per_sample(&tape, &loss, &params, &config).expect("clip");
                // The trainer lets go of the step's activations here.
                drop((tape, loss));
                marks[1] = start.elapsed().as_secs_f64();
                let mut sum = flatten(clipped.grads).expect("flatten");
                add_noise(&mut sum, &settings, &mut noise).expect("noise");
                average(&mut sum, &settings);
                let grads = unflatten(sum, &params).expect("unflatten");
                marks[2] = start.elapsed().as_secs_f64();
                optimizer.step(&grads);
            }
            other => panic!("unknown mode {other}"),
        }
        let total = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_start;
        eprintln!(
            "{}/{} step {step}: {total:.3} s, {cpu:.2} CPU s{}",
            args.workload,
            args.mode,
            if step < args.warmup { " (warm-up)" } else { "" }
        );
        if step >= args.warmup {
            times.push(total);
            cpu_times.push(cpu);
            let mut last = 0.0;
            for (phase, mark) in phases.iter_mut().zip(marks.iter().chain([&total])) {
                phase.push(mark - last);
                last = *mark;
            }
        }
    }
    let [forward, gradients, noise_s, update] = phases.map(median);
    let row = serde_json::json!({
        "workload": args.workload,
        "mode": args.mode,
        "median_step_s": median(times.clone()),
        "step_s": times,
        "median_step_cpu_s": median(cpu_times.clone()),
        "step_cpu_s": cpu_times,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_steps_mib": rss_before_steps,
        "trainable_params": trainable,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": tch::get_num_threads(),
        "materialize_budget_bytes": args.budget,
        "batch": BATCH,
        "seq": SEQ,
        "phases_s": {"forward": forward, "gradients": gradients, "noise": noise_s, "update": update},
    });
    println!("{row}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let steps: usize = value("--steps").map_or(3, |s| s.parse().expect("--steps N"));
    let warmup: usize = value("--warmup").map_or(1, |s| s.parse().expect("--warmup N"));
    let threads: i32 = value("--threads").map_or(2, |s| s.parse().expect("--threads N"));
    let budget: usize = value("--budget-mib")
        .map_or(ClipConfig::default().materialize_budget_bytes, |s| {
            s.parse::<usize>().expect("--budget-mib N") << 20
        });
    tch::set_num_threads(threads);
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&ChildArgs {
            workload: &args[i + 1],
            mode: &args[i + 2],
            steps,
            warmup,
            budget,
        });
        return;
    }
    let json = args.iter().any(|a| a == "--json");
    let only: Option<String> = value("--workload");
    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for name in WORKLOADS
        .iter()
        .filter(|w| only.as_deref().is_none_or(|o| o == **w))
    {
        for mode in MODES {
            let out = Command::new(&exe)
                .args([
                    "--child",
                    name,
                    mode,
                    "--steps",
                    &steps.to_string(),
                    "--warmup",
                    &warmup.to_string(),
                    "--threads",
                    &threads.to_string(),
                    "--budget-mib",
                    &(budget >> 20).to_string(),
                ])
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("run child");
            assert!(out.status.success(), "{name}/{mode} failed");
            let line = String::from_utf8_lossy(&out.stdout);
            let row: serde_json::Value = serde_json::from_str(line.trim()).expect("child JSON");
            if json {
                println!("{row}");
            }
            rows.push(row);
        }
    }
    if json {
        return;
    }
    let f = |row: &serde_json::Value, key: &str| row[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "GPT-2 small (124M), batch {BATCH}, seq {SEQ}, AdamW, {threads} threads, \
         {steps} steps after {warmup} warm-up, materialize budget {} MiB",
        budget >> 20
    );
    println!();
    println!(
        "| workload | mode | seconds/step | peak MiB | time ratio | memory ratio | CPU s/step | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for pair in rows.chunks(2) {
        let base = &pair[0];
        for row in pair {
            let (t, m) = (f(row, "median_step_s"), f(row, "peak_rss_mib"));
            let tr = t / f(base, "median_step_s");
            let mr = m / f(base, "peak_rss_mib");
            let c = f(row, "median_step_cpu_s");
            let cr = c / f(base, "median_step_cpu_s");
            println!(
                "| {} | {} | {t:.2} | {m:.0} | {tr:.2}x | {mr:.2}x | {c:.2} | {cr:.2}x |",
                row["workload"].as_str().unwrap_or("?"),
                row["mode"].as_str().unwrap_or("?"),
            );
        }
    }
    println!();
    println!("Median seconds per phase (gradients = backward, or clip_per_sample for DP; noise = flatten + add_noise + average + unflatten):");
    println!();
    println!("| workload | mode | forward | gradients | noise | update |");
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        let p = &row["phases_s"];
        let g = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            row["workload"].as_str().unwrap_or("?"),
            row["mode"].as_str().unwrap_or("?"),
            g("forward"),
            g("gradients"),
            g("noise"),
            g("update"),
        );
    }
}
