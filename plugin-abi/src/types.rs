//! FFI-safe values exchanged between host and plugins.
//!
//! Structs here are `#[repr(C)]` and derive `StableAbi`; changing a field is an
//! ABI break (bump the crate's minor version and note it in the CHANGELOG).
#![allow(unsafe_code)] // `#[derive(StableAbi)]` expands to `unsafe impl`.

use abi_stable::std_types::{ROption, RString, RVec, Tuple2};
use abi_stable::StableAbi;

use crate::error::PanicLocation;
use crate::trace_context::TraceContext;

/// Severity of a log line sent to the host's logger.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very verbose diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin recovered from.
    Warn,
    /// A failure.
    Error,
}

impl LogLevel {
    /// Lower-case name as written in the JSON log.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Static facts about a plugin, read before it is constructed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginInfo {
    /// Unique plugin name, e.g. `monitoring`.
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// The `plugin-abi` version the plugin was built against.
    pub abi_version: RString,
    /// One line saying what the plugin does.
    pub description: RString,
}

/// An HTTP request routed by the host to a plugin.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct HttpRequest {
    /// Upper-case method, e.g. `GET`.
    pub method: RString,
    /// The full path, e.g. `/api/v1/monitoring/metrics`.
    pub path: RString,
    /// The raw query string without `?` (may be empty).
    pub query: RString,
    /// The route pattern that matched, e.g. `/api/v1/monitoring/traces/{id}`.
    pub route: RString,
    /// Values of `{param}` segments in the matched route.
    pub params: RVec<Tuple2<RString, RString>>,
    /// Request headers, names lower-case.
    pub headers: RVec<Tuple2<RString, RString>>,
    /// The request body (already bounded by the host).
    pub body: RVec<u8>,
    /// The request's server span (the host parsed any incoming
    /// `traceparent` once at the HTTP edge).
    pub trace_context: ROption<TraceContext>,
}

impl HttpRequest {
    /// First header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.0.as_str() == name)
            .map(|h| h.1.as_str())
    }

    /// Value of a route parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.0.as_str() == name)
            .map(|p| p.1.as_str())
    }
}

/// The response a plugin gives to an [`HttpRequest`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: RVec<Tuple2<RString, RString>>,
    /// Response body.
    pub body: RVec<u8>,
}

impl HttpResponse {
    /// A response with a body and content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            headers: RVec::from(vec![Tuple2(
                RString::from("content-type"),
                RString::from(content_type),
            )]),
            body: RVec::from(body.into()),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string().into_bytes())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push(Tuple2(RString::from(name), RString::from(value)));
        self
    }
}

/// An event delivered from the bus to a subscriber.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Event {
    /// Dotted topic, e.g. `device.light1.state`.
    pub topic: RString,
    /// JSON payload.
    pub payload: RString,
    /// Who published it: a plugin name or `host`.
    pub source: RString,
    /// The subscription this delivery is for.
    pub subscription_id: u64,
    /// Publication time, Unix epoch milliseconds.
    pub published_at_ms: u64,
    /// The delivery's span (a child of the publisher's), if traced.
    pub trace_context: ROption<TraceContext>,
}

/// The health a plugin reports for itself.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    /// Everything works.
    Healthy,
    /// Works with reduced function or speed.
    Degraded,
    /// Does not work.
    Unhealthy,
}

impl HealthStatus {
    /// Lower-case name as used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// A plugin's answer to "how are you?".
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HealthReport {
    /// Overall status.
    pub status: HealthStatus,
    /// Short explanation (empty when healthy).
    pub message: RString,
}

impl HealthReport {
    /// A healthy report with no message.
    pub fn healthy() -> Self {
        HealthReport {
            status: HealthStatus::Healthy,
            message: RString::new(),
        }
    }
}

/// The life-cycle state of a plugin in the host.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginState {
    /// Loaded and constructed, not started yet.
    Loaded,
    /// Started and serving.
    Started,
    /// Stopped (removed, replaced, or shutting down).
    Stopped,
    /// Failed to load, start, or misbehaved; see its error message.
    Error,
}

