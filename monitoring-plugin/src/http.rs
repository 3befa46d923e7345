//! The plugin's HTTP routes under `/api/v1/monitoring`, answered from the
//! collector and the health checker; plus small request helpers (query
//! parameters, bearer tokens compared in constant time, JSON errors).

use std::sync::Arc;

use plugin_abi::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::health::checker::Status;
use crate::module::Inner;

/// Routes the plugin registers: (method, path).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/monitoring/metrics"),
    ("GET", "/api/v1/monitoring/health"),
    ("GET", "/api/v1/monitoring/health/live"),
    ("GET", "/api/v1/monitoring/health/ready"),
    ("GET", "/api/v1/monitoring/status"),
    ("GET", "/api/v1/monitoring/exemplars"),
];

/// Prometheus text exposition content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics exposition (asked for with `Accept`).
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A JSON error body `{"error": {"kind", "message"}}`.
pub fn error(status: u16, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"error": {"kind": kind, "message": message}}),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of a query parameter.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// Whether the host vouches that the request carries the host's admin
/// token (`[host.access] admin_token`): the host sets
/// [`plugin_abi::ACCESS_HEADER`] on every request and drops a client's own.
pub fn host_admin(request: &HttpRequest) -> bool {
    request.header(plugin_abi::ACCESS_HEADER) == Some("admin")
}

/// Whether the request carries `Authorization: Bearer <one of tokens>`, or
/// the host's admin token (which every token rule accepts).
pub fn has_token(request: &HttpRequest, tokens: &[Option<&str>]) -> bool {
    if host_admin(request) {
        return true;
    }
    let Some(auth) = request.header("authorization") else {
        return false;
    };
    let Some(given) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
    else {
        return false;
    };
    let mut ok = false;
    for t in tokens.iter().flatten() {
        ok |= constant_time_eq(given.trim().as_bytes(), t.as_bytes());
    }
    ok
}

/// Checks the admin token for an admin endpoint: the plugin's own, or the
/// host's (see [`host_admin`]). With no admin token configured, admin
/// endpoints are disabled (403, saying how to enable them); a missing or
/// wrong token is 401. The token is never echoed.
pub fn require_admin(
    access: &crate::config::AccessConfig,
    request: &HttpRequest,
    what: &str,
) -> Result<(), HttpResponse> {
    if host_admin(request) {
        return Ok(());
    }
    let Some(token) = access.admin_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(error(
            403,
            "forbidden",
            &format!(
                "{what} is an admin endpoint and no admin token is configured: set admin_token under [plugins.monitoring.access] (or [host.access]) in the host config to enable it"
            ),
        ));
    };
    if has_token(request, &[Some(token)]) {
        Ok(())
    } else {
        Err(unauthorized(what))
    }
}

fn unauthorized(what: &str) -> HttpResponse {
    error(
        401,
        "unauthorized",
        &format!("{what} requires a bearer token: send Authorization: Bearer <token>"),
    )
    .with_header("www-authenticate", "Bearer")
}

/// Answers one request.
pub fn handle(inner: &Arc<Inner>, request: &HttpRequest) -> HttpResponse {
    let path = request.path.as_str();
    if path.starts_with(QUERY_API) {
        if let Err(refused) = metrics_access(inner, request) {
            return refused;
        }
    }
    match path {
        "/api/v1/monitoring/metrics" => metrics(inner, request),
        "/api/v1/monitoring/health" => health(inner, request),
        "/api/v1/monitoring/health/live" => HttpResponse::json(200, &json!({"status": "alive"})),
        "/api/v1/monitoring/health/ready" => ready(inner),
        "/api/v1/monitoring/status" => status(inner, request),
        "/api/v1/monitoring/exemplars" => exemplars(inner, request),
        _ => inner
            .capabilities
            .iter()
            .find_map(|cap| cap.handle_http(request))
            .unwrap_or_else(|| error(404, "not_found", &format!("no monitoring route {path}"))),
    }
}

