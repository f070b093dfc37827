//! Kill -9 durability: a writer killed at random moments never loses a released step.
//!
//! `ledger-stress` prints `released <step> ...` only after `authorize` returned, exactly when a
//! trainer would send that step's gradients. After each SIGKILL the ledger must open, hold
//! every printed step, charge at least the ε recomputed independently from the printed steps,
//! and let the next run continue after the last step.

use bastion_accountant::{create, AccountantKind};
use bastion_ledger::{read_log_verified, Ledger, Position, Record, StepCharge};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const ROUNDS: usize = 36;
const DELTA: f64 = 1e-5;
/// The key `ledger-stress` seals with (an independent copy).
const KEY: [u8; 32] = *b"ledger-stress test key, 32 bytes";

/// A released step as printed: number, sigma, and each dataset's q.
#[derive(Debug)]
struct Released {
    step: u64,
    sigma: f64,
    datasets: Vec<(String, f64)>,
}

fn parse(line: &str) -> Released {
    let mut words = line.split(' ');
    assert_eq!(words.next(), Some("released"), "unexpected line {line:?}");
    let step = words.next().unwrap().parse().unwrap();
    let mut sigma = None;
    let mut datasets = Vec::new();
    for w in words {
        let (key, value) = w.split_once('=').unwrap();
        match key {
            "sigma" => sigma = Some(value.parse().unwrap()),
            _ if value == "-" => {}
            _ => datasets.push((key.to_owned(), value.parse().unwrap())),
        }
    }
    Released {
        step,
        sigma: sigma.unwrap(),
        datasets,
    }
}

#[test]
fn kill_9_never_loses_a_released_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("privacy.ledger");
    let bin = env!("CARGO_BIN_EXE_ledger-stress");
    let mut rng = rand::rng();
    let mut released: Vec<Released> = Vec::new();
    let mut rounds_with_output = 0;
    // Where the ledger stood after the previous round's open: every later open must extend it.
    let mut settled: Option<Position> = None;

    for round in 0..ROUNDS {
        let mut child = Command::new(bin)
            .arg(&path)
            .arg("rdp")
            .arg("1000000")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        // Anywhere from during start-up (creation, replay, truncation) to mid-run.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..80)));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "round {round}: the writer exited by itself ({status}); stderr: {}",
            std::io::read_to_string(child.stderr.take().unwrap()).unwrap()
        );
        let lines = reader.join().unwrap();
        let before = released.len();
        for line in &lines {
            let r = parse(line);
            if let Some(prev) = released.last() {
                assert!(
                    r.step > prev.step,
                    "round {round}: step {} reissued after {}",
                    r.step,
                    prev.step
                );
            }
            released.push(r);
        }
        if released.len() > before {
            rounds_with_output += 1;
        }

        if !path.exists() {
            continue; // killed before the ledger was created
        }
        let (ledger, recovery) = Ledger::open(&path, AccountantKind::Rdp, &KEY)
            .unwrap_or_else(|e| panic!("round {round}: ledger does not open after kill -9: {e}"));
        if let Some(torn) = recovery.torn_tail {
            eprintln!("round {round}: cut torn tail {torn:?}");
        }
        // A crash only ever adds records or leaves a torn tail: the history that an earlier
        // open settled on is never rewritten.
        if let Some(p) = settled {
            ledger
                .check_position(p.records, &p.digest)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        settled = Some(ledger.position());

        // Every printed step is in the log; at most one unprinted step per kill.
        let logged: BTreeSet<u64> = read_log_verified(&path, &KEY)
            .unwrap()
            .records
            .into_iter()
            .filter_map(|r| match r.record {
                Record::Step(s) => Some(s.step),
                _ => None,
            })
            .collect();
        let printed: BTreeSet<u64> = released.iter().map(|r| r.step).collect();
        let missing: Vec<_> = printed.difference(&logged).collect();
        assert!(
            missing.is_empty(),
            "round {round}: released steps missing from the ledger: {missing:?}"
        );
        assert!(logged.len() - printed.len() <= round + 1);
        if let Some(last) = released.last() {
            assert!(ledger.last_step() >= Some(last.step));
        }

        // ε charged is at least ε recomputed from the printed steps alone. Steps are counted
        // per (q, sigma) and composed once per count: RDP sums floating-point values per
        // `compose` call, so step-by-step composition would differ in the last bits.
        let mut counts: BTreeMap<&str, Vec<(f64, f64, u64)>> = BTreeMap::new();
        for r in &released {
            for (name, q) in &r.datasets {
                let groups = counts.entry(name).or_default();
                match groups.iter_mut().find(|g| g.0 == *q && g.1 == r.sigma) {
                    Some(g) => g.2 += 1,
                    None => groups.push((*q, r.sigma, 1)),
                }
            }
        }
        for (name, groups) in &counts {
            let mut acct = create(AccountantKind::Rdp);
            for &(q, sigma, n) in groups {
                acct.compose(q, sigma, n).unwrap();
            }
            let expected = acct.epsilon(DELTA).unwrap();
            let charged = ledger.spent(name).unwrap();
            assert!(
                charged >= expected,
                "round {round}: dataset {name} charged {charged} < {expected} from released steps"
            );
            assert!(ledger.steps(name).unwrap() >= acct.steps());
        }
    }
    assert!(
        rounds_with_output >= ROUNDS / 3,
        "only {rounds_with_output} of {ROUNDS} rounds released anything; the kills came too early to test much"
    );

    // Training goes on after the last crash.
    let (mut ledger, _) = Ledger::open(&path, AccountantKind::Rdp, &KEY).unwrap();
    let next = ledger.last_step().unwrap() + 1;
    ledger
        .authorize(&StepCharge {
            step: next,
            sigma: 1.0,
            datasets: vec![("a".into(), 0.01)],
        })
        .unwrap();
    eprintln!(
        "{} steps released over {ROUNDS} kills, ledger at step {next}",
        released.len()
    );
}
