//! The "errors" capability: plugs the [`crate::error_tracking`] engine into
//! the running plugin.
//!
//! Why a separate module: the engine (grouping, issue store, Sentry wire
//! format) is pure and host-free; this module is the glue that feeds it from
//! the host — every `Error` observation (panics, failed service calls and
//! event handlers, plugin load/start failures, HTTP 5xx, error log lines),
//! the `monitoring.capture_error` / `monitoring.capture_message` services and
//! the Sentry ingest endpoints — enriches events (plugin version, host
//! version, environment, trace id, breadcrumbs), publishes
//! `monitoring.error.new_issue` / `monitoring.error.regression`, counts
//! `homeconsole_errors_total{plugin,level}` (the only place that counts it)
//! and answers the issue API under `/api/v1/monitoring/errors`.
//!
//! Loop safety: this module never logs at error level (an error log line is
//! itself an `Error` observation); its own failures are warnings.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use plugin_abi::{
    Event, Host, HttpRequest, HttpResponse, Observation, ObservationKind, PluginError, ServiceCall,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::capability::{Capability, Ctx, Route};
use crate::config::{AccessConfig, ErrorsConfig};
use crate::error_tracking::ingest::{parse_request, IngestConfig, IngestRequest};
use crate::error_tracking::{
    Breadcrumb, BreadcrumbRing, Dsn, ErrorEvent, ErrorTracker, Forwarder, ForwarderConfig, Frame,
    IgnoreUntil, IssueQuery, IssueSort, IssueStatus, IssueStore, IssueStoreConfig, Level,
    MemoryKvStore, RecordOutcome, TOPIC_NEW_ISSUE, TOPIC_REGRESSION,
};
use crate::http::{error, query_param, require_admin};
use crate::metrics::collector::MetricsCollector;
use plugin_abi::guest::PANIC_BACKTRACE_LOG;

/// Storage namespace of the issue store.
pub const NAMESPACE: &str = "monitoring-errors";

/// Services this capability registers.
pub const SERVICES: &[(&str, &str)] = &[
    (
        "monitoring.capture_error",
        "report an error: {message, level?, error_type?, tags?, extra?, fingerprint?, service?}",
    ),
    (
        "monitoring.capture_message",
        "report a message: {message, level? (default info), tags?, extra?, fingerprint?}",
    ),
];

/// Routes this capability answers.
pub const ROUTES: &[Route] = &[
    Route::new("GET", "/api/v1/monitoring/errors"),
    Route::new("GET", "/api/v1/monitoring/errors/{id}"),
    Route::new("DELETE", "/api/v1/monitoring/errors/{id}"),
    Route::new("POST", "/api/v1/monitoring/errors/{id}/resolve"),
    Route::new("POST", "/api/v1/monitoring/errors/{id}/ignore"),
    Route::new("POST", "/api/v1/monitoring/errors/{id}/unresolve"),
    Route::new("POST", "/api/{project_id}/envelope/"),
    Route::new("POST", "/api/{project_id}/envelope"),
    Route::new("POST", "/api/{project_id}/store/"),
    Route::new("POST", "/api/{project_id}/store"),
];

/// How often the plugin-version cache may be refreshed on a miss, ms.
const VERSION_REFRESH_MS: u64 = 1_000;
/// How often retention (max age) is enforced from the tick, ms.
const PRUNE_EVERY_MS: u64 = 60_000;

/// The error-tracking capability.
pub struct Errors {
    host: Host,
    access: AccessConfig,
    config: ErrorsConfig,
    collector: Arc<MetricsCollector>,
    tracker: ErrorTracker,
    ingest: IngestConfig,
    /// Plugin name → version, from `list_plugins`, and when it was read.
    versions: Mutex<(u64, HashMap<String, String>)>,
    last_prune_ms: AtomicU64,
    /// Plugin → (panic message, backtrace text) from the log line the
    /// plugin's panic guard sends just before the panic's error report.
    pending_backtraces: Mutex<HashMap<String, (String, String)>>,
    /// Why the store or the forwarder is degraded, if it is.
    problems: Mutex<Vec<String>>,
    published_failures: AtomicU64,
    /// TLS of the forwarder.
    tls: crate::outbound::TlsSettings,
    /// This host's external labels (server name, tags of forwarded events).
    external_labels: std::collections::BTreeMap<String, String>,
    /// Last forwarding error (kept for status, logged once per message).
    forward_errors: crate::outbound::LastError,
}

