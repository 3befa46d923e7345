//! The peers the telemetry benches measure against, set up one way for
//! every bench that includes this file (`#[path]`): the `prometheus`
//! crate's counter and histogram, an `opentelemetry_sdk` tracer (AlwaysOn,
//! a span processor that does nothing, no exporter), and the ratios of
//! criterion's medians printed after a run.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;

/// The OpenTelemetry peer's span processor: does nothing.
#[derive(Debug)]
struct NoopProcessor;

impl opentelemetry_sdk::trace::SpanProcessor for NoopProcessor {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, _: opentelemetry_sdk::trace::SpanData) {}
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// An `opentelemetry_sdk` tracer that samples every span and records it
/// nowhere; keep the provider alive while the tracer is used.
pub fn otel_tracer() -> (
    opentelemetry_sdk::trace::SdkTracerProvider,
    opentelemetry_sdk::trace::SdkTracer,
) {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_span_processor(NoopProcessor)
        .build();
    let tracer = provider.tracer("bench");
    (provider, tracer)
}

/// `prometheus::IntCounter` named like the bench's handle.
pub fn prom_counter(name: &str) -> prometheus::IntCounter {
    prometheus::IntCounter::new(name, "b").unwrap()
}

/// `prometheus::Histogram` with these buckets.
pub fn prom_histogram(name: &str, buckets: &[f64]) -> prometheus::Histogram {
    prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new(name, "b").buckets(buckets.to_vec()),
    )
    .unwrap()
}

/// Where criterion wrote its estimates (its own rule, minus `cargo metadata`).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// The median of one benchmark in nanoseconds, if it ran.
pub fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// Prints `ours / peer` for each `(group, ours, peer, goal)` that ran.
pub fn print_ratios(title: &str, rows: &[(&str, &str, &str, &str)]) {
    println!("\n{title} (goal in brackets):");
    for (group, ours, peer, goal) in rows {
        match (median_ns(group, ours), median_ns(group, peer)) {
            (Some(a), Some(p)) => println!(
                "  {group}: {ours} {a:.1} ns / {peer} {p:.1} ns = {:.2} [{goal}]",
                a / p
            ),
            _ => println!("  {group}: {ours} / {peer}: not measured in this run"),
        }
    }
}
