//! Instrument objects handed to other plugins, and the checks a descriptor
//! passes before it becomes a series in the metric store.
//!
//! An object holds the store's pre-resolved series handle (an `Arc` to the
//! series' atomic cell) and the provider's shared state: `inc`, `add`,
//! `set` and `observe` are one relaxed load of the closed flag plus the
//! cell's atomic operation, no lookup, no lock, no allocation.

use std::sync::Arc;

use plugin_abi::telemetry::{CounterApi, GaugeApi, HistogramApi, InstrumentDesc};
use plugin_abi::PluginError;

use super::Shared;
use crate::metrics::PLUGIN_LABEL;
use crate::metrics::{Counter, Gauge, Histogram, MetricError, MetricStore};

/// A descriptor checked and put in the store's terms: label names sorted
/// (the order `monitoring.record_metric` uses, so both paths can share a
/// family), the plugin's label added when the provider is scoped.
pub(super) struct Described<'a> {
    name: &'a str,
    help: &'a str,
    unit: &'a str,
    names: Vec<&'a str>,
    values: Vec<&'a str>,
}

/// A store refusal as the error a handle's creator gets.
fn refused(name: &str, e: &MetricError) -> PluginError {
    PluginError::bad_request(format!(
        "telemetry instrument {name:?} refused: {e} ({})",
        e.reason()
    ))
}

impl<'a> Described<'a> {
    /// Checks what the store does not check on registration (reserved name
    /// prefixes, label names and values pairing up, the `plugin` label) and
    /// orders the labels.
    pub(super) fn new(
        store: &MetricStore,
        desc: &'a InstrumentDesc<'a>,
        plugin: Option<&'a str>,
    ) -> Result<Self, PluginError> {
        let name = desc.name.as_str();
        if let Some(prefix) = store.reserved_prefix(name) {
            return Err(PluginError::bad_request(format!(
                "telemetry instrument {name:?} refused: the prefix {prefix:?} is reserved for the host's own metrics"
            )));
        }
        if desc.label_names.len() != desc.label_values.len() {
            return Err(PluginError::bad_request(format!(
                "telemetry instrument {name:?} refused: {} label names but {} values",
                desc.label_names.len(),
                desc.label_values.len()
            )));
        }
        let mut pairs: Vec<(&'a str, &'a str)> = desc
            .label_names
            .iter()
            .zip(desc.label_values.iter())
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Some(plugin) = plugin {
            if pairs.iter().any(|(n, _)| *n == PLUGIN_LABEL) {
                return Err(PluginError::bad_request(format!(
                    "telemetry instrument {name:?} refused: label \"plugin\" is reserved: it is set to the instrumenting plugin's name"
                )));
            }
            pairs.push((PLUGIN_LABEL, plugin));
        }
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        Ok(Described {
            name,
            help: desc.help.as_str(),
            unit: desc.unit.as_str(),
            names: pairs.iter().map(|p| p.0).collect(),
            values: pairs.iter().map(|p| p.1).collect(),
        })
    }

    /// Registers (or finds) the counter family and its series.
    pub(super) fn counter(&self, store: &MetricStore) -> Result<Counter, PluginError> {
        store
            .register_counter(self.name, self.help, &self.names)
            .and_then(|f| f.with_unit(self.unit))
            .and_then(|f| f.with_labels(&self.values))
            .map_err(|e| refused(self.name, &e))
    }

    /// Registers (or finds) the gauge family and its series.
    pub(super) fn gauge(&self, store: &MetricStore) -> Result<Gauge, PluginError> {
        store
            .register_gauge(self.name, self.help, &self.names)
            .and_then(|f| f.with_unit(self.unit))
            .and_then(|f| f.with_labels(&self.values))
            .map_err(|e| refused(self.name, &e))
    }

    /// Registers (or finds) the histogram family with these buckets and its
    /// series (other buckets for an existing family are refused).
    pub(super) fn histogram(
        &self,
        store: &MetricStore,
        buckets: &[f64],
    ) -> Result<Histogram, PluginError> {
        store
            .register_histogram(self.name, self.help, &self.names, buckets)
            .and_then(|f| f.with_unit(self.unit))
            .and_then(|f| f.with_labels(&self.values))
            .map_err(|e| refused(self.name, &e))
    }
}

/// A counter series as another plugin's handle holds it.
pub(super) struct ProviderCounter {
    series: Counter,
    shared: Arc<Shared>,
}

impl ProviderCounter {
    pub(super) fn new(series: Counter, shared: Arc<Shared>) -> Self {
        ProviderCounter { series, shared }
    }
}

impl CounterApi for ProviderCounter {
    #[inline]
    fn inc(&self) {
        if !self.shared.is_closed() {
            self.series.inc();
        }
    }

    #[inline]
    fn add(&self, value: f64) {
        if !self.shared.is_closed() {
            // Negative, NaN and infinite increments are ignored.
            self.series.inc_by(value);
        }
    }
}

/// A gauge series as another plugin's handle holds it.
pub(super) struct ProviderGauge {
    series: Gauge,
    shared: Arc<Shared>,
}

impl ProviderGauge {
    pub(super) fn new(series: Gauge, shared: Arc<Shared>) -> Self {
        ProviderGauge { series, shared }
    }
}

impl GaugeApi for ProviderGauge {
    #[inline]
    fn set(&self, value: f64) {
        if !self.shared.is_closed() && value.is_finite() {
            self.series.set(value);
        }
    }

    #[inline]
    fn add(&self, delta: f64) {
        if !self.shared.is_closed() && delta.is_finite() {
            self.series.add(delta);
        }
    }
}

/// A histogram series as another plugin's handle holds it.
pub(super) struct ProviderHistogram {
    series: Histogram,
    shared: Arc<Shared>,
}

impl ProviderHistogram {
    pub(super) fn new(series: Histogram, shared: Arc<Shared>) -> Self {
        ProviderHistogram { series, shared }
    }
}

impl HistogramApi for ProviderHistogram {
    #[inline]
    fn observe(&self, value: f64) {
        if !self.shared.is_closed() && value.is_finite() {
            self.series.observe(value);
        }
    }
}
