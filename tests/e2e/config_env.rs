//! Configuration the ops way, end to end: `HOMECONSOLE_…` overrides of any
//! key, the standard OpenTelemetry / Sentry / `RUST_LOG` variables, secrets
//! from files, per-target log filters, and `--print-config`.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{wait_for, TestHost, DEMO, MONITORING};
use test_support::RecordingPeer;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn environment_variables_configure_the_host_and_the_plugin() {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("admin_token");
    std::fs::write(&token_file, "from-a-file\n").unwrap();
    let sentry_rx = RecordingPeer::start();
    let otlp_rx = RecordingPeer::start();
    let (sentry_port, otlp_port) = (sentry_rx.port(), otlp_rx.port());
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[plugins.demo-devices]\ninterval_ms = 0\n")
        .env(
            "HOMECONSOLE_PLUGINS__MONITORING__ACCESS__ADMIN_TOKEN_FILE",
            token_file.to_str().unwrap(),
        )
        .env(
            "HOMECONSOLE_PLUGINS__MONITORING__TRACING__OTLP_FLUSH_MS",
            "100",
        )
        .env("HOMECONSOLE_HOST__SERVICE_TIMEOUT_MS", "4321")
        .env(
            "SENTRY_DSN",
            &format!("http://envkey@127.0.0.1:{sentry_port}/5"),
        )
        .env("SENTRY_ENVIRONMENT", "staging")
        .env("OTEL_SERVICE_NAME", "env-named-service")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{otlp_port}"),
        )
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
        .env("RUST_LOG", "info,plugin.monitoring=error")
        .env(
            "HOMECONSOLE_PLUGINS__MONITORING__EXTERNAL_LABELS",
            "{ instance = \"env-host\", site = \"attic\" }",
        )
        .start();
    wait_for("demo started", WAIT, || {
        (host.plugin("demo-devices")?["state"] == "started").then_some(())
    });

    // The admin token came from the file named by the override.
    let reload = |auth: &str| {
        host.request(
            "POST",
            "/api/v1/monitoring/rules/reload",
            Some("{}"),
            &[("Authorization", auth)],
        )
        .status
    };
    assert_eq!(reload("Bearer wrong"), 401);
    assert_eq!(reload("Bearer from-a-file"), 200);

    // SENTRY_DSN and SENTRY_ENVIRONMENT.
    host.call("demo.fail", &json!({}));
    let event = wait_for("event forwarded to SENTRY_DSN", WAIT, || {
        while let Some(r) = sentry_rx.next_request(Duration::from_millis(200)) {
            let text = r.text();
            if text.contains("demo.fail always fails") {
                assert_eq!(r.request_line(), "POST /api/5/envelope/ HTTP/1.1");
                return text.lines().nth(2).map(str::to_owned);
            }
        }
        None
    });
    let event: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["environment"], "staging", "{event}");
    // External labels: `instance` is the server name, the rest are tags.
    assert_eq!(event["server_name"], "env-host", "{event}");
    assert_eq!(event["tags"]["site"], "attic", "{event}");

    // OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces), OTEL_SERVICE_NAME,
    // OTEL_RESOURCE_ATTRIBUTES.
    let export = wait_for("spans at the OTEL endpoint", WAIT, || {
        otlp_rx.next_request(Duration::from_millis(200))
    });
    assert_eq!(export.request_line(), "POST /v1/traces HTTP/1.1");
    let has = |needle: &[u8]| export.body.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"env-named-service"),
        "service.name from OTEL_SERVICE_NAME"
    );
    assert!(has(b"deployment.environment") && has(b"staging"));

    // RUST_LOG: the monitoring plugin logs errors only, the rest info.
    let logs = host.json_logs();
    assert!(logs.iter().any(|l| l["message"] == "listening"));
    assert!(
        !logs
            .iter()
            .any(|l| l["plugin"] == "monitoring" && l["level"] == "info"),
        "plugin.monitoring=error hides its info lines"
    );
    assert!(
        logs.iter()
            .any(|l| l["plugin"] == "demo-devices" && l["level"] == "info"),
        "other plugins still log at info"
    );
}

fn print_config(config: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-harness"));
    for (name, _) in std::env::vars() {
        if crate::support::is_config_var(&name) {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .arg("--config")
        .arg(&path)
        .arg("--print-config")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn print_config_shows_the_merged_config_with_secrets_redacted() {
    let (ok, out, err) = print_config(
        "[host]\ntick_interval_ms = 500\n[plugins.monitoring.access]\nadmin_token = \"file-secret\"\n",
        &[
            ("HOMECONSOLE_HOST__TICK_INTERVAL_MS", "250"),
            ("HOMECONSOLE_PLUGINS__MONITORING__TRACING__SERVICE_NAME", "printed"),
            ("SENTRY_DSN", "https://dsnkey@sentry.example/1"),
            ("RUST_LOG", "warn,bus=debug"),
        ],
    );
    assert!(ok, "{err}");
    let parsed: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(parsed["host"]["tick_interval_ms"].as_integer(), Some(250));
    assert_eq!(parsed["host"]["log_level"].as_str(), Some("warn,bus=debug"));
    let m = &parsed["plugins"]["monitoring"];
    assert_eq!(m["tracing"]["service_name"].as_str(), Some("printed"));
    assert_eq!(m["access"]["admin_token"].as_str(), Some("<redacted>"));
    assert_eq!(m["errors"]["sentry_dsn"].as_str(), Some("<redacted>"));
    assert!(
        !out.contains("file-secret") && !out.contains("dsnkey"),
        "{out}"
    );
    assert!(
        out.contains("# plugins.monitoring.errors.sentry_dsn set by SENTRY_DSN"),
        "{out}"
    );

    // A bad value names the variable's key and stops the host.
    let (ok, _, err) = print_config("", &[("HOMECONSOLE_HOST__TICK_INTERVAL_MS", "soon")]);
    assert!(!ok);
    assert!(err.contains("tick_interval_ms"), "{err}");
    let (ok, _, err) = print_config("", &[("RUST_LOG", "bus=loud")]);
    assert!(!ok);
    assert!(err.contains("log_level"), "{err}");
}
