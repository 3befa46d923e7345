//! Plugin life cycle as the host reports it: the startup trace (life-cycle
//! spans held back until the initial scan ends), plugin state changes and
//! circuit changes published as `internal.plugin.*` events, and revoking
//! what a stopped instance registered.

use std::sync::Arc;
use std::time::Instant;

use plugin_abi::{CallStatus, ObservationKind};
use serde_json::json;

use super::{HostCore, HOST_CALLER};
use crate::logger;
use crate::observer::Report;
use crate::plugins::breaker::{CircuitChange, CircuitState};
use crate::plugins::PluginInstance;
use crate::tracecontext::SpanContext;

/// The host's startup trace: its life-cycle reports are held back until the
/// initial scan ends, so an observer that starts late (the monitoring plugin
/// loads after other plugins) still sees every plugin's load and start.
pub(super) struct StartupTrace {
    root: SpanContext,
    started: Instant,
    reports: Vec<Report>,
}

/// Most life-cycle reports held back during startup.
const MAX_STARTUP_REPORTS: usize = 4_096;

impl HostCore {
    /// Where plugin breakers send their state changes.
    pub fn circuit_sender(&self) -> crossbeam_channel::Sender<CircuitChange> {
        self.circuit_changes.0.clone()
    }

    /// Logs and publishes pending circuit state changes, in order, as
    /// `internal.plugin.circuit` events (called by the watchdog).
    pub fn publish_circuit_changes(&self) {
        for change in self.circuit_changes.1.try_iter() {
            let t = &change.transition;
            let generation = self.plugins.live(change.instance).map(|i| i.generation);
            let fields = json!({"name": &*change.plugin, "generation": generation,
                   "state": t.to.as_str(), "previous": t.from.as_str(), "reason": t.reason,
                   "since_ms": change.since_ms, "next_retry_ms": change.next_retry_ms,
                   "cooldown_ms": change.cooldown_ms});
            let message = match t.to {
                CircuitState::Open => "plugin circuit opened",
                CircuitState::HalfOpen => "plugin circuit half-open",
                CircuitState::Closed => "plugin circuit closed",
            };
            if t.to == CircuitState::Open {
                logger::warn("circuit", message, fields.clone());
            } else {
                logger::info("circuit", message, fields.clone());
            }
            self.publish_internal("internal.plugin.circuit", fields);
        }
    }

    /// Tells observers and the bus that a plugin changed state.
    pub fn plugin_state_changed(&self, instance: &PluginInstance, state: &str) {
        let error = instance.error();
        if self.observers.is_active() {
            let status = if state == "error" {
                CallStatus::Error
            } else {
                CallStatus::Ok
            };
            let mut r = Report::new(
                ObservationKind::PluginState,
                status,
                instance.name.clone(),
                HOST_CALLER.clone(),
            );
            r.detail = Some(crate::observer::Name::Shared(Arc::from(state)));
            r.set_message(error.clone());
            self.observers.report(r);
        }
        self.publish_internal(
            &format!("internal.plugin.{state}"),
            json!({"name": &*instance.name, "generation": instance.generation,
                   "version": instance.version, "file": instance.file.display().to_string(), "error": error}),
        );
    }

    /// Starts the startup trace: returns its root span, to be made current
    /// on the thread that runs the initial plugin scan.
    pub fn begin_startup(&self) -> SpanContext {
        let root = SpanContext::new_root(&self.sampler);
        *self.startup.lock() = Some(StartupTrace {
            root,
            started: Instant::now(),
            reports: Vec::new(),
        });
        root
    }

    /// Ends the startup trace: reports the held-back life-cycle spans and
    /// the root (`PluginState`, `name` = `host`, `detail` = `startup`).
    pub fn end_startup(&self) {
        let Some(trace) = self.startup.lock().take() else {
            return;
        };
        if !self.observers.is_active() {
            return;
        }
        for r in trace.reports {
            self.observers.report(r);
        }
        let mut root = Report::timed(
            ObservationKind::PluginState,
            CallStatus::Ok,
            HOST_CALLER.clone(),
            HOST_CALLER.clone(),
            trace.started,
        )
        .with_span(Some(trace.root), None);
        root.detail = Some(crate::observer::Name::Shared(Arc::from("startup")));
        self.observers.report(root);
    }

    /// Reports one timed plugin life-cycle step (`load` covers loading,
    /// constructing and starting; `start` is its child) as a span: a
    /// `PluginState` observation with `detail` = the step, `duration_ns` and
    /// a trace context. Held back while the startup trace is open.
    pub fn report_lifecycle(
        &self,
        step: &'static str,
        plugin: &Arc<str>,
        span: SpanContext,
        parent: Option<&SpanContext>,
        duration: std::time::Duration,
        error: Option<String>,
    ) {
        let mut r = Report::new(
            ObservationKind::PluginState,
            if error.is_some() {
                CallStatus::Error
            } else {
                CallStatus::Ok
            },
            plugin.clone(),
            HOST_CALLER.clone(),
        )
        .with_span(Some(span), parent);
        r.detail = Some(crate::observer::Name::Shared(Arc::from(step)));
        r.duration_ns = duration.as_nanos() as u64;
        r.set_message(error);
        {
            let mut startup = self.startup.lock();
            if let Some(trace) = startup.as_mut() {
                if trace.reports.len() < MAX_STARTUP_REPORTS {
                    trace.reports.push(r);
                }
                return;
            }
        }
        if self.observers.is_active() {
            self.observers.report(r);
        }
    }

    /// Revokes everything an instance registered.
    pub fn revoke_instance(&self, instance: &PluginInstance) {
        for service in self.registry.remove_instance(instance.id) {
            self.publish_internal(
                "internal.service.unregistered",
                json!({"service": service, "plugin": &*instance.name}),
            );
        }
        self.routes.remove_instance(instance.id);
        self.bus.remove_owner(instance.id);
        self.observers.remove(instance.id);
        self.telemetry.release(instance.id);
    }
}