use crate::time::now_ms;

impl Errors {
    /// Builds the capability: opens the persisted issue store (falling back
    /// to memory, with a warning, when storage fails).
    pub fn new(ctx: &Ctx) -> Result<Self, PluginError> {
        let config = ctx.config.errors.clone();
        let store_config = IssueStoreConfig {
            max_issues: config.max_issues,
            max_samples_per_issue: config.samples_per_issue,
            max_age_days: config.max_age_days,
            samples_per_minute: config.samples_per_minute,
            ..IssueStoreConfig::default()
        };
        let mut problems = Vec::new();
        let store = match IssueStore::open(ctx.kv(NAMESPACE), store_config.clone()) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("issue store unavailable, keeping issues in memory only: {e}");
                ctx.host.warn(&msg);
                problems.push(msg);
                IssueStore::open(Arc::new(MemoryKvStore::new()), store_config)
                    .map_err(|e| PluginError::failed(format!("cannot open the issue store: {e}")))?
            }
        };
        let host_version = Some(ctx.host.host_info().host_version().to_string());
        // `external_labels.environment` names this deployment for every sink.
        let environment = ctx
            .config
            .external_labels
            .get("environment")
            .cloned()
            .unwrap_or_else(|| config.environment.clone());
        let mut tracker = ErrorTracker::new(store, host_version, Some(environment))
            .with_breadcrumb_capacity(config.breadcrumbs);
        tracker.set_forward_ingested(config.forward_ingested);
        let ingest = IngestConfig {
            public_keys: config.public_keys.clone(),
            project_ids: config.project_ids.clone(),
            max_compressed_bytes: config.max_compressed_bytes,
            max_decompressed_bytes: config.max_decompressed_bytes,
            max_items: config.max_items,
        };
        Ok(Errors {
            host: ctx.host.clone(),
            access: ctx.config.access.clone(),
            collector: ctx.collector.clone(),
            tracker,
            ingest,
            versions: Mutex::new((0, HashMap::new())),
            last_prune_ms: AtomicU64::new(now_ms()),
            pending_backtraces: Mutex::new(HashMap::new()),
            problems: Mutex::new(problems),
            published_failures: AtomicU64::new(0),
            tls: ctx.config.tls.clone(),
            external_labels: ctx.config.external_labels.clone(),
            forward_errors: ctx.last_error("errors: Sentry forwarding"),
            config,
        })
    }

    /// The engine (tests and status).
    pub fn tracker(&self) -> &ErrorTracker {
        &self.tracker
    }

    /// Version of `plugin`, from a cache of `list_plugins` refreshed at most
    /// once a second on a miss.
    fn plugin_version(&self, plugin: &str) -> Option<String> {
        let mut cache = self.versions.lock();
        if let Some(v) = cache.1.get(plugin) {
            return Some(v.clone());
        }
        let now = now_ms();
        if now.saturating_sub(cache.0) < VERSION_REFRESH_MS {
            return None;
        }
        let mut map = HashMap::new();
        for p in self.host.list_plugins() {
            if let Some(v) = p.version.into_option() {
                map.insert(p.name.into_string(), v.into_string());
            }
        }
        *cache = (now, map);
        cache.1.get(plugin).cloned()
    }

    /// Records an event captured through the telemetry API, like a
    /// `monitoring.capture_*` call (grouping, counters, bus topics).
    pub fn capture_event(&self, event: ErrorEvent) {
        self.record(event);
    }

    /// Stores one event and does everything that follows: metric, bus.
    fn record(&self, mut event: ErrorEvent) -> RecordOutcome {
        if event.plugin_version.is_none()
            && event.source == crate::error_tracking::EventSource::Captured
        {
            event.plugin_version = self.plugin_version(&event.plugin);
        }
        let (plugin, level) = (event.plugin.clone(), event.level);
        let title = event.title();
        let outcome = self.tracker.capture(event);
        self.collector.count_error(&plugin, level.as_str());
        let payload = || {
            json!({"issue_id": outcome.issue_id, "title": title, "plugin": plugin,
                   "level": level, "count": outcome.count})
            .to_string()
        };
        if outcome.new_issue {
            self.publish(TOPIC_NEW_ISSUE, &payload());
        }
        if outcome.regression {
            self.publish(TOPIC_REGRESSION, &payload());
        }
        if let Some(e) = &outcome.persist_error {
            self.host.warn(&format!(
                "error issue {} not persisted: {e}",
                outcome.issue_id
            ));
        }
        outcome
    }

    fn publish(&self, topic: &str, payload: &str) {
        if let Err(e) = self.host.publish(topic, payload, None) {
            self.published_failures.fetch_add(1, Ordering::Relaxed);
            self.host.warn(&format!("cannot publish {topic}: {e}"));
        }
    }

    /// Turns one `Error` observation into an event, attaching the panic
    /// backtrace the plugin logged just before, if any.
    fn event_for(&self, o: &Observation) -> ErrorEvent {
        let mut event = event_from_error(o);
        if event.exception.first().is_some_and(|e| e.ty == "panic") {
            let pending = self.pending_backtraces.lock().remove(o.caller.as_str());
            if let Some((panic, text)) = pending {
                if o.message.as_str().contains(panic.as_str()) {
                    let frames = parse_backtrace(&text);
                    if !frames.is_empty() {
                        event.exception[0].frames = frames;
                        event.enforce_limits();
                    }
                }
            }
        }
        event
    }

    fn capture_service(
        &self,
        call: &ServiceCall<'_>,
        default_level: Level,
    ) -> Result<Value, PluginError> {
        let input: CaptureInput = serde_json::from_str(call.input).map_err(|e| {
            PluginError::bad_request(format!("invalid input for {}: {e}", call.name))
        })?;
        if input.message.trim().is_empty() && input.error_type.is_none() {
            return Err(PluginError::bad_request(format!(
                "{}: \"message\" must not be empty",
                call.name
            )));
        }
        let level = input
            .level
            .as_deref()
            .map_or(default_level, Level::parse_lenient);
        let mut event = match input.error_type.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(ty) => ErrorEvent::exception(call.caller, ty, input.message.clone(), Vec::new()),
            None => ErrorEvent::message(call.caller, level, input.message.clone()),
        };
        event.level = level;
        event.service_or_topic = input.service;
        event.tags = input.tags;
        event
            .tags
            .insert("reported_via".into(), call.name.to_owned());
        event.extra = input.extra;
        event.fingerprint = input.fingerprint.filter(|f| !f.is_empty());
        event.trace_id = call.trace_context.map(|t| t.trace_id_hex());
        event.enforce_limits();
        let event_id = event.event_id.clone();
        let outcome = self.record(event);
        Ok(json!({
            "event_id": event_id,
            "issue_id": outcome.issue_id,
            "new_issue": outcome.new_issue,
            "regression": outcome.regression,
            "count": outcome.count,
        }))
    }

    fn record_breadcrumb(&self, o: &Observation) {
        let ring: &BreadcrumbRing = self.tracker.breadcrumbs();
        let Some(kind) = o.kind() else {
            return; // a kind this plugin does not know: ignored
        };
        match kind {
            ObservationKind::LogLine => {
                if o.message.as_str() == PANIC_BACKTRACE_LOG {
                    let fields: Value = serde_json::from_str(o.detail.as_str()).unwrap_or_default();
                    if let (Some(panic), Some(bt)) =
                        (fields["panic"].as_str(), fields["backtrace"].as_str())
                    {
                        let mut pending = self.pending_backtraces.lock();
                        if pending.len() >= 256 {
                            pending.clear();
                        }
                        pending.insert(o.caller.to_string(), (panic.to_owned(), bt.to_owned()));
                    }
                    return;
                }
                let mut crumb =
                    Breadcrumb::log(Level::parse_lenient(o.name.as_str()), o.message.as_str());
                crumb.timestamp = o.at_unix_ns / 1_000_000;
                if !o.detail.is_empty() {
                    if let Ok(Value::Object(fields)) = serde_json::from_str(o.detail.as_str()) {
                        crumb.data = fields;
                    }
                }
                ring.record(o.caller.as_str(), crumb);
            }
            ObservationKind::EventPublished => {
                let mut crumb = Breadcrumb::event(o.name.as_str());
                crumb.timestamp = o.at_unix_ns / 1_000_000;
                ring.record(o.caller.as_str(), crumb);
            }
            ObservationKind::ServiceCall => {
                let mut crumb = Breadcrumb::service_call(
                    o.name.as_str(),
                    o.status().as_str(),
                    o.duration_ns as f64 / 1e6,
                );
                crumb.timestamp = o.at_unix_ns / 1_000_000;
                ring.record(o.caller.as_str(), crumb);
            }
            _ => {}
        }
    }

    fn http_ingest(&self, request: &HttpRequest) -> HttpResponse {
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|h| (h.0.as_str().to_owned(), h.1.as_str().to_owned()))
            .collect();
        let path = if request.query.is_empty() {
            request.path.as_str().to_owned()
        } else {
            format!("{}?{}", request.path, request.query)
        };
        let req = IngestRequest {
            method: request.method.as_str(),
            path: &path,
            headers: &headers,
            body: request.body.as_slice(),
        };
        match parse_request(&self.ingest, &req) {
            Ok(outcome) => {
                let mut ids = Vec::new();
                let mut issues = Vec::new();
                for event in outcome.events {
                    ids.push(event.event_id.clone());
                    issues.push(self.record(event).issue_id);
                }
                let mut body = json!({"issues": issues, "ignored_items": outcome.ignored_items});
                if let Some(first) = ids.first() {
                    body["id"] = Value::from(first.clone());
                }
                HttpResponse::json(200, &body)
            }
            Err(e) => {
                let mut resp = error(e.status(), e.code(), &e.to_string());
                if e.status() == 401 {
                    resp = resp.with_header("www-authenticate", "Sentry");
                }
                resp
            }
        }
    }

    fn http_list(&self, request: &HttpRequest) -> HttpResponse {
        let q = request.query.as_str();
        let mut query = IssueQuery::default();
        if let Some(s) = query_param(q, "status").filter(|s| !s.is_empty()) {
            query.status = Some(match s.as_str() {
                "unresolved" => IssueStatus::Unresolved,
                "resolved" => IssueStatus::Resolved,
                "ignored" => IssueStatus::Ignored,
                _ => {
                    return error(
                        400,
                        "bad_request",
                        "status must be unresolved, resolved or ignored",
                    )
                }
            });
        }
        query.plugin = query_param(q, "plugin").filter(|p| !p.is_empty());
        if let Some(l) = query_param(q, "level").filter(|s| !s.is_empty()) {
            let level = Level::parse_lenient(&l);
            if level.as_str() != l {
                return error(
                    400,
                    "bad_request",
                    "level must be fatal, error, warning, info or debug",
                );
            }
            query.level = Some(level);
        }
        if let Some(s) = query_param(q, "sort").filter(|s| !s.is_empty()) {
            query.sort = match s.as_str() {
                "last_seen" => IssueSort::LastSeen,
                "count" => IssueSort::Count,
                "first_seen" => IssueSort::FirstSeen,
                _ => {
                    return error(
                        400,
                        "bad_request",
                        "sort must be last_seen, count or first_seen",
                    )
                }
            };
        }
        for (name, slot, max) in [
            ("offset", &mut query.offset, usize::MAX),
            ("limit", &mut query.limit, 500),
        ] {
            if let Some(v) = query_param(q, name).filter(|s| !s.is_empty()) {
                match v.parse::<usize>() {
                    Ok(n) if n <= max => *slot = n,
                    _ => {
                        return error(
                            400,
                            "bad_request",
                            &format!("{name} must be a whole number (limit at most 500)"),
                        )
                    }
                }
            }
        }
        let page = self.tracker.issues().list(&query);
        HttpResponse::json(
            200,
            &json!({"total": page.total, "offset": query.offset, "limit": query.limit,
                    "issues": page.issues}),
        )
    }

    fn http_detail(&self, request: &HttpRequest, id: &str) -> HttpResponse {
        // Details (samples, breadcrumbs, extra data) are admin-only.
        if let Err(resp) = require_admin(&self.access, request, "an error issue's details") {
            return resp;
        }
        match self.tracker.issues().get(id) {
            Ok(Some(detail)) => {
                let breadcrumbs = detail
                    .samples
                    .last()
                    .map(|s| s.breadcrumbs.clone())
                    .unwrap_or_default();
                let mut body = serde_json::to_value(&detail).unwrap_or(Value::Null);
                body["breadcrumbs"] = serde_json::to_value(breadcrumbs).unwrap_or(Value::Null);
                HttpResponse::json(200, &body)
            }
            Ok(None) => not_found(id),
            Err(e) => {
                self.host.warn(&format!("cannot read issue {id}: {e}"));
                error(503, "unavailable", "issue storage is unavailable")
            }
        }
    }

    fn http_change(&self, request: &HttpRequest, id: &str, action: &str) -> HttpResponse {
        if let Err(resp) = require_admin(&self.access, request, "changing an error issue") {
            return resp;
        }
        let issues = self.tracker.issues();
        let result = match action {
            "resolve" => issues.resolve(id),
            "unresolve" => issues.unresolve(id),
            "delete" => issues.delete(id),
            "ignore" => match parse_ignore(request.body.as_slice()) {
                Ok(until) => issues.ignore(id, until),
                Err(msg) => return error(400, "bad_request", &msg),
            },
            _ => return error(404, "not_found", "unknown action"),
        };
        match result {
            Ok(true) if action == "delete" => HttpResponse::json(200, &json!({"deleted": id})),
            Ok(true) => match issues.get(id) {
                Ok(Some(d)) => HttpResponse::json(200, &json!({"issue": d.issue})),
                _ => HttpResponse::json(200, &json!({"id": id})),
            },
            Ok(false) => not_found(id),
            Err(e) => {
                self.host.warn(&format!("cannot {action} issue {id}: {e}"));
                error(503, "unavailable", "issue storage is unavailable")
            }
        }
    }
}

