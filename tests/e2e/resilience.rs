//! Resilience end to end: a plugin that is slow or hung once recovers on
//! its own (circuit breaker: open while hung, half-open after a cooldown,
//! closed on a good trial call), one hung plugin cannot take more than its
//! bulkhead of threads, and a plugin calling itself through the host gets
//! a clear depth error naming the chain instead of exhausting the pool.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{sample, wait_for, TestHost, DEMO, FAULTY, MONITORING};

/// Small deadlines and cooldowns so a breaker cycle takes seconds. The
/// callback deadline also bounds every plugin's `start`: keep it well above
/// what a loaded machine needs to start the monitoring plugin.
fn fast(service_timeout_ms: u64, callback_timeout_ms: u64) -> String {
    format!(
        "[host]\ntick_interval_ms = 200\nservice_timeout_ms = {service_timeout_ms}\n\
         callback_timeout_ms = {callback_timeout_ms}\n\
         [host.resilience]\ncooldown_ms = 300\ncooldown_max_ms = 1000\n\
         [plugins.demo-devices]\ninterval_ms = 0"
    )
}

fn circuit(host: &TestHost, plugin: &str) -> Value {
    host.plugin(plugin).expect("plugin listed")["circuit"].clone()
}

fn wait_circuit(host: &TestHost, plugin: &str, state: &str, max: Duration) -> Value {
    wait_for(&format!("{plugin} circuit {state}"), max, || {
        let c = circuit(host, plugin);
        (c["state"] == state).then_some(c)
    })
}

