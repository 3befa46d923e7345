//! Always-on cost of the monitoring path per service call, plugin side: a
//! batch of `ServiceCall` observations through the collector (metrics) and
//! the profiling capability's slow-call tracker. Criterion reports the
//! throughput per observation (elements = observations).
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;

use abi_stable::std_types::{ROption, RString};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use monitoring_plugin::metrics::collector::{BuildInfo, MetricsCollector};
use monitoring_plugin::profiling::capability::SlowCallTracker;
use plugin_abi::{CallStatus, Observation, ObservationKind};

const BATCH: usize = 256;
const SERVICES: usize = 20;

/// A batch like the host sends: 20 services, ~1 ms calls, every
/// `slow_every`-th one slower than the 500 ms threshold (0 = none).
fn batch(slow_every: usize) -> Vec<Observation> {
    (0..BATCH)
        .map(|i| {
            let mut o = Observation::empty(ObservationKind::ServiceCall);
            o.status = plugin_abi::CallStatus_NE::new(CallStatus::Ok);
            o.name = RString::from(format!("demo.service{}", i % SERVICES));
            o.caller = RString::from("http");
            o.duration_ns = if slow_every > 0 && i % slow_every == 0 {
                750_000_000
            } else {
                1_000_000 + i as u64 * 1_000
            };
            o.at_unix_ns = 1_700_000_000_000_000_000;
            o.trace_context = ROption::RSome(
                plugin_abi::TraceContext::parse(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .unwrap(),
            );
            o
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let build = BuildInfo {
        host_version: "bench".into(),
        abi_version: "bench".into(),
        plugin_version: "bench".into(),
    };
    let collector = MetricsCollector::new(1_000, 16, &build).expect("collector");
    let tracker = SlowCallTracker::new(500, 100);
    let fast = batch(0);
    let some_slow = batch(100);

    let mut g = c.benchmark_group("observe_service_calls");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("collector_only", |b| {
        b.iter(|| collector.observe(black_box(&fast)))
    });
    g.bench_function("slow_call_tracker_only", |b| {
        b.iter(|| black_box(tracker.observe(black_box(&fast))))
    });
    g.bench_function("collector_and_tracker", |b| {
        b.iter(|| {
            collector.observe(black_box(&fast));
            black_box(tracker.observe(black_box(&fast)))
        })
    });
    g.bench_function("collector_and_tracker_1pct_slow", |b| {
        b.iter(|| {
            collector.observe(black_box(&some_slow));
            black_box(tracker.observe(black_box(&some_slow)))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
