//! Behaviour tests of the whole module: validation and refusal accounting,
//! registration rules, limits, removal, exact exposition, promtool, concurrency.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;

fn req(name: &str, value: f64, labels: &[(&str, &str)], kind: MetricKind) -> RecordRequest {
    RecordRequest {
        name: name.to_owned(),
        value,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        kind,
        help: None,
    }
}

fn refusal(store: &MetricStore, reason: &str) -> u64 {
    store
        .refusals()
        .into_iter()
        .find(|(r, _)| *r == reason)
        .map(|(_, n)| n)
        .unwrap()
}

/// Expects `r` to be refused with `reason`, that exactly this reason's counter
/// moved by one, and that the exposition did not change.
fn assert_refused(store: &MetricStore, r: &RecordRequest, reason: &str) -> MetricError {
    let before_out = store.encode_to_string();
    let before = store.refusals();
    let families = store.family_count();
    let err = store
        .record(r)
        .expect_err(&format!("{r:?} should be refused"));
    assert_eq!(err.reason(), reason, "{err}");
    for ((name, b), (_, a)) in before.iter().zip(store.refusals()) {
        let want = if *name == reason { b + 1 } else { *b };
        assert_eq!(a, want, "refusal counter {name}");
    }
    assert_eq!(store.encode_to_string(), before_out, "exposition changed");
    assert_eq!(store.family_count(), families, "a family was created");
    err
}

use MetricKind::{Counter as C, Gauge as G, Histogram as H};

#[test]
fn record_refusals_each_reason() {
    let store = MetricStore::with_config(StoreConfig {
        max_series_per_family: 2,
        max_labels: 3,
        ..StoreConfig::default()
    });
    store
        .record(&req("jobs_total", 5.0, &[("plugin", "a")], C))
        .unwrap();
    store
        .record(&req("queue_depth", 7.0, &[("plugin", "a")], G))
        .unwrap();
    store
        .record(&req("job_duration_seconds", 0.2, &[("plugin", "a")], H))
        .unwrap();

    // invalid_name
    for name in [
        "9abc",
        "",
        "a-b_total",
        "spaces here",
        "fooBar_total",
        "a:b_total",
        "latency_ms",
        "x_gauge",
    ] {
        let kind = if name.ends_with("_total") { C } else { G };
        assert_refused(&store, &req(name, 1.0, &[], kind), "invalid_name");
    }
    let long = "a".repeat(201);
    assert_refused(&store, &req(&long, 1.0, &[], G), "invalid_name");
    let e = assert_refused(&store, &req("9abc", 1.0, &[], G), "invalid_name");
    assert_eq!(
        e.to_string(),
        "metric name \"9abc\" is invalid: must match [a-zA-Z_:][a-zA-Z0-9_:]*"
    );
    // counter without _total, gauge/histogram with reserved suffixes
    assert_refused(&store, &req("jobs", 1.0, &[], C), "invalid_name");
    for bad in ["x_total", "x_bucket", "x_count", "x_sum"] {
        assert_refused(&store, &req(bad, 1.0, &[], G), "invalid_name");
        assert_refused(&store, &req(bad, 1.0, &[], H), "invalid_name");
    }
    // generated series name of an existing histogram
    let e = assert_refused(
        &store,
        &req("job_duration_seconds_count", 1.0, &[], G),
        "invalid_name",
    );
    assert!(e.to_string().contains("_count"), "{e}");

    // invalid_label
    for l in ["9x", "a-b", "__name", "le", "quantile", "fooBar", ""] {
        assert_refused(
            &store,
            &req("other_total", 1.0, &[(l, "v")], C),
            "invalid_label",
        );
    }
    assert_refused(
        &store,
        &req("other_seconds", 1.0, &[("le", "1")], H),
        "invalid_label",
    );
    let big = "v".repeat(1025);
    let e = assert_refused(
        &store,
        &req("jobs_total", 1.0, &[("plugin", &big)], C),
        "invalid_label",
    );
    assert!(e.to_string().contains("\"plugin\""), "{e}");
    assert_refused(
        &store,
        &req("other_total", 1.0, &[("plugin", &big)], C),
        "invalid_label",
    );

    // invalid_value
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_refused(
            &store,
            &req("jobs_total", v, &[("plugin", "a")], C),
            "invalid_value",
        );
        assert_refused(
            &store,
            &req("queue_depth", v, &[("plugin", "a")], G),
            "invalid_value",
        );
        assert_refused(
            &store,
            &req("job_duration_seconds", v, &[("plugin", "a")], H),
            "invalid_value",
        );
    }
    // negative_increment
    let e = assert_refused(
        &store,
        &req("jobs_total", -1.0, &[("plugin", "a")], C),
        "negative_increment",
    );
    assert!(e.to_string().contains("jobs_total"), "{e}");
    // negative gauge and histogram values are fine
    store
        .record(&req("queue_depth", -3.0, &[("plugin", "a")], G))
        .unwrap();
    store
        .record(&req("queue_depth", 7.0, &[("plugin", "a")], G))
        .unwrap();

    // kind_conflict (names both kinds)
    let e = assert_refused(
        &store,
        &req("queue_depth", 1.0, &[("plugin", "a")], H),
        "kind_conflict",
    );
    let msg = e.to_string();
    assert!(msg.contains("gauge") && msg.contains("histogram"), "{msg}");
    // label_mismatch (names both label sets)
    let e = assert_refused(
        &store,
        &req("jobs_total", 1.0, &[("plugin", "a"), ("x", "y")], C),
        "label_mismatch",
    );
    let msg = e.to_string();
    assert!(
        msg.contains("[plugin]") && msg.contains("[plugin, x]"),
        "{msg}"
    );
    assert_refused(&store, &req("jobs_total", 1.0, &[], C), "label_mismatch");
    assert_refused(
        &store,
        &req("jobs_total", 1.0, &[("other", "a")], C),
        "label_mismatch",
    );

    // too_many_labels
    let four = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
    assert_refused(&store, &req("wide_total", 1.0, &four, C), "too_many_labels");

    // too_many_series (limit 2)
    store
        .record(&req("jobs_total", 1.0, &[("plugin", "b")], C))
        .unwrap();
    let e = assert_refused(
        &store,
        &req("jobs_total", 1.0, &[("plugin", "c")], C),
        "too_many_series",
    );
    assert_eq!(
        e,
        MetricError::TooManySeries {
            metric: "jobs_total".into(),
            limit: 2
        }
    );

    // reserved_name
    let e = assert_refused(&store, &req("homeconsole_up", 1.0, &[], G), "reserved_name");
    assert!(e.to_string().contains("homeconsole_"), "{e}");

    // existing values are exactly as recorded by the accepted requests
    let out = store.encode_to_string();
    assert!(out.contains("jobs_total{plugin=\"a\"} 5\n"), "{out}");
    assert!(out.contains("jobs_total{plugin=\"b\"} 1\n"), "{out}");
    assert!(out.contains("queue_depth{plugin=\"a\"} 7\n"), "{out}");
    assert!(
        out.contains("job_duration_seconds_count{plugin=\"a\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("job_duration_seconds_sum{plugin=\"a\"} 0.2\n"),
        "{out}"
    );
    assert_eq!(store.series_count(), 4);
}

