//! The plugin side of tracing, per observed service call: what the tracing
//! capability does with one observation from the host (read its span
//! context, a value, check the sampled flag, build the span, add it to the
//! bounded store), the sampled-out shortcut, and — for
//! the "including metrics" total — what the metrics collector does with the
//! same observation. All of it runs on the host's observer thread, not on
//! the caller's.
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;
use std::time::Duration;

use abi_stable::std_types::{ROption, RString};
use criterion::{criterion_group, criterion_main, Criterion};
use monitoring_plugin::metrics::collector::{BuildInfo, MetricsCollector};
use monitoring_plugin::tracing::capability::span_of;
use monitoring_plugin::tracing::context::{new_span_id, new_trace_id, parse_span_id, TraceContext};
use monitoring_plugin::tracing::store::{StoreConfig, TraceStore};
use plugin_abi::{CallStatus, Observation, ObservationKind};

fn observation(flags: u8) -> Observation {
    let mut o = Observation::empty(ObservationKind::ServiceCall);
    o.status = plugin_abi::CallStatus_NE::new(CallStatus::Ok);
    o.name = RString::from("demo.light.toggle");
    o.caller = RString::from("faulty");
    o.detail = RString::from("demo-devices");
    o.duration_ns = 25_000;
    o.at_unix_ns = 1_700_000_000_000_000_000;
    let ctx = TraceContext {
        trace_id: new_trace_id(),
        span_id: new_span_id(),
        flags,
    };
    o.trace_context = ROption::RSome(ctx);
    o.parent_span_id = parse_span_id("00f067aa0ba902b7").ok().into();
    o
}

/// What `TracingCapability::record` does for a service call (minus the
/// slow-call check, a comparison).
#[inline(always)]
fn record(store: &TraceStore, o: &Observation) -> bool {
    let Some(ctx) = o.trace_context.as_ref().into_option().copied() else {
        return false;
    };
    if !ctx.sampled() {
        return false;
    }
    let parent = o.parent_span_id.into_option();
    store.add(span_of(o, &ctx, parent))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("trace_plugin");
    // At steady state: full, every new trace evicts the oldest.
    let store = TraceStore::new(StoreConfig {
        max_traces: 1_000,
        max_bytes: 16 * 1024 * 1024,
        max_spans_per_trace: 1_000,
    });
    // A pool of observations of different traces, so the store evicts.
    let sampled: Vec<Observation> = (0..4_096).map(|_| observation(1)).collect();
    let mut i = 0;
    group.bench_function("record_service_call_span (sampled, store evicting)", |b| {
        b.iter(|| {
            i = (i + 1) % sampled.len();
            black_box(record(&store, &sampled[i]))
        })
    });
    let unsampled = observation(0);
    group.bench_function("record_service_call_span (sampled out)", |b| {
        b.iter(|| black_box(record(&store, black_box(&unsampled))))
    });
    let collector = MetricsCollector::new(
        1_000,
        16,
        &BuildInfo {
            host_version: "0".into(),
            abi_version: "0".into(),
            plugin_version: "0".into(),
        },
    )
    .unwrap();
    group.bench_function("metrics_observe_service_call (for comparison)", |b| {
        b.iter(|| collector.observe(std::slice::from_ref(black_box(&sampled[0]))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
