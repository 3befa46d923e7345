//! The tracing capability: turns the host's traced observations into spans,
//! keeps recent traces browsable (`/api/v1/monitoring/traces`), exports them
//! over OTLP/HTTP when an endpoint is configured, and lets plugins open and
//! close spans of their own (`monitoring.start_span` / `monitoring.end_span`).
//!
//! Why it is built this way: the host creates and propagates every span
//! context (it sees every HTTP request, call, event and storage operation and
//! must not depend on this plugin), so this side only records. Observations
//! arrive in batches on the host's observer thread, never on a caller's
//! thread; a sampled-out observation (flags `00`) is skipped after parsing
//! its header, before anything is allocated. Recording never blocks: the
//! store is bounded (oldest trace dropped first) and export is a push into a
//! bounded queue drained by the exporter's own thread, so a collector that
//! is down costs dropped spans (counted), never a slower caller.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plugin_abi::{
    CallStatus, HttpRequest, HttpResponse, LogLevel, Observation, ObservationKind, PluginError,
    ServiceCall,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::capability::{Capability, Ctx, Route};
use crate::config::TracingConfig;
use crate::http::{error, query_param};
use crate::metrics::names;
use crate::metrics::{Counter, CounterFamily, MetricError, MetricStore};
use crate::tracing::context::{parse_trace_id, to_hex};
use crate::tracing::store::StatusFilter;
use crate::tracing::{
    AttrValue, ExportConfig, ManualConfig, ManualSpanError, ManualSpans, OtlpExporter, Sampler,
    SpanHandoff, SpanKind, SpanRecord, SpanSink, SpanStatus, StoreConfig, TraceContext,
    TraceFilter, TraceStore, HANDOFF_CAPACITY,
};

/// Service: open a manual span.
pub const START_SPAN: &str = "monitoring.start_span";
/// Service: end a manual span.
pub const END_SPAN: &str = "monitoring.end_span";
/// Route: list recent traces.
pub const TRACES_PATH: &str = "/api/v1/monitoring/traces";
/// Route: one trace as a span tree.
pub const TRACE_PATH: &str = "/api/v1/monitoring/traces/{trace_id}";
/// Default and largest `limit` of the trace list.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

/// The tracing counters, in the collector's `homeconsole_*` store.
struct Counters {
    stored: Counter,
    evicted: Counter,
    rejected: Counter,
    sampled_out: Counter,
    exported: Counter,
    export_dropped: Counter,
    export_failed: Counter,
    timed_out: Counter,
}

impl Counters {
    fn register(store: &MetricStore) -> Result<Self, MetricError> {
        let stored = store
            .register_counter(
                names::TRACE_SPANS_STORED_TOTAL,
                "Spans kept in the in-memory trace store.",
                &[],
            )?
            .with_labels(&[])?;
        let dropped: CounterFamily = store.register_counter(
            names::TRACE_SPANS_DROPPED_TOTAL,
            "Spans not kept in the trace store, by reason (evicted with the oldest trace, rejected by a bound, sampled_out).",
            &["reason"],
        )?;
        let export: CounterFamily = store.register_counter(
            names::TRACE_EXPORT_SPANS_TOTAL,
            "Spans handed to the OTLP exporter, by result (exported, dropped on a full queue, failed after retries or rejected).",
            &["result"],
        )?;
        let timed_out = store
            .register_counter(
                names::TRACE_SPANS_TIMED_OUT_TOTAL,
                "Manual spans closed because they were not ended within the span timeout.",
                &[],
            )?
            .with_labels(&[])?;
        Ok(Counters {
            stored,
            evicted: dropped.with_labels(&["evicted"])?,
            rejected: dropped.with_labels(&["rejected"])?,
            sampled_out: dropped.with_labels(&["sampled_out"])?,
            exported: export.with_labels(&["exported"])?,
            export_dropped: export.with_labels(&["dropped"])?,
            export_failed: export.with_labels(&["failed"])?,
            timed_out,
        })
    }
}

/// Last values of the monotonic stats mirrored into counters.
#[derive(Default)]
struct Seen {
    evicted: u64,
    handoff_dropped: u64,
    exported: u64,
    export_dropped: u64,
    export_failed: u64,
    timed_out: u64,
}

