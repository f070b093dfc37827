//! Accountant, noise and sampling timings. Run: `cargo bench -p bastion-dp --bench accountant`.
//!
//! Prints one table. Each row is the median of a few runs (after one warm-up), so a
//! one-off page fault or frequency change does not decide the number.

use bastion_dp::accountant::{
    calibrate_sigma, Accountant, AccountantKind, PldAccountant, RdpAccountant,
};
use bastion_dp::noise::SecureGaussian;
use bastion_dp::sampling::PoissonSampler;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn median_time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut last = f(); // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        last = black_box(f());
        times.push(start.elapsed());
    }
    times.sort();
    (times[runs / 2], last)
}

fn row(name: &str, d: Duration, result: String) {
    println!(
        "| {name:<52} | {:>10.1} ms | {result:<26} |",
        d.as_secs_f64() * 1e3
    );
}

fn main() {
    println!("| {:<52} | {:>13} | {:<26} |", "case", "median", "result");
    println!("|{:-<54}|{:-<15}|{:-<28}|", "", "", "");

    for (q, sigma) in [(0.01, 1.0), (0.004, 0.8)] {
        let (d, eps) = median_time(5, || {
            let mut a = PldAccountant::new();
            a.compose(q, sigma, 100_000).unwrap();
            a.epsilon(1e-5).unwrap()
        });
        row(
            &format!("pld epsilon, 100k steps, q={q} sigma={sigma}"),
            d,
            format!("eps {eps:.4}"),
        );
        let (d, eps) = median_time(5, || {
            let mut a = RdpAccountant::new();
            a.compose(q, sigma, 100_000).unwrap();
            a.epsilon(1e-5).unwrap()
        });
        row(
            &format!("rdp epsilon, 100k steps, q={q} sigma={sigma}"),
            d,
            format!("eps {eps:.4}"),
        );
    }

    let (d, eps) = median_time(5, || {
        let mut a = PldAccountant::new();
        a.compose(0.01, 1.0, 40_000).unwrap();
        a.compose(0.0125, 0.95, 30_000).unwrap(); // a node left: larger q, less noise
        a.compose(0.01, 1.0, 30_000).unwrap();
        a.epsilon(1e-5).unwrap()
    });
    row(
        "pld epsilon, 100k steps in 3 segments",
        d,
        format!("eps {eps:.4}"),
    );

    for (q, steps, target) in [(0.01, 3_000, 3.0), (0.01, 100_000, 8.0)] {
        let (d, c) = median_time(3, || {
            calibrate_sigma(AccountantKind::Pld, q, steps, 1e-5, target).unwrap()
        });
        row(
            &format!("pld calibrate sigma, q={q} steps={steps} eps={target}"),
            d,
            format!("sigma {:.4} eps {:.4}", c.sigma, c.epsilon),
        );
    }

    let mut noise = SecureGaussian::from_os().unwrap();
    let mut buf = vec![0f32; 12_000_000];
    let (d, _) = median_time(5, || noise.fill(&mut buf, 1.0).unwrap());
    row(
        "secure gaussian fill, 12M f32",
        d,
        format!("{:.1} M/s", 12.0 / d.as_secs_f64()),
    );
    let (d, _) = median_time(5, || noise.add_to(&mut buf, 1.0).unwrap());
    row(
        "secure gaussian snap + add, 12M f32",
        d,
        format!("{:.1} M/s", 12.0 / d.as_secs_f64()),
    );
    let (d, _) = median_time(3, || {
        noise.tensor(&[12_000_000], tch::Kind::Float, 1.0).unwrap()
    });
    row("secure gaussian tensor, 12M f32", d, String::new());

    let mut sampler = PoissonSampler::from_os(0.004).unwrap();
    let (d, batch) = median_time(5, || sampler.sample(1_000_000).len());
    row(
        "poisson sample, 1M records, q=0.004",
        d,
        format!("batch {batch}"),
    );
}
