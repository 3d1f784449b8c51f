//! Observability: the log lines (text or JSON) and the Prometheus metrics.

pub mod logs;
pub mod metrics;
