//! Health checks end to end: states, the 200/503 mapping, custom checks,
//! timeouts, storage failure, probes and access.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{sample, wait_for, TestHost, DEMO, FAULTY, MONITORING};
use test_support::require_peer;

const QUIET_DEMO: &str = "[plugins.demo-devices]\ninterval_ms = 0\n";

#[test]
fn healthy_host_reports_every_component() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .start();
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r.json();
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["checks"]["storage"]["status"], "healthy");
    assert!(h["checks"]["storage"]["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(h["checks"]["storage"]["checked_at_ms"].as_u64().unwrap() > 0);
    for m in [
        "api",
        "storage",
        "event_bus",
        "service_registry",
        "plugin_manager",
        "logger",
    ] {
        assert_eq!(h["checks"]["modules"][m]["status"], "healthy", "{m}");
    }
    assert_eq!(h["checks"]["plugins"]["demo-devices"]["status"], "healthy");
    assert_eq!(h["checks"]["plugins"]["monitoring"]["status"], "healthy");
    assert_eq!(
        host.get("/api/v1/monitoring/health/live").json()["status"],
        "alive"
    );
    let ready = host.get("/api/v1/monitoring/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    // One component through the service.
    let one = host
        .call("monitoring.health_check", &json!({"component": "storage"}))
        .json();
    assert_eq!(one["component"], "storage");
    assert_eq!(one["result"]["status"], "healthy");
    let one = host
        .call(
            "monitoring.health_check",
            &json!({"component": "demo-devices"}),
        )
        .json();
    assert_eq!(one["component"], "plugin:demo-devices");
    assert_eq!(
        host.call("monitoring.health_check", &json!({"component": "nope"}))
            .status,
        404
    );
    let text = host.metrics();
    assert_eq!(
        sample(
            &text,
            "homeconsole_health_status",
            &[("component", "overall")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "homeconsole_health_status",
            &[("component", "storage")]
        ),
        Some(1.0)
    );
}

#[test]
fn custom_checks_map_to_200_and_503_and_publish_changes() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .admin()
        .start();
    let reg = |body: serde_json::Value| host.admin_call("monitoring.register_health_check", &body);
    assert_eq!(
        reg(json!({"name": "hub", "service": "demo.health"})).status,
        200
    );
    assert_eq!(
        reg(json!({"name": "Bad Name", "service": "demo.health"})).status,
        400
    );
    assert_eq!(
        host.get("/api/v1/monitoring/health?refresh=true").status,
        200
    );

    host.call(
        "demo.health.set",
        &json!({"status": "degraded", "message": "battery low"}),
    );
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r.json();
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["checks"]["custom"]["hub"]["message"], "battery low");

    host.call(
        "demo.health.set",
        &json!({"status": "unhealthy", "message": "hub offline"}),
    );
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["status"], "unhealthy");

    // A non-critical check only degrades the host.
    assert_eq!(
        reg(json!({"name": "hub", "service": "demo.health", "critical": false})).status,
        200
    );
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert_eq!(
        (r.status, r.json()["status"].as_str().unwrap().to_owned()),
        (200, "degraded".to_owned())
    );

    // A check whose service does not exist is unhealthy with a clear message.
    assert_eq!(
        reg(json!({"name": "ghost", "service": "no.such.service"})).status,
        200
    );
    let h = host.get("/api/v1/monitoring/health?refresh=true").json();
    assert!(
        h["checks"]["custom"]["ghost"]["message"]
            .as_str()
            .unwrap()
            .contains("no.such.service"),
        "{h}"
    );
    assert_eq!(
        host.admin_call(
            "monitoring.unregister_health_check",
            &json!({"name": "ghost"})
        )
        .status,
        200
    );
    assert_eq!(
        host.admin_call(
            "monitoring.unregister_health_check",
            &json!({"name": "ghost"})
        )
        .status,
        404
    );

    // Status changes went out on the bus.
    let text = host.metrics();
    assert!(
        sample(
            &text,
            "homeconsole_events_total",
            &[("event_type", "monitoring.health.changed")]
        )
        .unwrap()
            >= 3.0
    );
    assert_eq!(
        sample(
            &text,
            "homeconsole_health_status",
            &[("component", "custom:hub")]
        ),
        Some(0.0)
    );
}