/// Where finished spans go: the plugin-side sampling ratio, then the store
/// and (when configured) the exporter.
struct TraceSink {
    sampler: Sampler,
    store: Arc<TraceStore>,
    exporter: Option<Arc<OtlpExporter>>,
    counters: Arc<Counters>,
}

impl SpanSink for TraceSink {
    fn submit(&self, span: SpanRecord) {
        if !self.sampler.sample_trace_id(&span.trace_id) {
            self.counters.sampled_out.inc();
            return;
        }
        match &self.exporter {
            Some(exporter) => {
                if self.store.add(span.clone()) {
                    self.counters.stored.inc();
                } else {
                    self.counters.rejected.inc();
                }
                exporter.export(span);
            }
            None => {
                if self.store.add(span) {
                    self.counters.stored.inc();
                } else {
                    self.counters.rejected.inc();
                }
            }
        }
    }
}

/// The tracing capability. See the module docs.
pub struct TracingCapability {
    ctx: Ctx,
    config: TracingConfig,
    sink: Arc<TraceSink>,
    handoff: Arc<SpanHandoff>,
    manual: ManualSpans,
    counters: Arc<Counters>,
    seen: Mutex<Seen>,
    slow_ns: u64,
    observed: AtomicU64,
}

fn invalid(e: impl std::fmt::Display) -> PluginError {
    PluginError::bad_request(format!("invalid tracing setup: {e}"))
}

impl TracingCapability {
    /// Builds the store, the exporter (when an endpoint is configured) and
    /// the manual-span registry from the plugin config.
    pub fn new(ctx: &Ctx) -> Result<Self, PluginError> {
        let config = ctx.config.tracing.clone();
        let counters = Arc::new(Counters::register(ctx.collector.internal()).map_err(invalid)?);
        let store = Arc::new(TraceStore::new(StoreConfig {
            max_traces: config.max_traces,
            max_bytes: config.max_bytes,
            max_spans_per_trace: config.max_spans_per_trace,
        }));
        let exporter = match config.otlp_endpoint.as_deref().map(str::trim) {
            Some(endpoint) if !endpoint.is_empty() => {
                let mut e = ExportConfig::new(endpoint, config.service_name.clone());
                e.headers = config.otlp_headers.clone();
                e.tls = ctx.config.tls.clone();
                e.errors = ctx.last_error("tracing: OTLP export");
                e.resource_attributes = config.resource_attributes.clone();
                // The sink applies the ratio once, for the store and the export alike.
                e.sample_ratio = 1.0;
                e.flush_interval = Duration::from_millis(config.otlp_flush_ms);
                e.timeout = Duration::from_millis(config.otlp_timeout_ms);
                e.max_queue = config.otlp_max_queue;
                e.max_batch_size = e.max_batch_size.min(config.otlp_max_queue);
                e.shutdown_timeout = Duration::from_secs(2);
                Some(Arc::new(OtlpExporter::new(e).map_err(invalid)?))
            }
            _ => None,
        };
        let sampler = Sampler::new(config.sample_ratio);
        let sink = Arc::new(TraceSink {
            sampler,
            store,
            exporter,
            counters: counters.clone(),
        });
        let manual = ManualSpans::new(
            ManualConfig {
                timeout: Duration::from_secs_f64(config.span_timeout_secs),
                sampler,
                ..ManualConfig::default()
            },
            sink.clone(),
        );
        Ok(TracingCapability {
            ctx: ctx.clone(),
            slow_ns: config.slow_call_ms.saturating_mul(1_000_000),
            config,
            handoff: Arc::new(SpanHandoff::new(sink.clone(), HANDOFF_CAPACITY)),
            sink,
            manual,
            counters,
            seen: Mutex::new(Seen::default()),
            observed: AtomicU64::new(0),
        })
    }

    /// The in-memory trace store.
    pub fn store(&self) -> &Arc<TraceStore> {
        &self.sink.store
    }