fn not_found(id: &str) -> HttpResponse {
    let shown: String = id.chars().take(64).collect();
    error(404, "not_found", &format!("no error issue {shown:?}"))
}

/// Input of `monitoring.capture_error` / `monitoring.capture_message`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureInput {
    #[serde(default)]
    message: String,
    #[serde(default)]
    level: Option<String>,
    #[serde(default, alias = "type")]
    error_type: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    extra: Map<String, Value>,
    #[serde(default)]
    fingerprint: Option<Vec<String>>,
    #[serde(default, alias = "topic")]
    service: Option<String>,
}

/// Body of `POST …/ignore`: `{"until_events": n}`, `{"until_ms": t}` or
/// empty (forever).
fn parse_ignore(body: &[u8]) -> Result<IgnoreUntil, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        until_events: Option<u64>,
        until_ms: Option<u64>,
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(IgnoreUntil::Forever);
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| {
        format!("ignore body must be {{\"until_events\": n}}, {{\"until_ms\": t}} or empty: {e}")
    })?;
    match (b.until_events, b.until_ms) {
        (Some(_), Some(_)) => Err("give until_events or until_ms, not both".into()),
        (Some(n), None) => Ok(IgnoreUntil::Events { remaining: n }),
        (None, Some(t)) => Ok(IgnoreUntil::Time { until_ms: t }),
        (None, None) => Ok(IgnoreUntil::Forever),
    }
}

