//! The observer stream: reports of every service call, storage operation,
//! published event, plugin state change and error, for plugins that ask
//! (the monitoring plugin).
//!
//! Reporting costs the caller one wait-free push per observer and never
//! blocks: each observer has a bounded single-producer ring per reporting
//! thread (`rtrb`), and a full ring drops the report and counts it. A drain
//! thread per observer wakes on a fixed interval, empties every ring and
//! hands the batch over in one call (waking a thread per report would cost
//! 10–27 µs; see docs/ARCHITECTURE.md, section "Costs").
//!
//! Why a ring per thread rather than one shared queue: a push into a
//! shared multi-producer queue is a compare-and-swap on its tail plus a
//! read of the slot's stamp that the draining core wrote last, two
//! cross-core cache misses per report. A thread's own ring costs a slot
//! write and a release store of its tail; the drain thread reads the tail
//! once per round. Reports of one thread stay in order; reports of
//! different threads are delivered ring by ring, in no order across
//! threads (as they were made, concurrently).
//!
//! The caller reads the clock only for the operation's own timing: a timed
//! report ([`Report::timed`]) takes its end time from the same read that
//! gives its duration, and keeps it as an `Instant`; the drain thread turns
//! it into Unix time against a clock pair it reads once per batch. Every
//! other conversion (names, `traceparent`) happens there too.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abi_stable::std_types::RString;
use parking_lot::{Mutex, RwLock};
use plugin_abi::{
    CallStatus, CallStatus_NE, Observation, ObservationKind, ObservationKind_NE, PanicLocation,
};

use crate::tracecontext::SpanContext;

/// A name in a report: interned (a thin `&'static` reference, free to copy
/// — the hot path touches no reference count) or shared (for unbounded
/// sets such as topics). Sixteen bytes either way, so that a report stays
/// small enough to be moved in registers.
#[derive(Debug, Clone)]
pub enum Name {
    /// Interned for the life of the process (see [`intern`]); a constant
    /// name is `Name::Static(&"literal")`.
    Static(&'static &'static str),
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

impl From<&'static &'static str> for Name {
    fn from(s: &'static &'static str) -> Self {
        Name::Static(s)
    }
}

/// Most distinct names [`intern`] keeps; beyond it names are shared
/// instead (a flood of names cannot grow the interner without bound).
pub const MAX_INTERNED: usize = 65_536;

static INTERNED: std::sync::LazyLock<
    RwLock<std::collections::HashMap<&'static str, &'static &'static str>>,
> = std::sync::LazyLock::new(|| RwLock::new(std::collections::HashMap::new()));

/// Interns a bounded name (service or plugin name): each distinct name is
/// leaked once and then shared for the life of the process.
pub fn intern(s: &str) -> Name {
    if let Some(found) = INTERNED.read().get(s) {
        return Name::Static(found);
    }
    let mut map = INTERNED.write();
    if let Some(found) = map.get(s) {
        return Name::Static(found);
    }
    if map.len() >= MAX_INTERNED {
        return Name::Shared(Arc::from(s));
    }
    let text: &'static str = Box::leak(s.to_owned().into_boxed_str());
    let thin: &'static &'static str = Box::leak(Box::new(text));
    map.insert(text, thin);
    Name::Static(thin)
}

/// A report as the host builds it on the hot path (interned names, no
/// allocation for a service call);
/// converted to the FFI [`Observation`] on the drain thread.
///
/// Kept within 128 bytes: a report is moved into a ring slot that the
/// drain thread reads on the other core, and past 128 bytes the move
/// becomes a `memcpy` call and a third cache line (measured by the bench
/// group `observer_report`). The fields only errors and storage operations
/// carry are boxed ([`Report::set_message`], [`Report::set_namespace`],
/// [`Report::set_panic`]).
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
    /// Extra detail (for a service call: the plugin serving it).
    pub detail: Option<Name>,
    /// Duration in nanoseconds.
    pub duration_ns: u64,
    /// When the report was made (a timed report: when the operation
    /// ended); Unix time is computed on the drain thread.
    pub at: Instant,
    /// The operation's own span.
    pub trace_context: Option<SpanContext>,
    /// Parent span id, if any.
    pub parent_span_id: Option<[u8; 8]>,
    /// Message, namespace and panic location, when any is set.
    rare: Option<Box<RareFields>>,
}

/// The fields of a [`Report`] most reports leave empty.
#[derive(Debug, Clone, Default)]
struct RareFields {
    namespace: Option<Arc<str>>,
    message: Option<String>,
    panic: Option<PanicLocation>,
}

