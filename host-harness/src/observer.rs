//! The observer stream: reports of every service call, storage operation,
//! published event, plugin state change and error, for plugins that ask
//! (the monitoring plugin).
//!
//! Reporting costs the caller one lock-free queue push per observer and
//! never blocks: each observer has a bounded queue, and a full queue drops
//! the report and counts it. A drain thread per observer wakes on a fixed
//! interval and hands the batch over in one call (waking a thread per
//! report would cost 10–27 µs; see docs/ARCHITECTURE.md, section "Costs").

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use abi_stable::std_types::RString;
use crossbeam_queue::ArrayQueue;
use parking_lot::{Mutex, RwLock};
use plugin_abi::{
    CallStatus, CallStatus_NE, Observation, ObservationKind, ObservationKind_NE, PanicLocation,
};

use crate::tracecontext::SpanContext;

/// A name in a report: interned (`&'static`, free to copy — the hot path
/// touches no reference count) or shared (for unbounded sets such as topics).
#[derive(Debug, Clone)]
pub enum Name {
    /// Interned for the life of the process.
    Static(&'static str),
    /// Reference counted.
    Shared(Arc<str>),
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

impl From<Arc<str>> for Name {
    fn from(s: Arc<str>) -> Self {
        Name::Shared(s)
    }
}

impl From<&'static str> for Name {
    fn from(s: &'static str) -> Self {
        Name::Static(s)
    }
}

/// Most distinct names [`intern`] keeps; beyond it names are shared
/// instead (a flood of names cannot grow the interner without bound).
pub const MAX_INTERNED: usize = 65_536;

static INTERNED: std::sync::LazyLock<RwLock<std::collections::HashSet<&'static str>>> =
    std::sync::LazyLock::new(|| RwLock::new(std::collections::HashSet::new()));

/// Interns a bounded name (service or plugin name): each distinct name is
/// leaked once and then shared for the life of the process.
pub fn intern(s: &str) -> Name {
    if let Some(found) = INTERNED.read().get(s) {
        return Name::Static(found);
    }
    let mut set = INTERNED.write();
    if let Some(found) = set.get(s) {
        return Name::Static(found);
    }
    if set.len() >= MAX_INTERNED {
        return Name::Shared(Arc::from(s));
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    Name::Static(leaked)
}

/// A report as the host builds it on the hot path (interned names, no
/// allocation for a service call);
/// converted to the FFI [`Observation`] on the drain thread.
#[derive(Debug, Clone)]
pub struct Report {
    /// What is reported.
    pub kind: ObservationKind,
    /// Outcome.
    pub status: CallStatus,
    /// Service, operation, topic or plugin.
    pub name: Name,
    /// Caller or affected plugin.
    pub caller: Name,
    /// Storage namespace.
    pub namespace: Option<Arc<str>>,
    /// Extra detail (for a service call: the plugin serving it).
    pub detail: Option<Name>,
    /// Error message.
    pub message: Option<String>,
    /// Duration in nanoseconds.
    pub duration_ns: u64,
    /// Unix epoch nanoseconds.
    pub at_unix_ns: u64,
    /// The operation's own span.
    pub trace_context: Option<SpanContext>,
    /// Parent span id, if any.
    pub parent_span_id: Option<[u8; 8]>,
    /// Where a plugin panicked (error reports only; boxed so that every
    /// other report stays small).
    pub panic: Option<Box<PanicLocation>>,
}

impl Report {
    /// Bytes of the report's message, the part of its size a caller chooses.
    #[inline]
    pub fn message_bytes(&self) -> usize {
        self.message.as_ref().map_or(0, String::len)
    }

    /// Sets the span and its parent (builder style).
    #[inline]
    pub fn with_span(mut self, span: Option<SpanContext>, parent: Option<&SpanContext>) -> Self {
        self.trace_context = span;
        self.parent_span_id = parent.map(|p| p.span_id);
        self
    }
}

impl Report {
    /// A report with the common fields set.
    pub fn new(
        kind: ObservationKind,
        status: CallStatus,
        name: impl Into<Name>,
        caller: impl Into<Name>,
    ) -> Self {
        Report {
            kind,
            status,
            name: name.into(),
            caller: caller.into(),
            namespace: None,
            detail: None,
            message: None,
            duration_ns: 0,
            at_unix_ns: crate::time::now_unix_ns(),
            trace_context: None,
            parent_span_id: None,
            panic: None,
        }
    }

    fn to_ffi(&self) -> Observation {
        let s = |v: &Option<String>| v.as_deref().map(RString::from).unwrap_or_default();
        Observation {
            kind: ObservationKind_NE::new(self.kind),
            status: CallStatus_NE::new(self.status),
            name: RString::from(&*self.name),
            caller: RString::from(&*self.caller),
            namespace: self
                .namespace
                .as_deref()
                .map(RString::from)
                .unwrap_or_default(),
            detail: self
                .detail
                .as_deref()
                .map(RString::from)
                .unwrap_or_default(),
            message: s(&self.message),
            duration_ns: self.duration_ns,
            at_unix_ns: self.at_unix_ns,
            trace_context: self.trace_context.into(),
            parent_span_id: self.parent_span_id.into(),
            panic: self.panic.as_deref().cloned().into(),
        }
    }
}

/// Default byte budget for the messages queued for one observer.
pub const DEFAULT_QUEUE_BYTES: usize = 8 << 20;

impl Observer {
    /// Reserves `bytes` of the budget `max`; false when it would be exceeded.
    fn reserve(&self, bytes: usize, max: usize) -> bool {
        crate::byte_budget::try_reserve(&self.queued_bytes, bytes, max)
    }
}

/// Hands a batch to an observer; runs on the observer's drain thread.
pub type SinkFn = Arc<dyn Fn(&[Observation]) + Send + Sync>;

struct Observer {
    owner: u64,
    owner_name: String,
    queue: ArrayQueue<Report>,
    /// Bytes of the messages of the queued reports (the only part of a
    /// report whose size a caller chooses).
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
    delivered: AtomicU64,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Per-observer counters, for `host_info` and tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObserverStats {
    /// Observer plugin name.
    pub plugin: String,
    /// Reports delivered.
    pub delivered: u64,
    /// Reports dropped because the queue was full.
    pub dropped: u64,
    /// Reports waiting.
    pub queued: usize,
}

/// All observers.
pub struct ObserverHub {
    capacity: usize,
    max_bytes: usize,
    flush: Duration,
    active: AtomicUsize,
    observers: RwLock<Arc<Vec<Arc<Observer>>>>,
    dropped_total: AtomicU64,
}

impl ObserverHub {
    /// A hub whose observer queues hold `capacity` reports, drained every `flush`.
    /// Messages of queued reports may hold [`DEFAULT_QUEUE_BYTES`] per observer.
    pub fn new(capacity: usize, flush: Duration) -> Self {
        ObserverHub {
            capacity,
            max_bytes: DEFAULT_QUEUE_BYTES,
            flush,
            active: AtomicUsize::new(0),
            observers: RwLock::new(Arc::new(Vec::new())),
            dropped_total: AtomicU64::new(0),
        }
    }

    /// Bounds the messages (error texts, log lines) of each observer's
    /// queued reports to `max_bytes`: a report that does not fit is dropped
    /// like one arriving at a full queue.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Whether anyone listens: callers skip building reports when not.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Queues a report for every observer. Never blocks.
    pub fn report(&self, report: Report) {
        // No clone of the observer list, and the report itself is moved to
        // the last observer: with the usual single observer the caller
        // touches no reference count at all (each atomic on a cache line
        // the drain thread also touches costs ~50–100 ns here).
        let observers = self.observers.read();
        let mut report = Some(report);
        let last = observers.len().saturating_sub(1);
        for (i, obs) in observers.iter().enumerate() {
            let r = if i == last {
                report.take()
            } else {
                report.clone()
            };
            let Some(r) = r else { break };
            let bytes = r.message_bytes();
            let fits = bytes == 0 || obs.reserve(bytes, self.max_bytes);
            let queued = fits
                && match obs.queue.push(r) {
                    Ok(()) => true,
                    Err(_) => {
                        obs.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                        false
                    }
                };
            if !queued {
                obs.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Adds an observer (idempotent per owner).
    pub fn add(&self, owner: u64, owner_name: &str, sink: SinkFn) {
        let mut list = self.observers.write();
        if list.iter().any(|o| o.owner == owner) {
            return;
        }
        let obs = Arc::new(Observer {
            owner,
            owner_name: owner_name.to_owned(),
            queue: ArrayQueue::new(self.capacity),
            queued_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let worker = obs.clone();
        let flush = self.flush;
        let handle = std::thread::Builder::new()
            .name(format!("observer-{owner_name}"))
            .spawn(move || drain_loop(&worker, flush, &sink));
        match handle {
            Ok(h) => *obs.thread.lock() = Some(h),
            Err(e) => {
                crate::logger::error(
                    "observer",
                    "cannot start observer thread",
                    serde_json::json!({"error": e.to_string()}),
                );
                return;
            }
        }
        let mut next: Vec<Arc<Observer>> = list.iter().cloned().collect();
        next.push(obs);
        *list = Arc::new(next);
        self.active.store(list.len(), Ordering::Relaxed);
    }

    /// Removes an observer. Its queued reports are delivered first; its
    /// thread is joined unless it is stuck in the sink for more than 2 s
    /// (then it is detached and exits once the sink returns).
    pub fn remove(&self, owner: u64) {
        let removed = {
            let mut list = self.observers.write();
            let (gone, keep): (Vec<_>, Vec<_>) =
                list.iter().cloned().partition(|o| o.owner == owner);
            *list = Arc::new(keep);
            self.active.store(list.len(), Ordering::Relaxed);
            gone
        };
        for obs in removed {
            obs.stop.store(true, Ordering::Release);
            let handle = obs.thread.lock().take();
            if let Some(h) = handle {
                // Wait briefly; a sink stuck in a hung plugin is left behind.
                let deadline = std::time::Instant::now() + Duration::from_secs(2);
                while !h.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if h.is_finished() {
                    let _ = h.join();
                }
            }
        }
    }

    /// Reports dropped across all observers since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Counters per observer.
    pub fn stats(&self) -> Vec<ObserverStats> {
        self.observers
            .read()
            .iter()
            .map(|o| ObserverStats {
                plugin: o.owner_name.clone(),
                delivered: o.delivered.load(Ordering::Relaxed),
                dropped: o.dropped.load(Ordering::Relaxed),
                queued: o.queue.len(),
            })
            .collect()
    }
}

const MAX_BATCH: usize = 4_096;

fn drain_loop(obs: &Observer, flush: Duration, sink: &SinkFn) {
    let mut batch: Vec<Observation> = Vec::with_capacity(256);
    loop {
        let stopping = obs.stop.load(Ordering::Acquire);
        while let Some(r) = obs.queue.pop() {
            let bytes = r.message_bytes();
            if bytes > 0 {
                obs.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            }
            batch.push(r.to_ffi());
            if batch.len() == MAX_BATCH {
                deliver(obs, sink, &mut batch);
            }
        }
        deliver(obs, sink, &mut batch);
        if stopping {
            return;
        }
        std::thread::sleep(flush);
    }
}

fn deliver(obs: &Observer, sink: &SinkFn, batch: &mut Vec<Observation>) {
    if batch.is_empty() {
        return;
    }
    sink(batch);
    obs.delivered
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_report() -> Report {
        Report::new(ObservationKind::ServiceCall, CallStatus::Ok, "a", "b")
    }

    #[test]
    fn delivers_batches_and_counts_drops() {
        let hub = ObserverHub::new(4, Duration::from_millis(5));
        assert!(!hub.is_active());
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        hub.add(
            1,
            "obs",
            Arc::new(move |b: &[Observation]| {
                s.fetch_add(b.len() as u64, Ordering::Relaxed);
            }),
        );
        assert!(hub.is_active());
        for _ in 0..3 {
            hub.report(call_report());
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        hub.remove(1);
        assert!(!hub.is_active());
        // With no observer, reports go nowhere and nothing is counted.
        hub.report(call_report());
        assert_eq!(hub.dropped_total(), 0);
    }

    #[test]
    fn messages_are_bounded_in_bytes() {
        let hub = ObserverHub::new(1_000, Duration::from_secs(3600)).with_max_bytes(10_000);
        hub.add(1, "obs", Arc::new(|_: &[Observation]| {}));
        // The drain thread drains once at start, then sleeps an hour.
        std::thread::sleep(Duration::from_millis(50));
        let with_message = || {
            let mut r = Report::new(ObservationKind::Error, CallStatus::Error, "a", "b");
            r.message = Some("m".repeat(1_000));
            r
        };
        for _ in 0..20 {
            hub.report(with_message());
        }
        assert_eq!(hub.dropped_total(), 10, "10 kB of messages fit, no more");
        // Reports without a message are bounded by the item capacity only.
        for _ in 0..5 {
            hub.report(call_report());
        }
        assert_eq!(hub.dropped_total(), 10);
        assert_eq!(hub.stats()[0].queued, 15);
    }

    #[test]
    fn full_queue_drops() {
        let hub = ObserverHub::new(2, Duration::from_secs(3600));
        hub.add(1, "obs", Arc::new(|_: &[Observation]| {}));
        // The drain thread drains once at start, then sleeps an hour.
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..5 {
            hub.report(call_report());
        }
        assert_eq!(hub.dropped_total(), 3);
        assert_eq!(hub.stats()[0].dropped, 3);
    }
}
