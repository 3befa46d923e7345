//! MonitoringModule: the plugin's life cycle. At start it registers its
//! services, routes, the `internal.*` subscription and the observer stream;
//! at stop it joins its threads (the host revokes the registrations).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use plugin_abi::{
    Event, Host, HttpRequest, HttpResponse, Observation, PluginError, PluginImpl, ServiceCall,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::capability::{build_all, Capability, Ctx};
use crate::config::MonitoringConfig;
use crate::health::checker::{CustomCheck, HealthChecker, Snapshot};
use crate::metrics::collector::{BuildInfo, MetricsCollector};
use crate::metrics::{MetricKind, RecordRequest};
use crate::store::HostKv;

/// Services the plugin registers: (name, description).
pub const SERVICES: &[(&str, &str)] = &[
    (
        "monitoring.record_metric",
        "record a custom metric: {name, value, labels, kind, help?}",
    ),
    (
        "monitoring.health_check",
        "one component's latest health: {component, refresh?}",
    ),
    (
        "monitoring.register_health_check",
        "register a custom check: {name, service, critical?}",
    ),
    (
        "monitoring.unregister_health_check",
        "remove a custom check: {name}",
    ),
];

/// State shared by the plugin's callbacks and threads.
pub struct Inner {
    /// Handle to the host.
    pub host: Host,
    /// Configuration.
    pub config: Arc<MonitoringConfig>,
    /// Metrics.
    pub collector: Arc<MetricsCollector>,
    /// Health checks.
    pub health: HealthChecker,
    /// Alerting, error tracking, tracing, profiling, …
    pub capabilities: Vec<Arc<dyn Capability>>,
    stopping: AtomicBool,
    health_thread: Mutex<Option<JoinHandle<()>>>,
    /// How long a caller asking for a fresh health result waits for the
    /// round in flight: below the host's callback deadline, so no request
    /// can keep a monitoring callback past it.
    health_refresh_wait: Duration,
    events_seen: AtomicU64,
}

/// The longest a caller waits for a fresh health round: the check timeout
/// plus a little, but never more than 80 % of the host's deadline for the
/// callback the caller is in (`callback_timeout_ms` / `service_timeout_ms`
/// from `host_info`, 5 s when the host does not say).
fn health_refresh_wait(check_timeout_secs: f64, host_info: &Value) -> Duration {
    let deadline_ms = ["callback_timeout_ms", "service_timeout_ms"]
        .iter()
        .filter_map(|k| host_info[*k].as_u64())
        .min()
        .unwrap_or(5_000);
    let by_host = Duration::from_millis(deadline_ms * 4 / 5);
    let by_checks =
        Duration::from_secs_f64(check_timeout_secs.max(0.0)) + Duration::from_millis(250);
    by_checks.min(by_host)
}

