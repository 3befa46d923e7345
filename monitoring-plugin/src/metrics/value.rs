//! Lock-free series values and the pre-resolved handles that update them.
//!
//! Exists to keep the hot path tiny: a handle is an `Arc` to one series, and an
//! update is one or two relaxed atomic operations, never a lock or a lookup.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::family::Series;

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
}

impl Cell for HistogramCell {
    type Params = Arc<[f64]>;
    fn new(bounds: &Arc<[f64]>) -> Self {
        Self {
            bounds: bounds.clone(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::default(),
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

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.0.cell.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Sum of observations so far.
    pub fn sum(&self) -> f64 {
        self.0.cell.sum.get()
    }
}
