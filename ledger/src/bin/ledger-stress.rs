//! Crash-test driver: opens a ledger and authorizes steps in a loop, printing
//! `released <step> sigma=<s> a=<q> b=<q|->` (flushed) after each authorization returns, the
//! moment a trainer would release that step's gradients. The kill -9 test in
//! `tests/crash.rs` kills it at random moments and checks the ledger against what it printed.
//!
//! Usage: `ledger-stress <ledger-path> <rdp|pld> <last-step>`

use bastion_ledger::{AccountantKind, Budget, Ledger, StepCharge};
use std::error::Error;
use std::io::Write;

/// The test key, shared with `tests/crash.rs` (the real one is derived in the TEE).
const KEY: [u8; 32] = *b"ledger-stress test key, 32 bytes";

/// The parameters of step `n`: noise multiplier, dataset `a`'s rate, dataset `b`'s rate (if
/// `b` takes part). Both change during the run, as they do when a cluster loses a node.
fn params(n: u64) -> (f64, f64, Option<f64>) {
    let sigma = [0.9, 1.0, 1.2][(n / 40 % 3) as usize];
    let b = (!n.is_multiple_of(3)).then(|| [0.02, 0.03][(n / 25 % 2) as usize]);
    (sigma, 0.01, b)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, kind, last] = args.as_slice() else {
        return Err("usage: ledger-stress <ledger-path> <rdp|pld> <last-step>".into());
    };
    let kind: AccountantKind = kind.parse()?;
    let last: u64 = last.parse()?;
    let (mut ledger, _recovery) = Ledger::open(path, kind, &KEY)?;
    let budget = Budget {
        epsilon: 1e4,
        delta: 1e-5,
    };
    ledger.register_dataset("a", budget)?;
    ledger.register_dataset("b", budget)?;
    let start = ledger.last_step().map_or(0, |s| s + 1);
    let mut out = std::io::stdout().lock();
    for n in start..=last {
        let (sigma, qa, qb) = params(n);
        let mut datasets = vec![("a".to_owned(), qa)];
        datasets.extend(qb.map(|q| ("b".to_owned(), q)));
        ledger.authorize(&StepCharge {
            step: n,
            sigma,
            datasets,
        })?;
        let b = qb.map_or("-".to_owned(), |q| q.to_string());
        writeln!(out, "released {n} sigma={sigma} a={qa} b={b}")?;
        out.flush()?;
    }
    Ok(())
}
