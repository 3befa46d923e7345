//! The telemetry API across real libraries: the out-of-tree fixture
//! (`example-plugins/fixtures/out-of-tree`, built against `plugin-abi`
//! alone) instruments itself with handles, spans, error capture and a
//! health check; the monitoring plugin is its provider. With monitoring,
//! everything shows in its APIs; without it, nothing breaks; when the
//! monitoring library is replaced under load or stopped and loaded again,
//! the fixture keeps running in the same generation and its series come
//! back in the new monitoring instance.

use std::time::Duration;

use serde_json::{json, Value};

use crate::metrics::assert_promtool_clean;
use crate::support::{plugin_lib, sample, wait_for, TestHost, MONITORING, OUT_OF_TREE};

const PLUGIN: &str = "out-of-tree";
const FAST_TICKS: &str = "[host]\ntick_interval_ms = 200\n";

fn host_with(monitoring: bool, busy_threads: usize) -> TestHost {
    host_with_config(monitoring, &format!("busy_threads = {busy_threads}\n"))
}

fn host_with_config(monitoring: bool, fixture_config: &str) -> TestHost {
    let mut builder = TestHost::builder()
        .plugin(OUT_OF_TREE)
        .config(&format!("{FAST_TICKS}[plugins.{PLUGIN}]\n{fixture_config}"));
    if monitoring {
        builder = builder.plugin(MONITORING);
    }
    let host = builder.start();
    wait_for("fixture started", Duration::from_secs(15), || {
        host.plugin(PLUGIN).filter(|p| p["state"] == "started")
    });
    host
}

fn work_total(text: &str) -> Option<f64> {
    sample(
        text,
        "oot_work_total",
        &[("plugin", PLUGIN), ("worker", "0")],
    )
}

/// The fixture's work counter as the monitoring plugin exports it, once
/// it is above `above`.
fn wait_work_above(host: &TestHost, above: f64, what: &str) -> f64 {
    wait_for(what, Duration::from_secs(20), || {
        let r = host.get("/api/v1/monitoring/metrics");
        (r.status == 200)
            .then(|| work_total(&r.body))
            .flatten()
            .filter(|v| *v > above)
    })
}