/// A plugin panic: the callback and message from the guest's fixed wording
/// `panicked in <callback>: <msg>`; its location never comes from text but
/// from the observation's `panic` value ([`plugin_abi::PanicLocation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicInfo {
    /// The plugin callback that panicked (`handle_service`, `on_event`, …).
    pub callback: String,
    /// The panic message.
    pub message: String,
}

/// Finds a plugin panic in an error message (it may be prefixed, e.g.
/// `service demo.x: panicked in handle_service: boom`).
pub fn parse_panic(message: &str) -> Option<PanicInfo> {
    const MARK: &str = "panicked in ";
    let start = message.find(MARK)? + MARK.len();
    let rest = &message[start..];
    let (callback, rest) = rest.split_once(": ")?;
    if callback.is_empty() || callback.contains(char::is_whitespace) {
        return None;
    }
    Some(PanicInfo {
        callback: callback.to_owned(),
        message: rest.to_owned(),
    })
}

fn parse_location(loc: &str) -> Option<(String, u32, u32)> {
    let mut parts = loc.rsplitn(3, ':');
    let col = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?;
    (!file.is_empty()).then(|| (file.to_owned(), line, col))
}

/// Frames of a `std::backtrace::Backtrace` text, oldest call first (Sentry
/// order). Frames of the runtime (std, core, alloc, panic machinery, the
/// ABI guard) are marked not in-app so grouping uses the plugin's own.
pub fn parse_backtrace(text: &str) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(loc) = t.strip_prefix("at ") {
            if let (Some(f), Some((file, line, _))) = (frames.last_mut(), parse_location(loc)) {
                f.filename = Some(file.clone());
                f.abs_path = Some(file);
                f.lineno = Some(line);
            }
            continue;
        }
        let Some((num, function)) = t.split_once(": ") else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let function = function.trim().to_owned();
        let runtime = [
            "std::",
            "core::",
            "alloc::",
            "abi_stable::",
            "plugin_abi::",
            "__rust",
            "rust_begin_unwind",
            "<alloc::",
            "<core::",
            "<std::",
            "<plugin_abi::",
            "<abi_stable::",
            "_start",
            "__libc",
            "start_thread",
            "clone",
        ]
        .iter()
        .any(|p| function.starts_with(p));
        frames.push(Frame {
            function: Some(function),
            in_app: Some(!runtime),
            ..Frame::default()
        });
    }
    frames.reverse();
    frames
}

