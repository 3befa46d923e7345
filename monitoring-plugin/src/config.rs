//! The monitoring plugin's configuration (`[plugins.monitoring]` in the host
//! config), with defaults that work with zero setup.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Access control of the monitoring endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Bearer token required on `/metrics` (off when empty, so a plain
    /// Prometheus can scrape).
    pub metrics_token: Option<String>,
    /// Bearer token for admin operations and details.
    pub admin_token: Option<String>,
    /// When true, `/health` without the admin (or metrics) token answers
    /// only the overall status; the status code stays public.
    pub health_details_require_token: bool,
}

/// Metrics settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Most series one metric may have (record_metric and event topics).
    pub max_series_per_metric: usize,
    /// Most labels a recorded metric may have.
    pub max_labels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_series_per_metric: 1_000,
            max_labels: 16,
        }
    }
}

/// Health-check settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// How often checks run, seconds.
    pub interval_secs: u64,
    /// Deadline of each check, seconds (fractions allowed).
    pub timeout_secs: f64,
    /// A storage probe slower than this is degraded, milliseconds.
    pub storage_slow_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_secs: 30,
            timeout_secs: 5.0,
            storage_slow_ms: 250,
        }
    }
}

/// Tracing settings (`[plugins.monitoring.tracing]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Turns span recording off entirely (the host still propagates context).
    pub enabled: bool,
    /// OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`;
    /// no export when unset.
    pub otlp_endpoint: Option<String>,
    /// Extra headers on export requests (e.g. an API key).
    pub otlp_headers: BTreeMap<String, String>,
    /// How often a partial batch is sent, milliseconds.
    pub otlp_flush_ms: u64,
    /// Timeout of one export request, milliseconds.
    pub otlp_timeout_ms: u64,
    /// Most spans waiting for export; beyond it spans are dropped and counted.
    pub otlp_max_queue: usize,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Further resource attributes on exported spans.
    pub resource_attributes: BTreeMap<String, String>,
    /// Fraction of traces recorded (by trace id, on top of the host's
    /// `trace_sample_ratio`).
    pub sample_ratio: f64,
    /// Most traces kept in memory.
    pub max_traces: usize,
    /// Most bytes of spans kept in memory.
    pub max_bytes: usize,
    /// Most spans kept per trace.
    pub max_spans_per_trace: usize,
    /// A manual span not ended within this many seconds is closed and
    /// flagged `timed_out` (fractions allowed).
    pub span_timeout_secs: f64,
    /// Service calls slower than this are logged with their trace id,
    /// milliseconds (0 = off).
    pub slow_call_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enabled: true,
            otlp_endpoint: None,
            otlp_headers: BTreeMap::new(),
            otlp_flush_ms: 5_000,
            otlp_timeout_ms: 10_000,
            otlp_max_queue: 2_048,
            service_name: "homeconsole".into(),
            resource_attributes: BTreeMap::new(),
            sample_ratio: 1.0,
            max_traces: 1_000,
            max_bytes: 16 * 1024 * 1024,
            max_spans_per_trace: 1_000,
            span_timeout_secs: 300.0,
            slow_call_ms: 1_000,
        }
    }
}

impl TracingConfig {
    fn validate(&self) -> Result<(), String> {
        let bad = |m: &str| Err(format!("invalid monitoring config: tracing.{m}"));
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return bad("sample_ratio must be between 0 and 1");
        }
        if self.max_traces == 0 || self.max_bytes == 0 || self.max_spans_per_trace == 0 {
            return bad("max_traces, max_bytes and max_spans_per_trace must be > 0");
        }
        if !(self.span_timeout_secs > 0.0 && self.span_timeout_secs <= 86_400.0) {
            return bad("span_timeout_secs must be in (0, 86400]");
        }
        if self.otlp_flush_ms == 0 || self.otlp_timeout_ms == 0 || self.otlp_max_queue == 0 {
            return bad("otlp_flush_ms, otlp_timeout_ms and otlp_max_queue must be > 0");
        }
        if self.service_name.trim().is_empty() {
            return bad("service_name must not be empty");
        }
        Ok(())
    }
}

/// The whole plugin configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Access control.
    pub access: AccessConfig,
    /// Metrics.
    pub metrics: MetricsConfig,
    /// Health checks.
    pub health: HealthConfig,
    /// Tracing.
    pub tracing: TracingConfig,
}

impl MonitoringConfig {
    /// Parses and checks the JSON config given by the host.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let config: MonitoringConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid monitoring config: {e}"))?;
        if config.health.interval_secs == 0 {
            return Err("invalid monitoring config: health.interval_secs must be > 0".into());
        }
        if !(config.health.timeout_secs > 0.0 && config.health.timeout_secs <= 300.0) {
            return Err(
                "invalid monitoring config: health.timeout_secs must be in (0, 300]".into(),
            );
        }
        if config.metrics.max_series_per_metric == 0 {
            return Err(
                "invalid monitoring config: metrics.max_series_per_metric must be > 0".into(),
            );
        }
        config.tracing.validate()?;
        Ok(config)
    }
}
