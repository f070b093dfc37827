//! Budget enforcement against the accountant computed directly: exhaustion stops at exactly
//! the last step that fits, plans are refused by their total ε, refusals write nothing, and a
//! reopened ledger reproduces spent ε bit for bit.

use bastion_accountant::{create, AccountantKind};
use bastion_ledger::{Budget, Ledger, LedgerError, Plan, StepCharge};
use std::fs;
use std::path::Path;

const DELTA: f64 = 1e-5;
const KEY: [u8; 32] = [0x5A; 32];

/// ε from the accountant itself for `(q, sigma, steps)` segments (distinct parameters).
fn direct(kind: AccountantKind, segments: &[(f64, f64, u64)]) -> f64 {
    let mut acct = create(kind);
    for &(q, sigma, n) in segments {
        acct.compose(q, sigma, n).unwrap();
    }
    acct.epsilon(DELTA).unwrap()
}

fn step(n: u64, sigma: f64, datasets: &[(&str, f64)]) -> StepCharge {
    StepCharge {
        step: n,
        sigma,
        datasets: datasets.iter().map(|&(d, q)| (d.to_owned(), q)).collect(),
    }
}

fn open(path: &Path, kind: AccountantKind) -> Ledger {
    Ledger::open(path, kind, &KEY).unwrap().0
}

/// Authorizes steps `from..` at `(q, sigma)` for `dataset` until refused; returns the count
/// authorized and the refusal.
fn run_until_refused(
    ledger: &mut Ledger,
    from: u64,
    dataset: &str,
    q: f64,
    sigma: f64,
) -> (u64, LedgerError) {
    for n in from.. {
        if let Err(e) = ledger.authorize(&step(n, sigma, &[(dataset, q)])) {
            return (n - from, e);
        }
    }
    unreachable!()
}

#[test]
fn exhaustion_stops_at_exactly_the_last_step_that_fits_pld() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let kind = AccountantKind::Pld;
    let mut ledger = open(&path, kind);
    let budget = Budget {
        epsilon: 1.0,
        delta: DELTA,
    };
    ledger.register_dataset("a", budget).unwrap();
    let (q, sigma) = (0.05, 2.0);
    let (n, refusal) = run_until_refused(&mut ledger, 0, "a", q, sigma);

    let at_n = direct(kind, &[(q, sigma, n)]);
    let at_next = direct(kind, &[(q, sigma, n + 1)]);
    assert!(n > 10, "budget should allow some steps, allowed {n}");
    assert!(at_n <= budget.epsilon, "{n} steps: {at_n}");
    assert!(at_next > budget.epsilon, "{} steps: {at_next}", n + 1);
    match refusal {
        LedgerError::BudgetExhausted {
            dataset,
            spent,
            would_spend,
            budget: b,
        } => {
            assert_eq!(dataset, "a");
            assert_eq!(spent, at_n);
            assert_eq!(would_spend, at_next);
            assert_eq!(b, budget.epsilon);
        }
        other => panic!("expected BudgetExhausted, got {other:?}"),
    }
    assert_eq!(ledger.steps("a").unwrap(), n);
    assert_eq!(ledger.spent("a").unwrap(), at_n);
    assert_eq!(ledger.remaining("a").unwrap(), budget.epsilon - at_n);
}

#[test]
fn exhaustion_across_changing_noise_rdp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let kind = AccountantKind::Rdp;
    let mut ledger = open(&path, kind);
    let budget = Budget {
        epsilon: 3.0,
        delta: DELTA,
    };
    ledger.register_dataset("a", budget).unwrap();
    // A node drops out after 30 steps: q rises and sigma falls.
    for n in 0..30 {
        ledger.authorize(&step(n, 1.5, &[("a", 0.02)])).unwrap();
    }
    let (m, refusal) = run_until_refused(&mut ledger, 30, "a", 0.025, 0.9);
    assert!(matches!(refusal, LedgerError::BudgetExhausted { .. }));
    assert!(m > 5, "allowed {m}");
    let at = |m| direct(kind, &[(0.02, 1.5, 30), (0.025, 0.9, m)]);
    assert!(at(m) <= budget.epsilon);
    assert!(at(m + 1) > budget.epsilon);
    assert_eq!(ledger.spent("a").unwrap(), at(m));
}

