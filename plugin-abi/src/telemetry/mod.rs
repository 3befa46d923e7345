//! The telemetry API for plugin authors: counters, gauges, histograms,
//! spans, error capture and health checks that cost one FFI call per use
//! and do nothing until a provider (the monitoring plugin) is installed.
//!
//! It is the OpenTelemetry API/SDK split carried across the stable ABI:
//! plugins depend on this thin API ([`Telemetry`] and the handles it
//! creates); the provider implements [`TelemetryProvider`]; the host owns a
//! [`TelemetrySlot`] holding the current provider and a generation number.
//! Handles cache the object they got from the provider for one generation
//! and rebind when the generation moves (see `binding.rs`), so a plugin
//! keeps its handles while the monitoring plugin is stopped, started or
//! replaced.
//!
//! Layout: `abi.rs` — the ABI-stable provider interface and the slot;
//! `binding.rs` — the generation check and rebinding; `instruments.rs` —
//! counter, gauge, histogram; `span.rs` — the span guard; `error.rs` —
//! descriptor errors. This file has the [`Telemetry`] factory and the
//! health-check registration.

pub(crate) mod abi;
mod binding;
mod error;
mod instruments;
mod span;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RSlice, RStr, RString};

pub use abi::{
    AttrValue, CounterApi, CounterApi_TO, CounterBox, GaugeApi, GaugeApi_TO, GaugeBox,
    HealthCheckApi, HealthCheckApi_TO, HealthCheckBox, HistogramApi, HistogramApi_TO, HistogramBox,
    InstrumentDesc, ProviderBox, RegisteredCheck, SpanApi, SpanApi_TO, SpanBox, SpanKind,
    SpanStatus, Tag, TelemetryProvider, TelemetryProvider_TO, TelemetrySlot,
};
pub use error::TelemetryError;
pub use instruments::{Counter, Gauge, Histogram, InstrumentOpts};
pub use span::Span;

use crate::ffi::HostHandle;
use crate::trace_context::TraceContext;
use crate::types::{HealthReport, HealthStatus};
use binding::{Bound, Resolve, Scope};

/// The provider itself (scoped to the plugin when the name is known),
/// re-resolved like an instrument (for spans and errors, which have no
/// long-lived object of their own).
struct ProviderRef(Scope);

impl Resolve for ProviderRef {
    type Object = ProviderBox;
    fn resolve(&self, provider: &ProviderBox) -> Result<ProviderBox, crate::PluginError> {
        Ok(self.0.apply(provider, Clone::clone))
    }
}

/// Creates instruments and spans; cheap to clone.
///
/// Built by the plugin's host handle (`Host::telemetry`, which names the
/// plugin and registers health checks through the host), from a bare slot
/// (`Telemetry::new`, tests and tools), or, where there is no host, as
/// [`Telemetry::disabled`]: everything a no-op.
#[derive(Clone)]
pub struct Telemetry {
    slot: Option<RArc<TelemetrySlot>>,
    scope: Scope,
    host: Option<HostHandle>,
    provider: Arc<Bound<ProviderRef>>,
}

impl Telemetry {
    /// Telemetry through the host's slot, for no plugin in particular
    /// (instruments get no `plugin` label; health checks are not tied to
    /// a plugin instance).
    pub fn new(slot: RArc<TelemetrySlot>) -> Self {
        Self::build(Some(slot), Scope::default(), None)
    }

    /// Telemetry of the plugin `host` belongs to: the provider sees the
    /// plugin's name (its instruments carry `plugin="<name>"`, its spans
    /// and errors name it) and health checks are registered through the
    /// host, which drops them when the plugin stops.
    pub fn for_host(host: &HostHandle) -> Self {
        let plugin: Arc<str> = host.plugin_name().as_str().into();
        Self::build(
            Some(host.telemetry_slot()),
            Scope(Some(plugin)),
            Some(host.clone()),
        )
    }

    /// Telemetry that records nothing, ever.
    pub fn disabled() -> Self {
        Self::build(None, Scope::default(), None)
    }