/// The service or topic named in a host error message, by place.
fn subject(place: &str, message: &str) -> Option<String> {
    let word = |s: &str| s.split([':', ' ']).next().map(str::to_owned);
    match place {
        "service_call" => message.strip_prefix("service ").and_then(word),
        "event_handler" => message.strip_prefix("event handler for ").and_then(word),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

/// Builds the event for one `Error` observation (without breadcrumbs,
/// versions or environment: the tracker and [`Errors::record`] add them).
pub fn event_from_error(o: &Observation) -> ErrorEvent {
    let place = o.name.as_str();
    let plugin = if o.caller.is_empty() {
        "host"
    } else {
        o.caller.as_str()
    };
    let message = o.message.as_str();
    let location = o.panic.as_ref().into_option();
    let mut event = match parse_panic(message) {
        Some(p) => {
            let mut frames = vec![Frame {
                function: Some(p.callback.clone()),
                ..Frame::default()
            }];
            if let Some(at) = location {
                frames.push(Frame {
                    filename: Some(at.file.to_string()),
                    abs_path: Some(at.file.to_string()),
                    lineno: Some(at.line),
                    ..Frame::default()
                });
            }
            let mut e = ErrorEvent::exception(plugin, "panic", p.message.clone(), frames);
            e.level = Level::Fatal;
            e.message = Some(message.to_owned());
            e.tags.insert("callback".into(), p.callback.clone());
            if let Some(at) = location {
                e.extra
                    .insert("panic_location".into(), Value::from(at.to_string()));
            }
            e
        }
        None => ErrorEvent::message(plugin, Level::Error, message),
    };
    if o.at_unix_ns > 0 {
        event.timestamp = o.at_unix_ns / 1_000_000;
    }
    event.tags.insert("place".into(), place.to_owned());
    event.tags.insert("reported_via".into(), "host".into());
    event.service_or_topic = subject(place, message).or_else(|| Some(place.to_owned()));
    if let Some(s) = subject(place, message) {
        event.tags.insert(
            if place == "event_handler" {
                "topic"
            } else {
                "service"
            }
            .into(),
            s,
        );
    }
    event.trace_id = o
        .trace_context
        .as_ref()
        .into_option()
        .map(|t| t.trace_id_hex());
    event.enforce_limits();
    event
}

impl Capability for Errors {
    fn name(&self) -> &'static str {
        "errors"
    }

    fn services(&self) -> Vec<(&'static str, &'static str)> {
        SERVICES.to_vec()
    }

    fn routes(&self) -> Vec<Route> {
        ROUTES.to_vec()
    }

    fn start(&self) -> Result<(), PluginError> {
        if let Some(dsn) = self.config.sentry_dsn.as_deref().filter(|d| !d.is_empty()) {
            let dsn: Dsn = dsn
                .parse()
                .map_err(|e| PluginError::bad_request(format!("errors.sentry_dsn: {e}")))?;
            let mut fc = ForwarderConfig::new(dsn);
            fc.queue_capacity = self.config.forward_queue.max(1);
            fc.max_retries = self.config.forward_max_retries;
            fc.timeout = std::time::Duration::from_millis(self.config.forward_timeout_ms.max(1));
            fc.tls = self.tls.clone();
            fc.server_name = self.external_labels.get("instance").cloned();
            fc.tags = self.external_labels.clone();
            fc.tags.remove("instance");
            fc.tags.remove("environment");
            fc.errors = self.forward_errors.clone();
            match Forwarder::start(fc) {
                Ok(f) => self.tracker.set_forwarder(Some(f)),
                Err(e) => {
                    let msg = format!("error forwarding disabled: {e}");
                    self.host.warn(&msg);
                    self.problems.lock().push(msg);
                }
            }
        }
        Ok(())
    }

    fn stop(&self) {
        self.tracker.stop();
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Option<Result<Value, PluginError>> {
        match call.name {
            "monitoring.capture_error" => Some(self.capture_service(call, Level::Error)),
            "monitoring.capture_message" => Some(self.capture_service(call, Level::Info)),
            _ => None,
        }
    }

    fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
        let route = request.route.as_str();
        let method = request.method.as_str();
        let id = request.param("id").unwrap_or_default();
        let resp = match (method, route) {
            (_, r) if r.starts_with("/api/{project_id}/") => self.http_ingest(request),
            ("GET", "/api/v1/monitoring/errors") => self.http_list(request),
            ("GET" | "HEAD", "/api/v1/monitoring/errors/{id}") => self.http_detail(request, id),
            ("DELETE", "/api/v1/monitoring/errors/{id}") => self.http_change(request, id, "delete"),
            ("POST", "/api/v1/monitoring/errors/{id}/resolve") => {
                self.http_change(request, id, "resolve")
            }
            ("POST", "/api/v1/monitoring/errors/{id}/ignore") => {
                self.http_change(request, id, "ignore")
            }
            ("POST", "/api/v1/monitoring/errors/{id}/unresolve") => {
                self.http_change(request, id, "unresolve")
            }
            _ => return None,
        };
        Some(resp)
    }

    fn on_event(&self, event: &Event) {
        if event.topic.as_str().starts_with("internal.plugin.") {
            // Versions may have changed (hot reload): re-read on next miss.
            let mut cache = self.versions.lock();
            cache.0 = 0;
            cache.1.clear();
        }
    }

    fn on_observations(&self, batch: &[Observation]) {
        for o in batch {
            let Some(kind) = o.kind() else {
                continue; // a kind this plugin does not know: ignored
            };
            match kind {
                // The backtrace line is attached to its panic's issue instead.
                ObservationKind::Error
                    if o.name.as_str() == "plugin_log"
                        && o.message.as_str() == PANIC_BACKTRACE_LOG => {}
                ObservationKind::Error => {
                    let event = self.event_for(o);
                    self.record(event);
                }
                ObservationKind::LogLine
                | ObservationKind::EventPublished
                | ObservationKind::ServiceCall => self.record_breadcrumb(o),
                _ => {}
            }
        }
    }

    fn tick(&self, now_unix_ms: u64) {
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if now_unix_ms.saturating_sub(last) >= PRUNE_EVERY_MS {
            self.last_prune_ms.store(now_unix_ms, Ordering::Relaxed);
            self.tracker.issues().prune_at(now_unix_ms);
        }
    }

    fn status(&self) -> Value {
        json!({
            "issues": self.tracker.issues().stats(),
            "breadcrumbs_dropped": self.tracker.breadcrumbs().dropped(),
            "forwarder": self.tracker.forwarder_stats(),
            "forwarder_last_error": self.forward_errors.get(),
            "ingest_enabled": !self.ingest.public_keys.is_empty(),
            "environment": self.external_labels.get("environment").unwrap_or(&self.config.environment),
            "publish_failures": self.published_failures.load(Ordering::Relaxed),
            "problems": *self.problems.lock(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_parse() {
        let p = parse_panic(
            "service faulty.call: panicked in handle_service: deliberate panic in handle_service",
        )
        .unwrap();
        assert_eq!(p.callback, "handle_service");
        assert_eq!(p.message, "deliberate panic in handle_service");
        let p = parse_panic("panicked in on_event: boom at src/x.rs:1:2").unwrap();
        assert_eq!(
            p.message, "boom at src/x.rs:1:2",
            "text is never a location"
        );
        assert!(parse_panic("service x: failed").is_none());
    }

    #[test]
    fn backtraces_parse() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n             at /rustc/x/library/std/src/backtrace.rs:312:9\n   1: fixture_faulty::misbehave\n             at ./example-plugins/fixtures/faulty/src/lib.rs:32:9\n   2: <fixture_faulty::Faulty as plugin_abi::guest::PluginImpl>::handle_service\n             at ./src/lib.rs:80:9\n   3: clone\n";
        let frames = parse_backtrace(text);
        assert_eq!(frames.len(), 4);
        assert_eq!(
            frames[3].function.as_deref(),
            Some("std::backtrace::Backtrace::force_capture")
        );
        assert_eq!(frames[3].in_app, Some(false));
        assert_eq!(
            frames[2].function.as_deref(),
            Some("fixture_faulty::misbehave")
        );
        assert_eq!(frames[2].lineno, Some(32));
        assert_eq!(frames[2].in_app, Some(true));
        assert_eq!(frames[0].in_app, Some(false));
    }

    #[test]
    fn subjects() {
        assert_eq!(
            subject("service_call", "service demo.fail: demo.fail always fails").as_deref(),
            Some("demo.fail")
        );
        assert_eq!(
            subject(
                "event_handler",
                "event handler for device.x.command failed: no"
            )
            .as_deref(),
            Some("device.x.command")
        );
        assert_eq!(subject("plugin_log", "anything"), None);
    }

    #[test]
    fn ignore_bodies() {
        assert_eq!(parse_ignore(b""), Ok(IgnoreUntil::Forever));
        assert_eq!(
            parse_ignore(br#"{"until_events": 3}"#),
            Ok(IgnoreUntil::Events { remaining: 3 })
        );
        assert_eq!(
            parse_ignore(br#"{"until_ms": 5}"#),
            Ok(IgnoreUntil::Time { until_ms: 5 })
        );
        assert!(parse_ignore(br#"{"bogus": 1}"#).is_err());
        assert!(parse_ignore(b"not json").is_err());
    }

    #[test]
    fn error_observation_to_event() {
        let mut o = Observation::empty(ObservationKind::Error);
        o.name = "service_call".into();
        o.caller = "faulty".into();
        o.message = "service faulty.call: panicked in handle_service: boom".into();
        o.panic = abi_stable::std_types::ROption::RSome(plugin_abi::PanicLocation {
            file: "src/lib.rs".into(),
            line: 3,
            column: 5,
        });
        let e = event_from_error(&o);
        assert_eq!(e.level, Level::Fatal);
        assert_eq!(e.exception[0].ty, "panic");
        assert_eq!(e.exception[0].value.as_deref(), Some("boom"));
        let at = &e.exception[0].frames[1];
        assert_eq!(
            (at.filename.as_deref(), at.lineno),
            (Some("src/lib.rs"), Some(3))
        );
        assert_eq!(e.extra["panic_location"], "src/lib.rs:3:5");

        // Without the value there is no location frame, whatever the text says.
        o.panic = abi_stable::std_types::ROption::RNone;
        o.message =
            "service faulty.call: panicked in handle_service: boom at src/lib.rs:3:5".into();
        let e = event_from_error(&o);
        assert_eq!(e.exception[0].frames.len(), 1);
        assert_eq!(e.service_or_topic.as_deref(), Some("faulty.call"));
        assert_eq!(e.tags["place"], "service_call");
    }
}