#[test]
fn a_refused_step_writes_nothing_and_names_the_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let mut ledger = open(&path, AccountantKind::Rdp);
    let tight = Budget {
        epsilon: 2.0,
        delta: DELTA,
    };
    let loose = Budget {
        epsilon: 100.0,
        delta: DELTA,
    };
    ledger.register_dataset("big", loose).unwrap();
    ledger.register_dataset("small", tight).unwrap();
    let both = [("big", 0.01), ("small", 0.05)];
    let mut n = 0;
    let refusal = loop {
        match ledger.authorize(&step(n, 1.0, &both)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&refusal, LedgerError::BudgetExhausted { dataset, .. } if dataset == "small"),
        "{refusal:?}"
    );
    let before = ledger.position();
    let bytes = fs::read(&path).unwrap();
    // Refused again; the loose dataset was not charged for the refused step either.
    assert!(ledger.authorize(&step(n, 1.0, &both)).is_err());
    assert_eq!(ledger.position(), before);
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert_eq!(ledger.steps("big").unwrap(), n);
    assert_eq!(ledger.last_step(), Some(n - 1));
    // Steps that leave the exhausted dataset out still run.
    ledger.authorize(&step(n, 1.0, &[("big", 0.01)])).unwrap();
    assert_eq!(ledger.steps("big").unwrap(), n + 1);
    assert_eq!(ledger.steps("small").unwrap(), n);
}

#[test]
fn plans_are_refused_by_spent_plus_planned_epsilon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let kind = AccountantKind::Pld;
    let mut ledger = open(&path, kind);
    let budget = Budget {
        epsilon: 1.0,
        delta: DELTA,
    };
    ledger.register_dataset("a", budget).unwrap();
    ledger.register_dataset("b", budget).unwrap();
    // About 85 steps fit for `a`.
    let (q, sigma) = (0.05, 2.0);

    let plan = |steps| Plan {
        steps,
        sigma,
        datasets: vec![("a".into(), q), ("b".into(), q / 2.0)],
    };
    let fits = ledger.check_plan(&plan(60)).unwrap();
    assert_eq!(fits[0].planned_epsilon, direct(kind, &[(q, sigma, 60)]));
    assert_eq!(
        fits[1].planned_epsilon,
        direct(kind, &[(q / 2.0, sigma, 60)])
    );
    assert!(fits[0].planned_epsilon <= budget.epsilon);

    match ledger.check_plan(&plan(300)) {
        Err(LedgerError::PlanExceedsBudget {
            dataset,
            planned_epsilon,
            spent,
            budget: b,
        }) => {
            assert_eq!(dataset, "a");
            assert_eq!(planned_epsilon, direct(kind, &[(q, sigma, 300)]));
            assert!(planned_epsilon > budget.epsilon);
            assert_eq!(spent, 0.0);
            assert_eq!(b, budget.epsilon);
        }
        other => panic!("expected PlanExceedsBudget, got {other:?}"),
    }

    // Spend most of the budget; a plan that fits an empty account no longer fits.
    for n in 0..60 {
        let auth = ledger
            .authorize(&step(n, sigma, &[("a", q), ("b", q / 2.0)]))
            .unwrap();
        // The plan's check already covered these steps.
        assert!(auth.datasets[0].steps_left_at_least >= 59 - n);
    }
    match ledger.check_plan(&plan(60)) {
        Err(LedgerError::PlanExceedsBudget {
            dataset,
            planned_epsilon,
            spent,
            ..
        }) => {
            assert_eq!(dataset, "a");
            assert_eq!(planned_epsilon, direct(kind, &[(q, sigma, 120)]));
            assert_eq!(spent, direct(kind, &[(q, sigma, 60)]));
        }
        other => panic!("expected PlanExceedsBudget, got {other:?}"),
    }
    assert!(matches!(
        ledger.check_plan(&Plan {
            steps: 10,
            sigma,
            datasets: vec![("nobody".into(), q)]
        }),
        Err(LedgerError::UnknownDataset { .. })
    ));
}

