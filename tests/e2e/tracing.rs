//! Distributed tracing end to end: one request crossing three plugins is one
//! trace with the right parent links (in memory and over OTLP, decoded with
//! the official protobuf definitions), incoming context is continued,
//! sampling, the store's bounds, manual spans timing out, a dead collector
//! that slows nobody, the startup trace and trace ids in log lines.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{sample, wait_for, Resp, TestHost, DEMO, FAULTY, MONITORING};
use test_support::{closed_port, require_peer, RecordingPeer};

const QUIET_DEMO: &str = "[plugins.demo-devices]\ninterval_ms = 0\n";
/// The faulty fixture plays plugin B: its event handler calls a service.
const CHAIN_B: &str = "[plugins.faulty]\non_event_call = \"demo.light.toggle\"\n";

fn chain_host(extra: &str) -> TestHost {
    TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .plugin(FAULTY)
        .config(QUIET_DEMO)
        .config(CHAIN_B)
        .config(extra)
        .start()
}

/// HTTP → demo.publish (plugin A) → event faulty.go → faulty's handler
/// (plugin B) → demo.light.toggle (plugin C). Returns the response.
fn run_chain(host: &TestHost, headers: &[(&str, &str)]) -> Resp {
    let body = json!({"topic": "faulty.go", "payload": {"device": "light1"}}).to_string();
    let r = host.request(
        "POST",
        "/api/v1/services/demo.publish",
        Some(&body),
        headers,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

fn trace_id_of(r: &Resp) -> String {
    let id = r
        .header("x-trace-id")
        .expect("x-trace-id header")
        .to_owned();
    let tp = r.header("traceparent").expect("traceparent header");
    assert_eq!(tp.len(), 55, "{tp}");
    assert_eq!(&tp[3..35], id, "traceparent and x-trace-id agree");
    id
}

/// Every span node of a trace tree, children removed, depth first.
pub(crate) fn flatten(tree: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack: Vec<Value> = tree["roots"].as_array().cloned().unwrap_or_default();
    while let Some(mut node) = stack.pop() {
        if let Some(children) = node.get_mut("children").map(Value::take) {
            stack.extend(children.as_array().cloned().unwrap_or_default());
        }
        out.push(node);
    }
    out
}

fn find<'a>(spans: &'a [Value], name: &str, plugin: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name && s["plugin"] == plugin)
        .unwrap_or_else(|| {
            panic!(
                "no span {name:?} of plugin {plugin:?} in {}",
                serde_json::to_string_pretty(spans).unwrap()
            )
        })
}

fn parent_of(span: &Value) -> &str {
    span["parent_span_id"].as_str().unwrap_or("")
}

/// Waits until the trace holds a span named `last` and returns its spans.
fn wait_trace(host: &TestHost, trace_id: &str, last: &[&str]) -> Vec<Value> {
    wait_for(
        &format!("trace {trace_id} with {last:?}"),
        Duration::from_secs(20),
        || {
            let r = host.get(&format!("/api/v1/monitoring/traces/{trace_id}"));
            if r.status != 200 {
                return None;
            }
            let spans = flatten(&r.json());
            last.iter()
                .all(|n| spans.iter().any(|s| s["name"] == *n))
                .then_some(spans)
        },
    )
}

const CHAIN_END: &[&str] = &[
    "demo.light.toggle",
    "publish device.light1.state",
    "monitoring.record_metric",
    "storage.set",
    "POST /api/v1/services/{name}",
];