/// The monitoring plugin.
pub struct MonitoringModule {
    inner: Arc<Inner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordInput {
    name: String,
    value: f64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    kind: String,
    #[serde(default)]
    help: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de>>(service: &str, input: &str) -> Result<T, PluginError> {
    serde_json::from_str(input)
        .map_err(|e| PluginError::bad_request(format!("invalid input for {service}: {e}")))
}

impl Inner {
    /// Asks for a health round that starts after this call and returns its
    /// number. Rounds run on one runner thread, started here unless one is
    /// running (it then runs this round next, shared with every other
    /// caller asking meanwhile).
    pub fn request_health_round(self: &Arc<Self>) -> u64 {
        let (number, start_runner) = self.health.request_round();
        if !start_runner {
            return number;
        }
        if self.stopping.load(Ordering::Acquire) {
            self.health.abandon_rounds();
            return number;
        }
        let mut slot = self.health_thread.lock();
        if let Some(finished) = slot.take() {
            // The previous runner has handed back the right to run: it is
            // ending, so joining is quick.
            let _ = finished.join();
        }
        let inner = self.clone();
        let spawned = std::thread::Builder::new()
            .name("monitoring-health".into())
            .spawn(move || {
                while let Some(round) = inner.health.next_round() {
                    if inner.stopping.load(Ordering::Acquire) {
                        inner.health.abandon_rounds();
                        break;
                    }
                    inner.apply_health_round();
                    inner.health.round_finished(round);
                }
            });
        match spawned {
            Ok(t) => *slot = Some(t),
            Err(e) => {
                self.health.abandon_rounds();
                self.host.error(&format!("cannot start health thread: {e}"));
            }
        }
        number
    }

    /// The health snapshot for a caller: the latest one, or with `refresh`
    /// the result of a round that starts after this call — shared with
    /// every other caller asking meanwhile, and waited for at most
    /// `health_refresh_wait`. The flag is false when that wait ran out and
    /// the snapshot is an older one. `None` before the first round has
    /// finished.
    pub fn health_snapshot(self: &Arc<Self>, refresh: bool) -> Option<(Arc<Snapshot>, bool)> {
        if !refresh {
            if let Some(latest) = self.health.latest() {
                return Some((latest, true));
            }
        }
        let round = self.request_health_round();
        let fresh = self.health.wait_for_round(round, self.health_refresh_wait);
        self.health.latest().map(|s| (s, fresh))
    }

    /// Runs a health round now (on the calling thread) and applies its
    /// results; only the holder of the round runs it.
    fn apply_health_round(&self) -> Arc<Snapshot> {
        let (snapshot, changes) = self.health.run();
        for cap in &self.capabilities {
            cap.on_health_round(&snapshot);
        }
        for (component, result) in snapshot.components() {
            self.collector
                .set_health(&component, result.status.score(), result.duration_ms / 1e3);
        }
        self.collector.set_health(
            "overall",
            snapshot.status.score(),
            snapshot.duration_ms / 1e3,
        );
        for change in changes {
            let payload = serde_json::to_string(&change).unwrap_or_default();
            if let Err(e) = self
                .host
                .publish("monitoring.health.changed", &payload, None)
            {
                self.host
                    .warn(&format!("cannot publish health change: {e}"));
            }
        }
        snapshot
    }

    /// Refreshes gauges that mirror host state (plugins, observer drops).
    pub fn refresh_host_gauges(&self) {
        self.collector.update_plugins(&self.host.list_plugins());
        let info = self.host.host_info();
        self.collector
            .sync_host_drops(info["observer_dropped_total"].as_u64().unwrap_or(0));
    }

    /// The plugin's own status for `/api/v1/monitoring/status`.
    pub fn status_json(&self) -> Value {
        json!({
            "plugin": MonitoringModule::NAME,
            "version": MonitoringModule::VERSION,
                        "series": self.collector.store().series_count(),
            "metric_families": self.collector.host_family_names(),
            "internal_events_seen": self.events_seen.load(Ordering::Relaxed),
                        "custom_health_checks": self.health.custom_checks(),
            "capabilities": self.capabilities.iter().map(|c| (c.name().to_owned(), c.status())).collect::<serde_json::Map<String, Value>>(),
            "host": self.host.host_info(),
        })
    }

    fn record_metric(&self, call: &ServiceCall<'_>) -> Result<Value, PluginError> {
        let input: RecordInput = parse(call.name, call.input)?;
        let kind = match input.kind.as_str() {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            other => {
                return Err(PluginError::bad_request(format!(
                    "unknown metric kind {other:?}: use counter, gauge or histogram"
                )))
            }
        };
        if input.labels.contains_key("plugin") {
            return Err(PluginError::bad_request(
                "label \"plugin\" is reserved: it is set to the calling plugin's name",
            ));
        }
        let mut labels = input.labels;
        labels.insert("plugin".to_owned(), call.caller.to_owned());
        let request = RecordRequest {
            name: input.name,
            value: input.value,
            labels,
            kind,
            help: input.help,
        };
        self.collector
            .store()
            .record(&request)
            .map_err(|e| PluginError::bad_request(format!("{} ({})", e, e.reason())))?;
        Ok(json!({"recorded": request.name}))
    }

    fn health_check(self: &Arc<Self>, call: &ServiceCall<'_>) -> Result<Value, PluginError> {
        #[derive(Deserialize)]
        struct Input {
            component: String,
            #[serde(default)]
            refresh: bool,
        }
        let input: Input = parse(call.name, call.input)?;
        // The token rule of `/health`: details (messages, per-check results)
        // need a token, which a plain HTTP caller did not show.
        if input.component != "overall"
            && self.config.access.health_details_require_token
            && call.caller == plugin_abi::HTTP_CALLER
        {
            return Err(PluginError::new(
                plugin_abi::ErrorKind::Unauthorized,
                "component details over HTTP need the host's admin token (health_details_require_token is set); \"overall\" is public",
            ));
        }
        let Some((snapshot, _fresh)) = self.health_snapshot(input.refresh) else {
            return Err(PluginError::unavailable(
                "the first health round has not finished yet; try again shortly",
            ));
        };
        if input.component == "overall" {
            return Ok(
                json!({"component": "overall", "status": snapshot.status, "checked_at_ms": snapshot.checked_at_ms}),
            );
        }
        let wanted = input.component.as_str();
        snapshot
            .components()
            .into_iter()
            .find(|(name, _)| name == wanted || name.split_once(':').is_some_and(|(_, n)| n == wanted))
            .map(|(name, r)| json!({"component": name, "result": r}))
            .ok_or_else(|| {
                PluginError::not_found(format!(
                    "no health component {wanted:?}; use storage, overall, module:<name>, plugin:<name> or custom:<name>"
                ))
            })
    }
}

/// Registration services change what `/health` answers for everyone, so
/// the HTTP API may use them only with the host's admin token (the caller is
/// then [`plugin_abi::HTTP_ADMIN_CALLER`]).
fn refuse_plain_http(call: &ServiceCall<'_>) -> Result<(), PluginError> {
    if call.caller == plugin_abi::HTTP_CALLER {
        return Err(PluginError::new(
            plugin_abi::ErrorKind::Unauthorized,
            format!("{} over HTTP needs the host's admin token", call.name),
        ));
    }
    Ok(())
}

/// A check belongs to whoever registered it: only its owner (or an admin
/// over HTTP) may replace or remove it.
fn check_owner(inner: &Inner, call: &ServiceCall<'_>, name: &str) -> Result<(), PluginError> {
    match inner.health.owner_of(name) {
        Some(owner)
            if !owner.is_empty()
                && owner != call.caller
                && call.caller != plugin_abi::HTTP_ADMIN_CALLER =>
        {
            Err(PluginError::conflict(format!(
                "health check {name:?} belongs to {owner:?}: only its owner may replace or remove it"
            )))
        }
        _ => Ok(()),
    }
}

impl PluginImpl for MonitoringModule {
    const NAME: &'static str = "monitoring";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "metrics, health checks and observability for HomeConsole";

    fn new(host: Host, config: &str) -> Result<Self, PluginError> {
        let config = MonitoringConfig::from_json(config).map_err(PluginError::bad_request)?;
        let info = host.host_info();
        let build = BuildInfo {
            host_version: info["host_version"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
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
        let kv = Arc::new(HostKv::new(host.clone(), "monitoring"));
        let health = HealthChecker::new(host.clone(), config.health.clone(), kv);
        let health_refresh_wait =
            health_refresh_wait(config.health.timeout_secs, &host.host_info());
        let (config, collector) = (Arc::new(config), Arc::new(collector));

        let ctx = Ctx {
            host: host.clone(),
            config: config.clone(),
            collector: collector.clone(),
        };
        let capabilities = build_all(&ctx)?;
        Ok(MonitoringModule {
            inner: Arc::new(Inner {
                host,
                config,
                collector,
                health,
                capabilities,
                stopping: AtomicBool::new(false),
                health_thread: Mutex::new(None),
                health_refresh_wait,
                events_seen: AtomicU64::new(0),
            }),
        })
    }

    fn start(&self) -> Result<(), PluginError> {
        let host = &self.inner.host;
        for (name, description) in SERVICES {
            host.register_service(name, description)?;
        }
        for (method, path) in crate::http::ROUTES {
            host.register_route(method, path)?;
        }
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
        self.inner.refresh_host_gauges();
        self.inner.request_health_round();
        host.info("monitoring started");
        Ok(())
    }

    fn stop(&self) -> Result<(), PluginError> {
        self.inner.stopping.store(true, Ordering::Release);
        for cap in self.inner.capabilities.iter().rev() {
            cap.stop();
        }
        if let Some(t) = self.inner.health_thread.lock().take() {
            let _ = t.join();
        }
        self.inner.health.wait_idle(Duration::from_secs(6));
        Ok(())
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        let inner = &self.inner;
        let out = match call.name {
            "monitoring.record_metric" => inner.record_metric(call)?,
            "monitoring.health_check" => inner.health_check(call)?,
            "monitoring.register_health_check" => {
                refuse_plain_http(call)?;
                let mut check: CustomCheck = parse(call.name, call.input)?;
                check_owner(inner, call, &check.name)?;
                check.registered_by = call.caller.to_owned();
                inner
                    .health
                    .register(check.clone())
                    .map_err(PluginError::bad_request)?;
                json!({"registered": check.name})
            }
            "monitoring.unregister_health_check" => {
                refuse_plain_http(call)?;
                #[derive(Deserialize)]
                struct Input {
                    name: String,
                }
                let input: Input = parse(call.name, call.input)?;
                check_owner(inner, call, &input.name)?;
                let existed = inner
                    .health
                    .unregister(&input.name)
                    .map_err(PluginError::unavailable)?;
                if !existed {
                    return Err(PluginError::not_found(format!(
                        "no health check named {:?}",
                        input.name
                    )));
                }
                json!({"unregistered": input.name})
            }
            other => {
                for cap in &inner.capabilities {
                    if let Some(result) = cap.handle_service(call) {
                        return result.map(|v| v.to_string());
                    }
                }
                return Err(PluginError::not_found(format!("no service {other}")));
            }
        };
        Ok(out.to_string())
    }

    fn handle_http(&self, request: &HttpRequest) -> Result<HttpResponse, PluginError> {
        Ok(crate::http::handle(&self.inner, request))
    }

    fn on_event(&self, event: &Event) -> Result<(), PluginError> {
        self.inner.events_seen.fetch_add(1, Ordering::Relaxed);
        for cap in &self.inner.capabilities {
            cap.on_event(event);
        }
        let topic = event.topic.as_str();
        if topic.starts_with("internal.plugin.") {
            if topic == "internal.plugin.stopped" {
                let payload: Value =
                    serde_json::from_str(event.payload.as_str()).unwrap_or(Value::Null);
                if let Some(name) = payload["name"].as_str() {
                    if name != Self::NAME {
                        self.inner.collector.forget_plugin(name);
                    }
                }
            }
            self.inner
                .collector
                .update_plugins(&self.inner.host.list_plugins());
        }
        Ok(())
    }

    fn on_observations(&self, batch: &[Observation]) -> Result<(), PluginError> {
        self.inner.collector.observe(batch);
        for cap in &self.inner.capabilities {
            cap.on_observations(batch);
        }
        Ok(())
    }

    fn tick(&self, now_unix_ms: u64) -> Result<(), PluginError> {
        for cap in &self.inner.capabilities {
            cap.tick(now_unix_ms);
        }
        if self.inner.health.due() {
            self.inner.request_health_round();
        }
        Ok(())
    }
}
