//! The service registry seen from plugins and the HTTP API: registering,
//! unregistering, and calling a service (resolve, admit, invoke — in-line
//! for plugins, on the blocking pool with a deadline for the HTTP API —
//! observe, report failures).

use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::{ROption, RString};
use plugin_abi::{CallStatus, ErrorKind, ObservationKind, PluginError, PluginState};
use serde_json::json;

use super::HostCore;
use crate::logger;
use crate::observer::Name;
use crate::observer::Report;
use crate::plugins::chain::CallChain;
use crate::plugins::invoke::{
    admit, invoke_async, invoke_inline, Admission, Call, Callback, Refused,
};
use crate::plugins::PluginInstance;
use crate::registry::ServiceEntry;
use crate::tracecontext::{self, SpanContext};

/// Runs a plugin's `handle_service` with `span` as the thread's current
/// context and as argument (a 25-byte value, no text). The
/// input is borrowed and the callee's `RString` is handed on as it is: no
/// copy on the way in or out.
fn serve(
    inst: &PluginInstance,
    service: &str,
    input: &str,
    caller: &str,
    span: SpanContext,
) -> abi_stable::std_types::RResult<RString, PluginError> {
    let _current = tracecontext::enter(Some(span));
    inst.plugin.handle_service(
        service.into(),
        input.into(),
        caller.into(),
        ROption::RSome(span),
    )
}

/// A service call between its two halves: what the caller resolved and
/// when and in which span it started.
struct ServiceCall {
    entry: Arc<ServiceEntry>,
    instance: Arc<PluginInstance>,
    started: Instant,
    span: SpanContext,
    parent: Option<SpanContext>,
}

impl ServiceCall {
    /// The plugin callback to run: `handle_service` with the service
    /// deadline.
    fn target<'a>(&'a self, core: &HostCore, name: &'a str) -> Call<'a> {
        Call {
            instance: &self.instance,
            callback: "handle_service",
            detail: name,
            timeout: core.config.service_timeout(),
        }
    }
}

