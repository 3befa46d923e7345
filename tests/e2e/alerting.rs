//! Alerting end to end: rules on fast intervals over a gauge the test moves
//! (`monitoring.record_metric`), states through the API and `homeconsole_alerts`,
//! the bus event, a local webhook sink, persistence across a restart, a real
//! Alertmanager, notifiers that are down, a broken rule file and the reload API.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::metrics::assert_lint_clean;
use crate::support::{peer_http, sample, wait_for, TestHost, MONITORING};
use test_support::{closed_port, require_binary, Alertmanager, RecordingPeer};

/// Generous: the test machines are shared and often heavily loaded.
const WAIT: Duration = Duration::from_secs(60);

/// Fast rules over `e2e_temperature` (moved by the test) and one that is always true.
const RULES: &str = r#"groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: HotRoom
        expr: e2e_temperature > 30
        for: 2s
        labels:
          severity: warning
        annotations:
          summary: "Room {{ $labels.room }} is at {{ $value }} degrees"
      - alert: AlwaysOn
        expr: homeconsole_build_info > 0
        for: 1s
        labels:
          severity: info
"#;

/// JSON bodies `sink` received on `path` (`null` for a body that is not JSON).
fn received(sink: &RecordingPeer, path: &str) -> Vec<Value> {
    sink.requests_to(path)
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// Alerts (status, alertname) of every payload `sink` received on `path`.
fn sink_alerts(sink: &RecordingPeer, path: &str) -> Vec<(String, String)> {
    received(sink, path)
        .iter()
        .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["status"].as_str().unwrap_or("").to_owned(),
                a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// How many alerts `alertname` with `status` `sink` received on `path`.
fn count(sink: &RecordingPeer, path: &str, status: &str, alertname: &str) -> usize {
    sink_alerts(sink, path)
        .iter()
        .filter(|(s, n)| s == status && n == alertname)
        .count()
}

fn set_temperature(host: &TestHost, value: f64) {
    let r = host.call(
        "monitoring.record_metric",
        &json!({"name": "e2e_temperature", "value": value, "kind": "gauge",
                "labels": {"room": "kitchen"}, "help": "Test temperature."}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

fn write_rules(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn alerting_config(rules_dir: &Path, extra: &str) -> String {
    format!(
        "[plugins.monitoring.alerting]\nsample_interval_secs = 1\nrules_dir = {:?}\n{extra}",
        rules_dir.display().to_string()
    )
}

/// The state of alert `name` in `GET /alerts` (None when not active).
fn api_state(host: &TestHost, name: &str) -> Option<String> {
    let v = host.get("/api/v1/monitoring/alerts").json();
    v["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
        .map(|a| a["state"].as_str().unwrap_or("").to_owned())
}

fn metric_state(text: &str, name: &str, state: &str) -> Option<f64> {
    sample(
        text,
        "homeconsole_alerts",
        &[("alertname", name), ("alertstate", state)],
    )
}

#[test]
fn an_alert_goes_pending_firing_resolved_and_survives_a_restart() {
    let sink = RecordingPeer::start();
    let rules = tempfile::tempdir().unwrap();
    write_rules(rules.path(), "e2e.yml", RULES);
    let config = alerting_config(
        rules.path(),
        &format!("webhook_urls = [{:?}]\n", sink.url("/hook")),
    );
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(&config)
        .start();

    // Rules are loaded, the built-in ones too, without errors.
    let r = wait_for("rules evaluated", WAIT, || {
        let v = host.get("/api/v1/monitoring/rules").json();
        let all: Vec<Value> = v["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        all.iter()
            .any(|r| r["name"] == "HotRoom" && r["health"] == "ok")
            .then_some(v)
    });
    assert_eq!(r["errors"], json!([]), "{r}");
    let groups = r["groups"].as_array().unwrap();
    assert!(groups
        .iter()
        .any(|g| g["file"] == "builtin:homeconsole.rules.yml"));
    let e2e = groups.iter().find(|g| g["name"] == "e2e").unwrap();
    assert_eq!(e2e["interval"], 1.0);
    let hot = &e2e["rules"][0];
    assert_eq!(hot["type"], "alerting");
    assert!(hot["lastEvaluation"].is_string() && hot["evaluationTime"].is_number());

    // Inactive: no series yet.
    assert_eq!(api_state(&host, "HotRoom"), None);
    set_temperature(&host, 35.0);
    // Pending (for: 2s), then firing; both in the API and in the metric.
    wait_for("HotRoom pending in the API", WAIT, || {
        (api_state(&host, "HotRoom").as_deref() == Some("pending")).then_some(())
    });
    wait_for("HotRoom pending in the metric", WAIT, || {
        let t = host.metrics();
        (metric_state(&t, "HotRoom", "pending") == Some(1.0)
            || metric_state(&t, "HotRoom", "firing") == Some(1.0))
        .then_some(())
    });
    wait_for("HotRoom firing", WAIT, || {
        (api_state(&host, "HotRoom").as_deref() == Some("firing")).then_some(())
    });
    let text = host.metrics();
    assert_eq!(
        metric_state(&text, "HotRoom", "firing"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric_state(&text, "HotRoom", "pending"), None);
    // The alert's own labels are on the series (label sets differ per alert).
    assert_eq!(
        sample(
            &text,
            "homeconsole_alerts",
            &[
                ("alertname", "HotRoom"),
                ("room", "kitchen"),
                ("severity", "warning")
            ]
        ),
        Some(1.0)
    );
    assert_lint_clean(&text);
    let alerts = host.get("/api/v1/monitoring/alerts").json();
    let a = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "HotRoom")
        .unwrap()
        .clone();
    assert_eq!(a["annotations"]["summary"], "Room kitchen is at 35 degrees");
    assert_eq!(a["value"], "35");

    // Bus event, webhook (payload version 4), history.
    wait_for("firing event on the bus", WAIT, || {
        sample(
            &host.metrics(),
            "homeconsole_events_total",
            &[("event_type", "monitoring.alert.firing")],
        )
        .filter(|&v| v >= 1.0)
    });
    wait_for("webhook got HotRoom firing", WAIT, || {
        (count(&sink, "/hook", "firing", "HotRoom") == 1).then_some(())
    });
    let payload = received(&sink, "/hook")
        .into_iter()
        .find(|p| p["alerts"][0]["labels"]["alertname"] == "HotRoom")
        .unwrap();
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    for key in [
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "groupKey",
        "truncatedAlerts",
    ] {
        assert!(payload.get(key).is_some(), "{key} missing in {payload}");
    }
    assert_eq!(payload["alerts"][0]["labels"]["room"], "kitchen");

    // Resolved.
    set_temperature(&host, 20.0);
    wait_for("HotRoom resolved", WAIT, || {
        api_state(&host, "HotRoom").is_none().then_some(())
    });
    let text = wait_for("HotRoom series gone", WAIT, || {
        let t = host.metrics();
        (metric_state(&t, "HotRoom", "firing").is_none()).then_some(t)
    });
    assert_lint_clean(&text);
    wait_for("webhook got HotRoom resolved", WAIT, || {
        (count(&sink, "/hook", "resolved", "HotRoom") == 1).then_some(())
    });
    wait_for("resolved event on the bus", WAIT, || {
        sample(
            &host.metrics(),
            "homeconsole_events_total",
            &[("event_type", "monitoring.alert.resolved")],
        )
        .filter(|&v| v >= 1.0)
    });
    let history = host
        .get("/api/v1/monitoring/alerts/history?alertname=HotRoom")
        .json();
    let statuses: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["resolved", "firing"], "{history}");
    assert_eq!(history["entries"][1]["value"], "35");

    // Reload without an admin token configured: refused with 403.
    let r = host.post("/api/v1/monitoring/rules/reload", "");
    assert_eq!(r.status, 403, "{}", r.body);

    // Restart: AlwaysOn stays firing and is not notified again.
    wait_for("AlwaysOn firing and notified", WAIT, || {
        (api_state(&host, "AlwaysOn").as_deref() == Some("firing")
            && count(&sink, "/hook", "firing", "AlwaysOn") == 1)
            .then_some(())
    });
    // Let the state of the last evaluation reach storage.
    std::thread::sleep(Duration::from_millis(1500));
    let host = host.restart();
    let first = wait_for("AlwaysOn back after restart", WAIT, || {
        api_state(&host, "AlwaysOn")
    });
    assert_eq!(first, "firing", "restored alert must still be firing");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(api_state(&host, "AlwaysOn").as_deref(), Some("firing"));
    assert_eq!(
        count(&sink, "/hook", "firing", "AlwaysOn"),
        1,
        "no duplicate notification after restart: {:?}",
        sink_alerts(&sink, "/hook")
    );
    assert_eq!(count(&sink, "/hook", "firing", "HotRoom"), 1);
    assert_eq!(count(&sink, "/hook", "resolved", "HotRoom"), 1);
    // The alert history survived too.
    let history = host
        .get("/api/v1/monitoring/alerts/history?alertname=HotRoom")
        .json();
    assert_eq!(history["entries"].as_array().unwrap().len(), 2, "{history}");
}

#[test]
fn a_real_alertmanager_receives_the_alert_and_its_resolution() {
    require_binary!("prometheus-alertmanager");
    let sink = RecordingPeer::start();
    let am = Alertmanager::start(
        &format!(
            "route:\n  receiver: sink\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: sink\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n",
            sink.url("/am")
        ),
        &[],
    );
    am.wait_ready(Duration::from_secs(60));
    let am_addr = format!("127.0.0.1:{}", am.port);

    let rules = tempfile::tempdir().unwrap();
    write_rules(rules.path(), "e2e.yml", RULES);
    let config = alerting_config(
        rules.path(),
        &format!("default_rules = false\nalertmanager_url = \"http://{am_addr}\"\n"),
    );
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(&config)
        .start();
    set_temperature(&host, 40.0);

    let am_alerts = || -> Vec<Value> {
        peer_http(&am_addr, "GET", "/api/v2/alerts")
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let hot = wait_for("HotRoom in Alertmanager", WAIT, || {
        am_alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "HotRoom")
    });
    assert_eq!(hot["labels"]["room"], "kitchen");
    assert_eq!(hot["labels"]["severity"], "warning");
    assert_eq!(hot["status"]["state"], "active");
    assert_eq!(
        hot["annotations"]["summary"],
        "Room kitchen is at 40 degrees"
    );
    wait_for("sink got firing from Alertmanager", WAIT, || {
        (count(&sink, "/am", "firing", "HotRoom") >= 1).then_some(())
    });
    let payload = received(&sink, "/am")
        .into_iter()
        .find(|p| p["groupLabels"]["alertname"] == "HotRoom")
        .unwrap();
    assert_eq!(payload["version"], "4");

    set_temperature(&host, 10.0);
    wait_for("sink got resolved from Alertmanager", WAIT, || {
        (count(&sink, "/am", "resolved", "HotRoom") >= 1).then_some(())
    });
    // Alertmanager no longer lists it as active.
    wait_for("HotRoom no longer active in Alertmanager", WAIT, || {
        (!am_alerts()
            .iter()
            .any(|a| a["labels"]["alertname"] == "HotRoom" && a["status"]["state"] == "active"))
        .then_some(())
    });
    let text = host.metrics();
    assert!(
        sample(
            &text,
            "homeconsole_alert_notifications_total",
            &[("notifier", "alertmanager"), ("result", "sent")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );
}

/// Rules with one broken rule in a file of their own (next to a valid one).
const BROKEN: &str = r#"groups:
  - name: broken-group
    interval: 1s
    rules:
      - alert: BadRule
        expr: rate(e2e_temperature[1m]
      - alert: StillFine
        expr: e2e_temperature > 100
"#;

#[test]
fn down_notifiers_broken_rules_and_the_reload_api() {
    let rules = tempfile::tempdir().unwrap();
    write_rules(rules.path(), "e2e.yml", RULES);
    write_rules(rules.path(), "broken.yml", BROKEN);
    let closed = closed_port();
    let config = alerting_config(
        rules.path(),
        &format!(
            "default_rules = false\nnotify_max_retries = 0\nalertmanager_url = \"http://127.0.0.1:{closed}\"\nwebhook_urls = [\"http://127.0.0.1:{closed}/hook\"]\n[plugins.monitoring.access]\nadmin_token = \"adm1n\"\n"
        ),
    );
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(&config)
        .start();

    // The broken rule is reported with file, group and rule; the others load.
    let v = wait_for("rules evaluated", WAIT, || {
        let v = host.get("/api/v1/monitoring/rules").json();
        let ok = v["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["health"] == "ok")
            .count();
        (ok == 3).then_some(v)
    });
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert!(errors[0]["file"].as_str().unwrap().ends_with("broken.yml"));
    assert_eq!(errors[0]["group"], "broken-group");
    assert_eq!(errors[0]["rule"], "BadRule");
    let text = errors[0]["error"].as_str().unwrap();
    assert!(
        text.contains("broken.yml") && text.contains("broken-group") && text.contains("BadRule"),
        "{text}"
    );
    let names: Vec<String> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["StillFine", "HotRoom", "AlwaysOn"]);
    assert!(sample(&host.metrics(), "homeconsole_alert_rule_load_errors", &[]) == Some(1.0));

    // Notifiers are down: evaluation continues, failures are counted.
    set_temperature(&host, 50.0);
    wait_for("HotRoom firing", WAIT, || {
        (api_state(&host, "HotRoom").as_deref() == Some("firing")).then_some(())
    });
    let text = wait_for("failures counted", WAIT, || {
        let t = host.metrics();
        let failed = |n: &str| {
            sample(
                &t,
                "homeconsole_alert_notifications_total",
                &[("notifier", n), ("result", "failed")],
            )
            .unwrap_or(0.0)
        };
        (failed("alertmanager") >= 1.0 && failed("webhook-0") >= 1.0).then_some(t.clone())
    });
    assert_lint_clean(&text);
    set_temperature(&host, 5.0);
    wait_for("HotRoom resolved despite down notifiers", WAIT, || {
        api_state(&host, "HotRoom").is_none().then_some(())
    });
    let status = host.get("/api/v1/monitoring/status").json();
    let notifiers = status["capabilities"]["alerting"]["notifiers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(notifiers.len(), 2, "{status}");
    assert!(notifiers.iter().all(|n| n["failed"].as_u64().unwrap() >= 1));

    // A changed rules dir is picked up on its own.
    write_rules(
        rules.path(),
        "added.yml",
        "groups:\n  - name: added\n    interval: 1s\n    rules:\n      - alert: Added\n        expr: e2e_temperature < 10\n",
    );
    wait_for("Added loaded and pending/firing", WAIT, || {
        api_state(&host, "Added").map(|_| ())
    });

    // The reload API needs the admin token.
    let reload = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        host.request(
            "POST",
            "/api/v1/monitoring/rules/reload",
            Some("{}"),
            &headers,
        )
    };
    assert_eq!(reload(None).status, 401);
    assert_eq!(reload(Some("Bearer wrong")).status, 401);
    // Fix the broken file, then reload through the API.
    write_rules(
        rules.path(),
        "broken.yml",
        &BROKEN.replace("rate(e2e_temperature[1m]", "rate(e2e_temperature[1m])"),
    );
    let r = reload(Some("Bearer adm1n"));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["errors"], json!([]), "{v}");
    assert_eq!(v["rules"], 5);
    let started = Instant::now();
    wait_for("fixed rule evaluated", WAIT, || {
        let v = host.get("/api/v1/monitoring/rules").json();
        v["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .any(|r| r["name"] == "BadRule" && r["health"] == "ok")
            .then_some(())
    });
    assert!(started.elapsed() < WAIT);
    // The alert that was active before the reload kept its state.
    assert!(api_state(&host, "Added").is_some());
}
