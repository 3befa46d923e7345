//! Counter, gauge and histogram handles for plugin authors, and the
//! descriptors they keep to re-create themselves on a new provider.
//!
//! A handle is created once (name, help, unit, bound label values) and then
//! used on the hot path: `inc`/`add`/`set`/`observe` is one generation check
//! and one call into the provider's instrument object. Without a provider
//! every call returns at once.

use abi_stable::std_types::{RArc, RSlice, RStr};

use super::abi::{CounterBox, GaugeBox, HistogramBox, InstrumentDesc, ProviderBox, TelemetrySlot};
use super::binding::{Bound, Resolve, Scope};
use super::error::TelemetryError;
use crate::error::PluginError;
use crate::metric_names::{is_label_name, is_metric_name};

/// What an instrument is: name, help, unit and bound labels.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentOpts {
    name: String,
    help: String,
    unit: String,
    labels: Vec<(String, String)>,
}

impl InstrumentOpts {
    /// An instrument with a metric name and one line of help.
    pub fn new(name: impl Into<String>, help: impl Into<String>) -> Self {
        InstrumentOpts {
            name: name.into(),
            help: help.into(),
            unit: String::new(),
            labels: Vec::new(),
        }
    }

    /// Sets the unit (`seconds`, `bytes`, ...).
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = unit.into();
        self
    }

    /// Binds a label to a value (all uses of the handle carry it).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<(), TelemetryError> {
        if !is_metric_name(&self.name) {
            return Err(TelemetryError::MetricName(self.name.clone()));
        }
        for (i, (label, _)) in self.labels.iter().enumerate() {
            if !is_label_name(label) || label.starts_with("__") {
                return Err(TelemetryError::LabelName(label.clone()));
            }
            if self.labels[..i].iter().any(|(l, _)| l == label) {
                return Err(TelemetryError::DuplicateLabel(label.clone()));
            }
        }
        Ok(())
    }

    /// Lends the descriptor to `f` in its ABI shape (allocates two small
    /// vectors: only on the create / re-resolve path).
    fn with_desc<T>(&self, f: impl FnOnce(InstrumentDesc<'_>) -> T) -> T {
        let names: Vec<RStr<'_>> = self.labels.iter().map(|(n, _)| RStr::from_str(n)).collect();
        let values: Vec<RStr<'_>> = self.labels.iter().map(|(_, v)| RStr::from_str(v)).collect();
        f(InstrumentDesc {
            name: RStr::from_str(&self.name),
            help: RStr::from_str(&self.help),
            unit: RStr::from_str(&self.unit),
            label_names: RSlice::from_slice(&names),
            label_values: RSlice::from_slice(&values),
        })
    }
}

pub(crate) struct CounterDesc(InstrumentOpts, Scope);

impl Resolve for CounterDesc {
    type Object = CounterBox;
    fn resolve(&self, provider: &ProviderBox) -> Result<CounterBox, PluginError> {
        self.1
            .apply(provider, |p| self.0.with_desc(|d| p.counter(d)))
            .into_result()
    }
}

pub(crate) struct GaugeDesc(InstrumentOpts, Scope);

impl Resolve for GaugeDesc {
    type Object = GaugeBox;
    fn resolve(&self, provider: &ProviderBox) -> Result<GaugeBox, PluginError> {
        self.1
            .apply(provider, |p| self.0.with_desc(|d| p.gauge(d)))
            .into_result()
    }
}

pub(crate) struct HistogramDesc {
    opts: InstrumentOpts,
    buckets: Vec<f64>,
    scope: Scope,
}

impl Resolve for HistogramDesc {
    type Object = HistogramBox;
    fn resolve(&self, provider: &ProviderBox) -> Result<HistogramBox, PluginError> {
        self.scope
            .apply(provider, |p| {
                self.opts
                    .with_desc(|d| p.histogram(d, RSlice::from_slice(&self.buckets)))
            })
            .into_result()
    }
}

