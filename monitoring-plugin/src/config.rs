//! The monitoring plugin's configuration (`[plugins.monitoring]` in the host
//! config), with defaults that work with zero setup.

use std::collections::BTreeMap;
use std::path::PathBuf;

use plugin_abi::metric_names::is_label_name;
use serde::Deserialize;

/// Access control of the monitoring endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Bearer token required on `/metrics` (off when empty, so a plain
    /// Prometheus can scrape).
    pub metrics_token: Option<String>,
    /// File holding `metrics_token` (e.g. a mounted secret); trailing
    /// newline ignored. Setting both is an error.
    pub metrics_token_file: Option<PathBuf>,
    /// Bearer token for admin operations and details.
    pub admin_token: Option<String>,
    /// File holding `admin_token`.
    pub admin_token_file: Option<PathBuf>,
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
    /// Most series all custom metrics (record_metric) may have together.
    pub max_series: usize,
    /// Most labels a recorded metric may have.
    pub max_labels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_series_per_metric: 1_000,
            max_series: 10_000,
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

/// Alerting settings (`[plugins.monitoring.alerting]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    /// Whether rules are evaluated at all (default true).
    pub enabled: bool,
    /// How often the plugin's own metrics are sampled into the embedded sample store,
    /// seconds (default 15; fractions allowed).
    pub sample_interval_secs: f64,
    /// How long samples are kept, seconds (default 3600).
    pub retention_secs: u64,
    /// Interval of rule groups that set none, seconds (default 60).
    pub evaluation_interval_secs: f64,
    /// Directory of extra rule files (`*.yml`, `*.yaml`), watched for changes.
    pub rules_dir: Option<PathBuf>,
    /// Whether the built-in rules (deploy/prometheus/rules/homeconsole.rules.yml)
    /// are loaded (default true).
    pub default_rules: bool,
    /// Alertmanager base URL (e.g. `http://127.0.0.1:9093`); off when unset.
    pub alertmanager_url: Option<String>,
    /// Webhook URLs receiving Alertmanager's webhook payload (version "4").
    pub webhook_urls: Vec<String>,
    /// Firing alerts are re-sent to Alertmanager this often, seconds (default 60).
    pub resend_interval_secs: f64,
    /// Base URL of this host, used in `generatorURL` and `externalURL`.
    pub external_url: String,
    /// Notification retries after the first attempt (default 5).
    pub notify_max_retries: u32,
    /// Per-request timeout of notifications, seconds (default 5).
    pub notify_timeout_secs: f64,
    /// Entries kept in the fired/resolved alert history (default 1000).
    pub history_limit: usize,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            enabled: true,
            sample_interval_secs: 15.0,
            retention_secs: 3_600,
            evaluation_interval_secs: 60.0,
            rules_dir: None,
            default_rules: true,
            alertmanager_url: None,
            webhook_urls: Vec::new(),
            resend_interval_secs: 60.0,
            external_url: "http://localhost:8000".to_owned(),
            notify_max_retries: 5,
            notify_timeout_secs: 5.0,
            history_limit: 1_000,
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
    /// File holding `sentry_dsn`.
    pub sentry_dsn_file: Option<PathBuf>,
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
            sentry_dsn_file: None,
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

impl AlertingConfig {
    fn check(&self) -> Result<(), String> {
        let positive = [
            ("sample_interval_secs", self.sample_interval_secs),
            ("evaluation_interval_secs", self.evaluation_interval_secs),
            ("resend_interval_secs", self.resend_interval_secs),
            ("notify_timeout_secs", self.notify_timeout_secs),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return Err(format!(
                    "invalid monitoring config: alerting.{name} must be in (0, 86400]"
                ));
            }
        }
        if self.retention_secs == 0 {
            return Err("invalid monitoring config: alerting.retention_secs must be > 0".into());
        }
        if self.history_limit == 0 {
            return Err("invalid monitoring config: alerting.history_limit must be > 0".into());
        }
        let urls = self.alertmanager_url.iter().chain(&self.webhook_urls);
        for url in urls.chain(std::iter::once(&self.external_url)) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "invalid monitoring config: alerting URL {url:?} must start with http:// or https://"
                ));
            }
        }
        Ok(())
    }
}

/// HTTP basic authentication of remote_write.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Option<String>,
    /// File holding `password`.
    pub password_file: Option<PathBuf>,
}

