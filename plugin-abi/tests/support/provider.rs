//! An in-process telemetry provider backed by atomics, for the telemetry
//! tests and benches: what the monitoring plugin will implement, minus the
//! exposition. Counters and gauges are f64 bits in an `AtomicU64`,
//! histograms are cumulative-free bucket counters; spans and errors are
//! kept in a list when `keep_records` is on. A provider can be closed (as
//! the host closes a replaced one): its instruments and spans then ignore
//! every call.
#![allow(dead_code)] // each test or bench binary uses a part of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use plugin_abi::abi_stable::sabi_trait::TD_Opaque;
use plugin_abi::abi_stable::std_types::{RArc, ROption, RResult, RSlice, RStr};
use plugin_abi::telemetry::{
    AttrValue, CounterApi, CounterApi_TO, CounterBox, GaugeApi, GaugeApi_TO, GaugeBox,
    HistogramApi, HistogramApi_TO, HistogramBox, InstrumentDesc, ProviderBox, SpanApi, SpanApi_TO,
    SpanBox, SpanKind, SpanStatus, Tag, TelemetryProvider, TelemetryProvider_TO,
};
use plugin_abi::{PluginError, Sampler, TraceContext};

/// An f64 in an atomic.
#[derive(Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    fn add(&self, v: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }
}

/// One counter series: whole increments in an integer, the rest in an f64.
#[derive(Default)]
pub struct CounterCell {
    pub ints: AtomicU64,
    pub float: AtomicF64,
}

impl CounterCell {
    pub fn get(&self) -> f64 {
        self.ints.load(Ordering::Relaxed) as f64 + self.float.get()
    }
}

/// One histogram series.
pub struct HistogramCell {
    pub bounds: Vec<f64>,
    /// One count per bound, plus +Inf last (not cumulative).
    pub counts: Vec<AtomicU64>,
    pub sum: AtomicF64,
    pub count: AtomicU64,
}

/// What an instrument was created with.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    pub help: String,
    pub unit: String,
    pub label_names: Vec<String>,
}

/// A finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub name: String,
    pub kind: SpanKind,
    pub parent: Option<TraceContext>,
    pub context: TraceContext,
    pub attributes: Vec<(String, String)>,
    pub status: SpanStatus,
    pub message: String,
}

/// A captured error.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRecord {
    pub message: String,
    pub tags: Vec<(String, String)>,
    pub context: Option<TraceContext>,
}

/// Everything a provider recorded.
#[derive(Default)]
pub struct ProviderState {
    pub closed: AtomicBool,
    pub keep_records: bool,
    pub sampler: Option<Sampler>,
    /// Instrument creations asked for (including refused ones).
    pub resolves: AtomicU64,
    pub counters: Mutex<HashMap<String, Arc<CounterCell>>>,
    pub gauges: Mutex<HashMap<String, Arc<AtomicF64>>>,
    pub histograms: Mutex<HashMap<String, Arc<HistogramCell>>>,
    pub described: Mutex<HashMap<String, Described>>,
    pub spans: Mutex<Vec<SpanRecord>>,
    pub spans_ended: AtomicU64,
    pub errors: Mutex<Vec<ErrorRecord>>,
}

/// The provider object (shared state behind an `Arc`).
#[derive(Clone)]
pub struct TestProvider {
    pub state: Arc<ProviderState>,
}

/// `name{v1,v2}`: the series key of a descriptor.
fn series_key(desc: &InstrumentDesc<'_>) -> String {
    let values: Vec<&str> = desc.label_values.iter().map(|v| v.as_str()).collect();
    format!("{}{{{}}}", desc.name, values.join(","))
}

impl TestProvider {
    /// A provider that keeps span and error records.
    pub fn new() -> Self {
        Self::with(true)
    }

    /// A provider that only counts ended spans (for benches).
    pub fn counting() -> Self {
        Self::with(false)
    }

