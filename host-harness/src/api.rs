//! The HTTP API under `/api/v1`: the host's own endpoints plus the routes
//! plugins register, which are dispatched from the fallback handler.
//!
//! Every error is an [`ApiError`]: a JSON body
//! `{"error": {"kind": …, "message": …}}` with a clear message and no
//! internals. Blocking host work runs through [`blocking`].
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
use crate::http_error::ApiError;
use crate::tracecontext::{self, SpanContext, TRACEPARENT_LEN};

/// A plugin's error for an HTTP caller: an admin-only refusal
/// (`Unauthorized`) is 401 when an admin token is configured (send it),
/// else 403 saying how to configure one.
fn service_error(e: PluginError, caller: &Caller) -> ApiError {
    if e.kind == ErrorKind::Unauthorized && caller.level != crate::access::Level::Admin {
        return caller.refusal(&e.message).into();
    }
    e.into()
}

/// Runs blocking host work (storage, the modules' storage probe) on the
/// blocking pool, never on the async workers, with `span` as the thread's
/// current trace context; its error is mapped to the HTTP answer, a task
/// that died is a 500.
pub async fn blocking<T: Send + 'static>(
    span: Option<SpanContext>,
    f: impl FnOnce() -> Result<T, PluginError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let _current = tracecontext::enter(span);
        f()
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            format!("host task failed: {e}"),
        )
    })?
    .map_err(ApiError::from)
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
    request.extensions_mut().insert(ServerSpan(Some(span)));
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
    let mut r = crate::observer::Report::timed(
        plugin_abi::ObservationKind::HttpRequest,
        if status.is_server_error() {
            plugin_abi::CallStatus::Error
        } else {
            plugin_abi::CallStatus::Ok
        },
        Arc::from(route.as_str()),
        HTTP_CALLER.clone(),
        started,
    );
    r.detail = Some(crate::observer::Name::Shared(Arc::from(format!(
        "{method} {}",
        status.as_u16()
    ))));
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

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::method_not_allowed(format!("method {method} is not allowed on {}", uri.path()))
}

async fn host_info(State(core): State<Arc<HostCore>>) -> Response {
    Json(core.host_info()).into_response()
}

async fn list_plugins(State(core): State<Arc<HostCore>>) -> Response {
    Json(json!({"plugins": core.plugins.list()})).into_response()
}

async fn get_plugin(
    State(core): State<Arc<HostCore>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match core.plugins.list().into_iter().find(|p| p.name == name) {
        Some(p) => Ok(Json(p).into_response()),
        None => Err(ApiError::not_found(format!("no plugin named {name:?}"))),
    }
}

/// Module details include the storage probe (a durable write and a read):
/// they are built on the blocking pool, never on the async workers.
async fn list_modules(State(core): State<Arc<HostCore>>) -> Result<Response, ApiError> {
    let modules = blocking(None, move || Ok(core.modules_json())).await?;
    Ok(Json(json!({"modules": modules})).into_response())
}

async fn get_module(
    State(core): State<Arc<HostCore>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let lookup = name.clone();
    match blocking(None, move || Ok(core.module_json(&lookup))).await? {
        Some(m) => Ok(Json(m).into_response()),
        None => Err(ApiError::not_found(format!("no module named {name:?}"))),
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

/// The request's incoming `traceparent`, parsed: done once, at the edge
/// ([`observe_request`]); everything below reads [`ServerSpan`].
fn traceparent(headers: &HeaderMap) -> Option<SpanContext> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| SpanContext::parse(v).ok())
}

/// The request's server span as a value, put in the request's extensions
/// by [`observe_request`]; handlers extract it (never failing: `None`
/// outside the middleware) instead of parsing a header again.
#[derive(Clone, Copy, Debug, Default)]
struct ServerSpan(Option<SpanContext>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ServerSpan {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ServerSpan>()
            .copied()
            .unwrap_or_default())
    }
}

async fn call_service(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ServerSpan(span): ServerSpan,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    json_body_declared(&headers, body.len())?;
    let input = parse_json_body(&body).map_err(ApiError::bad_request)?;
    let output = core
        .call_service_async(&caller.service_caller(), &name, input, span)
        .await
        .map_err(|e| service_error(e, &caller))?;
    let body = if serde_json::from_str::<serde::de::IgnoredAny>(&output).is_ok() {
        uncopied(output)
    } else {
        Body::from(Value::String(output.into_string()).to_string())
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

async fn publish_event(
    State(core): State<Arc<HostCore>>,
    Path(topic): Path<String>,
    ServerSpan(span): ServerSpan,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(owner) = topic_owner(&topic, &core.config.host.access.topic_owners) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "topic {topic:?} is reserved: only {owner} publishes it, never the HTTP API (internal.* belongs to the host; see [host.access] topic_owners)"
            ),
        ));
    }
    json_body_declared(&headers, body.len())?;
    let payload = parse_json_body(&body).map_err(ApiError::bad_request)?;
    let outcome = core.publish_traced(&HTTP_CALLER, &topic, &payload, span)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"topic": topic, "queued": outcome.queued, "dropped": outcome.dropped})),
    )
        .into_response())
}

