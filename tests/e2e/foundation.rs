//! The foundation: loading, hot reload, fault containment, bus, storage,
//! shutdown.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{plugin_lib, sample, wait_for, TestHost, DEMO, FAULTY, MONITORING};

const QUIET_DEMO: &str = "[plugins.demo-devices]\ninterval_ms = 0\n";

#[test]
fn loads_plugins_and_serves_the_api() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .start();
    for name in ["monitoring", "demo-devices"] {
        let p = host.plugin(name).unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!(p["state"], "started", "{p}");
        assert_eq!(p["generation"], 1);
        assert_eq!(p["abi_version"], "0.2.0");
    }
    let modules = host.get("/api/v1/modules").json();
    let names: Vec<&str> = modules["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in [
        "api",
        "storage",
        "event_bus",
        "service_registry",
        "plugin_manager",
        "logger",
    ] {
        assert!(names.contains(&m), "{names:?}");
    }
    assert_eq!(
        host.get("/api/v1/modules/storage").json()["details"]["probe"]["ok"],
        true
    );
    assert_eq!(host.get("/api/v1/modules/nope").status, 404);

    let services = host.get("/api/v1/services").json();
    let svc: Vec<&str> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for s in [
        "demo.light.toggle",
        "monitoring.record_metric",
        "monitoring.health_check",
        "monitoring.register_health_check",
    ] {
        assert!(svc.contains(&s), "{svc:?}");
    }

    let r = host.call("demo.light.toggle", &json!({"device": "light1"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"device": "light1", "on": true}));
    let r = host.call("demo.light.get", &json!({"device": "light1"}));
    assert_eq!(r.json()["on"], true);

    // Errors are JSON with a clear message.
    let r = host.call("no.such.service", &json!({}));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no.such.service"));
    let r = host.post("/api/v1/services/demo.light.toggle", "{not json");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{}",
        r.body
    );
    let r = host.call("demo.light.toggle", &json!({"device": "nope"}));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = host.call("demo.fail", &json!({}));
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["kind"], "failed");
    let r = host.get("/api/v1/nothing/here");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["kind"], "not_found");
    let r = host.request("DELETE", "/api/v1/plugins", None, &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"]["kind"], "method_not_allowed");
    let r = host.request("POST", "/api/v1/monitoring/metrics", Some("{}"), &[]);
    assert_eq!(r.status, 405, "{}", r.body);

    // A plugin route, and a plugin's log line arriving through the ABI.
    assert_eq!(
        host.get("/api/v1/demo/devices").json()["lights"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let logs = host.json_logs();
    assert!(
        logs.iter().any(|l| l["plugin"] == "demo-devices"
            && l["message"] == "demo devices started"
            && l["level"] == "info"),
        "plugin log line missing"
    );
    assert!(logs
        .iter()
        .all(|l| l["timestamp"].is_string() && l["target"].is_string()));
}

#[test]
fn hot_loads_replaces_and_removes_a_plugin() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(QUIET_DEMO)
        .start();
    assert!(host.plugin("demo-devices").is_none());

    // New file: loaded and started.
    let started = Instant::now();
    std::fs::copy(
        plugin_lib(DEMO),
        host.plugins_dir.join("libdemo_devices.so"),
    )
    .unwrap();
    wait_for("demo loaded", Duration::from_secs(10), || {
        host.plugin("demo-devices")
            .filter(|p| p["state"] == "started")
    });
    let took = started.elapsed();
    eprintln!("hot load took {took:?}");
    assert!(took < Duration::from_secs(5), "hot load took {took:?}");
    assert_eq!(
        host.call("demo.light.toggle", &json!({"device": "light2"}))
            .status,
        200
    );

    // Replaced file (a rebuilt plugin): a new generation, no duplicate registration.
    let tmp = host.plugins_dir.join(".incoming.tmp");
    std::fs::copy(plugin_lib(DEMO), &tmp).unwrap();
    std::fs::rename(&tmp, host.plugins_dir.join("libdemo_devices.so")).unwrap();
    let p = wait_for("generation 2", Duration::from_secs(10), || {
        host.plugin("demo-devices")
            .filter(|p| p["generation"] == 2 && p["state"] == "started")
    });
    assert!(p["error"].is_null(), "{p}");
    let r = host.call("demo.light.get", &json!({"device": "light2"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["on"], true, "state in storage survives the reload");
    let logs = host.json_logs();
    assert!(logs.iter().any(|l| l["message"] == "plugin stopped"
        && l["fields"]["reason"] == "replaced by a new generation"));
    assert!(
        !host.logs().iter().any(|l| l.contains("already registered")),
        "duplicate registration"
    );
    let services = host.get("/api/v1/services").json();
    let toggles = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "demo.light.toggle")
        .count();
    assert_eq!(toggles, 1);

    // Removed file: stopped, services and routes gone.
    std::fs::remove_file(host.plugins_dir.join("libdemo_devices.so")).unwrap();
    wait_for("demo stopped", Duration::from_secs(10), || {
        host.plugin("demo-devices")
            .filter(|p| p["state"] == "stopped")
    });
    assert_eq!(
        host.call("demo.light.toggle", &json!({"device": "light2"}))
            .status,
        404
    );
    assert_eq!(host.get("/api/v1/demo/devices").status, 404);
    // The host keeps serving.
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
}

#[test]
fn a_file_still_being_written_is_not_loaded_half_way() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[host]\ntick_interval_ms = 200\nplugin_settle_ms = 600\n[plugins.demo-devices]\ninterval_ms = 0")
        .start();
    let bytes = std::fs::read(plugin_lib(DEMO)).unwrap();
    let target = host.plugins_dir.join("libdemo_devices.so");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&target).unwrap();
        let chunk = bytes.len() / 4 + 1;
        for part in bytes.chunks(chunk) {
            f.write_all(part).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let p = wait_for("demo loaded", Duration::from_secs(10), || {
        host.plugin("demo-devices")
            .filter(|p| p["state"] == "started")
    });
    assert_eq!(p["generation"], 1, "{p}");
    assert!(
        !host
            .logs()
            .iter()
            .any(|l| l.contains("plugin failed to load")),
        "a partial file was loaded:\n{}",
        host.logs().join("\n")
    );
}

#[test]
fn broken_and_incompatible_files_are_contained() {
    let host = TestHost::builder().plugin(MONITORING).start();
    std::fs::write(
        host.plugins_dir.join("garbage.so"),
        b"this is not an ELF shared library",
    )
    .unwrap();
    std::fs::copy(
        plugin_lib("fixture_wrong_abi_version"),
        host.plugins_dir.join("libwrong_abi.so"),
    )
    .unwrap();
    std::fs::copy(
        plugin_lib("fixture_changed_layout"),
        host.plugins_dir.join("libchanged_layout.so"),
    )
    .unwrap();
    // A real shared library that is not an abi_stable plugin (the C library).
    std::fs::copy(
        test_support::system_library(),
        host.plugins_dir.join("libnot_a_plugin.so"),
    )
    .unwrap();

    let wait_error = |stem: &str| {
        wait_for(&format!("{stem} in error"), Duration::from_secs(10), || {
            host.get("/api/v1/plugins").json()["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["file"].as_str().unwrap_or("").ends_with(stem) && p["state"] == "error")
                .cloned()
        })
    };
    let garbage = wait_error("garbage.so");
    let msg = garbage["error"].as_str().unwrap();
    assert!(
        msg.contains("garbage.so") && msg.contains("not a loadable shared library"),
        "{msg}"
    );

    let np = wait_error("libnot_a_plugin.so");
    let msg = np["error"].as_str().unwrap();
    assert!(
        msg.contains("not a HomeConsole plugin")
            && msg.contains(abi_stable::library::ROOT_MODULE_LOADER_NAME),
        "the pre-flight names the missing root-module symbol: {msg}"
    );

    let wrong = wait_error("libwrong_abi.so");
    let msg = wrong["error"].as_str().unwrap();
    assert!(msg.contains("incompatible ABI version"), "{msg}");
    assert!(
        msg.contains("0.2.0") && msg.contains("0.3.0"),
        "expected and found versions: {msg}"
    );
    assert!(msg.len() < 500, "short message: {msg}");

    let layout = wait_error("libchanged_layout.so");
    let msg = layout["error"].as_str().unwrap();
    assert!(
        msg.contains("libchanged_layout.so") && msg.contains("incompatible ABI"),
        "{msg}"
    );
    assert!(
        msg.len() < 600,
        "short message ({} bytes): {msg}",
        msg.len()
    );

    // The errors are in the log too, and the host keeps serving.
    let logs = host.json_logs();
    let failures = logs
        .iter()
        .filter(|l| l["message"] == "plugin failed to load")
        .count();
    assert!(failures >= 3, "{failures}");
    assert_eq!(host.plugin("monitoring").unwrap()["state"], "started");
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
}

#[test]
fn a_failing_constructor_is_an_error_state() {
    let host = TestHost::builder()
        .plugin(DEMO)
        .config("[plugins.demo-devices]\nfail_ratio = 2.0")
        .start();
    let p = host.plugin("demo-devices").unwrap();
    assert_eq!(p["state"], "error");
    let msg = p["error"].as_str().unwrap();
    assert!(
        msg.contains("constructor of plugin demo-devices failed") && msg.contains("fail_ratio"),
        "{msg}"
    );
}

/// One host per callback: the faulty fixture panics there; the host must
/// survive, report the plugin in error, and keep serving.
#[test]
fn a_panic_in_any_callback_never_kills_the_host() {
    let callbacks = [
        "new",
        "start",
        "handle_service",
        "handle_http",
        "on_event",
        "on_observations",
        "tick",
        "health",
        "stop",
    ];
    for cb in callbacks {
        let mut host = TestHost::builder()
            .plugin(FAULTY)
            .config(&format!("[plugins.faulty]\npanic_in = [\"{cb}\"]"))
            .start();
        match cb {
            "handle_service" => {
                let r = host.call("faulty.call", &json!({}));
                assert_eq!(r.status, 500, "{}", r.body);
                assert!(r.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("deliberate panic in handle_service"));
            }
            "handle_http" => {
                let r = host.get("/api/v1/faulty");
                assert_eq!(r.status, 500, "{}", r.body);
            }
            "on_event" => {
                assert_eq!(host.post("/api/v1/events/faulty.x", "{}").status, 202);
            }
            "on_observations" => {
                assert_eq!(host.post("/api/v1/events/other.x", "{}").status, 202);
            }
            _ => {}
        }
        if cb == "stop" {
            let status = host.terminate();
            assert!(
                status.success(),
                "host exit {status:?} after a panic in stop"
            );
            assert!(
                host.logs()
                    .iter()
                    .any(|l| l.contains("deliberate panic in stop")),
                "stop panic logged"
            );
            continue;
        }
        let p = wait_for(
            &format!("faulty in error after panic in {cb}"),
            Duration::from_secs(10),
            || host.plugin("faulty").filter(|p| p["state"] == "error"),
        );
        let msg = p["error"].as_str().unwrap_or("");
        assert!(
            msg.contains(&format!("deliberate panic in {cb}")),
            "{cb}: {msg}"
        );
        assert!(host.is_running(), "host died after a panic in {cb}");
        assert_eq!(host.get("/api/v1/plugins").status, 200);
        assert!(
            !host
                .logs()
                .iter()
                .any(|l| l.contains("panic across the ffi boundary")),
            "{cb}"
        );
    }
}

#[test]
fn a_hanging_callback_times_out_and_opens_the_circuit() {
    let host = TestHost::builder()
        .plugin(FAULTY)
        .plugin(DEMO)
        .config(
            "[host]\ntick_interval_ms = 200\nservice_timeout_ms = 700\ncallback_timeout_ms = 700\n\
             [plugins.faulty]\nhang_in = [\"handle_service\"]\n[plugins.demo-devices]\ninterval_ms = 0",
        )
        .start();
    let started = Instant::now();
    let r = host.call("faulty.call", &json!({}));
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 700ms"),
        "{}",
        r.body
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let p = wait_for("circuit open", Duration::from_secs(10), || {
        host.plugin("faulty")
            .filter(|p| p["circuit"]["state"] == "open")
    });
    // Hung is not a life-cycle failure: the plugin stays started.
    assert_eq!(p["state"], "started");
    // Further calls fail fast instead of piling up threads, others still work.
    let r = host.call("faulty.call", &json!({}));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        host.call("demo.light.toggle", &json!({"device": "light1"}))
            .status,
        200
    );

    // Hanging in start and in the constructor.
    for (cb, expect) in [
        ("start", "did not answer start within"),
        ("new", "constructor of plugin faulty did not return within"),
    ] {
        let host = TestHost::builder()
            .plugin(FAULTY)
            .config(&format!(
                "[host]\ncallback_timeout_ms = 500\n[plugins.faulty]\nhang_in = [\"{cb}\"]"
            ))
            .start();
        let p = host.plugin("faulty").unwrap();
        assert_eq!(p["state"], "error", "{p}");
        assert!(p["error"].as_str().unwrap().contains(expect), "{p}");
        assert_eq!(host.get("/api/v1/plugins").status, 200);
    }
}

#[test]
fn wildcards_slow_subscribers_and_reentrant_publish() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .plugin(FAULTY)
        .config(
            "[host]\ntick_interval_ms = 200\nevent_queue_capacity = 8\n\
             [plugins.faulty]\nhang_in = [\"on_event\"]\n[plugins.demo-devices]\ninterval_ms = 0",
        )
        .start();
    // device.*.command reaches the demo plugin, whose handler publishes
    // device.light3.state from inside the delivery (re-entrant publish).
    let r = host.post(
        "/api/v1/events/device.light3.command",
        r#"{"action":"toggle"}"#,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["queued"], 1);
    wait_for("light3 toggled by event", Duration::from_secs(5), || {
        (host
            .call("demo.light.get", &json!({"device": "light3"}))
            .json()["on"]
            == true)
            .then_some(())
    });
    wait_for("re-entrant publish counted", Duration::from_secs(5), || {
        sample(
            &host.metrics(),
            "homeconsole_events_total",
            &[("event_type", "device.light3.state")],
        )
        .filter(|v| *v >= 1.0)
    });

    // The faulty plugin hangs in its handler: its queue fills and drops,
    // the publisher is never stalled and other subscribers keep receiving.
    let started = Instant::now();
    let mut dropped = 0;
    for i in 0..50 {
        let r = host.post(&format!("/api/v1/events/faulty.e{i}"), "{}");
        assert_eq!(r.status, 202);
        dropped += r.json()["dropped"].as_u64().unwrap();
    }
    eprintln!(
        "50 publishes to a hung subscriber took {:?}",
        started.elapsed()
    );
    assert!(dropped >= 40, "dropped {dropped}");
    assert_eq!(
        host.post(
            "/api/v1/events/device.light1.command",
            r#"{"action":"toggle"}"#
        )
        .status,
        202
    );
    wait_for(
        "light1 toggled while faulty hangs",
        Duration::from_secs(5),
        || {
            (host
                .call("demo.light.get", &json!({"device": "light1"}))
                .json()["on"]
                == true)
                .then_some(())
        },
    );
    let dropped_metric = wait_for("drops exported", Duration::from_secs(5), || {
        sample(
            &host.metrics(),
            "homeconsole_event_deliveries_dropped_total",
            &[("plugin", "faulty")],
        )
        .filter(|v| *v as u64 == dropped)
    });
    assert_eq!(dropped_metric as u64, dropped);

    // internal.* reached the monitoring plugin.
    let status = host.get("/api/v1/monitoring/status").json();
    assert!(
        status["internal_events_seen"].as_u64().unwrap() >= 1,
        "{status}"
    );
    // Invalid topics are refused cleanly.
    let r = host.post("/api/v1/events/bad..topic", "{}");
    assert_eq!(r.status, 400);
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut host = TestHost::builder().plugin(DEMO).config(QUIET_DEMO).start();
    for i in 0..100 {
        let r = host.call(
            "demo.kv.put",
            &json!({"key": format!("k{i}"), "value": {"n": i}}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let r = host.request(
            "PUT",
            &format!("/api/v1/storage/http-test/k{i}"),
            Some(&i.to_string()),
            &[],
        );
        assert_eq!(r.status, 204, "{}", r.body);
    }
    host.kill9();
    let host = host.restart();
    for i in 0..100 {
        let r = host.call("demo.kv.get", &json!({"key": format!("k{i}")}));
        assert_eq!(r.json()["value"], json!({"n": i}), "k{i}");
        assert_eq!(
            host.get(&format!("/api/v1/storage/http-test/k{i}")).body,
            i.to_string()
        );
    }
    assert_eq!(
        host.get("/api/v1/storage/http-test").json()["keys"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
    assert_eq!(
        host.request("PUT", "/api/v1/storage/http-test/bad", Some("{oops"), &[])
            .status,
        400
    );
}

#[test]
fn sigterm_stops_plugins_in_reverse_order() {
    let mut host = TestHost::builder()
        .plugin(DEMO)
        .plugin(MONITORING)
        .config(QUIET_DEMO)
        .start();
    let status = host.terminate();
    assert!(status.success(), "{status:?}");
    let logs = host.json_logs();
    let stops: Vec<&str> = logs
        .iter()
        .filter(|l| l["message"] == "plugin stopped")
        .map(|l| l["fields"]["name"].as_str().unwrap())
        .collect();
    // demo-devices loads first (name order), so it stops last.
    assert_eq!(stops, vec!["monitoring", "demo-devices"]);
    assert_eq!(logs.last().unwrap()["message"], "stopped");
}

#[test]
fn cli_help_and_bad_config() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_host-harness"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for flag in ["--plugins-dir", "--data-dir", "--listen", "--config"] {
        assert!(help.contains(flag), "{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[host]\ntick_interval = 5\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_host-harness"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("unknown field"),
        "{err}"
    );
}

#[test]
fn plugins_cannot_read_other_plugins_storage_unless_granted() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .start();
    // The monitoring plugin stores its health checks in namespace "monitoring".
    let r = host.call(
        "demo.kv.peek",
        &json!({"namespace": "monitoring", "key": "healthcheck/x"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("may not use storage namespace \"monitoring\""),
        "{msg}"
    );
    // Its own namespaces work.
    let r = host.call(
        "demo.kv.peek",
        &json!({"namespace": "demo-devices.cache", "key": "x"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(host);

    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[host]\ntick_interval_ms = 200\n[host.storage_grants]\ndemo-devices = [\"monitoring\"]\n[plugins.demo-devices]\ninterval_ms = 0")
        .start();
    let r = host.call(
        "demo.kv.peek",
        &json!({"namespace": "monitoring", "key": "nothing"}),
    );
    assert_eq!(r.status, 200, "granted: {}", r.body);
}