/// Prometheus remote_write of the plugin's own samples
/// (`[plugins.monitoring.remote_write]`): the push path for a host that
/// Prometheus cannot reach (behind NAT).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Receiver URL, e.g. `http://prometheus:9090/api/v1/write`; off when unset.
    pub url: Option<String>,
    /// How often every series is sampled and pushed, seconds (default 15).
    pub interval_secs: f64,
    /// Per-request timeout, seconds (default 10).
    pub timeout_secs: f64,
    /// Batches waiting at most (default 64); the oldest is dropped (and its
    /// samples counted `dropped`) when a new one does not fit.
    pub max_queue: usize,
    /// Retries of one batch after a 5xx, 429 or transport error (default 5).
    pub max_retries: u32,
    /// First retry delay, ms (default 500), doubled per retry.
    pub initial_backoff_ms: u64,
    /// Longest retry delay, ms (default 30000), unless `Retry-After` says more.
    pub max_backoff_ms: u64,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token (exclusive with `basic_auth`).
    pub bearer_token: Option<String>,
    /// File holding `bearer_token`.
    pub bearer_token_file: Option<PathBuf>,
    /// Extra request headers (e.g. a tenant id).
    pub headers: BTreeMap<String, String>,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            url: None,
            interval_secs: 15.0,
            timeout_secs: 10.0,
            max_queue: 64,
            max_retries: 5,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            headers: BTreeMap::new(),
        }
    }
}

impl RemoteWriteConfig {
    fn check(&self) -> Result<(), String> {
        let bad = |m: &str| Err(format!("invalid monitoring config: remote_write.{m}"));
        if let Some(url) = &self.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad("url must start with http:// or https://");
            }
        }
        for (name, v) in [
            ("interval_secs", self.interval_secs),
            ("timeout_secs", self.timeout_secs),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return bad(&format!("{name} must be in (0, 86400]"));
            }
        }
        if self.max_queue == 0 || self.initial_backoff_ms == 0 {
            return bad("max_queue and initial_backoff_ms must be > 0");
        }
        if self.basic_auth.is_some() && self.bearer_token.is_some() {
            return bad("basic_auth and bearer_token exclude each other");
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
    /// Error tracking.
    pub errors: ErrorsConfig,
    /// Alert rules and notifications.
    pub alerting: AlertingConfig,
    /// Tracing.
    pub tracing: TracingConfig,
    /// Profiling, slow calls and stalls.
    pub profiling: ProfilingConfig,
    /// Prometheus remote_write of the plugin's samples.
    pub remote_write: RemoteWriteConfig,
    /// TLS of every outbound connection (Sentry, OTLP, Alertmanager,
    /// webhooks, remote_write): extra CA file, client certificate.
    pub tls: crate::outbound::TlsSettings,
    /// Labels naming this host among others (e.g. `instance`, `site`):
    /// added to alerts sent to Alertmanager and webhooks (an alert's own
    /// label wins) and to Sentry events (`server_name` from `instance`,
    /// environment from `environment`, the rest as tags).
    pub external_labels: BTreeMap<String, String>,
    /// Cost limits of PromQL queries and rule evaluations.
    pub query: crate::alerting::promql::QueryLimits,
}