/// Checks the parent links of the chain; returns the spans by name.
fn check_chain(spans: &[Value]) -> HashMap<&'static str, Value> {
    let http = find(spans, "POST /api/v1/services/{name}", "host");
    let publish_svc = find(spans, "demo.publish", "demo-devices");
    let produce = find(spans, "publish faulty.go", "demo-devices");
    let consume = find(spans, "process faulty.go", "faulty");
    let toggle = find(spans, "demo.light.toggle", "demo-devices");
    let state = find(spans, "publish device.light1.state", "demo-devices");
    let metric = find(spans, "monitoring.record_metric", "monitoring");
    let set = find(spans, "storage.set", "demo-devices");
    assert_eq!(http["kind"], "server");
    assert_eq!(
        parent_of(publish_svc),
        http["span_id"],
        "service under HTTP"
    );
    assert_eq!(
        parent_of(produce),
        publish_svc["span_id"],
        "publish under A"
    );
    assert_eq!(produce["kind"], "producer");
    assert_eq!(
        parent_of(consume),
        produce["span_id"],
        "delivery under publish"
    );
    assert_eq!(consume["kind"], "consumer");
    assert_eq!(
        parent_of(toggle),
        consume["span_id"],
        "B's call under delivery"
    );
    assert_eq!(toggle["attributes"]["homeconsole.caller"], "faulty");
    assert_eq!(parent_of(state), toggle["span_id"], "C's publish under C");
    assert_eq!(parent_of(metric), toggle["span_id"], "C's call under C");
    assert_eq!(parent_of(set), toggle["span_id"], "C's storage under C");
    assert_eq!(set["kind"], "client");
    for s in [http, publish_svc, produce, consume, toggle, metric, set] {
        assert_eq!(s["status"]["code"], "ok", "{s}");
    }
    HashMap::from([
        ("http", http.clone()),
        ("publish_svc", publish_svc.clone()),
        ("produce", produce.clone()),
        ("consume", consume.clone()),
        ("toggle", toggle.clone()),
    ])
}

