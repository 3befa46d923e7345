//! A small, complete example for third-party plugin authors: how to report
//! to the HomeConsole monitoring plugin from your own plugin.
//!
//! It offers one service, `hello.greet {"name": "…"}`, and shows four things:
//!
//! 1. **Custom metrics** — every greeting increments `hello_greetings_total`
//!    and observes `hello_greeting_duration_seconds` through
//!    `monitoring.record_metric` (the monitoring plugin adds a `plugin`
//!    label with our name).
//! 2. **A health check** — at start we register `hello.health` as a custom
//!    check; the monitoring plugin calls it periodically and shows the answer
//!    in `/api/v1/monitoring/health` under `custom.hello`.
//! 3. **Spans** — each greeting opens a span with `monitoring.start_span`
//!    (a child of the incoming call's trace) and ends it with
//!    `monitoring.end_span`, so it shows in `/api/v1/monitoring/traces`.
//! 4. **Error reports** — greeting the name `"error"` fails on purpose and
//!    reports it with `monitoring.capture_error`, tags and all.
//!
//! Everything here only needs `plugin-abi`. Calls to the monitoring plugin
//! are ordinary service calls, so the plugin keeps working (without
//! reporting) when monitoring is not loaded: always ignore their errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use plugin_abi::{export_plugin, Host, PluginError, PluginImpl, ServiceCall, TraceContext};
use serde_json::{json, Value};

/// The example plugin. Plugins are called from several host threads at
/// once, so state must be thread-safe; this one has none besides the host.
pub struct HelloObservability {
    host: Host,
    check_registered: AtomicBool,
}

impl HelloObservability {
    /// Records a metric; monitoring may be absent, so errors are ignored.
    fn record(&self, name: &str, kind: &str, value: f64, labels: Value, help: &str) {
        let input =
            json!({"name": name, "kind": kind, "value": value, "labels": labels, "help": help});
        let _ = self
            .host
            .call_service("monitoring.record_metric", &input.to_string(), None);
    }

    /// Opens a span as a child of the caller's trace; returns its id.
    fn start_span(&self, operation: &str, trace: Option<TraceContext>) -> Option<String> {
        let mut input = json!({"operation": operation, "attributes": {"example": true}});
        if let Some(parent) = trace {
            input["parent"] = json!(parent.traceparent().as_str());
        }
        let out = self
            .host
            .call_service("monitoring.start_span", &input.to_string(), trace)
            .ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v["span_id"].as_str().map(str::to_owned)
    }

    fn end_span(&self, span_id: Option<String>, error: Option<&str>) {
        if let Some(span_id) = span_id {
            let input = match error {
                Some(message) => json!({"span_id": span_id, "status": "error", "message": message}),
                None => json!({"span_id": span_id, "status": "ok"}),
            };
            let _ = self
                .host
                .call_service("monitoring.end_span", &input.to_string(), None);
        }
    }

    /// Asks the monitoring plugin to check us (it persists the
    /// registration, so this is needed once per installation).
    fn register_health_check(&self) {
        let check = json!({"name": "hello", "service": "hello.health", "critical": false});
        if self
            .host
            .call_service("monitoring.register_health_check", &check.to_string(), None)
            .is_ok()
        {
            self.check_registered.store(true, Ordering::Relaxed);
        }
    }

    fn greet(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        let started = Instant::now();
        let input: Value = serde_json::from_str(call.input)
            .map_err(|e| PluginError::bad_request(format!("input is not JSON: {e}")))?;
        let name = input["name"].as_str().unwrap_or("world").to_owned();
        let span = self.start_span("hello.greet", call.trace_context);

        if name == "error" {
            // Report the failure with context, then fail the call.
            let report = json!({
                "message": "cannot greet a reserved name",
                "type": "ReservedName",
                "tags": {"name": name},
                "extra": {"caller": call.caller},
            });
            let _ = self.host.call_service(
                "monitoring.capture_error",
                &report.to_string(),
                call.trace_context,
            );
            self.end_span(span, Some("reserved name"));
            self.record(
                "hello_greetings_total",
                "counter",
                1.0,
                json!({"outcome": "refused"}),
                "Greetings by outcome.",
            );
            return Err(PluginError::bad_request("cannot greet a reserved name"));
        }

        let greeting = format!("hello, {name}!");
        self.end_span(span, None);
        self.record(
            "hello_greetings_total",
            "counter",
            1.0,
            json!({"outcome": "ok"}),
            "Greetings by outcome.",
        );
        self.record(
            "hello_greeting_duration_seconds",
            "histogram",
            started.elapsed().as_secs_f64(),
            json!({}),
            "Time to greet, seconds.",
        );
        Ok(json!({"greeting": greeting}).to_string())
    }
}

impl PluginImpl for HelloObservability {
    const NAME: &'static str = "hello-observability";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "example: metrics, health check, spans, error reports";

    fn new(host: Host, _config: &str) -> Result<Self, PluginError> {
        Ok(HelloObservability {
            host,
            check_registered: AtomicBool::new(false),
        })
    }

    fn start(&self) -> Result<(), PluginError> {
        self.host
            .register_service("hello.greet", "greet someone: {\"name\": …}")?;
        self.host
            .register_service("hello.health", "health of this plugin (a custom check)")?;
        self.register_health_check();
        Ok(())
    }

    /// Retries the health-check registration until the monitoring plugin is
    /// there (plugins load in name order, so it may come after us).
    fn tick(&self, _now_unix_ms: u64) -> Result<(), PluginError> {
        if !self.check_registered.load(Ordering::Relaxed) {
            self.register_health_check();
        }
        Ok(())
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        match call.name {
            "hello.greet" => self.greet(call),
            // A health check answers {"status": "healthy"|"degraded"|"unhealthy", "message": …}.
            "hello.health" => {
                Ok(json!({"status": "healthy", "message": "ready to greet"}).to_string())
            }
            other => Err(PluginError::not_found(format!("no service {other}"))),
        }
    }
}

export_plugin!(HelloObservability);
