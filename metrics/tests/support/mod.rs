//! Shared test support. `prometheus` is written to be included by other crates' tests too.

pub(crate) mod prometheus;
