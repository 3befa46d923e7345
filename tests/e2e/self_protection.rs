//! The monitoring plugin protects itself: nothing a client of its HTTP API
//! can trigger keeps one of its callbacks past the host's deadline (which
//! would mark the monitoring plugin as failing and cut off its metrics and
//! health endpoints for everyone).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{wait_for, TestHost, DEMO, MONITORING};

/// Registers `name` → `demo.health` and waits until a round has run it.
fn register_demo_check(host: &TestHost, name: &str) {
    let reg = host.admin_call(
        "monitoring.register_health_check",
        &json!({"name": name, "service": "demo.health", "critical": false}),
    );
    assert_eq!(reg.status, 200, "{}", reg.body);
    wait_for(
        "the custom check in a round",
        Duration::from_secs(30),
        || {
            let r = host.get("/api/v1/monitoring/health?refresh=true");
            r.body.contains(name).then_some(())
        },
    );
}

/// Makes every check of `demo.health` take `delay_ms`.
fn slow_down_demo_health(host: &TestHost, delay_ms: u64) {
    let set = host.call(
        "demo.health.set",
        &json!({"status": "healthy", "delay_ms": delay_ms}),
    );
    assert_eq!(set.status, 200, "{}", set.body);
}

fn assert_monitoring_still_serves(host: &TestHost) {
    let monitoring = host.plugin("monitoring").expect("monitoring listed");
    assert_eq!(monitoring["state"], "started", "{monitoring}");
    assert_eq!(host.get("/api/v1/monitoring/metrics").status, 200);
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
}

/// A burst of `/health?refresh=true` while a custom check hangs: the
/// refreshes share the round in flight and none waits past the host's
/// deadline, so monitoring keeps serving afterwards.
#[test]
fn a_burst_of_health_refreshes_with_a_hung_check() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .admin()
        .start();
    register_demo_check(&host, "hung-hub");
    slow_down_demo_health(&host, 20_000);

    let answers: Vec<(u16, Duration, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(|| {
                    let t = Instant::now();
                    let r = host.get("/api/v1/monitoring/health?refresh=true");
                    (r.status, t.elapsed(), r.body)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (status, took, body) in &answers {
        assert!(
            (*status == 200 || *status == 503) && body.contains("\"checks\""),
            "a refresh failed after {took:?} ({status}): {body}"
        );
    }
    assert_monitoring_still_serves(&host);
}

/// A refresh while a custom check hangs past the host's deadline (even with
/// a check timeout longer than it): the caller gets the previous snapshot,
/// marked `refresh_pending`, before the deadline.
#[test]
fn a_refresh_never_waits_past_the_callback_deadline() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .admin()
        .config("[plugins.monitoring.health]\ntimeout_secs = 30.0\n")
        .start();
    register_demo_check(&host, "stuck-hub");
    slow_down_demo_health(&host, 20_000);
    let t = Instant::now();
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert!(
        (r.status == 200 || r.status == 503) && r.body.contains("\"checks\""),
        "refresh failed after {:?}: {} {}",
        t.elapsed(),
        r.status,
        r.body
    );
    assert_eq!(r.json()["refresh_pending"], true, "{}", r.body);
    assert_monitoring_still_serves(&host);
}

/// `/alerts`, `/rules` and `/status` answer from a published view: they do
/// not wait while the alerting state is busy (here: a reload of hundreds of
/// rules, which holds it the way a long tick does).
#[test]
fn alerts_and_rules_answer_while_the_rules_reload() {
    let rules = tempfile::tempdir().unwrap();
    // About 1.5 s of reloading in a debug build (regex compilation dominates).
    for file in 0..4 {
        let mut text = String::from("groups:\n");
        for group in 0..5 {
            text.push_str(&format!("  - name: g{file}_{group}\n    rules:\n"));
            for rule in 0..15 {
                text.push_str(&format!(
                    "      - alert: A{file}_{group}_{rule}\n        expr: sum by (service_name) (rate(homeconsole_service_calls_total{{status=\"error\", service_name=~\"x{rule}.*\"}}[5m])) > {rule}\n        for: 1m\n        annotations:\n          summary: \"{{{{ $labels.service_name }}}} fails at {{{{ $value }}}}\"\n"
                ));
            }
        }
        std::fs::write(rules.path().join(format!("r{file}.yml")), text).unwrap();
    }
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(&format!(
            "[plugins.monitoring.access]\nadmin_token = \"adm\"\n[plugins.monitoring.alerting]\nrules_dir = {:?}\n",
            rules.path().display().to_string()
        ))
        .start();
    let loaded = wait_for("the rules loaded", Duration::from_secs(60), || {
        let r = host.get("/api/v1/monitoring/rules");
        (r.status == 200).then(|| r.json())
    });
    assert!(
        loaded["groups"].as_array().map_or(0, Vec::len) >= 20,
        "{}",
        &loaded.to_string()[..300.min(loaded.to_string().len())]
    );
    for _ in 0..3 {
        let done = std::sync::atomic::AtomicBool::new(false);
        let (reload, answered_meanwhile) = std::thread::scope(|scope| {
            let reload = scope.spawn(|| {
                let t = Instant::now();
                let r = host.request(
                    "POST",
                    "/api/v1/monitoring/rules/reload",
                    Some("{}"),
                    &[("authorization", "Bearer adm")],
                );
                done.store(true, std::sync::atomic::Ordering::Release);
                (r.status, t.elapsed())
            });
            let mut answered = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                for path in ["alerts", "rules", "status"] {
                    let r = host.get(&format!("/api/v1/monitoring/{path}"));
                    assert_eq!(r.status, 200, "{path}: {}", r.body);
                }
                if !done.load(std::sync::atomic::Ordering::Acquire) {
                    answered += 1;
                }
            }
            (reload.join().unwrap(), answered)
        });
        assert_eq!(reload.0, 200, "reload failed");
        eprintln!(
            "reload took {:?}; /alerts + /rules + /status answered {answered_meanwhile} times meanwhile",
            reload.1
        );
        // Readers that waited for the reload would answer at most once
        // (a request sent just before the reload took the state).
        assert!(
            answered_meanwhile >= 2,
            "readers waited for the reload ({:?}): answered {answered_meanwhile} times",
            reload.1
        );
    }
}