/// The storage isolation rule of plugins, applied to the HTTP API as the
/// plugin `http`: its own namespaces (`http`, `http-*`, `http.*`) and what
/// `[host.storage_grants] http` grants; any other needs the admin token.
fn check_namespace(core: &HostCore, caller: &Caller, namespace: &str) -> Result<(), Refusal> {
    if crate::storage::namespace_allowed(
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
    ServerSpan(span): ServerSpan,
) -> Result<Response, ApiError> {
    check_namespace(&core, &caller, &namespace)?;
    let keys = blocking(span, move || core.storage_list_keys("http", &namespace, "")).await?;
    Ok(Json(json!({"keys": keys})).into_response())
}

async fn get_value(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path((namespace, key)): Path<(String, String)>,
    ServerSpan(span): ServerSpan,
) -> Result<Response, ApiError> {
    check_namespace(&core, &caller, &namespace)?;
    let (value, key) = blocking(span, move || {
        core.storage_get("http", &namespace, &key).map(|v| (v, key))
    })
    .await?;
    match value {
        Some(v) => {
            Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], v).into_response())
        }
        None => Err(ApiError::not_found(format!("no key {key:?}"))),
    }
}

async fn put_value(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path((namespace, key)): Path<(String, String)>,
    ServerSpan(span): ServerSpan,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_namespace(&core, &caller, &namespace)?;
    json_body_declared(&headers, body.len())?;
    let value = parse_json_body(&body).map_err(ApiError::bad_request)?;
    blocking(span, move || {
        core.storage_set("http", &namespace, &key, &value)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_value(
    State(core): State<Arc<HostCore>>,
    Extension(caller): Extension<Caller>,
    Path((namespace, key)): Path<(String, String)>,
    ServerSpan(span): ServerSpan,
) -> Result<Response, ApiError> {
    check_namespace(&core, &caller, &namespace)?;
    let deleted = blocking(span, move || core.storage_delete("http", &namespace, &key)).await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("no such key"))
    }
}

async fn plugin_route(
    State(core): State<Arc<HostCore>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if !path.starts_with("/api/") {
        return Err(ApiError::not_found(format!("no route for {path}")));
    }
    let limit = core.config.host.max_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    })?;
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
        trace_context: parts.extensions.get::<ServerSpan>().and_then(|s| s.0),
    };
    let head = parts.method == Method::HEAD;
    let resp = core.plugin_http(request).await?;
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = Response::new(if head {
        Body::empty()
    } else {
        uncopied(resp.body)
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
    Ok(out)
}

/// A response body that is a plugin's own buffer (an `RString` or
/// `RVec<u8>` its library allocated), sent without copying it: converting
/// it to a `String` or `Vec` would copy it, since the host's allocator may
/// not free what the plugin's allocated. The buffer is freed by the
/// plugin's library once the body is sent.
fn uncopied(buffer: impl AsRef<[u8]> + Send + 'static) -> Body {
    Body::from(Bytes::from_owner(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Level;

    #[test]
    fn a_plugin_buffer_is_the_response_body_without_a_copy() {
        let text = abi_stable::std_types::RString::from(r#"{"on":true}"#);
        let bytes = abi_stable::std_types::RVec::from(vec![7u8; 4096]);
        let (text_at, bytes_at) = (text.as_ptr(), bytes.as_ptr());
        let rt = runtime();
        for (body, at, len) in [
            (uncopied(text), text_at, 11),
            (uncopied(bytes), bytes_at, 4096),
        ] {
            let sent = rt.block_on(axum::body::to_bytes(body, usize::MAX)).unwrap();
            assert_eq!(sent.len(), len);
            assert_eq!(sent.as_ptr(), at, "the body is the plugin's own buffer");
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap()
    }

    #[test]
    fn blocking_runs_off_the_workers_with_the_span_as_current_context() {
        let rt = runtime();
        let span =
            SpanContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").ok();
        assert!(span.is_some());
        let seen = rt
            .block_on(blocking(span, || {
                let name = std::thread::current().name().map(str::to_owned);
                Ok((tracecontext::current(), name))
            }))
            .unwrap();
        assert_eq!(seen.0, span);
        assert_ne!(seen.1.as_deref(), Some("tokio-runtime-worker"));
    }

    #[test]
    fn blocking_maps_the_error_and_a_dead_task() {
        let rt = runtime();
        let e = rt
            .block_on(blocking(None, || -> Result<(), PluginError> {
                Err(PluginError::unavailable("storage unavailable: disk full"))
            }))
            .unwrap_err();
        assert_eq!(
            (e.status(), e.kind(), e.message()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage unavailable: disk full"
            )
        );
        let e = rt
            .block_on(blocking(None, || -> Result<(), PluginError> {
                panic!("the blocking work died")
            }))
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.kind(), "failed");
        assert!(e.message().starts_with("host task failed"), "{e}");
    }

    #[test]
    fn an_admin_only_service_refusal_asks_for_the_token_or_says_how_to_configure_it() {
        let refused = || PluginError::new(ErrorKind::Unauthorized, "reset needs admin");
        let with_token = Caller {
            level: Level::Api,
            admin_configured: true,
        };
        let e = service_error(refused(), &with_token);
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(e.message().contains("send Authorization: Bearer"), "{e}");
        let without = Caller {
            level: Level::Api,
            admin_configured: false,
        };
        let e = service_error(refused(), &without);
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.message().contains("admin_token"), "{e}");
        // An admin the plugin still refuses gets the plugin's own answer.
        let admin = Caller {
            level: Level::Admin,
            admin_configured: true,
        };
        let e = service_error(refused(), &admin);
        assert_eq!(
            (e.status(), e.message()),
            (StatusCode::UNAUTHORIZED, "reset needs admin")
        );
    }
}
