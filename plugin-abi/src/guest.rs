//! The safe side of the ABI for plugin authors.
//!
//! Implement [`PluginImpl`] with ordinary Rust types and call
//! [`export_plugin!`](crate::export_plugin). The adapter here wraps every
//! entry point in `catch_unwind`, so a panic becomes
//! [`ErrorKind::Panicked`](crate::ErrorKind::Panicked) with the panic message
//! and location, and never reaches an abi_stable shim (which would abort the
//! host: docs/ARCHITECTURE.md, section 'ABI rules').

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString};

use crate::error::{PanicLocation, PluginError};
use crate::facts::{HostCounters, HostInfo_Ref, PluginSummary};
use crate::ffi::{HostHandle, Plugin, PluginBox, PluginMod, PluginMod_Ref, Plugin_TO};
use crate::trace_context::TraceContext;
use crate::types::{
    Event, HealthReport, HttpRequest, HttpResponse, LogLevel, Observation, PluginInfo,
};

/// One incoming service call, as seen by a [`PluginImpl`].
#[derive(Debug, Clone, Copy)]
pub struct ServiceCall<'a> {
    /// The service name.
    pub name: &'a str,
    /// JSON input.
    pub input: &'a str,
    /// The calling plugin (`http` for the HTTP API, `http:admin` for the
    /// HTTP API with the host's admin token, `host` for the host).
    pub caller: &'a str,
    /// The call's span, if traced (format it with
    /// [`TraceContext::traceparent`] where text is needed).
    pub trace_context: Option<TraceContext>,
}

/// A plugin written in safe Rust. Every method has a sensible default except
/// construction.
pub trait PluginImpl: Send + Sync + Sized + 'static {
    /// Unique plugin name.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// One line saying what the plugin does.
    const DESCRIPTION: &'static str = "";

    /// Builds the plugin. `config` is the plugin's JSON config (`{}` if none).
    fn new(host: Host, config: &str) -> Result<Self, PluginError>;

    /// Starts the plugin (register services, routes, subscriptions).
    fn start(&self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Stops the plugin; must join every thread it started.
    fn stop(&self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Handles a call to one of the plugin's services.
    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        Err(PluginError::not_found(format!(
            "service {} is not implemented",
            call.name
        )))
    }

    /// Handles an HTTP request on one of the plugin's routes.
    fn handle_http(&self, request: &HttpRequest) -> Result<HttpResponse, PluginError> {
        Err(PluginError::not_found(format!(
            "no handler for {}",
            request.path
        )))
    }

    /// Receives an event.
    fn on_event(&self, _event: &Event) -> Result<(), PluginError> {
        Ok(())
    }

    /// Receives a batch of observer reports.
    fn on_observations(&self, _batch: &[Observation]) -> Result<(), PluginError> {
        Ok(())
    }

    /// Periodic tick.
    fn tick(&self, _now_unix_ms: u64) -> Result<(), PluginError> {
        Ok(())
    }

    /// The plugin's own health.
    fn health(&self) -> Result<HealthReport, PluginError> {
        Ok(HealthReport::healthy())
    }
}

