//! Store-wide and byte budgets: what untrusted callers can make the host and
//! the monitoring plugin hold is bounded as a whole, not only per item.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{sample, wait_for, TestHost, FAULTY, MONITORING};

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

/// A subscriber that does not keep up holds at most `event_queue_bytes` of
/// events, however large they are: a handful of 400 kB events fill the
/// budget long before the 1,024-event capacity, and the rest are dropped
/// and counted.
#[test]
fn event_queues_are_bounded_in_bytes() {
    let host = TestHost::builder()
        .plugin(FAULTY)
        .config("[host]\ntick_interval_ms = 200\nevent_queue_bytes = 2097152\n[plugins.faulty]\nhang_in = [\"on_event\"]")
        .start();
    let payload = format!("\"{}\"", "x".repeat(400_000));
    for i in 0..20 {
        let r = host.post(&format!("/api/v1/events/faulty.big{i}"), &payload);
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let info = host.get("/api/v1/host").json();
    let queue = info["event_queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["plugin"] == "faulty"))
        .cloned()
        .unwrap_or_else(|| panic!("no faulty queue in {info}"));
    let queued_bytes = queue["queued_bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(queued_bytes <= 2_097_152, "{queue}");
    // 20 × 400 kB = 8 MB offered, 2 MiB kept: at least 14 dropped (one
    // event may sit in the hung handler, out of the queue).
    assert!(queue["dropped"].as_u64().unwrap_or(0) >= 14, "{queue}");
    assert!(queue["queued"].as_u64().unwrap_or(0) >= 3, "{queue}");
}
