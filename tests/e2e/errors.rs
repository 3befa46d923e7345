//! Error tracking end to end: every capture source of the real host turns
//! into grouped issues, the issue API (admin-guarded), regression and its bus
//! event, persistence across a restart, retention, the Sentry ingest
//! endpoints (error cases and a real Python `sentry-sdk` round trip), and
//! forwarding to a Sentry-protocol sink (including a 429 that must not
//! block anyone).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    parse_response, plugin_lib, sample, wait_for, Resp, TestHost, DEMO, FAULTY, MONITORING,
};
use test_support::{require_peer, RecordingPeer, Reply};

const QUIET_DEMO: &str = "[plugins.demo-devices]\ninterval_ms = 0\n";
pub(crate) const ADMIN: &str = "[plugins.monitoring.access]\nadmin_token = \"s3cret\"\n";
pub(crate) const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret");

/// Every issue currently listed (up to 500).
pub(crate) fn issues(host: &TestHost) -> Vec<Value> {
    let r = host.get("/api/v1/monitoring/errors?limit=500");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["issues"].as_array().cloned().unwrap_or_default()
}

/// Waits for an issue matching `pred`.
pub(crate) fn wait_issue(host: &TestHost, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(15), || {
        issues(host).into_iter().find(|i| pred(i))
    })
}

fn title_has(i: &Value, text: &str) -> bool {
    i["title"].as_str().is_some_and(|t| t.contains(text))
}