    fn build(slot: Option<RArc<TelemetrySlot>>, scope: Scope, host: Option<HostHandle>) -> Self {
        Telemetry {
            provider: Arc::new(Bound::new(slot.clone(), ProviderRef(scope.clone()))),
            slot,
            scope,
            host,
        }
    }

    /// The plugin this telemetry belongs to, when built from its host handle.
    pub fn plugin(&self) -> Option<&str> {
        self.scope.0.as_deref()
    }

    /// Whether a provider is installed right now.
    pub fn has_provider(&self) -> bool {
        self.provider.is_live()
    }

    /// A counter handle.
    pub fn counter(&self, opts: InstrumentOpts) -> Result<Counter, TelemetryError> {
        Counter::new(self.slot.clone(), self.scope.clone(), opts)
    }

    /// A gauge handle.
    pub fn gauge(&self, opts: InstrumentOpts) -> Result<Gauge, TelemetryError> {
        Gauge::new(self.slot.clone(), self.scope.clone(), opts)
    }

    /// A histogram handle with these upper bucket bounds (strictly
    /// ascending; empty = the provider's default buckets).
    pub fn histogram(
        &self,
        opts: InstrumentOpts,
        buckets: &[f64],
    ) -> Result<Histogram, TelemetryError> {
        Histogram::new(self.slot.clone(), self.scope.clone(), opts, buckets)
    }

    /// Starts a span, a child of `parent` when given (else a new root the
    /// provider samples). Ends when the guard is dropped.
    pub fn span(&self, name: &str, kind: SpanKind, parent: Option<TraceContext>) -> Span {
        let inner = self
            .provider
            .with(|p| p.start_span(RStr::from_str(name), kind, ROption::from(parent)));
        Span::new(inner, parent)
    }

    /// Records an error with tags, linked to a trace when `context` is set.
    pub fn capture_error(&self, message: &str, tags: &[Tag<'_>], context: Option<TraceContext>) {
        self.provider.with(|p| {
            p.capture_error(
                RStr::from_str(message),
                RSlice::from_slice(tags),
                ROption::from(context),
            )
        });
    }

    /// Registers a health check with the host's slot (it outlives provider
    /// generations). A panic in `check` is reported as `Unhealthy`. The
    /// check is removed when the returned guard is dropped, and, when this
    /// telemetry came from a host handle, when the plugin stops.
    pub fn register_health_check<F>(&self, name: &str, check: F) -> HealthCheckGuard
    where
        F: Fn() -> HealthReport + Send + Sync + 'static,
    {
        let id = self.slot.as_ref().map(|slot| {
            let object =
                HealthCheckApi_TO::from_ptr(RArc::new(FnCheck(Arc::new(check))), TD_Opaque);
            match &self.host {
                Some(host) => host.register_health_check(RStr::from_str(name), object),
                None => slot.register_health_check(name, object),
            }
        });
        HealthCheckGuard {
            slot: self.slot.clone(),
            id,
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("slot", &self.slot.as_deref())
            .field("plugin", &self.plugin())
            .finish()
    }
}

/// A health check closure as an ABI object (cloned by sharing it).
struct FnCheck<F>(Arc<F>);

impl<F> Clone for FnCheck<F> {
    fn clone(&self) -> Self {
        FnCheck(Arc::clone(&self.0))
    }
}

impl<F> HealthCheckApi for FnCheck<F>
where
    F: Fn() -> HealthReport + Send + Sync + 'static,
{
    fn check(&self) -> HealthReport {
        catch_unwind(AssertUnwindSafe(&*self.0)).unwrap_or_else(|_| HealthReport {
            status: HealthStatus::Unhealthy,
            message: RString::from("health check panicked"),
        })
    }
}

/// Keeps a health check registered; unregisters it when dropped.
#[must_use = "the health check is removed when this guard is dropped"]
#[derive(Debug)]
pub struct HealthCheckGuard {
    slot: Option<RArc<TelemetrySlot>>,
    id: Option<u64>,
}

impl Drop for HealthCheckGuard {
    fn drop(&mut self) {
        if let (Some(slot), Some(id)) = (&self.slot, self.id) {
            slot.unregister_health_check(id);
        }
    }
}
