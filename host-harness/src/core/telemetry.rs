//! The host's telemetry slot and who may fill it.
//!
//! The host owns one [`TelemetrySlot`] for its whole life; every plugin's
//! handle reads the same one (`HostApi::telemetry_slot`). Only the plugin
//! named [`PROVIDER_PLUGIN`] may install a provider, and the host remembers
//! which instance did: when that instance stops, its provider is removed
//! and closed, unless a newer instance (a replacement, started before the
//! old one stops) has already installed its own. Libraries stay mapped, so a
//! closed provider's instruments stay callable (as no-ops) until every
//! handle has rebound (docs/telemetry-design.md, section 3).

use abi_stable::std_types::RArc;
use parking_lot::Mutex;
use plugin_abi::telemetry::{ProviderBox, TelemetrySlot};
use plugin_abi::{ErrorKind, PluginError};

/// The plugin allowed to install the telemetry provider.
pub const PROVIDER_PLUGIN: &str = "monitoring";

/// The slot and the instance whose provider it holds.
#[derive(Default)]
pub struct TelemetryHost {
    slot: RArc<TelemetrySlot>,
    owner: Mutex<Option<u64>>,
}

impl TelemetryHost {
    /// The slot every plugin reads.
    pub fn slot(&self) -> RArc<TelemetrySlot> {
        self.slot.clone()
    }

    /// Installs `provider` for `instance` of plugin `plugin`; closes the
    /// provider it replaces.
    pub fn install(
        &self,
        plugin: &str,
        instance: u64,
        provider: ProviderBox,
    ) -> Result<(), PluginError> {
        if plugin != PROVIDER_PLUGIN {
            return Err(PluginError::new(
                ErrorKind::Unauthorized,
                format!(
                    "plugin {plugin} may not install the telemetry provider: only plugin {PROVIDER_PLUGIN} may"
                ),
            ));
        }
        let mut owner = self.owner.lock();
        let old = self.slot.install(provider);
        *owner = Some(instance);
        drop(owner);
        if let Some(old) = old {
            old.close();
        }
        Ok(())
    }