    fn with(keep_records: bool) -> Self {
        TestProvider {
            state: Arc::new(ProviderState {
                keep_records,
                sampler: Some(Sampler::always_on()),
                ..ProviderState::default()
            }),
        }
    }

    /// The ABI object to install in a slot.
    pub fn boxed(&self) -> ProviderBox {
        TelemetryProvider_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// Closes the provider, as the host does with a replaced one.
    pub fn close(&self) {
        self.state.closed.store(true, Ordering::Release);
    }

    /// The value of a counter series (`name{v1,v2}`), 0 when absent.
    pub fn counter(&self, key: &str) -> f64 {
        let map = self.state.counters.lock().unwrap();
        map.get(key).map_or(0.0, |c| c.get())
    }

    /// The value of a gauge series, `None` when absent.
    pub fn gauge(&self, key: &str) -> Option<f64> {
        let map = self.state.gauges.lock().unwrap();
        map.get(key).map(|g| g.get())
    }

    /// A histogram series.
    pub fn histogram(&self, key: &str) -> Option<Arc<HistogramCell>> {
        self.state.histograms.lock().unwrap().get(key).cloned()
    }

    /// How many instrument creations were asked for.
    pub fn resolves(&self) -> u64 {
        self.state.resolves.load(Ordering::Relaxed)
    }

    fn refuse(desc: &InstrumentDesc<'_>) -> Option<PluginError> {
        desc.name
            .as_str()
            .starts_with("refused_")
            .then(|| PluginError::bad_request(format!("refused {}", desc.name)))
    }

    fn describe(&self, desc: &InstrumentDesc<'_>) {
        self.state.described.lock().unwrap().insert(
            desc.name.to_string(),
            Described {
                help: desc.help.to_string(),
                unit: desc.unit.to_string(),
                label_names: desc.label_names.iter().map(|n| n.to_string()).collect(),
            },
        );
    }

    fn cell<C: Default>(
        &self,
        map: &Mutex<HashMap<String, Arc<C>>>,
        desc: &InstrumentDesc<'_>,
    ) -> Result<Arc<C>, PluginError> {
        self.state.resolves.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = Self::refuse(desc) {
            return Err(e);
        }
        self.describe(desc);
        let mut map = map.lock().unwrap();
        Ok(Arc::clone(map.entry(series_key(desc)).or_default()))
    }
}

struct TestCounter {
    cell: Arc<CounterCell>,
    state: Arc<ProviderState>,
}

impl CounterApi for TestCounter {
    fn inc(&self) {
        if !self.state.closed.load(Ordering::Relaxed) {
            self.cell.ints.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn add(&self, value: f64) {
        if self.state.closed.load(Ordering::Relaxed) || value.is_nan() || value < 0.0 {
            return;
        }
        self.cell.float.add(value);
    }
}

struct TestGauge {
    cell: Arc<AtomicF64>,
    state: Arc<ProviderState>,
}

impl GaugeApi for TestGauge {
    fn set(&self, value: f64) {
        if !self.state.closed.load(Ordering::Relaxed) {
            self.cell.set(value);
        }
    }
    fn add(&self, delta: f64) {
        if !self.state.closed.load(Ordering::Relaxed) {
            self.cell.add(delta);
        }
    }
}

struct TestHistogram {
    cell: Arc<HistogramCell>,
    state: Arc<ProviderState>,
}

impl HistogramApi for TestHistogram {
    fn observe(&self, value: f64) {
        if self.state.closed.load(Ordering::Relaxed) {
            return;
        }
        let c = &self.cell;
        let i = c
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(c.bounds.len());
        c.counts[i].fetch_add(1, Ordering::Relaxed);
        c.sum.add(value);
        c.count.fetch_add(1, Ordering::Relaxed);
    }
}

struct TestSpan {
    record: Option<SpanRecord>,
    context: TraceContext,
    state: Arc<ProviderState>,
}

impl SpanApi for TestSpan {
    fn context(&self) -> TraceContext {
        self.context
    }
    fn set_attribute(&mut self, key: RStr<'_>, value: AttrValue<'_>) {
        if let Some(r) = &mut self.record {
            let value = match value {
                AttrValue::Str(s) => s.to_string(),
                AttrValue::I64(i) => i.to_string(),
                AttrValue::F64(f) => f.to_string(),
                AttrValue::Bool(b) => b.to_string(),
            };
            r.attributes.retain(|(k, _)| k != key.as_str());
            r.attributes.push((key.to_string(), value));
        }
    }
    fn set_status(&mut self, status: SpanStatus, message: RStr<'_>) {
        if let Some(r) = &mut self.record {
            r.status = status;
            r.message = message.to_string();
        }
    }
    fn end(&mut self) {
        if self.state.closed.load(Ordering::Relaxed) {
            return;
        }
        self.state.spans_ended.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = self.record.take() {
            self.state.spans.lock().unwrap().push(r);
        }
    }
}

impl TelemetryProvider for TestProvider {
    fn counter(&self, desc: InstrumentDesc<'_>) -> RResult<CounterBox, PluginError> {
        self.cell(&self.state.counters, &desc)
            .map(|cell| {
                let state = Arc::clone(&self.state);
                CounterApi_TO::from_value(TestCounter { cell, state }, TD_Opaque)
            })
            .into()
    }

    fn gauge(&self, desc: InstrumentDesc<'_>) -> RResult<GaugeBox, PluginError> {
        self.cell(&self.state.gauges, &desc)
            .map(|cell| {
                let state = Arc::clone(&self.state);
                GaugeApi_TO::from_value(TestGauge { cell, state }, TD_Opaque)
            })
            .into()
    }

    fn histogram(
        &self,
        desc: InstrumentDesc<'_>,
        buckets: RSlice<'_, f64>,
    ) -> RResult<HistogramBox, PluginError> {
        self.state.resolves.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = Self::refuse(&desc) {
            return RResult::RErr(e);
        }
        self.describe(&desc);
        let bounds = if buckets.is_empty() {
            vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]
        } else {
            buckets.to_vec()
        };
        let cell = {
            let mut map = self.state.histograms.lock().unwrap();
            Arc::clone(map.entry(series_key(&desc)).or_insert_with(|| {
                Arc::new(HistogramCell {
                    counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                    bounds,
                    sum: AtomicF64::default(),
                    count: AtomicU64::new(0),
                })
            }))
        };
        let state = Arc::clone(&self.state);
        RResult::ROk(HistogramApi_TO::from_value(
            TestHistogram { cell, state },
            TD_Opaque,
        ))
    }

    fn start_span(&self, name: RStr<'_>, kind: SpanKind, parent: ROption<TraceContext>) -> SpanBox {
        let parent = parent.into_option();
        let sampler = self.state.sampler.unwrap_or_default();
        let context = TraceContext::child_or_root(parent.as_ref(), &sampler);
        let record = self.state.keep_records.then(|| SpanRecord {
            name: name.to_string(),
            kind,
            parent,
            context,
            attributes: Vec::new(),
            status: SpanStatus::Unset,
            message: String::new(),
        });
        SpanApi_TO::from_value(
            TestSpan {
                record,
                context,
                state: Arc::clone(&self.state),
            },
            TD_Opaque,
        )
    }

    fn capture_error(
        &self,
        message: RStr<'_>,
        tags: RSlice<'_, Tag<'_>>,
        context: ROption<TraceContext>,
    ) {
        if self.state.closed.load(Ordering::Relaxed) {
            return;
        }
        self.state.errors.lock().unwrap().push(ErrorRecord {
            message: message.to_string(),
            tags: tags
                .iter()
                .map(|t| (t.key.to_string(), t.value.to_string()))
                .collect(),
            context: context.into_option(),
        });
    }

    fn scoped(&self, _plugin: RStr<'_>) -> ProviderBox {
        TelemetryProvider_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    fn close(&self) {
        TestProvider::close(self);
    }
}
