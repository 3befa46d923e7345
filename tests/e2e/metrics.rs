//! Metrics end to end: the seed's families move with real activity, the
//! record_metric refusals, promtool's lint, and a real Prometheus scrape.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    peer_http, plugin_lib, sample, start_prometheus, wait_for, TestHost, DEMO, MONITORING,
};
use test_support::{peer_missing, require_binary, Promtool};

const QUIET_DEMO: &str = "[plugins.demo-devices]\ninterval_ms = 0\n";

/// `promtool check metrics` says nothing at all about `text` (skipped, or a
/// failure under CI, without promtool).
#[track_caller]
pub fn assert_promtool_clean(text: &str) {
    match Promtool::find() {
        Some(promtool) => {
            let out = promtool.check_metrics(text);
            assert_eq!(
                (out.code, out.report().as_str()),
                (0, ""),
                "promtool check metrics on:\n{text}"
            );
        }
        None => peer_missing("promtool not installed: `promtool check metrics` not run"),
    }
}

/// `promtool check metrics` clean (no output at all) and no duplicate series.
#[track_caller]
pub fn assert_lint_clean(text: &str) {
    assert_promtool_clean(text);
    // promtool does not detect duplicate series: check ourselves.
    let mut seen = std::collections::HashSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let series = line.rsplit_once(' ').unwrap().0;
        assert!(seen.insert(series.to_owned()), "duplicate series {series}");
    }
}

#[test]
fn seed_families_count_a_scripted_workload_exactly() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .start();
    let fresh = host.get("/api/v1/monitoring/metrics");
    assert_eq!(
        fresh.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_lint_clean(&fresh.body);
    for family in [
        "homeconsole_build_info",
        "homeconsole_plugins_loaded",
        "homeconsole_plugin_state",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            fresh.body.contains(&format!("\n{family}")) || fresh.body.starts_with(family),
            "{family} missing"
        );
    }

    for _ in 0..7 {
        assert_eq!(
            host.call("demo.light.toggle", &json!({"device": "light1"}))
                .status,
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            host.call("demo.light.toggle", &json!({"device": "light2"}))
                .status,
            200
        );
    }
    for _ in 0..4 {
        assert_eq!(host.call("demo.fail", &json!({})).status, 500);
    }
    for _ in 0..2 {
        assert_eq!(host.call("demo.missing", &json!({})).status, 404);
    }
    for _ in 0..5 {
        assert_eq!(
            host.call("demo.light.get", &json!({"device": "light1"}))
                .status,
            200
        );
    }

    let calls = |svc: &str, status: &str, text: &str| {
        sample(
            text,
            "homeconsole_service_calls_total",
            &[("service_name", svc), ("status", status)],
        )
    };
    let text = wait_for("all calls observed", Duration::from_secs(10), || {
        let t = host.metrics();
        (calls("demo.light.get", "ok", &t) == Some(5.0)).then_some(t)
    });
    std::thread::sleep(Duration::from_millis(200));
    let text = {
        let later = host.metrics();
        assert_eq!(
            calls("demo.light.toggle", "ok", &later),
            calls("demo.light.toggle", "ok", &text)
        );
        later
    };
    assert_eq!(calls("demo.light.toggle", "ok", &text), Some(10.0));
    assert_eq!(calls("demo.fail", "error", &text), Some(4.0));
    assert_eq!(calls("demo.missing", "not_found", &text), Some(2.0));
    assert_eq!(calls("demo.light.get", "ok", &text), Some(5.0));
    // Each toggle records a custom metric through monitoring.record_metric.
    assert_eq!(calls("monitoring.record_metric", "ok", &text), Some(10.0));
    let count = sample(
        &text,
        "homeconsole_service_call_duration_seconds_count",
        &[("service_name", "demo.light.toggle")],
    );
    assert_eq!(count, Some(10.0));
    let sum = sample(
        &text,
        "homeconsole_service_call_duration_seconds_sum",
        &[("service_name", "demo.light.toggle")],
    )
    .unwrap();
    assert!(sum > 0.0 && sum < 10.0, "{sum}");
    // Storage: toggle = get + set; light.get = get.
    let ops = |op: &str| {
        sample(
            &text,
            "homeconsole_storage_operations_total",
            &[("operation", op), ("namespace", "demo-devices")],
        )
    };
    assert_eq!(ops("set"), Some(10.0));
    assert_eq!(ops("get"), Some(15.0));
    assert!(
        sample(
            &text,
            "homeconsole_storage_operation_duration_seconds_count",
            &[("operation", "set")]
        )
        .unwrap()
            >= 10.0
    );
    // Events.
    let events = |t: &str| sample(&text, "homeconsole_events_total", &[("event_type", t)]);
    assert_eq!(events("device.light1.state"), Some(7.0));
    assert_eq!(events("device.light2.state"), Some(3.0));
    // Plugins.
    assert_eq!(sample(&text, "homeconsole_plugins_loaded", &[]), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "homeconsole_plugin_state",
            &[("plugin_name", "demo-devices")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "homeconsole_build_info",
            &[("plugin_version", "0.1.0")]
        ),
        Some(1.0)
    );
    // Custom metric with the calling plugin as a label.
    assert_eq!(
        sample(
            &text,
            "demo_light_toggles_total",
            &[("device", "light1"), ("plugin", "demo-devices")]
        ),
        Some(7.0)
    );
    assert_eq!(
        sample(
            &text,
            "homeconsole_monitoring_observations_dropped_total",
            &[]
        ),
        Some(0.0)
    );
    assert!(sample(&text, "homeconsole_monitoring_series", &[]).unwrap() > 10.0);
    assert!(sample(&text, "homeconsole_monitoring_scrape_duration_seconds", &[]).is_some());
    assert_lint_clean(&text);
}