#[test]
fn record_semantics_and_help() {
    let store = MetricStore::new();
    let mut r = req("done_total", 2.0, &[("b", "2"), ("a", "1")], C);
    r.help = Some("Done\\things\nsecond line".into());
    store.record(&r).unwrap();
    r.value = 0.5;
    store.record(&r).unwrap();
    store.record(&req("level", 3.0, &[], G)).unwrap();
    store.record(&req("level", 4.0, &[], G)).unwrap();
    store.record(&req("wait_seconds", 0.003, &[], H)).unwrap();
    let out = store.encode_to_string();
    assert!(
        out.contains("# HELP done_total Done\\\\things\\nsecond line\n"),
        "{out}"
    );
    // label names of record-created families are sorted
    assert!(out.contains("done_total{a=\"1\",b=\"2\"} 2.5\n"), "{out}");
    assert!(
        out.contains(&format!("# HELP level {DEFAULT_RECORD_HELP}\n")),
        "{out}"
    );
    assert!(out.contains("level 4\n"), "{out}");
    assert!(
        out.contains("wait_seconds_bucket{le=\"0.0025\"} 0\n"),
        "{out}"
    );
    assert!(
        out.contains("wait_seconds_bucket{le=\"0.005\"} 1\n"),
        "{out}"
    );
    // a record request may feed a host-registered family (not reserved) whose
    // label order differs from sorted order
    let fam = store
        .register_counter("host_events_total", "Events.", &["zone", "app"])
        .unwrap();
    store
        .record(&req(
            "host_events_total",
            1.0,
            &[("app", "x"), ("zone", "z")],
            C,
        ))
        .unwrap();
    assert_eq!(fam.with_labels(&["z", "x"]).unwrap().get(), 1.0);
    assert!(refusal(&store, "invalid_name") == 0);
}

