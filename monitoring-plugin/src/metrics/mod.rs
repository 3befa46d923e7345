//! HomeConsole metrics core: our own metric store and Prometheus text writer.
//!
//! Exists because the `prometheus` crate's `Registry::gather()` + `TextEncoder`
//! costs ~34 ms for 10,000 labelled series, while a scrape must take <= 5 ms and
//! hot-path updates a few nanoseconds. Host code registers families on a shared
//! [`MetricStore`] and keeps pre-resolved, lock-free handles ([`Counter`],
//! [`Gauge`], [`Histogram`]); untrusted plugin requests
//! (`monitoring.record_metric`) go through [`MetricStore::record`], which
//! validates everything and counts refusals by reason; [`MetricStore::encode`]
//! writes the text exposition format 0.0.4, lint-clean under
//! `promtool check metrics`.
//!
//! Submodules: `error` (errors and refusal reasons), `validate` (name/label/help
//! rules), `value` (atomic series values and handles), `family` (series lookup,
//! limits, sorted snapshots), `store` (the store and `record`), `text` (label
//! escaping and float spelling), `encode` (the text writer).

pub mod capability;
pub mod collector;
mod encode;
mod error;
mod family;
pub mod names;
pub mod remote_write;
mod store;
mod text;
mod validate;
mod value;

#[cfg(test)]
mod tests;

pub use self::encode::to_openmetrics;
pub use self::error::{ConflictKind, MetricError, MetricKind, REASONS};
pub use self::family::{CounterFamily, GaugeFamily, HistogramFamily};
pub use self::store::{
    MetricStore, RecordRequest, StoreConfig, DEFAULT_RECORD_HELP, DEFAULT_SECONDS_BUCKETS,
    FALLBACK_HELP,
};
pub use self::text::{push_escaped_label_value, push_float};
pub use self::validate::{MAX_HELP_LEN, MAX_LABEL_NAME_LEN, MAX_NAME_LEN};

/// The label every series a plugin records carries, set to the plugin's
/// name (by `monitoring.record_metric` and by the telemetry provider); a
/// plugin cannot set it itself.
pub const PLUGIN_LABEL: &str = "plugin";
pub use self::value::{Counter, Exemplar, Gauge, Histogram};
