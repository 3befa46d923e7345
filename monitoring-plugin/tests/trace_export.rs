//! The OTLP/HTTP exporter against a local HTTP receiver (`test_support::RecordingPeer`):
//! retries, an unreachable collector, and the protobuf checked by the official Python decoder.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{closed_port, require_peer, wait_until, RecordingPeer, Reply};

use monitoring_plugin::tracing::context::{to_hex, Sampler, TraceContext};
use monitoring_plugin::tracing::export::{ExportConfig, ExportOutcome, OtlpExporter};
use monitoring_plugin::tracing::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};

/// A receiver on `127.0.0.1:0` answering the n-th request (0-based) with `respond(n)`.
fn receiver(respond: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (RecordingPeer, String) {
    let peer = RecordingPeer::builder().reply(respond).start();
    let url = peer.url("/v1/traces");
    (peer, url)
}

/// Generous: the test machines are shared and often heavily loaded.
const WAIT: Duration = Duration::from_secs(10);

fn fast_config(url: &str) -> ExportConfig {
    let mut c = ExportConfig::new(url, "homeconsole-test");
    c.flush_interval = Duration::from_millis(50);
    c.initial_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(100);
    c.timeout = Duration::from_secs(2);
    c.shutdown_timeout = Duration::from_secs(2);
    c
}

fn span(trace: [u8; 16], id: u8, parent: Option<u8>, name: &str) -> SpanRecord {
    let mut s = SpanRecord::new(trace, [id; 8], parent.map(|p| [p; 8]), name, 1_000, 2_000);
    s.plugin = "test-plugin".into();
    s
}

#[test]
fn retries_on_503_then_delivers_the_batch_once() {
    let (rx, url) = receiver(|n| Reply::status(if n < 2 { 503 } else { 200 }));
    let exp = OtlpExporter::new(fast_config(&url)).unwrap();
    let trace = TraceContext::new_root(&Sampler::always_on()).trace_id;
    for i in 1..=5 {
        assert_eq!(
            exp.export(span(trace, i, None, "op")),
            ExportOutcome::Queued
        );
    }
    wait_until("5 spans exported", WAIT, || exp.stats().exported == 5);
    let st = exp.stats();
    assert_eq!(
        (st.retries, st.failed, st.dropped, st.requests_ok),
        (2, 0, 0, 1)
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "two 503s and one 200");
    assert_eq!(reqs.iter().filter(|r| r.status_sent == 200).count(), 1);
    assert!(
        reqs.iter().all(|r| r.body == reqs[0].body),
        "the same batch is retried"
    );
    assert_eq!(
        reqs[0].header("content-type"),
        Some("application/x-protobuf")
    );
    assert!(exp.shutdown());
    assert_eq!(rx.requests().len(), 3, "nothing more after shutdown");
}

#[test]
fn honours_retry_after_and_gives_up_on_non_retryable_status() {
    let (rx, url) = receiver(|n| match n {
        0 => Reply::status(429).header("Retry-After", "1"),
        1 => Reply::ok(),
        _ => Reply::status(400),
    });
    let exp = OtlpExporter::new(fast_config(&url)).unwrap();
    let t0 = Instant::now();
    exp.export(span([1; 16], 1, None, "a"));
    wait_until("1 span exported", WAIT, || exp.stats().exported == 1);
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(exp.stats().retries, 1);
    // 400 is not retried: the batch fails at once.
    exp.export(span([1; 16], 2, None, "b"));
    wait_until("1 span failed", WAIT, || exp.stats().failed == 1);
    assert_eq!(exp.stats().retries, 1);
    assert_eq!(rx.requests().len(), 3);
    assert!(exp.last_error().unwrap().contains("400"));
    assert!(exp.shutdown());
}

#[test]
fn unreachable_collector_never_blocks_and_counts_losses() {
    let port = closed_port();
    let mut c = fast_config(&format!("http://127.0.0.1:{port}/v1/traces"));
    c.max_queue = 16;
    c.max_batch_size = 8;
    c.max_attempts = 3;
    c.shutdown_timeout = Duration::from_millis(500);
    let exp = OtlpExporter::new(c).unwrap();
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..1000u32 {
        let mut s = span([2; 16], 1, None, "op");
        s.span_id[..4].copy_from_slice(&i.to_be_bytes());
        let t = Instant::now();
        exp.export(s);
        slowest = slowest.max(t.elapsed());
    }
    let total = t0.elapsed();
    assert!(
        total < Duration::from_millis(200),
        "1000 exports took {total:?}"
    );
    assert!(
        slowest < Duration::from_millis(50),
        "one export took {slowest:?}"
    );
    let st = exp.stats();
    assert_eq!(st.queued + st.dropped, 1000);
    assert!(
        st.dropped >= 1000 - 16 - 8,
        "queue of 16 (+ one batch in flight): {st:?}"
    );
    // Connection refused is retried with backoff, then given up.
    wait_until("2 retries", WAIT, || exp.stats().retries >= 2);
    let t1 = Instant::now();
    assert!(exp.shutdown());
    assert!(
        t1.elapsed() < Duration::from_millis(1500),
        "shutdown took {:?}",
        t1.elapsed()
    );
    let st = exp.stats();
    assert_eq!(st.exported, 0);
    assert_eq!(
        st.failed, st.queued,
        "every queued span is accounted as failed: {st:?}"
    );
    assert!(exp.last_error().unwrap().contains("transport error"));
    // After shutdown, export still returns at once and counts the drop.
    assert_eq!(
        exp.export(span([2; 16], 9, None, "late")),
        ExportOutcome::ShutDown
    );
    assert_eq!(exp.stats().dropped, st.dropped + 1);
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OTLP_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    Some(if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    })
}

