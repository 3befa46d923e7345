//! Hot-path and scrape benchmarks of the metrics module.
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use monitoring_plugin::metrics::{MetricKind, MetricStore, RecordRequest, DEFAULT_SECONDS_BUCKETS};

fn bench(c: &mut Criterion) {
    let store = MetricStore::with_config(monitoring_plugin::metrics::StoreConfig {
        max_series_per_family: 20_000,
        ..Default::default()
    });
    // Floor on this machine: one relaxed atomic add on a shared cell.
    let raw = std::sync::atomic::AtomicU64::new(0);
    c.bench_function("baseline_raw_atomic_fetch_add", |b| {
        b.iter(|| black_box(&raw).fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    });

    let fam = store
        .register_counter("bench_requests_total", "Requests.", &["a", "b"])
        .unwrap();
    let counter = fam.with_labels(&["a1", "b1"]).unwrap();
    c.bench_function("counter_inc_handle", |b| {
        b.iter(|| black_box(&counter).inc())
    });

    let hfam = store
        .register_histogram(
            "bench_duration_seconds",
            "Duration.",
            &["route"],
            &DEFAULT_SECONDS_BUCKETS,
        )
        .unwrap();
    let hist = hfam.with_labels(&["/r0"]).unwrap();
    c.bench_function("histogram_observe_handle", |b| {
        b.iter(|| black_box(&hist).observe(black_box(0.042)))
    });

    c.bench_function("with_labels_lookup_inc", |b| {
        b.iter(|| fam.with_labels(black_box(&["a1", "b1"])).unwrap().inc())
    });

    let req = RecordRequest {
        name: "plugin_jobs_total".into(),
        value: 1.0,
        labels: BTreeMap::from([
            ("plugin".to_string(), "weather".to_string()),
            ("op".to_string(), "fetch".to_string()),
        ]),
        kind: MetricKind::Counter,
        help: None,
    };
    store.record(&req).unwrap();
    c.bench_function("record_existing_series", |b| {
        b.iter(|| store.record(black_box(&req)).unwrap())
    });

    // 10,000 counter series (100 x 100) + 100 histogram series.
    for i in 0..100 {
        for j in 0..100 {
            let s = fam
                .with_labels(&[&format!("value_a_{i}"), &format!("value_b_{j}")])
                .unwrap();
            s.inc_by((i * j) as f64);
        }
        let h = hfam.with_labels(&[&format!("/route/{i}")]).unwrap();
        for k in 0..20 {
            h.observe(k as f64 * 0.01 * i as f64);
        }
    }
    let mut out = String::new();
    store.encode(&mut out);
    eprintln!(
        "encode: {} series, {} bytes of exposition",
        store.series_count(),
        out.len()
    );
    c.bench_function("encode_10k_series", |b| {
        b.iter(|| {
            out.clear();
            store.encode(&mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
