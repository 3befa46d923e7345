//! The HTTP API under `/api/v1`: the host's own endpoints plus the routes
//! plugins register, which are dispatched from the fallback handler.
//!
//! Every error is a JSON body `{"error": {"kind": …, "message": …}}` with a
//! clear message and no internals.
//!
//! Every request passes the access guard first ([`crate::access`]); the
//! host's own endpoints then apply its rules: JSON bodies must say so
//! (`Content-Type: application/json`), storage outside the `http`
//! namespaces needs the admin token, reserved topics are never published
//! over HTTP.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use plugin_abi::{ErrorKind, PluginError};
use serde_json::{json, Value};

use crate::access::{json_body_declared, topic_owner, Access, Caller, Refusal};
use crate::core::{HostCore, PluginHttpRequest, HTTP_CALLER};
use crate::tracecontext::{self, SpanContext, TRACEPARENT_LEN};

/// A JSON error response.
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"kind": kind, "message": message}})),
    )
        .into_response()
}

fn plugin_error_response(e: &PluginError) -> Response {
    let status = match e.kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Failed | ErrorKind::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, e.kind.as_str(), &e.message)
}

/// A plugin's error for an HTTP caller: an admin-only refusal
/// (`Unauthorized`) is 401 when an admin token is configured (send it),
/// else 403 saying how to configure one.
fn service_error_response(e: &PluginError, caller: &Caller) -> Response {
    if e.kind == ErrorKind::Unauthorized && caller.level != crate::access::Level::Admin {
        return caller.refusal(&e.message).into_response();
    }
    plugin_error_response(e)
}

/// Builds the router; `access` guards every request.
pub fn router(core: Arc<HostCore>, access: Arc<Access>) -> Router {
    let limit = core.config.host.max_body_bytes;
    Router::new()
        .route("/api/v1/host", get(host_info))
        .route("/api/v1/plugins", get(list_plugins))
        .route("/api/v1/plugins/{name}", get(get_plugin))
        .route("/api/v1/modules", get(list_modules))
        .route("/api/v1/modules/{name}", get(get_module))
        .route("/api/v1/services", get(list_services))
        .route("/api/v1/services/{name}", post(call_service))
        .route("/api/v1/events/{topic}", post(publish_event))
        .route("/api/v1/storage/{namespace}", get(list_keys))
        .route(
            "/api/v1/storage/{namespace}/{key}",
            get(get_value).put(put_value).delete(delete_value),
        )
        .fallback(plugin_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            access,
            crate::access::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            observe_request,
        ))
        .with_state(core)
}

/// Opens the request's server span and reports every answered request to
/// observers (an `HttpRequest` observation, and an `Error` one for 5xx
/// answers).
///
/// The server span continues a valid incoming `traceparent` (its parent is
/// the caller's span) or starts a new trace. It replaces the request's
/// `traceparent` header, so the handlers below — service calls, event
/// publishes, storage, plugin routes — make their spans its children. The
/// response carries it as `traceparent` and its trace id as `x-trace-id`;
/// an incoming `tracestate` is passed through unchanged.
async fn observe_request(
    State(core): State<Arc<HostCore>>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    let incoming = traceparent(request.headers());
    let span = core.new_span(incoming.as_ref());
    let tracestate = request.headers().get("tracestate").cloned();
    let mut buf = [0u8; TRACEPARENT_LEN];
    let header = HeaderValue::from_str(span.write_header(&mut buf)).ok();
    if let Some(h) = &header {
        request.headers_mut().insert("traceparent", h.clone());
    }
    if !core.observers.is_active() {
        let mut response = next.run(request).await;
        add_trace_headers(&mut response, &span, header, tracestate);
        return response;
    }
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = match request.extensions().get::<axum::extract::MatchedPath>() {
        Some(m) => m.as_str().to_owned(),
        None => core
            .routes
            .lookup(method.as_str(), &path)
            .map(|m| m.route)
            .unwrap_or_else(|_| "unmatched".to_owned()),
    };
    let mut response = next.run(request).await;
    add_trace_headers(&mut response, &span, header, tracestate);
    let status = response.status();
    let mut r = crate::observer::Report::new(
        plugin_abi::ObservationKind::HttpRequest,
        if status.is_server_error() {
            plugin_abi::CallStatus::Error
        } else {
            plugin_abi::CallStatus::Ok
        },
        Arc::from(route.as_str()),
        HTTP_CALLER.clone(),
    );
    r.detail = Some(crate::observer::Name::Shared(Arc::from(format!(
        "{method} {}",
        status.as_u16()
    ))));
    r.duration_ns = started.elapsed().as_nanos() as u64;
    r = r.with_span(Some(span), incoming.as_ref());
    core.observers.report(r);
    if status.is_server_error() {
        core.report_error(
            "http_5xx",
            "http",
            &format!("{method} {path} answered {}", status.as_u16()),
        );
    }
    response
}

