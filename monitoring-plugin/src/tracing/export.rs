//! OTLP/HTTP (protobuf) export of finished spans to any collector (Jaeger, Tempo, an
//! OpenTelemetry Collector), for when an endpoint is configured.
//!
//! The plugin has no async runtime and its callers are the host's hot paths, so [`export`]
//! only pushes into a bounded lock-free queue (full → the span is dropped and counted) and one
//! std thread batches, encodes and POSTs. The caller never wakes that thread per span (a
//! wake-up costs microseconds here): the thread wakes when a batch is full or the flush
//! interval passes. That thread retries 429/502/503/504 and transport errors
//! with exponential backoff (honouring `Retry-After`), gives up after a bounded number of
//! attempts, and stops within a bounded time on [`OtlpExporter::shutdown`].
//!
//! Encoding uses the official `opentelemetry-proto` prost types and a blocking `ureq` client
//! directly, rather than `opentelemetry-otlp`'s `SpanExporter`: we keep our own trace, span and
//! parent ids without going through the SDK's `SpanData`, and we see every HTTP status and
//! header, which the retry rule needs.
//!
//! [`export`]: OtlpExporter::export

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind as ProtoKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use parking_lot::{Condvar, Mutex};
use prost::Message;

use super::context::Sampler;
use super::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};

/// Name of the instrumentation scope on exported spans.
pub const SCOPE_NAME: &str = "homeconsole.monitoring";
pub use crate::outbound::retry::{parse_retry_after, MAX_RETRY_AFTER};
/// Largest response body read from the collector.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Settings of the [`OtlpExporter`]. Its `Debug` output hides header values (they often hold
/// API keys).
#[derive(Clone, PartialEq)]
pub struct ExportConfig {
    /// Full URL of the traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces` or
    /// `https://…` (verified with `tls`).
    pub endpoint: String,
    /// Trust roots and client certificate of `https://` endpoints.
    pub tls: crate::outbound::TlsSettings,
    /// Where new export errors are logged (besides [`OtlpExporter::last_error`]).
    pub errors: crate::outbound::LastError,
    /// Extra request headers (e.g. an API key).
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Further resource attributes (a `service.name` here is overridden by `service_name`).
    pub resource_attributes: BTreeMap<String, String>,
    /// Fraction of root traces exported (parent-based, deterministic by trace id).
    pub sample_ratio: f64,
    /// Most spans per request (at most `max_queue`).
    pub max_batch_size: usize,
    /// Most spans waiting in the queue; beyond it spans are dropped.
    pub max_queue: usize,
    /// Longest time a span waits before its (partial) batch is sent.
    pub flush_interval: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Most attempts per batch (first try included).
    pub max_attempts: u32,
    /// First retry delay; doubled per retry (with jitter), capped by `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest retry delay (when no `Retry-After` says otherwise).
    pub max_backoff: Duration,
    /// Longest time `shutdown` spends flushing.
    pub shutdown_timeout: Duration,
}

impl std::fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.keys().map(String::as_str).collect();
        f.debug_struct("ExportConfig")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field("headers (values hidden)", &headers)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("sample_ratio", &self.sample_ratio)
            .field("max_batch_size", &self.max_batch_size)
            .field("max_queue", &self.max_queue)
            .field("flush_interval", &self.flush_interval)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

impl ExportConfig {
    /// Defaults for the given endpoint and service name.
    pub fn new(endpoint: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: crate::outbound::TlsSettings::default(),
            errors: crate::outbound::LastError::default(),
            headers: BTreeMap::new(),
            service_name: service_name.into(),
            resource_attributes: BTreeMap::new(),
            sample_ratio: 1.0,
            max_batch_size: 512,
            max_queue: 2048,
            flush_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// Why an exporter could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The endpoint is not a usable `http://` URL.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configured header name or value is not valid HTTP.
    #[error("invalid OTLP header {0:?}")]
    InvalidHeader(String),
    /// The export thread could not be started.
    #[error("cannot start the OTLP export thread: {0}")]
    Spawn(String),
    /// The TLS settings cannot be used.
    #[error("OTLP exporter: {0}")]
    Tls(#[from] crate::outbound::TlsError),
}

/// What happened to a span handed to [`OtlpExporter::export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportOutcome {
    /// Queued for export.
    Queued,
    /// Not sampled; not exported.
    SampledOut,
    /// The queue was full; dropped and counted.
    QueueFull,
    /// The exporter is shut down; dropped and counted.
    ShutDown,
}

/// Exporter counters (spans unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ExporterStats {
    /// Accepted into the queue.
    pub queued: u64,
    /// Accepted by the collector.
    pub exported: u64,
    /// Dropped because the queue was full or the exporter shut down.
    pub dropped: u64,
    /// Given up on: attempts exhausted, a non-retryable status, or shutdown deadline passed.
    pub failed: u64,
    /// Reported rejected by the collector in a partial-success response.
    pub rejected: u64,
    /// Not sampled.
    pub sampled_out: u64,
    /// Retried requests (not spans).
    pub retries: u64,
    /// Successful requests (not spans).
    pub requests_ok: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    sampled_out: AtomicU64,
    retries: AtomicU64,
    requests_ok: AtomicU64,
}