/// The Prometheus-compatible query API: it reads the same data as the
/// metrics endpoint, so it follows the same token rule.
const QUERY_API: &str = "/api/v1/monitoring/prometheus/";

/// The metrics token rule: with `metrics_token` set, the metrics or admin
/// token is needed.
fn metrics_access(inner: &Inner, request: &HttpRequest) -> Result<(), HttpResponse> {
    let access = &inner.config.access;
    match access.metrics_token.as_deref() {
        Some(token) if !has_token(request, &[Some(token), access.admin_token.as_deref()]) => {
            Err(unauthorized("this metrics endpoint"))
        }
        _ => Ok(()),
    }
}

/// Whether the request carries a monitoring token (admin or metrics) or a
/// host token: who may see details such as file paths.
fn has_any_token(inner: &Inner, request: &HttpRequest) -> bool {
    let access = &inner.config.access;
    matches!(
        request.header(plugin_abi::ACCESS_HEADER),
        Some("api" | "admin")
    ) || has_token(
        request,
        &[
            access.admin_token.as_deref(),
            access.metrics_token.as_deref(),
        ],
    )
}

/// `/status`: file-system paths only for a caller with a token.
fn status(inner: &Inner, request: &HttpRequest) -> HttpResponse {
    let mut body = inner.status_json();
    if !has_any_token(inner, request) {
        redact_paths(&mut body);
    }
    HttpResponse::json(200, &body)
}

/// What a path is replaced with in answers to callers without a token.
pub const REDACTED: &str = "(hidden: send a token to see paths)";

/// Replaces every value whose key names a path (`*_dir`, `*_file`,
/// `*path`, `*_paths`, `*_files`) with [`REDACTED`].
fn redact_paths(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let names_path = ["_dir", "_file", "path", "_paths", "_files", "_dirs"]
                    .iter()
                    .any(|s| key.ends_with(s));
                if names_path && !v.is_null() {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_paths(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_paths),
        _ => {}
    }
}

fn metrics(inner: &Inner, request: &HttpRequest) -> HttpResponse {
    if let Err(refused) = metrics_access(inner, request) {
        return refused;
    }
    inner.refresh_host_gauges();
    let accept = request.header("accept").unwrap_or("");
    let (content_type, body) = if accept.contains("application/openmetrics-text") {
        (OPENMETRICS_TEXT, inner.collector.render_openmetrics())
    } else {
        (PROMETHEUS_TEXT, inner.collector.render())
    };
    let gzip = request
        .header("accept-encoding")
        .unwrap_or("")
        .split(',')
        .any(|e| e.split(';').next().unwrap_or("").trim() == "gzip");
    if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        if enc.write_all(body.as_bytes()).is_ok() {
            if let Ok(zipped) = enc.finish() {
                return HttpResponse::new(200, content_type, zipped)
                    .with_header("content-encoding", "gzip")
                    .with_header("vary", "accept, accept-encoding");
            }
        }
    }
    HttpResponse::new(200, content_type, body.into_bytes())
        .with_header("vary", "accept, accept-encoding")
}

/// Histograms whose buckets carry exemplars.
const EXEMPLAR_METRICS: &[&str] = &[
    crate::metrics::names::SERVICE_CALL_DURATION,
    crate::metrics::names::HTTP_REQUEST_DURATION,
];