/// A counter handle: only goes up.
pub struct Counter {
    bound: Bound<CounterDesc>,
}

impl Counter {
    pub(crate) fn new(
        slot: Option<RArc<TelemetrySlot>>,
        scope: Scope,
        opts: InstrumentOpts,
    ) -> Result<Self, TelemetryError> {
        opts.validate()?;
        Ok(Counter {
            bound: Bound::new(slot, CounterDesc(opts, scope)),
        })
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.bound.with(|c| c.inc());
    }

    /// Adds `value` (negative and NaN values are the provider's to ignore).
    #[inline]
    pub fn add(&self, value: f64) {
        self.bound.with(|c| c.add(value));
    }

    /// Whether the handle is bound to a provider's instrument now
    /// (rebinding first when the provider changed).
    pub fn is_live(&self) -> bool {
        self.bound.is_live()
    }

    /// Why the current provider refused this instrument (bad name, label
    /// conflict, series limit, ...), if it did: the handle is then a no-op
    /// until the provider changes.
    pub fn refusal(&self) -> Option<PluginError> {
        self.bound.refusal()
    }
}

/// A gauge handle: set to any value.
pub struct Gauge {
    bound: Bound<GaugeDesc>,
}

impl Gauge {
    pub(crate) fn new(
        slot: Option<RArc<TelemetrySlot>>,
        scope: Scope,
        opts: InstrumentOpts,
    ) -> Result<Self, TelemetryError> {
        opts.validate()?;
        Ok(Gauge {
            bound: Bound::new(slot, GaugeDesc(opts, scope)),
        })
    }

    /// Sets the gauge.
    #[inline]
    pub fn set(&self, value: f64) {
        self.bound.with(|g| g.set(value));
    }

    /// Adds `delta` (may be negative).
    #[inline]
    pub fn add(&self, delta: f64) {
        self.bound.with(|g| g.add(delta));
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.add(-1.0);
    }

    /// Whether the handle is bound to a provider's instrument now
    /// (rebinding first when the provider changed).
    pub fn is_live(&self) -> bool {
        self.bound.is_live()
    }

    /// Why the current provider refused this instrument (bad name, label
    /// conflict, series limit, ...), if it did: the handle is then a no-op
    /// until the provider changes.
    pub fn refusal(&self) -> Option<PluginError> {
        self.bound.refusal()
    }
}

/// A histogram handle.
pub struct Histogram {
    bound: Bound<HistogramDesc>,
}

impl Histogram {
    pub(crate) fn new(
        slot: Option<RArc<TelemetrySlot>>,
        scope: Scope,
        opts: InstrumentOpts,
        buckets: &[f64],
    ) -> Result<Self, TelemetryError> {
        opts.validate()?;
        let ascending = buckets.windows(2).all(|w| w[0] < w[1]);
        if !ascending || buckets.iter().any(|b| !b.is_finite()) {
            return Err(TelemetryError::Buckets(buckets.to_vec()));
        }
        Ok(Histogram {
            bound: Bound::new(
                slot,
                HistogramDesc {
                    opts,
                    buckets: buckets.to_vec(),
                    scope,
                },
            ),
        })
    }

    /// Records one observation.
    #[inline]
    pub fn observe(&self, value: f64) {
        self.bound.with(|h| h.observe(value));
    }

    /// Whether the handle is bound to a provider's instrument now
    /// (rebinding first when the provider changed).
    pub fn is_live(&self) -> bool {
        self.bound.is_live()
    }

    /// Why the current provider refused this instrument (bad name, label
    /// conflict, series limit, ...), if it did: the handle is then a no-op
    /// until the provider changes.
    pub fn refusal(&self) -> Option<PluginError> {
        self.bound.refusal()
    }

    /// The bucket bounds this handle asks for (empty: provider default).
    pub fn buckets(&self) -> &[f64] {
        &self.bound.resolver().buckets
    }
}
