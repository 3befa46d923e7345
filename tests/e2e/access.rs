//! The trust boundaries of the host's HTTP API, through the real binary:
//! storage namespaces, reserved topics, admin-only registration services,
//! JSON-only bodies, `Host`/`Origin` checks, the public-bind refusal, the
//! API and admin tokens (also from files, never logged), and what
//! `/status` and the query API show without a token.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{wait_for, TestHost, ADMIN_TOKEN, DEMO, MONITORING};

const QUIET_DEMO: &str = "[plugins.demo-devices]\ninterval_ms = 0";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn put(host: &TestHost, path: &str, body: &str, token: Option<&str>) -> crate::support::Resp {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    host.request("PUT", path, Some(body), &headers)
}

fn light_is_on(host: &TestHost) -> bool {
    let r = host.call("demo.light.get", &json!({"device": "light1"}));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["on"] == true
}

#[test]
fn storage_outside_the_http_namespace_needs_the_admin_token() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .start();
    for ns in ["demo-devices", "monitoring-errors", "monitoring"] {
        let path = format!("/api/v1/storage/{ns}/k");
        let r = put(&host, &path, "1", None);
        assert_eq!(r.status, 403, "PUT {path}: {}", r.body);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("admin_token"), "says how to enable: {msg}");
        assert_eq!(host.get(&path).status, 403);
        assert_eq!(host.request("DELETE", &path, None, &[]).status, 403);
        assert_eq!(host.get(&format!("/api/v1/storage/{ns}")).status, 403);
    }
    // The HTTP API's own namespaces, as for a plugin named `http`.
    assert_eq!(put(&host, "/api/v1/storage/http/k", "1", None).status, 204);
    assert_eq!(
        put(&host, "/api/v1/storage/http-x/k", "2", None).status,
        204
    );
    assert_eq!(host.get("/api/v1/storage/http/k").body, "1");
    assert_eq!(put(&host, "/api/v1/storage/httpd/k", "1", None).status, 403);
    drop(host);

    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .admin()
        .start();
    let path = "/api/v1/storage/demo-devices/k";
    let r = put(&host, path, "1", None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = put(&host, path, "1", Some("not-the-token"));
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(!r.body.contains("not-the-token"), "{}", r.body);
    assert_eq!(put(&host, path, "1", Some(ADMIN_TOKEN)).status, 204);
    let r = host.request(
        "GET",
        path,
        None,
        &[("Authorization", &bearer(ADMIN_TOKEN))],
    );
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    assert_eq!(
        put(
            &host,
            "/api/v1/storage/monitoring-errors/k",
            "1",
            Some(ADMIN_TOKEN)
        )
        .status,
        204
    );
}

