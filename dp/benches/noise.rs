//! Secure noise throughput. Run: `cargo bench -p bastion-dp --bench noise`.
//!
//! Noises 11.2M `f32` values (ResNet-18's gradient) the way `bastion_dp::optim::add_noise`
//! does (`SecureGaussian::add_to`: snap to the grid and add the Gaussian) on 1 and 2 threads,
//! and times the AES-256-CTR keystream alone, on 1 and 2 threads, as the floor (one 64-bit word per value in about
//! 99% of draws). Each row is the fastest of 9 runs after one warm-up: on a machine shared
//! with other work the fastest run is the one least disturbed, and it is taken alike for the
//! keystream floor and the sampler.

use aes::cipher::{KeyIvInit, StreamCipher};
use bastion_dp::noise::SecureGaussian;
use std::hint::black_box;
use std::time::Instant;

const VALUES: usize = 11_200_000;
const RUNS: usize = 9;

/// Fewest seconds of `RUNS` calls of `f`, after one warm-up call.
fn best_s(mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[0]
}

fn row(name: &str, threads: usize, seconds: f64, per: &str, note: String) {
    let ns = seconds * 1e9 / VALUES as f64;
    println!(
        "| {name:<30} | {threads:>7} | {:>8.1} ms | {ns:>8.2} | {:>13.2} | {per:<6} | {note:<22} |",
        seconds * 1e3,
        ns * threads as f64,
    );
}

fn main() {
    let threads_here = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{VALUES} values, fastest of {RUNS} runs; {threads_here} hardware threads available to this process"
    );
    println!(
        "| {:<30} | threads | {:>11} | {:>8} | {:>13} | {:<6} | {:<22} |",
        "what", "time", "ns/each", "ns × threads", "each", "note"
    );
    println!(
        "|{:-<32}|{:-<9}|{:-<13}|{:-<10}|{:-<15}|{:-<8}|{:-<24}|",
        "", "", "", "", "", "", ""
    );

    // The floor: 64 bits of AES-256-CTR keystream per value, in 8 KiB blocks over a zeroed
    // buffer (never leaving the core's cache), on 1 and 2 threads. On two threads it shows
    // what the cores themselves lose when both run, with no memory traffic to share.
    let key = [7u8; 32];
    for threads in [1, 2] {
        let s = best_s(|| {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        let mut block = vec![0u8; 8192];
                        let mut cipher =
                            ctr::Ctr128BE::<aes::Aes256>::new(&key.into(), &[0u8; 16].into());
                        let mut left = VALUES.div_ceil(threads) * 8;
                        while left > 0 {
                            let n = left.min(block.len());
                            block[..n].fill(0);
                            cipher.apply_keystream(&mut block[..n]);
                            black_box(&block);
                            left -= n;
                        }
                    });
                }
            });
        });
        let bytes_per_ns = (VALUES * 8) as f64 / (s * 1e9);
        row(
            "AES-256-CTR keystream, 8 B",
            threads,
            s,
            "word",
            format!("{bytes_per_ns:.2} bytes/ns"),
        );
    }

    let mut noise = SecureGaussian::from_os().expect("entropy");
    let mut values: Vec<f32> = (0..VALUES).map(|i| (i as f32 * 1e-3).sin()).collect();
    let std = 1.0;
    for threads in [1, 2] {
        let s = best_s(|| {
            noise
                .add_to_on_threads(&mut values, std, threads)
                .expect("noise");
            black_box(&values);
        });
        row("add_to (snap + noise)", threads, s, "value", String::new());
    }
    // Noise drawn ahead (`prepare`, not timed) and added later: what is left of the noise phase
    // when the drawing overlaps other work.
    let mut times = Vec::new();
    for _ in 0..=RUNS {
        let prepared = noise.prepare(VALUES, std).expect("noise");
        let start = Instant::now();
        prepared.add_to(&mut values).expect("noise");
        times.push(start.elapsed().as_secs_f64());
        black_box(&values);
    }
    let s = times[1..].iter().copied().fold(f64::INFINITY, f64::min);
    row(
        "prepared noise: snap + add",
        threads_here,
        s,
        "value",
        "drawn ahead, not timed".into(),
    );
    // The memory floor: one read-modify-write pass over the same buffer, as add_to makes.
    for threads in [1, 2] {
        let s = best_s(|| {
            let per = VALUES.div_ceil(threads);
            std::thread::scope(|scope| {
                for part in values.chunks_mut(per) {
                    scope.spawn(move || part.iter_mut().for_each(|v| *v = black_box(*v) * 0.5));
                }
            });
            black_box(&values);
        });
        row(
            "memory pass (v = v * 0.5)",
            threads,
            s,
            "value",
            String::new(),
        );
    }
    let mut out = vec![0f32; VALUES];
    let s = best_s(|| {
        noise.fill(&mut out, std).expect("noise");
        black_box(&out);
    });
    row("fill (noise only)", threads_here, s, "value", String::new());
    black_box(&values);
}