#[test]
fn registration_idempotent_and_conflicts() {
    let store = MetricStore::new();
    let a = store
        .register_counter("homeconsole_reqs_total", "Requests.", &["plugin"])
        .unwrap();
    let b = store
        .register_counter("homeconsole_reqs_total", "Other help", &["plugin"])
        .unwrap();
    a.with_labels(&["p"]).unwrap().inc();
    assert_eq!(b.with_labels(&["p"]).unwrap().get(), 1.0);
    assert_eq!(store.family_count(), 1);

    let e = store
        .register_gauge("homeconsole_reqs_total", "x", &["plugin"])
        .unwrap_err();
    assert!(matches!(
        e,
        MetricError::Conflict {
            what: ConflictKind::Kind,
            ..
        }
    ));
    assert_eq!(e.reason(), "kind_conflict");
    let e = store
        .register_counter("homeconsole_reqs_total", "x", &["plugin", "x"])
        .unwrap_err();
    assert_eq!(e.reason(), "label_mismatch");
    assert!(e.to_string().contains("[plugin]"), "{e}");

    let h = store
        .register_histogram(
            "homeconsole_op_seconds",
            "Op.",
            &[],
            &DEFAULT_SECONDS_BUCKETS,
        )
        .unwrap();
    assert_eq!(h.buckets(), &DEFAULT_SECONDS_BUCKETS);
    store
        .register_histogram(
            "homeconsole_op_seconds",
            "Op.",
            &[],
            &DEFAULT_SECONDS_BUCKETS,
        )
        .unwrap();
    let e = store
        .register_histogram("homeconsole_op_seconds", "Op.", &[], &[1.0])
        .unwrap_err();
    assert_eq!(e.reason(), "bucket_mismatch");
    for bad in [&[2.0, 1.0][..], &[1.0, 1.0], &[f64::NAN]] {
        let e = store
            .register_histogram("other_seconds", "x", &[], bad)
            .unwrap_err();
        assert_eq!(e.reason(), "invalid_buckets");
    }
    // trailing +Inf is accepted and implicit
    store
        .register_histogram("inf_seconds", "x", &[], &[1.0, f64::INFINITY])
        .unwrap();
    // registration applies the naming rules too (keeps the exposition lint-clean)
    assert_eq!(
        store
            .register_counter("no_suffix", "x", &[])
            .unwrap_err()
            .reason(),
        "invalid_name"
    );
    assert_eq!(
        store
            .register_gauge("g", "x", &["a", "a"])
            .unwrap_err()
            .reason(),
        "invalid_label"
    );
    // registration errors are not counted as record refusals
    assert!(store.refusals().iter().all(|(_, n)| *n == 0));
    // wrong number of label values
    let e = a.with_labels(&[]).unwrap_err();
    assert_eq!(e.reason(), "label_mismatch");
}

#[test]
fn family_limit() {
    let store = MetricStore::with_config(StoreConfig {
        max_families: 2,
        ..StoreConfig::default()
    });
    store.record(&req("a_total", 1.0, &[], C)).unwrap();
    store.record(&req("b_total", 1.0, &[], C)).unwrap();
    assert_refused(&store, &req("c_total", 1.0, &[], C), "too_many_families");
    store.record(&req("a_total", 1.0, &[], C)).unwrap();
}

#[test]
fn series_limit_creates_nothing() {
    let store = MetricStore::with_config(StoreConfig {
        max_series_per_family: 3,
        ..StoreConfig::default()
    });
    let f = store
        .register_gauge("temp_celsius", "T.", &["room"])
        .unwrap();
    for r in ["a", "b", "c"] {
        f.with_labels(&[r]).unwrap().set(1.0);
    }
    let e = f.with_labels(&["d"]).unwrap_err();
    assert_eq!(
        e,
        MetricError::TooManySeries {
            metric: "temp_celsius".into(),
            limit: 3
        }
    );
    assert_eq!(f.series_count(), 3);
    // existing series are still reachable
    f.with_labels(&["a"]).unwrap().add(1.0);
    assert_eq!(f.with_labels(&["a"]).unwrap().get(), 2.0);
    assert_eq!(store.series_count(), 3);
}