#[test]
fn registering_health_checks_over_http_needs_the_admin_token() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .start();
    let check = json!({"name": "x", "service": "nope", "critical": true});
    let r = host.call("monitoring.register_health_check", &check);
    assert_eq!(r.status, 403, "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("admin_token") && msg.contains("Authorization: Bearer"),
        "says how to enable: {msg}"
    );
    let r = host.call("monitoring.unregister_health_check", &json!({"name": "x"}));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        host.get("/api/v1/monitoring/health?refresh=true").status,
        200
    );
    let status = host.get("/api/v1/monitoring/status").json();
    assert_eq!(status["custom_health_checks"], json!([]), "{status}");
    drop(host);

    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .admin()
        .start();
    let r = host.call("monitoring.register_health_check", &check);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = host.admin_call("monitoring.register_health_check", &check);
    assert_eq!(r.status, 200, "{}", r.body);
    // The check keeps its owner.
    let status = host.get("/api/v1/monitoring/status").json();
    assert_eq!(
        status["custom_health_checks"][0]["registered_by"], "http:admin",
        "{status}"
    );
    assert_eq!(
        host.get("/api/v1/monitoring/health?refresh=true").status,
        503
    );
    let r = host.admin_call("monitoring.unregister_health_check", &json!({"name": "x"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        host.get("/api/v1/monitoring/health?refresh=true").status,
        200
    );
}

#[test]
fn reserved_topics_are_never_published_over_http() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .start();
    let topics = [
        "internal.plugin.stopped",
        "internal.x",
        "monitoring.alert.firing",
    ];
    let body = r#"{"plugin":"demo-devices"}"#;
    for topic in topics {
        let r = host.post(&format!("/api/v1/events/{topic}"), body);
        assert_eq!(r.status, 403, "{topic}: {}", r.body);
        assert!(r.body.contains("reserved"), "{}", r.body);
    }
    assert_eq!(
        host.post("/api/v1/events/device.light1.command", "{}")
            .status,
        202
    );
    // Nor through a plugin that publishes what it is asked to: only the
    // owner publishes a reserved topic.
    let r = host.call(
        "demo.publish",
        &json!({"topic": "internal.plugin.stopped", "payload": {"plugin": "monitoring"}}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("reserved"), "{}", r.body);
    let r = host.call(
        "demo.publish",
        &json!({"topic": "device.light2.command", "payload": {}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(host.plugin("monitoring").unwrap()["state"], "started");
    drop(host);

    // Not even with the admin token.
    let host = TestHost::builder().admin().start();
    let admin = bearer(ADMIN_TOKEN);
    for topic in topics {
        let path = format!("/api/v1/events/{topic}");
        let r = host.request("POST", &path, Some(body), &[("Authorization", &admin)]);
        assert_eq!(r.status, 403, "{topic} as admin: {}", r.body);
    }
}

#[test]
fn bodies_must_be_declared_json() {
    let host = TestHost::builder().plugin(DEMO).config(QUIET_DEMO).start();
    let body = r#"{"device":"light1"}"#;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = host.request(
            "POST",
            "/api/v1/services/demo.light.toggle",
            Some(body),
            &[("Content-Type", ct)],
        );
        assert_eq!(r.status, 415, "{ct}: {}", r.body);
        assert!(r.body.contains("application/json"), "{}", r.body);
        let r = host.request(
            "POST",
            "/api/v1/events/device.light1.command",
            Some(body),
            &[("Content-Type", ct)],
        );
        assert_eq!(r.status, 415, "event {ct}: {}", r.body);
        let r = host.request(
            "PUT",
            "/api/v1/storage/http/k",
            Some("1"),
            &[("Content-Type", ct)],
        );
        assert_eq!(r.status, 415, "storage {ct}: {}", r.body);
    }
    // None of them ran.
    assert!(!light_is_on(&host));
    let r = host.request(
        "POST",
        "/api/v1/services/demo.light.toggle",
        Some(body),
        &[("Content-Type", "application/json; charset=utf-8")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(light_is_on(&host));
}

#[test]
fn foreign_host_names_and_origins_are_refused() {
    let host = TestHost::builder().plugin(DEMO).config(QUIET_DEMO).start();
    let port = host.addr.port();
    let get = |host_header: &str, extra: &str| {
        host.raw(
            format!(
                "GET /api/v1/plugins HTTP/1.1\r\nHost: {host_header}\r\n{extra}Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    // DNS rebinding: a page on evil.example whose name now points here.
    let r = get(&format!("evil.example:{port}"), "");
    assert_eq!(r.status, 421, "{}", r.body);
    assert!(r.body.contains("allowed_hosts"), "{}", r.body);
    assert_eq!(get(&format!("192.0.2.7:{port}"), "").status, 421);
    assert_eq!(get(&format!("localhost:{port}"), "").status, 200);
    assert_eq!(get(&format!("127.0.0.1:{port}"), "").status, 200);

    // Cross-site: another page's script or form posting here.
    let toggle = |origin: &str| {
        host.request(
            "POST",
            "/api/v1/services/demo.light.toggle",
            Some(r#"{"device":"light1"}"#),
            &[("Origin", origin)],
        )
    };
    for origin in ["http://evil.example", "null", "http://localhost:1"] {
        let r = toggle(origin);
        assert_eq!(r.status, 403, "{origin}: {}", r.body);
        assert!(r.body.contains("cross-origin"), "{}", r.body);
    }
    assert!(!light_is_on(&host));
    // The host's own pages (the dashboard) are same-origin.
    let r = toggle(&format!("http://{}", host.addr));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(light_is_on(&host));
}

/// Runs the binary with `args` and waits for it to exit; `None` if it was
/// still running after `max` (then it is killed).
fn run_to_exit(args: &[&str], max: Duration) -> (Option<std::process::ExitStatus>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-harness"))
        .arg("--plugins-dir")
        .arg(dir.path().join("plugins"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + max;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (status, err)
}

#[test]
fn a_public_address_without_an_api_token_refuses_to_start() {
    let (status, stderr) = run_to_exit(&["--listen", "0.0.0.0:0"], Duration::from_secs(60));
    let status = status.expect("the host must exit, not serve 0.0.0.0 without a token");
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.contains("0.0.0.0:0")
            && stderr.contains("--allow-public-bind")
            && stderr.contains("allow_public_bind")
            && stderr.contains("api_token"),
        "the error says how to allow it: {stderr}"
    );

    // Explicitly allowed: it serves, on every address.
    let host = TestHost::builder()
        .listen("0.0.0.0:0")
        .arg("--allow-public-bind")
        .start();
    assert!(host.addr.ip().is_unspecified(), "{}", host.addr);
    assert_eq!(host.get("/api/v1/plugins").status, 200);
    drop(host);

    // With an API token it needs no flag.
    let host = TestHost::builder()
        .listen("0.0.0.0:0")
        .config("[host.access]\napi_token = \"public-api-token\"")
        .start();
    assert_eq!(host.get("/api/v1/plugins").status, 401);
}

#[test]
fn api_and_admin_tokens_from_files_guard_the_api_and_are_never_logged() {
    let secrets = tempfile::tempdir().unwrap();
    let api_file = secrets.path().join("api-token");
    let admin_file = secrets.path().join("admin-token");
    let (api, admin) = ("api-7f3c9e1d5b", "admin-2a8e6c4f0d");
    std::fs::write(&api_file, format!("{api}\n")).unwrap();
    std::fs::write(&admin_file, admin).unwrap();
    let mut host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .config(&format!(
            "[host.access]\napi_token_file = {:?}\nadmin_token_file = {:?}",
            api_file.display().to_string(),
            admin_file.display().to_string()
        ))
        .start();
    let with = |method: &str, path: &str, body: Option<&str>, token: &str| {
        let auth = bearer(token);
        host.request(method, path, body, &[("Authorization", &auth)])
    };

    // Everything under /api/v1 needs a token…
    for path in [
        "/api/v1/plugins",
        "/api/v1/host",
        "/api/v1/services",
        "/api/v1/monitoring/health",
        "/api/v1/monitoring/status",
    ] {
        let r = host.get(path);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = with("GET", path, None, "wrong-token");
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(r.body.contains("wrong bearer token"), "{}", r.body);
        assert!(
            with("GET", path, None, api).status < 300,
            "{path} with api token"
        );
        assert!(
            with("GET", path, None, admin).status < 300,
            "{path} with admin token"
        );
    }
    let r = host.call("demo.light.toggle", &json!({"device": "light1"}));
    assert_eq!(r.status, 401, "{}", r.body);
    let r = with(
        "POST",
        "/api/v1/services/demo.light.toggle",
        Some(r#"{"device":"light1"}"#),
        api,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // …except liveness, readiness and the scrape, which keep their own rules.
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
    wait_for("ready", Duration::from_secs(30), || {
        (host.get("/api/v1/monitoring/health/ready").status == 200).then_some(())
    });
    wait_for("the call in the scrape", Duration::from_secs(30), || {
        host.metrics()
            .contains("homeconsole_service_calls_total{")
            .then_some(())
    });

    // Admin actions need the admin token: the API token is 401.
    let check = r#"{"name":"hub","service":"demo.health"}"#;
    let path = "/api/v1/services/monitoring.register_health_check";
    assert_eq!(with("POST", path, Some(check), api).status, 401);
    assert_eq!(with("POST", path, Some(check), admin).status, 200);
    let ns = "/api/v1/storage/demo-devices/k";
    assert_eq!(with("PUT", ns, Some("1"), api).status, 401);
    assert_eq!(with("PUT", ns, Some("1"), admin).status, 204);
    assert_eq!(
        with("PUT", "/api/v1/storage/http/k", Some("1"), api).status,
        204
    );
    // The host's admin token opens the plugin's admin endpoints too.
    assert_eq!(
        with(
            "GET",
            "/api/v1/monitoring/errors/0000000000000000",
            None,
            api
        )
        .status,
        403
    );
    assert_eq!(
        with(
            "GET",
            "/api/v1/monitoring/errors/0000000000000000",
            None,
            admin
        )
        .status,
        404
    );

    host.terminate();
    let logs = host.logs().join("\n");
    assert!(logs.contains("\"api_token\":true"), "{logs}");
    for secret in [api, admin] {
        assert!(!logs.contains(secret), "a token was logged");
    }
}

#[test]
fn status_shows_no_paths_without_a_token() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[plugins.monitoring.access]\nmetrics_token = \"scrape-me\"")
        .start();
    let data_dir = host.data_dir.display().to_string();
    let plugins_dir = host.plugins_dir.display().to_string();
    let r = host.get("/api/v1/monitoring/status");
    assert_eq!(r.status, 200);
    assert!(
        !r.body.contains(&data_dir) && !r.body.contains(&plugins_dir),
        "{}",
        r.body
    );
    assert!(r.json()["host"]["data_dir"]
        .as_str()
        .unwrap()
        .contains("hidden"));
    let r = host.request(
        "GET",
        "/api/v1/monitoring/status",
        None,
        &[("Authorization", "Bearer scrape-me")],
    );
    assert_eq!(r.json()["host"]["data_dir"], data_dir.as_str());
}

#[test]
fn the_query_api_and_health_check_service_follow_the_token_rules() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(
            "[plugins.monitoring.access]\nmetrics_token = \"scrape-me\"\nhealth_details_require_token = true",
        )
        .start();
    let query = "/api/v1/monitoring/prometheus/api/v1/query?query=1";
    let r = host.get(query);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = host.request("GET", query, None, &[("Authorization", "Bearer scrape-me")]);
    assert_eq!(r.status, 200, "{}", r.body);
    // The host's word on a request's tokens cannot be forged by the client.
    let r = host.request("GET", query, None, &[("X-HomeConsole-Access", "admin")]);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = host.request(
        "GET",
        "/api/v1/monitoring/errors/0000000000000000",
        None,
        &[("X-HomeConsole-Access", "admin")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = host.request(
        "POST",
        "/api/v1/monitoring/prometheus/api/v1/query",
        Some("query=1"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(r.status, 401, "{}", r.body);

    // Like /health: the overall status is public, details need a token.
    let r = host.call("monitoring.health_check", &json!({"component": "overall"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = host.call("monitoring.health_check", &json!({"component": "storage"}));
    assert_eq!(r.status, 403, "{}", r.body);
    drop(host);

    let host = TestHost::builder()
        .plugin(MONITORING)
        .config("[plugins.monitoring.access]\nhealth_details_require_token = true")
        .admin()
        .start();
    let r = host.admin_call("monitoring.health_check", &json!({"component": "storage"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["result"].is_object(), "{}", r.body);
}

#[test]
fn a_health_check_belongs_to_the_caller_that_registered_it() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .plugin(crate::support::FAULTY)
        .config("[plugins.demo-devices]\ninterval_ms = 0")
        .config("[plugins.faulty]\non_event_call = \"monitoring.register_health_check\"")
        .admin()
        .start();
    let check = |name: &str| {
        let status = host.get("/api/v1/monitoring/status").json();
        status["custom_health_checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    };
    let r = host.admin_call(
        "monitoring.register_health_check",
        &json!({"name": "hub", "service": "demo.health", "critical": false}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let hub = check("hub").expect("registered");
    assert_eq!(hub["registered_by"], plugin_abi::HTTP_ADMIN_CALLER, "{hub}");
    // Another plugin (faulty, calling the service from its event handler)
    // cannot take it over…
    let r = host.post(
        "/api/v1/events/faulty.takeover",
        r#"{"name":"hub","service":"nope","critical":true}"#,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    wait_for("the refusal logged", Duration::from_secs(30), || {
        host.logs()
            .iter()
            .any(|l| l.contains("belongs to") && l.contains(plugin_abi::HTTP_ADMIN_CALLER))
            .then_some(())
    });
    let hub = check("hub").unwrap();
    assert_eq!(hub["service"], "demo.health", "{hub}");
    // …but registers its own.
    host.post(
        "/api/v1/events/faulty.own",
        r#"{"name":"faulty-own","service":"nope","critical":false}"#,
    );
    let own = wait_for("faulty registers its own", Duration::from_secs(30), || {
        check("faulty-own")
    });
    assert_eq!(own["registered_by"], "faulty");
}