fn record(host: &TestHost, body: Value) -> (u16, Value) {
    let r = host.call("monitoring.record_metric", &body);
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// The seed's shape `{name, value, labels}` (no `kind`) records a gauge:
/// the second value replaces the first.
#[test]
fn record_metric_without_a_kind_sets_a_gauge() {
    let host = TestHost::builder().plugin(MONITORING).start();
    for value in [21.5, 19.0] {
        let (status, v) = record(
            &host,
            json!({"name": "room_temperature_celsius", "value": value, "labels": {"room": "hall"}}),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["recorded"], "room_temperature_celsius", "{v}");
    }
    let text = host.metrics();
    assert!(
        text.contains("# TYPE room_temperature_celsius gauge"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "room_temperature_celsius", &[("room", "hall")]),
        Some(19.0)
    );
}

#[test]
fn record_metric_creates_metrics_and_refuses_bad_input() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[plugins.monitoring.metrics]\nmax_series_per_metric = 5")
        .start();
    // Created on first use, all three kinds.
    assert_eq!(record(&host, json!({"name": "jobs_done_total", "kind": "counter", "value": 2, "labels": {"queue": "a"}})).0, 200);
    assert_eq!(record(&host, json!({"name": "jobs_done_total", "kind": "counter", "value": 3, "labels": {"queue": "a"}})).0, 200);
    assert_eq!(
        record(
            &host,
            json!({"name": "queue_depth", "kind": "gauge", "value": 42})
        )
        .0,
        200
    );
    assert_eq!(
        record(
            &host,
            json!({"name": "job_duration_seconds", "kind": "histogram", "value": 0.3})
        )
        .0,
        200
    );

    let refused = [
        (
            json!({"name": "9abc_total", "kind": "counter", "value": 1}),
            "invalid_name",
        ),
        (
            json!({"name": "x_total", "kind": "counter", "value": 1, "labels": {"bad-label": "v"}}),
            "invalid_label",
        ),
        (
            json!({"name": "x_total", "kind": "counter", "value": -1}),
            "negative_increment",
        ),
        (
            json!({"name": "queue_depth", "kind": "histogram", "value": 1}),
            "kind_conflict",
        ),
        (
            json!({"name": "jobs_done_total", "kind": "counter", "value": 1, "labels": {"other": "a"}}),
            "label_mismatch",
        ),
        (
            json!({"name": "homeconsole_fake_total", "kind": "counter", "value": 1}),
            "reserved_name",
        ),
    ];
    for (body, reason) in refused {
        let (status, v) = record(&host, body.clone());
        assert_eq!(status, 400, "{body} -> {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(reason), "{body}: {msg}");
    }
    // NaN / infinite values cannot even be expressed in JSON: a clear 400.
    for bad in [
        r#"{"name":"q","kind":"gauge","value":"NaN"}"#,
        r#"{"name":"q","kind":"gauge","value":1e999}"#,
    ] {
        let r = host.post("/api/v1/services/monitoring.record_metric", bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = host.post(
        "/api/v1/services/monitoring.record_metric",
        r#"{"name":"q","kind":"summary","value":1}"#,
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown metric kind"));
    let (status, v) = record(
        &host,
        json!({"name": "q", "kind": "gauge", "value": 1, "labels": {"plugin": "spoof"}}),
    );
    assert_eq!(status, 400, "{v}");
    // Too many labels.
    let labels: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("l{i}"), json!("v"))).collect();
    let (status, v) = record(
        &host,
        json!({"name": "wide_total", "kind": "counter", "value": 1, "labels": labels}),
    );
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too_many_labels"),
        "{v}"
    );
    // Series limit: 5 per metric.
    for i in 0..5 {
        assert_eq!(record(&host, json!({"name": "per_user_total", "kind": "counter", "value": 1, "labels": {"user": format!("u{i}")}})).0, 200);
    }
    let (status, v) = record(
        &host,
        json!({"name": "per_user_total", "kind": "counter", "value": 1, "labels": {"user": "u5"}}),
    );
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too_many_series"),
        "{v}"
    );

    let text = wait_for("refusals counted", Duration::from_secs(5), || {
        let t = host.metrics();
        sample(
            &t,
            "homeconsole_monitoring_record_refusals_total",
            &[("reason", "too_many_series")],
        )
        .filter(|v| *v == 1.0)
        .map(|_| t)
    });
    // Existing metrics are intact.
    assert_eq!(
        sample(
            &text,
            "jobs_done_total",
            &[("queue", "a"), ("plugin", "http")]
        ),
        Some(5.0)
    );
    assert_eq!(sample(&text, "queue_depth", &[]), Some(42.0));
    assert_eq!(sample(&text, "job_duration_seconds_count", &[]), Some(1.0));
    assert!(!text.contains("per_user_total{plugin=\"http\",user=\"u5\"}"));
    for reason in [
        "invalid_name",
        "invalid_label",
        "negative_increment",
        "kind_conflict",
        "label_mismatch",
        "reserved_name",
        "too_many_labels",
    ] {
        assert_eq!(
            sample(
                &text,
                "homeconsole_monitoring_record_refusals_total",
                &[("reason", reason)]
            ),
            Some(1.0),
            "{reason}"
        );
    }
    assert_lint_clean(&text);
}