#[test]
fn remove_series_where_drops_and_orphans() {
    let store = MetricStore::new();
    let c = store
        .register_counter("calls_total", "Calls.", &["plugin", "op"])
        .unwrap();
    let g = store.register_gauge("up", "Up.", &["plugin"]).unwrap();
    let h = store
        .register_histogram("call_seconds", "Call time.", &["plugin"], &[1.0])
        .unwrap();
    let gone = c.with_labels(&["weather", "get"]).unwrap();
    gone.inc();
    c.with_labels(&["weather", "set"]).unwrap().inc();
    c.with_labels(&["lights", "get"]).unwrap().inc();
    g.with_labels(&["weather"]).unwrap().set(1.0);
    g.with_labels(&["lights"]).unwrap().set(1.0);
    let gone_h = h.with_labels(&["weather"]).unwrap();
    gone_h.observe(0.5);
    assert_eq!(store.series_count(), 6);
    // a label name no family has, and a value nobody uses, remove nothing
    assert_eq!(store.remove_series_where("nope", "weather"), 0);
    assert_eq!(store.remove_series_where("plugin", "nope"), 0);
    assert_eq!(store.remove_series_where("plugin", "weather"), 4);
    assert_eq!(store.series_count(), 2);
    let out = store.encode_to_string();
    assert!(!out.contains("weather"), "{out}");
    // the histogram family is now empty: nothing emitted for it
    assert!(!out.contains("call_seconds"), "{out}");
    // orphan handles still work and are not exported
    gone.inc();
    gone_h.observe(2.0);
    assert_eq!(gone.get(), 2.0);
    assert_eq!(store.encode_to_string(), out);
    // the same labels later give a fresh series
    assert_eq!(c.with_labels(&["weather", "get"]).unwrap().get(), 0.0);
}