/// A report's size, checked at compile time (see [`Report`]).
const _: () = assert!(std::mem::size_of::<Report>() <= 128);

impl Report {
    /// Bytes of the report's message, the part of its size a caller chooses.
    #[inline]
    pub fn message_bytes(&self) -> usize {
        self.message().map_or(0, str::len)
    }

    /// The error message, if any.
    pub fn message(&self) -> Option<&str> {
        self.rare.as_ref()?.message.as_deref()
    }

    /// The storage namespace, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.rare.as_ref()?.namespace.as_deref()
    }

    /// Where a plugin panicked, if it did.
    pub fn panic(&self) -> Option<&PanicLocation> {
        self.rare.as_ref()?.panic.as_ref()
    }

    fn rare_mut(&mut self) -> &mut RareFields {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Sets the error message (`None` clears it).
    pub fn set_message(&mut self, message: Option<String>) {
        if message.is_some() || self.rare.is_some() {
            self.rare_mut().message = message;
        }
    }

    /// Sets the storage namespace.
    pub fn set_namespace(&mut self, namespace: Arc<str>) {
        self.rare_mut().namespace = Some(namespace);
    }

    /// Sets where a plugin panicked (`None` clears it).
    pub fn set_panic(&mut self, panic: Option<PanicLocation>) {
        if panic.is_some() || self.rare.is_some() {
            self.rare_mut().panic = panic;
        }
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
        Report::new_at(kind, status, name, caller, Instant::now())
    }

    /// A report of an operation that began at `started` and ends now: one
    /// clock read gives both its duration and its time.
    #[inline]
    pub fn timed(
        kind: ObservationKind,
        status: CallStatus,
        name: impl Into<Name>,
        caller: impl Into<Name>,
        started: Instant,
    ) -> Self {
        let mut r = Report::new_at(kind, status, name, caller, Instant::now());
        r.duration_ns = r.at.saturating_duration_since(started).as_nanos() as u64;
        r
    }

    #[inline]
    fn new_at(
        kind: ObservationKind,
        status: CallStatus,
        name: impl Into<Name>,
        caller: impl Into<Name>,
        at: Instant,
    ) -> Self {
        Report {
            kind,
            status,
            name: name.into(),
            caller: caller.into(),
            detail: None,
            duration_ns: 0,
            at,
            trace_context: None,
            parent_span_id: None,
            rare: None,
        }
    }

    /// Writes the report into `out`, reusing its strings' buffers (the
    /// drain thread keeps its batch between rounds, so converting a report
    /// allocates nothing once the batch is warm).
    fn write_ffi(&self, clock: &ClockPair, out: &mut Observation) {
        fn set(dst: &mut RString, src: Option<&str>) {
            dst.clear();
            if let Some(src) = src {
                dst.push_str(src);
            }
        }
        out.kind = ObservationKind_NE::new(self.kind);
        out.status = CallStatus_NE::new(self.status);
        set(&mut out.name, Some(&self.name));
        set(&mut out.caller, Some(&self.caller));
        set(&mut out.namespace, self.namespace());
        set(&mut out.detail, self.detail.as_deref());
        set(&mut out.message, self.message());
        out.duration_ns = self.duration_ns;
        out.at_unix_ns = clock.unix_ns(self.at);
        out.trace_context = self.trace_context.into();
        out.parent_span_id = self.parent_span_id.into();
        out.panic = self.panic().cloned().into();
    }
}

/// A batch of observations whose entries (and their string buffers) are
/// reused from round to round.
struct Batch {
    items: Vec<Observation>,
    len: usize,
}

impl Batch {
    fn new() -> Self {
        Batch {
            items: Vec::with_capacity(256),
            len: 0,
        }
    }

    fn push(&mut self, r: &Report, clock: &ClockPair) {
        if self.len == self.items.len() {
            self.items.push(Observation::empty(r.kind));
        }
        r.write_ffi(clock, &mut self.items[self.len]);
        self.len += 1;
    }
}

/// The wall clock and the monotonic clock read together, to turn a
/// report's `Instant` into Unix time off the caller's path.
#[derive(Debug, Clone, Copy)]
struct ClockPair {
    unix_ns: u64,
    instant: Instant,
}

impl ClockPair {
    fn now() -> Self {
        ClockPair {
            instant: Instant::now(),
            unix_ns: crate::time::now_unix_ns(),
        }
    }

    /// Unix nanoseconds of `at`, by its distance from this pair.
    fn unix_ns(&self, at: Instant) -> u64 {
        let before = self.instant.saturating_duration_since(at).as_nanos() as u64;
        let after = at.saturating_duration_since(self.instant).as_nanos() as u64;
        self.unix_ns.saturating_sub(before).saturating_add(after)
    }
}