fn error_message(r: &crate::support::Resp) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_service_slow_once_opens_the_circuit_which_closes_again_after_it_returned() {
    let host = TestHost::builder()
        .plugin(FAULTY)
        .plugin(DEMO)
        .plugin(MONITORING)
        .config(&fast(1_500, 5_000))
        .config("[plugins.faulty]\nslow_once = { handle_service = 7000 }")
        .start();
    assert_eq!(circuit(&host, "faulty")["state"], "closed");

    // The slow call times out; it is still running, so the circuit is open.
    let r = host.call("faulty.call", &json!({}));
    assert_eq!(r.status, 504, "{}", r.body);
    let c = wait_circuit(&host, "faulty", "open", Duration::from_secs(5));
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.contains("hung in handle_service (faulty.call)"),
        "{c}"
    );
    // A hung call is not a life-cycle failure.
    assert_eq!(host.plugin("faulty").unwrap()["state"], "started");

    // While it is hung, calls are refused at once, saying why and when.
    let r = host.call("faulty.call", &json!({}));
    assert_eq!(r.status, 503, "{}", r.body);
    let msg = error_message(&r);
    assert!(msg.contains("circuit has been open for"), "{msg}");
    assert!(msg.contains("hung in handle_service"), "{msg}");
    assert!(msg.contains("waiting for 1 hung call to return"), "{msg}");
    // Other plugins are unaffected.
    assert_eq!(
        host.call("demo.light.toggle", &json!({"device": "light1"}))
            .status,
        200
    );
    // Visible as a metric and as internal.plugin.circuit events.
    wait_for("circuit gauge at 2", Duration::from_secs(10), || {
        let text = host.metrics();
        (sample(
            &text,
            "homeconsole_plugin_circuit_state",
            &[("plugin_name", "faulty")],
        ) == Some(2.0))
        .then_some(())
    });

    // Once the slow call returned and the cooldown passed, a trial call
    // goes through and closes the circuit: calls succeed again.
    let ok = wait_for(
        "faulty.call answering again",
        Duration::from_secs(30),
        || {
            let r = host.call("faulty.call", &json!({}));
            (r.status == 200).then_some(r)
        },
    );
    assert_eq!(ok.json()["ok"], true);
    let c = circuit(&host, "faulty");
    assert_eq!(c["state"], "closed", "{c}");
    assert_eq!(c["opened_total"], 1, "{c}");
    assert!(c["rejected_total"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(c["hung_calls"], 0, "{c}");
    for _ in 0..3 {
        assert_eq!(host.call("faulty.call", &json!({})).status, 200);
    }
    wait_for("circuit events and gauge", Duration::from_secs(10), || {
        let text = host.metrics();
        let events = sample(
            &text,
            "homeconsole_events_total",
            &[("event_type", "internal.plugin.circuit")],
        )
        .unwrap_or(0.0);
        let gauge = sample(
            &text,
            "homeconsole_plugin_circuit_state",
            &[("plugin_name", "faulty")],
        );
        let refused = sample(
            &text,
            "homeconsole_plugin_calls_refused_total",
            &[("plugin", "faulty"), ("reason", "circuit_open")],
        )
        .unwrap_or(0.0);
        // open, half-open, closed.
        (events >= 3.0 && gauge == Some(0.0) && refused >= 1.0).then_some(())
    });
    let logs = host.json_logs();
    let states: Vec<&str> = logs
        .iter()
        .filter(|l| l["target"] == "circuit" && l["fields"]["name"] == "faulty")
        .filter_map(|l| l["fields"]["state"].as_str())
        .collect();
    assert_eq!(states, ["open", "half_open", "closed"], "{states:?}");
}

#[test]
fn a_health_callback_hung_once_opens_the_circuit_until_it_returns() {
    let host = TestHost::builder()
        .plugin(FAULTY)
        .plugin(DEMO)
        .config(&fast(1_500, 1_000))
        .config("[plugins.faulty]\nslow_once = { health = 5000 }")
        .start();
    // The hung health call makes the host refuse calls to faulty, saying why.
    let r = wait_for("faulty.call refused", Duration::from_secs(10), || {
        let r = host.call("faulty.call", &json!({}));
        (r.status == 503).then_some(r)
    });
    let msg = error_message(&r);
    assert!(msg.contains("hung in health"), "{msg}");
    assert!(msg.contains("circuit has been open for"), "{msg}");
    // Once it returned and the cooldown passed, one trial call (the next
    // tick, or a caller's) closes the circuit: calls are served again.
    wait_for(
        "faulty.call answering again",
        Duration::from_secs(30),
        || (host.call("faulty.call", &json!({})).status == 200).then_some(()),
    );
    let p = host.plugin("faulty").unwrap();
    assert_eq!(p["state"], "started", "{p}");
    assert_eq!(p["circuit"]["state"], "closed", "{p}");
    assert_eq!(p["circuit"]["opened_total"], 1, "{p}");
    assert!(
        p["circuit"]["reason"]
            .as_str()
            .unwrap()
            .contains("hung in health"),
        "{p}"
    );
}

#[test]
fn a_custom_health_check_hung_once_recovers_and_monitoring_keeps_serving() {
    let host = TestHost::builder()
        .plugin(FAULTY)
        .plugin(MONITORING)
        .config(&fast(1_000, 5_000))
        .config(
            "[plugins.faulty]\nslow_once = { handle_service = 4000 }\nregister_health_check = \"faulty.call\"\n\
             [plugins.monitoring.health]\ninterval_secs = 1",
        )
        .start();
    // The first health round's call to faulty.call hangs: the host refuses
    // calls to faulty (its circuit opens; the monitoring plugin's does not).
    let r = wait_for("faulty.call refused", Duration::from_secs(30), || {
        let r = host.call("faulty.call", &json!({}));
        (r.status == 503).then_some(r)
    });
    let msg = error_message(&r);
    assert!(
        msg.contains("hung in handle_service (faulty.call)"),
        "{msg}"
    );
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
    assert_eq!(host.get("/api/v1/monitoring/metrics").status, 200);
    // Later rounds (or a trial call) find it answering again.
    wait_for(
        "custom check faulty healthy again",
        Duration::from_secs(40),
        || {
            let h = host.get("/api/v1/monitoring/health?refresh=true").json();
            (h["checks"]["custom"]["faulty"]["status"] == "healthy"
                && host.call("faulty.call", &json!({})).status == 200)
                .then_some(())
        },
    );
    assert_eq!(circuit(&host, "faulty")["state"], "closed");
    assert_eq!(circuit(&host, "monitoring")["state"], "closed");
}

#[test]
fn a_burst_of_slow_health_refreshes_does_not_disable_monitoring_for_good() {
    // Every round waits 2.5 s for the custom check, longer than the
    // monitoring plugin's 1 s HTTP deadline.
    let host = std::sync::Arc::new(
        TestHost::builder()
            .plugin(FAULTY)
            .plugin(MONITORING)
            .config(
                "[host]\ntick_interval_ms = 200\nservice_timeout_ms = 5000\ncallback_timeout_ms = 1000\n\
                 [host.resilience]\ncooldown_ms = 300\ncooldown_max_ms = 1000\n\
                 [plugins.faulty]\nregister_health_check = \"faulty.sleep\"\nsleep_ms = 2500\n\
                 [plugins.monitoring.health]\ninterval_secs = 3600\ntimeout_secs = 4",
            )
            .start(),
    );
    wait_for("custom check registered", Duration::from_secs(20), || {
        let s = host.get("/api/v1/monitoring/status");
        (s.status == 200 && s.body.contains("faulty.sleep")).then_some(())
    });
    let burst: Vec<_> = (0..5)
        .map(|_| {
            let host = host.clone();
            std::thread::spawn(move || host.get("/api/v1/monitoring/health?refresh=true").status)
        })
        .collect();
    for t in burst {
        let status = t.join().unwrap();
        assert!([200, 503, 504].contains(&status), "{status}");
    }
    // Whatever the burst did to the monitoring plugin, it serves again on
    // its own (its circuit, if it opened, closes after the slow rounds).
    // Serving again means for good: three rounds in a row, 300 ms apart.
    wait_for("monitoring serving again", Duration::from_secs(30), || {
        (0..3)
            .all(|_| {
                std::thread::sleep(Duration::from_millis(300));
                host.get("/api/v1/monitoring/health/live").status == 200
                    && host.get("/api/v1/monitoring/metrics").status == 200
            })
            .then_some(())
    });
    assert_eq!(host.get("/api/v1/monitoring/metrics").status, 200);
    assert_eq!(circuit(&host, "monitoring")["state"], "closed");
}

#[test]
fn a_plugin_calling_itself_3000_deep_gets_a_depth_error_naming_the_chain() {
    let host = TestHost::builder()
        .plugin(FAULTY)
        .plugin(DEMO)
        // A generous deadline: the depth error, not a timeout, must end it.
        .config("[host]\nservice_timeout_ms = 20000\n[plugins.demo-devices]\ninterval_ms = 0")
        .start();
    // A legitimate nested chain works.
    let r = host.call("faulty.recurse", &json!({"depth": 5}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["reached"], true);

    let r = host.call("faulty.recurse", &json!({"depth": 3000}));
    assert_eq!(r.status, 500, "{}", r.body);
    let msg = error_message(&r);
    assert!(
        msg.starts_with("call depth limit 16 reached calling faulty.recurse: faulty → faulty → faulty → … (11 more) … → faulty → faulty → faulty"),
        "{msg}"
    );
    // The host keeps serving, and the plugin too (a depth error is the
    // chain's fault, not a hang: the circuit stays closed).
    assert_eq!(
        host.call("demo.light.toggle", &json!({"device": "light1"}))
            .status,
        200
    );
    assert_eq!(host.call("faulty.call", &json!({})).status, 200);
    let p = host.plugin("faulty").unwrap();
    assert_eq!(p["circuit"]["state"], "closed", "{p}");
    assert_eq!(p["bulkhead"]["depth_rejected_total"], 1, "{p}");
    wait_for("no call left in flight", Duration::from_secs(10), || {
        (host.plugin("faulty").unwrap()["bulkhead"]["in_flight"] == 0).then_some(())
    });
}

#[test]
fn callers_beyond_the_bulkhead_of_a_busy_plugin_are_refused_at_once() {
    let host = std::sync::Arc::new(
        TestHost::builder()
            .plugin(FAULTY)
            .plugin(DEMO)
            .config(
                "[host]\ntick_interval_ms = 200\nservice_timeout_ms = 8000\n\
                 [host.resilience]\nmax_in_flight = 4\n[plugins.demo-devices]\ninterval_ms = 0",
            )
            .start(),
    );
    let callers: Vec<_> = (0..12)
        .map(|_| {
            let host = host.clone();
            std::thread::spawn(move || host.call("faulty.sleep", &json!({"ms": 5000})))
        })
        .collect();
    // While the plugin is busy: at most 4 calls in flight, refusals
    // counted, and other plugins still answer.
    let p = wait_for("bulkhead refusals", Duration::from_secs(10), || {
        let p = host.plugin("faulty").unwrap();
        (p["bulkhead"]["rejected_total"].as_u64().unwrap_or(0) >= 1).then_some(p)
    });
    assert!(p["bulkhead"]["in_flight"].as_u64().unwrap() <= 4, "{p}");
    assert_eq!(p["bulkhead"]["cap"], 4, "{p}");
    assert_eq!(
        host.call("demo.light.toggle", &json!({"device": "light1"}))
            .status,
        200
    );
    let responses: Vec<_> = callers.into_iter().map(|t| t.join().unwrap()).collect();
    let refused: Vec<_> = responses.iter().filter(|r| r.status == 503).collect();
    let served = responses.iter().filter(|r| r.status == 200).count();
    assert_eq!(refused.len() + served, 12, "{responses:?}");
    assert!(!refused.is_empty() && served >= 1, "{responses:?}");
    for r in &refused {
        assert_eq!(
            error_message(r),
            "too many calls in flight to plugin faulty (cap 4); the call was refused without waiting"
        );
    }
    let p = host.plugin("faulty").unwrap();
    assert_eq!(
        p["bulkhead"]["rejected_total"].as_u64().unwrap(),
        refused.len() as u64,
        "{p}"
    );
    // Busy, not hung: the circuit never opened.
    assert_eq!(p["circuit"]["state"], "closed", "{p}");
}