    /// Where other plugins' finished spans go (the telemetry provider's):
    /// a lock-free hand-off drained into the span sink (the plugin-side
    /// sampling ratio, the store and the exporter) on every tick and
    /// before a trace route answers.
    pub fn span_sink(&self) -> Arc<dyn SpanSink> {
        self.handoff.clone()
    }

    /// Turns one observation into a span and records it; returns whether a
    /// span was recorded. Public for benches.
    pub fn record(&self, o: &Observation) -> bool {
        let Some(ctx) = o.trace_context.as_ref().into_option().copied() else {
            return false;
        };
        if !matches!(
            o.kind(),
            Some(
                ObservationKind::ServiceCall
                    | ObservationKind::HttpRequest
                    | ObservationKind::EventPublished
                    | ObservationKind::EventDelivered
                    | ObservationKind::StorageOperation
                    | ObservationKind::PluginState
            )
        ) {
            return false;
        }
        if o.kind == ObservationKind::ServiceCall
            && self.slow_ns > 0
            && o.duration_ns > self.slow_ns
        {
            self.log_slow_call(o, &ctx);
        }
        if !ctx.sampled() || !self.sink.sampler.sample_trace_id(&ctx.trace_id) {
            self.counters.sampled_out.inc();
            return false;
        }
        let parent = o.parent_span_id.into_option();
        self.sink.submit(span_of(o, &ctx, parent));
        true
    }

    fn log_slow_call(&self, o: &Observation, ctx: &TraceContext) {
        let fields = json!({
            "service": o.name.as_str(),
            "caller": o.caller.as_str(),
            "plugin": o.detail.as_str(),
            "status": o.status().as_str(),
            "duration_ms": o.duration_ns as f64 / 1e6,
            "threshold_ms": self.config.slow_call_ms,
            "trace_id": to_hex(&ctx.trace_id),
            "span_id": to_hex(&ctx.span_id),
        });
        self.ctx
            .host
            .log(LogLevel::Warn, "slow service call", &fields);
    }

    /// Mirrors the store's, exporter's and manual spans' monotonic stats
    /// into the counters.
    fn sync_counters(&self) {
        let store = self.sink.store.stats();
        let manual = self.manual.stats();
        let export = self.sink.exporter.as_ref().map(|e| e.stats());
        let mut seen = self.seen.lock();
        let bump = |counter: &Counter, last: &mut u64, now: u64| {
            if now > *last {
                counter.inc_by((now - *last) as f64);
                *last = now;
            }
        };
        let c = &self.counters;
        bump(&c.evicted, &mut seen.evicted, store.spans_dropped);
        bump(
            &c.rejected,
            &mut seen.handoff_dropped,
            self.handoff.dropped(),
        );
        bump(&c.timed_out, &mut seen.timed_out, manual.timed_out);
        if let Some(x) = export {
            bump(&c.exported, &mut seen.exported, x.exported);
            bump(&c.export_dropped, &mut seen.export_dropped, x.dropped);
            bump(
                &c.export_failed,
                &mut seen.export_failed,
                x.failed + x.rejected,
            );
        }
    }

