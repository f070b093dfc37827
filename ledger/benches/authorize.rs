//! Authorization latency: what a DP step waits for before its gradients may leave the node.
//!
//! Prints one table: for each scenario, the latency of `authorize` over a run of steps
//! (median, p99, max, mean), next to the floor of one `write_all` + `sync_data` of a record of
//! the same size on the same disk, then the time to reopen (replay) the ledger and to answer
//! `spent`. Run: `cargo bench -p bastion-ledger --bench authorize [-- STEPS]` (default 2000).
//! The ledger lives in `$TMPDIR`; point it at the disk you deploy on.

use bastion_ledger::{AccountantKind, Budget, Ledger, Plan, StepCharge};
use std::io::Write;
use std::time::{Duration, Instant};

/// A fixed sealing key (in production it is derived in the TEE).
const KEY: [u8; 32] = [0x5A; 32];

struct Scenario {
    name: &'static str,
    kind: AccountantKind,
    datasets: usize,
    /// Sigma changes every this many steps (0: never).
    change_every: u64,
    /// Check a plan covering the run first (as the Accountant actor does).
    plan: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let steps: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let scenarios = [
        Scenario {
            name: "pld, 1 dataset",
            kind: AccountantKind::Pld,
            datasets: 1,
            change_every: 0,
            plan: false,
        },
        Scenario {
            name: "pld, 1 dataset, plan checked",
            kind: AccountantKind::Pld,
            datasets: 1,
            change_every: 0,
            plan: true,
        },
        Scenario {
            name: "pld, 4 datasets",
            kind: AccountantKind::Pld,
            datasets: 4,
            change_every: 0,
            plan: false,
        },
        Scenario {
            name: "pld, sigma changes every 500",
            kind: AccountantKind::Pld,
            datasets: 1,
            change_every: 500,
            plan: false,
        },
        Scenario {
            name: "rdp, 4 datasets",
            kind: AccountantKind::Rdp,
            datasets: 4,
            change_every: 0,
            plan: false,
        },
    ];
    let floor = fsync_floor(steps.min(500));
    println!("ledger authorize latency, {steps} steps per scenario (ms); fsync floor (write_all + sync_data of one record): median {:.3}", ms(floor));
    println!(
        "{:<32} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "scenario", "median", "p99", "max", "mean", "reopen", "spent()"
    );
    for s in &scenarios {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.ledger");
        let (mut ledger, _) = Ledger::open(&path, s.kind, &KEY).unwrap();
        let names: Vec<String> = (0..s.datasets).map(|i| format!("d{i}")).collect();
        for n in &names {
            // Large enough that no scenario exhausts it.
            ledger
                .register_dataset(
                    n,
                    Budget {
                        epsilon: 50.0,
                        delta: 1e-5,
                    },
                )
                .unwrap();
        }
        let q = 0.01;
        let sigma_at = |step: u64| match s.change_every {
            0 => 1.0,
            k => [1.0, 1.1][(step / k % 2) as usize],
        };
        if s.plan {
            ledger
                .check_plan(&Plan {
                    steps,
                    sigma: 1.0,
                    datasets: names.iter().map(|n| (n.clone(), q)).collect(),
                })
                .unwrap();
        }
        let mut lat = Vec::with_capacity(steps as usize);
        for step in 0..steps {
            let charge = StepCharge {
                step,
                sigma: sigma_at(step),
                datasets: names.iter().map(|n| (n.clone(), q)).collect(),
            };
            let t = Instant::now();
            ledger.authorize(&charge).unwrap();
            lat.push(t.elapsed());
        }
        drop(ledger);
        let t = Instant::now();
        let (ledger, _) = Ledger::open(&path, s.kind, &KEY).unwrap();
        let reopen = t.elapsed();
        let t = Instant::now();
        let _ = ledger.spent("d0").unwrap();
        let spent = t.elapsed();
        let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
        lat.sort();
        println!(
            "{:<32} {:>8.3} {:>8.3} {:>8.1} {:>8.3} {:>10.1} {:>10.1}",
            s.name,
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(*lat.last().unwrap()),
            ms(mean),
            ms(reopen),
            ms(spent)
        );
    }
}

/// Median of `n` appends of a 60-byte record with `write_all` + `sync_data`: the durable
/// write every authorization has to pay.
fn fsync_floor(n: u64) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("floor")).unwrap();
    let mut lat: Vec<Duration> = (0..n.max(1))
        .map(|_| {
            let t = Instant::now();
            f.write_all(&[0x5a; 60]).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    lat.sort();
    percentile(&lat, 0.5)
}