/// Default byte budget for the messages queued for one observer.
pub const DEFAULT_QUEUE_BYTES: usize = 8 << 20;

impl Observer {
    /// Reserves `bytes` of the budget `max`; false when it would be exceeded.
    fn reserve(&self, bytes: usize, max: usize) -> bool {
        crate::byte_budget::try_reserve(&self.queued_bytes, bytes, max)
    }

    /// A new ring for the calling thread: the consumer end stays here for
    /// the drain thread, the producer end goes to the thread.
    #[cold]
    fn new_ring(&self) -> rtrb::Producer<Report> {
        let (producer, consumer) = rtrb::RingBuffer::new(self.ring_capacity);
        self.rings.lock().push(consumer);
        self.ring_count.fetch_add(1, Ordering::Relaxed);
        producer
    }

    /// Reports waiting in every ring.
    fn queued(&self) -> usize {
        self.rings.lock().iter().map(rtrb::Consumer::slots).sum()
    }
}

/// Hands a batch to an observer; runs on the observer's drain thread.
pub type SinkFn = Arc<dyn Fn(&[Observation]) + Send + Sync>;

/// Distinguishes hubs, for the thread-local caches.
static NEXT_HUB_ID: AtomicU64 = AtomicU64::new(1);

/// One thread's view of one hub: the observers as of `generation`, each
/// with this thread's producer end of its ring.
struct LocalHub {
    hub: u64,
    generation: u64,
    observers: Vec<(Arc<Observer>, rtrb::Producer<Report>)>,
}

thread_local! {
    /// The hubs this thread reported to.
    static LOCAL: RefCell<Vec<LocalHub>> = const { RefCell::new(Vec::new()) };
}

struct Observer {
    owner: u64,
    owner_name: String,
    /// Capacity of each thread's ring.
    ring_capacity: usize,
    /// The consumer ends, one per thread that reported; the drain thread
    /// empties them, and drops a ring whose thread exited once it is empty.
    rings: Mutex<Vec<rtrb::Consumer<Report>>>,
    /// How many rings exist (taken out of `rings` while being drained).
    ring_count: AtomicUsize,
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
    /// Unique per hub, keys the thread-local caches.
    id: u64,
    /// Bumped by every `add` / `remove`: threads refresh their cached
    /// observer list when it moved (one plain load on the hot path).
    generation: AtomicU64,
    capacity: usize,
    max_bytes: usize,
    flush: Duration,
    active: AtomicUsize,
    observers: RwLock<Arc<Vec<Arc<Observer>>>>,
    dropped_total: AtomicU64,
}

