//! Hot paths of the trace module: storing a span, traceparent parse + format, the sampling
//! decision, and queueing a span for export.

#![allow(missing_docs)] // criterion_group! generates an undocumented `pub fn benches`.

use std::hint::black_box;
use std::time::Duration;

use test_support::closed_port;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use monitoring_plugin::tracing::context::{new_trace_id, Sampler, TraceContext};
use monitoring_plugin::tracing::export::{ExportConfig, OtlpExporter};
use monitoring_plugin::tracing::span::{SpanKind, SpanRecord, SpanStatus};
use monitoring_plugin::tracing::store::{StoreConfig, TraceStore};

fn sample_span(trace_id: [u8; 16], n: u64) -> SpanRecord {
    let mut s = SpanRecord::new(
        trace_id,
        (n + 1).to_be_bytes(),
        Some([9; 8]),
        "lights.set",
        1_000,
        2_000,
    );
    s.kind = SpanKind::Server;
    s.status = SpanStatus::Ok;
    s.plugin = "demo-devices".into();
    s.service_name = Some("lights.set".into());
    s.attributes.push(("device".into(), "kitchen".into()));
    s
}

fn bench(c: &mut Criterion) {
    // Store at steady state: full, so every new trace evicts the oldest one.
    let store = TraceStore::new(StoreConfig {
        max_traces: 1_000,
        max_bytes: 16 * 1024 * 1024,
        max_spans_per_trace: 1_000,
    });
    let mut n = 0u64;
    c.bench_function("store_add_span (5 spans per trace, evicting)", |b| {
        b.iter_batched(
            || {
                n += 1;
                let mut t = [0u8; 16];
                t[..8].copy_from_slice(&(n / 5).to_be_bytes());
                t[15] = 1;
                sample_span(t, n)
            },
            |s| store.add(s),
            BatchSize::SmallInput,
        )
    });

    // Baseline: freeing one span (its strings and attribute vec), which add/export pay too
    // whenever a span is evicted or dropped.
    c.bench_function("span_drop (baseline)", |b| {
        b.iter_batched(|| sample_span([1; 16], 1), drop, BatchSize::SmallInput)
    });

    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    c.bench_function("traceparent_parse", |b| {
        b.iter(|| TraceContext::parse(black_box(header)))
    });
    let ctx = TraceContext::parse(header)
        .unwrap_or_else(|_| TraceContext::new_root(&Sampler::always_on()));
    c.bench_function("traceparent_format", |b| {
        b.iter(|| black_box(&ctx).to_header())
    });
    c.bench_function("traceparent_write_header (no alloc)", |b| {
        let mut buf = [0u8; 55];
        b.iter(|| black_box(&ctx).write_header(&mut buf).len())
    });
    c.bench_function("traceparent_parse_and_format", |b| {
        b.iter(|| TraceContext::parse(black_box(header)).map(|c| c.to_header()))
    });

    let sampler = Sampler::new(0.25);
    let id = new_trace_id();
    c.bench_function("sampler_root_decision", |b| {
        b.iter(|| sampler.should_sample(black_box(&id), None))
    });
    c.bench_function("new_trace_id", |b| b.iter(new_trace_id));

    // Enqueue only: a fresh exporter per sample whose worker idles (no batch ever fills, the
    // flush interval is an hour), with a queue sized for the sample, so every span is accepted
    // and nothing competes with the caller. Shutdown (outside the timing) drains the queue
    // into one failing request to a closed port.
    let closed = closed_port();
    c.bench_function("export_enqueue (accepted, idle worker)", |b| {
        b.iter_custom(|iters| {
            let mut config =
                ExportConfig::new(format!("http://127.0.0.1:{closed}/v1/traces"), "bench");
            config.max_queue = iters as usize + 1;
            config.max_batch_size = usize::MAX;
            config.flush_interval = Duration::from_secs(3600);
            config.max_attempts = 1;
            let Ok(exporter) = OtlpExporter::new(config) else {
                return Duration::ZERO;
            };
            let t = new_trace_id();
            let spans: Vec<SpanRecord> = (0..iters).map(|k| sample_span(t, k)).collect();
            let start = std::time::Instant::now();
            for s in spans {
                black_box(exporter.export(s));
            }
            let elapsed = start.elapsed();
            exporter.shutdown();
            elapsed
        })
    });

    // Enqueue while the worker drains: a closed port and one attempt per batch, so the worker
    // encodes, fails fast and keeps consuming (the queue may still fill now and then).
    let port = closed_port();
    let mut config = ExportConfig::new(format!("http://127.0.0.1:{port}/v1/traces"), "bench");
    config.max_queue = 65_536;
    config.max_attempts = 1;
    config.shutdown_timeout = Duration::from_millis(100);
    if let Ok(exporter) = OtlpExporter::new(config) {
        let t = new_trace_id();
        let mut k = 0u64;
        c.bench_function("export_enqueue (worker draining)", |b| {
            b.iter_batched(
                || {
                    k += 1;
                    sample_span(t, k)
                },
                |s| exporter.export(s),
                BatchSize::SmallInput,
            )
        });
        exporter.shutdown();
        eprintln!("export_enqueue outcomes: {:?}", exporter.stats());
    }

    // A collector that accepts connections but never answers: the worker hangs in its first
    // request and the queue stays full, so every export is a counted drop.
    if let Ok(hang) = std::net::TcpListener::bind("127.0.0.1:0") {
        let addr = hang.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut config = ExportConfig::new(format!("http://{addr}/v1/traces"), "bench");
        config.max_queue = 1024;
        config.max_batch_size = 1;
        config.timeout = Duration::from_secs(600);
        config.shutdown_timeout = Duration::from_millis(100);
        if let Ok(exporter) = OtlpExporter::new(config) {
            let t = new_trace_id();
            for k in 0..2048 {
                exporter.export(sample_span(t, k));
            }
            c.bench_function("export_queue_full (drop)", |b| {
                b.iter_batched(
                    || sample_span(t, 1),
                    |s| exporter.export(s),
                    BatchSize::SmallInput,
                )
            });
            eprintln!("export_queue_full outcomes: {:?}", exporter.stats());
            // The worker is stuck in a request; shutdown gives up on joining after its deadline.
            exporter.shutdown();
        }
        drop(hang);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