/// The latest exemplar of every bucket of a latency histogram (`?metric=`,
/// default the service-call one), newest first: each links a latency to its
/// trace (`/api/v1/monitoring/traces/{trace_id}`). Same access as `/metrics`.
fn exemplars(inner: &Inner, request: &HttpRequest) -> HttpResponse {
    let access = &inner.config.access;
    if let Some(token) = access.metrics_token.as_deref() {
        if !has_token(request, &[Some(token), access.admin_token.as_deref()]) {
            return unauthorized("the exemplars endpoint");
        }
    }
    let metric = query_param(request.query.as_str(), "metric")
        .unwrap_or_else(|| crate::metrics::names::SERVICE_CALL_DURATION.to_owned());
    if !EXEMPLAR_METRICS.contains(&metric.as_str()) {
        return error(
            400,
            "bad_request",
            &format!("metric must be one of {}", EXEMPLAR_METRICS.join(", ")),
        );
    }
    let list: Vec<Value> = inner
        .collector
        .internal()
        .exemplars(&metric)
        .into_iter()
        .map(|(labels, le, e)| {
            json!({
                "series": labels,
                "le": if le.is_finite() { json!(le) } else { json!("+Inf") },
                "value": e.value,
                "timestamp_ms": e.timestamp_ms,
                "trace_id": e.trace_id(),
                "span_id": e.span_id(),
            })
        })
        .collect();
    HttpResponse::json(200, &json!({"metric": metric, "exemplars": list}))
}

fn health(inner: &Arc<Inner>, request: &HttpRequest) -> HttpResponse {
    let refresh =
        query_param(request.query.as_str(), "refresh").is_some_and(|v| v == "true" || v == "1");
    let Some((snapshot, fresh)) = inner.health_snapshot(refresh) else {
        return error(
            503,
            "unavailable",
            "the first health round has not finished yet; try again shortly",
        );
    };
    let code = if snapshot.status == Status::Unhealthy {
        503
    } else {
        200
    };
    let access = &inner.config.access;
    let allowed = !access.health_details_require_token
        || has_token(
            request,
            &[
                access.admin_token.as_deref(),
                access.metrics_token.as_deref(),
            ],
        );
    let mut body: Value = if allowed {
        serde_json::to_value(&*snapshot).unwrap_or(Value::Null)
    } else {
        json!({"status": snapshot.status, "checked_at_ms": snapshot.checked_at_ms})
    };
    if !fresh {
        // The refresh is still running (a check is slow): this is the
        // previous round, and the caller is told so.
        body["refresh_pending"] = Value::Bool(true);
    }
    HttpResponse::json(code, &body)
}

fn ready(inner: &Inner) -> HttpResponse {
    let mut reasons = Vec::new();
    match inner.health.latest() {
        Some(s) => {
            if let Some(st) = &s.checks.storage {
                if st.status == Status::Unhealthy {
                    reasons.push(format!("storage: {}", st.message));
                }
            }
        }
        None => reasons.push("health checks have not run yet".to_owned()),
    }
    for p in inner
        .host
        .list_plugins()
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if p["file_present"] == true && p["state"] != "started" {
            reasons.push(format!(
                "plugin {} is {}",
                p["name"].as_str().unwrap_or("?"),
                p["state"].as_str().unwrap_or("?")
            ));
        }
    }
    let ready = reasons.is_empty();
    HttpResponse::json(
        if ready { 200 } else { 503 },
        &json!({"ready": ready, "reasons": reasons}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("a=1&refresh=true", "refresh").as_deref(),
            Some("true")
        );
        assert_eq!(query_param("x=a%20b+c", "x").as_deref(), Some("a b c"));
        assert_eq!(query_param("x=%zz", "x").as_deref(), Some("%zz"));
        assert_eq!(query_param("x=%4", "x").as_deref(), Some("%4"));
        assert_eq!(query_param("", "x"), None);
    }

    #[test]
    fn paths_are_redacted() {
        let mut v = json!({"host": {"data_dir": "/srv/data", "pid": 1},
            "alerting": {"rule_files": ["/etc/r.yml"], "rules": 3},
            "profiling": {"output_path": "/tmp/x", "nothing_path": null}});
        redact_paths(&mut v);
        assert_eq!(v["host"]["data_dir"], REDACTED);
        assert_eq!(v["host"]["pid"], 1);
        assert_eq!(v["alerting"]["rule_files"], REDACTED);
        assert_eq!(v["alerting"]["rules"], 3);
        assert_eq!(v["profiling"]["output_path"], REDACTED);
        assert!(v["profiling"]["nothing_path"].is_null());
        assert!(!v.to_string().contains('/'));
    }

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
