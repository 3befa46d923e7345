//! The host side of [`HostApi`]: what a plugin's handle does.
//!
//! Each plugin instance gets its own handle, bound to its name and instance
//! id, so the host knows who registers, calls or publishes. Every method body
//! runs under `catch_unwind` (a panic reaching the abi_stable shim would
//! abort the process; see docs/ARCHITECTURE.md, section "ABI rules"). A
//! handle whose instance was stopped or replaced can no longer register
//! anything.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};

use abi_stable::std_types::{RArc, ROption, RResult, RStr, RString, RVec};
use plugin_abi::telemetry::{HealthCheckBox, ProviderBox, TelemetrySlot};
use plugin_abi::{
    ErrorKind, HostApi, HostCounters, HostInfo, HostInfo_Ref, LogLevel, PluginError, PluginSummary,
    TraceContext,
};

/// The host facts a handle answers after its host has gone (once per process).
static GONE: std::sync::OnceLock<HostInfo_Ref> = std::sync::OnceLock::new();

use crate::core::HostCore;

/// The handle given to one plugin instance.
#[derive(Clone)]
pub struct HostApiImpl {
    core: Weak<HostCore>,
    name: Arc<str>,
    key: crate::observer::Name,
    instance: u64,
}

impl HostApiImpl {
    /// A handle for `instance` of plugin `name`.
    pub fn new(core: Weak<HostCore>, name: Arc<str>, instance: u64) -> Self {
        HostApiImpl {
            core,
            key: crate::observer::intern(&name),
            name,
            instance,
        }
    }

    fn with_core<R>(
        &self,
        f: impl FnOnce(&Arc<HostCore>) -> Result<R, PluginError>,
    ) -> RResult<R, PluginError> {
        let Some(core) = self.core.upgrade() else {
            return RResult::RErr(PluginError::unavailable("the host is shutting down"));
        };
        match catch_unwind(AssertUnwindSafe(|| f(&core))) {
            Ok(r) => r.into(),
            Err(_) => RResult::RErr(PluginError::new(ErrorKind::Failed, "internal host error")),
        }
    }

    /// Like `with_core`, but refuses when the instance is no longer live.
    fn with_live<R>(
        &self,
        f: impl FnOnce(&Arc<HostCore>) -> Result<R, PluginError>,
    ) -> RResult<R, PluginError> {
        self.with_core(|core| {
            if core.plugins.live(self.instance).is_none() {
                return Err(PluginError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "this instance of plugin {} has been stopped or replaced",
                        self.name
                    ),
                ));
            }
            f(core)
        })
    }
}

impl HostApiImpl {
    /// Applies the storage isolation rule (`storage::namespace_allowed`).
    fn check_namespace(&self, core: &HostCore, namespace: &str) -> Result<(), PluginError> {
        if crate::storage::namespace_allowed(
            &self.name,
            namespace,
            &core.config.host.storage_grants,
        ) {
            Ok(())
        } else {
            Err(PluginError::new(
                ErrorKind::Unauthorized,
                format!(
                    "plugin {} may not use storage namespace {namespace:?}: plugins use their own namespace ({0}, {0}-*, {0}.*) unless [host.storage_grants] grants more",
                    self.name
                ),
            ))
        }
    }
}

impl HostApi for HostApiImpl {
    fn plugin_name(&self) -> RString {
        RString::from(&*self.name)
    }

    fn register_service(&self, name: RStr<'_>, description: RStr<'_>) -> RResult<(), PluginError> {
        self.with_live(|core| {
            core.register_service(
                self.instance,
                &self.name,
                name.as_str(),
                description.as_str(),
            )
        })
    }

    fn unregister_service(&self, name: RStr<'_>) -> RResult<(), PluginError> {
        self.with_core(|core| core.unregister_service(self.instance, &self.name, name.as_str()))
    }

    fn call_service(
        &self,
        name: RStr<'_>,
        input: RStr<'_>,
        trace_context: ROption<TraceContext>,
    ) -> RResult<RString, PluginError> {
        self.with_core(|core| {
            core.call_service(
                &self.key,
                name.as_str(),
                input.as_str(),
                trace_context.into_option(),
            )
        })
    }

    fn subscribe(&self, pattern: RStr<'_>) -> RResult<u64, PluginError> {
        self.with_live(|core| core.subscribe(self.instance, pattern.as_str()))
    }

    fn unsubscribe(&self, subscription_id: u64) -> RResult<(), PluginError> {
        self.with_core(|core| core.unsubscribe(self.instance, subscription_id))
    }

    fn publish(
        &self,
        topic: RStr<'_>,
        payload: RStr<'_>,
        trace_context: ROption<TraceContext>,
    ) -> RResult<(), PluginError> {
        self.with_core(|core| {
            core.publish(
                &self.name,
                topic.as_str(),
                payload.as_str(),
                trace_context.into_option(),
            )
            .map(|_| ())
        })
    }

    fn storage_get(
        &self,
        namespace: RStr<'_>,
        key: RStr<'_>,
    ) -> RResult<ROption<RString>, PluginError> {
        self.with_core(|core| {
            self.check_namespace(core, namespace.as_str())?;
            core.storage_get(&self.name, namespace.as_str(), key.as_str())
                .map(|v| v.map(RString::from).into())
        })
    }

