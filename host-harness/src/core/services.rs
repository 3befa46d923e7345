//! The service registry seen from plugins and the HTTP API: registering,
//! unregistering, and calling a service (resolve, admit, invoke with a
//! deadline, observe, report failures).

use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::{ROption, RString};
use plugin_abi::{CallStatus, ErrorKind, ObservationKind, PluginError, PluginState};
use serde_json::json;

use super::HostCore;
use crate::logger;
use crate::observer::Report;
use crate::plugins::chain::CallChain;
use crate::plugins::invoke::{admit, invoke_async, invoke_sync, Call, Refused};
use crate::plugins::PluginInstance;
use crate::tracecontext::{self, SpanContext, TRACEPARENT_LEN};

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
}