    fn start_span(&self, call: &ServiceCall<'_>) -> Result<Value, PluginError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Input {
            operation: String,
            #[serde(default)]
            attributes: BTreeMap<String, Value>,
            #[serde(default)]
            parent: Option<String>,
        }
        let input: Input = parse(call.name, call.input)?;
        if input.operation.trim().is_empty() || input.operation.len() > 256 {
            return Err(PluginError::bad_request(
                "operation must be 1 to 256 characters",
            ));
        }
        // Without an explicit parent the span joins the caller's trace (as a
        // child of this service call's span).
        // The caller's span is a value; the manual-span API takes text (its
        // JSON input's `parent`), so it is formatted here, on the stack.
        let caller_span = call.trace_context.map(|t| t.traceparent());
        let parent = input.parent.as_deref().or(caller_span.as_deref());
        let span_id = self
            .manual
            .start(
                &input.operation,
                attributes(input.attributes),
                parent,
                call.caller,
            )
            .map_err(manual_error)?;
        let traceparent = self.manual.traceparent(&span_id).map_err(manual_error)?;
        Ok(json!({
            "span_id": span_id,
            "trace_id": traceparent.get(3..35).unwrap_or_default(),
            "traceparent": traceparent,
        }))
    }

    fn end_span(&self, call: &ServiceCall<'_>) -> Result<Value, PluginError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Input {
            span_id: String,
            #[serde(default)]
            status: Option<String>,
            #[serde(default)]
            message: Option<String>,
            #[serde(default)]
            attributes: BTreeMap<String, Value>,
        }
        let input: Input = parse(call.name, call.input)?;
        let status = match input.status.as_deref().unwrap_or("ok") {
            "ok" => SpanStatus::Ok,
            "unset" => SpanStatus::Unset,
            "error" => SpanStatus::error(input.message.unwrap_or_else(|| "error".into())),
            other => {
                return Err(PluginError::bad_request(format!(
                    "unknown status {other:?}: use ok, error or unset"
                )))
            }
        };
        self.manual
            .end(&input.span_id, status, attributes(input.attributes))
            .map_err(manual_error)?;
        Ok(json!({"ended": input.span_id}))
    }

    fn list(&self, request: &HttpRequest) -> HttpResponse {
        let q = request.query.as_str();
        let mut filter = TraceFilter {
            service: query_param(q, "service").filter(|s| !s.is_empty()),
            plugin: query_param(q, "plugin").filter(|s| !s.is_empty()),
            ..TraceFilter::default()
        };
        match query_param(q, "status").as_deref() {
            None | Some("") => {}
            Some("ok") => filter.status = Some(StatusFilter::Ok),
            Some("error") => filter.status = Some(StatusFilter::Error),
            Some(other) => {
                return error(
                    400,
                    "bad_request",
                    &format!("status must be ok or error, not {other:?}"),
                )
            }
        }
        if let Some(v) = query_param(q, "min_duration_ms").filter(|s| !s.is_empty()) {
            match v.parse::<f64>() {
                Ok(ms) if ms >= 0.0 && ms.is_finite() => {
                    filter.min_duration_ns = Some((ms * 1e6) as u64);
                }
                _ => {
                    return error(
                        400,
                        "bad_request",
                        "min_duration_ms must be a non-negative number",
                    )
                }
            }
        }
        let limit = match query_param(q, "limit").filter(|s| !s.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => n.min(MAX_LIMIT),
                _ => return error(400, "bad_request", "limit must be a positive integer"),
            },
        };
        filter.limit = Some(limit);
        self.sync_counters();
        let traces = self.sink.store.list(&filter);
        HttpResponse::json(
            200,
            &json!({"traces": traces, "stats": self.sink.store.stats()}),
        )
    }

    fn get(&self, request: &HttpRequest) -> HttpResponse {
        let id = request.param("trace_id").unwrap_or_default();
        let trace_id = match parse_trace_id(id) {
            Ok(t) => t,
            Err(e) => {
                return error(
                    400,
                    "bad_request",
                    &format!("invalid trace id (expected 32 lowercase hex digits): {e}"),
                )
            }
        };
        match self.sink.store.get(&trace_id) {
            Some(tree) => HttpResponse::json(200, &json!(tree)),
            None => error(
                404,
                "not_found",
                &format!("no trace {id} in memory (it may have been evicted or not sampled)"),
            ),
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(service: &str, input: &str) -> Result<T, PluginError> {
    serde_json::from_str(input)
        .map_err(|e| PluginError::bad_request(format!("invalid input for {service}: {e}")))
}

fn manual_error(e: ManualSpanError) -> PluginError {
    match e {
        ManualSpanError::UnknownSpan(_) | ManualSpanError::UnknownParent(_) => {
            PluginError::not_found(e.to_string())
        }
        ManualSpanError::AlreadyEnded(_) | ManualSpanError::TimedOut { .. } => {
            PluginError::conflict(e.to_string())
        }
        ManualSpanError::TooManyOpen { .. } => PluginError::unavailable(e.to_string()),
        ManualSpanError::InvalidParent { .. } | ManualSpanError::InvalidSpanId { .. } => {
            PluginError::bad_request(e.to_string())
        }
    }
}

/// JSON attributes as span attributes (strings, booleans, integers and
/// floats as themselves; anything else as its JSON text).
fn attributes(map: BTreeMap<String, Value>) -> Vec<(String, AttrValue)> {
    map.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => AttrValue::String(s),
                Value::Bool(b) => AttrValue::Bool(b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => AttrValue::I64(i),
                    None => AttrValue::F64(n.as_f64().unwrap_or(0.0)),
                },
                other => AttrValue::String(other.to_string()),
            };
            (k, v)
        })
        .collect()
}

