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

/// Profiling settings (`[plugins.monitoring.profiling]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfilingConfig {
    /// A service call slower than this is logged and kept as a slow call, ms.
    pub slow_call_ms: u64,
    /// How many recent slow calls are kept for `/api/v1/monitoring/slow`.
    pub slow_calls_kept: usize,
    /// Longest CPU profile a request may ask for, seconds (at most 60).
    pub max_profile_seconds: u64,
    /// Sampling frequency of a profile when the request names none, Hz.
    pub default_frequency_hz: u32,
}

impl Default for ProfilingConfig {
    fn default() -> Self {
        ProfilingConfig {
            slow_call_ms: 500,
            slow_calls_kept: 100,
            max_profile_seconds: 60,
            default_frequency_hz: 99,
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
    /// CPU profiles, slow calls and stalls.
    pub profiling: ProfilingConfig,
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
        let p = &config.profiling;
        if !(1..=10_000).contains(&p.slow_calls_kept) {
            return Err(
                "invalid monitoring config: profiling.slow_calls_kept must be in 1..=10000".into(),
            );
        }
        if !crate::profiling::SECONDS.contains(&p.max_profile_seconds) {
            return Err(
                "invalid monitoring config: profiling.max_profile_seconds must be in 1..=60".into(),
            );
        }
        if !crate::profiling::FREQUENCY_HZ.contains(&p.default_frequency_hz) {
            return Err(
                "invalid monitoring config: profiling.default_frequency_hz must be in 1..=1000"
                    .into(),
            );
        }
        Ok(config)
    }
}