impl ObserverHub {
    /// A hub whose observers hold `capacity` reports per reporting thread
    /// (a ring each), drained every `flush`. Messages of
    /// queued reports may hold [`DEFAULT_QUEUE_BYTES`] per observer.
    pub fn new(capacity: usize, flush: Duration) -> Self {
        ObserverHub {
            id: NEXT_HUB_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
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
    #[inline]
    pub fn report(&self, report: Report) {
        // The thread's cached observer list and rings: no lock, no
        // reference count, no read-modify-write on the way in (each atomic
        // RMW or cache line shared with the drain thread costs ~20–100 ns
        // here). The report itself is moved to the last observer.
        let delivered = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            let generation = self.generation.load(Ordering::Acquire);
            let index = match local.iter().position(|l| l.hub == self.id) {
                Some(i) if local[i].generation == generation => i,
                found => self.refresh(&mut local, found),
            };
            match local[index].observers.as_mut_slice() {
                [] => {}
                // The usual case: the report moves straight into the ring.
                [(obs, ring)] => self.push(obs, ring, report),
                [first @ .., (obs, ring)] => {
                    for (o, r) in first {
                        self.push(o, r, report.clone());
                    }
                    self.push(obs, ring, report);
                }
            }
        });
        if delivered.is_err() {
            // The thread is exiting and its cache is gone.
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[inline]
    fn push(&self, obs: &Observer, ring: &mut rtrb::Producer<Report>, r: Report) {
        let bytes = r.message_bytes();
        let fits = bytes == 0 || obs.reserve(bytes, self.max_bytes);
        let queued = fits
            && match ring.push(r) {
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

    /// Brings the thread's view of this hub up to date (its first report,
    /// or observers added or removed since): keeps the rings of observers
    /// still there, makes rings for new ones, drops the rest (their
    /// consumer ends are then dropped by the drain thread once empty).
    #[cold]
    fn refresh(&self, local: &mut Vec<LocalHub>, found: Option<usize>) -> usize {
        let observers = self.observers.read();
        let generation = self.generation.load(Ordering::Acquire);
        let mut old = match found {
            Some(i) => local.swap_remove(i).observers,
            None => Vec::new(),
        };
        let fresh = observers
            .iter()
            .map(|obs| {
                let ring = match old.iter().position(|(o, _)| Arc::ptr_eq(o, obs)) {
                    Some(i) => old.swap_remove(i).1,
                    None => obs.new_ring(),
                };
                (obs.clone(), ring)
            })
            .collect();
        // Forget hubs whose observers are all gone (dropped hubs, mostly tests).
        local.retain(|l| {
            l.observers
                .iter()
                .any(|(o, _)| !o.stop.load(Ordering::Relaxed))
        });
        local.push(LocalHub {
            hub: self.id,
            generation,
            observers: fresh,
        });
        local.len() - 1
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
            ring_capacity: self.capacity.max(1),
            rings: Mutex::new(Vec::new()),
            ring_count: AtomicUsize::new(0),
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
        self.generation.fetch_add(1, Ordering::Release);
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
            self.generation.fetch_add(1, Ordering::Release);
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
                queued: o.queued(),
            })
            .collect()
    }
}

const MAX_BATCH: usize = 4_096;

fn drain_loop(obs: &Observer, flush: Duration, sink: &SinkFn) {
    let mut batch = Batch::new();
    let mut pending: Vec<Report> = Vec::new();
    loop {
        let stopping = obs.stop.load(Ordering::Acquire);
        let clock = ClockPair::now();
        // Take the rings out so reporting threads that make their first
        // report meanwhile (and lock `rings`) never wait for the sink.
        let mut rings = std::mem::take(&mut *obs.rings.lock());
        for ring in &mut rings {
            while let Ok(r) = ring.pop() {
                pending.push(r);
            }
        }
        // One ring per thread: put the round back in the order the reports
        // were made (stable, so each thread's own order is kept).
        pending.sort_by_key(|r| r.at);
        for r in pending.drain(..) {
            let bytes = r.message_bytes();
            if bytes > 0 {
                obs.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            }
            batch.push(&r, &clock);
            if batch.len == MAX_BATCH {
                deliver(obs, sink, &mut batch);
            }
        }
        deliver(obs, sink, &mut batch);
        // A ring whose thread exited is empty now: drop it.
        let before = rings.len();
        rings.retain(|ring| !ring.is_abandoned() || !ring.is_empty());
        obs.ring_count
            .fetch_sub(before - rings.len(), Ordering::Relaxed);
        obs.rings.lock().append(&mut rings);
        if stopping {
            return;
        }
        std::thread::sleep(flush);
    }
}

fn deliver(obs: &Observer, sink: &SinkFn, batch: &mut Batch) {
    if batch.len == 0 {
        return;
    }
    sink(&batch.items[..batch.len]);
    obs.delivered.fetch_add(batch.len as u64, Ordering::Relaxed);
    batch.len = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds observer 1, which counts the observations it is handed.
    fn count(hub: &ObserverHub) -> Arc<AtomicU64> {
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        hub.add(
            1,
            "obs",
            Arc::new(move |b: &[Observation]| {
                s.fetch_add(b.len() as u64, Ordering::Relaxed);
            }),
        );
        seen
    }

    /// Adds observer 1, which keeps `f` of every observation it is handed.
    fn collect<T: Send + 'static>(
        hub: &ObserverHub,
        f: impl Fn(&Observation) -> T + Send + Sync + 'static,
    ) -> Arc<Mutex<Vec<T>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        hub.add(
            1,
            "obs",
            Arc::new(move |b: &[Observation]| s.lock().extend(b.iter().map(&f))),
        );
        seen
    }

    fn call_report() -> Report {
        Report::new(ObservationKind::ServiceCall, CallStatus::Ok, &"a", &"b")
    }