fn status_of(o: &Observation) -> SpanStatus {
    match o.status() {
        CallStatus::Ok => SpanStatus::Ok,
        other if o.message.is_empty() => SpanStatus::error(other.as_str()),
        _ => SpanStatus::error(o.message.as_str()),
    }
}

/// The span an observation describes (see `docs/tracing.md` for names and
/// attributes). The observation ends at `at_unix_ns` and lasted `duration_ns`.
pub fn span_of(o: &Observation, ctx: &TraceContext, parent: Option<[u8; 8]>) -> SpanRecord {
    let end = o.at_unix_ns;
    let start = end.saturating_sub(o.duration_ns);
    let name = o.name.as_str();
    let caller = o.caller.as_str();
    let mut span = SpanRecord::new(ctx.trace_id, ctx.span_id, parent, "", start, end);
    span.status = status_of(o);
    match o.kind() {
        Some(ObservationKind::HttpRequest) => {
            // detail = "METHOD STATUS"
            let (method, code) = o.detail.as_str().split_once(' ').unwrap_or(("", ""));
            span.name = format!("{method} {name}").into();
            span.kind = SpanKind::Server;
            span.plugin = "host".into();
            span.attributes = vec![
                ("http.request.method".into(), method.into()),
                ("http.route".into(), name.into()),
                (
                    "http.response.status_code".into(),
                    AttrValue::I64(code.parse().unwrap_or(0)),
                ),
            ];
            if o.status == CallStatus::Error {
                span.status = SpanStatus::error(format!("HTTP {code}"));
            }
        }
        Some(ObservationKind::ServiceCall) => {
            span.name = name.into();
            span.kind = SpanKind::Server;
            span.plugin = if o.detail.is_empty() {
                "host".into()
            } else {
                o.detail.as_str().into()
            };
            span.service_name = Some(name.to_owned());
            span.attributes = vec![
                ("homeconsole.caller".into(), caller.into()),
                ("homeconsole.status".into(), o.status().as_str().into()),
            ];
        }
        Some(ObservationKind::EventPublished) => {
            span.name = format!("publish {name}").into();
            span.kind = SpanKind::Producer;
            span.plugin = caller.into();
            span.attributes = vec![
                ("messaging.system".into(), "homeconsole".into()),
                ("messaging.operation.type".into(), "publish".into()),
                ("messaging.destination.name".into(), name.into()),
            ];
        }
        Some(ObservationKind::EventDelivered) => {
            span.name = format!("process {name}").into();
            span.kind = SpanKind::Consumer;
            span.plugin = caller.into();
            span.attributes = vec![
                ("messaging.system".into(), "homeconsole".into()),
                ("messaging.operation.type".into(), "process".into()),
                ("messaging.destination.name".into(), name.into()),
            ];
        }
        Some(ObservationKind::StorageOperation) => {
            span.name = format!("storage.{name}").into();
            span.kind = SpanKind::Client;
            span.plugin = caller.into();
            span.attributes = vec![
                ("db.system.name".into(), "homeconsole".into()),
                ("db.operation.name".into(), name.into()),
                ("db.namespace".into(), o.namespace.as_str().into()),
            ];
        }
        _ => {
            // A timed plugin life-cycle step (PluginState with a trace context).
            let step = o.detail.as_str();
            span.name = if step == "startup" {
                "host.startup".into()
            } else {
                format!("plugin.{step} {name}").into()
            };
            span.plugin = if step == "startup" {
                "host".into()
            } else {
                name.into()
            };
            span.attributes = vec![("homeconsole.lifecycle.step".into(), step.into())];
        }
    }
    span
}

