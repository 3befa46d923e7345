//! Small request helpers every capability's routes share: JSON error
//! bodies, query parameters, content types, and the token rules (bearer
//! tokens compared in constant time, the host's admin vouching). No route
//! lives here, and nothing here knows the plugin's state: callers pass the
//! access settings they answer under.

use plugin_abi::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::config::AccessConfig;

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
    access: &AccessConfig,
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

/// 401 with `WWW-Authenticate: Bearer`, naming what needs the token.
pub fn unauthorized(what: &str) -> HttpResponse {
    error(
        401,
        "unauthorized",
        &format!("{what} requires a bearer token: send Authorization: Bearer <token>"),
    )
    .with_header("www-authenticate", "Bearer")
}

/// The metrics token rule (`/metrics`, `/exemplars`, the query API): with
/// `metrics_token` set, the metrics or admin token is needed.
pub fn require_metrics_token(
    access: &AccessConfig,
    request: &HttpRequest,
    what: &str,
) -> Result<(), HttpResponse> {
    match access.metrics_token.as_deref() {
        Some(token) if !has_token(request, &[Some(token), access.admin_token.as_deref()]) => {
            Err(unauthorized(what))
        }
        _ => Ok(()),
    }
}

/// Whether the request carries a monitoring token (admin or metrics) or a
/// host token: who may see details such as file paths.
pub fn has_any_token(access: &AccessConfig, request: &HttpRequest) -> bool {
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

/// What a path is replaced with in answers to callers without a token.
pub const REDACTED: &str = "(hidden: send a token to see paths)";

/// Replaces every value whose key names a path (`*_dir`, `*_file`,
/// `*path`, `*_paths`, `*_files`) with [`REDACTED`].
pub fn redact_paths(value: &mut Value) {
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

    fn request_with(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()).into())
                .collect(),
            ..HttpRequest::default()
        }
    }

    fn access(metrics: Option<&str>, admin: Option<&str>) -> AccessConfig {
        AccessConfig {
            metrics_token: metrics.map(str::to_owned),
            admin_token: admin.map(str::to_owned),
            ..AccessConfig::default()
        }
    }

    #[test]
    fn metrics_token_rule() {
        let open = access(None, Some("adm"));
        assert!(require_metrics_token(&open, &request_with(&[]), "x").is_ok());
        let closed = access(Some("met"), Some("adm"));
        let refused = require_metrics_token(&closed, &request_with(&[]), "the thing").unwrap_err();
        assert_eq!(refused.status, 401);
        assert!(
            String::from_utf8_lossy(&refused.body).contains("the thing requires a bearer token")
        );
        for ok in [
            request_with(&[("authorization", "Bearer met")]),
            request_with(&[("authorization", "bearer adm")]),
            request_with(&[(plugin_abi::ACCESS_HEADER, "admin")]),
        ] {
            assert!(require_metrics_token(&closed, &ok, "x").is_ok(), "{ok:?}");
        }
        let wrong = request_with(&[("authorization", "Bearer nope")]);
        assert!(require_metrics_token(&closed, &wrong, "x").is_err());
    }

    #[test]
    fn any_token_includes_host_api_tokens() {
        let a = access(Some("met"), None);
        assert!(!has_any_token(&a, &request_with(&[])));
        assert!(has_any_token(
            &a,
            &request_with(&[(plugin_abi::ACCESS_HEADER, "api")])
        ));
        assert!(has_any_token(
            &a,
            &request_with(&[("authorization", "Bearer met")])
        ));
        assert!(!has_any_token(
            &a,
            &request_with(&[("authorization", "Bearer adm")])
        ));
    }
}
