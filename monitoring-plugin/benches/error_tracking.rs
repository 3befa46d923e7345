//! Hot paths: grouping an event, recording into the store, a breadcrumb.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use monitoring_plugin::error_tracking::grouping::{fingerprint, group_id, normalize_message};
use monitoring_plugin::error_tracking::{
    Breadcrumb, BreadcrumbRing, ErrorEvent, Frame, IssueStore, IssueStoreConfig, Level,
    MemoryKvStore,
};

fn sample_event() -> ErrorEvent {
    let frames = (0..20)
        .map(|i| Frame {
            function: Some(format!("crate::module::function_{i}::h0123456789abcdef")),
            module: Some("crate::module".into()),
            lineno: Some(i),
            in_app: Some(i % 2 == 0),
            ..Frame::default()
        })
        .collect();
    ErrorEvent::exception("weather", "std::io::Error", "timeout after 5023 ms", frames)
}

fn benches(c: &mut Criterion) {
    let event = sample_event();
    c.bench_function("group_event_20_frames", |b| {
        b.iter(|| group_id(&fingerprint(black_box(&event))))
    });
    c.bench_function("normalize_message", |b| {
        b.iter(|| {
            normalize_message(black_box(
                "timeout after 5023 ms on 0x7f3a talking to 10.0.0.7:443",
            ))
        })
    });
    let store =
        IssueStore::open(Arc::new(MemoryKvStore::new()), IssueStoreConfig::default()).unwrap();
    c.bench_function("record_existing_issue_rate_limited", |b| {
        b.iter(|| store.record(black_box(event.clone())))
    });
    let ring = BreadcrumbRing::default();
    c.bench_function("breadcrumb_record", |b| {
        b.iter(|| ring.record("weather", Breadcrumb::log(Level::Info, "polling sensor")))
    });
}

criterion_group!(error_tracking, benches);
criterion_main!(error_tracking);