#[test]
fn a_hanging_check_times_out_without_delaying_the_others() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[host]\ntick_interval_ms = 200\nservice_timeout_ms = 3000\n[plugins.demo-devices]\ninterval_ms = 0\n[plugins.monitoring.health]\ntimeout_secs = 1.0")
        .admin()
        .start();
    host.call(
        "demo.health.set",
        &json!({"status": "healthy", "delay_ms": 60000}),
    );
    assert_eq!(
        host.admin_call(
            "monitoring.register_health_check",
            &json!({"name": "slowpoke", "service": "demo.health"})
        )
        .status,
        200
    );
    let started = Instant::now();
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    let took = started.elapsed();
    eprintln!("health with a hanging check answered in {took:?}");
    assert!(
        took < Duration::from_millis(2900),
        "the endpoint waited for the hung check: {took:?}"
    );
    assert_eq!(r.status, 503);
    let h = r.json();
    assert_eq!(
        h["checks"]["custom"]["slowpoke"]["message"],
        "timed out after 1s"
    );
    assert_eq!(
        h["checks"]["storage"]["status"], "healthy",
        "other checks still ran"
    );
    assert_eq!(h["checks"]["plugins"]["demo-devices"]["status"], "healthy");
    // Cached results are fast.
    let started = Instant::now();
    assert_eq!(host.get("/api/v1/monitoring/health").status, 503);
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[test]
fn plugin_states_drive_health_and_readiness() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(FAULTY)
        .config("[plugins.faulty]\npanic_in = [\"start\"]")
        .start();
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert_eq!(r.status, 503, "{}", r.body);
    let h = r.json();
    assert_eq!(h["checks"]["plugins"]["faulty"]["status"], "unhealthy");
    assert!(h["checks"]["plugins"]["faulty"]["message"]
        .as_str()
        .unwrap()
        .contains("deliberate panic in start"));
    let ready = host.get("/api/v1/monitoring/health/ready");
    assert_eq!(ready.status, 503);
    assert!(ready.json()["reasons"][0]
        .as_str()
        .unwrap()
        .contains("faulty"));
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
    let text = host.metrics();
    assert_eq!(
        sample(
            &text,
            "homeconsole_plugin_state",
            &[("plugin_name", "faulty")]
        ),
        Some(-1.0)
    );
    assert_eq!(
        sample(
            &text,
            "homeconsole_health_status",
            &[("component", "plugin:faulty")]
        ),
        Some(0.0)
    );

    // A removed plugin is stopped: degraded, not unhealthy.
    std::fs::remove_file(host.plugins_dir.join("libfixture_faulty.so")).unwrap();
    wait_for("faulty stopped", Duration::from_secs(10), || {
        host.plugin("faulty").filter(|p| p["state"] == "stopped")
    });
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["checks"]["plugins"]["faulty"]["status"],
        "degraded"
    );
}

#[test]
fn health_details_can_require_the_token() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[plugins.monitoring.access]\nadmin_token = \"s3cret\"\nhealth_details_require_token = true")
        .start();
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "healthy");
    assert!(v.get("checks").is_none(), "{v}");
    let r = host.request(
        "GET",
        "/api/v1/monitoring/health",
        None,
        &[("Authorization", "Bearer s3cret")],
    );
    assert!(r.json()["checks"]["storage"].is_object());
}

/// Storage on a tiny tmpfs that we fill up: a real ENOSPC. The host runs in
/// its own user and mount namespaces with the tmpfs mounted there, so no
/// root is needed.
#[test]
fn unusable_storage_is_unhealthy_and_recovers() {
    require_peer!(crate::support::user_namespaces());
    let mnt = tempfile::tempdir().unwrap();
    // Room for the plugin-cache copy of the (debug) plugin plus the database.
    let plugin_mb = std::fs::metadata(crate::support::plugin_lib(MONITORING))
        .unwrap()
        .len()
        / (1 << 20);
    let data = mnt.path().join("data");
    let host = TestHost::builder()
        .plugin(MONITORING)
        .data_dir(&data)
        .tmpfs(mnt.path(), plugin_mb * 2 + 64)
        .start();
    assert_eq!(
        host.get("/api/v1/monitoring/health?refresh=true").status,
        200
    );

    // Fill the file system (the host's view of it).
    let filler = host.host_path(&mnt.path().join("filler"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let r = host.get("/api/v1/monitoring/health?refresh=true");
    assert_eq!(r.status, 503, "{}", r.body);
    let h = r.json();
    assert_eq!(h["checks"]["storage"]["status"], "unhealthy");
    let msg = h["checks"]["storage"]["message"].as_str().unwrap();
    assert!(
        msg.contains("No space left") || msg.contains("not writable") || msg.contains("storage"),
        "{msg}"
    );
    assert_eq!(host.get("/api/v1/monitoring/health/ready").status, 503);
    // A write through the API fails with a clear error, not a crash.
    let w = host.request(
        "PUT",
        "/api/v1/storage/http-test/big",
        Some(&format!("\"{}\"", "x".repeat(200_000))),
        &[],
    );
    assert!(w.status == 503 || w.status == 204, "{}", w.body);

    std::fs::remove_file(&filler).unwrap();
    // Storage reopens the database on the next operation; a reopen that
    // races an operation still holding the old handle is retried next time.
    let r = wait_for("storage recovered", Duration::from_secs(15), || {
        let r = host.get("/api/v1/monitoring/health?refresh=true");
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.json()["checks"]["storage"]["status"], "healthy");
}
