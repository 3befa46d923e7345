//! The monitoring plugin's configuration (`[plugins.monitoring]` in the host
//! config), with defaults that work with zero setup.

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

/// Embedded history settings (alerts, query API and dashboard read it).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// How often the plugin samples its own metrics, seconds.
    pub sample_interval_secs: f64,
    /// How long samples are kept, seconds (default one hour).
    pub retention_secs: u64,
    /// Most series kept.
    pub max_series: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            sample_interval_secs: 15.0,
            retention_secs: 3_600,
            max_series: 50_000,
        }
    }
}

/// Error-tracking settings (`[plugins.monitoring.errors]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorsConfig {
    /// Environment recorded on every captured event.
    pub environment: String,
    /// Sentry public keys accepted by the ingest endpoints (the user part of
    /// a DSN). Empty: ingest answers 401 to everything.
    pub public_keys: Vec<String>,
    /// Numeric project ids accepted by the ingest endpoints. Empty: any.
    pub project_ids: Vec<String>,
    /// When set, captured events are also forwarded to this Sentry DSN.
    pub sentry_dsn: Option<String>,
    /// Also forward events received through ingest (off: avoids loops when
    /// two instances point at each other).
    pub forward_ingested: bool,
    /// Events waiting to be forwarded; more are dropped (counted).
    pub forward_queue: usize,
    /// Retries of one forwarded event after network errors or 5xx.
    pub forward_max_retries: u32,
    /// Per-request timeout of the forwarder, milliseconds.
    pub forward_timeout_ms: u64,
    /// Most issues kept; the least recently seen is evicted.
    pub max_issues: usize,
    /// Sample events kept per issue (the first plus the most recent).
    pub samples_per_issue: usize,
    /// Issues not seen for this many days are dropped.
    pub max_age_days: u64,
    /// Samples stored per issue per minute (counts stay exact).
    pub samples_per_minute: u32,
    /// Breadcrumbs kept per plugin.
    pub breadcrumbs: usize,
    /// Largest ingest body as sent, bytes (the host's `max_body_bytes`
    /// applies first).
    pub max_compressed_bytes: usize,
    /// Largest ingest body after decompression, bytes.
    pub max_decompressed_bytes: usize,
    /// Items per ingested envelope.
    pub max_items: usize,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        ErrorsConfig {
            environment: "production".to_owned(),
            public_keys: Vec::new(),
            project_ids: Vec::new(),
            sentry_dsn: None,
            forward_ingested: false,
            forward_queue: 100,
            forward_max_retries: 3,
            forward_timeout_ms: 10_000,
            max_issues: 1000,
            samples_per_issue: 10,
            max_age_days: 30,
            samples_per_minute: 5,
            breadcrumbs: 50,
            max_compressed_bytes: 1024 * 1024,
            max_decompressed_bytes: 10 * 1024 * 1024,
            max_items: 100,
        }
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
    /// Embedded history.
    pub history: HistoryConfig,
    /// Error tracking.
    pub errors: ErrorsConfig,
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
        if !(config.history.sample_interval_secs >= 0.1
            && config.history.sample_interval_secs <= 3_600.0)
        {
            return Err(
                "invalid monitoring config: history.sample_interval_secs must be in [0.1, 3600]"
                    .into(),
            );
        }
        if config.history.retention_secs < 60 || config.history.max_series == 0 {
            return Err("invalid monitoring config: history.retention_secs must be >= 60 and history.max_series > 0".into());
        }
        if config.metrics.max_series_per_metric == 0 {
            return Err(
                "invalid monitoring config: metrics.max_series_per_metric must be > 0".into(),
            );
        }
        let e = &config.errors;
        if e.max_issues == 0 || e.samples_per_issue == 0 || e.max_age_days == 0 {
            return Err("invalid monitoring config: errors.max_issues, errors.samples_per_issue and errors.max_age_days must be > 0".into());
        }
        if e.max_compressed_bytes == 0 || e.max_decompressed_bytes == 0 || e.max_items == 0 {
            return Err("invalid monitoring config: errors.max_compressed_bytes, errors.max_decompressed_bytes and errors.max_items must be > 0".into());
        }
        if let Some(dsn) = e.sentry_dsn.as_deref().filter(|d| !d.is_empty()) {
            dsn.parse::<crate::error_tracking::Dsn>()
                .map_err(|err| format!("invalid monitoring config: errors.sentry_dsn: {err}"))?;
        }
        Ok(config)
    }
}