#[test]
fn a_removed_plugin_loses_its_series_and_gets_them_back() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .start();
    host.call("demo.light.toggle", &json!({"device": "light1"}));
    let has = |t: &str| sample(t, "demo_light_toggles_total", &[("device", "light1")]).is_some();
    wait_for("custom series", Duration::from_secs(5), || {
        has(&host.metrics()).then_some(())
    });
    std::fs::remove_file(host.plugins_dir.join("libdemo_devices.so")).unwrap();
    let text = wait_for("series gone", Duration::from_secs(10), || {
        let t = host.metrics();
        (!has(&t)).then_some(t)
    });
    assert_eq!(
        sample(
            &text,
            "homeconsole_plugin_state",
            &[("plugin_name", "demo-devices")]
        ),
        Some(0.0)
    );
    std::fs::copy(
        plugin_lib(DEMO),
        host.plugins_dir.join("libdemo_devices.so"),
    )
    .unwrap();
    wait_for("demo back", Duration::from_secs(10), || {
        host.plugin("demo-devices")
            .filter(|p| p["state"] == "started")
    });
    host.call("demo.light.toggle", &json!({"device": "light1"}));
    let text = wait_for("series back", Duration::from_secs(5), || {
        let t = host.metrics();
        has(&t).then_some(t)
    });
    assert_eq!(
        sample(&text, "demo_light_toggles_total", &[("device", "light1")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "homeconsole_plugin_state",
            &[("plugin_name", "demo-devices")]
        ),
        Some(1.0)
    );
}