struct Shared {
    queue: ArrayQueue<SpanRecord>,
    /// Queue length at which producers wake the worker.
    max_batch: usize,
    counters: Counters,
    /// Set once by `shutdown`: the worker must be done by then.
    deadline: OnceLock<Instant>,
    sleep_lock: Mutex<()>,
    /// Signalled by producers when a batch is ready, and by `shutdown`.
    wake: Condvar,
    /// Signalled by `shutdown` only: interrupts a retry back-off.
    stop: Condvar,
    last_error: crate::outbound::LastError,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.deadline.get().is_some()
    }
}

/// Batches spans on a background thread and POSTs them as OTLP/HTTP protobuf.
pub struct OtlpExporter {
    sampler: Sampler,
    shared: Arc<Shared>,
    shutdown_timeout: Duration,
    worker: Mutex<Option<(JoinHandle<()>, mpsc::Receiver<()>)>>,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("stats", &self.stats())
            .finish()
    }
}

impl OtlpExporter {
    /// Validates the config and starts the export thread.
    pub fn new(config: ExportConfig) -> Result<Self, ExportError> {
        let bad = |reason: &str| ExportError::InvalidEndpoint {
            endpoint: config.endpoint.clone(),
            reason: reason.to_string(),
        };
        let uri: ureq::http::Uri = config
            .endpoint
            .parse()
            .map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("the scheme must be http:// or https://")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        let mut headers = Vec::with_capacity(config.headers.len());
        for (k, v) in &config.headers {
            let name = ureq::http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ExportError::InvalidHeader(k.clone()))?;
            let value = ureq::http::HeaderValue::from_str(v)
                .map_err(|_| ExportError::InvalidHeader(k.clone()))?;
            headers.push((name, value));
        }

