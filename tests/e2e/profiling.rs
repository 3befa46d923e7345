//! Profiling end to end: CPU profiles through the real host name the plugin
//! that burned the CPU, the pprof output decodes, one profile at a time,
//! admin-only; many short profiles under load leave the host alive; a
//! replaced monitoring plugin leaves no profiler running; slow calls, stalls
//! and per-callback time are reported with the plugin's name.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pprof::protos::Message;
use serde_json::{json, Value};

use crate::metrics::assert_promtool_clean;
use crate::support::{
    parse_binary_response, plugin_lib, sample, wait_for, BinResp, TestHost, DEMO, MONITORING,
};

const TOKEN: &str = "pr0file-s3cret";

fn config() -> String {
    format!(
        "[plugins.demo-devices]\ninterval_ms = 0\n[plugins.monitoring.access]\nadmin_token = \"{TOKEN}\"\n"
    )
}

fn host() -> TestHost {
    TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(&config())
        .start()
}

/// GET with an optional bearer token; the body stays bytes (the pprof output is binary).
fn get_bytes(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> BinResp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_binary_response(&buf)
}

fn profile(host: &TestHost, query: &str, token: Option<&str>) -> BinResp {
    get_bytes(
        host.addr,
        &format!("/api/v1/monitoring/profile?{query}"),
        token,
    )
}

