//! Shared test support. `prometheus` and `dashboard` are written to be included by other crates' tests too.

pub(crate) mod dashboard;
pub(crate) mod prometheus;
