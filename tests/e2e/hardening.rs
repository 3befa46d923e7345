//! Faults beside the monitoring plugin: a plugin that panics in every
//! callback, and one that hangs in every callback, must not stop the host
//! or the monitoring plugin from serving.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{sample, wait_for, TestHost, DEMO, FAULTY, MONITORING};

fn assert_monitoring_serves(host: &TestHost) {
    for _ in 0..3 {
        let t = Instant::now();
        let m = host.get("/api/v1/monitoring/metrics");
        assert_eq!(m.status, 200);
        assert!(m.body.contains("homeconsole_build_info"));
        let h = host.get("/api/v1/monitoring/health");
        assert!(h.status == 200 || h.status == 503, "{}", h.body);
        assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
        assert_eq!(
            host.call("demo.light.toggle", &json!({"device": "light1"}))
                .status,
            200
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "monitoring slowed down: {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_plugin_panicking_everywhere_beside_monitoring() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .plugin(FAULTY)
        // `*` panics in every callback except `new` (so it loads) and `start`.
        .config("[plugins.demo-devices]\ninterval_ms = 50\n[plugins.faulty]\npanic_in = [\"handle_service\", \"handle_http\", \"on_event\", \"on_observations\", \"tick\", \"health\", \"stop\"]")
        .start();
    for i in 0..20 {
        host.call("faulty.call", &json!({}));
        host.get("/api/v1/faulty");
        host.post(&format!("/api/v1/events/faulty.p{i}"), "{}");
    }
    assert_monitoring_serves(&host);
    let text = host.metrics();
    assert_eq!(
        sample(
            &text,
            "homeconsole_plugin_state",
            &[("plugin_name", "faulty")]
        ),
        Some(-1.0)
    );
    assert!(
        sample(&text, "homeconsole_errors_total", &[("plugin", "faulty")]).unwrap_or(0.0) >= 1.0
    );
}

#[test]
fn a_plugin_hanging_everywhere_beside_monitoring() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .plugin(FAULTY)
        .config(
            "[host]\ntick_interval_ms = 200\ncallback_timeout_ms = 800\nservice_timeout_ms = 800\n\
             [plugins.demo-devices]\ninterval_ms = 50\n\
             [plugins.faulty]\nhang_in = [\"handle_service\", \"handle_http\", \"on_event\", \"on_observations\", \"tick\", \"health\"]",
        )
        .start();
    for i in 0..5 {
        host.call("faulty.call", &json!({}));
        host.post(&format!("/api/v1/events/faulty.h{i}"), "{}");
    }
    wait_for("faulty circuit open", Duration::from_secs(15), || {
        host.plugin("faulty")
            .filter(|p| p["circuit"]["state"] == "open")
    });
    assert_monitoring_serves(&host);
    // Observations keep flowing to monitoring (its own queue is separate).
    let before = sample(
        &host.metrics(),
        "homeconsole_monitoring_observations_total",
        &[],
    )
    .unwrap();
    host.call("demo.light.toggle", &json!({"device": "light2"}));
    wait_for(
        "observations still processed",
        Duration::from_secs(10),
        || {
            (sample(
                &host.metrics(),
                "homeconsole_monitoring_observations_total",
                &[],
            )
            .unwrap()
                > before)
                .then_some(())
        },
    );
}