/// A convenient, owned wrapper around the [`HostHandle`].
#[derive(Clone)]
pub struct Host {
    inner: HostHandle,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl Host {
    /// Wraps a raw handle.
    pub fn new(inner: HostHandle) -> Self {
        Host { inner }
    }

    /// The raw FFI handle.
    pub fn raw(&self) -> &HostHandle {
        &self.inner
    }

    /// The telemetry API of this plugin: instruments, spans, error capture
    /// and health checks, each a no-op while no provider is installed
    /// (docs/telemetry-design.md). Cheap; keep the result and the handles it
    /// creates rather than calling it per measurement.
    pub fn telemetry(&self) -> crate::telemetry::Telemetry {
        crate::telemetry::Telemetry::for_host(&self.inner)
    }

    /// See [`crate::HostApi::install_telemetry_provider`].
    pub fn install_telemetry_provider(
        &self,
        provider: crate::telemetry::ProviderBox,
    ) -> Result<(), PluginError> {
        self.inner
            .install_telemetry_provider(provider)
            .into_result()
    }

    /// The name of the plugin this handle belongs to.
    pub fn plugin_name(&self) -> String {
        self.inner.plugin_name().into_string()
    }

    /// See [`crate::HostApi::register_service`].
    pub fn register_service(&self, name: &str, description: &str) -> Result<(), PluginError> {
        self.inner
            .register_service(name.into(), description.into())
            .into_result()
    }

    /// See [`crate::HostApi::unregister_service`].
    pub fn unregister_service(&self, name: &str) -> Result<(), PluginError> {
        self.inner.unregister_service(name.into()).into_result()
    }

    /// See [`crate::HostApi::call_service`]. The result is the callee's
    /// `RString` as the host handed it on (it derefs to `&str`): no copy
    /// between callee and caller. Call `.into_string()` only where a
    /// `String` is needed (that copies: the buffer belongs to the callee's
    /// allocator).
    pub fn call_service(
        &self,
        name: &str,
        input: &str,
        trace_context: Option<TraceContext>,
    ) -> Result<RString, PluginError> {
        self.inner
            .call_service(name.into(), input.into(), trace_context.into())
            .into_result()
    }

    /// See [`crate::HostApi::subscribe`].
    pub fn subscribe(&self, pattern: &str) -> Result<u64, PluginError> {
        self.inner.subscribe(pattern.into()).into_result()
    }

    /// See [`crate::HostApi::unsubscribe`].
    pub fn unsubscribe(&self, id: u64) -> Result<(), PluginError> {
        self.inner.unsubscribe(id).into_result()
    }

    /// See [`crate::HostApi::publish`].
    pub fn publish(
        &self,
        topic: &str,
        payload: &str,
        trace_context: Option<TraceContext>,
    ) -> Result<(), PluginError> {
        self.inner
            .publish(topic.into(), payload.into(), trace_context.into())
            .into_result()
    }

    /// See [`crate::HostApi::storage_get`].
    pub fn storage_get(&self, namespace: &str, key: &str) -> Result<Option<String>, PluginError> {
        self.inner
            .storage_get(namespace.into(), key.into())
            .into_result()
            .map(|v| v.into_option().map(RString::into_string))
    }

    /// See [`crate::HostApi::storage_set`].
    pub fn storage_set(
        &self,
        namespace: &str,
        key: &str,
        value_json: &str,
    ) -> Result<(), PluginError> {
        self.inner
            .storage_set(namespace.into(), key.into(), value_json.into())
            .into_result()
    }

    /// See [`crate::HostApi::storage_delete`].
    pub fn storage_delete(&self, namespace: &str, key: &str) -> Result<bool, PluginError> {
        self.inner
            .storage_delete(namespace.into(), key.into())
            .into_result()
    }

    /// See [`crate::HostApi::storage_list_keys`].
    pub fn storage_list_keys(
        &self,
        namespace: &str,
        prefix: &str,
    ) -> Result<Vec<String>, PluginError> {
        self.inner
            .storage_list_keys(namespace.into(), prefix.into())
            .into_result()
            .map(|v| v.into_iter().map(RString::into_string).collect())
    }

    /// See [`crate::HostApi::list_modules`].
    pub fn list_modules(&self) -> serde_json::Value {
        serde_json::from_str(self.inner.list_modules().as_str()).unwrap_or_default()
    }

    /// See [`crate::HostApi::get_module`].
    pub fn get_module(&self, name: &str) -> Option<serde_json::Value> {
        self.inner
            .get_module(name.into())
            .into_option()
            .and_then(|s| serde_json::from_str(s.as_str()).ok())
    }

    /// See [`crate::HostApi::list_plugins`].
    pub fn list_plugins(&self) -> Vec<PluginSummary> {
        self.inner.list_plugins().into_vec()
    }

    /// See [`crate::HostApi::register_route`] (default deadline).
    pub fn register_route(&self, method: &str, path: &str) -> Result<(), PluginError> {
        self.register_route_with_timeout(method, path, 0)
    }

    /// See [`crate::HostApi::register_route`].
    pub fn register_route_with_timeout(
        &self,
        method: &str,
        path: &str,
        timeout_ms: u64,
    ) -> Result<(), PluginError> {
        self.inner
            .register_route(method.into(), path.into(), timeout_ms)
            .into_result()
    }

    /// See [`crate::HostApi::unregister_route`].
    pub fn unregister_route(&self, method: &str, path: &str) -> Result<(), PluginError> {
        self.inner
            .unregister_route(method.into(), path.into())
            .into_result()
    }

    /// Logs a line with structured fields.
    pub fn log(&self, level: LogLevel, message: &str, fields: &serde_json::Value) {
        let fields = if fields.is_null() {
            String::new()
        } else {
            fields.to_string()
        };
        self.inner
            .log(level, message.into(), fields.as_str().into());
    }

    /// Logs an info line without fields.
    pub fn info(&self, message: &str) {
        self.inner.log(LogLevel::Info, message.into(), "".into());
    }

    /// Logs a warning without fields.
    pub fn warn(&self, message: &str) {
        self.inner.log(LogLevel::Warn, message.into(), "".into());
    }

    /// Logs an error without fields.
    pub fn error(&self, message: &str) {
        self.inner.log(LogLevel::Error, message.into(), "".into());
    }

    /// See [`crate::HostApi::set_observer`].
    pub fn set_observer(&self, enabled: bool) -> Result<(), PluginError> {
        self.inner.set_observer(enabled).into_result()
    }

    /// See [`crate::HostApi::host_info`]: read fields with its accessors
    /// (`host.host_info().trace_sample_ratio()`).
    pub fn host_info(&self) -> HostInfo_Ref {
        self.inner.host_info()
    }

    /// See [`crate::HostApi::host_counters`].
    pub fn host_counters(&self) -> HostCounters {
        self.inner.host_counters()
    }
}

thread_local! {
    /// Location of the last panic on this thread, set by the hook.
    static LAST_PANIC: RefCell<Option<PanicLocation>> = const { RefCell::new(None) };
    /// Backtrace of the last panic on this thread, set by the hook.
    static LAST_BACKTRACE: RefCell<Option<Backtrace>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// The host handle of this library's plugin, for reporting panic backtraces
/// from [`guard`] (which has no handle of its own). Every cdylib has its own
/// statics, so this is per plugin library; the first plugin built wins.
static PANIC_HOST: OnceLock<Host> = OnceLock::new();

/// Message of the error-level log line that carries a panic backtrace in its
/// fields (`callback`, `panic`, `backtrace`). The monitoring plugin attaches
/// the backtrace to the panic's issue instead of opening an issue for the
/// line itself.
pub const PANIC_BACKTRACE_LOG: &str = "plugin panic backtrace";

/// Longest backtrace text sent to the host, in bytes.
const MAX_BACKTRACE_BYTES: usize = 16 * 1024;

/// Installs (once per library: every cdylib has its own panic hook) a hook
/// that records the panic location and a backtrace instead of printing to
/// stderr. The message and the location (as a [`PanicLocation`] value)
/// travel to the host in the `Panicked` error, which may reach HTTP
/// clients; the backtrace goes only to the host log (see
/// [`PANIC_BACKTRACE_LOG`]).
fn install_panic_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| PanicLocation {
                file: RString::from(l.file()),
                line: l.line(),
                column: l.column(),
            });
            LAST_PANIC.with(|p| *p.borrow_mut() = location);
            LAST_BACKTRACE.with(|b| *b.borrow_mut() = Some(Backtrace::force_capture()));
        }));
    });
}

