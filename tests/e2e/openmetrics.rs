//! OpenMetrics by content negotiation, exemplars linking latency to traces,
//! gzip, and the real Prometheus storing our exemplars
//! (`--enable-feature=exemplar-storage`): `/api/v1/query_exemplars` returns
//! our trace ids and the host's trace API finds each of them.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::metrics::assert_lint_clean;
use crate::support::{start_prometheus, wait_for, TestHost, DEMO, MONITORING};
use test_support::require_binary;

const WAIT: Duration = Duration::from_secs(60);
const METRICS: &str = "/api/v1/monitoring/metrics";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

/// A sampled `traceparent` with a fresh trace id (returned as the second value).
fn traceparent(n: u64) -> (String, String) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let trace_id = format!("{:016x}{:016x}", nanos, n + 1);
    (format!("00-{trace_id}-{:016x}-01", n + 7), trace_id)
}

/// Calls `demo.light.toggle` under a new sampled trace; returns its id.
fn traced_call(host: &TestHost, n: u64) -> String {
    let (tp, id) = traceparent(n);
    let r = host.request(
        "POST",
        "/api/v1/services/demo.light.toggle",
        Some("{\"device\":\"light1\"}"),
        &[("traceparent", tp.as_str())],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    id
}

fn demo_host() -> TestHost {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[plugins.demo-devices]\ninterval_ms = 0\n")
        .start();
    wait_for("demo started", WAIT, || {
        (host.plugin("demo-devices")?["state"] == "started").then_some(())
    });
    host
}

#[test]
fn openmetrics_with_exemplars_by_negotiation_and_gzip() {
    let host = demo_host();
    let id = traced_call(&host, 1);
    let exemplar = format!("trace_id=\"{id}\"");
    let families = [
        "homeconsole_service_call_duration_seconds_bucket{service_name=\"demo.light.toggle\"",
        "homeconsole_http_request_duration_seconds_bucket{route=\"/api/v1/services/{name}\",method=\"POST\"",
    ];
    // The HTTP and the service-call observations arrive separately: wait for both.
    let om = wait_for("exemplars of the call on both families", WAIT, || {
        let r = host.request("GET", METRICS, None, &[("Accept", OPENMETRICS)]);
        families
            .iter()
            .all(|f| {
                r.body
                    .lines()
                    .any(|l| l.starts_with(f) && l.contains(&exemplar))
            })
            .then_some(r)
    });
    assert!(
        om.header("content-type")
            .unwrap_or("")
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{:?}",
        om.headers
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om
        .body
        .contains("# TYPE homeconsole_service_calls counter\n"));
    assert!(!om.body.contains("# TYPE homeconsole_service_calls_total"));
    for family in families {
        let line = om
            .body
            .lines()
            .find(|l| l.starts_with(family) && l.contains(&exemplar))
            .unwrap_or_else(|| panic!("no exemplar of {id} on {family}:\n{}", om.body));
        let (_, ex) = line.split_once(" # ").unwrap();
        assert!(
            ex.starts_with(&format!("{{{exemplar},span_id=\"")),
            "{line}"
        );
    }

    // The same exemplars as JSON (the built-in dashboard's trace links).
    let ex = host.get("/api/v1/monitoring/exemplars").json();
    assert!(
        ex["exemplars"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["trace_id"] == id.as_str() && e["value"].as_f64().is_some()),
        "{ex}"
    );
    assert_eq!(
        host.get("/api/v1/monitoring/exemplars?metric=nope").status,
        400
    );

    // The classic format has no exemplars and stays lint-clean.
    let plain = host.get(METRICS);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(!plain.body.contains("trace_id"));
    assert_lint_clean(&plain.body);

    // gzip when asked.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(&format!("http://{}{METRICS}", host.addr))
        .header("Accept", OPENMETRICS)
        .header("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let zipped = resp.body_mut().read_to_vec().unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains(&exemplar) && text.ends_with("# EOF\n"));
    assert!(
        zipped.len() * 3 < text.len(),
        "compressed {} of {}",
        zipped.len(),
        text.len()
    );
}

/// GET over HTTP/1.1 with a real client (Prometheus answers large JSON
/// chunked).
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut resp = ureq::get(&format!("http://{addr}{path}")).call().ok()?;
    resp.body_mut().read_to_string().ok()
}

#[test]
fn prometheus_stores_our_exemplars_and_each_trace_is_found() {
    require_binary!("prometheus");
    let host = demo_host();
    let prometheus = start_prometheus(
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: homeconsole\n    metrics_path: {METRICS}\n    static_configs:\n      - targets: ['{}']\n",
            host.addr
        ),
        &["--enable-feature=exemplar-storage"],
    );
    let prom_addr = prometheus.addr.clone();

    // Calls keep coming while Prometheus scrapes, each under its own trace.
    let mut ours = Vec::new();
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let found = wait_for("our trace ids in query_exemplars", WAIT, || {
        ours.push(traced_call(&host, ours.len() as u64));
        let end = start + 3600;
        let body = http_get(
            &prom_addr,
            &format!(
                "/api/v1/query_exemplars?query=homeconsole_service_call_duration_seconds_bucket&start={start}&end={end}"
            ),
        )?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let ids: Vec<String> = v["data"]
            .as_array()?
            .iter()
            .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
            .filter(|id| ours.contains(id))
            .collect();
        (!ids.is_empty()).then_some(ids)
    });
    // Each exemplar's trace is in the host's trace store.
    for id in &found {
        let r = host.get(&format!("/api/v1/monitoring/traces/{id}"));
        assert_eq!(r.status, 200, "trace {id}: {}", r.body);
        assert!(r.body.contains("demo.light.toggle"), "{}", r.body);
    }
}