    fn storage_set(
        &self,
        namespace: RStr<'_>,
        key: RStr<'_>,
        value: RStr<'_>,
    ) -> RResult<(), PluginError> {
        self.with_core(|core| {
            self.check_namespace(core, namespace.as_str())?;
            core.storage_set(&self.name, namespace.as_str(), key.as_str(), value.as_str())
        })
    }

    fn storage_delete(&self, namespace: RStr<'_>, key: RStr<'_>) -> RResult<bool, PluginError> {
        self.with_core(|core| {
            self.check_namespace(core, namespace.as_str())?;
            core.storage_delete(&self.name, namespace.as_str(), key.as_str())
        })
    }

    fn storage_list_keys(
        &self,
        namespace: RStr<'_>,
        prefix: RStr<'_>,
    ) -> RResult<RVec<RString>, PluginError> {
        self.with_core(|core| {
            self.check_namespace(core, namespace.as_str())?;
            core.storage_list_keys(&self.name, namespace.as_str(), prefix.as_str())
                .map(|keys| keys.into_iter().map(RString::from).collect())
        })
    }

    fn list_modules(&self) -> RString {
        self.with_core(|core| Ok(RString::from(core.modules_json().to_string())))
            .unwrap_or_else(|_| RString::from("[]"))
    }

    fn get_module(&self, name: RStr<'_>) -> ROption<RString> {
        self.with_core(|core| {
            Ok(core
                .module_json(name.as_str())
                .map(|m| RString::from(m.to_string())))
        })
        .unwrap_or_else(|_| None)
        .into()
    }

    fn list_plugins(&self) -> RVec<PluginSummary> {
        self.with_core(|core| Ok(core.plugins.list().iter().map(|p| p.to_abi()).collect()))
            .unwrap_or_else(|_| RVec::new())
    }

    fn register_route(
        &self,
        method: RStr<'_>,
        path: RStr<'_>,
        timeout_ms: u64,
    ) -> RResult<(), PluginError> {
        self.with_live(|core| {
            core.register_route(
                self.instance,
                &self.name,
                method.as_str(),
                path.as_str(),
                timeout_ms,
            )
        })
    }

    fn unregister_route(&self, method: RStr<'_>, path: RStr<'_>) -> RResult<(), PluginError> {
        self.with_core(|core| {
            core.routes
                .unregister(method.as_str(), path.as_str(), self.instance)
                .map_err(|e| PluginError::not_found(e.to_string()))
        })
    }

    fn log(&self, level: LogLevel, message: RStr<'_>, fields_json: RStr<'_>) {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let fields = if fields_json.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(fields_json.as_str())
                    .unwrap_or_else(|_| serde_json::json!({"raw": fields_json.as_str()}))
            };
            let Some(core) = self.core.upgrade() else {
                return;
            };
            // Inside a callback the host runs, the line belongs to its span.
            let span = crate::tracecontext::current();
            if level >= LogLevel::Info && core.observers.is_active() {
                let mut r = crate::observer::Report::new(
                    plugin_abi::ObservationKind::LogLine,
                    plugin_abi::CallStatus::Ok,
                    std::sync::Arc::from(level.as_str()),
                    self.name.clone(),
                );
                r.set_message(Some(message.as_str().to_owned()));
                if !fields.is_null() {
                    r.detail = Some(crate::observer::Name::Shared(std::sync::Arc::from(
                        fields.to_string(),
                    )));
                }
                r.trace_context = span;
                core.observers.report(r);
            }
            crate::logger::log_traced(
                level,
                "plugin",
                message.as_str(),
                Some(&self.name),
                fields,
                span.as_ref(),
            );
            if level == LogLevel::Error {
                core.report_error("plugin_log", &self.name, message.as_str());
            }
        }));
    }

    fn set_observer(&self, enabled: bool) -> RResult<(), PluginError> {
        self.with_live(|core| core.set_observer(self.instance, enabled))
    }

    fn host_info(&self) -> HostInfo_Ref {
        match self.core.upgrade() {
            Some(core) => core.host_info_ref(),
            // The host is going away: the facts of no host.
            None => *GONE.get_or_init(|| {
                HostInfo {
                    host_version: "".into(),
                    abi_version: plugin_abi::ABI_VERSION.into(),
                    started_unix_ms: 0,
                    pid: std::process::id(),
                    data_dir: "".into(),
                    plugins_dir: "".into(),
                    trace_sample_ratio: 0.0,
                    service_timeout_ms: 0,
                    callback_timeout_ms: 0,
                }
                .leak()
            }),
        }
    }

    fn host_counters(&self) -> HostCounters {
        self.with_core(|core| Ok(core.host_counters()))
            .unwrap_or_else(|_| HostCounters::default())
    }

    fn telemetry_slot(&self) -> RArc<TelemetrySlot> {
        match self.core.upgrade() {
            Some(core) => core.telemetry.slot(),
            // The host is going away: an empty slot, every handle a no-op.
            None => RArc::new(TelemetrySlot::new()),
        }
    }

    fn install_telemetry_provider(&self, provider: ProviderBox) -> RResult<(), PluginError> {
        self.with_live(|core| core.telemetry.install(&self.name, self.instance, provider))
    }

    fn register_health_check(&self, name: RStr<'_>, check: HealthCheckBox) -> u64 {
        match self.core.upgrade() {
            Some(core) => core.telemetry.slot().register_health_check_for(
                self.instance,
                &self.name,
                name.as_str(),
                check,
            ),
            None => 0,
        }
    }
}