fn add_trace_headers(
    response: &mut Response,
    span: &SpanContext,
    header: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
) {
    let headers = response.headers_mut();
    if let Some(h) = header {
        headers.insert("traceparent", h);
    }
    let mut hex = [0u8; TRACEPARENT_LEN];
    let trace_id = &span.write_header(&mut hex)[3..35];
    if let Ok(v) = HeaderValue::from_str(trace_id) {
        headers.insert("x-trace-id", v);
    }
    if let Some(state) = tracestate {
        headers.insert("tracestate", state);
    }
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("method {method} is not allowed on {}", uri.path()),
    )
}

async fn host_info(State(core): State<Arc<HostCore>>) -> Response {
    Json(core.host_info()).into_response()
}

async fn list_plugins(State(core): State<Arc<HostCore>>) -> Response {
    Json(json!({"plugins": core.plugins.list()})).into_response()
}

async fn get_plugin(State(core): State<Arc<HostCore>>, Path(name): Path<String>) -> Response {
    match core.plugins.list().into_iter().find(|p| p.name == name) {
        Some(p) => Json(p).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no plugin named {name:?}"),
        ),
    }
}

/// Module details include the storage probe (a durable write and a read):
/// they are built on the blocking pool, never on the async workers.
async fn list_modules(State(core): State<Arc<HostCore>>) -> Response {
    match tokio::task::spawn_blocking(move || core.modules_json()).await {
        Ok(modules) => Json(json!({"modules": modules})).into_response(),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

async fn get_module(State(core): State<Arc<HostCore>>, Path(name): Path<String>) -> Response {
    let lookup = name.clone();
    let module = match tokio::task::spawn_blocking(move || core.module_json(&lookup)).await {
        Ok(module) => module,
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            )
        }
    };
    match module {
        Some(m) => Json(m).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no module named {name:?}"),
        ),
    }
}

async fn list_services(State(core): State<Arc<HostCore>>) -> Response {
    Json(json!({"services": core.registry.list()})).into_response()
}

/// Checks that a body is JSON (empty means `null`); the error is the
/// message for a 400.
fn parse_json_body(body: &Bytes) -> Result<String, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok("null".into());
    }
    let text = std::str::from_utf8(body).map_err(|_| "request body is not UTF-8".to_owned())?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| format!("request body is not valid JSON: {e}"))?;
    Ok(text.to_owned())
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// The request's `traceparent`, parsed. Below [`observe_request`] it is
/// always the request's server span.
fn traceparent(headers: &HeaderMap) -> Option<SpanContext> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(SpanContext::parse)
}

async fn call_service(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = json_body_declared(&headers, body.len()) {
        return r.into_response();
    }
    let input = match parse_json_body(&body) {
        Ok(i) => i,
        Err(m) => return bad_request(&m),
    };
    match core
        .call_service_async(
            &caller.service_caller(),
            &name,
            input,
            traceparent(&headers),
        )
        .await
    {
        Ok(output) => {
            let body = if serde_json::from_str::<serde::de::IgnoredAny>(&output).is_ok() {
                output
            } else {
                Value::String(output).to_string()
            };
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(e) => service_error_response(&e, &caller),
    }
}

async fn publish_event(
    State(core): State<Arc<HostCore>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(owner) = topic_owner(&topic, &core.config.host.access.topic_owners) {
        return error_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "topic {topic:?} is reserved: only {owner} publishes it, never the HTTP API (internal.* belongs to the host; see [host.access] topic_owners)"
            ),
        );
    }
    if let Err(r) = json_body_declared(&headers, body.len()) {
        return r.into_response();
    }
    let payload = match parse_json_body(&body) {
        Ok(p) => p,
        Err(m) => return bad_request(&m),
    };
    match core.publish_traced(&HTTP_CALLER, &topic, &payload, traceparent(&headers)) {
        Ok(outcome) => (
            StatusCode::ACCEPTED,
            Json(json!({"topic": topic, "queued": outcome.queued, "dropped": outcome.dropped})),
        )
            .into_response(),
        Err(e) => plugin_error_response(&e),
    }
}

