//! The example plugin for third-party authors does what its docs say:
//! custom metrics, a health check, spans and error reports.

use std::time::Duration;

use serde_json::json;

use crate::support::{sample, wait_for, TestHost, MONITORING};

#[test]
fn the_example_plugin_reports_metrics_health_spans_and_errors() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin("hello_observability")
        .start();
    for _ in 0..3 {
        let r = host.call("hello.greet", &json!({"name": "Ada"}));
        assert_eq!(r.json()["greeting"], "hello, Ada!", "{}", r.body);
    }
    assert_eq!(
        host.call("hello.greet", &json!({"name": "error"})).status,
        400
    );

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
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "hello_greeting_duration_seconds_count", &[]),
        Some(3.0)
    );

    // The health check registers itself once monitoring is there.
    let health = wait_for("custom check", Duration::from_secs(10), || {
        let h = host.get("/api/v1/monitoring/health?refresh=true").json();
        (h["checks"]["custom"]["hello"]["status"] == "healthy").then_some(h)
    });
    assert_eq!(
        health["checks"]["custom"]["hello"]["message"],
        "ready to greet"
    );

    // Spans: the greet span is in the same trace as the service call.
    let traces = wait_for("greet spans", Duration::from_secs(10), || {
        let t = host.get("/api/v1/monitoring/traces?limit=50").json();
        let list = t
            .as_array()
            .cloned()
            .or_else(|| t["traces"].as_array().cloned())?;
        let ids: Vec<String> = list
            .iter()
            .filter_map(|s| s["trace_id"].as_str().map(str::to_owned))
            .collect();
        ids.into_iter().find(|id| {
            host.get(&format!("/api/v1/monitoring/traces/{id}"))
                .body
                .contains("hello.greet\"")
        })
    });
    let tree = host
        .get(&format!("/api/v1/monitoring/traces/{traces}"))
        .body;
    assert!(tree.contains("hello.greet"), "{tree}");

    // The error report became an issue with its tags.
    let issues = wait_for("error issue", Duration::from_secs(10), || {
        let e = host.get("/api/v1/monitoring/errors").json();
        let list = e
            .as_array()
            .cloned()
            .or_else(|| e["issues"].as_array().cloned())?;
        list.into_iter()
            .find(|i| i["title"].as_str().unwrap_or("").contains("reserved name"))
    });
    assert_eq!(issues["count"], 1, "{issues}");
}
