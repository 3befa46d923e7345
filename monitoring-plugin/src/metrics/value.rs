//! Lock-free series values and the pre-resolved handles that update them.
//!
//! Exists to keep the hot path tiny: a handle is an `Arc` to one series, and an
//! update is one or two relaxed atomic operations, never a lock or a lookup.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use plugin_abi::trace_context::{TraceContext, TRACEPARENT_LEN};

/// One series: its label values, their pre-rendered exposition form and its value.
pub(crate) struct Series<C> {
    /// Label values, in the family's label-name order.
    pub(super) values: Box<[Box<str>]>,
    /// Rendered labels without braces, e.g. `a="x",b="y"` (empty for no labels).
    pub(super) labels: Box<str>,
    pub(super) cell: C,
}

impl<C: fmt::Debug> fmt::Debug for Series<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels)
            .field("cell", &self.cell)
            .finish()
    }
}

/// An `f64` stored as bits in an `AtomicU64`.
#[derive(Debug, Default)]
pub(super) struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub(super) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }

    pub(super) fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }

    /// Adds `v` with a compare-and-swap loop.
    pub(super) fn add(&self, v: f64) {
        let mut cur = self.0.load(Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match self.0.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Per-series storage of a metric kind; created once per series.
pub(super) trait Cell: Send + Sync + Sized + 'static {
    /// Family-wide parameters (bucket bounds for histograms).
    type Params: Send + Sync + 'static;
    fn new(params: &Self::Params) -> Self;
}

/// Counter storage: whole-number increments go to an integer (one `fetch_add`),
/// fractional ones to an `f64` (CAS loop); the value is their sum.
#[derive(Debug, Default)]
pub(super) struct CounterCell {
    ints: AtomicU64,
    frac: AtomicF64,
}

/// Largest whole increment routed to the integer part (exact in `f64`).
const MAX_INT_INC: f64 = 9_007_199_254_740_992.0; // 2^53

impl CounterCell {
    pub(super) fn get(&self) -> f64 {
        self.ints.load(Relaxed) as f64 + self.frac.get()
    }

    #[inline]
    pub(super) fn inc(&self) {
        self.ints.fetch_add(1, Relaxed);
    }

    /// Caller guarantees `v` is finite and `>= 0`.
    #[inline]
    pub(super) fn add(&self, v: f64) {
        if v.fract() == 0.0 && v < MAX_INT_INC {
            self.ints.fetch_add(v as u64, Relaxed);
        } else {
            self.frac.add(v);
        }
    }
}

impl Cell for CounterCell {
    type Params = ();
    fn new(_: &()) -> Self {
        Self::default()
    }
}

/// Gauge storage.
#[derive(Debug, Default)]
pub(super) struct GaugeCell(pub(super) AtomicF64);

impl Cell for GaugeCell {
    type Params = ();
    fn new(_: &()) -> Self {
        Self::default()
    }
}

/// Histogram storage: one non-cumulative count per bucket plus an overflow
/// (`+Inf`) bucket, and the sum. The total count is derived from the buckets at
/// scrape time, so `_count` always equals the `+Inf` bucket.
#[derive(Debug)]
pub(super) struct HistogramCell {
    pub(super) bounds: Arc<[f64]>,
    pub(super) counts: Box<[AtomicU64]>,
    pub(super) sum: AtomicF64,
    /// The latest exemplar of each bucket (OpenMetrics exposition only).
    pub(super) exemplars: Box<[parking_lot::Mutex<Option<Exemplar>>]>,
}

/// The trace of one observation, shown next to its bucket in the
/// OpenMetrics exposition so that a latency point links to its trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// Trace id, 32 lower-case hex digits.
    pub trace_id: [u8; 32],
    /// Span id, 16 lower-case hex digits.
    pub span_id: [u8; 16],
    /// The observed value.
    pub value: f64,
    /// When it was observed, Unix milliseconds.
    pub timestamp_ms: u64,
}