impl PluginState {
    /// Lower-case name as used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Loaded => "loaded",
            PluginState::Started => "started",
            PluginState::Stopped => "stopped",
            PluginState::Error => "error",
        }
    }
}

/// What an [`Observation`] reports.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObservationKind {
    /// A service call finished: `name` = service, `caller`, `status`,
    /// `duration_ns`, `detail` = the plugin serving it (empty when not
    /// found), `message` = the error, if any.
    ServiceCall,
    /// A storage operation finished: `name` = operation (`get`, `set`, `delete`,
    /// `list`), `namespace`, `status`, `duration_ns`.
    StorageOperation,
    /// An event was published: `name` = topic, `caller` = publisher.
    EventPublished,
    /// A plugin changed state: `name` = plugin, `detail` = new state
    /// (`loaded`/`started`/`stopped`/`error`), `message` = error text if any.
    ///
    /// With a `trace_context`, it is instead a timed life-cycle step (a
    /// span): `detail` = `load` (load + construct + start of plugin `name`),
    /// `start` (its child), `stop`, or `startup` (`name` = `host`: the root
    /// of the host's startup trace), `duration_ns`, `status`, `message`.
    PluginState,
    /// An error happened in the host or a plugin: `name` = where (a short
    /// fixed identifier such as `plugin_load`, `event_handler`), `caller` =
    /// plugin, `message` = text, `panic` = where the plugin panicked (for
    /// a caught panic whose location the guest recorded).
    Error,
    /// An event was handed to a subscriber: `name` = topic, `caller` =
    /// subscriber plugin, `duration_ns` = queue wait + handler time.
    EventDelivered,
    /// An event could not be queued for a subscriber: `name` = topic,
    /// `caller` = subscriber plugin.
    EventDropped,
    /// An HTTP request was answered: `name` = matched route (or path),
    /// `detail` = `METHOD STATUS`, `duration_ns`.
    HttpRequest,
    /// A plugin wrote a log line (info and above): `caller` = plugin,
    /// `name` = level, `message` = text, `detail` = fields as JSON,
    /// `trace_context` = the span it was written in (not a span of its own).
    LogLine,
    /// A plugin callback has been busy longer than the stall threshold:
    /// `caller` = plugin, `name` = callback, `detail` = what it was doing
    /// (service, topic, path), `duration_ns` = busy so far, `message` =
    /// the thread's name.
    Stall,
}

/// Outcome of an observed operation.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// Success.
    Ok,
    /// The callee returned an error.
    Error,
    /// The callee did not answer in time.
    Timeout,
    /// No such service / key.
    NotFound,
}

impl CallStatus {
    /// Lower-case name, used as the `status` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ok => "ok",
            CallStatus::Error => "error",
            CallStatus::Timeout => "timeout",
            CallStatus::NotFound => "not_found",
        }
    }
}

/// One report from the host's observer stream. Which fields are meaningful
/// depends on `kind` (see [`ObservationKind`]); unused strings are empty.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Observation {
    /// What is reported.
    pub kind: ObservationKind,
    /// Outcome.
    pub status: CallStatus,
    /// Main subject: service name, storage operation, topic or plugin.
    pub name: RString,
    /// Calling or affected plugin (`http` for API calls, `host` for the host).
    pub caller: RString,
    /// Storage namespace for storage operations.
    pub namespace: RString,
    /// Extra detail (e.g. the new plugin state).
    pub detail: RString,
    /// Error message, if any.
    pub message: RString,
    /// Duration in nanoseconds, where measured.
    pub duration_ns: u64,
    /// When it happened, Unix epoch nanoseconds.
    pub at_unix_ns: u64,
    /// The operation's own span, if traced.
    pub trace_context: ROption<TraceContext>,
    /// Span id of the parent span, `RNone` for a root.
    pub parent_span_id: ROption<[u8; 8]>,
    /// For an `Error` report of a plugin panic: its location (the
    /// [`PluginError::panic`](crate::PluginError) the guest filled).
    pub panic: ROption<PanicLocation>,
}