#[test]
fn a_request_crossing_three_plugins_is_one_trace() {
    let host = chain_host("");
    let r = run_chain(&host, &[]);
    let trace_id = trace_id_of(&r);
    let spans = wait_trace(&host, &trace_id, CHAIN_END);
    let chain = check_chain(&spans);
    assert_eq!(parent_of(&chain["http"]), "", "a new trace starts at HTTP");
    // The response's traceparent is the server span.
    assert_eq!(
        &r.header("traceparent").unwrap()[36..52],
        chain["http"]["span_id"]
    );
    // Timings nest: the server span covers the service it called.
    let (h, p) = (&chain["http"], &chain["publish_svc"]);
    assert!(h["duration_ns"].as_u64() >= p["duration_ns"].as_u64());

    // The list finds it by service, plugin and status, newest first.
    for q in [
        "service=demo.light.toggle",
        "plugin=faulty",
        "status=ok",
        "min_duration_ms=0",
    ] {
        let list = host.get(&format!("/api/v1/monitoring/traces?{q}")).json();
        assert!(
            list["traces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["trace_id"] == trace_id.as_str()),
            "{q}: {list}"
        );
    }
    let errors = host
        .get("/api/v1/monitoring/traces?status=error&plugin=faulty")
        .json();
    assert!(errors["traces"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["trace_id"] != trace_id.as_str()));
    assert_eq!(host.get("/api/v1/monitoring/traces?limit=zero").status, 400);
    assert_eq!(host.get("/api/v1/monitoring/traces/not-hex").status, 400);
    assert_eq!(
        host.get(&format!("/api/v1/monitoring/traces/{}", "ab".repeat(16)))
            .status,
        404
    );
    // A failing call is an error span with its message.
    let fail = host.call("demo.fail", &json!({}));
    assert_eq!(fail.status, 500);
    let spans = wait_trace(
        &host,
        &trace_id_of(&fail),
        &["demo.fail", "POST /api/v1/services/{name}"],
    );
    let failed = find(&spans, "demo.fail", "demo-devices");
    assert_eq!(failed["status"]["code"], "error");
    assert_eq!(failed["status"]["message"], "demo.fail always fails");
    let http = find(&spans, "POST /api/v1/services/{name}", "host");
    assert_eq!(http["status"]["code"], "error");
}

#[test]
fn an_incoming_traceparent_is_continued() {
    let host = chain_host("");
    let given_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let given_span = "00f067aa0ba902b7";
    let tp = format!("00-{given_trace}-{given_span}-01");
    let r = run_chain(&host, &[("traceparent", &tp), ("tracestate", "vendor=x")]);
    assert_eq!(trace_id_of(&r), given_trace);
    assert_eq!(r.header("tracestate"), Some("vendor=x"));
    let own = r.header("traceparent").unwrap();
    assert_ne!(&own[36..52], given_span, "the server span is a new span");
    assert!(own.ends_with("-01"));
    let spans = wait_trace(&host, given_trace, CHAIN_END);
    let chain = check_chain(&spans);
    assert_eq!(parent_of(&chain["http"]), given_span);
    assert_eq!(chain["http"]["orphan"], true, "its parent lives elsewhere");

    // An invalid traceparent starts a new trace.
    let bad = host.request(
        "GET",
        "/api/v1/plugins",
        None,
        &[("traceparent", "00-zzzz-bad-01")],
    );
    assert_eq!(bad.status, 200);
    assert_ne!(trace_id_of(&bad), given_trace);
}

#[test]
fn sampled_out_traces_propagate_but_are_not_recorded() {
    let (rx, url) = otlp_receiver();
    let host = chain_host(&format!(
        "[host]\ntick_interval_ms = 200\ntrace_sample_ratio = 0.0\n\
         [plugins.monitoring.tracing]\notlp_endpoint = \"{}\"\notlp_flush_ms = 100\n",
        url
    ));
    let r = run_chain(&host, &[]);
    let trace_id = trace_id_of(&r);
    assert!(r.header("traceparent").unwrap().ends_with("-00"));
    // The context still propagated: plugin B called plugin C.
    wait_for(
        "light1 toggled by the chain",
        Duration::from_secs(10),
        || {
            let v = host
                .call("demo.light.get", &json!({"device": "light1"}))
                .json();
            (v["on"] == true).then_some(())
        },
    );
    wait_for("sampled-out spans counted", Duration::from_secs(10), || {
        let m = host.metrics();
        let n = sample(
            &m,
            "homeconsole_trace_spans_dropped_total",
            &[("reason", "sampled_out")],
        )?;
        (n >= 8.0).then_some(())
    });
    assert_eq!(
        host.get(&format!("/api/v1/monitoring/traces/{trace_id}"))
            .status,
        404
    );
    let list = host.get("/api/v1/monitoring/traces").json();
    assert_eq!(list["traces"].as_array().unwrap().len(), 0, "{list}");
    // A caller that sampled its trace wins over the ratio (parent-based).
    let tp = "00-11111111111111111111111111111111-2222222222222222-01";
    let kept = run_chain(&host, &[("traceparent", tp)]);
    assert!(kept.header("traceparent").unwrap().ends_with("-01"));
    wait_trace(&host, "11111111111111111111111111111111", CHAIN_END);
    std::thread::sleep(Duration::from_millis(500));
    let exported = spans_of_trace_raw(&rx, &trace_id);
    assert_eq!(exported, 0, "nothing of the sampled-out trace was exported");
}

#[test]
fn the_store_keeps_the_newest_traces_and_counts_drops() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .config("[plugins.monitoring.tracing]\nmax_traces = 3\n")
        .start();
    // Let the startup trace and the first internal events settle.
    std::thread::sleep(Duration::from_millis(500));
    let ids: Vec<String> = (0..6)
        .map(|_| trace_id_of(&host.call("demo.light.get", &json!({"device": "light1"}))))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let list = host
        .get("/api/v1/monitoring/traces?service=demo.light.get")
        .json();
    let listed: Vec<&str> = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert!(listed.len() <= 3, "{list}");
    assert_eq!(
        listed.first(),
        Some(&ids[5].as_str()),
        "newest first: {list}"
    );
    for id in &listed {
        assert!(ids[3..].iter().any(|i| i == id), "only the newest are kept");
    }
    assert_eq!(
        host.get(&format!("/api/v1/monitoring/traces/{}", ids[0]))
            .status,
        404
    );
    assert!(
        list["stats"]["traces_dropped"].as_u64().unwrap() >= 3,
        "{list}"
    );
    wait_for("evictions counted", Duration::from_secs(10), || {
        let n = sample(
            &host.metrics(),
            "homeconsole_trace_spans_dropped_total",
            &[("reason", "evicted")],
        )?;
        (n >= 3.0).then_some(())
    });
}

