//! Plugin HTTP: registering a plugin's routes and sending an HTTP request
//! to the plugin that registered its route.

use abi_stable::std_types::{RString, RVec, Tuple2};
use plugin_abi::{ErrorKind, HttpRequest, HttpResponse, PluginError, PluginState};

use axum::http::StatusCode;

use super::HostCore;
use crate::http_error::ApiError;
use crate::plugins::chain::CallChain;
use crate::plugins::invoke::{admit, invoke_async, Call};
use crate::plugins::PluginInstance;
use crate::tracecontext::{self, SpanContext};

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

impl HostCore {
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

    /// Routes an HTTP request to the plugin that registered it; an error is
    /// the HTTP answer (404/405 without a route, 503 refused or not running,
    /// else the status of the plugin error's kind).
    pub async fn plugin_http(&self, request: PluginHttpRequest) -> Result<HttpResponse, ApiError> {
        let found = self.routes.lookup(&request.method, &request.path);
        let route = match found {
            Ok(m) => m,
            Err(true) => {
                return Err(ApiError::method_not_allowed(format!(
                    "method {} is not allowed on {}",
                    request.method, request.path
                )))
            }
            Err(false) => {
                return Err(ApiError::not_found(format!(
                    "no route for {} {}",
                    request.method, request.path
                )))
            }
        };
        let timeout = match route.owner.timeout_ms {
            0 => self.config.callback_timeout(),
            ms => std::time::Duration::from_millis(ms),
        };
        let Some(instance) = self.plugins.live(route.owner.instance) else {
            return Err(
                PluginError::unavailable("the plugin serving this route is not running").into(),
            );
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
            trace_context: request.trace_context.into(),
        };
        let span = request.trace_context;
        let admission = admit(
            &self.config.host.resilience,
            &instance,
            &CallChain::default(),
            &request.path,
        )
        .map_err(|refused| {
            // Refused before it reached the plugin: 503 whatever the kind
            // (the depth limit is `failed`).
            let e = refused.to_plugin_error();
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.kind().as_str(),
                e.message.into_string(),
            )
        })?;
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
            if matches!(e.kind(), ErrorKind::Panicked | ErrorKind::Timeout) {
                let msg = format!("HTTP handler: {}", e.message);
                if e.kind == ErrorKind::Panicked
                    && instance.set_state(PluginState::Error, Some(msg.clone()))
                {
                    self.plugin_state_changed(&instance, "error");
                }
                self.report_plugin_error(
                    "http_handler",
                    &instance.name,
                    &msg,
                    e.panic.as_ref().into_option(),
                );
            }
            ApiError::from(e)
        })
    }
}