impl MonitoringConfig {
    /// Parses and checks the JSON config given by the host; `*_file`
    /// settings are read into the secret they name.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let mut config: MonitoringConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid monitoring config: {e}"))?;
        config.read_secret_files()?;
        if config.health.interval_secs == 0 {
            return Err("invalid monitoring config: health.interval_secs must be > 0".into());
        }
        if !(config.health.timeout_secs > 0.0 && config.health.timeout_secs <= 300.0) {
            return Err(
                "invalid monitoring config: health.timeout_secs must be in (0, 300]".into(),
            );
        }
        if config.metrics.max_series == 0 {
            return Err("invalid monitoring config: metrics.max_series must be > 0".into());
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
        config.alerting.check()?;
        config.remote_write.check()?;
        for name in config.external_labels.keys() {
            if !is_label_name(name) || name.starts_with("__") {
                return Err(format!(
                    "invalid monitoring config: external_labels: {name:?} is not a valid label name"
                ));
            }
        }
        config.tracing.validate()?;
        config.query.check()?;
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

/// Reads `file` into `value` (trailing newlines dropped); both set is an error.
fn secret_from_file(
    name: &str,
    value: &mut Option<String>,
    file: &Option<PathBuf>,
) -> Result<(), String> {
    let Some(path) = file else {
        return Ok(());
    };
    if value.is_some() {
        return Err(format!(
            "invalid monitoring config: {name} and {name}_file are both set"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "invalid monitoring config: {name}_file {}: {e}",
            path.display()
        )
    })?;
    *value = Some(text.trim_end_matches(['\r', '\n']).to_owned());
    Ok(())
}

impl MonitoringConfig {
    /// Resolves every `*_file` secret setting.
    fn read_secret_files(&mut self) -> Result<(), String> {
        let a = &mut self.access;
        secret_from_file(
            "access.metrics_token",
            &mut a.metrics_token,
            &a.metrics_token_file,
        )?;
        secret_from_file(
            "access.admin_token",
            &mut a.admin_token,
            &a.admin_token_file,
        )?;
        let e = &mut self.errors;
        secret_from_file("errors.sentry_dsn", &mut e.sentry_dsn, &e.sentry_dsn_file)?;
        let r = &mut self.remote_write;
        secret_from_file(
            "remote_write.bearer_token",
            &mut r.bearer_token,
            &r.bearer_token_file,
        )?;
        if let Some(b) = &mut r.basic_auth {
            secret_from_file(
                "remote_write.basic_auth.password",
                &mut b.password,
                &b.password_file,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").unwrap();
        let dsn = dir.path().join("dsn");
        std::fs::write(&dsn, "https://k@sentry.example/4\n").unwrap();
        let c = MonitoringConfig::from_json(
            &serde_json::json!({
                "access": {"admin_token_file": token, "metrics_token_file": token},
                "errors": {"sentry_dsn_file": dsn},
            })
            .to_string(),
        )
        .unwrap();
        assert_eq!(c.access.admin_token.as_deref(), Some("t0ken"));
        assert_eq!(c.access.metrics_token.as_deref(), Some("t0ken"));
        assert_eq!(
            c.errors.sentry_dsn.as_deref(),
            Some("https://k@sentry.example/4")
        );
        let both = serde_json::json!({"access": {"admin_token": "x", "admin_token_file": token}});
        let e = MonitoringConfig::from_json(&both.to_string()).unwrap_err();
        assert!(e.contains("both set"), "{e}");
        let missing = serde_json::json!({"access": {"admin_token_file": dir.path().join("nope")}});
        let e = MonitoringConfig::from_json(&missing.to_string()).unwrap_err();
        assert!(e.contains("admin_token_file") && e.contains("nope"), "{e}");
        let bad = serde_json::json!({"external_labels": {"bad-name": "x"}});
        assert!(MonitoringConfig::from_json(&bad.to_string()).is_err());
    }

    #[test]
    fn alerting_defaults_work_with_zero_setup() {
        let c = MonitoringConfig::from_json("{}").unwrap();
        let a = &c.alerting;
        assert!(a.enabled && a.default_rules);
        assert_eq!(a.sample_interval_secs, 15.0);
        assert_eq!(a.retention_secs, 3_600);
        assert_eq!(a.evaluation_interval_secs, 60.0);
        assert!(a.rules_dir.is_none() && a.alertmanager_url.is_none());
        assert!(a.webhook_urls.is_empty());
        assert_eq!(a.history_limit, 1_000);
    }

    #[test]
    fn external_label_names_are_checked() {
        let ok =
            MonitoringConfig::from_json(r#"{"external_labels": {"site": "home", "_x1": "y"}}"#)
                .unwrap();
        assert_eq!(ok.external_labels.len(), 2);
        for bad in ["1site", "si-te", "job:x", "__site", ""] {
            let config = serde_json::json!({"external_labels": {bad: "v"}}).to_string();
            let e = MonitoringConfig::from_json(&config).unwrap_err();
            assert!(
                e.contains("external_labels") && e.contains("is not a valid label name"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn alerting_section_is_checked() {
        let ok = MonitoringConfig::from_json(
            r#"{"alerting": {"sample_interval_secs": 0.5, "rules_dir": "/tmp/r",
                "alertmanager_url": "http://127.0.0.1:9093", "webhook_urls": ["https://x/y"]}}"#,
        )
        .unwrap();
        assert_eq!(ok.alerting.sample_interval_secs, 0.5);
        for bad in [
            r#"{"alerting": {"sample_intervall_secs": 1}}"#,
            r#"{"alerting": {"sample_interval_secs": 0}}"#,
            r#"{"alerting": {"retention_secs": 0}}"#,
            r#"{"alerting": {"webhook_urls": ["ftp://x"]}}"#,
            r#"{"alerting": {"alertmanager_url": "localhost:9093"}}"#,
            r#"{"alerting": {"history_limit": 0}}"#,
        ] {
            let e = MonitoringConfig::from_json(bad).unwrap_err();
            assert!(
                e.contains("alerting") || e.contains("unknown field"),
                "{bad}: {e}"
            );
        }
    }
}