#[test]
fn replacing_the_monitoring_plugin_registers_cleanly() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .admin()
        .start();
    let check = json!({"name": "hub", "service": "demo.health"});
    assert_eq!(
        host.admin_call("monitoring.register_health_check", &check)
            .status,
        200
    );
    let tmp = host.plugins_dir.join(".m.tmp");
    std::fs::copy(plugin_lib(MONITORING), &tmp).unwrap();
    std::fs::rename(&tmp, host.plugins_dir.join("libmonitoring_plugin.so")).unwrap();
    wait_for("monitoring generation 2", Duration::from_secs(10), || {
        host.plugin("monitoring")
            .filter(|p| p["generation"] == 2 && p["state"] == "started")
    });
    assert!(!host.logs().iter().any(|l| l.contains("already registered")));
    assert_eq!(
        host.call(
            "monitoring.record_metric",
            &json!({"name": "after_total", "kind": "counter", "value": 1})
        )
        .status,
        200
    );
    let health = host.get("/api/v1/monitoring/health?refresh=true").json();
    assert_eq!(
        health["checks"]["custom"]["hub"]["status"], "healthy",
        "custom check survives: {health}"
    );
    assert_eq!(host.get("/api/v1/monitoring/metrics").status, 200);
}

#[test]
fn metrics_token_protects_the_endpoint() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[plugins.monitoring.access]\nmetrics_token = \"scrape-me\"")
        .start();
    let r = host.get("/api/v1/monitoring/metrics");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(!r.body.contains("scrape-me"));
    let r = host.request(
        "GET",
        "/api/v1/monitoring/metrics",
        None,
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(r.status, 401);
    let r = host.request(
        "GET",
        "/api/v1/monitoring/metrics",
        None,
        &[("Authorization", "Bearer scrape-me")],
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains("homeconsole_build_info"));
}

fn http_get(addr: &str, path_and_query: &str) -> Option<String> {
    peer_http(addr, "GET", path_and_query)
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
}

fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_host() {
    require_binary!("prometheus");
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[plugins.demo-devices]\ninterval_ms = 50\nfail_ratio = 0.1")
        .start();
    let prometheus = start_prometheus(
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: homeconsole\n    metrics_path: /api/v1/monitoring/metrics\n    static_configs:\n      - targets: ['{}']\n",
            host.addr
        ),
        &[],
    );
    let prom_addr = prometheus.addr.clone();
    wait_for("target up", Duration::from_secs(60), || {
        let body = http_get(&prom_addr, "/api/v1/targets")?;
        body.contains("\"health\":\"up\"").then_some(())
    });
    let query = |q: &str| -> Option<Value> {
        let body = http_get(
            &prom_addr,
            &format!("/api/v1/query?query={}", encode_query(q)),
        )?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?.clone();
        (!result.is_empty()).then_some(Value::Array(result))
    };
    let rate = wait_for("rate() has data", Duration::from_secs(60), || {
        query("rate(homeconsole_service_calls_total{service_name=\"demo.light.toggle\"}[1m]) > 0")
    });
    assert!(
        rate.as_array()
            .unwrap()
            .iter()
            .any(|s| s["metric"]["status"] == "ok"),
        "{rate}"
    );
    let p99 = wait_for(
        "histogram_quantile() has data",
        Duration::from_secs(60),
        || {
            query("histogram_quantile(0.99, sum by (le, service_name) (rate(homeconsole_service_call_duration_seconds_bucket{service_name=\"demo.light.toggle\"}[1m])))")
        },
    );
    let value: f64 = p99[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(value > 0.0 && value < 10.0, "p99 {value}");
    // Failures injected by fail_ratio show up with status="error".
    wait_for("error calls", Duration::from_secs(30), || {
        query("homeconsole_service_calls_total{service_name=\"demo.light.toggle\",status=\"error\"} > 0")
    });
}
