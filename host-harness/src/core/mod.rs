//! The host core: the runtime facilities plugins reach through their handle
//! (service registry, event bus, storage, modules, plugins, routes, logger),
//! each operation measured and reported to observers.
//!
//! [`HostCore`] is one type; its methods are grouped by concern, one file
//! each: `lifecycle` (startup trace, plugin state, revoking), `services`
//! (register and call services), `events` (subscribe, publish, deliver),
//! `storage`, `plugin_http` (plugin routes), `reports` (errors, stalls,
//! hangs, observer streams) and `info` (modules, host facts).

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use plugin_abi::PluginError;

use crate::bus::EventBus;
use crate::config::Config;
use crate::observer::ObserverHub;
use crate::plugins::breaker::CircuitChange;
use crate::plugins::invoke::InFlight;
use crate::plugins::routes::RouteTable;
use crate::plugins::{PluginInstance, PluginManager};
use crate::registry::ServiceRegistry;
use crate::storage::{Storage, StorageError};
use crate::tracecontext::{Sampler, SpanContext};

mod events;
mod info;
mod lifecycle;
mod plugin_http;
mod reports;
mod services;
mod storage;
mod telemetry;
#[cfg(test)]
mod tests;

pub use info::MODULES;
use lifecycle::StartupTrace;
pub use plugin_http::PluginHttpRequest;
pub use telemetry::{TelemetryHost, PROVIDER_PLUGIN};

/// Caller name used for calls that come in over HTTP.
pub static HTTP_CALLER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("http"));
/// [`HTTP_CALLER`] as a report name (static: no reference count).
pub const HTTP_NAME: crate::observer::Name = crate::observer::Name::Static(&"http");

/// Caller name used for the host itself.
pub static HOST_CALLER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("host"));

/// The host's version.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything the host runs.
pub struct HostCore {
    /// Resolved configuration.
    pub config: Config,
    /// When the host started.
    pub started_at: SystemTime,
    /// The tokio runtime (host side only; never passed to plugins).
    pub runtime: tokio::runtime::Handle,
    /// Persistent storage.
    pub storage: Storage,
    /// Service registry.
    pub registry: ServiceRegistry,
    /// Event bus.
    pub bus: EventBus,
    /// Observer stream.
    pub observers: ObserverHub,
    /// Plugin HTTP routes.
    pub routes: RouteTable,
    /// Plugins.
    pub plugins: PluginManager,
    /// Plugin callbacks in progress.
    pub inflight: Arc<InFlight>,
    /// Root sampling of new traces (`host.trace_sample_ratio`).
    pub sampler: Sampler,
    /// The telemetry slot and the instance whose provider it holds.
    pub telemetry: TelemetryHost,
    /// Circuit state changes of every plugin, in order, until the
    /// watchdog publishes them.
    circuit_changes: (
        crossbeam_channel::Sender<CircuitChange>,
        crossbeam_channel::Receiver<CircuitChange>,
    ),
    /// The startup trace while the initial plugin scan runs.
    startup: parking_lot::Mutex<Option<StartupTrace>>,
    /// The typed host facts given to plugins, built (and leaked: a
    /// prefix type lives behind a `'static` reference) once.
    info: std::sync::OnceLock<plugin_abi::HostInfo_Ref>,
}

impl HostCore {
    /// Builds the core; opens storage.
    pub fn new(
        config: Config,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<HostCore>, StorageError> {
        let storage = Storage::open(&config.data_dir)?;
        let config_ratio = config.host.trace_sample_ratio;
        Ok(Arc::new(HostCore {
            bus: EventBus::new(config.host.event_queue_capacity)
                .with_max_bytes(config.host.event_queue_bytes),
            observers: ObserverHub::new(
                config.host.observer_queue_capacity,
                std::time::Duration::from_millis(config.host.observer_flush_ms),
            )
            .with_max_bytes(config.host.observer_queue_bytes),
            config,
            started_at: SystemTime::now(),
            runtime,
            storage,
            registry: ServiceRegistry::default(),
            routes: RouteTable::default(),
            plugins: PluginManager::default(),
            inflight: Arc::new(InFlight::default()),
            sampler: Sampler::new(config_ratio),
            telemetry: TelemetryHost::default(),
            circuit_changes: crossbeam_channel::unbounded(),
            startup: parking_lot::Mutex::new(None),
            info: std::sync::OnceLock::new(),
        }))
    }

    /// A live plugin instance by id, or `Unavailable` (it was stopped or
    /// replaced).
    pub fn live_instance(&self, id: u64) -> Result<Arc<PluginInstance>, PluginError> {
        self.plugins
            .live(id)
            .ok_or_else(|| PluginError::unavailable("plugin instance is not live"))
    }

    /// A new span for a host operation: child of `parent`, else a new root.
    #[inline]
    pub fn new_span(&self, parent: Option<&SpanContext>) -> SpanContext {
        SpanContext::child_or_root(parent, &self.sampler)
    }
}
