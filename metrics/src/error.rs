//! The one error type of this crate.

/// What went wrong while building, updating or serving a node's metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A constant label given to [`NodeMetrics::new`](crate::NodeMetrics::new) was refused.
    #[error("metrics label {label}={value:?} is invalid: {reason}")]
    InvalidLabel {
        /// The label's name (`node` or `role`).
        label: &'static str,
        /// The value that was given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The Prometheus client refused a metric definition (a bug in this crate, not bad input).
    #[error("metric {metric} could not be registered: {source}")]
    Register {
        /// The metric's full name.
        metric: &'static str,
        /// The client library's error.
        source: prometheus::Error,
    },
    /// A counter was asked to go down; counters only grow (Prometheus reads a drop as a
    /// process restart).
    #[error("counter {metric} is at {current}; it cannot be set to the lower {requested}")]
    CounterDecrease {
        /// The counter's full name.
        metric: &'static str,
        /// Its value now.
        current: u64,
        /// The value asked for.
        requested: u64,
    },
    /// The metrics endpoint's socket failed.
    #[error("metrics endpoint: {operation} failed: {source}")]
    Io {
        /// What was being done (`accept`, `local_addr`, ...).
        operation: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
}
