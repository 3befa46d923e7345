//! The host core: the runtime facilities plugins reach through their handle
//! (service registry, event bus, storage, modules, plugins, routes, logger),
//! each operation measured and reported to observers.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use abi_stable::std_types::{ROption, RSlice, RString, RVec, Tuple2};
use once_cell::sync::Lazy;
use plugin_abi::{
    CallStatus, ErrorKind, Event, HttpRequest, HttpResponse, ObservationKind, PluginError,
    PluginState,
};
use serde_json::{json, Value};

use crate::bus::{BusEvent, Delivery, EventBus, PublishOutcome};
use crate::config::Config;
use crate::logger;
use crate::observer::{ObserverHub, Report};
use crate::plugins::breaker::{CircuitChange, CircuitState};
use crate::plugins::chain::CallChain;
use crate::plugins::invoke::{
    admit, admit_inline, invoke_async, invoke_sync, run_admitted, Call, HungCall, InFlight, Refused,
};
use crate::plugins::routes::RouteTable;
use crate::plugins::{PluginInstance, PluginManager};
use crate::registry::ServiceRegistry;
use crate::storage::{Storage, StorageError};
use crate::tracecontext::{self, Sampler, SpanContext, TRACEPARENT_LEN};

/// Caller name used for calls that come in over HTTP.
pub static HTTP_CALLER: Lazy<Arc<str>> = Lazy::new(|| Arc::from("http"));
/// [`HTTP_CALLER`] as a report name (static: no reference count).
pub const HTTP_NAME: crate::observer::Name = crate::observer::Name::Static("http");

/// Caller name used for the host itself.
pub static HOST_CALLER: Lazy<Arc<str>> = Lazy::new(|| Arc::from("host"));

static OP_GET: Lazy<Arc<str>> = Lazy::new(|| Arc::from("get"));
static OP_SET: Lazy<Arc<str>> = Lazy::new(|| Arc::from("set"));
static OP_DELETE: Lazy<Arc<str>> = Lazy::new(|| Arc::from("delete"));
static OP_LIST: Lazy<Arc<str>> = Lazy::new(|| Arc::from("list"));

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
    /// Circuit state changes of every plugin, in order, until the
    /// watchdog publishes them.
    circuit_changes: (
        crossbeam_channel::Sender<CircuitChange>,
        crossbeam_channel::Receiver<CircuitChange>,
    ),
    /// The startup trace while the initial plugin scan runs.
    startup: parking_lot::Mutex<Option<StartupTrace>>,
}

/// The host's startup trace: its life-cycle reports are held back until the
/// initial scan ends, so an observer that starts late (the monitoring plugin
/// loads after other plugins) still sees every plugin's load and start.
struct StartupTrace {
    root: SpanContext,
    started: Instant,
    reports: Vec<Report>,
}

/// Most life-cycle reports held back during startup.
const MAX_STARTUP_REPORTS: usize = 4_096;

fn storage_err(e: StorageError) -> PluginError {
    match e {
        StorageError::Invalid(m) => PluginError::bad_request(m),
        StorageError::Unavailable(m) => {
            PluginError::unavailable(format!("storage unavailable: {m}"))
        }
    }
}