#[test]
fn exact_exposition() {
    let store = MetricStore::new();
    let c = store
        .register_counter(
            "app_requests_total",
            "Requests served.",
            &["method", "code"],
        )
        .unwrap();
    let post = c.with_labels(&["POST", "500"]).unwrap();
    post.inc_by(2.5);
    let get = c.with_labels(&["GET", "200"]).unwrap();
    get.inc();
    get.inc();
    get.inc_by(1.0);
    get.inc_by(-5.0); // ignored
    get.inc_by(f64::NAN); // ignored
    store
        .register_gauge("app_temperature_celsius", "Temperature.", &[])
        .unwrap()
        .with_labels(&[])
        .unwrap()
        .set(21.5);
    store
        .register_gauge("app_empty", "Never set.", &[])
        .unwrap();
    let h = store
        .register_histogram("app_latency_seconds", "Latency.", &["route"], &[0.1, 1.0])
        .unwrap()
        .with_labels(&["/a"])
        .unwrap();
    for v in [0.0625, 0.5, 3.0, f64::NAN] {
        h.observe(v);
    }
    store
        .register_gauge("app_escape", "Back\\slash\nnewline.", &["v"])
        .unwrap()
        .with_labels(&["q\"uo\\te\nnl"])
        .unwrap()
        .set(-1.0);
    let expected = "\
# HELP app_escape Back\\\\slash\\nnewline.
# TYPE app_escape gauge
app_escape{v=\"q\\\"uo\\\\te\\nnl\"} -1
# HELP app_latency_seconds Latency.
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{route=\"/a\",le=\"0.1\"} 1
app_latency_seconds_bucket{route=\"/a\",le=\"1\"} 2
app_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3
app_latency_seconds_sum{route=\"/a\"} 3.5625
app_latency_seconds_count{route=\"/a\"} 3
# HELP app_requests_total Requests served.
# TYPE app_requests_total counter
app_requests_total{method=\"GET\",code=\"200\"} 3
app_requests_total{method=\"POST\",code=\"500\"} 2.5
# HELP app_temperature_celsius Temperature.
# TYPE app_temperature_celsius gauge
app_temperature_celsius 21.5
";
    assert_eq!(store.encode_to_string(), expected);
    // encoding appends; a reused buffer after clear gives the same text
    let mut buf = String::from("x");
    store.encode(&mut buf);
    assert_eq!(&buf[1..], expected);
    buf.clear();
    store.encode(&mut buf);
    assert_eq!(buf, expected);
}

#[test]
fn series_sorted_and_cache_invalidated() {
    let store = MetricStore::new();
    let g = store.register_gauge("g", "G.", &["k"]).unwrap();
    for k in ["c", "a", "b"] {
        g.with_labels(&[k]).unwrap().set(1.0);
    }
    let first = store.encode_to_string();
    assert!(
        first.contains("g{k=\"a\"} 1\ng{k=\"b\"} 1\ng{k=\"c\"} 1\n"),
        "{first}"
    );
    g.with_labels(&["0"]).unwrap().set(2.0);
    let second = store.encode_to_string();
    assert!(second.contains("g{k=\"0\"} 2\ng{k=\"a\"} 1\n"), "{second}");
}

/// Representative store for the promtool lint check.
fn representative_store() -> MetricStore {
    let store = MetricStore::new();
    let c = store
        .register_counter(
            "homeconsole_http_requests_total",
            "HTTP requests.",
            &["method", "path", "status"],
        )
        .unwrap();
    c.with_labels(&["GET", "/api/\"x\"", "200"]).unwrap().inc();
    c.with_labels(&["POST", "C:\\dir\nline2", "500"])
        .unwrap()
        .inc_by(3.25);
    let g = store
        .register_gauge("homeconsole_plugins_loaded", "Loaded plugins.", &[])
        .unwrap();
    g.with_labels(&[]).unwrap().set(12.0);
    let g2 = store
        .register_gauge("homeconsole_memory_bytes", "Memory.", &["kind"])
        .unwrap();
    g2.with_labels(&["rss"]).unwrap().set(1.5e9);
    g2.with_labels(&["huge"]).unwrap().set(1e300);
    g2.with_labels(&["tiny"]).unwrap().set(1.5e-7);
    g2.with_labels(&["neg_inf"]).unwrap().set(f64::NEG_INFINITY);
    g2.with_labels(&["nan"]).unwrap().set(f64::NAN);
    let h = store
        .register_histogram(
            "homeconsole_request_duration_seconds",
            "Request duration.",
            &["route"],
            &DEFAULT_SECONDS_BUCKETS,
        )
        .unwrap();
    for (i, r) in ["/a", "/b"].iter().enumerate() {
        let s = h.with_labels(&[r]).unwrap();
        for v in [0.0001, 0.003, 0.2, 7.0, 100.0] {
            s.observe(v * (i + 1) as f64);
        }
    }
    let mut r = req("plugin_jobs_total", 2.0, &[("plugin", "weather")], C);
    r.help = Some("Jobs\nrun\\.".into());
    store.record(&r).unwrap();
    store
        .record(&req("plugin_queue_depth", 4.0, &[], G))
        .unwrap();
    store
        .record(&req(
            "plugin_fetch_seconds",
            0.4,
            &[("plugin", "weather"), ("host", "h1")],
            H,
        ))
        .unwrap();
    store
}

#[test]
fn promtool_check_metrics_is_silent() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(bin) = std::env::var("PROMTOOL").or_else(|_| {
        ["/usr/bin/promtool", "/usr/local/bin/promtool"]
            .iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(|p| p.to_string())
            .ok_or(())
    }) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool must be installed in CI"
        );
        println!("SKIPPED: promtool not installed; exposition not linted");
        return;
    };
    let text = representative_store().encode_to_string();
    let mut child = Command::new(bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool failed: {report}\n---\n{text}"
    );
    assert_eq!(report, "", "promtool output:\n{report}\n---\n{text}");
}

#[test]
fn concurrency_exact_total() {
    let store = Arc::new(MetricStore::new());
    let fam = store
        .register_counter("hits_total", "Hits.", &["t"])
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            let fam = fam.clone();
            std::thread::spawn(move || {
                let shared = fam.with_labels(&["shared"]).unwrap();
                let labels = BTreeMap::from([("t".to_string(), "rec".to_string())]);
                let r = RecordRequest {
                    name: "hits_total".into(),
                    value: 1.0,
                    labels,
                    kind: C,
                    help: None,
                };
                for j in 0..10_000 {
                    shared.inc();
                    if j % 10 == 0 {
                        store.record(&r).unwrap();
                    }
                    if j % 1000 == 0 {
                        let mut s = String::new();
                        store.encode(&mut s);
                        fam.with_labels(&[&format!("t{i}-{j}")]).unwrap().inc();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fam.with_labels(&["shared"]).unwrap().get(), 40_000.0);
    assert_eq!(fam.with_labels(&["rec"]).unwrap().get(), 4_000.0);
    assert_eq!(fam.series_count(), 2 + 40);
}

#[test]
fn handles_are_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Counter>();
    check::<Gauge>();
    check::<Histogram>();
    check::<CounterFamily>();
    check::<GaugeFamily>();
    check::<HistogramFamily>();
    fn check2<T: Send + Sync>() {}
    check2::<MetricStore>();
}
