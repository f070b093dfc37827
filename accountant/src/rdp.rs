//! The Rényi DP accountant.

use super::analysis::rdp as math;
use super::{validate_delta, Accountant, AccountantError, History, SavedState};

/// Rényi DP accountant (Mironov 2017; subsampled Gaussian per Mironov, Talwar, Zhang 2019).
///
/// Keeps the composed RDP at each order (RDP composes by addition), so `epsilon` is a
/// minimum over orders. Uses `dp_accounting` 0.6's default orders and (ε, δ) conversion, and
/// matches it to floating-point precision. Looser than [`super::PldAccountant`]; useful as a
/// cross-check and for budgets quoted in RDP elsewhere.
#[derive(Debug, Clone)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
    history: History,
}

impl RdpAccountant {
    /// Registry name.
    pub const MECHANISM: &'static str = "rdp";

    /// An empty accountant with the default orders.
    pub fn new() -> Self {
        let orders = math::default_orders();
        RdpAccountant {
            rdp: vec![0.0; orders.len()],
            orders,
            history: History::default(),
        }
    }

    /// ε at `delta` and the order that achieves it.
    pub fn epsilon_and_order(&self, delta: f64) -> Result<(f64, f64), AccountantError> {
        validate_delta(delta)?;
        if self.history.steps() == 0 {
            return Ok((0.0, f64::NAN));
        }
        Ok(math::epsilon(&self.orders, &self.rdp, delta))
    }

    /// The RDP orders in use.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// The composed RDP at each order.
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }

    fn add(&mut self, q: f64, sigma: f64, steps: u64) {
        for (r, &a) in self.rdp.iter_mut().zip(&self.orders) {
            *r += steps as f64 * math::subsampled_gaussian(q, sigma, a);
        }
    }
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl Accountant for RdpAccountant {
    fn mechanism(&self) -> &'static str {
        Self::MECHANISM
    }

    fn compose(&mut self, q: f64, sigma: f64, steps: u64) -> Result<(), AccountantError> {
        self.history.push(q, sigma, steps)?;
        self.add(q, sigma, steps);
        Ok(())
    }

    fn epsilon(&self, delta: f64) -> Result<f64, AccountantError> {
        Ok(self.epsilon_and_order(delta)?.0)
    }

    fn history(&self) -> &History {
        &self.history
    }

    fn load(&mut self, state: &SavedState) -> Result<(), AccountantError> {
        let history = state.history_for(Self::MECHANISM)?;
        let mut fresh = RdpAccountant::new();
        for g in history.grouped() {
            fresh.add(g.q, g.sigma, g.steps);
        }
        fresh.history = history;
        *self = fresh;
        Ok(())
    }
}
