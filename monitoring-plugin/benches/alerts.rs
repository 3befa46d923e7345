//! Evaluating the shipped default rules over a history of 10,000 series.
//!
//! SampleStore: 10,000 series × 41 samples (10 minutes at a 15 s interval = 410,000
//! samples) — enough for every window the default rules use (`[5m]`, `[10m]`); a full
//! hour (2.4 M samples) only makes set-up slow and does not change per-evaluation work
//! for these windows, which read at most the last 10 minutes.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use monitoring_plugin::alerting::engine::{Engine, EngineConfig};
use monitoring_plugin::alerting::rules::load_file;
use monitoring_plugin::alerting::samples::{Sample, SampleStore, SampleStoreConfig};

fn l(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn snapshot(step: i64) -> Vec<Sample> {
    let mut out = Vec::with_capacity(10_000);
    let s = |name: &str, labels: Vec<(String, String)>, value: f64| Sample {
        name: name.into(),
        labels,
        value,
    };
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let f = step as f64;
    for svc in 0..500 {
        let sn = format!("svc{svc}");
        for (i, st) in ["ok", "error", "timeout", "not_found"].iter().enumerate() {
            let v = f * (100.0 / (i as f64 + 1.0));
            out.push(s(
                "homeconsole_service_calls_total",
                l(&[("service_name", sn.clone()), ("status", st.to_string())]),
                v,
            ));
        }
        for (i, le) in les.iter().enumerate() {
            let v = f * 10.0 * (i as f64 + 1.0);
            out.push(s(
                "homeconsole_service_call_duration_seconds_bucket",
                l(&[("service_name", sn.clone()), ("le", le.to_string())]),
                v,
            ));
        }
        out.push(s(
            "homeconsole_plugin_state",
            l(&[("plugin_name", format!("p{svc}"))]),
            1.0,
        ));
        for lvl in ["error", "warn"] {
            out.push(s(
                "homeconsole_errors_total",
                l(&[("plugin", format!("p{svc}")), ("level", lvl.into())]),
                f,
            ));
        }
    }
    for op in 0..10 {
        for le in les {
            out.push(s(
                "homeconsole_storage_operation_duration_seconds_bucket",
                l(&[("operation", format!("op{op}")), ("le", le.into())]),
                f,
            ));
        }
    }
    for p in 0..377 {
        out.push(s(
            "homeconsole_event_deliveries_dropped_total",
            l(&[("plugin", format!("e{p}"))]),
            0.0,
        ));
    }
    for c in ["overall", "storage"] {
        out.push(s(
            "homeconsole_health_status",
            l(&[("component", c.into())]),
            1.0,
        ));
    }
    out.push(s(
        "homeconsole_monitoring_observations_dropped_total",
        vec![],
        0.0,
    ));
    out
}

fn bench(c: &mut Criterion) {
    let history = SampleStore::new(SampleStoreConfig::default());
    for step in 0..=40 {
        history.ingest(step * 15_000, &snapshot(step));
    }
    assert_eq!(history.stats().series, 10_000);
    let rules = load_file(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/prometheus/rules/homeconsole.rules.yml"),
    );
    assert!(rules.errors.is_empty());
    let mut engine = Engine::new(rules.groups, EngineConfig::default());
    let now = 40 * 15_000;
    c.bench_function("eval default rules, 10k series x 41 samples", |b| {
        b.iter(|| engine.eval_all(black_box(now), &history))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
