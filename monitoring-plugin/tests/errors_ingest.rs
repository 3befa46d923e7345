//! Sentry ingest: real SDK fixtures and every refusal.

use std::io::Write;
use std::path::Path;

use monitoring_plugin::error_tracking::ingest::{
    parse_request, Endpoint, IngestConfig, IngestRequest,
};
use monitoring_plugin::error_tracking::{EventSource, IngestError, IssueStore, Level};

fn config() -> IngestConfig {
    IngestConfig {
        public_keys: vec!["public".into()],
        project_ids: vec!["1".into()],
        ..IngestConfig::default()
    }
}

struct Fixture {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn fixture(name: &str) -> Fixture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sentry");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.request.json"))).unwrap())
            .unwrap();
    let headers = meta["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    Fixture {
        method: meta["method"].as_str().unwrap().into(),
        path: meta["path"].as_str().unwrap().into(),
        headers,
        body: std::fs::read(dir.join(format!("{name}.body"))).unwrap(),
    }
}

impl Fixture {
    fn request(&self) -> IngestRequest<'_> {
        IngestRequest {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

#[test]
fn real_sdk_chained_exception() {
    let f = fixture("chained-0");
    let out = parse_request(&config(), &f.request()).unwrap();
    assert_eq!(out.endpoint, Endpoint::Envelope);
    assert_eq!(out.project_id, "1");
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert_eq!(e.source, EventSource::SentryIngest);
    assert_eq!(e.level, Level::Error);
    // Sentry order: the cause first, the outermost exception last.
    let types: Vec<&str> = e.exception.iter().map(|x| x.ty.as_str()).collect();
    assert_eq!(types, ["KeyError", "ValueError"]);
    assert_eq!(e.exception[0].value.as_deref(), Some("'missing_key'"));
    assert_eq!(
        e.exception[1].value.as_deref(),
        Some("config value missing: missing_key")
    );
    let inner_fns: Vec<&str> = e.exception[0]
        .frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect();
    assert_eq!(inner_fns, ["load_config", "inner_lookup"]);
    let outer = &e.exception[1].frames;
    assert_eq!(
        outer.last().unwrap().function.as_deref(),
        Some("load_config")
    );
    assert!(outer
        .iter()
        .all(|f| f.in_app == Some(true) && f.lineno.is_some()));
    assert_eq!(outer[0].module.as_deref(), Some("__main__"));
    assert_eq!(e.release.as_deref(), Some("fixture-app@1.2.3"));
    assert_eq!(e.environment.as_deref(), Some("fixtures"));
    assert_eq!(e.trace_id.as_deref().map(str::len), Some(32));
    assert_eq!(e.event_id.len(), 32);
    assert_eq!(e.sdk.as_ref().unwrap().name, "sentry.python");
    assert_eq!(e.plugin, "sentry:1");
    assert_eq!(e.title(), "ValueError: config value missing: missing_key");
}

#[test]
fn real_sdk_message_with_tags_extra_breadcrumbs_user() {
    let f = fixture("message-0");
    let e = parse_request(&config(), &f.request())
        .unwrap()
        .events
        .remove(0);
    assert_eq!(
        e.message.as_deref(),
        Some("timeout after 5023 ms talking to 10.0.0.7")
    );
    assert_eq!(e.level, Level::Warning);
    assert!(e.exception.is_empty());
    assert_eq!(e.tags["room"], "kitchen");
    assert_eq!(e.plugin, "weather", "the plugin tag names the plugin");
    assert_eq!(e.extra["attempt"], 3);
    assert_eq!(e.extra["payload"]["city"], "Oslo");
    assert_eq!(e.breadcrumbs.len(), 2);
    assert_eq!(e.breadcrumbs[0].category, "http");
    assert_eq!(e.breadcrumbs[0].message.as_deref(), Some("GET /forecast"));
    assert_eq!(e.breadcrumbs[0].data["status_code"], 504);
    assert_eq!(e.breadcrumbs[1].level, Level::Warning);
    assert!(e.breadcrumbs[0].timestamp <= e.timestamp);
    let user = e.user.as_ref().unwrap();
    assert_eq!(
        (user.id.as_deref(), user.username.as_deref()),
        (Some("user-42"), Some("ada"))
    );
}

#[test]
fn real_sdk_uncompressed_with_transaction_and_brotli() {
    let f = fixture("uncompressed-0");
    assert!(!f
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-encoding")));
    let out = parse_request(&config(), &f.request()).unwrap();
    assert_eq!(out.events[0].exception[0].ty, "ZeroDivisionError");
    assert_eq!(
        out.events[0].service_or_topic.as_deref(),
        Some("poll-sensors")
    );
    let tx = fixture("uncompressed-1");
    let out = parse_request(&config(), &tx.request()).unwrap();
    assert!(out.events.is_empty());
    assert_eq!(out.ignored_items.get("transaction"), Some(&1));

    let br = fixture("brotli-0");
    assert!(br
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "br"));
    let e = parse_request(&config(), &br.request())
        .unwrap()
        .events
        .remove(0);
    assert_eq!(
        e.message.as_deref(),
        Some("brotli body from sensor 0xdeadbeef")
    );
}

#[test]
fn real_sdk_events_group_into_issues() {
    let store = IssueStore::open(
        std::sync::Arc::new(monitoring_plugin::error_tracking::MemoryKvStore::new()),
        Default::default(),
    )
    .unwrap();
    for name in ["chained-0", "chained-0", "message-0", "uncompressed-0"] {
        for e in parse_request(&config(), &fixture(name).request())
            .unwrap()
            .events
        {
            store.record(e);
        }
    }
    assert_eq!(store.len(), 3);
    let top = store.list(&monitoring_plugin::error_tracking::IssueQuery {
        sort: monitoring_plugin::error_tracking::IssueSort::Count,
        ..Default::default()
    });
    assert_eq!(top.issues[0].count, 2);
    assert_eq!(
        top.issues[0].title,
        "ValueError: config value missing: missing_key"
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn raw_deflate(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

const AUTH: &str = "Sentry sentry_key=public, sentry_version=7, sentry_client=test/1";
const ENVELOPE: &[u8] =
    b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"event\"}\n{\"message\":\"hello\"}\n";

fn run(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<monitoring_plugin::error_tracking::ErrorEvent>, IngestError> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_request(
        &config(),
        &IngestRequest {
            method,
            path,
            headers: &headers,
            body,
        },
    )
    .map(|o| o.events)
}

#[test]
fn auth_forms() {
    let p = "/api/1/envelope/";
    assert!(run("POST", p, &[("X-Sentry-Auth", AUTH)], ENVELOPE).is_ok());
    assert!(run("POST", p, &[("authorization", AUTH)], ENVELOPE).is_ok());
    assert!(run(
        "POST",
        "/api/1/envelope/?sentry_key=public&sentry_version=7",
        &[],
        ENVELOPE
    )
    .is_ok());
    let missing = run("POST", p, &[], ENVELOPE).unwrap_err();
    assert_eq!((missing.status(), missing.code()), (401, "missing_key"));
    let wrong = run(
        "POST",
        p,
        &[("X-Sentry-Auth", "Sentry sentry_key=nope")],
        ENVELOPE,
    );
    assert_eq!(wrong.unwrap_err().status(), 401);
    let not_sentry = run("POST", p, &[("Authorization", "Bearer public")], ENVELOPE);
    assert_eq!(not_sentry.unwrap_err().code(), "missing_key");
    let empty = run(
        "POST",
        p,
        &[("X-Sentry-Auth", "Sentry sentry_key=")],
        ENVELOPE,
    );
    assert_eq!(empty.unwrap_err().status(), 401);
}

#[test]
fn store_endpoint_and_encodings() {
    let h = |enc: &'static str| vec![("X-Sentry-Auth", AUTH), ("Content-Encoding", enc)];
    let event = br#"{"message":"legacy store","level":"info","tags":[["plugin","lights"]]}"#;
    let e = run("POST", "/api/1/store/", &h("identity"), event).unwrap();
    assert_eq!((e[0].plugin.as_str(), e[0].level), ("lights", Level::Info));
    for (enc, body) in [
        ("gzip", gzip(ENVELOPE)),
        ("deflate", zlib(ENVELOPE)),
        ("deflate", raw_deflate(ENVELOPE)),
    ] {
        let e = run("POST", "/api/1/envelope", &h(enc), &body).unwrap();
        assert_eq!(e[0].message.as_deref(), Some("hello"), "{enc}");
    }
}

fn assert_err(
    result: Result<Vec<monitoring_plugin::error_tracking::ErrorEvent>, IngestError>,
    status: u16,
    code: &str,
) -> String {
    let err = result.unwrap_err();
    assert_eq!((err.status(), err.code()), (status, code), "{err}");
    err.to_string()
}

#[test]
fn malformed_requests_are_400_with_reasons() {
    let auth = [("X-Sentry-Auth", AUTH)];
    let gz = [("X-Sentry-Auth", AUTH), ("Content-Encoding", "gzip")];
    assert_err(
        run("GET", "/api/1/envelope/", &auth, ENVELOPE),
        405,
        "method_not_allowed",
    );
    assert_err(
        run("POST", "/api/1/events/", &auth, ENVELOPE),
        404,
        "not_found",
    );
    assert_err(run("POST", "/healthz", &auth, ENVELOPE), 404, "not_found");
    assert_err(
        run("POST", "/api/2/envelope/", &auth, ENVELOPE),
        400,
        "unknown_project",
    );
    assert_err(
        run("POST", "/api/abc/envelope/", &auth, ENVELOPE),
        400,
        "unknown_project",
    );
    let msg = assert_err(
        run("POST", "/api/1/envelope/", &gz, b"not gzip at all"),
        400,
        "bad_compression",
    );
    assert!(msg.contains("gzip"), "{msg}");
    let mut truncated = gzip(ENVELOPE);
    truncated.truncate(truncated.len() / 2);
    assert_err(
        run("POST", "/api/1/envelope/", &gz, &truncated),
        400,
        "bad_compression",
    );
    assert_err(
        run(
            "POST",
            "/api/1/envelope/",
            &[("X-Sentry-Auth", AUTH), ("Content-Encoding", "zstd")],
            ENVELOPE,
        ),
        400,
        "unsupported_encoding",
    );
    let msg = assert_err(
        run("POST", "/api/1/envelope/", &auth, b"{nope\n"),
        400,
        "bad_envelope",
    );
    assert!(msg.contains("envelope header"), "{msg}");
    let msg = assert_err(
        run(
            "POST",
            "/api/1/envelope/",
            &auth,
            b"{}\n{\"type\":\"event\",\"length\":500}\n{}",
        ),
        400,
        "bad_envelope",
    );
    assert!(msg.contains("declares 500 bytes"), "{msg}");
    assert_err(
        run("POST", "/api/1/envelope/", &auth, b""),
        400,
        "bad_envelope",
    );
    let msg = assert_err(
        run(
            "POST",
            "/api/1/envelope/",
            &auth,
            b"{}\n{\"type\":\"event\"}\n{\"message\": tru\n",
        ),
        400,
        "bad_json",
    );
    assert!(msg.contains("item 0"), "{msg}");
    assert_err(
        run(
            "POST",
            "/api/1/envelope/",
            &auth,
            b"{}\n{\"type\":\"event\"}\n[1,2]\n",
        ),
        400,
        "bad_json",
    );
    assert_err(
        run("POST", "/api/1/store/", &auth, b"\xff\xfe"),
        400,
        "bad_json",
    );
}

#[test]
fn oversized_bodies_and_gzip_bomb_are_413() {
    let auth = [("X-Sentry-Auth", AUTH)];
    let big = vec![b' '; 1024 * 1024 + 1];
    let msg = assert_err(
        run("POST", "/api/1/envelope/", &auth, &big),
        413,
        "too_large",
    );
    assert!(msg.contains("compressed"), "{msg}");

    // 64 MiB of zeros gzips to ~64 KiB: small on the wire, a bomb inflated.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1024 * 1024];
    for _ in 0..64 {
        enc.write_all(&chunk).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1024 * 1024);
    let gz = [("X-Sentry-Auth", AUTH), ("Content-Encoding", "gzip")];
    let started = std::time::Instant::now();
    let msg = assert_err(
        run("POST", "/api/1/envelope/", &gz, &bomb),
        413,
        "too_large",
    );
    assert!(msg.contains("decompressed body exceeds 10485760"), "{msg}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // Limits are configurable.
    let small = IngestConfig {
        max_decompressed_bytes: 10,
        ..config()
    };
    let headers = vec![("X-Sentry-Auth".to_string(), AUTH.to_string())];
    let req = IngestRequest {
        method: "POST",
        path: "/api/1/envelope/",
        headers: &headers,
        body: ENVELOPE,
    };
    assert_eq!(parse_request(&small, &req).unwrap_err().status(), 413);
    let few_items = IngestConfig {
        max_items: 0,
        ..config()
    };
    assert_eq!(
        parse_request(&few_items, &req).unwrap_err().code(),
        "bad_envelope"
    );
}

#[test]
fn hostile_bodies_never_panic() {
    let auth = [("X-Sentry-Auth", AUTH)];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 10] = [
        b"{}",
        b"\n",
        b"{\"type\":\"event\"}",
        b"{\"type\":\"event\",\"length\":3}",
        b"{\"exception\":{\"values\":[{\"type\":1,\"stacktrace\":{\"frames\":{}}}]}}",
        b"\xff",
        b"{\"length\":18446744073709551615,\"type\":\"x\"}",
        b"{\"breadcrumbs\":{\"values\":7},\"timestamp\":-1e308}",
        b"[",
        b"{\"tags\":[[1,2,3]],\"level\":5}",
    ];
    for _ in 0..2000 {
        let mut body = Vec::new();
        for _ in 0..(next() % 8) {
            body.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            if next() % 2 == 0 {
                body.push(b'\n');
            }
        }
        let _ = run("POST", "/api/1/envelope/", &auth, &body);
        let _ = run("POST", "/api/1/store/", &auth, &body);
    }
}