#[test]
fn a_reopened_ledger_reproduces_spent_epsilon_exactly() {
    for kind in AccountantKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let mut ledger = open(&path, kind);
        let budget = Budget {
            epsilon: 20.0,
            delta: DELTA,
        };
        ledger.register_dataset("a", budget).unwrap();
        ledger.register_dataset("b", budget).unwrap();
        // Three stretches; the first parameters come back in the third.
        let stretches = [(0.01, 1.0, 40), (0.02, 0.8, 25), (0.01, 1.0, 35)];
        let mut n = 0;
        for &(q, sigma, count) in &stretches {
            // As the Accountant actor does at a (re)start: one ε evaluation per dataset.
            ledger
                .check_plan(&Plan {
                    steps: count,
                    sigma,
                    datasets: vec![("a".into(), q), ("b".into(), q * 2.0)],
                })
                .unwrap();
            for _ in 0..count {
                ledger
                    .authorize(&step(n, sigma, &[("a", q), ("b", q * 2.0)]))
                    .unwrap();
                n += 1;
            }
        }
        let a = ledger.spent("a").unwrap();
        let b = ledger.spent("b").unwrap();
        let position = ledger.position();
        drop(ledger);

        let (ledger, recovery) = Ledger::open(&path, kind, &KEY).unwrap();
        assert_eq!(recovery.steps, 100);
        assert_eq!(recovery.torn_tail, None);
        assert_eq!(ledger.position(), position);
        assert_eq!(ledger.spent("a").unwrap().to_bits(), a.to_bits(), "{kind}");
        assert_eq!(ledger.spent("b").unwrap().to_bits(), b.to_bits(), "{kind}");
        assert_eq!(
            a,
            direct(kind, &[(0.01, 1.0, 75), (0.02, 0.8, 25)]),
            "{kind}"
        );
        assert_eq!(ledger.segments("a").unwrap().len(), 3);
        assert_eq!(ledger.last_step(), Some(99));
    }
}

#[test]
fn registration_is_idempotent_and_never_changes_a_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let mut ledger = open(&path, AccountantKind::Rdp);
    let budget = Budget {
        epsilon: 4.0,
        delta: DELTA,
    };
    ledger.register_dataset("a", budget).unwrap();
    let position = ledger.position();
    ledger.register_dataset("a", budget).unwrap();
    assert_eq!(ledger.position(), position, "re-registering wrote a record");
    let raised = Budget {
        epsilon: 8.0,
        ..budget
    };
    assert!(matches!(
        ledger.register_dataset("a", raised),
        Err(LedgerError::BudgetMismatch { .. })
    ));
    for bad in [
        Budget {
            epsilon: 0.0,
            delta: DELTA,
        },
        Budget {
            epsilon: f64::INFINITY,
            delta: DELTA,
        },
        Budget {
            epsilon: 1.0,
            delta: 1.0,
        },
    ] {
        assert!(matches!(
            ledger.register_dataset("c", bad),
            Err(LedgerError::InvalidBudget { .. })
        ));
    }
    assert!(matches!(
        ledger.register_dataset("", budget),
        Err(LedgerError::InvalidDatasetName { .. })
    ));
    drop(ledger);

    let mut ledger = open(&path, AccountantKind::Rdp);
    assert_eq!(ledger.budget("a").unwrap(), budget);
    assert_eq!(ledger.datasets().collect::<Vec<_>>(), ["a"]);
    assert!(matches!(
        ledger.register_dataset("a", raised),
        Err(LedgerError::BudgetMismatch { .. })
    ));
}

