//! MonitoringModule: the plugin's life cycle, and the dispatch of every
//! host callback to the capabilities (`capabilities.rs` lists them). At
//! start it registers what each capability declares, the `internal.*`
//! subscription and the observer stream; at stop it stops them in reverse
//! order (the host revokes the registrations). The only route of its own is
//! `/status`, which gathers every capability's facts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use plugin_abi::{
    Event, Host, HttpRequest, HttpResponse, Observation, PluginError, PluginImpl, ServiceCall,
};
use serde_json::{json, Value};

use crate::capabilities::build_all;
use crate::capability::{Capability, Ctx, PLUGIN_NAME};
use crate::config::MonitoringConfig;
use crate::http::{error, has_any_token, redact_paths};
use crate::metrics::collector::{BuildInfo, MetricsCollector};

/// The plugin's own route: its status, gathered from every capability.
pub const ROUTE_STATUS: &str = "/api/v1/monitoring/status";

/// State shared by the plugin's callbacks.
pub struct Inner {
    /// Handle to the host.
    host: Host,
    /// Configuration.
    config: Arc<MonitoringConfig>,
    /// Metrics, health, alerting, error tracking, tracing, profiling, …
    capabilities: Vec<Arc<dyn Capability>>,
    events_seen: AtomicU64,
}

/// The monitoring plugin.
pub struct MonitoringModule {
    inner: Arc<Inner>,
}

/// Answers a service call by the first capability that declares it.
fn dispatch_service(
    capabilities: &[Arc<dyn Capability>],
    call: &ServiceCall<'_>,
) -> Result<String, PluginError> {
    match capabilities.iter().find_map(|cap| cap.handle_service(call)) {
        Some(result) => result.map(|v| v.to_string()),
        None => Err(PluginError::not_found(format!("no service {}", call.name))),
    }
}

/// Answers a request by the first capability that declares its route
/// (404 with a JSON error when none does).
fn dispatch_http(capabilities: &[Arc<dyn Capability>], request: &HttpRequest) -> HttpResponse {
    capabilities
        .iter()
        .find_map(|cap| cap.handle_http(request))
        .unwrap_or_else(|| {
            error(
                404,
                "not_found",
                &format!("no monitoring route {}", request.path.as_str()),
            )
        })
}

/// The host's facts as the status page shows them: read by field from the
/// typed `host_info` / `host_counters`.
fn host_facts_json(host: &Host) -> Value {
    let info = host.host_info();
    let counters = host.host_counters();
    json!({
        "host_version": info.host_version().as_str(),
        "abi_version": info.abi_version().as_str(),
        "started_at_unix": info.started_unix_ms() as f64 / 1e3,
        "pid": info.pid(),
        "data_dir": info.data_dir().as_str(),
        "plugins_dir": info.plugins_dir().as_str(),
        "trace_sample_ratio": info.trace_sample_ratio(),
        "service_timeout_ms": info.service_timeout_ms(),
        "callback_timeout_ms": info.callback_timeout_ms(),
        "observer_dropped_total": counters.observer_dropped_total,
        "events_published_total": counters.events_published_total,
        "events_dropped_total": counters.events_dropped_total,
    })
}

impl Inner {
    /// The plugin's own status for `/api/v1/monitoring/status`: the
    /// capabilities' top-level facts, then each one's under `capabilities`.
    pub fn status_json(&self) -> Value {
        let mut body = json!({
            "plugin": MonitoringModule::NAME,
            "version": MonitoringModule::VERSION,
            "internal_events_seen": self.events_seen.load(Ordering::Relaxed),
            "capabilities": self.capabilities.iter().map(|c| (c.name().to_owned(), c.status())).collect::<serde_json::Map<String, Value>>(),
            "host": host_facts_json(&self.host),
        });
        if let Some(top) = body.as_object_mut() {
            for cap in &self.capabilities {
                top.extend(cap.status_fields());
            }
        }
        body
    }

    /// `/status`: file-system paths only for a caller with a token.
    fn status(&self, request: &HttpRequest) -> HttpResponse {
        let mut body = self.status_json();
        if !has_any_token(&self.config.access, request) {
            redact_paths(&mut body);
        }
        HttpResponse::json(200, &body)
    }

    /// Answers one request: `/status` here, every other route by the
    /// capability that declared it.
    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        if request.path == ROUTE_STATUS {
            return self.status(request);
        }
        dispatch_http(&self.capabilities, request)
    }

    /// Answers one service call by the capability that declared it.
    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        dispatch_service(&self.capabilities, call)
    }
}

impl PluginImpl for MonitoringModule {
    const NAME: &'static str = PLUGIN_NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "metrics, health checks and observability for HomeConsole";

