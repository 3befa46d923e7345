//! The seam between the plugin's life cycle and its capabilities (metrics,
//! health, alerting, error tracking, tracing, profiling, dashboard): each
//! capability declares its services, routes and subscriptions and receives
//! the callbacks it cares about, so the module that drives the life cycle
//! only dispatches. This file names no capability: the list of them is
//! `capabilities.rs`, which only the root imports.

use std::sync::Arc;

use plugin_abi::{Event, Host, HttpRequest, HttpResponse, Observation, PluginError, ServiceCall};
use serde_json::Value;

use crate::config::MonitoringConfig;
use crate::metrics::collector::MetricsCollector;
use crate::store::{HostKv, KvStore};

/// The plugin's name as the host knows it.
pub const PLUGIN_NAME: &str = "monitoring";

/// What every capability gets at construction.
#[derive(Clone)]
pub struct Ctx {
    /// Handle to the host.
    pub host: Host,
    /// The plugin configuration.
    pub config: Arc<MonitoringConfig>,
    /// The plugin's metrics.
    pub collector: Arc<MetricsCollector>,
}

impl Ctx {
    /// A last-error slot for one outbound client whose new errors are
    /// logged as warnings with `what` in front.
    pub fn last_error(&self, what: &str) -> crate::outbound::LastError {
        let host = self.host.clone();
        let what = what.to_owned();
        crate::outbound::LastError::logging_to(Arc::new(move |m: &str| {
            host.warn(&format!("{what}: {m}"));
        }))
    }

    /// Host storage in `namespace`.
    pub fn kv(&self, namespace: &str) -> Arc<dyn KvStore> {
        Arc::new(HostKv::new(self.host.clone(), namespace))
    }
}

/// An HTTP route a capability answers.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Method.
    pub method: &'static str,
    /// Path (matchit syntax: `{param}`, final `{*rest}`).
    pub path: &'static str,
    /// Handler deadline in ms (0 = host default).
    pub timeout_ms: u64,
}

impl Route {
    /// A route with the host's default deadline.
    pub const fn new(method: &'static str, path: &'static str) -> Self {
        Route {
            method,
            path,
            timeout_ms: 0,
        }
    }
}

/// One capability of the monitoring plugin. Every method has a no-op
/// default; callbacks must not block for long (the host times them).
pub trait Capability: Send + Sync {
    /// Short name, for logs and status.
    fn name(&self) -> &'static str;

    /// Services to register: (name, description).
    fn services(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    /// HTTP routes to register.
    fn routes(&self) -> Vec<Route> {
        Vec::new()
    }

    /// Extra bus subscriptions (the module already subscribes `internal.*`
    /// and forwards those events to every capability).
    fn subscriptions(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Called once after registration; start threads here.
    fn start(&self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Stop threads and join them.
    fn stop(&self) {}

    /// Handles a service call if it is one of this capability's.
    fn handle_service(&self, _call: &ServiceCall<'_>) -> Option<Result<Value, PluginError>> {
        None
    }

    /// Handles an HTTP request if it is one of this capability's routes.
    fn handle_http(&self, _request: &HttpRequest) -> Option<HttpResponse> {
        None
    }

    /// Receives every event the plugin gets.
    fn on_event(&self, _event: &Event) {}

    /// Receives every observer batch.
    fn on_observations(&self, _batch: &[Observation]) {}

    /// Host tick (default every second).
    fn tick(&self, _now_unix_ms: u64) {}

    /// A health round finished (the tracing capability turns it into spans).
    fn on_health_round(&self, _snapshot: &crate::health::checker::Snapshot) {}

    /// Facts for `/api/v1/monitoring/status`, under `capabilities.<name>`.
    fn status(&self) -> Value {
        Value::Null
    }

    /// Facts this capability puts at the top level of
    /// `/api/v1/monitoring/status` (where clients have always read them,
    /// e.g. `series`, `custom_health_checks`).
    fn status_fields(&self) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }
}