/// The storage isolation rule of plugins, applied to the HTTP API as the
/// plugin `http`: its own namespaces (`http`, `http-*`, `http.*`) and what
/// `[host.storage_grants] http` grants; any other needs the admin token.
fn check_namespace(core: &HostCore, caller: &Caller, namespace: &str) -> Result<(), Refusal> {
    if crate::config::namespace_allowed(
        plugin_abi::HTTP_CALLER,
        namespace,
        &core.config.host.storage_grants,
    ) {
        return Ok(());
    }
    caller.require_admin(&format!(
        "storage namespace {namespace:?} is not the HTTP API's own (http, http-*, http.*), so it"
    ))
}

async fn list_keys(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_namespace(&core, &caller, &namespace) {
        return r.into_response();
    }
    let span = traceparent(&headers);
    let core2 = core.clone();
    let r = tokio::task::spawn_blocking(move || {
        let _current = tracecontext::enter(span);
        core2.storage_list_keys("http", &namespace, "")
    })
    .await;
    match r {
        Ok(Ok(keys)) => Json(json!({"keys": keys})).into_response(),
        Ok(Err(e)) => plugin_error_response(&e),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            "storage task failed",
        ),
    }
}

async fn get_value(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_namespace(&core, &caller, &namespace) {
        return r.into_response();
    }
    let span = traceparent(&headers);
    let r = tokio::task::spawn_blocking(move || {
        let _current = tracecontext::enter(span);
        core.storage_get("http", &namespace, &key).map(|v| (v, key))
    })
    .await;
    match r {
        Ok(Ok((Some(v), _))) => {
            ([(axum::http::header::CONTENT_TYPE, "application/json")], v).into_response()
        }
        Ok(Ok((None, key))) => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no key {key:?}"),
        ),
        Ok(Err(e)) => plugin_error_response(&e),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            "storage task failed",
        ),
    }
}

async fn put_value(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_namespace(&core, &caller, &namespace) {
        return r.into_response();
    }
    if let Err(r) = json_body_declared(&headers, body.len()) {
        return r.into_response();
    }
    let value = match parse_json_body(&body) {
        Ok(v) => v,
        Err(m) => return bad_request(&m),
    };
    let span = traceparent(&headers);
    let r = tokio::task::spawn_blocking(move || {
        let _current = tracecontext::enter(span);
        core.storage_set("http", &namespace, &key, &value)
    })
    .await;
    match r {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => plugin_error_response(&e),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            "storage task failed",
        ),
    }
}

async fn delete_value(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path((namespace, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_namespace(&core, &caller, &namespace) {
        return r.into_response();
    }
    let span = traceparent(&headers);
    let r = tokio::task::spawn_blocking(move || {
        let _current = tracecontext::enter(span);
        core.storage_delete("http", &namespace, &key)
    })
    .await;
    match r {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => error_response(StatusCode::NOT_FOUND, "not_found", "no such key"),
        Ok(Err(e)) => plugin_error_response(&e),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            "storage task failed",
        ),
    }
}

async fn plugin_route(State(core): State<Arc<HostCore>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if !path.starts_with("/api/") {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route for {path}"),
        );
    }
    let limit = core.config.host.max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("request body is larger than {limit} bytes"),
            )
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let request = PluginHttpRequest {
        method: parts.method.as_str().to_owned(),
        path,
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers,
        body: body.to_vec(),
        trace_context: traceparent(&parts.headers),
    };
    let head = parts.method == Method::HEAD;
    match core.plugin_http(request).await {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut out = Response::new(if head {
                Body::empty()
            } else {
                Body::from(resp.body.into_vec())
            });
            *out.status_mut() = status;
            for h in resp.headers.iter() {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(h.0.as_str()),
                    HeaderValue::from_str(h.1.as_str()),
                ) {
                    out.headers_mut().append(name, value);
                }
            }
            out
        }
        Err((405, e)) => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &e.message,
        ),
        Err((status, e)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_response(status, e.kind.as_str(), &e.message)
        }
    }
}