    fn new(host: Host, config: &str) -> Result<Self, PluginError> {
        let config = MonitoringConfig::from_json(config).map_err(PluginError::bad_request)?;
        let build = BuildInfo {
            host_version: host.host_info().host_version().to_string(),
            abi_version: plugin_abi::ABI_VERSION.to_owned(),
            plugin_version: Self::VERSION.to_owned(),
        };
        let collector = MetricsCollector::with_series_budget(
            config.metrics.max_series_per_metric,
            config.metrics.max_labels,
            config.metrics.max_series,
            &build,
        )
        .map_err(|e| PluginError::failed(e.to_string()))?;
        let (config, collector) = (Arc::new(config), Arc::new(collector));
        let ctx = Ctx {
            host: host.clone(),
            config: config.clone(),
            collector,
        };
        let capabilities = build_all(&ctx)?;
        Ok(MonitoringModule {
            inner: Arc::new(Inner {
                host,
                config,
                capabilities,
                events_seen: AtomicU64::new(0),
            }),
        })
    }

    fn start(&self) -> Result<(), PluginError> {
        let host = &self.inner.host;
        host.register_route("GET", ROUTE_STATUS)?;
        host.subscribe("internal.*")?;
        for cap in &self.inner.capabilities {
            for (name, description) in cap.services() {
                host.register_service(name, description)?;
            }
            for route in cap.routes() {
                host.register_route_with_timeout(route.method, route.path, route.timeout_ms)?;
            }
            for pattern in cap.subscriptions() {
                host.subscribe(pattern)?;
            }
        }
        for cap in &self.inner.capabilities {
            cap.start()?;
        }
        host.set_observer(true)?;
        host.info("monitoring started");
        Ok(())
    }

    fn stop(&self) -> Result<(), PluginError> {
        for cap in self.inner.capabilities.iter().rev() {
            cap.stop();
        }
        Ok(())
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        self.inner.handle_service(call)
    }

    fn handle_http(&self, request: &HttpRequest) -> Result<HttpResponse, PluginError> {
        Ok(self.inner.handle_http(request))
    }

    fn on_event(&self, event: &Event) -> Result<(), PluginError> {
        self.inner.events_seen.fetch_add(1, Ordering::Relaxed);
        for cap in &self.inner.capabilities {
            cap.on_event(event);
        }
        Ok(())
    }

    fn on_observations(&self, batch: &[Observation]) -> Result<(), PluginError> {
        for cap in &self.inner.capabilities {
            cap.on_observations(batch);
        }
        Ok(())
    }

    fn tick(&self, now_unix_ms: u64) -> Result<(), PluginError> {
        for cap in &self.inner.capabilities {
            cap.tick(now_unix_ms);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capability answering one service and one route, echoing its name.
    struct Echo(&'static str);

    impl Capability for Echo {
        fn name(&self) -> &'static str {
            self.0
        }

        fn handle_service(&self, call: &ServiceCall<'_>) -> Option<Result<Value, PluginError>> {
            (call.name == format!("{}.svc", self.0)).then(|| Ok(json!({"by": self.0})))
        }

        fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
            (request.path == format!("/{}", self.0))
                .then(|| HttpResponse::json(200, &json!({"by": self.0})))
        }
    }

    fn caps() -> Vec<Arc<dyn Capability>> {
        vec![Arc::new(Echo("a")), Arc::new(Echo("b"))]
    }

    fn call(name: &str) -> ServiceCall<'_> {
        ServiceCall {
            name,
            input: "{}",
            caller: "test",
            trace_context: None,
        }
    }

    #[test]
    fn a_service_call_reaches_its_owner_and_no_other() {
        assert_eq!(
            dispatch_service(&caps(), &call("b.svc")).unwrap(),
            r#"{"by":"b"}"#
        );
        assert_eq!(
            dispatch_service(&caps(), &call("a.svc")).unwrap(),
            r#"{"by":"a"}"#
        );
        let missing = dispatch_service(&caps(), &call("c.svc")).unwrap_err();
        assert_eq!(missing.kind, plugin_abi::ErrorKind::NotFound);
        assert!(missing.message.contains("no service c.svc"), "{missing:?}");
    }

    #[test]
    fn a_request_reaches_its_owner_or_gets_a_json_404() {
        let request = |path: &str| HttpRequest {
            path: path.into(),
            ..HttpRequest::default()
        };
        let answer = dispatch_http(&caps(), &request("/b"));
        assert_eq!(answer.status, 200);
        assert_eq!(&answer.body[..], br#"{"by":"b"}"#);
        let missing = dispatch_http(&caps(), &request("/nowhere"));
        assert_eq!(missing.status, 404);
        assert!(String::from_utf8_lossy(&missing.body).contains("no monitoring route /nowhere"));
    }
}