fn status_of<T>(r: &Result<T, PluginError>) -> CallStatus {
    match r {
        Ok(_) => CallStatus::Ok,
        Err(e) if e.kind == ErrorKind::Timeout => CallStatus::Timeout,
        Err(_) => CallStatus::Error,
    }
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
            circuit_changes: crossbeam_channel::unbounded(),
            startup: parking_lot::Mutex::new(None),
        }))
    }

    // ---- reporting -------------------------------------------------------

    /// Reports a stalled callback to observers.
    pub fn report_stall(
        &self,
        call: &crate::plugins::invoke::CallInFlight,
        busy: std::time::Duration,
    ) {
        if self.observers.is_active() {
            let mut r = Report::new(
                ObservationKind::Stall,
                CallStatus::Error,
                Arc::from(call.callback),
                call.plugin.clone(),
            );
            r.detail = Some(crate::observer::Name::Shared(Arc::from(
                call.detail.as_str(),
            )));
            r.message = Some(call.thread.clone());
            r.duration_ns = busy.as_nanos() as u64;
            self.observers.report(r);
        }
    }

    /// A call was found hung past its deadline (by its caller's timeout or
    /// the watchdog): logged and reported; its circuit is already open.
    pub fn report_hung(&self, hung: &HungCall) {
        let call = &hung.call;
        logger::error(
            "watchdog",
            "plugin callback hung",
            json!({"plugin": &*call.plugin, "callback": call.callback, "detail": call.detail,
                   "reason": hung.reason, "circuit_opened": hung.breaker_told}),
        );
        self.report_error("stall", &call.plugin, &hung.reason);
    }

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

    /// Reports an error to observers.
    pub fn report_error(&self, place: &str, plugin: &str, message: &str) {
        if self.observers.is_active() {
            let mut r = Report::new(
                ObservationKind::Error,
                CallStatus::Error,
                Arc::from(place),
                Arc::from(plugin),
            );
            r.message = Some(message.to_owned());
            self.observers.report(r);
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
            r.message = error.clone();
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
        let mut root = Report::new(
            ObservationKind::PluginState,
            CallStatus::Ok,
            HOST_CALLER.clone(),
            HOST_CALLER.clone(),
        )
        .with_span(Some(trace.root), None);
        root.detail = Some(crate::observer::Name::Shared(Arc::from("startup")));
        root.duration_ns = trace.started.elapsed().as_nanos() as u64;
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
        r.message = error;
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

    /// A new span for a host operation: child of `parent`, else a new root.
    #[inline]
    pub fn new_span(&self, parent: Option<&SpanContext>) -> SpanContext {
        SpanContext::child_or_root(parent, &self.sampler)
    }

    /// Publishes a host event (`internal.*`); failures are logged.
    pub fn publish_internal(&self, topic: &str, payload: Value) {
        if let Err(e) = self.publish(&HOST_CALLER, topic, &payload.to_string(), None) {
            logger::warn(
                "bus",
                "cannot publish internal event",
                json!({"topic": topic, "error": e.to_string()}),
            );
        }
    }

    // ---- services --------------------------------------------------------

    /// Registers a service for a plugin instance.
    pub fn register_service(
        &self,
        instance: u64,
        plugin: &str,
        name: &str,
        description: &str,
    ) -> Result<(), PluginError> {
        self.registry
            .register(name, plugin, instance, description)
            .map_err(|e| match e {
                crate::registry::RegistryError::Duplicate { .. } => {
                    PluginError::conflict(e.to_string())
                }
                other => PluginError::bad_request(other.to_string()),
            })?;
        self.publish_internal(
            "internal.service.registered",
            json!({"service": name, "plugin": plugin}),
        );
        Ok(())
    }

    /// Unregisters a service of a plugin instance.
    pub fn unregister_service(
        &self,
        instance: u64,
        plugin: &str,
        name: &str,
    ) -> Result<(), PluginError> {
        self.registry
            .unregister(name, instance)
            .map_err(|e| PluginError::not_found(e.to_string()))?;
        self.publish_internal(
            "internal.service.unregistered",
            json!({"service": name, "plugin": plugin}),
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // one report, all its fields
    fn observe_call(
        &self,
        name: crate::observer::Name,
        caller: crate::observer::Name,
        served_by: Option<&crate::observer::Name>,
        started: Instant,
        span: SpanContext,
        parent: Option<&SpanContext>,
        result: Result<(), &PluginError>,
    ) {
        if self.observers.is_active() {
            let status = match result {
                Ok(()) => CallStatus::Ok,
                Err(e) if e.kind == ErrorKind::Timeout => CallStatus::Timeout,
                Err(e) if e.kind == ErrorKind::NotFound && served_by.is_none() => {
                    CallStatus::NotFound
                }
                Err(_) => CallStatus::Error,
            };
            let mut r = Report::new(ObservationKind::ServiceCall, status, name, caller)
                .with_span(Some(span), parent);
            r.duration_ns = started.elapsed().as_nanos() as u64;
            r.detail = served_by.cloned();
            if let Err(e) = result {
                r.message = Some(e.message.to_string());
            }
            self.observers.report(r);
        }
    }

    fn after_call_failure(&self, instance: &PluginInstance, service: &str, err: &PluginError) {
        match err.kind {
            // A timeout is the circuit breaker's business (the plugin stays
            // `started`, its circuit opens while the call is hung).
            ErrorKind::Panicked | ErrorKind::Timeout => {
                let msg = format!("service {service}: {}", err.message);
                if err.kind == ErrorKind::Panicked
                    && instance.set_state(PluginState::Error, Some(msg.clone()))
                {
                    self.plugin_state_changed(instance, "error");
                }
                logger::error(
                    "service_registry",
                    "service call failed",
                    json!({"service": service, "plugin": &*instance.name, "error": msg}),
                );
                self.report_error("service_call", &instance.name, &msg);
            }
            _ => self.report_error(
                "service_call",
                &instance.name,
                &format!("service {service}: {}", err.message),
            ),
        }
    }

    /// Calls a service from a synchronous context (a plugin thread).
    pub fn call_service(
        &self,
        caller: &crate::observer::Name,
        name: &str,
        input: &str,
        trace: Option<&str>,
    ) -> Result<String, PluginError> {
        let started = Instant::now();
        let parent = tracecontext::parent_of(trace);
        let span = self.new_span(parent.as_ref());
        let Some((entry, instance)) = self.resolve_service(name) else {
            let err = PluginError::not_found(format!("no service named {name:?}"));
            self.observe_call(
                crate::observer::Name::Shared(Arc::from(name)),
                caller.clone(),
                None,
                started,
                span,
                parent.as_ref(),
                Err(&err),
            );
            return Err(err);
        };
        // Called from inside a plugin callback: the chain it runs in.
        let chain = CallChain::current();
        let admission = match admit(&self.config.host.resilience, &instance, &chain, name) {
            Ok(a) => a,
            Err(refused) => {
                return Err(
                    self.refused_call(&entry, caller, &instance, started, span, parent, &refused)
                )
            }
        };
        let (input, svc, who) = (input.to_owned(), entry.key.clone(), caller.clone());
        let result = invoke_sync(
            self,
            Call {
                instance: &instance,
                callback: "handle_service",
                detail: name,
                timeout: self.config.service_timeout(),
            },
            admission,
            Box::new(move |inst: &PluginInstance| serve(inst, &svc, &input, &who, span)),
        );
        self.observe_call(
            entry.key.clone(),
            caller.clone(),
            Some(&instance.key),
            started,
            span,
            parent.as_ref(),
            result.as_ref().map(|_| ()),
        );
        if let Err(e) = &result {
            self.after_call_failure(&instance, name, e);
        }
        result
    }

    /// Calls a service from async code (the HTTP API). `parent` is the
    /// caller's span (the HTTP server span); async code has no thread-local
    /// current context, so it is passed explicitly.
    pub async fn call_service_async(
        &self,
        caller: &crate::observer::Name,
        name: &str,
        input: String,
        parent: Option<SpanContext>,
    ) -> Result<String, PluginError> {
        let started = Instant::now();
        let span = self.new_span(parent.as_ref());
        let Some((entry, instance)) = self.resolve_service(name) else {
            let err = PluginError::not_found(format!("no service named {name:?}"));
            self.observe_call(
                crate::observer::Name::Shared(Arc::from(name)),
                caller.clone(),
                None,
                started,
                span,
                parent.as_ref(),
                Err(&err),
            );
            return Err(err);
        };
        let admission = match admit(
            &self.config.host.resilience,
            &instance,
            &CallChain::default(),
            name,
        ) {
            Ok(a) => a,
            Err(refused) => {
                return Err(
                    self.refused_call(&entry, caller, &instance, started, span, parent, &refused)
                )
            }
        };
        let (svc, who) = (entry.key.clone(), caller.clone());
        let result = invoke_async(
            self,
            Call {
                instance: &instance,
                callback: "handle_service",
                detail: name,
                timeout: self.config.service_timeout(),
            },
            admission,
            Box::new(move |inst: &PluginInstance| serve(inst, &svc, &input, &who, span)),
        )
        .await;
        self.observe_call(
            entry.key.clone(),
            caller.clone(),
            Some(&instance.key),
            started,
            span,
            parent.as_ref(),
            result.as_ref().map(|_| ()),
        );
        if let Err(e) = &result {
            self.after_call_failure(&instance, name, e);
        }
        result
    }

    /// A call refused before it reached the plugin (depth limit, open
    /// circuit, full bulkhead): observed as a failed call, counted by the
    /// breaker or bulkhead, not reported as the plugin's error.
    #[allow(clippy::too_many_arguments)] // one report, all its fields
    fn refused_call(
        &self,
        entry: &crate::registry::ServiceEntry,
        caller: &crate::observer::Name,
        instance: &PluginInstance,
        started: Instant,
        span: SpanContext,
        parent: Option<SpanContext>,
        refused: &Refused,
    ) -> PluginError {
        let err = refused.to_plugin_error();
        self.observe_call(
            entry.key.clone(),
            caller.clone(),
            Some(&instance.key),
            started,
            span,
            parent.as_ref(),
            Err(&err),
        );
        if logger::enabled(plugin_abi::LogLevel::Debug) {
            logger::log(
                plugin_abi::LogLevel::Debug,
                "service_registry",
                "service call refused",
                None,
                json!({"service": &*entry.key, "plugin": &*instance.name, "error": err.message.as_str()}),
            );
        }
        err
    }

    fn resolve_service(
        &self,
        name: &str,
    ) -> Option<(crate::registry::ServiceEntry, Arc<PluginInstance>)> {
        let entry = self.registry.get(name)?;
        let instance = self.plugins.live(entry.instance)?;
        Some((entry, instance))
    }

    // ---- events ----------------------------------------------------------

    /// Subscribes a plugin instance to a pattern.
    pub fn subscribe(
        self: &Arc<Self>,
        instance_id: u64,
        pattern: &str,
    ) -> Result<u64, PluginError> {
        let instance = self
            .plugins
            .live(instance_id)
            .ok_or_else(|| PluginError::unavailable("plugin instance is not live"))?;
        let core = Arc::downgrade(self);
        let inst = instance.clone();
        self.bus
            .subscribe(instance_id, &instance.name, pattern, move || {
                Arc::new(move |d: Delivery| {
                    if let Some(core) = core.upgrade() {
                        core.deliver_event(&inst, d);
                    }
                })
            })
            .map_err(|e| PluginError::bad_request(e.to_string()))
    }

    /// Removes a subscription.
    pub fn unsubscribe(&self, instance_id: u64, id: u64) -> Result<(), PluginError> {
        self.bus
            .unsubscribe(instance_id, id)
            .map_err(|e| PluginError::not_found(e.to_string()))
    }

    fn deliver_event(&self, instance: &Arc<PluginInstance>, d: Delivery) {
        if self.plugins.live(instance.id).is_none() {
            return;
        }
        // While the circuit is open the event is not delivered (counted as
        // refused by the breaker); a half-open circuit may take it as trial.
        let Ok(admission) = admit_inline(instance) else {
            return;
        };
        let ev = &d.event;
        // The consumer span: a child of the publish (producer) span.
        let span = ev.trace_context.map(|p| p.child());
        let mut buf = [0u8; TRACEPARENT_LEN];
        let event = Event {
            topic: RString::from(ev.topic.as_str()),
            payload: RString::from(ev.payload.as_str()),
            source: RString::from(ev.source.as_str()),
            subscription_id: d.subscription_id,
            published_at_ms: ev.published_at_ms,
            trace_context: match &span {
                Some(s) => ROption::RSome(RString::from(s.write_header(&mut buf))),
                None => ROption::RNone,
            },
        };
        let result = {
            let _current = tracecontext::enter(span);
            let limit = self.config.callback_timeout();
            let _guard = self
                .inflight
                .enter(instance, "on_event", &ev.topic, limit, None);
            run_admitted(instance, admission, limit, |inst| {
                inst.plugin.on_event(&event)
            })
        };
        if self.observers.is_active() {
            let mut r = Report::new(
                ObservationKind::EventDelivered,
                status_of(&result),
                Arc::from(ev.topic.as_str()),
                instance.name.clone(),
            );
            r.duration_ns = d.enqueued.elapsed().as_nanos() as u64;
            r = r.with_span(span, ev.trace_context.as_ref());
            if let Err(e) = &result {
                r.message = Some(e.message.to_string());
            }
            self.observers.report(r);
        }
        if let Err(e) = result {
            let msg = format!("event handler for {} failed: {e}", ev.topic);
            logger::warn(
                "bus",
                "event handler failed",
                json!({"plugin": &*instance.name, "topic": ev.topic, "error": e.to_string()}),
            );
            self.report_error("event_handler", &instance.name, &msg);
            if e.kind == ErrorKind::Panicked && instance.set_state(PluginState::Error, Some(msg)) {
                self.plugin_state_changed(instance, "error");
            }
        }
    }

    /// Publishes an event. Never blocks on subscribers. The publish span is
    /// a child of `trace` (a `traceparent`) when it parses, else of the
    /// thread's current context; a plugin publishing outside any span starts
    /// a new trace, the host's own `internal.*` events outside a span are
    /// not traced.
    pub fn publish(
        &self,
        source: &Arc<str>,
        topic: &str,
        payload: &str,
        trace: Option<&str>,
    ) -> Result<PublishOutcome, PluginError> {
        let parent = tracecontext::parent_of(trace);
        self.publish_traced(source, topic, payload, parent)
    }

    /// [`HostCore::publish`] with the parent span already resolved. A
    /// reserved topic (`internal.*`, `[host.access] topic_owners`) is
    /// refused unless `source` is its owner.
    pub fn publish_traced(
        &self,
        source: &Arc<str>,
        topic: &str,
        payload: &str,
        parent: Option<SpanContext>,
    ) -> Result<PublishOutcome, PluginError> {
        if let Some(owner) =
            crate::access::topic_owner(topic, &self.config.host.access.topic_owners)
        {
            if &**source != owner {
                return Err(PluginError::bad_request(format!(
                    "topic {topic:?} is reserved: only {owner} may publish it (internal.* belongs to the host; see [host.access] topic_owners)"
                )));
            }
        }
        let span = match &parent {
            Some(p) => Some(p.child()),
            None if Arc::ptr_eq(source, &HOST_CALLER) => None,
            None => Some(SpanContext::new_root(&self.sampler)),
        };
        let started = Instant::now();
        let event = BusEvent {
            topic: topic.to_owned(),
            payload: if payload.trim().is_empty() {
                "null".to_owned()
            } else {
                payload.to_owned()
            },
            source: source.to_string(),
            published_at_ms: crate::time::now_unix_ms(),
            trace_context: span,
        };
        let observing = self.observers.is_active();
        let outcome = self
            .bus
            .publish(event, |dropped| {
                if observing {
                    let r = Report::new(
                        ObservationKind::EventDropped,
                        CallStatus::Error,
                        Arc::from(topic),
                        dropped.owner_name.clone(),
                    );
                    self.observers.report(r);
                }
            })
            .map_err(|e| PluginError::bad_request(e.to_string()))?;
        if observing {
            let mut r = Report::new(
                ObservationKind::EventPublished,
                CallStatus::Ok,
                Arc::from(topic),
                source.clone(),
            )
            .with_span(span, parent.as_ref());
            r.duration_ns = started.elapsed().as_nanos() as u64;
            self.observers.report(r);
        }
        Ok(outcome)
    }

    // ---- storage ---------------------------------------------------------

    fn observe_storage<T>(
        &self,
        op: &Arc<str>,
        caller: &str,
        namespace: &str,
        started: Instant,
        result: &Result<T, StorageError>,
    ) {
        if self.observers.is_active() {
            let status = match result {
                Ok(_) => CallStatus::Ok,
                Err(_) => CallStatus::Error,
            };
            // A child of the callback this thread runs, if any.
            let parent = tracecontext::current();
            let mut r = Report::new(
                ObservationKind::StorageOperation,
                status,
                op.clone(),
                Arc::from(caller),
            )
            .with_span(parent.map(|p| p.child()), parent.as_ref());
            r.namespace = Some(Arc::from(namespace));
            r.duration_ns = started.elapsed().as_nanos() as u64;
            if let Err(e) = result {
                r.message = Some(e.to_string());
            }
            self.observers.report(r);
        }
    }

    /// Reads a value.
    pub fn storage_get(
        &self,
        caller: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<String>, PluginError> {
        let started = Instant::now();
        let r = self.storage.get(namespace, key);
        self.observe_storage(&OP_GET, caller, namespace, started, &r);
        r.map_err(storage_err)
    }

    /// Writes a value durably.
    pub fn storage_set(
        &self,
        caller: &str,
        namespace: &str,
        key: &str,
        value: &str,
    ) -> Result<(), PluginError> {
        let started = Instant::now();
        let r = self.storage.set(namespace, key, value);
        self.observe_storage(&OP_SET, caller, namespace, started, &r);
        r.map_err(storage_err)
    }

    /// Deletes a key.
    pub fn storage_delete(
        &self,
        caller: &str,
        namespace: &str,
        key: &str,
    ) -> Result<bool, PluginError> {
        let started = Instant::now();
        let r = self.storage.delete(namespace, key);
        self.observe_storage(&OP_DELETE, caller, namespace, started, &r);
        r.map_err(storage_err)
    }

    /// Lists keys.
    pub fn storage_list_keys(
        &self,
        caller: &str,
        namespace: &str,
        prefix: &str,
    ) -> Result<Vec<String>, PluginError> {
        let started = Instant::now();
        let r = self.storage.list_keys(namespace, prefix);
        self.observe_storage(&OP_LIST, caller, namespace, started, &r);
        r.map_err(storage_err)
    }

    // ---- routes, observers, modules, info ---------------------------------

    /// Registers an HTTP route for a plugin instance.
    pub fn register_route(
        &self,
        instance: u64,
        plugin: &str,
        method: &str,
        path: &str,
        timeout_ms: u64,
    ) -> Result<(), PluginError> {
        self.routes
            .register(method, path, plugin, instance, timeout_ms)
            .map_err(|e| match e {
                crate::plugins::routes::RouteError::Duplicate { .. } => {
                    PluginError::conflict(e.to_string())
                }
                other => PluginError::bad_request(other.to_string()),
            })
    }

    /// Turns the observer stream on or off for a plugin instance.
    pub fn set_observer(
        self: &Arc<Self>,
        instance_id: u64,
        enabled: bool,
    ) -> Result<(), PluginError> {
        if !enabled {
            self.observers.remove(instance_id);
            return Ok(());
        }
        let instance = self
            .plugins
            .live(instance_id)
            .ok_or_else(|| PluginError::unavailable("plugin instance is not live"))?;
        let core = Arc::downgrade(self);
        let inst = instance.clone();
        self.observers.add(
            instance_id,
            &instance.name,
            Arc::new(move |batch| {
                let Some(core) = core.upgrade() else { return };
                // An open circuit drops the batch (counted as refused).
                let Ok(admission) = admit_inline(&inst) else {
                    return;
                };
                let result = {
                    let limit = core.config.callback_timeout();
                    let _guard = core
                        .inflight
                        .enter(&inst, "on_observations", "", limit, None);
                    run_admitted(&inst, admission, limit, |inst| {
                        inst.plugin.on_observations(RSlice::from_slice(batch))
                    })
                };
                if let Err(e) = result {
                    let msg = format!("on_observations failed: {e}");
                    logger::warn(
                        "observer",
                        "observer failed",
                        json!({"plugin": &*inst.name, "error": e.to_string()}),
                    );
                    if e.kind == ErrorKind::Panicked
                        && inst.set_state(PluginState::Error, Some(msg.clone()))
                    {
                        core.plugin_state_changed(&inst, "error");
                    }
                }
            }),
        );
        Ok(())
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
    }

    /// The built-in modules as a JSON array.
    pub fn modules_json(&self) -> Value {
        Value::Array(MODULES.iter().filter_map(|m| self.module_json(m)).collect())
    }

    /// One built-in module as JSON.
    pub fn module_json(&self, name: &str) -> Option<Value> {
        let details = match name {
            "api" => {
                json!({"listen": self.config.listen.to_string(), "routes": self.routes.list().len()})
            }
            "storage" => {
                let probe = match self.storage.probe() {
                    Ok(d) => json!({"ok": true, "duration_ms": d.as_secs_f64() * 1e3}),
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                };
                json!({"path": self.storage.path().display().to_string(), "probe": probe})
            }
            "event_bus" => {
                json!({"subscriptions": self.bus.subscriptions().len(), "published": self.bus.published(), "dropped": self.bus.dropped()})
            }
            "service_registry" => json!({"services": self.registry.len()}),
            "plugin_manager" => {
                json!({"plugins_dir": self.config.plugins_dir.display().to_string(), "live": self.plugins.live_instances().len()})
            }
            "logger" => json!({"format": "json", "level": self.config.host.log_level}),
            _ => return None,
        };
        let description = match name {
            "api" => "HTTP API under /api/v1",
            "storage" => "embedded persistent key-value storage (redb)",
            "event_bus" => "topic event bus with wildcard subscriptions",
            "service_registry" => "named services provided by plugins",
            "plugin_manager" => "loads, hot-reloads and supervises plugins",
            _ => "structured JSON system logger",
        };
        Some(
            json!({"name": name, "status": "running", "description": description, "details": details}),
        )
    }

    /// Facts about the host for plugins.
    pub fn host_info(&self) -> Value {
        let started = crate::time::unix_secs_f64(self.started_at);
        json!({
            "host_version": HOST_VERSION,
            "abi_version": plugin_abi::ABI_VERSION,
            "started_at_unix": started,
            "pid": std::process::id(),
            "observer_dropped_total": self.observers.dropped_total(),
            "observers": self.observers.stats(),
            "events_published_total": self.bus.published(),
            "events_dropped_total": self.bus.dropped(),
            "event_queues": self.bus.queues().iter().map(|q| json!({"plugin": q.owner_name(), "queued": q.queued(), "queued_bytes": q.queued_bytes(), "dropped": q.dropped(), "delivered": q.delivered()})).collect::<Vec<_>>(),
                        "data_dir": self.config.data_dir.display().to_string(),
            "trace_sample_ratio": self.config.host.trace_sample_ratio,
            "service_timeout_ms": self.config.host.service_timeout_ms,
            "callback_timeout_ms": self.config.host.callback_timeout_ms,
            "plugins_dir": self.config.plugins_dir.display().to_string(),
        })
    }

    /// Routes an HTTP request to the plugin that registered it.
    pub async fn plugin_http(
        &self,
        request: PluginHttpRequest,
    ) -> Result<HttpResponse, (u16, PluginError)> {
        let found = self.routes.lookup(&request.method, &request.path);
        let route = match found {
            Ok(m) => m,
            Err(true) => {
                return Err((
                    405,
                    PluginError::new(
                        ErrorKind::BadRequest,
                        format!(
                            "method {} is not allowed on {}",
                            request.method, request.path
                        ),
                    ),
                ))
            }
            Err(false) => {
                return Err((
                    404,
                    PluginError::not_found(format!(
                        "no route for {} {}",
                        request.method, request.path
                    )),
                ))
            }
        };
        let timeout = match route.owner.timeout_ms {
            0 => self.config.callback_timeout(),
            ms => std::time::Duration::from_millis(ms),
        };
        let Some(instance) = self.plugins.live(route.owner.instance) else {
            return Err((
                503,
                PluginError::unavailable("the plugin serving this route is not running"),
            ));
        };
        let req = HttpRequest {
            method: request.method.into(),
            path: request.path.clone().into(),
            query: request.query.into(),
            route: route.route.into(),
            params: route
                .params
                .into_iter()
                .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
                .collect(),
            headers: request
                .headers
                .into_iter()
                .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
                .collect(),
            body: RVec::from(request.body),
            trace_context: match &request.trace_context {
                Some(t) => ROption::RSome(RString::from(t.to_header())),
                None => ROption::RNone,
            },
        };
        let span = request.trace_context;
        let admission = admit(
            &self.config.host.resilience,
            &instance,
            &CallChain::default(),
            &request.path,
        )
        .map_err(|refused| (503, refused.to_plugin_error()))?;
        let result = invoke_async(
            self,
            Call {
                instance: &instance,
                callback: "handle_http",
                detail: &request.path,
                timeout,
            },
            admission,
            Box::new(move |inst: &PluginInstance| {
                let _current = tracecontext::enter(span);
                inst.plugin.handle_http(&req)
            }),
        )
        .await;
        result.map_err(|e| {
            if matches!(e.kind, ErrorKind::Panicked | ErrorKind::Timeout) {
                let msg = format!("HTTP handler: {}", e.message);
                if e.kind == ErrorKind::Panicked
                    && instance.set_state(PluginState::Error, Some(msg.clone()))
                {
                    self.plugin_state_changed(&instance, "error");
                }
                self.report_error("http_handler", &instance.name, &msg);
            }
            let status = match e.kind {
                ErrorKind::BadRequest => 400,
                ErrorKind::NotFound => 404,
                ErrorKind::Unauthorized => 401,
                ErrorKind::Conflict => 409,
                ErrorKind::Timeout => 504,
                ErrorKind::Unavailable => 503,
                ErrorKind::Unsupported => 501,
                _ => 500,
            };
            (status, e)
        })
    }
}

/// An HTTP request on its way to a plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginHttpRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query.
    pub query: String,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// The HTTP server span; the handler runs with it as current context.
    pub trace_context: Option<SpanContext>,
}

/// Runs a plugin's `handle_service` with `span` as the thread's current
/// context and its `traceparent` (formatted on the stack) as argument.
fn serve(
    inst: &PluginInstance,
    service: &str,
    input: &str,
    caller: &str,
    span: SpanContext,
) -> abi_stable::std_types::RResult<String, PluginError> {
    let _current = tracecontext::enter(Some(span));
    let mut buf = [0u8; TRACEPARENT_LEN];
    let header = span.write_header(&mut buf);
    inst.plugin
        .handle_service(
            service.into(),
            input.into(),
            caller.into(),
            ROption::RSome(header.into()),
        )
        .map(RString::into_string)
}

/// Names of the built-in modules.
pub const MODULES: &[&str] = &[
    "api",
    "storage",
    "event_bus",
    "service_registry",
    "plugin_manager",
    "logger",
];