    #[test]
    fn delivers_batches_and_counts_drops() {
        let hub = ObserverHub::new(4, Duration::from_millis(5));
        assert!(!hub.is_active());
        let seen = count(&hub);
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
            let mut r = Report::new(ObservationKind::Error, CallStatus::Error, &"a", &"b");
            r.set_message(Some("m".repeat(1_000)));
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
    fn a_timed_report_gets_its_duration_and_unix_time_from_one_clock_read() {
        let hub = ObserverHub::new(16, Duration::from_millis(5));
        let seen = collect(&hub, |o| (o.duration_ns, o.at_unix_ns));
        let before = crate::time::now_unix_ns();
        let started = Instant::now() - Duration::from_millis(30);
        let r = Report::timed(
            ObservationKind::ServiceCall,
            CallStatus::Ok,
            &"a",
            &"b",
            started,
        );
        assert_eq!(r.duration_ns, (r.at - started).as_nanos() as u64);
        assert!(r.duration_ns >= 30_000_000, "{}", r.duration_ns);
        hub.report(r);
        let after = crate::time::now_unix_ns();
        let delivered = test_support::wait_for("delivered", Duration::from_secs(10), || {
            seen.lock().first().copied()
        });
        // The drain thread's conversion lands between the two wall-clock
        // reads around the report (generous: clocks may be slewed).
        let slack = 1_000_000_000;
        assert!(
            delivered.1 + slack >= before && delivered.1 <= after + slack,
            "{delivered:?} not in [{before}, {after}]"
        );
        hub.remove(1);
    }

    #[test]
    fn every_threads_reports_arrive_and_an_exited_threads_ring_is_dropped() {
        let hub = Arc::new(ObserverHub::new(2_048, Duration::from_millis(2)));
        let seen = count(&hub);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let hub = hub.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        hub.report(call_report());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        test_support::wait_for("8,000 reports", Duration::from_secs(10), || {
            (seen.load(Ordering::Relaxed) == 8_000).then_some(())
        });
        assert_eq!(hub.dropped_total(), 0);
        // The threads are gone: their rings are dropped once drained.
        test_support::wait_for("rings dropped", Duration::from_secs(10), || {
            (hub.observers.read()[0].ring_count.load(Ordering::Relaxed) == 0).then_some(())
        });
        // This thread still reports (a new ring).
        hub.report(call_report());
        test_support::wait_for("one more", Duration::from_secs(10), || {
            (seen.load(Ordering::Relaxed) == 8_001).then_some(())
        });
        hub.remove(1);
    }

    #[test]
    fn a_reused_batch_entry_keeps_nothing_of_the_previous_report() {
        let hub = ObserverHub::new(16, Duration::from_millis(2));
        let seen = collect(&hub, |o| {
            (
                o.name.to_string(),
                o.namespace.to_string(),
                o.message.to_string(),
            )
        });
        let mut first = Report::new(
            ObservationKind::StorageOperation,
            CallStatus::Error,
            &"set",
            &"p",
        );
        first.set_namespace(Arc::from("ns"));
        first.set_message(Some("disk full".into()));
        hub.report(first);
        test_support::wait_for("first", Duration::from_secs(10), || {
            (seen.lock().len() == 1).then_some(())
        });
        hub.report(call_report());
        test_support::wait_for("second", Duration::from_secs(10), || {
            (seen.lock().len() == 2).then_some(())
        });
        let seen = seen.lock();
        assert_eq!(seen[0], ("set".into(), "ns".into(), "disk full".into()));
        assert_eq!(seen[1], ("a".into(), String::new(), String::new()));
        hub.remove(1);
    }

    #[test]
    fn a_round_is_delivered_in_the_order_the_reports_were_made_across_threads() {
        let hub = Arc::new(ObserverHub::new(64, Duration::from_millis(200)));
        let seen = collect(&hub, |o| o.name.to_string());
        // Six threads, each with its own ring; the rings are made in reverse
        // order (a first report from thread 5, then 4, …), so delivering
        // ring by ring would give the later reports first.
        let report = |name: String| {
            Report::new(
                ObservationKind::ServiceCall,
                CallStatus::Ok,
                Name::Shared(Arc::from(name)),
                &"b",
            )
        };
        let workers: Vec<_> = (0..6)
            .map(|i| {
                let (tx, rx) = std::sync::mpsc::channel::<String>();
                let hub = hub.clone();
                let t = std::thread::spawn(move || {
                    for name in rx {
                        hub.report(report(name));
                    }
                });
                (i, tx, t)
            })
            .collect();
        for (i, tx, _) in workers.iter().rev() {
            tx.send(format!("warm{i}")).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        test_support::wait_for("warm-up", Duration::from_secs(10), || {
            (seen.lock().len() == 6).then_some(())
        });
        seen.lock().clear();
        std::thread::sleep(Duration::from_millis(20));
        for (i, tx, _) in &workers {
            tx.send(format!("call{i}")).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        for (_, tx, t) in workers {
            drop(tx);
            t.join().unwrap();
        }
        test_support::wait_for("six reports", Duration::from_secs(10), || {
            (seen.lock().len() == 6).then_some(())
        });
        hub.remove(1);
        let expected: Vec<String> = (0..6).map(|i| format!("call{i}")).collect();
        assert_eq!(*seen.lock(), expected);
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