impl Observation {
    /// An observation of `kind` with every other field empty.
    pub fn empty(kind: ObservationKind) -> Self {
        Observation {
            kind,
            status: CallStatus::Ok,
            name: RString::new(),
            caller: RString::new(),
            namespace: RString::new(),
            detail: RString::new(),
            message: RString::new(),
            duration_ns: 0,
            at_unix_ns: 0,
            trace_context: ROption::RNone,
            parent_span_id: ROption::RNone,
            panic: ROption::RNone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> RVec<Tuple2<RString, RString>> {
        items
            .iter()
            .map(|(k, v)| Tuple2(RString::from(*k), RString::from(*v)))
            .collect()
    }

    #[test]
    fn request_headers_and_params_are_looked_up_by_name_first_match_wins() {
        let request = HttpRequest {
            method: "GET".into(),
            path: "/api/v1/monitoring/traces/abc".into(),
            params: pairs(&[("id", "abc")]),
            headers: pairs(&[("accept", "text/plain"), ("x-a", "1"), ("x-a", "2")]),
            ..HttpRequest::default()
        };
        assert_eq!(request.header("accept"), Some("text/plain"));
        assert_eq!(request.header("x-a"), Some("1"));
        assert_eq!(request.header("Accept"), None, "names are lower case");
        assert_eq!(request.header("missing"), None);
        assert_eq!(request.param("id"), Some("abc"));
        assert_eq!(request.param("rest"), None);
        assert!(request.trace_context.is_none());
        assert!(request.body.is_empty());
    }

    #[test]
    fn responses_carry_their_content_type_and_added_headers() {
        let r = HttpResponse::new(201, "text/plain", "made").with_header("x-id", "7");
        assert_eq!(r.status, 201);
        assert_eq!(r.body.as_slice(), b"made");
        let headers: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|h| (h.0.as_str(), h.1.as_str()))
            .collect();
        assert_eq!(headers, [("content-type", "text/plain"), ("x-id", "7")]);

        let value = serde_json::json!({"error": "no such trace", "n": [1, 2]});
        let j = HttpResponse::json(404, &value);
        assert_eq!(j.status, 404);
        assert_eq!(j.headers[0].1.as_str(), "application/json");
        let back: serde_json::Value = serde_json::from_slice(j.body.as_slice()).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn enum_names_match_the_json_and_metric_labels() {
        let levels = [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ];
        let names: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
        assert_eq!(names, ["trace", "debug", "info", "warn", "error"]);
        assert!(
            levels.windows(2).all(|w| w[0] < w[1]),
            "ordered by severity"
        );

        assert_eq!(
            [
                HealthStatus::Healthy.as_str(),
                HealthStatus::Degraded.as_str(),
                HealthStatus::Unhealthy.as_str()
            ],
            ["healthy", "degraded", "unhealthy"]
        );
        assert!(HealthStatus::Healthy < HealthStatus::Unhealthy);
        assert_eq!(
            [
                PluginState::Loaded.as_str(),
                PluginState::Started.as_str(),
                PluginState::Stopped.as_str(),
                PluginState::Error.as_str()
            ],
            ["loaded", "started", "stopped", "error"]
        );
        assert_eq!(
            [
                CallStatus::Ok.as_str(),
                CallStatus::Error.as_str(),
                CallStatus::Timeout.as_str(),
                CallStatus::NotFound.as_str()
            ],
            ["ok", "error", "timeout", "not_found"]
        );
    }

    #[test]
    fn a_healthy_report_has_no_message_and_an_empty_observation_only_its_kind() {
        let h = HealthReport::healthy();
        assert_eq!((h.status, h.message.as_str()), (HealthStatus::Healthy, ""));

        let o = Observation::empty(ObservationKind::Stall);
        assert_eq!(o.kind, ObservationKind::Stall);
        assert_eq!(o.status, CallStatus::Ok);
        for field in [&o.name, &o.caller, &o.namespace, &o.detail, &o.message] {
            assert!(field.is_empty());
        }
        assert!(o.parent_span_id.is_none());
        assert_eq!((o.duration_ns, o.at_unix_ns), (0, 0));
        assert!(o.trace_context.is_none());
        assert!(o.panic.is_none());
    }
}