pub(crate) fn detail(host: &TestHost, id: &str) -> Value {
    let r = host.request(
        "GET",
        &format!("/api/v1/monitoring/errors/{id}"),
        None,
        &[AUTH],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn admin_post(host: &TestHost, path: &str, body: &str) -> Resp {
    host.request("POST", path, Some(body), &[AUTH])
}

#[test]
fn service_failures_log_lines_events_and_explicit_reports_become_issues() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .config(ADMIN)
        .start();
    wait_for("plugins started", Duration::from_secs(20), || {
        (host.plugin("monitoring")?["state"] == "started"
            && host.plugin("demo-devices")?["state"] == "started")
            .then_some(())
    });

    // Breadcrumbs first: a log line and an event published by the demo plugin.
    assert_eq!(
        host.call(
            "demo.publish",
            &json!({"topic": "demo.crumb", "payload": 1})
        )
        .status,
        200
    );
    // An error-level log line (also an Error observation: plugin_log).
    let r = host.call(
        "demo.log_error",
        &json!({"message": "sensor bus lost", "fields": {"bus": 3}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The same failing service twice: one issue, count 2.
    for _ in 0..2 {
        assert_eq!(host.call("demo.fail", &json!({})).status, 500);
    }
    let fail = wait_issue(&host, "demo.fail issue with count 2", |i| {
        title_has(i, "demo.fail always fails") && i["count"] == 2
    });
    assert_eq!(fail["culprit"], "demo-devices / demo.fail");
    assert_eq!(fail["level"], "error");
    assert_eq!(fail["status"], "unresolved");
    let log = wait_issue(&host, "plugin_log issue", |i| {
        title_has(i, "sensor bus lost")
    });
    assert_ne!(log["id"], fail["id"], "two bugs, two issues");
    assert_eq!(log["count"], 1);

    // Details: plugin, versions, environment, place, breadcrumbs.
    let d = detail(&host, fail["id"].as_str().unwrap());
    let first = &d["samples"][0];
    assert_eq!(first["plugin"], "demo-devices", "{d}");
    assert!(first["plugin_version"].as_str().is_some(), "{d}");
    assert!(first["host_version"].as_str().is_some(), "{d}");
    assert_eq!(first["environment"], "production");
    assert_eq!(first["service_or_topic"], "demo.fail");
    assert_eq!(first["tags"]["place"], "service_call");
    let crumbs = d["breadcrumbs"].as_array().expect("breadcrumbs");
    assert!(
        crumbs
            .iter()
            .any(|c| c["category"] == "log" && c["message"] == "sensor bus lost"),
        "log line breadcrumb missing: {crumbs:?}"
    );
    assert!(
        crumbs
            .iter()
            .any(|c| c["category"] == "event" && c["message"] == "demo.crumb"),
        "event breadcrumb missing: {crumbs:?}"
    );

    // A failed event handler (unknown device) → event_handler issue with its topic.
    let r = host.post(
        "/api/v1/events/device.nosuch.command",
        &json!({"action": "toggle"}).to_string(),
    );
    assert!(r.status < 300, "{}", r.body);
    let ev = wait_issue(&host, "event handler issue", |i| {
        i["culprit"] == "demo-devices / device.nosuch.command"
    });
    let d = detail(&host, ev["id"].as_str().unwrap());
    assert_eq!(d["samples"][0]["tags"]["place"], "event_handler");
    assert_eq!(d["samples"][0]["tags"]["topic"], "device.nosuch.command");

    // Explicit reports: capture_error with tags/extra/fingerprint and a trace.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = json!({"message": "disk quota 91% on /var", "level": "warning",
        "error_type": "QuotaError", "tags": {"disk": "sda"}, "extra": {"free_mb": 12},
        "fingerprint": ["quota", "sda"]});
    let mut ids = Vec::new();
    for msg in ["disk quota 91% on /var", "another text, same fingerprint"] {
        let mut b = body.clone();
        b["message"] = Value::from(msg);
        let r = host.request(
            "POST",
            "/api/v1/services/monitoring.capture_error",
            Some(&b.to_string()),
            &[("traceparent", traceparent)],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        ids.push(r.json()["issue_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1], "custom fingerprint groups both");
    let d = detail(&host, &ids[0]);
    assert_eq!(d["issue"]["count"], 2);
    assert_eq!(d["issue"]["level"], "warning");
    let s = &d["samples"][0];
    assert_eq!(s["exception"][0]["type"], "QuotaError", "{d}");
    assert_eq!(s["tags"]["disk"], "sda");
    assert_eq!(s["extra"]["free_mb"], 12);
    assert_eq!(s["plugin"], "http", "caller of an HTTP service call");
    assert_eq!(s["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    let r = host.call(
        "monitoring.capture_message",
        &json!({"message": "nightly backup finished late", "tags": {"job": "backup"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let m = wait_issue(&host, "capture_message issue", |i| {
        title_has(i, "nightly backup finished late")
    });
    assert_eq!(m["level"], "info");
    // Bad input is refused, not captured as a report.
    let r = host.call("monitoring.capture_error", &json!({"bogus": 1}));
    assert_eq!(r.status, 400, "{}", r.body);

    // Filters, sort, pagination.
    let r = host
        .get("/api/v1/monitoring/errors?level=info&plugin=http")
        .json();
    assert_eq!(r["total"], 1, "{r}");
    let r = host
        .get("/api/v1/monitoring/errors?sort=count&limit=1")
        .json();
    assert_eq!(r["issues"].as_array().unwrap().len(), 1);
    assert!(r["total"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(r["issues"][0]["count"], 2);
    assert_eq!(host.get("/api/v1/monitoring/errors?sort=nope").status, 400);
    assert_eq!(host.get("/api/v1/monitoring/errors?status=x").status, 400);

    // The counter, with the real level, counted once.
    let metrics = host.metrics();
    assert_eq!(
        sample(
            &metrics,
            "homeconsole_errors_total",
            &[("plugin", "demo-devices"), ("level", "error")]
        ),
        // 2× demo.fail, 1× log line, 1× event handler.
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "homeconsole_errors_total",
            &[("plugin", "http"), ("level", "warning")]
        ),
        Some(2.0)
    );
    // The bus events reach the metrics through the observer stream (batched).
    wait_for("new-issue events counted", Duration::from_secs(10), || {
        (sample(
            &host.metrics(),
            "homeconsole_events_total",
            &[("event_type", "monitoring.error.new_issue")],
        )
        .unwrap_or(0.0)
            >= 5.0)
            .then_some(())
    });
}

#[test]
fn plugin_panic_is_an_issue_with_its_location() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(FAULTY)
        .config("[plugins.faulty]\npanic_in = [\"handle_service\"]")
        .config(ADMIN)
        .start();
    wait_for("monitoring started", Duration::from_secs(20), || {
        (host.plugin("monitoring")?["state"] == "started").then_some(())
    });
    let r = host.call("faulty.call", &json!({}));
    assert_eq!(r.status, 500, "{}", r.body);
    // The caller gets the location as fields (plugin-abi's PanicLocation),
    // not as text appended to the message.
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let at = &body["error"]["panic_location"];
    assert!(
        at["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("faulty/src/lib.rs")),
        "{body}"
    );
    assert!(at["line"].as_u64().is_some_and(|l| l > 0), "{body}");
    assert!(at["column"].as_u64().is_some_and(|c| c > 0), "{body}");
    assert_eq!(
        body["error"]["message"], "panicked in handle_service: deliberate panic in handle_service",
        "{body}"
    );
    let panic = wait_issue(&host, "panic issue", |i| {
        title_has(i, "panic: deliberate panic in handle_service")
    });
    assert_eq!(panic["level"], "fatal");
    assert_eq!(panic["culprit"], "faulty / faulty.call");
    let d = detail(&host, panic["id"].as_str().unwrap());
    let frames = d["samples"][0]["exception"][0]["frames"]
        .as_array()
        .cloned()
        .unwrap();
    assert!(
        frames.iter().any(|f| f["function"]
            .as_str()
            .is_some_and(|f| f.contains("handle_service"))),
        "{d}"
    );
    assert!(
        frames.iter().any(|f| f["filename"]
            .as_str()
            .is_some_and(|f| f.ends_with("faulty/src/lib.rs"))
            && f["lineno"].as_u64().is_some_and(|l| l > 0)),
        "panic location frame: {d}"
    );
    // The backtrace came from the plugin's panic hook (through the host
    // log), never through the error the HTTP client sees.
    assert!(
        frames.iter().any(|f| f["function"]
            .as_str()
            .is_some_and(|f| f.contains("misbehave"))),
        "backtrace frames: {d}"
    );
    assert!(
        !r.body.contains("backtrace") && !r.body.contains("misbehave"),
        "{}",
        r.body
    );
    let logged = host
        .json_logs()
        .into_iter()
        .find(|l| l["message"] == "plugin panic backtrace")
        .expect("backtrace log line");
    assert!(logged["fields"]["backtrace"]
        .as_str()
        .is_some_and(|b| b.contains("misbehave")));
    assert_eq!(
        issues(&host)
            .iter()
            .filter(|i| title_has(i, "plugin panic backtrace"))
            .count(),
        0,
        "the backtrace line is not an issue of its own"
    );
    // The 500 the HTTP client got is an issue of its own (http_5xx).
    wait_issue(&host, "http_5xx issue", |i| {
        i["culprit"] == "http / http_5xx" && title_has(i, "faulty.call answered 500")
    });
}

#[test]
fn plugin_load_and_start_failures_become_issues() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[host]\ntick_interval_ms = 200\nplugin_settle_ms = 300\n[plugins.faulty]\npanic_in = [\"start\"]")
        .config(ADMIN)
        .start();
    wait_for("monitoring started", Duration::from_secs(20), || {
        (host.plugin("monitoring")?["state"] == "started").then_some(())
    });
    std::fs::copy(
        plugin_lib("fixture_wrong_abi_version"),
        host.plugins_dir.join("libwrong_abi.so"),
    )
    .unwrap();
    std::fs::copy(plugin_lib(FAULTY), host.plugins_dir.join("libfaulty.so")).unwrap();
    let load = wait_issue(&host, "plugin_load issue", |i| {
        i["culprit"]
            .as_str()
            .is_some_and(|c| c.ends_with("/ plugin_load"))
    });
    assert_eq!(load["level"], "error");
    let start = wait_issue(&host, "plugin_start issue", |i| {
        i["culprit"] == "faulty / plugin_start"
    });
    assert!(title_has(&start, "deliberate panic in start"), "{start}");
}

#[test]
fn regression_admin_guard_and_bus_event() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .config(ADMIN)
        .start();
    wait_for("demo started", Duration::from_secs(20), || {
        (host.plugin("demo-devices")?["state"] == "started").then_some(())
    });
    host.call("demo.fail", &json!({}));
    let issue = wait_issue(&host, "demo.fail issue", |i| {
        title_has(i, "demo.fail always fails")
    });
    let id = issue["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/monitoring/errors/{id}");

    // Details and changes need the admin token.
    assert_eq!(host.get(&base).status, 401);
    assert_eq!(host.post(&format!("{base}/resolve"), "").status, 401);
    assert_eq!(
        admin_post(
            &host,
            "/api/v1/monitoring/errors/ffffffffffffffff/resolve",
            ""
        )
        .status,
        404
    );
    let r = admin_post(&host, &format!("{base}/resolve"), "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["issue"]["status"], "resolved");

    host.call("demo.fail", &json!({}));
    let reopened = wait_issue(&host, "regression", |i| {
        i["id"] == id.as_str() && i["regression"] == true
    });
    assert_eq!(reopened["status"], "unresolved");
    assert_eq!(reopened["count"], 2);
    wait_for("regression event counted", Duration::from_secs(10), || {
        (sample(
            &host.metrics(),
            "homeconsole_events_total",
            &[("event_type", "monitoring.error.regression")],
        ) == Some(1.0))
        .then_some(())
    });

    // Ignore for 2 events, then it reopens; bad bodies are 400.
    assert_eq!(
        admin_post(&host, &format!("{base}/ignore"), "{\"until\": 1}").status,
        400
    );
    let r = admin_post(&host, &format!("{base}/ignore"), "{\"until_events\": 2}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["issue"]["status"], "ignored");
    let r = admin_post(&host, &format!("{base}/unresolve"), "");
    assert_eq!(r.json()["issue"]["status"], "unresolved");
    let r = admin_post(&host, &format!("{base}/ignore"), "");
    assert_eq!(r.json()["issue"]["status"], "ignored");

    // Delete.
    assert_eq!(host.request("DELETE", &base, None, &[]).status, 401);
    let r = host.request("DELETE", &base, None, &[AUTH]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(host.request("GET", &base, None, &[AUTH]).status, 404);
}

#[test]
fn without_admin_token_details_and_changes_are_forbidden() {
    let host = TestHost::builder().plugin(MONITORING).start();
    wait_for("monitoring started", Duration::from_secs(20), || {
        (host.plugin("monitoring")?["state"] == "started").then_some(())
    });
    let r = host.call("monitoring.capture_message", &json!({"message": "hello"}));
    let id = r.json()["issue_id"].as_str().unwrap().to_owned();
    // Issue details are admin-only: disabled (403, saying how) until an
    // admin token is configured. The list stays readable.
    let r = host.get(&format!("/api/v1/monitoring/errors/{id}"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("admin_token"), "{}", r.body);
    assert_eq!(host.get("/api/v1/monitoring/errors").status, 200);
    let r = host.post(&format!("/api/v1/monitoring/errors/{id}/resolve"), "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("admin_token"), "{}", r.body);
}

#[test]
fn issues_survive_a_restart_and_retention_bounds_them() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[plugins.monitoring.errors]\nmax_issues = 3\nenvironment = \"staging\"")
        .config(ADMIN)
        .start();
    wait_for("monitoring started", Duration::from_secs(20), || {
        (host.plugin("monitoring")?["state"] == "started").then_some(())
    });
    for i in 0..5 {
        let r = host.call(
            "monitoring.capture_message",
            &json!({"message": format!("distinct bug {}", ["a", "b", "c", "d", "e"][i]),
                    "level": "error"}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    host.call(
        "monitoring.capture_message",
        &json!({"message": "distinct bug e", "level": "error"}),
    );
    let list = host.get("/api/v1/monitoring/errors").json();
    assert_eq!(list["total"], 3, "max_issues = 3 keeps 3: {list}");
    assert!(
        !issues(&host).iter().any(|i| title_has(i, "distinct bug a")),
        "the least recently seen was evicted"
    );
    let before = issues(&host);

    let host = host.restart();
    wait_for("monitoring restarted", Duration::from_secs(20), || {
        (host.plugin("monitoring")?["state"] == "started").then_some(())
    });
    let after = issues(&host);
    assert_eq!(after.len(), 3);
    let e = after
        .iter()
        .find(|i| title_has(i, "distinct bug e"))
        .expect("issue e persisted");
    assert_eq!(e["count"], 2);
    let d = detail(&host, e["id"].as_str().unwrap());
    assert_eq!(d["samples"][0]["environment"], "staging");
    let ids_before: Vec<&Value> = before.iter().map(|i| &i["id"]).collect();
    for i in &after {
        assert!(ids_before.contains(&&i["id"]));
    }
    host.call(
        "monitoring.capture_message",
        &json!({"message": "distinct bug e", "level": "error"}),
    );
    wait_issue(&host, "count continues after restart", |i| {
        title_has(i, "distinct bug e") && i["count"] == 3
    });
}

fn ingest_host(extra: &str) -> TestHost {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(&format!(
            "[host]\ntick_interval_ms = 200\nmax_body_bytes = 65536\n\
             [plugins.monitoring.errors]\npublic_keys = [\"pubkey1\"]\nproject_ids = [\"1\"]\n{extra}"
        ))
        .config(ADMIN)
        .start();
    wait_for("monitoring started", Duration::from_secs(20), || {
        (host.plugin("monitoring")?["state"] == "started").then_some(())
    });
    host
}

fn envelope_request(host: &TestHost, path: &str, key: &str, body: &[u8], gzip: bool) -> Resp {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\
         Content-Type: application/x-sentry-envelope\r\n\
         X-Sentry-Auth: Sentry sentry_key={key}, sentry_version=7, sentry_client=e2e/1\r\n",
        host.addr,
        body.len()
    )
    .into_bytes();
    if gzip {
        req.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    raw_lenient(host, &req)
}

/// Like `TestHost::raw`, but tolerates the server answering (and closing)
/// before it read the whole body, as it does for an oversized request.
fn raw_lenient(host: &TestHost, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(host.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    parse_response(&buf)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn sentry_ingest_accepts_envelopes_and_refuses_bad_requests() {
    let host = ingest_host("max_compressed_bytes = 4096");
    let event = json!({"event_id": "0123456789abcdef0123456789abcdef", "level": "error",
        "exception": {"values": [{"type": "ValueError", "value": "bad thing",
            "stacktrace": {"frames": [{"function": "main", "module": "app", "lineno": 3}]}}]}});
    let body = format!(
        "{{\"event_id\":\"0123456789abcdef0123456789abcdef\"}}\n{{\"type\":\"event\"}}\n{event}\n"
    );
    for path in ["/api/1/envelope/", "/api/1/envelope"] {
        let r = envelope_request(&host, path, "pubkey1", body.as_bytes(), false);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json()["id"], "0123456789abcdef0123456789abcdef");
    }
    let r = envelope_request(
        &host,
        "/api/1/envelope/",
        "pubkey1",
        &gzip(body.as_bytes()),
        true,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let i = wait_issue(&host, "ingested issue", |i| {
        title_has(i, "ValueError: bad thing")
    });
    assert_eq!(i["count"], 3);
    // The store endpoint: one event as the body.
    let r = envelope_request(
        &host,
        "/api/1/store/",
        "pubkey1",
        event.to_string().as_bytes(),
        false,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // 401: wrong key, JSON body.
    let r = envelope_request(&host, "/api/1/envelope/", "wrong", body.as_bytes(), false);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"]["kind"], "invalid_key");
    // 400: malformed, with the reason.
    let r = envelope_request(&host, "/api/1/envelope/", "pubkey1", b"{not json\n", false);
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("malformed envelope"), "{msg}");
    let r = envelope_request(
        &host,
        "/api/1/envelope/",
        "pubkey1",
        b"not gzip at all",
        true,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["kind"], "bad_compression");
    // 400: unknown project.
    let r = envelope_request(&host, "/api/2/envelope/", "pubkey1", body.as_bytes(), false);
    assert_eq!(r.status, 400, "{}", r.body);
    // 413 from the plugin's own limit (4096), JSON.
    let big = vec![b'x'; 5000];
    let r = envelope_request(&host, "/api/1/envelope/", "pubkey1", &big, true);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096"),
        "{}",
        r.body
    );
    // 413 from the host's max_body_bytes (65536), JSON too.
    let huge = vec![b'x'; 70_000];
    let r = envelope_request(&host, "/api/1/envelope/", "pubkey1", &huge, true);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("65536"),
        "{}",
        r.body
    );
    // A gzip bomb stops at the decompressed limit.
    let host2 = ingest_host("max_decompressed_bytes = 10000");
    let bomb = gzip(&vec![b'\n'; 200_000]);
    let r = envelope_request(&host2, "/api/1/envelope/", "pubkey1", &bomb, true);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("decompressed"), "{}", r.body);
}

/// The Python with `sentry-sdk`: `HOMECONSOLE_PYTHON` or
/// `<repo>/.venv/bin/python`; `Err` (for `require_peer!`) says which one lacks it.
fn sentry_python() -> Result<PathBuf, String> {
    let python = std::env::var_os("HOMECONSOLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import sentry_sdk"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Ok(python);
    }
    Err(format!(
        "no Python with sentry-sdk at {} (set HOMECONSOLE_PYTHON)",
        python.display()
    ))
}

#[test]
fn real_python_sentry_sdk_round_trip() {
    let python = require_peer!(sentry_python());
    let host = ingest_host("");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("report.py");
    std::fs::write(
        &script,
        format!(
            r#"
import sentry_sdk

sentry_sdk.init(dsn="http://pubkey1@{addr}/1", environment="e2e", release="py-1.0",
                default_integrations=False)

class StorageError(Exception):
    pass

def read_config():
    raise KeyError("missing_key")

def load():
    try:
        read_config()
    except KeyError as e:
        raise StorageError("cannot load config") from e

for _ in range(2):
    try:
        load()
    except StorageError as e:
        sentry_sdk.capture_exception(e)

sentry_sdk.set_tag("room", "kitchen")
sentry_sdk.capture_message("thermostat offline", level="warning")
sentry_sdk.flush(timeout=10)
"#,
            addr = host.addr
        ),
    )
    .unwrap();
    let out = Command::new(&python).arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exc = wait_issue(&host, "python exception issue", |i| {
        title_has(i, "StorageError: cannot load config")
    });
    assert_eq!(exc["count"], 2, "the same bug twice is one issue: {exc}");
    let d = detail(&host, exc["id"].as_str().unwrap());
    let chain = d["samples"][0]["exception"].as_array().unwrap().clone();
    assert_eq!(chain.len(), 2, "chained exceptions: {d}");
    assert_eq!(chain[0]["type"], "KeyError");
    assert_eq!(chain[1]["type"], "StorageError");
    assert!(chain[1]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["function"] == "load"));
    assert_eq!(d["samples"][0]["environment"], "e2e");
    assert_eq!(d["samples"][0]["source"], "sentry_ingest");
    let msg = wait_issue(&host, "python message issue", |i| {
        title_has(i, "thermostat offline")
    });
    assert_eq!(msg["level"], "warning");
    let d = detail(&host, msg["id"].as_str().unwrap());
    assert_eq!(d["samples"][0]["tags"]["room"], "kitchen");
}

/// A host whose captured errors are forwarded to the sink on `port`;
/// `extra` is appended to the `[plugins.monitoring.errors]` section.
fn forwarding_host(port: u16, extra: &str) -> TestHost {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .config(&format!(
            "[plugins.monitoring.errors]\nsentry_dsn = \"http://fwdkey@127.0.0.1:{port}/7\"{extra}"
        ))
        .config(ADMIN)
        .start();
    wait_for("demo started", Duration::from_secs(20), || {
        (host.plugin("demo-devices")?["state"] == "started").then_some(())
    });
    host
}

#[test]
fn captured_errors_are_forwarded_to_a_sentry_dsn() {
    let rx = RecordingPeer::start();
    let port = rx.port();
    let host = forwarding_host(port, "\nenvironment = \"lab\"");
    host.call("demo.fail", &json!({}));
    let got = wait_for("forwarded event", Duration::from_secs(20), || {
        while let Some(r) = rx.next_request(Duration::from_millis(200)) {
            let text = r.text();
            if text.contains("demo.fail always fails") {
                return Some((r, text));
            }
        }
        None
    });
    let (req, text) = got;
    assert_eq!(req.request_line(), "POST /api/7/envelope/ HTTP/1.1");
    let auth = req
        .headers
        .iter()
        .find(|(k, _)| k == "x-sentry-auth")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(auth.contains("sentry_key=fwdkey"), "{auth}");
    let lines: Vec<&str> = text.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert!(header["event_id"].as_str().is_some(), "{text}");
    let item: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(item["type"], "event");
    let event: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(event["environment"], "lab", "{event}");
    assert_eq!(event["tags"]["plugin"], "demo-devices", "{event}");
    assert_eq!(event["level"], "error");
}

#[test]
fn a_rate_limiting_sentry_is_counted_and_blocks_nobody() {
    let rx = RecordingPeer::builder()
        .always(Reply::status(429).header("Retry-After", "60"))
        .start();
    let port = rx.port();
    let host = forwarding_host(port, "");
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(host.call("demo.fail", &json!({})).status, 500);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "calls were slowed: {elapsed:?}"
    );
    rx.next_request(Duration::from_secs(20))
        .expect("the sink got the first event");
    let stats = wait_for("rate limited counted", Duration::from_secs(20), || {
        let s = host.get("/api/v1/monitoring/status").json();
        let f = s["capabilities"]["errors"]["forwarder"].clone();
        (f["rate_limited"].as_u64().unwrap_or(0) >= 2).then_some(f)
    });
    // Only the first attempt reached the sink: the rest waited out Retry-After locally.
    assert_eq!(stats["sent"], 0, "{stats}");
    assert!(
        rx.next_request(Duration::from_millis(500)).is_none(),
        "{stats}"
    );
    // All five were still recorded locally.
    wait_issue(&host, "local issue", |i| {
        title_has(i, "demo.fail always fails") && i["count"] == 5
    });
}