/// Sends the backtrace of a panic caught in `callback` to the host log.
fn report_backtrace(
    callback: &str,
    message: &str,
    location: Option<&PanicLocation>,
    backtrace: Option<Backtrace>,
) {
    let (Some(host), Some(backtrace)) = (PANIC_HOST.get(), backtrace) else {
        return;
    };
    // Formatting resolves symbols; never let a failure there escape.
    let text = catch_unwind(AssertUnwindSafe(|| backtrace.to_string())).unwrap_or_default();
    let mut cut = text.len().min(MAX_BACKTRACE_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let fields = serde_json::json!({
        "callback": callback,
        "panic": message,
        "location": location.map(|l| l.to_string()),
        "backtrace": &text[..cut],
    });
    let _ = catch_unwind(AssertUnwindSafe(|| {
        host.log(LogLevel::Error, PANIC_BACKTRACE_LOG, &fields);
    }));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs `f`, turning a panic into `ErrorKind::Panicked` naming the callback,
/// with the hook's [`PanicLocation`] in the error's `panic` field.
pub(crate) fn guard<R>(
    callback: &str,
    f: impl FnOnce() -> Result<R, PluginError>,
) -> RResult<R, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => {
            let location = LAST_PANIC.with(|p| p.borrow_mut().take());
            let backtrace = LAST_BACKTRACE.with(|b| b.borrow_mut().take());
            let message = format!("panicked in {callback}: {}", panic_message(&*payload));
            report_backtrace(callback, &message, location.as_ref(), backtrace);
            RResult::RErr(PluginError::panicked(message, location))
        }
    }
}