impl HostCore {
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
        name: Name,
        caller: Name,
        served_by: Option<&Name>,
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
            let mut r = Report::timed(ObservationKind::ServiceCall, status, name, caller, started)
                .with_span(Some(span), parent);
            r.detail = served_by.cloned();
            if let Err(e) = result {
                r.set_message(Some(e.message.to_string()));
            }
            self.observers.report(r);
        }
    }

    fn after_call_failure(&self, instance: &PluginInstance, service: &str, err: &PluginError) {
        match err.kind() {
            // A timeout is the circuit breaker's business (the plugin stays
            // `started`, its circuit opens while the call is hung).
            ErrorKind::Panicked | ErrorKind::Timeout => {
                let msg = format!("service {service}: {}", err.message);
                if err.kind == ErrorKind::Panicked
                    && instance.set_state(PluginState::Error, Some(msg.clone()))
                {
                    self.plugin_state_changed(instance, "error");
                }
                let at = err.panic.as_ref().into_option();
                logger::error(
                    "service_registry",
                    "service call failed",
                    json!({"service": service, "plugin": &*instance.name, "error": msg,
                           "panic_location": at.map(|l| l.to_string())}),
                );
                self.report_plugin_error("service_call", &instance.name, &msg, at);
            }
            _ => self.report_error(
                "service_call",
                &instance.name,
                &format!("service {service}: {}", err.message),
            ),
        }
    }

    /// Calls a service from a plugin's thread, in-line: the callee runs on
    /// the caller's thread (no hop to the blocking pool, no channel), with
    /// the input borrowed and the callee's result handed back as it is.
    /// The call is admitted (depth via the thread's chain, bulkhead,
    /// breaker) and recorded in flight, so the watchdog reports an overrun
    /// and opens the callee's circuit; this caller waits until the callee
    /// returns (see `docs/ARCHITECTURE.md`, section 'A service call').
    pub fn call_service(
        &self,
        caller: &Name,
        name: &str,
        input: &str,
        trace: Option<SpanContext>,
    ) -> Result<RString, PluginError> {
        let parent = tracecontext::parent_of(trace);
        let chain = CallChain::current();
        let (call, admission) = self.prepare_call(caller, name, parent, &chain)?;
        let result = invoke_inline(self, call.target(self, name), admission, |inst| {
            serve(inst, &call.entry.key, input, caller, call.span)
        });
        self.finish_call(&call, caller, name, result)
    }

    /// Calls a service from async code (the HTTP API) with the service
    /// deadline: the callee runs on the blocking pool and the task waits
    /// without blocking the executor, up to the deadline (`Timeout`
    /// after it). `parent` is the caller's span (the HTTP server span);
    /// async code has no thread-local current context, so it is passed
    /// explicitly. The call starts a new chain.
    ///
    /// The result is the callee's own string, not a copy: its buffer was
    /// allocated by the callee's library and is freed there when dropped
    /// (libraries stay mapped), so the HTTP API sends it as the response
    /// body as it is.
    pub async fn call_service_async(
        &self,
        caller: &Name,
        name: &str,
        input: String,
        parent: Option<SpanContext>,
    ) -> Result<RString, PluginError> {
        let chain = CallChain::default();
        let (call, admission) = self.prepare_call(caller, name, parent, &chain)?;
        let (svc, who, span) = (call.entry.key.clone(), caller.clone(), call.span);
        let f: Callback<RString> =
            Box::new(move |inst: &PluginInstance| serve(inst, &svc, &input, &who, span));
        let result = invoke_async(self, call.target(self, name), admission, f).await;
        self.finish_call(&call, caller, name, result)
    }

    /// The first half of every service call, in-line or async: starts its
    /// span, resolves the service to a live instance and admits the call
    /// (depth limit, bulkhead, breaker). A call that ends here (unknown
    /// service, refused) is observed and its error returned.
    fn prepare_call(
        &self,
        caller: &Name,
        name: &str,
        parent: Option<SpanContext>,
        chain: &CallChain,
    ) -> Result<(ServiceCall, Admission), PluginError> {
        let started = Instant::now();
        let span = self.new_span(parent.as_ref());
        let Some((entry, instance)) = self.resolve_service(name) else {
            let err = PluginError::not_found(format!("no service named {name:?}"));
            self.observe_call(
                Name::Shared(Arc::from(name)),
                caller.clone(),
                None,
                started,
                span,
                parent.as_ref(),
                Err(&err),
            );
            return Err(err);
        };
        let call = ServiceCall {
            entry,
            instance,
            started,
            span,
            parent,
        };
        let admission = admit(&self.config.host.resilience, &call.instance, chain, name)
            .map_err(|refused| self.refused_call(&call, caller, &refused))?;
        Ok((call, admission))
    }

    /// The last half of every service call, sync or async: observes the
    /// call and reports a failure as the plugin's error.
    fn finish_call(
        &self,
        call: &ServiceCall,
        caller: &Name,
        name: &str,
        result: Result<RString, PluginError>,
    ) -> Result<RString, PluginError> {
        self.observe_service_call(call, caller, result.as_ref().map(|_| ()));
        if let Err(e) = &result {
            self.after_call_failure(&call.instance, name, e);
        }
        result
    }

    /// Reports a call that reached its service's plugin (or was refused by
    /// it) as a `ServiceCall` observation.
    fn observe_service_call(
        &self,
        call: &ServiceCall,
        caller: &Name,
        result: Result<(), &PluginError>,
    ) {
        self.observe_call(
            call.entry.key.clone(),
            caller.clone(),
            Some(&call.instance.key),
            call.started,
            call.span,
            call.parent.as_ref(),
            result,
        );
    }

    /// A call refused before it reached the plugin (depth limit, open
    /// circuit, full bulkhead): observed as a failed call, counted by the
    /// breaker or bulkhead, not reported as the plugin's error.
    fn refused_call(&self, call: &ServiceCall, caller: &Name, refused: &Refused) -> PluginError {
        let err = refused.to_plugin_error();
        self.observe_service_call(call, caller, Err(&err));
        if logger::enabled(plugin_abi::LogLevel::Debug) {
            logger::log(
                plugin_abi::LogLevel::Debug,
                "service_registry",
                "service call refused",
                None,
                json!({"service": &*call.entry.key, "plugin": &*call.instance.name, "error": err.message.as_str()}),
            );
        }
        err
    }

    /// The service's entry and its live instance: two lock-free lookups.
    fn resolve_service(&self, name: &str) -> Option<(Arc<ServiceEntry>, Arc<PluginInstance>)> {
        let entry = self.registry.get(name)?;
        let instance = self.plugins.live(entry.instance)?;
        Some((entry, instance))
    }
}