fn stats(host: &TestHost) -> Value {
    let r = host.call("oot.stats", &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// The fixture's health check as `/api/v1/monitoring/health` shows it.
fn wait_health_check(host: &TestHost) -> Value {
    wait_for(
        "oot-ready in the health report",
        Duration::from_secs(20),
        || {
            let h = host.get("/api/v1/monitoring/health?refresh=true").json();
            let c = h["checks"]["custom"]["oot-ready"].clone();
            (!c.is_null()).then_some(c)
        },
    )
}

fn monitoring_generation(host: &TestHost, generation: u64) -> Value {
    wait_for(
        &format!("monitoring generation {generation} started"),
        Duration::from_secs(20),
        || {
            host.plugin("monitoring")
                .filter(|p| p["generation"] == generation && p["state"] == "started")
        },
    )
}

fn no_panics(host: &TestHost) {
    let bad: Vec<Value> = host
        .json_logs()
        .into_iter()
        .filter(|l| l["level"] == "error" || l.to_string().contains("panick"))
        .collect();
    assert!(bad.is_empty(), "errors or panics in the host log: {bad:#?}");
}

#[test]
fn handles_spans_errors_and_health_checks_reach_the_monitoring_plugin() {
    let host = host_with(true, 1);

    // Handles: a counter with a bound label, a gauge, a histogram with
    // chosen buckets; HELP and UNIT in the exposition, promtool-clean.
    wait_work_above(&host, 0.0, "oot_work_total exported");
    let text = wait_for("tick histogram exported", Duration::from_secs(20), || {
        let t = host.metrics();
        sample(&t, "oot_tick_duration_seconds_count", &[("plugin", PLUGIN)])
            .filter(|n| *n >= 1.0)
            .map(|_| t)
    });
    for line in [
        "# HELP oot_work_total Work items done by the fixture's busy workers.",
        "# TYPE oot_work_total counter",
        "# HELP oot_queue_depth Items waiting in the fixture's queue.",
        "# TYPE oot_tick_duration_seconds histogram",
        "# UNIT oot_tick_duration_seconds seconds",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    for le in ["0.001", "0.01", "0.1", "+Inf"] {
        assert!(
            sample(
                &text,
                "oot_tick_duration_seconds_bucket",
                &[("plugin", PLUGIN), ("le", le)]
            )
            .is_some(),
            "bucket le={le} missing:\n{text}"
        );
    }
    assert!(sample(&text, "oot_queue_depth", &[("plugin", PLUGIN)]).is_some());
    assert_promtool_clean(&text);

    // Spans: a failed unit of work is a server span with its attributes
    // and an error status, in the tracing API.
    let r = host.call("oot.work", &json!({"fail": true}));
    assert_eq!(r.status, 200, "{}", r.body);
    let trace_id = r.json()["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace_id.len(), 32, "{}", r.body);
    let tree = wait_for("the oot.work trace", Duration::from_secs(20), || {
        let r = host.get(&format!("/api/v1/monitoring/traces/{trace_id}"));
        (r.status == 200).then(|| r.json())
    });
    let span = &tree["roots"][0];
    assert_eq!(span["name"], "oot.work", "{tree}");
    assert_eq!(span["plugin"], PLUGIN, "{tree}");
    assert_eq!(span["kind"], "server", "{tree}");
    assert_eq!(span["attributes"]["oot.fail"], true, "{tree}");
    assert_eq!(span["status"]["code"], "error", "{tree}");
    assert_eq!(span["status"]["message"], "asked to fail", "{tree}");

    // Captured error: grouped into an issue of the plugin, with its tags
    // and level, linked to the trace.
    let issue = wait_for("the captured error", Duration::from_secs(20), || {
        let list = host.get("/api/v1/monitoring/errors?limit=500").json();
        list["issues"].as_array().and_then(|issues| {
            issues
                .iter()
                .find(|i| {
                    i["title"]
                        .as_str()
                        .is_some_and(|t| t.contains("oot work failed on purpose"))
                })
                .cloned()
        })
    });
    assert_eq!(issue["level"], "warning", "{issue}");
    assert_eq!(issue["plugins"], json!([PLUGIN]), "{issue}");

    // Health check: next to the plugin checks, with its message.
    let check = wait_health_check(&host);
    assert_eq!(check["status"], "healthy", "{check}");
    assert_eq!(check["message"], "fixture ready", "{check}");
    assert_eq!(check["details"]["registered_by"], PLUGIN, "{check}");
    no_panics(&host);
}

#[test]
fn without_monitoring_the_instrumented_plugin_runs_and_records_nothing() {
    let host = host_with(false, 1);
    wait_for("busy worker running", Duration::from_secs(20), || {
        let s = stats(&host);
        (s["increments"].as_u64() > Some(0) && s["ticks"].as_u64() > Some(1)).then_some(s)
    });
    let s = stats(&host);
    assert_eq!(s["live"], false, "no provider, no binding: {s}");
    let r = host.call("oot.work", &json!({"fail": true}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["trace_id"], "", "no provider, no span context");
    assert_eq!(host.get("/api/v1/monitoring/metrics").status, 404);
    let p = host.plugin(PLUGIN).unwrap();
    assert_eq!(
        (p["state"].clone(), p["generation"].clone()),
        (json!("started"), json!(1))
    );
    no_panics(&host);
}

#[test]
fn replacing_the_monitoring_library_under_load_keeps_the_plugin_and_its_series() {
    let host = host_with(true, 2);
    monitoring_generation(&host, 1);
    let before = wait_work_above(&host, 10_000.0, "the counter under load");
    wait_health_check(&host);

    // A rebuilt monitoring library dropped in while the workers increment.
    let tmp = host.plugins_dir.join(".incoming.tmp");
    std::fs::copy(plugin_lib(MONITORING), &tmp).unwrap();
    std::fs::rename(&tmp, host.plugins_dir.join(format!("lib{MONITORING}.so"))).unwrap();
    let p = monitoring_generation(&host, 2);
    assert!(p["error"].is_null(), "{p}");

    // The new instance's store: the series continues (a counter restarts
    // from 0 with its new store, then keeps growing).
    let first = wait_work_above(&host, 0.0, "the counter in the new generation");
    let later = wait_work_above(&host, first, "the counter growing after the swap");
    assert!(later > first);
    eprintln!("oot_work_total: {before} before the swap, {first} then {later} after");
    let s = stats(&host);
    assert_eq!(s["live"], true, "the handle rebound: {s}");

    // The fixture was never restarted, its health check is still there.
    let fixture = host.plugin(PLUGIN).unwrap();
    assert_eq!(fixture["generation"], 1, "{fixture}");
    assert_eq!(fixture["state"], "started", "{fixture}");
    assert_eq!(wait_health_check(&host)["status"], "healthy");
    no_panics(&host);
}

#[test]
fn a_stopped_monitoring_plugin_makes_handles_no_ops_and_a_new_one_brings_the_series_back() {
    let host = host_with(true, 1);
    wait_work_above(&host, 0.0, "the counter exported");
    let so = host.plugins_dir.join(format!("lib{MONITORING}.so"));

    std::fs::remove_file(&so).unwrap();
    wait_for("monitoring stopped", Duration::from_secs(20), || {
        host.plugin("monitoring")
            .filter(|p| p["state"] == "stopped")
    });
    wait_for("handles unbound", Duration::from_secs(20), || {
        let s = stats(&host);
        (s["live"] == false).then_some(s)
    });
    let made = stats(&host)["increments"].as_u64().unwrap();
    wait_for("the fixture keeps working", Duration::from_secs(20), || {
        (stats(&host)["increments"].as_u64() > Some(made)).then_some(())
    });
    assert_eq!(host.call("oot.work", &json!({})).status, 200);

    std::fs::copy(plugin_lib(MONITORING), &so).unwrap();
    monitoring_generation(&host, 2);
    wait_work_above(&host, 0.0, "the counter back in the new instance");
    assert_eq!(stats(&host)["live"], true);
    assert_eq!(host.plugin(PLUGIN).unwrap()["generation"], 1);
    no_panics(&host);
}

#[test]
fn a_stopped_plugin_loses_its_health_check_even_when_it_leaked_the_guard() {
    let host = host_with_config(true, "leak_health_guard = true\n");
    wait_health_check(&host);
    std::fs::remove_file(host.plugins_dir.join(format!("lib{OUT_OF_TREE}.so"))).unwrap();
    wait_for("fixture stopped", Duration::from_secs(20), || {
        host.plugin(PLUGIN).filter(|p| p["state"] == "stopped")
    });
    let h = host.get("/api/v1/monitoring/health?refresh=true").json();
    assert!(
        h["checks"]["custom"]["oot-ready"].is_null(),
        "the stopped plugin's check is gone: {h}"
    );
    no_panics(&host);
}
