//! What tracing adds to the host's hot path, per service call: resolving the
//! parent (the explicit context a plugin passed, or the thread's current
//! context), a child span id, making it current around the callee (which
//! receives the span as a value), and a report that carries the span — compared
//! with the same timed report without a span. Sampled-out calls do exactly
//! the same work on the host (context still propagates), so the two traced
//! variants must cost the same; the saving of sampling is on the plugin side
//! (see `monitoring-plugin/benches/trace.rs`).
//!
//! Needs no plugin libraries: `cargo bench -p host-harness --bench trace`.
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use host_harness::observer::{ObserverHub, Report};
use host_harness::tracecontext::{self, Sampler, SpanContext, TRACEPARENT_LEN};
use plugin_abi::{CallStatus, ObservationKind};

/// The host side of one traced call, minus the call itself.
#[inline(always)]
fn traced_call(
    hub: &ObserverHub,
    sampler: &Sampler,
    name: &host_harness::observer::Name,
    caller: &host_harness::observer::Name,
) {
    let started = std::time::Instant::now();
    let parent = tracecontext::parent_of(None);
    let span = SpanContext::child_or_root(parent.as_ref(), sampler);
    {
        // What `serve` does on the callee's thread.
        let _current = tracecontext::enter(Some(span));
        black_box(span);
    }
    let mut r = Report::new(
        ObservationKind::ServiceCall,
        CallStatus::Ok,
        name.clone(),
        caller.clone(),
    )
    .with_span(Some(span), parent.as_ref());
    r.duration_ns = started.elapsed().as_nanos() as u64;
    hub.report(r);
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("trace_host");
    let name = host_harness::observer::intern("demo.light.toggle");
    let caller = host_harness::observer::intern("http");
    let hub = ObserverHub::new(1 << 20, Duration::from_millis(1));
    hub.add(1, "bench", Arc::new(|_| {}));

    group.bench_function("report_untraced (baseline)", |b| {
        b.iter(|| {
            let started = std::time::Instant::now();
            let mut r = Report::new(
                ObservationKind::ServiceCall,
                CallStatus::Ok,
                name.clone(),
                caller.clone(),
            );
            r.duration_ns = started.elapsed().as_nanos() as u64;
            hub.report(r);
        })
    });

    let parent = SpanContext::new_root(&Sampler::new(1.0));
    group.bench_function("report_traced_child_of_current (sampled)", |b| {
        let _current = tracecontext::enter(Some(parent));
        let sampler = Sampler::new(1.0);
        b.iter(|| traced_call(&hub, &sampler, &name, &caller))
    });

    let unsampled = SpanContext { flags: 0, ..parent };
    group.bench_function("report_traced_child_of_current (sampled out)", |b| {
        let _current = tracecontext::enter(Some(unsampled));
        let sampler = Sampler::new(1.0);
        b.iter(|| traced_call(&hub, &sampler, &name, &caller))
    });

    group.bench_function("report_traced_new_root (ratio 0.5)", |b| {
        let sampler = Sampler::new(0.5);
        b.iter(|| traced_call(&hub, &sampler, &name, &caller))
    });

    group.bench_function("explicit_parent_value", |b| {
        b.iter(|| black_box(tracecontext::parent_of(Some(black_box(parent)))))
    });
    group.bench_function("child_span_id", |b| b.iter(|| black_box(parent.child())));
    group.bench_function("enter_and_leave_current", |b| {
        b.iter(|| {
            let _g = tracecontext::enter(Some(black_box(parent)));
        })
    });
    group.bench_function("write_header_on_stack", |b| {
        b.iter(|| {
            let mut buf = [0u8; TRACEPARENT_LEN];
            black_box(parent.write_header(&mut buf).len())
        })
    });
    group.finish();
    hub.remove(1);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
