//! The monitoring plugin as the host's telemetry provider: what other
//! plugins' `plugin_abi::telemetry` handles, spans, captured errors and
//! health checks turn into here.
//!
//! Exists so a plugin that instruments itself pays one call through a
//! vtable per measurement instead of a JSON service call: a counter handle
//! holds the series' atomic cell in this plugin's metric store (the same
//! store `monitoring.record_metric` and the observer stream feed), a span
//! goes to the same trace sink as the spans this plugin makes from
//! observations, a captured error to the same issue store as
//! `monitoring.capture_*`. The host's slot holds the provider
//! (`host-harness/src/core/telemetry.rs`); health checks registered through
//! the slot are run by the health checker, not here.
//!
//! Layout: this file has the [`Provider`] (creation of instruments, spans,
//! errors; closing); `instruments.rs` the instrument objects and the
//! descriptor checks; `span.rs` the span objects; `capability.rs` installs
//! the provider when the plugin starts and closes it when it stops.

pub mod capability;
mod instruments;
mod span;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RResult, RSlice, RStr};
use plugin_abi::telemetry::{
    CounterApi_TO, CounterBox, GaugeApi_TO, GaugeBox, HistogramApi_TO, HistogramBox,
    InstrumentDesc, ProviderBox, SpanBox, SpanKind, Tag, TelemetryProvider, TelemetryProvider_TO,
};
use plugin_abi::{PluginError, Sampler, TraceContext};

use crate::error_tracking::{ErrorEvent, Level};
use crate::metrics::{MetricStore, DEFAULT_SECONDS_BUCKETS};
use crate::tracing::SpanSink;

use instruments::{Described, ProviderCounter, ProviderGauge, ProviderHistogram};

/// Where captured errors go (the error-tracking capability's recorder).
pub type ErrorSink = Arc<dyn Fn(ErrorEvent) + Send + Sync>;

/// The tag of a captured error that sets its level (`error` by default).
pub const LEVEL_TAG: &str = "level";

/// The plugin name of spans and errors from telemetry that did not say
/// which plugin it belongs to.
const UNKNOWN_PLUGIN: &str = "unknown";

/// What every view of one provider shares: the stores and the closed flag.
pub(crate) struct Shared {
    store: Arc<MetricStore>,
    spans: Arc<dyn SpanSink>,
    errors: ErrorSink,
    sampler: Sampler,
    closed: AtomicBool,
    /// [`UNKNOWN_PLUGIN`], shared by the unscoped view's spans.
    unknown: Arc<str>,
}

impl Shared {
    /// Whether the provider was closed (its objects then do nothing).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// The telemetry provider. Cheap to clone; every clone and every
/// [`scoped`](TelemetryProvider::scoped) view shares one closed flag.
#[derive(Clone)]
pub struct Provider {
    shared: Arc<Shared>,
    /// The plugin this view belongs to (`None`: the unscoped provider).
    plugin: Option<Arc<str>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("plugin", &self.plugin)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider over these stores; new root spans are sampled by
    /// `sampler` (the host's `trace_sample_ratio`).
    pub fn new(
        store: Arc<MetricStore>,
        spans: Arc<dyn SpanSink>,
        errors: ErrorSink,
        sampler: Sampler,
    ) -> Self {
        Provider {
            shared: Arc::new(Shared {
                store,
                spans,
                errors,
                sampler,
                closed: AtomicBool::new(false),
                unknown: UNKNOWN_PLUGIN.into(),
            }),
            plugin: None,
        }
    }

    /// The provider as the ABI object the host's slot holds.
    pub fn boxed(&self) -> ProviderBox {
        TelemetryProvider_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// Opens a closed provider again (the plugin started again after a
    /// stop, with the same stores).
    pub(crate) fn reopen(&self) {
        self.shared.closed.store(false, Ordering::Relaxed);
    }

    /// Whether [`close`](TelemetryProvider::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    fn closed_error(&self, desc: &InstrumentDesc<'_>) -> PluginError {
        PluginError::unavailable(format!(
            "telemetry instrument {}: the monitoring provider is closed",
            desc.name
        ))
    }

    fn plugin_name(&self) -> &str {
        self.plugin.as_deref().unwrap_or(UNKNOWN_PLUGIN)
    }
}

impl TelemetryProvider for Provider {
    fn counter(&self, desc: InstrumentDesc<'_>) -> RResult<CounterBox, PluginError> {
        if self.is_closed() {
            return RResult::RErr(self.closed_error(&desc));
        }
        let described = Described::new(&self.shared.store, &desc, self.plugin.as_deref());
        described
            .and_then(|d| d.counter(&self.shared.store))
            .map(|series| {
                let object = ProviderCounter::new(series, self.shared.clone());
                CounterApi_TO::from_value(object, TD_Opaque)
            })
            .into()
    }

    fn gauge(&self, desc: InstrumentDesc<'_>) -> RResult<GaugeBox, PluginError> {
        if self.is_closed() {
            return RResult::RErr(self.closed_error(&desc));
        }
        Described::new(&self.shared.store, &desc, self.plugin.as_deref())
            .and_then(|d| d.gauge(&self.shared.store))
            .map(|series| {
                let object = ProviderGauge::new(series, self.shared.clone());
                GaugeApi_TO::from_value(object, TD_Opaque)
            })
            .into()
    }

    fn histogram(
        &self,
        desc: InstrumentDesc<'_>,
        buckets: RSlice<'_, f64>,
    ) -> RResult<HistogramBox, PluginError> {
        if self.is_closed() {
            return RResult::RErr(self.closed_error(&desc));
        }
        let buckets: &[f64] = if buckets.is_empty() {
            &DEFAULT_SECONDS_BUCKETS
        } else {
            buckets.as_slice()
        };
        Described::new(&self.shared.store, &desc, self.plugin.as_deref())
            .and_then(|d| d.histogram(&self.shared.store, buckets))
            .map(|series| {
                let object = ProviderHistogram::new(series, self.shared.clone());
                HistogramApi_TO::from_value(object, TD_Opaque)
            })
            .into()
    }

    fn start_span(&self, name: RStr<'_>, kind: SpanKind, parent: ROption<TraceContext>) -> SpanBox {
        span::start(
            &self.shared,
            self.plugin.as_ref().unwrap_or(&self.shared.unknown),
            name.as_str(),
            kind,
            parent.into_option(),
        )
    }

    fn capture_error(
        &self,
        message: RStr<'_>,
        tags: RSlice<'_, Tag<'_>>,
        context: ROption<TraceContext>,
    ) {
        if self.is_closed() {
            return;
        }
        let level = tags
            .iter()
            .find(|t| t.key.as_str() == LEVEL_TAG)
            .map_or(Level::Error, |t| Level::parse_lenient(t.value.as_str()));
        let mut event = ErrorEvent::message(self.plugin_name(), level, message.as_str());
        event.tags = tags
            .iter()
            .filter(|t| t.key.as_str() != LEVEL_TAG)
            .map(|t| (t.key.to_string(), t.value.to_string()))
            .collect();
        event.tags.insert("reported_via".into(), "telemetry".into());
        event.trace_id = context
            .into_option()
            .filter(|c| c.trace_id != [0; 16])
            .map(|c| c.trace_id_hex());
        event.enforce_limits();
        (self.shared.errors)(event);
    }

    fn scoped(&self, plugin: RStr<'_>) -> ProviderBox {
        Provider {
            shared: self.shared.clone(),
            plugin: Some(plugin.as_str().into()),
        }
        .boxed()
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}
