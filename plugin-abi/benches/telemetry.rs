//! The telemetry API's hot paths beside their peers, in one run:
//! counter `inc` and histogram `observe` through a handle into the in-test
//! atomic provider vs the `prometheus` crate; span start+end through the
//! API vs `opentelemetry_sdk` (AlwaysOn, a no-op span processor, no
//! exporter); `traceparent` parse and format; and the ways a handle could
//! read its cached instrument (the boxcar list it uses, arc-swap,
//! parking_lot and std `RwLock`). After criterion's own output it prints
//! the ratios of the medians (run: `cargo bench -p plugin-abi --bench
//! telemetry`).

#[path = "support/peers.rs"]
mod peers;
#[path = "../tests/support/provider.rs"]
mod provider;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, Criterion};
use plugin_abi::abi_stable::std_types::RArc;
use plugin_abi::telemetry::{InstrumentOpts, SpanKind, Telemetry, TelemetrySlot};
use plugin_abi::trace_context::TRACEPARENT_LEN;
use plugin_abi::TraceContext;
use provider::TestProvider;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A telemetry API with the counting in-test provider installed.
fn installed() -> (Telemetry, TestProvider) {
    let slot = RArc::new(TelemetrySlot::new());
    let provider = TestProvider::counting();
    slot.install(provider.boxed());
    (Telemetry::new(slot), provider)
}

fn counter(c: &mut Criterion) {
    let (telemetry, _provider) = installed();
    let api = telemetry
        .counter(InstrumentOpts::new("bench_total", "b").label("k", "v"))
        .unwrap();
    let idle = Telemetry::new(RArc::new(TelemetrySlot::new()))
        .counter(InstrumentOpts::new("idle_total", "i"))
        .unwrap();
    let mut g = peers::counter_vs_prometheus(c, "counter_inc", &api);
    g.bench_function("api_no_provider", |b| b.iter(|| black_box(&idle).inc()));
    g.finish();
}

fn histogram(c: &mut Criterion) {
    let (telemetry, _provider) = installed();
    peers::histogram_vs_prometheus(c, "histogram_observe", &telemetry);
}

fn span(c: &mut Criterion) {
    let (telemetry, _provider) = installed();
    let (_otel, tracer) = peers::otel_tracer();
    let mut g = c.benchmark_group("span_start_end");
    g.bench_function("api", |b| {
        b.iter(|| drop(telemetry.span(black_box("span-name"), SpanKind::Internal, None)))
    });
    g.bench_function("api_2_attributes", |b| {
        b.iter(|| {
            let mut s = telemetry.span(black_box("span-name"), SpanKind::Internal, None);
            s.set_attribute("key1", false);
            s.set_attribute("key2", "hello");
        })
    });
    peers::otel_span_peers(&mut g, &tracer);
    g.finish();
}

fn traceparent(c: &mut Criterion) {
    let tc = TraceContext::parse(VALID).unwrap();
    let mut g = c.benchmark_group("traceparent");
    g.bench_function("parse", |b| {
        b.iter(|| TraceContext::parse(black_box(VALID)))
    });
    g.bench_function("format", |b| {
        b.iter(|| {
            let mut buf = [0u8; TRACEPARENT_LEN];
            black_box(black_box(&tc).write_header(&mut buf).len())
        })
    });
    g.finish();
}

/// How a handle could read its cached binding: boxcar (an index into an
/// append-only list, the choice made in `binding.rs`) against arc-swap and
/// two read locks.
fn cached_read(c: &mut Criterion) {
    let list = boxcar::Vec::new();
    let index = std::sync::atomic::AtomicUsize::new(list.push((1u64, 2u64)));
    let swap = arc_swap::ArcSwap::from_pointee((1u64, 2u64));
    let pl = parking_lot::RwLock::new(Arc::new((1u64, 2u64)));
    let std_lock = std::sync::RwLock::new(Arc::new((1u64, 2u64)));
    let mut g = c.benchmark_group("cached_read");
    g.bench_function("boxcar", |b| {
        b.iter(|| {
            let i = black_box(&index).load(std::sync::atomic::Ordering::Acquire);
            list.get(i).map_or(0, |v| v.0)
        })
    });
    g.bench_function("arc_swap", |b| b.iter(|| black_box(&swap).load().0));
    g.bench_function("parking_lot_rwlock", |b| b.iter(|| black_box(&pl).read().0));
    g.bench_function("std_rwlock", |b| {
        b.iter(|| black_box(&std_lock).read().map(|v| v.0).unwrap_or(0))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = peers::config();
    targets = counter, histogram, span, traceparent, cached_read
}

fn print_ratios() {
    peers::print_ratios(
        "ratios of medians",
        &[
            ("counter_inc", "api", "prometheus", "<= 2.0"),
            ("histogram_observe", "api", "prometheus", "<= 2.0"),
            ("span_start_end", "api", "opentelemetry_sdk", "<= 1.0"),
            (
                "span_start_end",
                "api_2_attributes",
                "opentelemetry_sdk_2_attributes",
                "<= 1.0",
            ),
            ("cached_read", "boxcar", "arc_swap", "-"),
            ("cached_read", "boxcar", "parking_lot_rwlock", "-"),
        ],
    );
    for (group, bench) in [("traceparent", "parse"), ("traceparent", "format")] {
        if let Some(ns) = test_support::bench::median_ns(group, bench) {
            println!("  {group} {bench}: {ns:.1} ns");
        }
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios();
}