#[test]
fn three_span_chain_decodes_as_one_trace_with_the_official_decoder() {
    let (rx, url) = receiver(|_| Reply::ok());
    let mut c = fast_config(&url);
    c.headers.insert("x-api-key".into(), "secret".into());
    c.resource_attributes
        .insert("deployment.environment".into(), "test".into());
    c.resource_attributes
        .insert("service.name".into(), "ignored".into());
    let exp = OtlpExporter::new(c).unwrap();

    let root_ctx = TraceContext::new_root(&Sampler::always_on());
    let child_ctx = root_ctx.child();
    let grandchild_ctx = child_ctx.child();
    let t = root_ctx.trace_id;
    let mut root = SpanRecord::new(
        t,
        root_ctx.span_id,
        None,
        "GET /api/v1/lights",
        1_000,
        9_000,
    );
    root.kind = SpanKind::Server;
    root.status = SpanStatus::Ok;
    root.plugin = "host".into();
    root.attributes.push(("http.method".into(), "GET".into()));
    let mut child = SpanRecord::new(
        t,
        child_ctx.span_id,
        Some(root_ctx.span_id),
        "lights.set",
        2_000,
        8_000,
    );
    child.kind = SpanKind::Client;
    child.plugin = "demo-devices".into();
    child.service_name = Some("lights.set".into());
    child.attributes.push(("retries".into(), AttrValue::I64(3)));
    child.attributes.push(("ratio".into(), AttrValue::F64(0.5)));
    let mut grandchild = SpanRecord::new(
        t,
        grandchild_ctx.span_id,
        Some(child_ctx.span_id),
        "storage.put",
        3_000,
        4_000,
    );
    grandchild.status = SpanStatus::error("disk full");
    grandchild.plugin = "demo-devices".into();
    grandchild.timed_out = true;
    grandchild
        .attributes
        .push(("cached".into(), AttrValue::Bool(false)));
    for s in [root, child, grandchild] {
        assert_eq!(exp.export(s), ExportOutcome::Queued);
    }
    assert!(exp.shutdown(), "shutdown flushes");
    assert_eq!(exp.stats().exported, 3);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "one batch");
    assert_eq!(reqs[0].header("x-api-key"), Some("secret"));

    let body_path = std::env::temp_dir().join(format!("otlp-body-{}.bin", std::process::id()));
    std::fs::write(&body_path, &reqs[0].body).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/otlp_decode.py");
    let py = python().unwrap();
    let out = Command::new(&py).arg(&script).arg(&body_path).output();
    let _ = std::fs::remove_file(&body_path);
    require_peer!(
        let Ok(out) = out,
        "decode check: cannot run {} (set OTLP_PYTHON)",
        py.display()
    );
    require_peer!(
        out.status.code() != Some(2),
        "decode check: {} has no opentelemetry-proto ({}); set OTLP_PYTHON",
        py.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(
        out.status.success(),
        "decoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["resource"]["service.name"], "homeconsole-test");
    assert_eq!(json["resource"]["deployment.environment"], "test");
    assert_eq!(json["scopes"][0], "homeconsole.monitoring");
    let spans = json["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3);
    let trace_hex = to_hex(&t);
    assert!(
        spans.iter().all(|s| s["trace_id"] == trace_hex.as_str()),
        "one trace"
    );
    let by_name = |n: &str| spans.iter().find(|s| s["name"] == n).unwrap().clone();
    let (r, c, g) = (
        by_name("GET /api/v1/lights"),
        by_name("lights.set"),
        by_name("storage.put"),
    );
    assert_eq!(r["span_id"], to_hex(&root_ctx.span_id));
    assert_eq!(r["parent_span_id"], "");
    assert_eq!(c["parent_span_id"], r["span_id"]);
    assert_eq!(g["parent_span_id"], c["span_id"]);
    // Kinds: SPAN_KIND_SERVER = 2, CLIENT = 3, INTERNAL = 1.
    assert_eq!(
        (r["kind"].as_i64(), c["kind"].as_i64(), g["kind"].as_i64()),
        (Some(2), Some(3), Some(1))
    );
    // Status: OK = 1, UNSET = 0, ERROR = 2 with its message.
    assert_eq!(r["status_code"], 1);
    assert_eq!(c["status_code"], 0);
    assert_eq!(g["status_code"], 2);
    assert_eq!(g["status_message"], "disk full");
    assert_eq!(r["attributes"]["http.method"], "GET");
    assert_eq!(r["attributes"]["homeconsole.plugin"], "host");
    assert_eq!(c["attributes"]["retries"], 3);
    assert_eq!(c["attributes"]["ratio"], 0.5);
    assert_eq!(c["attributes"]["homeconsole.service"], "lights.set");
    assert_eq!(g["attributes"]["cached"], false);
    assert_eq!(g["attributes"]["homeconsole.timed_out"], true);
    assert_eq!(
        (r["start"].as_u64(), r["end"].as_u64()),
        (Some(1_000), Some(9_000))
    );
    println!(
        "decoded by {}: {}",
        py.display(),
        String::from_utf8_lossy(&out.stdout).len()
    );
}