/// Adapts a [`PluginImpl`] to the FFI [`Plugin`] trait, guarding every call.
pub(crate) struct Guarded<T>(pub(crate) T);

impl<T: PluginImpl> Plugin for Guarded<T> {
    fn start(&self) -> RResult<(), PluginError> {
        guard("start", || self.0.start())
    }

    fn stop(&self) -> RResult<(), PluginError> {
        guard("stop", || self.0.stop())
    }

    fn handle_service(
        &self,
        name: RStr<'_>,
        input: RStr<'_>,
        caller: RStr<'_>,
        trace_context: ROption<TraceContext>,
    ) -> RResult<RString, PluginError> {
        guard("handle_service", || {
            let call = ServiceCall {
                name: name.as_str(),
                input: input.as_str(),
                caller: caller.as_str(),
                trace_context: trace_context.into_option(),
            };
            self.0.handle_service(&call).map(RString::from)
        })
    }

    fn handle_http(&self, request: &HttpRequest) -> RResult<HttpResponse, PluginError> {
        guard("handle_http", || self.0.handle_http(request))
    }

    fn on_event(&self, event: &Event) -> RResult<(), PluginError> {
        guard("on_event", || self.0.on_event(event))
    }

    fn on_observations(&self, batch: RSlice<'_, Observation>) -> RResult<(), PluginError> {
        guard("on_observations", || {
            self.0.on_observations(batch.as_slice())
        })
    }

    fn tick(&self, now_unix_ms: u64) -> RResult<(), PluginError> {
        guard("tick", || self.0.tick(now_unix_ms))
    }

    fn health(&self) -> RResult<HealthReport, PluginError> {
        guard("health", || self.0.health())
    }
}

extern "C" fn plugin_info<T: PluginImpl>() -> PluginInfo {
    PluginInfo {
        name: T::NAME.into(),
        version: T::VERSION.into(),
        abi_version: crate::ABI_VERSION.into(),
        description: T::DESCRIPTION.into(),
    }
}

extern "C" fn plugin_new<T: PluginImpl>(
    host: HostHandle,
    config_json: RStr<'_>,
) -> RResult<PluginBox, PluginError> {
    install_panic_hook();
    let _ = PANIC_HOST.set(Host::new(host.clone()));
    guard("new", || {
        let plugin = T::new(Host::new(host), config_json.as_str())?;
        Ok(Plugin_TO::from_value(Guarded(plugin), TD_Opaque))
    })
}

/// Builds the root module for `T`; used by [`crate::export_plugin!`].
pub fn root_module<T: PluginImpl>() -> PluginMod_Ref {
    PluginMod {
        info: plugin_info::<T>,
        new: plugin_new::<T>,
    }
    .leak_into_prefix()
}

/// Exports a [`PluginImpl`] as this library's root module.
///
/// The expansion names only `plugin_abi` paths, so a plugin needs no other
/// ABI dependency (no `abi_stable` in its `Cargo.toml`).
///
/// ```ignore
/// plugin_abi::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The library header abi_stable's loader reads at load; its name is
        /// `plugin_abi::__private::ROOT_MODULE_SYMBOL`.
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader =
            $crate::__private::lib_header::<$plugin>();
    };
}

#[cfg(test)]
mod tests;