#[test]
fn malformed_or_replayed_steps_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let mut ledger = open(&path, AccountantKind::Rdp);
    let budget = Budget {
        epsilon: 10.0,
        delta: DELTA,
    };
    ledger.register_dataset("a", budget).unwrap();
    ledger.register_dataset("b", budget).unwrap();
    ledger.authorize(&step(5, 1.0, &[("a", 0.01)])).unwrap();
    let position = ledger.position();

    for n in [5, 4, 0] {
        assert!(matches!(
            ledger.authorize(&step(n, 1.0, &[("a", 0.01)])),
            Err(LedgerError::StepNotIncreasing { step, last: 5 }) if step == n
        ));
    }
    let invalid: [(f64, &[(&str, f64)]); 7] = [
        (1.0, &[]),
        (1.0, &[("a", 0.0)]),
        (1.0, &[("a", 1.5)]),
        (1.0, &[("a", f64::NAN)]),
        (0.0, &[("a", 0.01)]),
        (f64::INFINITY, &[("a", 0.01)]),
        (1.0, &[("a", 0.01), ("a", 0.01)]),
    ];
    for (sigma, datasets) in invalid {
        let r = ledger.authorize(&step(6, sigma, datasets));
        assert!(
            matches!(r, Err(LedgerError::InvalidCharge { .. })),
            "sigma {sigma}, {datasets:?}: {r:?}"
        );
    }
    assert!(matches!(
        ledger.authorize(&step(6, 1.0, &[("a", 0.01), ("nobody", 0.01)])),
        Err(LedgerError::UnknownDataset { dataset }) if dataset == "nobody"
    ));
    assert_eq!(ledger.position(), position);
    assert_eq!(ledger.steps("a").unwrap(), 1);

    // Gaps in step numbers are fine.
    let auth = ledger
        .authorize(&step(9, 1.0, &[("a", 0.01), ("b", 0.03)]))
        .unwrap();
    assert_eq!(auth.step, 9);
    assert_eq!(auth.datasets[0].steps, 2);
    assert_eq!(auth.datasets[1].steps, 1);
    assert_eq!(auth.position.records, position.records + 1);
    assert_eq!(auth.position.offset, fs::metadata(&path).unwrap().len());
}

/// The Accountant actor owns the ledger on whatever thread runs it (checked at compile time).
#[test]
fn the_ledger_can_move_into_an_actor() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Ledger>();
}

/// The owner may lower a budget, never raise it; the lowered budget is durable, and it stops
/// steps at exactly the last one that fits the new figure (the accountant computed directly).
#[test]
fn a_budget_is_lowered_durably_and_never_raised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let mut ledger = open(&path, AccountantKind::Pld);
    let budget = Budget {
        epsilon: 8.0,
        delta: DELTA,
    };
    ledger.register_dataset("a", budget).unwrap();
    let (q, sigma) = (0.05, 1.0);
    for n in 0..5 {
        ledger.authorize(&step(n, sigma, &[("a", q)])).unwrap();
    }
    let spent = ledger.spent("a").unwrap();
    for not_lower in [8.0, 9.0] {
        assert!(matches!(
            ledger.lower_budget("a", not_lower),
            Err(LedgerError::NotLower { .. })
        ));
    }
    assert!(matches!(
        ledger.lower_budget("b", 1.0),
        Err(LedgerError::UnknownDataset { .. })
    ));
    // Lowered to a little more than what is spent.
    let lowered = spent + 0.2;
    ledger.lower_budget("a", lowered).unwrap();
    drop(ledger);

    let mut ledger = open(&path, AccountantKind::Pld);
    assert_eq!(
        ledger.budget("a").unwrap().epsilon,
        lowered,
        "the lowering is durable"
    );
    let (more, refusal) = run_until_refused(&mut ledger, 5, "a", q, sigma);
    assert!(
        matches!(refusal, LedgerError::BudgetExhausted { .. }),
        "{refusal}"
    );
    // Exactly the steps the accountant allows within the lowered budget.
    assert!(direct(AccountantKind::Pld, &[(q, sigma, 5 + more)]) <= lowered);
    assert!(direct(AccountantKind::Pld, &[(q, sigma, 5 + more + 1)]) > lowered);
    // Re-registering at the old figure does not raise it either.
    assert!(ledger.register_dataset("a", budget).is_err());
}