        let max_queue = config.max_queue.max(1);
        // A batch larger than the queue could never fill from it.
        let max_batch = config.max_batch_size.clamp(1, max_queue);
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(max_queue),
            max_batch,
            counters: Counters::default(),
            deadline: OnceLock::new(),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: Condvar::new(),
            last_error: config.errors.clone(),
        });
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let agent = crate::outbound::agent(cap(config.timeout), &config.tls)?;
        let worker = Worker {
            agent,
            endpoint: uri,
            headers,
            resource: resource(&config),
            max_batch,
            flush_interval: cap(config.flush_interval),
            timeout: cap(config.timeout),
            max_attempts: config.max_attempts.max(1),
            initial_backoff: cap(config.initial_backoff),
            max_backoff: cap(config.max_backoff.max(config.initial_backoff)),
            shared: shared.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("otlp-trace-export".into())
            .spawn(move || {
                let _done = done_tx; // dropped when the worker returns (or unwinds)
                worker.run();
            })
            .map_err(|e| ExportError::Spawn(e.to_string()))?;
        Ok(Self {
            sampler: Sampler::new(config.sample_ratio),
            shared,
            shutdown_timeout: cap(config.shutdown_timeout),
            worker: Mutex::new(Some((handle, done_rx))),
        })
    }

    /// Queues a finished span for export, never blocking. The span is kept when the sampler
    /// samples its trace id (the root rule: every span of a trace agrees).
    #[inline]
    pub fn export(&self, span: SpanRecord) -> ExportOutcome {
        self.export_with_parent(span, None)
    }

    /// Like [`export`](Self::export), but follows `parent_sampled` (the sampled flag of the
    /// span's parent context, e.g. from an incoming `traceparent`) when known.
    pub fn export_with_parent(
        &self,
        span: SpanRecord,
        parent_sampled: Option<bool>,
    ) -> ExportOutcome {
        let c = &self.shared.counters;
        if !self.sampler.should_sample(&span.trace_id, parent_sampled) {
            c.sampled_out.fetch_add(1, Ordering::Relaxed);
            return ExportOutcome::SampledOut;
        }
        if self.shared.stopping() {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return ExportOutcome::ShutDown;
        }
        let q = &self.shared.queue;
        match q.push(span) {
            Ok(()) => {
                c.queued.fetch_add(1, Ordering::Relaxed);
                if q.len() >= self.shared.max_batch {
                    // Cheap when nobody waits (the worker is busy sending).
                    self.shared.wake.notify_one();
                }
                ExportOutcome::Queued
            }
            Err(_span) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                ExportOutcome::QueueFull
            }
        }
    }

    /// The sampler applied by [`export`](Self::export).
    pub fn sampler(&self) -> Sampler {
        self.sampler
    }

    /// Counters.
    pub fn stats(&self) -> ExporterStats {
        let c = &self.shared.counters;
        ExporterStats {
            queued: c.queued.load(Ordering::Relaxed),
            exported: c.exported.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            sampled_out: c.sampled_out.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            requests_ok: c.requests_ok.load(Ordering::Relaxed),
        }
    }

    /// The last export error (status or transport), if any, for diagnostics.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.get()
    }

    /// Stops accepting spans, sends what is queued within the shutdown timeout (spans that
    /// cannot be sent by then count as failed) and joins the thread. Returns whether the thread
    /// was joined; it is not joined only if a request begun before the shutdown outlives the
    /// deadline, and then ends by itself within the request timeout. Idempotent.
    pub fn shutdown(&self) -> bool {
        let Some((handle, done)) = self.worker.lock().take() else {
            return true;
        };
        let deadline = Instant::now() + self.shutdown_timeout;
        {
            let _guard = self.shared.sleep_lock.lock();
            let _ = self.shared.deadline.set(deadline);
        }
        self.shared.wake.notify_all();
        self.shared.stop.notify_all();
        let grace = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(200);
        let joined = match done.recv_timeout(grace) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
        };
        if joined {
            // Spans pushed by a caller that raced with the shutdown flag were never sent.
            let mut lost = 0;
            while self.shared.queue.pop().is_some() {
                lost += 1;
            }
            self.shared
                .counters
                .failed
                .fetch_add(lost, Ordering::Relaxed);
        }
        joined
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    agent: ureq::Agent,
    endpoint: ureq::http::Uri,
    headers: Vec<(ureq::http::HeaderName, ureq::http::HeaderValue)>,
    resource: Resource,
    max_batch: usize,
    flush_interval: Duration,
    timeout: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    shared: Arc<Shared>,
}

enum Attempt {
    Done { rejected: u64 },
    Retry { after: Option<Duration> },
    GiveUp,
}

impl Worker {
    fn run(self) {
        let queue = &self.shared.queue;
        let mut batch: Vec<SpanRecord> = Vec::with_capacity(self.max_batch.min(4096));
        let mut next_flush = Instant::now() + self.flush_interval;
        loop {
            let stopping = self.shared.stopping();
            while batch.len() < self.max_batch {
                match queue.pop() {
                    Some(s) => batch.push(s),
                    None => break,
                }
            }
            let now = Instant::now();
            let due = now >= next_flush;
            if !batch.is_empty() && (batch.len() >= self.max_batch || due || stopping) {
                self.send(&mut batch);
                if due {
                    next_flush = Instant::now() + self.flush_interval;
                }
                continue;
            }
            if stopping {
                return; // queue drained, batch empty
            }
            if due {
                next_flush = now + self.flush_interval;
                continue;
            }
            let mut guard = self.shared.sleep_lock.lock();
            if !self.shared.stopping() && queue.len() < self.max_batch {
                self.shared.wake.wait_until(&mut guard, next_flush);
            }
        }
    }

