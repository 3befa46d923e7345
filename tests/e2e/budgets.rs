//! Store-wide and byte budgets: what untrusted callers can make the host and
//! the monitoring plugin hold is bounded as a whole, not only per item.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{sample, wait_for, TestHost, MONITORING};

fn record(host: &TestHost, name: &str, user: usize) -> (u16, Value) {
    let r = host.call(
        "monitoring.record_metric",
        &json!({"name": name, "kind": "counter", "value": 1, "labels": {"user": format!("u{user}")}}),
    );
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

/// Custom metrics are capped store-wide (`metrics.max_series`), not only per
/// metric: many metrics each under their own limit cannot exceed it.
#[test]
fn custom_metrics_have_a_store_wide_series_budget() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[plugins.monitoring.metrics]\nmax_series_per_metric = 10\nmax_series = 25")
        .start();
    // Three metrics of 10 series each would be 30: the 26th series is refused.
    let mut accepted = 0;
    let mut refusal = None;
    for metric in ["a_total", "b_total", "c_total"] {
        for user in 0..10 {
            match record(&host, metric, user) {
                (200, _) => accepted += 1,
                (status, v) => {
                    assert_eq!(status, 400, "{v}");
                    refusal.get_or_insert(v);
                }
            }
        }
    }
    assert_eq!(accepted, 25);
    let refusal = refusal.expect("a refusal");
    let message = refusal["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("series_budget") && message.contains("25"),
        "{refusal}"
    );
    // Existing series keep counting.
    assert_eq!(record(&host, "a_total", 3).0, 200);
    let text = wait_for("the refusals counted", Duration::from_secs(10), || {
        let t = host.metrics();
        sample(
            &t,
            "homeconsole_monitoring_record_refusals_total",
            &[("reason", "series_budget")],
        )
        .filter(|v| *v == 5.0)
        .map(|_| t)
    });
    assert_eq!(
        sample(&text, "a_total", &[("user", "u3"), ("plugin", "http")]),
        Some(2.0)
    );
}