/// Threads calling a service over HTTP in a loop until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, jobs: &[(&'static str, Value)]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let threads = jobs
            .iter()
            .cloned()
            .map(|(service, input)| {
                let (stop, calls) = (stop.clone(), calls.clone());
                std::thread::spawn(move || {
                    let body = input.to_string();
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut s) = TcpStream::connect(addr) else {
                            continue;
                        };
                        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                        let _ = write!(
                            s,
                            "POST /api/v1/services/{service} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let mut buf = Vec::new();
                        let _ = s.read_to_end(&mut buf);
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            calls,
            threads,
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.calls.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn burn_load(host: &TestHost) -> Load {
    Load::start(
        host.addr,
        &[
            ("demo.burn", json!({"ms": 200})),
            ("demo.burn", json!({"ms": 200})),
        ],
    )
}

#[test]
fn profile_endpoint_is_admin_only_and_validates_its_input() {
    let open = TestHost::builder().plugin(MONITORING).start();
    let r = profile(&open, "millis=200", None);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text()
            .contains("admin_token under [plugins.monitoring.access]"),
        "403 says how to enable it: {}",
        r.text()
    );
    drop(open);

    let host = host();
    let r = profile(&host, "millis=200", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = profile(&host, "millis=200", Some("wrong"));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(!r.text().contains(TOKEN));
    for bad in [
        "seconds=0",
        "seconds=61",
        "seconds=ten",
        "seconds=1&millis=500",
        "millis=10",
        "format=png",
        "hz=0",
    ] {
        let r = profile(&host, bad, Some(TOKEN));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("JSON error body");
        assert_eq!(v["error"]["kind"], "bad_request", "{bad}: {v}");
    }
    let r = profile(&host, "millis=300", Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    assert!(r.text().starts_with("<?xml") || r.text().contains("<svg"));
    assert!(r.header("x-profile-samples").is_some());
}

#[test]
fn the_cpu_burning_plugin_shows_up_by_name_and_pprof_decodes() {
    let host = host();
    let load = burn_load(&host);
    std::thread::sleep(Duration::from_millis(300));

    // Flamegraph: the demo plugin's function, tagged with its library.
    let r = profile(&host, "seconds=2&format=flamegraph", Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    let svg = r.text();
    assert!(
        svg.contains("demo_devices_burn_cpu"),
        "flamegraph names the burning function"
    );
    assert!(
        svg.contains("[libdemo_devices.so]"),
        "flamegraph tags the plugin library"
    );
    let top = r.header("x-profile-top-libraries").unwrap_or_default();
    assert!(top.contains("libdemo_devices.so="), "top libraries: {top}");
    let samples: u64 = r
        .header("x-profile-samples")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // ITIMER_PROF counts process CPU time: few samples on a loaded machine.
    assert!(samples > 5, "samples: {samples}");

    // pprof: gzip'd protobuf with samples and the plugin's mapping.
    let r = profile(&host, "seconds=2&format=pprof&hz=199", Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(
        r.header("content-disposition")
            .unwrap_or_default()
            .contains("profile.pb.gz"),
        "{:?}",
        r.headers
    );
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut raw)
        .expect("gzip");
    let p = pprof::protos::Profile::decode(&raw[..]).expect("pprof protobuf");
    assert!(!p.sample.is_empty(), "pprof has samples");
    let s = |i: i64| p.string_table[i as usize].as_str();
    let mappings: Vec<&str> = p.mapping.iter().map(|m| s(m.filename)).collect();
    assert!(
        mappings.iter().any(|m| m.contains("demo_devices")),
        "pprof maps the demo plugin's library: {mappings:?}"
    );
    let functions: Vec<&str> = p.function.iter().map(|f| s(f.name)).collect();
    assert!(
        functions
            .iter()
            .any(|f| f.contains("demo_devices_burn_cpu") && f.contains("[libdemo_devices.so]")),
        "pprof names the burning function"
    );
    let calls = load.finish();
    assert!(calls > 0);
}

#[test]
fn one_profile_at_a_time() {
    let host = host();
    let addr = host.addr;
    let first = std::thread::spawn(move || {
        get_bytes(addr, "/api/v1/monitoring/profile?seconds=3", Some(TOKEN))
    });
    wait_for("the first profile to run", Duration::from_secs(10), || {
        let st = host.get("/api/v1/monitoring/status").json();
        (st["capabilities"]["profiling"]["profile_running"] == true).then_some(())
    });
    let second = profile(&host, "millis=200", Some(TOKEN));
    assert_eq!(second.status, 409, "{}", second.text());
    let v: Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(v["error"]["kind"], "conflict");
    // The host keeps serving while the profile blocks its request.
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    // Our own profile request is not reported as a stall.
    let slow = host.get("/api/v1/monitoring/slow").json();
    assert_eq!(slow["stalls_total"], 0, "{slow}");
    let after = profile(&host, "millis=200", Some(TOKEN));
    assert_eq!(after.status, 200, "{}", after.text());
}

#[test]
fn many_short_profiles_under_load_leave_the_host_serving() {
    let host = host();
    let load = Load::start(
        host.addr,
        &[
            ("demo.burn", json!({"ms": 20})),
            ("demo.light.toggle", json!({"device": "light1"})),
            ("demo.kv.put", json!({"key": "k", "value": 1})),
        ],
    );
    let started = Instant::now();
    for i in 0..30 {
        let format = if i % 2 == 0 { "flamegraph" } else { "pprof" };
        let r = profile(
            &host,
            &format!("millis=250&hz=997&format={format}"),
            Some(TOKEN),
        );
        assert_eq!(r.status, 200, "profile {i}: {}", r.text());
        // Scrapes between profiles race the last signals of the previous one.
        assert_eq!(host.get("/api/v1/monitoring/metrics").status, 200);
    }
    let calls = load.finish();
    let mut host = host;
    assert!(host.is_running(), "host survived 30 profiles");
    assert!(calls > 30, "load ran: {calls} calls");
    assert_eq!(
        host.call("demo.light.get", &json!({"device": "light1"}))
            .status,
        200
    );
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
    let st = host.get("/api/v1/monitoring/status").json();
    assert_eq!(
        st["capabilities"]["profiling"]["profiles_taken"], 30,
        "{st}"
    );
    eprintln!("30 profiles under load in {:?}", started.elapsed());
}

#[test]
fn replacing_the_monitoring_plugin_during_a_profile_leaves_no_profiler_running() {
    let host = host();
    let addr = host.addr;
    let began = Instant::now();
    let running = std::thread::spawn(move || {
        let r = get_bytes(addr, "/api/v1/monitoring/profile?seconds=20", Some(TOKEN));
        (r.status, r.text(), began.elapsed())
    });
    wait_for("the profile to run", Duration::from_secs(10), || {
        let st = host.get("/api/v1/monitoring/status").json();
        (st["capabilities"]["profiling"]["profile_running"] == true).then_some(())
    });
    let tmp = host.plugins_dir.join(".tmp-monitoring");
    std::fs::copy(plugin_lib(MONITORING), &tmp).unwrap();
    std::fs::rename(&tmp, host.plugins_dir.join("libmonitoring_plugin.so")).unwrap();
    let (status, body, took) = running.join().unwrap();
    assert_eq!(
        status, 503,
        "the old generation cancelled its profile: {body}"
    );
    assert!(
        took < Duration::from_secs(15),
        "cancelled at replacement, not at the 20 s deadline: {took:?}"
    );
    wait_for("monitoring generation 2", Duration::from_secs(20), || {
        host.plugin("monitoring")
            .filter(|p| p["generation"] == 2 && p["state"] == "started")
    });
    let st = host.get("/api/v1/monitoring/status").json();
    assert_eq!(
        st["capabilities"]["profiling"]["profile_running"], false,
        "{st}"
    );
    let r = profile(&host, "millis=500", Some(TOKEN));
    assert_eq!(r.status, 200, "a new profile runs (no 409): {}", r.text());
    let logs = host.json_logs();
    assert!(
        logs.iter().any(|l| l["message"] == "plugin stopped"
            && l["fields"]["name"] == "monitoring"
            && l["fields"]["reason"] == "replaced by a new generation"),
        "old generation stopped"
    );
    assert!(
        !logs.iter().any(
            |l| l["message"] == "plugin callback hung" && l["fields"]["plugin"] == "monitoring"
        ),
        "stop did not hang"
    );
}

#[test]
fn slow_calls_and_stalls_are_reported_with_the_plugin_name() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(
            "[host]\ntick_interval_ms = 200\nstall_threshold_ms = 300\n[plugins.demo-devices]\ninterval_ms = 0\n[plugins.monitoring.profiling]\nslow_call_ms = 200\n",
        )
        .start();
    let r = host.call("demo.sleep", &json!({"ms": 1500}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        host.call("demo.light.get", &json!({"device": "light1"}))
            .status,
        200
    );

    // Slow call: kept, with caller and duration, and the service's totals.
    let slow = wait_for("the slow call", Duration::from_secs(10), || {
        let v = host.get("/api/v1/monitoring/slow").json();
        let light_seen = v["top_services_by_total_time"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["service"] == "demo.light.get"));
        (v["slowest_recent_calls"][0]["service"] == "demo.sleep" && light_seen).then_some(v)
    });
    let call = &slow["slowest_recent_calls"][0];
    assert_eq!(call["caller"], "http");
    assert!(call["duration_ms"].as_f64().unwrap() >= 1500.0, "{call}");
    let top = &slow["top_services_by_total_time"][0];
    assert_eq!(top["service"], "demo.sleep", "{slow}");
    assert_eq!(top["slow_calls"], 1);
    assert!(slow["top_services_by_total_time"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["service"] == "demo.light.get" && s["slow_calls"] == 0));

    // Stall: kept (no stack, with the reason), counted, published, logged.
    let stall = wait_for("the stall report", Duration::from_secs(10), || {
        let v = host.get("/api/v1/monitoring/slow").json();
        v["recent_stalls"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["plugin"] == "demo-devices").cloned())
    });
    assert_eq!(stall["callback"], "handle_service", "{stall}");
    assert_eq!(stall["detail"], "demo.sleep", "{stall}");
    assert!(stall["busy_ms"].as_f64().unwrap() >= 300.0, "{stall}");
    assert!(
        !stall["thread"].as_str().unwrap_or_default().is_empty(),
        "{stall}"
    );
    assert_eq!(stall["stack"], Value::Null);
    assert!(stall["stack_unavailable_reason"].as_str().unwrap().len() > 20);

    let text = wait_for("stall metrics", Duration::from_secs(10), || {
        let t = host.metrics();
        (sample(
            &t,
            "homeconsole_events_total",
            &[("event_type", "monitoring.stall")],
        )
        .is_some())
        .then_some(t)
    });
    let stalls = sample(
        &text,
        "homeconsole_plugin_stalls_total",
        &[("plugin", "demo-devices"), ("callback", "handle_service")],
    );
    assert!(stalls.unwrap_or(0.0) >= 1.0, "{text}");
    assert!(
        sample(
            &text,
            "homeconsole_events_total",
            &[("event_type", "monitoring.stall")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(
            &text,
            "homeconsole_slow_service_calls_total",
            &[("service_name", "demo.sleep")]
        ),
        Some(1.0)
    );
    let logs = host.json_logs();
    assert!(
        logs.iter().any(|l| l["target"] == "plugin"
            && l["plugin"] == "monitoring"
            && l["message"] == "plugin callback stalled"
            && l["fields"]["plugin"] == "demo-devices"
            && l["fields"]["callback"] == "handle_service"),
        "stall logged by the monitoring plugin"
    );
    assert!(
        logs.iter().any(|l| l["plugin"] == "monitoring"
            && l["message"] == "slow service call"
            && l["fields"]["service"] == "demo.sleep"
            && l["fields"]["caller"] == "http"
            && l["fields"]["duration_ms"].as_f64().unwrap_or(0.0) >= 1500.0),
        "slow call logged by the monitoring plugin"
    );
}

#[test]
fn callback_seconds_move_and_survive_a_new_generation() {
    let host = host();
    let series = [("plugin", "demo-devices"), ("callback", "handle_service")];
    for _ in 0..3 {
        assert_eq!(host.call("demo.burn", &json!({"ms": 150})).status, 200);
    }
    let text = host.metrics();
    let before = sample(&text, "homeconsole_plugin_callback_seconds_total", &series)
        .expect("callback seconds of demo-devices");
    assert!(before >= 0.45, "{before}");
    assert!(
        sample(
            &text,
            "homeconsole_plugin_callback_seconds_total",
            &[("plugin", "monitoring"), ("callback", "start")]
        )
        .is_some(),
        "the monitoring plugin's own start is counted"
    );
    assert_promtool_clean(&text);

    // Event delivery latency per subscriber.
    assert_eq!(
        host.post("/api/v1/events/device.light1.command", "{\"on\":true}")
            .status
            / 100,
        2
    );
    wait_for("delivery to demo-devices", Duration::from_secs(10), || {
        sample(
            &host.metrics(),
            "homeconsole_event_delivery_duration_seconds_count",
            &[("plugin", "demo-devices")],
        )
        .filter(|n| *n >= 1.0)
    });

    assert_eq!(host.call("demo.burn", &json!({"ms": 200})).status, 200);
    let moved = sample(
        &host.metrics(),
        "homeconsole_plugin_callback_seconds_total",
        &series,
    )
    .unwrap();
    assert!(moved >= before + 0.2, "{before} -> {moved}");

    // A new generation restarts the host's totals at 0: the counter does not go down.
    let tmp = host.plugins_dir.join(".tmp-demo");
    std::fs::copy(plugin_lib(DEMO), &tmp).unwrap();
    std::fs::rename(&tmp, host.plugins_dir.join("libdemo_devices.so")).unwrap();
    wait_for("demo generation 2", Duration::from_secs(20), || {
        host.plugin("demo-devices")
            .filter(|p| p["generation"] == 2 && p["state"] == "started")
    });
    assert_eq!(host.call("demo.burn", &json!({"ms": 100})).status, 200);
    let after = sample(
        &host.metrics(),
        "homeconsole_plugin_callback_seconds_total",
        &series,
    )
    .unwrap();
    assert!(after >= moved + 0.1, "{moved} -> {after}");
    // The replacement's internal.plugin.* events reached the monitoring plugin.
    wait_for("delivery to monitoring", Duration::from_secs(10), || {
        sample(
            &host.metrics(),
            "homeconsole_event_delivery_duration_seconds_count",
            &[("plugin", "monitoring")],
        )
        .filter(|n| *n >= 1.0)
    });
}
