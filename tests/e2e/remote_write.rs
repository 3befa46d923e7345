//! Prometheus remote_write end to end: the real Prometheus started with
//! `--web.enable-remote-write-receiver` stores what the host pushes (with
//! its external labels); a receiver that is down is counted and explained.

use std::time::Duration;

use serde_json::Value;

use crate::support::{sample, start_prometheus, wait_for, TestHost, MONITORING};
use test_support::{closed_port, require_binary};

const WAIT: Duration = Duration::from_secs(60);

fn http_get(url: &str) -> Option<String> {
    let mut resp = ureq::get(url).call().ok()?;
    resp.body_mut().read_to_string().ok()
}

fn remote_write_status(host: &TestHost) -> Value {
    host.get("/api/v1/monitoring/status").json()["capabilities"]["remote_write"].clone()
}

#[test]
fn pushed_series_are_queryable_in_prometheus() {
    require_binary!("prometheus");
    let prometheus = start_prometheus(
        "global:\n  scrape_interval: 15s\n",
        &["--web.enable-remote-write-receiver"],
    );
    let base = format!("http://{}", prometheus.addr);
    let dir = tempfile::tempdir().unwrap();

    let token = dir.path().join("token");
    std::fs::write(&token, "push-secret\n").unwrap();
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(&format!(
            "[plugins.monitoring.remote_write]\nurl = \"{base}/api/v1/write\"\ninterval_secs = 1\nbearer_token_file = {:?}\n\
             [plugins.monitoring.external_labels]\ninstance = \"pushed-host\"\nsite = \"behind-nat\"\n",
            token
        ))
        .start();
    let result = wait_for("pushed build_info in Prometheus", WAIT, || {
        let body = http_get(&format!(
            "{base}/api/v1/query?query=homeconsole_build_info%7Binstance%3D%22pushed-host%22%7D"
        ))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let r = v["data"]["result"].as_array()?.first()?.clone();
        Some(r)
    });
    assert_eq!(result["metric"]["site"], "behind-nat", "{result}");
    assert_eq!(result["value"][1], "1", "{result}");
    // A counter pushed twice has grown in Prometheus' view too.
    wait_for("a counter's series", WAIT, || {
        let body = http_get(&format!(
            "{base}/api/v1/query?query=count(homeconsole_monitoring_observations_total%7Bsite%3D%22behind-nat%22%7D)"
        ))?;
        body.contains("\"result\":[{").then_some(())
    });
    let st = wait_for("sent counted", WAIT, || {
        let s = remote_write_status(&host);
        (s["sent"].as_f64()? > 0.0).then_some(s)
    });
    assert_eq!(st["failed"], 0.0, "{st}");
    assert!(st["last_error"].is_null(), "{st}");
    let text = host.metrics();
    assert!(
        sample(
            &text,
            "homeconsole_remote_write_samples_total",
            &[("result", "sent")]
        )
        .unwrap_or(0.0)
            > 0.0,
        "{text}"
    );
    assert!(!text.contains("push-secret"));
}

#[test]
fn a_receiver_that_is_down_is_counted_and_explained() {
    let closed = closed_port();
    let host = TestHost::builder()
        .plugin(MONITORING)
        .config(&format!(
            "[plugins.monitoring.remote_write]\nurl = \"http://127.0.0.1:{closed}/api/v1/write\"\n\
             interval_secs = 0.2\nmax_retries = 1\ninitial_backoff_ms = 50\nmax_queue = 2\n"
        ))
        .start();
    let st = wait_for("failed and dropped samples", WAIT, || {
        let s = remote_write_status(&host);
        (s["failed"].as_f64()? > 0.0 && s["last_error"].is_string()).then_some(s)
    });
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains(&closed.to_string()),
        "{st}"
    );
    assert!(
        st["queued_batches"].as_u64().unwrap() <= 2,
        "the queue is bounded: {st}"
    );
    assert!(host
        .logs()
        .iter()
        .any(|l| l.contains("remote_write") && l.contains("POST")));
}