impl Exemplar {
    /// The exemplar of a span; `None` when it is not sampled (no trace
    /// was recorded to link to). The ids are formatted once, here, on the
    /// stack (plugin-abi's `TraceContext::write_header`).
    pub fn from_context(ctx: &TraceContext, value: f64) -> Option<Exemplar> {
        if !ctx.sampled() {
            return None;
        }
        let mut buf = [0u8; TRACEPARENT_LEN];
        let header = ctx.write_header(&mut buf).as_bytes();
        let mut e = Exemplar {
            trace_id: [0; 32],
            span_id: [0; 16],
            value,
            timestamp_ms: crate::time::now_ms(),
        };
        e.trace_id.copy_from_slice(&header[3..35]);
        e.span_id.copy_from_slice(&header[36..52]);
        Some(e)
    }

    /// The trace id as text.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.trace_id).unwrap_or("")
    }

    /// The span id as text.
    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.span_id).unwrap_or("")
    }
}

impl HistogramCell {
    #[inline]
    pub(super) fn observe(&self, v: f64) {
        // Linear scan: faster than binary search for typical (<= ~20) bucket counts.
        let idx = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[idx].fetch_add(1, Relaxed);
        self.sum.add(v);
    }

    fn bucket_of(&self, v: f64) -> usize {
        self.bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len())
    }
}

impl Cell for HistogramCell {
    type Params = Arc<[f64]>;
    fn new(bounds: &Arc<[f64]>) -> Self {
        Self {
            bounds: bounds.clone(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::default(),
            exemplars: (0..=bounds.len())
                .map(|_| parking_lot::Mutex::new(None))
                .collect(),
        }
    }
}

/// Handle to one counter series. Cloning is an `Arc` clone; updating takes no lock.
#[derive(Clone, Debug)]
pub struct Counter(pub(super) Arc<Series<CounterCell>>);

impl Counter {
    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        self.0.cell.inc();
    }

    /// Adds `v`. Negative, NaN or infinite increments are ignored (a counter only
    /// goes up; untrusted input is validated by `MetricStore::record`).
    #[inline]
    pub fn inc_by(&self, v: f64) {
        if v >= 0.0 && v.is_finite() {
            self.0.cell.add(v);
        }
    }

    /// Current value.
    pub fn get(&self) -> f64 {
        self.0.cell.get()
    }
}

/// Handle to one gauge series. Cloning is an `Arc` clone; updating takes no lock.
#[derive(Clone, Debug)]
pub struct Gauge(pub(super) Arc<Series<GaugeCell>>);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: f64) {
        self.0.cell.0.set(v);
    }

    /// Adds `v` (CAS loop).
    #[inline]
    pub fn add(&self, v: f64) {
        self.0.cell.0.add(v);
    }

    /// Subtracts `v` (CAS loop).
    #[inline]
    pub fn sub(&self, v: f64) {
        self.0.cell.0.add(-v);
    }

    /// Current value.
    pub fn get(&self) -> f64 {
        self.0.cell.0.get()
    }
}

/// Handle to one histogram series. Cloning is an `Arc` clone; observing takes no lock.
#[derive(Clone, Debug)]
pub struct Histogram(pub(super) Arc<Series<HistogramCell>>);

impl Histogram {
    /// Records one observation. NaN is ignored (it would poison `_sum`).
    #[inline]
    pub fn observe(&self, v: f64) {
        if !v.is_nan() {
            self.0.cell.observe(v);
        }
    }

    /// Records one observation and, when `span` is sampled, keeps it as its
    /// bucket's exemplar.
    pub fn observe_traced(&self, v: f64, span: Option<&TraceContext>) {
        if v.is_nan() {
            return;
        }
        self.0.cell.observe(v);
        if let Some(e) = span.and_then(|t| Exemplar::from_context(t, v)) {
            let cell = &self.0.cell;
            *cell.exemplars[cell.bucket_of(v)].lock() = Some(e);
        }
    }

    /// The exemplar of the bucket holding `v`, if any.
    pub fn exemplar_for(&self, v: f64) -> Option<Exemplar> {
        let cell = &self.0.cell;
        *cell.exemplars[cell.bucket_of(v)].lock()
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.0.cell.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Sum of observations so far.
    pub fn sum(&self) -> f64 {
        self.0.cell.sum.get()
    }
}
