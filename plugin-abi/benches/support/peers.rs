//! The peers the telemetry benches measure against, set up one way for
//! every bench that includes this file (`#[path]`): the `prometheus`
//! crate's counter and histogram (measured beside a handle in one group), an `opentelemetry_sdk` tracer (AlwaysOn,
//! a span processor that does nothing, no exporter), and the ratios of
//! criterion's medians printed after a run.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use opentelemetry::trace::TracerProvider as _;
use plugin_abi::telemetry::{Counter, InstrumentOpts, Telemetry};
use test_support::bench::Ratio;

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

/// The criterion settings every telemetry bench uses.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// Adds the OpenTelemetry span peers to `g`: a span started and ended
/// (`opentelemetry_sdk`), and one with a bool and a text attribute
/// (`opentelemetry_sdk_2_attributes`), the shapes the `api` variants
/// measure.
pub fn otel_span_peers(
    g: &mut BenchmarkGroup<'_, WallTime>,
    tracer: &opentelemetry_sdk::trace::SdkTracer,
) {
    use opentelemetry::trace::{Span as _, Tracer as _};
    g.bench_function("opentelemetry_sdk", |b| {
        b.iter(|| tracer.start(black_box("span-name")).end())
    });
    g.bench_function("opentelemetry_sdk_2_attributes", |b| {
        b.iter(|| {
            let mut s = tracer.start(black_box("span-name"));
            s.set_attribute(opentelemetry::KeyValue::new("key1", false));
            s.set_attribute(opentelemetry::KeyValue::new("key2", "hello"));
            s.end();
        })
    });
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

/// Prints `ours / peer` for each `(group, ours, peer, goal)` that ran.
pub fn print_ratios(title: &str, rows: &[(&str, &str, &str, &str)]) {
    let rows: Vec<Ratio<'_>> = rows
        .iter()
        .map(|&(group, ours, peer, goal)| Ratio {
            group,
            ours,
            peer,
            goal,
        })
        .collect();
    test_support::bench::print_ratios(title, &rows);
}
