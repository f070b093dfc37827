//! One dataset's budget, what was charged to it, and the fast admission check.
//!
//! The tight PLD accountant needs an FFT per distinct `(q, sigma)` to answer ε (around 0.1 s),
//! far too slow to run before every step. Runs are long stretches of identical steps, so each
//! dataset keeps an [`Allowance`] for its current `(q, sigma)`: the largest count of such steps
//! (from where the stretch began) known to stay within budget, and the smallest known to
//! exceed it. A step inside the known-good range is admitted without any accountant call; one
//! outside it evaluates a candidate ahead (the RDP accountant's cheap answer first, then
//! doubling, then bisection toward the refusal bound), so a stretch costs O(log steps)
//! evaluations in all and never more than two in one authorization.
//!
//! The true ε of the subsampled Gaussian mechanism cannot fall when a step is added
//! (post-processing), so if the accountant's upper bound at `n` steps is within budget, every
//! `k <= n` steps are within budget too. The last admitted step is therefore exactly the last
//! one whose bound fits whenever the bound is monotone in the step count.

use crate::{Budget, LedgerError};
use bastion_accountant::{create, AccountantError, AccountantKind, Segment};
use std::sync::OnceLock;

/// How far past the current step the RDP hint may send the first PLD evaluation: a PLD over
/// many more steps needs a larger FFT, so an over-optimistic hint would only cost time.
const HINT_MAX_AHEAD: u64 = 1 << 12;

/// What the admission check decided for one more step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision {
    /// Within budget; at least this many further steps at the same rate are too.
    Admit { left_at_least: u64 },
    /// Over budget: ε would become `would_spend`.
    Refuse { would_spend: f64 },
}

/// Known bounds for a stretch of identical steps. Counts are steps since the stretch began.
#[derive(Debug, Clone)]
struct Allowance {
    q: f64,
    sigma: f64,
    /// Steps with `(q, sigma)` committed since the stretch began.
    taken: u64,
    /// Largest count known to stay within budget.
    admitted: u64,
    /// Smallest count known to exceed it.
    refused: Option<u64>,
}

impl Allowance {
    fn new(q: f64, sigma: f64) -> Self {
        Allowance {
            q,
            sigma,
            taken: 0,
            admitted: 0,
            refused: None,
        }
    }

    fn is_for(&self, q: f64, sigma: f64) -> bool {
        self.q == q && self.sigma == sigma
    }
}

/// A registered dataset and the steps charged to it.
#[derive(Debug)]
pub(crate) struct DatasetState {
    budget: Budget,
    kind: AccountantKind,
    /// Everything committed, in log order; consecutive identical steps merged.
    segments: Vec<Segment>,
    steps: u64,
    /// ε of `segments`, computed on first use after a change.
    spent: OnceLock<f64>,
    allowance: Option<Allowance>,
}

impl DatasetState {
    pub(crate) fn new(budget: Budget, kind: AccountantKind) -> Self {
        DatasetState {
            budget,
            kind,
            segments: Vec::new(),
            steps: 0,
            spent: OnceLock::new(),
            allowance: None,
        }
    }

    pub(crate) fn budget(&self) -> Budget {
        self.budget
    }

