//! Loading a 124M-parameter GPT-2 checkpoint, against the goal of 2 s.
//!
//! `cargo bench -p bastion-models --bench gpt2_load -- [--json] [--runs N] [--threads N]`
//!
//! Writes a synthetic GPT-2 small checkpoint once (a fresh `Gpt2Config::gpt2_small()` model,
//! random f32 weights, saved with `Gpt2::save` in Hugging Face's layout: `config.json` and a
//! 498 MB `model.safetensors`) into a temporary directory, then times `Gpt2::load` into a
//! fresh var store `--runs` times (default 3) and reports the median. The file was just
//! written, so it is read from the page cache (a warm load); a cold read adds the disk's time
//! for 498 MB. For a breakdown, the same number of runs of `Gpt2::new` alone (the fresh
//! initialisation `load` starts from) and of `Gpt2::load_weights` into an existing model
//! (read, check, copy) are timed too.

use bastion_models::gpt2::Gpt2;
use bastion_models::gpt2::Gpt2Config;
use std::time::Instant;
use tch::{nn, Device};

const GOAL_S: f64 = 2.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64(), out)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = value("--runs").map_or(3, |s| s.parse().expect("--runs N"));
    let threads: i32 = value("--threads").map_or(2, |s| s.parse().expect("--threads N"));
    let json = args.iter().any(|a| a == "--json");
    tch::set_num_threads(threads);

    let dir = std::env::temp_dir().join(format!("bastion-gpt2-load-{}", std::process::id()));
    let config = Gpt2Config::gpt2_small();
    let (save_s, params) = timed(|| {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Gpt2::new(&vs.root(), &config).expect("gpt2 small");
        model.save(&dir).expect("save");
        model
            .named_parameters()
            .iter()
            .map(|(_, t)| t.numel())
            .sum::<usize>()
    });
    let bytes = std::fs::metadata(dir.join("model.safetensors"))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "wrote {params} parameters ({:.0} MB) to {} in {save_s:.2} s",
        bytes as f64 / 1e6,
        dir.display()
    );

    let mut load = Vec::new();
    let mut init = Vec::new();
    let mut weights = Vec::new();
    for run in 0..runs {
        let vs = nn::VarStore::new(Device::Cpu);
        let (t, model) = timed(|| Gpt2::load(&vs.root(), &dir).expect("load"));
        assert_eq!(model.config(), &config);
        load.push(t);
        drop((model, vs));

        let vs = nn::VarStore::new(Device::Cpu);
        let (t, model) = timed(|| Gpt2::new(&vs.root(), &config).expect("new"));
        init.push(t);
        let (t, ()) = timed(|| {
            model
                .load_weights(&dir.join("model.safetensors"))
                .expect("load_weights")
        });
        weights.push(t);
        eprintln!(
            "run {run}: load {:.3} s, new {:.3} s, load_weights {:.3} s",
            load[run], init[run], weights[run]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    let (load_m, init_m, weights_m) = (median(load.clone()), median(init), median(weights));
    if json {
        let row = serde_json::json!({
            "params": params,
            "file_bytes": bytes,
            "runs": runs,
            "threads": tch::get_num_threads(),
            "load_s": load,
            "median_load_s": load_m,
            "median_new_s": init_m,
            "median_load_weights_s": weights_m,
            "goal_s": GOAL_S,
        });
        println!("{row}");
        return;
    }
    println!(
        "GPT-2 small checkpoint: {params} parameters, {:.0} MB safetensors (f32), page cache warm, \
         {threads} threads, median of {runs}",
        bytes as f64 / 1e6
    );
    println!();
    println!("| operation | median s | goal s | within goal |");
    println!("|---|---|---|---|");
    println!(
        "| `Gpt2::load` (config + read + check + init + copy) | {load_m:.2} | {GOAL_S:.1} | {} |",
        if load_m <= GOAL_S { "yes" } else { "no" }
    );
    println!("| of which `Gpt2::new` (fresh init) alone | {init_m:.2} | | |");
    println!("| `load_weights` into an existing model | {weights_m:.2} | | |");
}
