//! A small, complete example for plugin authors: a plugin that instruments
//! itself with the telemetry API of `plugin-abi` (docs/instrument-your-plugin.md
//! walks through this file).
//!
//! It offers one service, `hello.greet {"name": "…"}`, and shows:
//!
//! 1. **Metric handles**, created once in `new`: `hello_greetings_total`
//!    (a counter per `outcome`) and `hello_greeting_duration_seconds` (a
//!    histogram with buckets chosen for a fast operation). Each use is one
//!    call into the monitoring plugin: no JSON, no allocation, no thread hop.
//! 2. **A span per greeting**, a child of the incoming call's trace, with
//!    attributes and a status, ended when the guard drops.
//! 3. **Error capture with tags**: greeting the name `"error"` fails on
//!    purpose and reports it.
//! 4. **A health check** registered through the telemetry API in `start`,
//!    shown in `/api/v1/monitoring/health` under `custom.hello`.
//!
//! Without the monitoring plugin every handle is a no-op, and when it is
//! replaced the handles rebind to the new one by themselves. The service API
//! (`monitoring.record_metric` and friends) is for callers that cannot hold
//! handles: see `example-plugins/demo-devices` and the guide.

use std::sync::Mutex;
use std::time::Instant;

use plugin_abi::telemetry::{
    Counter, HealthCheckGuard, Histogram, InstrumentOpts, SpanKind, SpanStatus, Tag, Telemetry,
};
use plugin_abi::{
    export_plugin, HealthReport, HealthStatus, Host, PluginError, PluginImpl, ServiceCall,
    TraceContext,
};
use serde_json::{json, Value};

/// Upper bounds of the greeting-duration buckets, seconds: a greeting takes
/// microseconds, so the provider's default (5 ms … 10 s) would put every
/// observation in the first bucket.
const DURATION_BUCKETS: [f64; 6] = [1e-6, 5e-6, 25e-6, 100e-6, 500e-6, 2.5e-3];

/// The example plugin. Host threads call it concurrently; handles are
/// `Send + Sync` and need no lock.
pub struct HelloObservability {
    host: Host,
    telemetry: Telemetry,
    greeted: Counter,
    refused: Counter,
    duration: Histogram,
    /// Keeps the health check registered while the plugin runs.
    health: Mutex<Option<HealthCheckGuard>>,
}

impl HelloObservability {
    fn greet(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        let started = Instant::now();
        let input: Value = serde_json::from_str(call.input)
            .map_err(|e| PluginError::bad_request(format!("input is not JSON: {e}")))?;
        let name = input["name"].as_str().unwrap_or("world");
        let parent: Option<TraceContext> = call.trace_context;
        let mut span = self
            .telemetry
            .span("hello.greet", SpanKind::Internal, parent);
        span.set_attribute("hello.name", name);
        span.set_attribute("hello.caller", call.caller);

        if name == "error" {
            // Report the failure with tags, linked to the span's trace.
            let tags = [Tag::new("name", name), Tag::new("reason", "reserved")];
            self.telemetry
                .capture_error("cannot greet a reserved name", &tags, span.context());
            span.set_status(SpanStatus::Error, "reserved name");
            self.refused.inc();
            return Err(PluginError::bad_request("cannot greet a reserved name"));
        }

        let greeting = format!("hello, {name}!");
        span.set_attribute("hello.length", greeting.len() as i64);
        span.set_status(SpanStatus::Ok, "");
        self.greeted.inc();
        self.duration.observe(started.elapsed().as_secs_f64());
        Ok(json!({"greeting": greeting}).to_string())
    }
}

/// Creates the handles once; they are no-ops until a provider is installed.
fn instruments(telemetry: &Telemetry) -> Result<(Counter, Counter, Histogram), PluginError> {
    let greetings = |outcome| {
        InstrumentOpts::new("hello_greetings_total", "Greetings by outcome.")
            .label("outcome", outcome)
    };
    let duration =
        InstrumentOpts::new("hello_greeting_duration_seconds", "Time to greet.").unit("seconds");
    let bad = |e: plugin_abi::telemetry::TelemetryError| PluginError::bad_request(e.to_string());
    Ok((
        telemetry.counter(greetings("ok")).map_err(bad)?,
        telemetry.counter(greetings("refused")).map_err(bad)?,
        telemetry
            .histogram(duration, &DURATION_BUCKETS)
            .map_err(bad)?,
    ))
}

impl PluginImpl for HelloObservability {
    const NAME: &'static str = "hello-observability";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "example: metric handles, spans, error capture, health check";

    fn new(host: Host, _config: &str) -> Result<Self, PluginError> {
        let telemetry = host.telemetry();
        let (greeted, refused, duration) = instruments(&telemetry)?;
        Ok(HelloObservability {
            host,
            telemetry,
            greeted,
            refused,
            duration,
            health: Mutex::new(None),
        })
    }

    fn start(&self) -> Result<(), PluginError> {
        self.host
            .register_service("hello.greet", "greet someone: {\"name\": …}")?;
        // Checks live in the host, not in the monitoring plugin: registered
        // once, they survive monitoring being loaded later or replaced.
        let guard = self
            .telemetry
            .register_health_check("hello", || HealthReport {
                status: HealthStatus::Healthy,
                message: "ready to greet".into(),
            });
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
        Ok(())
    }

    fn stop(&self) -> Result<(), PluginError> {
        // Dropping the guard unregisters the check.
        self.health.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        match call.name {
            "hello.greet" => self.greet(call),
            other => Err(PluginError::not_found(format!("no service {other}"))),
        }
    }
}

export_plugin!(HelloObservability);