    /// Lowers ε of the budget (the caller checked it is lower); cached admissions were
    /// decided against the old budget, so they go.
    pub(crate) fn lower(&mut self, epsilon: f64) {
        self.budget.epsilon = epsilon;
        self.allowance = None;
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    /// ε spent so far, at the budget's δ.
    pub(crate) fn spent(&self) -> Result<f64, AccountantError> {
        if let Some(&eps) = self.spent.get() {
            return Ok(eps);
        }
        let eps = epsilon_of(self.kind, &self.segments, None, self.budget.delta)?;
        Ok(*self.spent.get_or_init(|| eps))
    }

    /// ε after `extra` more steps at `(q, sigma)` on top of what is committed: bit-identical
    /// to what `spent()` answers once they are committed.
    pub(crate) fn epsilon_after(
        &self,
        q: f64,
        sigma: f64,
        extra: u64,
    ) -> Result<f64, AccountantError> {
        if extra == 0 {
            return self.spent();
        }
        let extra = Segment {
            q,
            sigma,
            steps: extra,
        };
        epsilon_of(self.kind, &self.segments, Some(extra), self.budget.delta)
    }

    /// Records one committed step (no accountant work: replaying a long log stays cheap).
    pub(crate) fn commit(&mut self, q: f64, sigma: f64) -> Result<(), AccountantError> {
        self.steps = self
            .steps
            .checked_add(1)
            .ok_or(AccountantError::StepOverflow {
                taken: self.steps,
                adding: 1,
            })?;
        match self.segments.last_mut() {
            Some(last) if last.q == q && last.sigma == sigma => last.steps += 1,
            _ => self.segments.push(Segment { q, sigma, steps: 1 }),
        }
        self.spent = OnceLock::new();
        match &mut self.allowance {
            Some(a) if a.is_for(q, sigma) => a.taken += 1,
            _ => self.allowance = None,
        }
        Ok(())
    }

    /// Whether one more step at `(q, sigma)` stays within budget.
    pub(crate) fn decide(&mut self, q: f64, sigma: f64) -> Result<Decision, AccountantError> {
        let fresh = !matches!(&self.allowance, Some(a) if a.is_for(q, sigma));
        if fresh {
            self.allowance = Some(Allowance::new(q, sigma));
        }
        let a = self.allowance.clone().expect("allowance was just set");
        let k = a.taken + 1;
        if k <= a.admitted {
            return Ok(Decision::Admit {
                left_at_least: a.admitted - k,
            });
        }
        let candidate = match a.refused {
            Some(r) if r <= k => {
                let would_spend = self.epsilon_after(q, sigma, 1)?;
                return Ok(Decision::Refuse { would_spend });
            }
            // Bisect the open range (k - 1, r).
            Some(r) => k + (r - k) / 2,
            None if a.taken == 0 && a.admitted == 0 && self.kind != AccountantKind::Rdp => {
                let hint = self.rdp_hint(q, sigma)?;
                hint.clamp(k, k.saturating_add(HINT_MAX_AHEAD))
            }
            None => k.max(a.admitted.saturating_mul(2)),
        };
        let eps = self.epsilon_after(q, sigma, candidate - a.taken)?;
        let within = eps <= self.budget.epsilon;
        self.record(candidate, within);
        if within {
            return Ok(Decision::Admit {
                left_at_least: candidate - k,
            });
        }
        if candidate == k {
            return Ok(Decision::Refuse { would_spend: eps });
        }
        let eps = self.epsilon_after(q, sigma, 1)?;
        let within = eps <= self.budget.epsilon;
        self.record(k, within);
        Ok(if within {
            Decision::Admit { left_at_least: 0 }
        } else {
            Decision::Refuse { would_spend: eps }
        })
    }

    /// Tells the allowance that `extra` more planned steps at `(q, sigma)` were checked and fit.
    pub(crate) fn seed(&mut self, q: f64, sigma: f64, extra: u64) {
        if !matches!(&self.allowance, Some(a) if a.is_for(q, sigma)) {
            self.allowance = Some(Allowance::new(q, sigma));
        }
        let taken = self.allowance.as_ref().map_or(0, |a| a.taken);
        self.record(taken.saturating_add(extra), true);
    }

    fn record(&mut self, count: u64, within: bool) {
        if let Some(a) = &mut self.allowance {
            if within {
                a.admitted = a.admitted.max(count);
            } else {
                a.refused = Some(a.refused.map_or(count, |r| r.min(count)));
            }
        }
    }

    /// The most steps the (cheap, looser) RDP accountant allows from the current history:
    /// a good first guess for where the PLD accountant's limit lies.
    fn rdp_hint(&self, q: f64, sigma: f64) -> Result<u64, AccountantError> {
        let fits = |n: u64| -> Result<bool, AccountantError> {
            let extra = (n > 0).then_some(Segment { q, sigma, steps: n });
            let eps = epsilon_of(
                AccountantKind::Rdp,
                &self.segments,
                extra,
                self.budget.delta,
            )?;
            Ok(eps <= self.budget.epsilon)
        };
        let (mut lo, mut hi) = (0u64, 1u64);
        while fits(hi)? {
            lo = hi;
            if hi >= HINT_MAX_AHEAD {
                return Ok(hi);
            }
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// ε of `segments` (plus `extra`) by the accountant `kind`. Segments with equal `(q, sigma)`
/// are summed first, as the accountant does when it reloads saved state: RDP accumulates
/// per-order values at each `compose`, so composing the same steps in different calls can
/// differ in the last bits, and this makes ε depend only on what the log holds, identical
/// live and after a replay.
fn epsilon_of(
    kind: AccountantKind,
    segments: &[Segment],
    extra: Option<Segment>,
    delta: f64,
) -> Result<f64, AccountantError> {
    let mut groups: Vec<Segment> = Vec::new();
    for s in segments.iter().chain(extra.iter()) {
        match groups.iter_mut().find(|g| g.q == s.q && g.sigma == s.sigma) {
            Some(g) => {
                g.steps = g
                    .steps
                    .checked_add(s.steps)
                    .ok_or(AccountantError::StepOverflow {
                        taken: g.steps,
                        adding: s.steps,
                    })?
            }
            None => groups.push(*s),
        }
    }
    let mut acct = create(kind);
    for g in &groups {
        acct.compose(g.q, g.sigma, g.steps)?;
    }
    acct.epsilon(delta)
}

/// Checks a budget before it is registered.
pub(crate) fn validate_budget(name: &str, budget: Budget) -> Result<(), LedgerError> {
    let valid = budget.epsilon > 0.0
        && budget.epsilon.is_finite()
        && budget.delta > 0.0
        && budget.delta < 1.0;
    if !valid {
        return Err(LedgerError::InvalidBudget {
            dataset: name.to_owned(),
            epsilon: budget.epsilon,
            delta: budget.delta,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admission check agrees with the accountant at every step of a run that exhausts.
    #[test]
    fn decide_matches_the_accountant_step_by_step() {
        let budget = Budget {
            epsilon: 3.0,
            delta: 1e-5,
        };
        let mut state = DatasetState::new(budget, AccountantKind::Rdp);
        let (q, sigma) = (0.05, 1.0);
        let mut admitted = 0;
        loop {
            let decision = state.decide(q, sigma).unwrap();
            // Independent reference: the accountant given the whole count in one call.
            let mut next = create(AccountantKind::Rdp);
            next.compose(q, sigma, admitted + 1).unwrap();
            let eps = next.epsilon(budget.delta).unwrap();
            match decision {
                Decision::Admit { .. } => {
                    assert!(
                        eps <= budget.epsilon,
                        "admitted step {admitted} at eps {eps}"
                    );
                    state.commit(q, sigma).unwrap();
                    admitted += 1;
                }
                Decision::Refuse { would_spend } => {
                    assert!(eps > budget.epsilon);
                    assert_eq!(would_spend, eps);
                    break;
                }
            }
        }
        assert!(
            admitted > 5,
            "budget should allow a few steps, got {admitted}"
        );
        let mut reference = create(AccountantKind::Rdp);
        reference.compose(q, sigma, admitted).unwrap();
        assert_eq!(
            state.spent().unwrap(),
            reference.epsilon(budget.delta).unwrap()
        );
    }
}
