//! The example plugin for plugin authors does what its docs (and
//! docs/instrument-your-plugin.md) say: its metric handles, its span per
//! greeting, its captured error and its health check all reach the
//! monitoring plugin through the telemetry API.

use std::time::Duration;

use serde_json::{json, Value};

use crate::errors::{detail, wait_issue, ADMIN};
use crate::metrics::assert_promtool_clean;
use crate::support::{sample, wait_for, TestHost, MONITORING};
use crate::tracing::flatten;

#[test]
fn the_example_plugin_reports_metrics_health_spans_and_errors() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin("hello_observability")
        .config(ADMIN)
        .start();
    // The health check, registered through the telemetry API in `start`.
    let health = wait_for("custom check", Duration::from_secs(10), || {
        let h = host.get("/api/v1/monitoring/health?refresh=true").json();
        (h["checks"]["custom"]["hello"]["status"] == "healthy").then_some(h)
    });
    assert_eq!(
        health["checks"]["custom"]["hello"]["details"]["registered_by"], "hello-observability",
        "{health}"
    );
    assert_eq!(
        health["checks"]["custom"]["hello"]["message"], "ready to greet",
        "{health}"
    );

    for _ in 0..3 {
        let r = host.call("hello.greet", &json!({"name": "Ada"}));
        assert_eq!(r.json()["greeting"], "hello, Ada!", "{}", r.body);
    }
    assert_eq!(
        host.call("hello.greet", &json!({"name": "error"})).status,
        400
    );

    // The handles' series: counters by outcome, the histogram with the
    // example's own buckets, and promtool has nothing to say about them.
    let text = wait_for("custom metrics", Duration::from_secs(10), || {
        let t = host.metrics();
        (sample(&t, "hello_greetings_total", &[("outcome", "ok")]) == Some(3.0)).then_some(t)
    });
    assert_eq!(
        sample(
            &text,
            "hello_greetings_total",
            &[("outcome", "refused"), ("plugin", "hello-observability")]
        ),
        Some(1.0),
        "the monitoring plugin labels a handle's series with its plugin:\n{text}"
    );
    assert_eq!(
        sample(&text, "hello_greeting_duration_seconds_count", &[]),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "hello_greeting_duration_seconds_bucket",
            &[("le", "0.0025")]
        ),
        Some(3.0),
        "the example's buckets, not the default ones:\n{text}"
    );
    let handles: String = text
        .lines()
        .filter(|l| l.contains("hello_greet"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_promtool_clean(&handles);

    // The span of each greeting, in the trace of its service call, with
    // the attributes and status the plugin set.
    let greet_spans = wait_for("greet spans", Duration::from_secs(10), || {
        let list = host.get("/api/v1/monitoring/traces?limit=100").json();
        let found: Vec<Value> = list["traces"]
            .as_array()?
            .iter()
            .filter_map(|t| t["trace_id"].as_str())
            .flat_map(|id| flatten(&host.get(&format!("/api/v1/monitoring/traces/{id}")).json()))
            .filter(|s| s["name"] == "hello.greet" && s["attributes"]["hello.name"].is_string())
            .collect();
        (found.len() == 4).then_some(found)
    });
    let ok = greet_spans
        .iter()
        .find(|s| s["attributes"]["hello.name"] == "Ada")
        .expect("a greeting of Ada");
    assert_eq!(ok["status"]["code"], "ok", "{ok}");
    assert_eq!(ok["kind"], "internal", "{ok}");
    assert_eq!(ok["plugin"], "hello-observability", "{ok}");
    assert_eq!(ok["attributes"]["hello.length"], 11, "{ok}");
    assert_eq!(ok["attributes"]["hello.caller"], "http", "{ok}");
    assert!(
        !ok["parent_span_id"].is_null() && ok["orphan"] != true,
        "a child of the service call's span: {ok}"
    );
    let refused = greet_spans
        .iter()
        .find(|s| s["attributes"]["hello.name"] == "error")
        .expect("the refused greeting");
    assert_eq!(refused["status"]["code"], "error", "{refused}");
    assert_eq!(refused["status"]["message"], "reserved name", "{refused}");

    // The captured error: an issue with its tags, linked to the span's trace.
    // (The host reports the failed service call as an issue of its own,
    // "service hello.greet: …"; this is the plugin's capture.)
    let issue = wait_issue(&host, "the captured error", |i| {
        i["title"] == "cannot greet a reserved name"
    });
    assert_eq!(issue["count"], 1, "{issue}");
    let d = detail(&host, issue["id"].as_str().unwrap());
    let sample0 = &d["samples"][0];
    assert_eq!(sample0["tags"]["name"], "error", "{d}");
    assert_eq!(sample0["tags"]["reason"], "reserved", "{d}");
    assert_eq!(
        sample0["trace_id"].as_str().map(str::len),
        Some(32),
        "linked to the greeting's trace: {d}"
    );
}