    /// `instance` stopped: drops the health checks it registered through
    /// its host handle (guards it leaked included), and removes and closes
    /// its provider if the slot still holds it. Returns whether it removed
    /// a provider.
    pub fn release(&self, instance: u64) -> bool {
        self.slot.remove_health_checks_of(instance);
        let mut owner = self.owner.lock();
        if *owner != Some(instance) {
            return false;
        }
        *owner = None;
        let old = self.slot.remove();
        drop(owner);
        if let Some(old) = old {
            old.close();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{ROption, RResult, RSlice, RStr};
    use plugin_abi::telemetry::{
        AttrValue, CounterApi, CounterApi_TO, CounterBox, GaugeBox, HistogramBox, InstrumentDesc,
        InstrumentOpts, SpanApi, SpanApi_TO, SpanBox, SpanKind, SpanStatus, Tag, Telemetry,
        TelemetryProvider, TelemetryProvider_TO,
    };
    use plugin_abi::TraceContext;

    use super::*;

    /// A provider that counts every counter increment and knows whether
    /// the host closed it.
    #[derive(Clone, Default)]
    struct Probe {
        count: Arc<AtomicU64>,
        closed: Arc<AtomicBool>,
    }

    struct ProbeCounter(Probe);

    impl CounterApi for ProbeCounter {
        fn inc(&self) {
            if !self.0.closed.load(Ordering::Relaxed) {
                self.0.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn add(&self, _value: f64) {}
    }

    struct ProbeSpan;

    impl SpanApi for ProbeSpan {
        fn context(&self) -> TraceContext {
            TraceContext::new_root(&plugin_abi::Sampler::always_on())
        }
        fn set_attribute(&mut self, _key: RStr<'_>, _value: AttrValue<'_>) {}
        fn set_status(&mut self, _status: SpanStatus, _message: RStr<'_>) {}
        fn end(&mut self) {}
    }

    fn refused<T>() -> RResult<T, PluginError> {
        RResult::RErr(PluginError::unavailable("not in this probe"))
    }

    impl TelemetryProvider for Probe {
        fn counter(&self, _desc: InstrumentDesc<'_>) -> RResult<CounterBox, PluginError> {
            RResult::ROk(CounterApi_TO::from_value(
                ProbeCounter(self.clone()),
                TD_Opaque,
            ))
        }
        fn gauge(&self, _desc: InstrumentDesc<'_>) -> RResult<GaugeBox, PluginError> {
            refused()
        }
        fn histogram(
            &self,
            _desc: InstrumentDesc<'_>,
            _buckets: RSlice<'_, f64>,
        ) -> RResult<HistogramBox, PluginError> {
            refused()
        }
        fn start_span(
            &self,
            _name: RStr<'_>,
            _kind: SpanKind,
            _parent: ROption<TraceContext>,
        ) -> SpanBox {
            SpanApi_TO::from_value(ProbeSpan, TD_Opaque)
        }
        fn capture_error(
            &self,
            _message: RStr<'_>,
            _tags: RSlice<'_, Tag<'_>>,
            _context: ROption<TraceContext>,
        ) {
        }
        fn scoped(&self, _plugin: RStr<'_>) -> ProviderBox {
            self.boxed()
        }
        fn close(&self) {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    impl Probe {
        fn boxed(&self) -> ProviderBox {
            TelemetryProvider_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
        }
        fn count(&self) -> u64 {
            self.count.load(Ordering::Relaxed)
        }
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn a_stopped_instance_loses_its_health_checks_even_with_a_leaked_guard() {
        use plugin_abi::telemetry::HealthCheckApi_TO;
        use plugin_abi::HealthReport;

        #[derive(Clone)]
        struct Fine;
        impl plugin_abi::telemetry::HealthCheckApi for Fine {
            fn check(&self) -> HealthReport {
                HealthReport::healthy()
            }
        }
        let check = || HealthCheckApi_TO::from_ptr(RArc::new(Fine), TD_Opaque);
        let host = TelemetryHost::default();
        let slot = host.slot();
        slot.register_health_check_for(3, "demo", "disk", check());
        slot.register_health_check_for(3, "demo", "radio", check());
        slot.register_health_check_for(4, "other", "disk", check());
        // Instance 3 "leaks" its guards: nothing unregisters them but the host.
        assert!(!host.release(3), "instance 3 owned no provider");
        let left: Vec<(String, String)> = slot
            .health_checks()
            .into_iter()
            .map(|c| (c.plugin, c.name))
            .collect();
        assert_eq!(left, vec![("other".to_owned(), "disk".to_owned())]);
    }

    #[test]
    fn only_the_provider_plugin_may_install() {
        let host = TelemetryHost::default();
        let probe = Probe::default();
        let err = host.install("demo-devices", 7, probe.boxed()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(err.message.contains("only plugin monitoring"), "{err}");
        assert!(!host.slot().has_provider());
        assert_eq!(host.slot().generation(), 0);
        assert!(!host.release(7), "a refused instance owns nothing");
    }

    #[test]
    fn a_replacement_takes_over_and_the_old_instances_stop_leaves_it_in_place() {
        let host = TelemetryHost::default();
        let telemetry = Telemetry::new(host.slot());
        let counter = telemetry
            .counter(InstrumentOpts::new("greetings_total", "Greetings."))
            .unwrap();
        counter.inc(); // no provider yet: a no-op

        let (old, new) = (Probe::default(), Probe::default());
        host.install(PROVIDER_PLUGIN, 1, old.boxed()).unwrap();
        counter.inc();
        assert_eq!(old.count(), 1);

        // The replacement starts (installs) before the old instance stops.
        host.install(PROVIDER_PLUGIN, 2, new.boxed()).unwrap();
        assert!(old.is_closed(), "the host closes the provider it replaced");
        counter.inc();
        assert!(!host.release(1), "the old instance no longer owns the slot");
        assert!(!new.is_closed());
        counter.inc();
        assert_eq!((old.count(), new.count()), (1, 2));

        // The owner stops: removed, closed, handles become no-ops.
        let generation = host.slot().generation();
        assert!(host.release(2));
        assert!(new.is_closed());
        assert!(!host.slot().has_provider());
        assert!(host.slot().generation() > generation);
        counter.inc();
        assert!(!counter.is_live());
        assert_eq!((old.count(), new.count()), (1, 2));
    }
}