#[test]
fn a_manual_span_never_ended_is_closed_and_flagged() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .config("[plugins.monitoring.tracing]\nspan_timeout_secs = 0.5\n")
        .start();
    let r = host.call(
        "monitoring.start_span",
        &json!({"operation": "nightly.job", "attributes": {"rows": 3}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let started = r.json();
    let trace_id = trace_id_of(&r);
    assert_eq!(
        started["trace_id"],
        trace_id.as_str(),
        "joins the caller's trace"
    );
    let span_id = started["span_id"].as_str().unwrap().to_owned();
    let spans = wait_trace(&host, &trace_id, &["nightly.job"]);
    let job = spans.iter().find(|s| s["name"] == "nightly.job").unwrap();
    assert_eq!(job["timed_out"], true);
    assert_eq!(job["status"]["code"], "error");
    assert_eq!(job["attributes"]["rows"], 3);
    assert_eq!(job["plugin"], "http");
    let start_call = find(&spans, "monitoring.start_span", "monitoring");
    assert_eq!(parent_of(job), start_call["span_id"]);
    let late = host.call("monitoring.end_span", &json!({"span_id": span_id}));
    assert_eq!(late.status, 409, "{}", late.body);

    // A span ended in time, child of another, with an error status.
    let outer = host
        .call("monitoring.start_span", &json!({"operation": "outer"}))
        .json();
    let inner = host
        .call(
            "monitoring.start_span",
            &json!({"operation": "inner", "parent": outer["traceparent"]}),
        )
        .json();
    assert_eq!(inner["trace_id"], outer["trace_id"]);
    let end = |id: &Value, body: Value| {
        let mut b = body;
        b["span_id"] = id.clone();
        host.call("monitoring.end_span", &b)
    };
    assert_eq!(
        end(
            &inner["span_id"],
            json!({"status": "error", "message": "disk full"})
        )
        .status,
        200
    );
    assert_eq!(
        end(&outer["span_id"], json!({"attributes": {"done": true}})).status,
        200
    );
    let spans = wait_trace(
        &host,
        outer["trace_id"].as_str().unwrap(),
        &["outer", "inner"],
    );
    let o = spans.iter().find(|s| s["name"] == "outer").unwrap();
    let i = spans.iter().find(|s| s["name"] == "inner").unwrap();
    assert_eq!(parent_of(i), o["span_id"]);
    assert_eq!(i["status"]["message"], "disk full");
    assert_eq!(o["attributes"]["done"], true);
    assert_eq!(o["timed_out"], false);
    assert_eq!(
        host.call("monitoring.end_span", &json!({"span_id": "zz"}))
            .status,
        400
    );
    assert_eq!(
        host.call(
            "monitoring.start_span",
            &json!({"operation": "x", "parent": "bogus"})
        )
        .status,
        400
    );
    wait_for("timeouts counted", Duration::from_secs(10), || {
        let n = sample(
            &host.metrics(),
            "homeconsole_trace_spans_timed_out_total",
            &[],
        )?;
        (n >= 1.0).then_some(())
    });
}

fn median_call_latency(host: &TestHost, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(
                host.call("demo.light.toggle", &json!({"device": "light2"}))
                    .status,
                200
            );
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

#[test]
fn a_dead_collector_slows_no_caller_and_is_counted() {
    let baseline = {
        let host = chain_host("");
        median_call_latency(&host, 40)
    };
    let dead = format!("127.0.0.1:{}", closed_port()); // connections are refused
    let host = chain_host(&format!(
        "[plugins.monitoring.tracing]\notlp_endpoint = \"http://{dead}/v1/traces\"\n\
         otlp_flush_ms = 50\notlp_max_queue = 16\notlp_timeout_ms = 500\n"
    ));
    let with_dead = median_call_latency(&host, 40);
    eprintln!(
        "median call latency: {baseline:?} without export, {with_dead:?} with a dead collector"
    );
    assert!(
        with_dead <= baseline * 3 + Duration::from_millis(20),
        "{with_dead:?} vs {baseline:?}"
    );
    wait_for(
        "export drops and failures counted",
        Duration::from_secs(60),
        || {
            let m = host.metrics();
            let dropped = sample(
                &m,
                "homeconsole_trace_export_spans_total",
                &[("result", "dropped")],
            )?;
            let failed = sample(
                &m,
                "homeconsole_trace_export_spans_total",
                &[("result", "failed")],
            )?;
            (dropped > 0.0 && failed > 0.0).then_some(())
        },
    );
    // Traces are still browsable in memory.
    let r = run_chain(&host, &[]);
    wait_trace(&host, &trace_id_of(&r), CHAIN_END);
    let status = host.get("/api/v1/monitoring/status").json();
    assert!(
        status["capabilities"]["tracing"]["export"]["last_error"].is_string(),
        "{status}"
    );
}

#[test]
fn startup_trace_and_log_lines_carry_trace_ids() {
    let mut host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(QUIET_DEMO)
        .config("[plugins.monitoring.tracing]\nslow_call_ms = 50\n")
        .start();
    // The startup trace: a root per host start, a load and start per plugin.
    let tree = wait_for("startup trace", Duration::from_secs(10), || {
        let list = host
            .get("/api/v1/monitoring/traces?plugin=host&limit=1000")
            .json();
        let t = list["traces"]
            .as_array()?
            .iter()
            .find(|t| t["root_name"] == "host.startup")?
            .clone();
        let tree = host
            .get(&format!(
                "/api/v1/monitoring/traces/{}",
                t["trace_id"].as_str()?
            ))
            .json();
        let spans = flatten(&tree);
        spans
            .iter()
            .any(|s| s["name"] == "plugin.start monitoring")
            .then_some((t["trace_id"].as_str()?.to_owned(), spans))
    });
    let (startup_id, spans) = tree;
    let root = find(&spans, "host.startup", "host");
    let load = find(&spans, "plugin.load demo-devices", "demo-devices");
    let start = find(&spans, "plugin.start demo-devices", "demo-devices");
    assert_eq!(parent_of(root), "");
    assert_eq!(parent_of(load), root["span_id"]);
    assert_eq!(parent_of(start), load["span_id"]);
    assert!(load["duration_ns"].as_u64() >= start["duration_ns"].as_u64());
    find(&spans, "plugin.load monitoring", "monitoring");

    // A slow call is logged with its trace id.
    let r = host.call("demo.sleep", &json!({"ms": 120}));
    assert_eq!(r.status, 200);
    let slow_trace = trace_id_of(&r);
    wait_for("slow call logged", Duration::from_secs(10), || {
        host.json_logs()
            .iter()
            .any(|l| {
                l["message"] == "slow service call"
                    && l["fields"]["trace_id"] == slow_trace.as_str()
                    && l["fields"]["service"] == "demo.sleep"
            })
            .then_some(())
    });
    host.terminate();
    // The demo plugin logged "demo devices started" inside its start span.
    let logs = host.json_logs();
    let line = logs
        .iter()
        .find(|l| l["message"] == "demo devices started")
        .expect("start log line");
    assert_eq!(line["trace_id"], startup_id.as_str(), "{line}");
    assert_eq!(line["span_id"], start["span_id"], "{line}");
}

// ---- the OTLP export, decoded with the official protobuf ------------------------

/// A local OTLP/HTTP receiver (answers 200 to everything).
fn otlp_receiver() -> (RecordingPeer, String) {
    let peer = RecordingPeer::start();
    let url = peer.url("/v1/traces");
    (peer, url)
}

/// Number of raw bodies `rx` received that mention the trace id's bytes.
fn spans_of_trace_raw(rx: &RecordingPeer, trace_id: &str) -> usize {
    let id = hex_bytes(trace_id);
    rx.requests()
        .iter()
        .filter(|r| r.body.windows(id.len()).any(|w| w == id.as_slice()))
        .count()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The Python with `opentelemetry-proto`: `HOMECONSOLE_PYTHON`, else the
/// repository's `.venv`; `Err` (for `require_peer!`) says which one lacks it.
fn python() -> Result<PathBuf, String> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let py = std::env::var_os("HOMECONSOLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv/bin/python"));
    let ok = std::process::Command::new(&py)
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Ok(py);
    }
    Err(format!(
        "no Python with opentelemetry-proto at {} (set HOMECONSOLE_PYTHON)",
        py.display()
    ))
}

fn decode(py: &PathBuf, body: &[u8]) -> Value {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let out = std::process::Command::new(py)
        .arg(repo.join("monitoring-plugin/tests/otlp_decode.py"))
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "decoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn otlp_export_of_the_chain_decodes_with_the_official_protobuf() {
    let py = require_peer!(python());
    let (rx, url) = otlp_receiver();
    let host = chain_host(&format!(
        "[plugins.monitoring.tracing]\notlp_endpoint = \"{}\"\notlp_flush_ms = 100\n\
         service_name = \"hc-e2e\"\n\
         otlp_headers = {{ \"x-api-key\" = \"secret\" }}\n\
         resource_attributes = {{ \"deployment.environment\" = \"test\" }}\n",
        url
    ));
    let r = run_chain(&host, &[]);
    let trace_id = trace_id_of(&r);
    let fail = host.call("demo.fail", &json!({}));
    let fail_trace = trace_id_of(&fail);
    let wanted = [
        "POST /api/v1/services/{name}",
        "demo.publish",
        "publish faulty.go",
        "process faulty.go",
        "demo.light.toggle",
        "publish device.light1.state",
        "monitoring.record_metric",
        "storage.set",
    ];
    let (spans, resource, headers) = wait_for(
        "the chain at the OTLP receiver",
        Duration::from_secs(30),
        || {
            let bodies = rx.requests();
            let mut spans = Vec::new();
            let mut resource = Value::Null;
            for r in &bodies {
                let d = decode(&py, &r.body);
                resource = d["resource"].clone();
                spans.extend(d["spans"].as_array().cloned().unwrap_or_default());
            }
            let of_trace: Vec<Value> = spans
                .iter()
                .filter(|s| {
                    s["trace_id"] == trace_id.as_str() || s["trace_id"] == fail_trace.as_str()
                })
                .cloned()
                .collect();
            let complete = wanted.iter().all(|n| {
                of_trace
                    .iter()
                    .any(|s| s["name"] == *n && s["trace_id"] == trace_id.as_str())
            }) && of_trace.iter().any(|s| s["name"] == "demo.fail");
            complete.then(|| (of_trace, resource, bodies[0].headers.clone()))
        },
    );
    assert_eq!(resource["service.name"], "hc-e2e");
    assert_eq!(resource["deployment.environment"], "test");
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-api-key"), Some("secret"));
    assert_eq!(header("content-type"), Some("application/x-protobuf"));

    let by = |name: &str| -> &Value {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no exported span {name}"))
    };
    let http = by("POST /api/v1/services/{name}");
    let publish_svc = by("demo.publish");
    let produce = by("publish faulty.go");
    let consume = by("process faulty.go");
    let toggle = by("demo.light.toggle");
    assert_eq!(http["parent_span_id"], "");
    assert_eq!(publish_svc["parent_span_id"], http["span_id"]);
    assert_eq!(produce["parent_span_id"], publish_svc["span_id"]);
    assert_eq!(consume["parent_span_id"], produce["span_id"]);
    assert_eq!(toggle["parent_span_id"], consume["span_id"]);
    assert_eq!(by("storage.set")["parent_span_id"], toggle["span_id"]);
    assert_eq!(
        by("monitoring.record_metric")["parent_span_id"],
        toggle["span_id"]
    );
    // OTLP kinds: 2 server, 3 client, 4 producer, 5 consumer; status 1 ok, 2 error.
    assert_eq!(http["kind"], 2);
    assert_eq!(produce["kind"], 4);
    assert_eq!(consume["kind"], 5);
    assert_eq!(by("storage.set")["kind"], 3);
    assert_eq!(toggle["status_code"], 1);
    assert_eq!(toggle["attributes"]["homeconsole.caller"], "faulty");
    assert_eq!(toggle["attributes"]["homeconsole.plugin"], "demo-devices");
    assert_eq!(
        toggle["attributes"]["homeconsole.service"],
        "demo.light.toggle"
    );
    assert_eq!(
        consume["attributes"]["messaging.destination.name"],
        "faulty.go"
    );
    assert_eq!(http["attributes"]["http.response.status_code"], 200);
    let failed = by("demo.fail");
    assert_eq!(failed["status_code"], 2);
    assert_eq!(failed["status_message"], "demo.fail always fails");
    assert!(toggle["end"].as_u64() >= toggle["start"].as_u64());
    wait_for("exported spans counted", Duration::from_secs(10), || {
        let n = sample(
            &host.metrics(),
            "homeconsole_trace_export_spans_total",
            &[("result", "exported")],
        )?;
        (n >= wanted.len() as f64).then_some(())
    });
}

#[test]
fn each_health_round_is_a_trace_with_one_span_per_check() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[plugins.demo-devices]\ninterval_ms = 0")
        .admin()
        .start();
    assert_eq!(
        host.admin_call(
            "monitoring.register_health_check",
            &json!({"name": "hub", "service": "demo.health"})
        )
        .status,
        200
    );
    host.call(
        "demo.health.set",
        &json!({"status": "unhealthy", "message": "hub offline"}),
    );
    assert_eq!(
        host.get("/api/v1/monitoring/health?refresh=true").status,
        503
    );
    let tree = wait_for("health trace", Duration::from_secs(10), || {
        let list = host.get("/api/v1/monitoring/traces?limit=100").json();
        let traces = list["traces"].as_array().cloned().unwrap_or_default();
        traces
            .iter()
            .filter(|t| t["root_name"] == "health.round")
            .find_map(|t| {
                let id = t["trace_id"].as_str()?;
                let tree = host.get(&format!("/api/v1/monitoring/traces/{id}")).json();
                let spans = flatten(&tree);
                spans
                    .iter()
                    .any(|s| s["name"] == "health.check custom:hub")
                    .then_some(spans)
            })
    });
    let root = tree.iter().find(|s| s["name"] == "health.round").unwrap();
    let hub = tree
        .iter()
        .find(|s| s["name"] == "health.check custom:hub")
        .unwrap();
    assert_eq!(hub["parent_span_id"], root["span_id"], "{hub}");
    assert!(hub["status"].to_string().contains("hub offline"), "{hub}");
    assert!(tree.iter().any(|s| s["name"] == "health.check storage"));
    assert!(tree
        .iter()
        .any(|s| s["name"] == "health.check plugin:demo-devices"));
}