impl Capability for TracingCapability {
    fn name(&self) -> &'static str {
        "tracing"
    }

    fn services(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            (
                START_SPAN,
                "open a span: {operation, attributes?, parent? (traceparent or span id)} → {span_id, trace_id, traceparent}",
            ),
            (
                END_SPAN,
                "end a span: {span_id, status? (ok|error|unset), message?, attributes?}",
            ),
        ]
    }

    fn routes(&self) -> Vec<Route> {
        vec![
            Route::new("GET", TRACES_PATH),
            Route::new("GET", TRACE_PATH),
        ]
    }

    fn stop(&self) {
        self.handoff.drain();
        if let Some(exporter) = &self.sink.exporter {
            exporter.shutdown();
        }
        self.sync_counters();
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Option<Result<Value, PluginError>> {
        match call.name {
            START_SPAN => Some(self.start_span(call)),
            END_SPAN => Some(self.end_span(call)),
            _ => None,
        }
    }

    fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
        match request.route.as_str() {
            TRACES_PATH => {
                self.handoff.drain();
                Some(self.list(request))
            }
            TRACE_PATH => {
                self.handoff.drain();
                Some(self.get(request))
            }
            _ => None,
        }
    }

    /// One trace per health round: a `health.round` root and a
    /// `health.check <component>` child per check, with the check's real
    /// duration and an error status for unhealthy results.
    fn on_health_round(&self, snapshot: &crate::health::checker::Snapshot) {
        // A health round starts a trace of its own: it follows the host's
        // root sampling ratio, like every other new trace.
        let trace_id = crate::tracing::context::new_trace_id();
        let ratio = self.ctx.host.host_info().trace_sample_ratio();
        if !crate::tracing::context::Sampler::new(ratio).sample_trace_id(&trace_id) {
            self.counters.sampled_out.inc();
            return;
        }
        let end_ns = snapshot.checked_at_ms.saturating_mul(1_000_000);
        let round_ns = (snapshot.duration_ms * 1e6) as u64;
        let start_ns = end_ns.saturating_sub(round_ns);
        let root_id = crate::tracing::context::new_span_id();
        let mut root = SpanRecord::new(
            trace_id,
            root_id,
            None,
            "health.round",
            start_ns,
            end_ns.max(start_ns),
        );
        root.plugin = "monitoring".into();
        root.status = if snapshot.status == crate::health::checker::Status::Unhealthy {
            SpanStatus::error("host unhealthy")
        } else {
            SpanStatus::Ok
        };
        root.attributes
            .push(("health.status".into(), snapshot.status.as_str().into()));
        self.sink.submit(root);
        for (component, result) in snapshot.components() {
            let check_end = result.checked_at_ms.saturating_mul(1_000_000).max(start_ns);
            let check_start = check_end
                .saturating_sub((result.duration_ms * 1e6) as u64)
                .max(start_ns);
            let mut span = SpanRecord::new(
                trace_id,
                crate::tracing::context::new_span_id(),
                Some(root_id),
                format!("health.check {component}"),
                check_start,
                check_end,
            );
            span.plugin = "monitoring".into();
            span.attributes
                .push(("health.component".into(), component.as_str().into()));
            span.attributes
                .push(("health.status".into(), result.status.as_str().into()));
            span.status = match result.status {
                crate::health::checker::Status::Unhealthy => {
                    SpanStatus::error(result.message.clone())
                }
                _ => SpanStatus::Ok,
            };
            self.sink.submit(span);
        }
    }

    fn on_observations(&self, batch: &[Observation]) {
        if !self.config.enabled {
            return;
        }
        let mut n = 0;
        for o in batch {
            n += u64::from(self.record(o));
        }
        self.observed.fetch_add(n, Ordering::Relaxed);
    }

    fn tick(&self, now_unix_ms: u64) {
        self.handoff.drain();
        self.manual
            .close_expired(now_unix_ms.saturating_mul(1_000_000));
        self.sync_counters();
    }

    fn status(&self) -> Value {
        let exporter = self.sink.exporter.as_ref().map(|e| {
            json!({
                "endpoint": self.config.otlp_endpoint,
                "stats": e.stats(),
                "last_error": e.last_error(),
            })
        });
        json!({
            "enabled": self.config.enabled,
            "sample_ratio": self.config.sample_ratio,
            "spans_recorded": self.observed.load(Ordering::Relaxed),
            "store": self.sink.store.stats(),
            "manual_spans": self.manual.stats(),
            "export": exporter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracing::context::parse_span_id;
    use abi_stable::std_types::{ROption, RString};

    fn obs(kind: ObservationKind, name: &str, tp: &str, parent: &str) -> Observation {
        let mut o = Observation::empty(kind);
        o.name = RString::from(name);
        o.caller = RString::from("demo");
        o.at_unix_ns = 2_000;
        o.duration_ns = 500;
        o.trace_context = ROption::RSome(TraceContext::parse(tp).unwrap());
        o.parent_span_id = parse_span_id(parent).ok().into();
        o
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn service_call_becomes_a_server_span_with_its_parent() {
        let mut o = obs(
            ObservationKind::ServiceCall,
            "demo.x",
            TP,
            "1111111111111111",
        );
        o.detail = RString::from("demo-devices");
        o.status = plugin_abi::CallStatus_NE::new(CallStatus::Error);
        o.message = RString::from("boom");
        let ctx = TraceContext::parse(TP).unwrap();
        let s = span_of(&o, &ctx, parse_span_id("1111111111111111").ok());
        assert_eq!(&*s.name, "demo.x");
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(&*s.plugin, "demo-devices");
        assert_eq!(s.service_name.as_deref(), Some("demo.x"));
        assert_eq!((s.start_unix_ns, s.end_unix_ns), (1_500, 2_000));
        assert_eq!(s.status, SpanStatus::error("boom"));
        assert_eq!(to_hex(&s.parent_span_id.unwrap()), "1111111111111111");
    }

    #[test]
    fn kinds_and_names() {
        let ctx = TraceContext::parse(TP).unwrap();
        let mut http = obs(ObservationKind::HttpRequest, "/api/v1/x", TP, "");
        http.detail = RString::from("POST 503");
        http.status = plugin_abi::CallStatus_NE::new(CallStatus::Error);
        let s = span_of(&http, &ctx, None);
        assert_eq!((&*s.name, s.kind), ("POST /api/v1/x", SpanKind::Server));
        assert_eq!(s.status, SpanStatus::error("HTTP 503"));
        let s = span_of(
            &obs(ObservationKind::EventPublished, "a.b", TP, ""),
            &ctx,
            None,
        );
        assert_eq!((&*s.name, s.kind), ("publish a.b", SpanKind::Producer));
        let s = span_of(
            &obs(ObservationKind::EventDelivered, "a.b", TP, ""),
            &ctx,
            None,
        );
        assert_eq!((&*s.name, s.kind), ("process a.b", SpanKind::Consumer));
        let s = span_of(
            &obs(ObservationKind::StorageOperation, "get", TP, ""),
            &ctx,
            None,
        );
        assert_eq!((&*s.name, s.kind), ("storage.get", SpanKind::Client));
        let mut st = obs(ObservationKind::PluginState, "host", TP, "");
        st.detail = RString::from("startup");
        assert_eq!(&*span_of(&st, &ctx, None).name, "host.startup");
        st.name = RString::from("demo");
        st.detail = RString::from("load");
        assert_eq!(&*span_of(&st, &ctx, None).name, "plugin.load demo");
    }

    #[test]
    fn json_attributes_keep_their_types() {
        let map: BTreeMap<String, Value> =
            serde_json::from_value(json!({"s": "x", "b": true, "i": 3, "f": 1.5, "o": {"k": 1}}))
                .unwrap();
        let attrs = attributes(map);
        assert!(attrs.contains(&("i".into(), AttrValue::I64(3))));
        assert!(attrs.contains(&("f".into(), AttrValue::F64(1.5))));
        assert!(attrs.contains(&("b".into(), AttrValue::Bool(true))));
        assert!(attrs.contains(&("o".into(), AttrValue::String("{\"k\":1}".into()))));
    }
}
