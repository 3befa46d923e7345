//! The peers the telemetry benches measure against, set up one way for
//! every bench that includes this file (`#[path]`): the `prometheus`
//! crate's counter and histogram (measured beside a handle in one group), an `opentelemetry_sdk` tracer (AlwaysOn,
//! a span processor that does nothing, no exporter), and the ratios of
//! criterion's medians printed after a run.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use opentelemetry::trace::TracerProvider as _;
use plugin_abi::telemetry::{Counter, InstrumentOpts, Telemetry};

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

/// Group `group` with `api.inc()` (as `api`) and
/// `prometheus::IntCounter::inc` (as `prometheus`); left open so a bench
/// can add its own variants before `finish`.
pub fn counter_vs_prometheus<'a>(
    c: &'a mut Criterion,
    group: &str,
    api: &'a Counter,
) -> BenchmarkGroup<'a, WallTime> {
    let prom = prometheus::IntCounter::new("bench_total", "b").unwrap();
    let mut g = c.benchmark_group(group);
    g.bench_function("api", |b| b.iter(|| black_box(api).inc()));
    g.bench_function("prometheus", |b| b.iter(|| black_box(&prom).inc()));
    g
}

/// Group `group`: a histogram handle of `telemetry` against
/// `prometheus::Histogram`, both with the prometheus default buckets,
/// observing the same value.
pub fn histogram_vs_prometheus(c: &mut Criterion, group: &str, telemetry: &Telemetry) {
    let buckets = prometheus::DEFAULT_BUCKETS;
    let api = telemetry
        .histogram(InstrumentOpts::new("bench_seconds", "b"), buckets)
        .unwrap();
    let prom = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("bench_seconds", "b").buckets(buckets.to_vec()),
    )
    .unwrap();
    let mut g = c.benchmark_group(group);
    g.bench_function("api", |b| {
        b.iter(|| black_box(&api).observe(black_box(0.3)))
    });
    g.bench_function("prometheus", |b| {
        b.iter(|| black_box(&prom).observe(black_box(0.3)))
    });
    g.finish();
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
