//! Why the guest side refused to create an instrument.

/// A descriptor the telemetry API refuses before any provider sees it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TelemetryError {
    /// The metric name is not `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error(
        "invalid metric name {0:?}: use letters, digits, '_' and ':', not starting with a digit"
    )]
    MetricName(String),
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*` or starts with `__`.
    #[error("invalid label name {0:?}: use letters, digits and '_', not starting with a digit or \"__\"")]
    LabelName(String),
    /// The same label name appears twice.
    #[error("label {0:?} is given twice")]
    DuplicateLabel(String),
    /// Histogram bucket bounds are not finite and strictly ascending.
    #[error("histogram buckets must be finite and strictly ascending, got {0:?}")]
    Buckets(Vec<f64>),
}