    /// Sends one batch (emptying it), retrying per the rules; updates the counters.
    fn send(&self, batch: &mut Vec<SpanRecord>) {
        let n = batch.len() as u64;
        let body = encode_request(&self.resource, batch.drain(..)).encode_to_vec();
        let c = &self.shared.counters;
        let mut backoff = crate::outbound::Backoff::new(self.initial_backoff, self.max_backoff);
        for attempt in 1..=self.max_attempts {
            let timeout = match self.shared.deadline.get() {
                Some(dl) => self
                    .timeout
                    .min(dl.saturating_duration_since(Instant::now())),
                None => self.timeout,
            };
            if timeout.is_zero() {
                break;
            }
            match self.post(&body, timeout) {
                Attempt::Done { rejected } => {
                    let rejected = rejected.min(n);
                    c.exported.fetch_add(n - rejected, Ordering::Relaxed);
                    c.rejected.fetch_add(rejected, Ordering::Relaxed);
                    c.requests_ok.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Attempt::GiveUp => break,
                Attempt::Retry { after } => {
                    if attempt == self.max_attempts {
                        break;
                    }
                    if !self.sleep(backoff.next_delay(after)) {
                        break;
                    }
                    c.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        c.failed.fetch_add(n, Ordering::Relaxed);
    }

    /// Sleeps `wait`, or returns false at once when that would pass the shutdown deadline.
    fn sleep(&self, wait: Duration) -> bool {
        let wake_at = Instant::now() + wait;
        let mut guard = self.shared.sleep_lock.lock();
        loop {
            if self.shared.deadline.get().is_some_and(|dl| wake_at > *dl) {
                return false;
            }
            if Instant::now() >= wake_at {
                return true;
            }
            self.shared.stop.wait_until(&mut guard, wake_at);
        }
    }

    fn post(&self, body: &[u8], timeout: Duration) -> Attempt {
        let mut req = self
            .agent
            .post(&self.endpoint)
            .header("content-type", "application/x-protobuf");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let result = req
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body);
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = crate::outbound::retry::retry_after_of(&resp);
                let bytes = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_RESPONSE_BYTES)
                    .read_to_vec()
                    .unwrap_or_default();
                match status {
                    200..=299 => {
                        let rejected = ExportTraceServiceResponse::decode(bytes.as_slice())
                            .ok()
                            .and_then(|r| r.partial_success)
                            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
                        if rejected > 0 {
                            self.note_error(format!("collector rejected {rejected} spans"));
                        }
                        Attempt::Done { rejected }
                    }
                    429 | 502 | 503 | 504 => {
                        self.note_error(format!("HTTP {status} (will retry)"));
                        Attempt::Retry { after: retry_after }
                    }
                    _ => {
                        self.note_error(format!("HTTP {status} (not retryable)"));
                        Attempt::GiveUp
                    }
                }
            }
            Err(e) => {
                let retry = matches!(
                    e,
                    ureq::Error::Io(_)
                        | ureq::Error::Timeout(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::HostNotFound
                        | ureq::Error::Protocol(_)
                );
                self.note_error(format!(
                    "transport error: {}",
                    crate::outbound::errors::describe(&e)
                ));
                if retry {
                    Attempt::Retry { after: None }
                } else {
                    Attempt::GiveUp
                }
            }
        }
    }

    fn note_error(&self, msg: String) {
        self.shared
            .last_error
            .note(format!("OTLP export to {}: {msg}", self.endpoint));
    }
}

/// Longest duration taken from the config, so `Instant` arithmetic cannot overflow.
const MAX_CONFIG_DURATION: Duration = Duration::from_secs(24 * 3600);

fn cap(d: Duration) -> Duration {
    d.min(MAX_CONFIG_DURATION)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource(config: &ExportConfig) -> Resource {
    let mut attributes = vec![kv(
        "service.name",
        any_value::Value::StringValue(config.service_name.clone()),
    )];
    for (k, v) in &config.resource_attributes {
        if k != "service.name" {
            attributes.push(kv(k, any_value::Value::StringValue(v.clone())));
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn attr_value(v: AttrValue) -> any_value::Value {
    match v {
        AttrValue::String(s) => any_value::Value::StringValue(s),
        AttrValue::Bool(b) => any_value::Value::BoolValue(b),
        AttrValue::I64(i) => any_value::Value::IntValue(i),
        AttrValue::F64(f) => any_value::Value::DoubleValue(f),
    }
}

/// Converts one record to an OTLP span. The owning plugin, the service and the time-out flag
/// become the attributes `homeconsole.plugin`, `homeconsole.service` and
/// `homeconsole.timed_out`.
pub fn to_otlp_span(s: SpanRecord) -> Span {
    let mut attributes: Vec<KeyValue> = Vec::with_capacity(s.attributes.len() + 3);
    attributes.extend(s.attributes.into_iter().map(|(k, v)| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(attr_value(v)),
        }),
        ..Default::default()
    }));
    if !s.plugin.is_empty() {
        attributes.push(kv(
            "homeconsole.plugin",
            any_value::Value::StringValue(s.plugin.to_string()),
        ));
    }
    if let Some(svc) = s.service_name {
        attributes.push(kv(
            "homeconsole.service",
            any_value::Value::StringValue(svc),
        ));
    }
    if s.timed_out {
        attributes.push(kv(
            "homeconsole.timed_out",
            any_value::Value::BoolValue(true),
        ));
    }
    let kind = match s.kind {
        SpanKind::Internal => ProtoKind::Internal,
        SpanKind::Server => ProtoKind::Server,
        SpanKind::Client => ProtoKind::Client,
        SpanKind::Producer => ProtoKind::Producer,
        SpanKind::Consumer => ProtoKind::Consumer,
    };
    let status = match s.status {
        SpanStatus::Unset => None,
        SpanStatus::Ok => Some(Status {
            code: StatusCode::Ok as i32,
            message: String::new(),
        }),
        SpanStatus::Error { message } => Some(Status {
            code: StatusCode::Error as i32,
            message,
        }),
    };
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 1, // sampled
        name: s.name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: s.start_unix_ns,
        end_time_unix_nano: s.end_unix_ns.max(s.start_unix_ns),
        attributes,
        status,
        ..Default::default()
    }
}

/// Builds the request for a batch: one resource, one scope, the spans.
pub fn encode_request(
    resource: &Resource,
    spans: impl IntoIterator<Item = SpanRecord>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_string(),
                    ..Default::default()
                }),
                spans: spans.into_iter().map(to_otlp_span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_configs() {
        let e = |url: &str| OtlpExporter::new(ExportConfig::new(url, "s")).unwrap_err();
        let https = OtlpExporter::new(ExportConfig::new("https://x:4318/v1/traces", "s"));
        assert!(https.is_ok(), "https endpoints are accepted: {https:?}");
        let mut bad_ca = ExportConfig::new("https://x:4318/v1/traces", "s");
        bad_ca.tls.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(
            OtlpExporter::new(bad_ca).unwrap_err(),
            ExportError::Tls(_)
        ));
        assert!(matches!(
            e("ftp://x/v1/traces"),
            ExportError::InvalidEndpoint { .. }
        ));
        assert!(matches!(
            e("not a url"),
            ExportError::InvalidEndpoint { .. }
        ));
        let mut c = ExportConfig::new("http://127.0.0.1:1/v1/traces", "s");
        c.headers.insert("x-api-key".into(), "hunter2".into());
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "secrets stay out of logs"
        );
        c.headers.insert("bad header".into(), "v".into());
        assert_eq!(
            OtlpExporter::new(c).unwrap_err(),
            ExportError::InvalidHeader("bad header".into())
        );
    }

    #[test]
    fn extreme_sizes_do_not_panic() {
        let mut c = ExportConfig::new("http://127.0.0.1:1/v1/traces", "s");
        c.max_batch_size = usize::MAX;
        c.max_queue = 0;
        c.flush_interval = Duration::MAX;
        c.initial_backoff = Duration::MAX;
        c.timeout = Duration::MAX;
        c.shutdown_timeout = Duration::from_millis(100);
        let exp = OtlpExporter::new(c).unwrap();
        let s = SpanRecord::new([7; 16], [1; 8], None, "x", 0, 1);
        assert_eq!(exp.export(s), ExportOutcome::Queued);
        assert!(exp.shutdown());
        let st = exp.stats();
        assert_eq!(st.queued, st.failed + st.exported);
    }

    #[test]
    fn sampling_is_applied_before_queueing() {
        let mut c = ExportConfig::new("http://127.0.0.1:1/v1/traces", "s");
        c.sample_ratio = 0.0;
        let exp = OtlpExporter::new(c).unwrap();
        let s = SpanRecord::new([7; 16], [1; 8], None, "x", 0, 1);
        assert_eq!(exp.export(s.clone()), ExportOutcome::SampledOut);
        assert_eq!(exp.export_with_parent(s, Some(true)), ExportOutcome::Queued);
        let st = exp.stats();
        assert_eq!((st.sampled_out, st.queued), (1, 1));
        drop(exp);
    }

    #[test]
    fn encodes_ids_kinds_status_and_attributes() {
        let mut s = SpanRecord::new([1; 16], [2; 8], Some([3; 8]), "call", 10, 20);
        s.kind = SpanKind::Client;
        s.status = SpanStatus::error("boom");
        s.plugin = "lights".into();
        s.attributes.push(("n".into(), AttrValue::F64(1.5)));
        let p = to_otlp_span(s);
        assert_eq!(p.trace_id, vec![1; 16]);
        assert_eq!(p.parent_span_id, vec![3; 8]);
        assert_eq!(p.kind, ProtoKind::Client as i32);
        assert_eq!(
            p.status.as_ref().map(|s| (s.code, s.message.as_str())),
            Some((2, "boom"))
        );
        assert_eq!(p.attributes.len(), 2);
        assert_eq!(p.attributes[1].key, "homeconsole.plugin");
        let root = to_otlp_span(SpanRecord::new([1; 16], [2; 8], None, "r", 1, 2));
        assert!(root.parent_span_id.is_empty());
        assert!(root.status.is_none());
    }
}
