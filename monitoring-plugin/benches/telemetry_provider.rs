//! The telemetry API through the monitoring plugin's real provider, beside
//! the peers, in one run: a `plugin_abi::telemetry` handle over a
//! `TelemetrySlot` holding `Provider` (metric store; spans through the
//! tracing capability's hand-off into a trace store, drained between
//! timed chunks as the tick drains it, the drain measured on its own;
//! issue store) against
//! `prometheus::IntCounter::inc`, `prometheus::Histogram::observe` and an
//! `opentelemetry_sdk` span (AlwaysOn, a span processor that does
//! nothing). Prints the ratios of the medians after criterion's output
//! (run: `cargo bench -p monitoring-plugin --bench telemetry_provider`).

#[path = "../../plugin-abi/benches/support/peers.rs"]
mod peers;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::RArc;
use criterion::{criterion_group, Criterion};
use monitoring_plugin::error_tracking::{IssueStore, IssueStoreConfig, MemoryKvStore};
use monitoring_plugin::metrics::MetricStore;
use monitoring_plugin::telemetry_provider::Provider;
use monitoring_plugin::tracing::{SpanHandoff, StoreConfig, TraceStore, HANDOFF_CAPACITY};
use plugin_abi::telemetry::{InstrumentOpts, SpanKind, Telemetry, TelemetrySlot};
use plugin_abi::Sampler;

/// Telemetry over a slot holding the real provider, and the hand-off its
/// spans go through to the trace store.
fn installed(sampler: Sampler) -> (Telemetry, Arc<SpanHandoff>) {
    let traces = Arc::new(SpanHandoff::new(
        Arc::new(TraceStore::new(StoreConfig::default())),
        HANDOFF_CAPACITY,
    ));
    let issues = Arc::new(
        IssueStore::open(Arc::new(MemoryKvStore::new()), IssueStoreConfig::default()).unwrap(),
    );
    let provider = Provider::new(
        Arc::new(MetricStore::new()),
        traces.clone(),
        Arc::new(move |event| {
            issues.record(event);
        }),
        sampler,
    );
    let slot = RArc::new(TelemetrySlot::new());
    slot.install(provider.boxed());
    (Telemetry::new(slot), traces)
}

fn counter(c: &mut Criterion) {
    let (telemetry, _) = installed(Sampler::always_on());
    let api = telemetry
        .counter(InstrumentOpts::new("bench_total", "b").label("k", "v"))
        .unwrap();
    peers::counter_vs_prometheus(c, "provider_counter_inc", &api).finish();
}

fn histogram(c: &mut Criterion) {
    let (telemetry, _) = installed(Sampler::always_on());
    peers::histogram_vs_prometheus(c, "provider_histogram_observe", &telemetry);
}

/// Times `f` run `iters` times, draining the hand-off between chunks
/// outside the timed part: the caller's cost with a queue that is never
/// full (the tick drains it in the plugin).
fn timed_with_drains(iters: u64, handoff: &SpanHandoff, mut f: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(1_024);
        let started = Instant::now();
        for _ in 0..chunk {
            f();
        }
        total += started.elapsed();
        handoff.drain();
        left -= chunk;
    }
    total
}

fn span(c: &mut Criterion) {
    let (telemetry, handoff) = installed(Sampler::always_on());
    let (unsampled, _) = installed(Sampler::always_off());
    let (_otel, tracer) = peers::otel_tracer();
    let mut g = c.benchmark_group("provider_span_start_end");
    g.bench_function("api", |b| {
        b.iter_custom(|iters| {
            timed_with_drains(iters, &handoff, || {
                drop(telemetry.span(black_box("span-name"), SpanKind::Internal, None))
            })
        })
    });
    g.bench_function("api_2_attributes", |b| {
        b.iter_custom(|iters| {
            timed_with_drains(iters, &handoff, || {
                let mut s = telemetry.span(black_box("span-name"), SpanKind::Internal, None);
                s.set_attribute("key1", false);
                s.set_attribute("key2", "hello");
            })
        })
    });
    // Where the store's cost went: the drain, per span (tick thread).
    g.bench_function("drain_per_span", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(1_024);
                for _ in 0..chunk {
                    let mut s = telemetry.span("span-name", SpanKind::Internal, None);
                    s.set_attribute("key1", false);
                    s.set_attribute("key2", "hello");
                }
                let started = Instant::now();
                handoff.drain();
                total += started.elapsed();
                left -= chunk;
            }
            total
        })
    });
    peers::otel_span_peers(&mut g, &tracer);
    g.bench_function("api_unsampled", |b| {
        b.iter(|| drop(unsampled.span(black_box("span-name"), SpanKind::Internal, None)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = peers::config();
    targets = counter, histogram, span
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    peers::print_ratios(
        "ratios of medians through the monitoring provider",
        &[
            ("provider_counter_inc", "api", "prometheus", "<= 2.0"),
            ("provider_histogram_observe", "api", "prometheus", "<= 2.0"),
            (
                "provider_span_start_end",
                "api",
                "opentelemetry_sdk",
                "<= 1.0",
            ),
            (
                "provider_span_start_end",
                "api_2_attributes",
                "opentelemetry_sdk_2_attributes",
                "<= 1.0",
            ),
            (
                "provider_span_start_end",
                "api_unsampled",
                "opentelemetry_sdk",
                "-",
            ),
            (
                "provider_span_start_end",
                "drain_per_span",
                "opentelemetry_sdk",
                "-",
            ),
        ],
    );
}
