//! The health capability: the one place health touches the host. It owns
//! the health services (`monitoring.health_check`, `…register_health_check`,
//! `…unregister_health_check`), the `/health`, `/health/live` and
//! `/health/ready` routes, and the runner thread that executes rounds of
//! the [`HealthChecker`]; each finished round sets the health gauges,
//! publishes `monitoring.health.changed` and is handed to the capabilities
//! that asked for it (tracing turns rounds into spans).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use abi_stable::std_types::RString;
use parking_lot::Mutex;
use plugin_abi::{
    Host, HostInfo_Ref, HttpRequest, HttpResponse, PluginError, PluginState, PluginSummary,
    ServiceCall,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::checker::{CustomCheck, HealthChecker, HostView, Snapshot, Status};
use crate::capability::{Capability, Ctx, Route};
use crate::http::{error, has_token, query_param};

/// The longest a caller waits for a fresh health round: the check timeout
/// plus a little, but never more than 80 % of the host's deadline for the
/// callback the caller is in (the host's `callback_timeout_ms` /
/// `service_timeout_ms`, 5 s when the host says 0).
fn health_refresh_wait(check_timeout_secs: f64, host_info: &HostInfo_Ref) -> Duration {
    let deadline_ms = [
        host_info.callback_timeout_ms(),
        host_info.service_timeout_ms(),
    ]
    .into_iter()
    .filter(|ms| *ms > 0)
    .min()
    .unwrap_or(5_000);
    let by_host = Duration::from_millis(deadline_ms * 4 / 5);
    let by_checks =
        Duration::from_secs_f64(check_timeout_secs.max(0.0)) + Duration::from_millis(250);
    by_checks.min(by_host)
}

fn parse<T: for<'de> Deserialize<'de>>(service: &str, input: &str) -> Result<T, PluginError> {
    serde_json::from_str(input)
        .map_err(|e| PluginError::bad_request(format!("invalid input for {service}: {e}")))
}

/// The host's handle is what a health round reads.
impl HostView for Host {
    fn storage_set(&self, namespace: &str, key: &str, value_json: &str) -> Result<(), PluginError> {
        Host::storage_set(self, namespace, key, value_json)
    }
    fn storage_get(&self, namespace: &str, key: &str) -> Result<Option<String>, PluginError> {
        Host::storage_get(self, namespace, key)
    }
    fn get_module(&self, name: &str) -> Option<Value> {
        Host::get_module(self, name)
    }
    fn list_modules(&self) -> Value {
        Host::list_modules(self)
    }
    fn list_plugins(&self) -> Vec<PluginSummary> {
        Host::list_plugins(self)
    }
    fn call_service(&self, name: &str, input: &str) -> Result<RString, PluginError> {
        Host::call_service(self, name, input, None)
    }
    fn registered_checks(&self) -> Vec<plugin_abi::telemetry::RegisteredCheck> {
        self.raw().telemetry_slot().health_checks()
    }
}

/// Who hears about finished rounds besides the gauges and the bus.
type RoundListeners = Vec<Weak<dyn Capability>>;

/// State shared by the capability and its runner thread.
struct State {
    ctx: Ctx,
    checker: HealthChecker,
    stopping: AtomicBool,
    runner: Mutex<Option<JoinHandle<()>>>,
    /// How long a caller asking for a fresh health result waits for the
    /// round in flight: below the host's callback deadline, so no request
    /// can keep a monitoring callback past it.
    refresh_wait: Duration,
    listeners: OnceLock<RoundListeners>,
}

/// The health capability.
pub struct Health(Arc<State>);

impl Health {
    /// Builds the checker (custom checks persisted in host storage under
    /// the `monitoring` namespace) without starting any round.
    pub fn new(ctx: &Ctx) -> Self {
        let checker = HealthChecker::new(
            Arc::new(ctx.host.clone()),
            ctx.config.health.clone(),
            ctx.kv("monitoring"),
        );
        let refresh_wait =
            health_refresh_wait(ctx.config.health.timeout_secs, &ctx.host.host_info());
        Health(Arc::new(State {
            ctx: ctx.clone(),
            checker,
            stopping: AtomicBool::new(false),
            runner: Mutex::new(None),
            refresh_wait,
            listeners: OnceLock::new(),
        }))
    }

    /// Hands every finished round to `capabilities` (through weak
    /// references: the list owns them, not the health runner). Set once.
    pub fn notify_rounds_to(&self, capabilities: &[Arc<dyn Capability>]) {
        let _ = self
            .0
            .listeners
            .set(capabilities.iter().map(Arc::downgrade).collect());
    }
}

impl State {
    /// Asks for a health round that starts after this call and returns its
    /// number. Rounds run on one runner thread, started here unless one is
    /// running (it then runs this round next, shared with every other
    /// caller asking meanwhile).
    fn request_round(self: &Arc<Self>) -> u64 {
        let (number, start_runner) = self.checker.request_round();
        if !start_runner {
            return number;
        }
        if self.stopping.load(Ordering::Acquire) {
            self.checker.abandon_rounds();
            return number;
        }
        let mut slot = self.runner.lock();
        if let Some(finished) = slot.take() {
            // The previous runner has handed back the right to run: it is
            // ending, so joining is quick.
            let _ = finished.join();
        }
        let state = self.clone();
        let spawned = std::thread::Builder::new()
            .name("monitoring-health".into())
            .spawn(move || {
                while let Some(round) = state.checker.next_round() {
                    if state.stopping.load(Ordering::Acquire) {
                        state.checker.abandon_rounds();
                        break;
                    }
                    state.apply_round();
                    state.checker.round_finished(round);
                }
            });
        match spawned {
            Ok(t) => *slot = Some(t),
            Err(e) => {
                self.checker.abandon_rounds();
                self.ctx
                    .host
                    .error(&format!("cannot start health thread: {e}"));
            }
        }
        number
    }

    /// The health snapshot for a caller: the latest one, or with `refresh`
    /// the result of a round that starts after this call — shared with
    /// every other caller asking meanwhile, and waited for at most
    /// `refresh_wait`. The flag is false when that wait ran out and the
    /// snapshot is an older one. `None` before the first round has finished.
    fn snapshot(self: &Arc<Self>, refresh: bool) -> Option<(Arc<Snapshot>, bool)> {
        if !refresh {
            if let Some(latest) = self.checker.latest() {
                return Some((latest, true));
            }
        }
        let round = self.request_round();
        let fresh = self.checker.wait_for_round(round, self.refresh_wait);
        self.checker.latest().map(|s| (s, fresh))
    }

    /// Runs a health round now (on the calling thread) and applies its
    /// results; only the holder of the round runs it.
    fn apply_round(&self) {
        let (snapshot, changes) = self.checker.run();
        for cap in self.listeners.get().into_iter().flatten() {
            if let Some(cap) = cap.upgrade() {
                cap.on_health_round(&snapshot);
            }
        }
        let collector = &self.ctx.collector;
        for (component, result) in snapshot.components() {
            collector.set_health(&component, result.status.score(), result.duration_ms / 1e3);
        }
        collector.set_health(
            "overall",
            snapshot.status.score(),
            snapshot.duration_ms / 1e3,
        );
        for change in changes {
            let payload = serde_json::to_string(&change).unwrap_or_default();
            if let Err(e) = self
                .ctx
                .host
                .publish("monitoring.health.changed", &payload, None)
            {
                self.ctx
                    .host
                    .warn(&format!("cannot publish health change: {e}"));
            }
        }
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
            && self.ctx.config.access.health_details_require_token
            && call.caller == plugin_abi::HTTP_CALLER
        {
            return Err(PluginError::new(
                plugin_abi::ErrorKind::Unauthorized,
                "component details over HTTP need the host's admin token (health_details_require_token is set); \"overall\" is public",
            ));
        }
        let Some((snapshot, _fresh)) = self.snapshot(input.refresh) else {
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

    fn register(&self, call: &ServiceCall<'_>) -> Result<Value, PluginError> {
        refuse_plain_http(call)?;
        let mut check: CustomCheck = parse(call.name, call.input)?;
        self.check_owner(call, &check.name)?;
        check.registered_by = call.caller.to_owned();
        self.checker
            .register(check.clone())
            .map_err(PluginError::bad_request)?;
        Ok(json!({"registered": check.name}))
    }

    fn unregister(&self, call: &ServiceCall<'_>) -> Result<Value, PluginError> {
        refuse_plain_http(call)?;
        #[derive(Deserialize)]
        struct Input {
            name: String,
        }
        let input: Input = parse(call.name, call.input)?;
        self.check_owner(call, &input.name)?;
        let existed = self
            .checker
            .unregister(&input.name)
            .map_err(PluginError::unavailable)?;
        if !existed {
            return Err(PluginError::not_found(format!(
                "no health check named {:?}",
                input.name
            )));
        }
        Ok(json!({"unregistered": input.name}))
    }

    /// A check belongs to whoever registered it: only its owner (or an
    /// admin over HTTP) may replace or remove it.
    fn check_owner(&self, call: &ServiceCall<'_>, name: &str) -> Result<(), PluginError> {
        match self.checker.owner_of(name) {
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

    fn health_route(self: &Arc<Self>, request: &HttpRequest) -> HttpResponse {
        let refresh =
            query_param(request.query.as_str(), "refresh").is_some_and(|v| v == "true" || v == "1");
        let Some((snapshot, fresh)) = self.snapshot(refresh) else {
            return error(
                503,
                "unavailable",
                "the first health round has not finished yet; try again shortly",
            );
        };
        let code = if snapshot.status == Status::Unhealthy {
            503
        } else {
            200
        };
        let access = &self.ctx.config.access;
        let allowed = !access.health_details_require_token
            || has_token(
                request,
                &[
                    access.admin_token.as_deref(),
                    access.metrics_token.as_deref(),
                ],
            );
        let mut body: Value = if allowed {
            serde_json::to_value(&*snapshot).unwrap_or(Value::Null)
        } else {
            json!({"status": snapshot.status, "checked_at_ms": snapshot.checked_at_ms})
        };
        if !fresh {
            // The refresh is still running (a check is slow): this is the
            // previous round, and the caller is told so.
            body["refresh_pending"] = Value::Bool(true);
        }
        HttpResponse::json(code, &body)
    }

    fn ready_route(&self) -> HttpResponse {
        let mut reasons = Vec::new();
        match self.checker.latest() {
            Some(s) => {
                if let Some(st) = &s.checks.storage {
                    if st.status == Status::Unhealthy {
                        reasons.push(format!("storage: {}", st.message));
                    }
                }
            }
            None => reasons.push("health checks have not run yet".to_owned()),
        }
        for p in self.ctx.host.list_plugins() {
            if p.file_present && p.state() != PluginState::Started {
                reasons.push(format!("plugin {} is {}", p.name, p.state().as_str()));
            }
        }
        let ready = reasons.is_empty();
        HttpResponse::json(
            if ready { 200 } else { 503 },
            &json!({"ready": ready, "reasons": reasons}),
        )
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

const ROUTE_HEALTH: &str = "/api/v1/monitoring/health";
const ROUTE_LIVE: &str = "/api/v1/monitoring/health/live";
const ROUTE_READY: &str = "/api/v1/monitoring/health/ready";

impl Capability for Health {
    fn name(&self) -> &'static str {
        "health"
    }

    fn services(&self) -> Vec<(&'static str, &'static str)> {
        vec![
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
        ]
    }

    fn routes(&self) -> Vec<Route> {
        [ROUTE_HEALTH, ROUTE_LIVE, ROUTE_READY]
            .into_iter()
            .map(|path| Route::new("GET", path))
            .collect()
    }

    fn start(&self) -> Result<(), PluginError> {
        self.0.request_round();
        Ok(())
    }

    fn stop(&self) {
        self.0.stopping.store(true, Ordering::Release);
        if let Some(t) = self.0.runner.lock().take() {
            let _ = t.join();
        }
        self.0.checker.wait_idle(Duration::from_secs(6));
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Option<Result<Value, PluginError>> {
        Some(match call.name {
            "monitoring.health_check" => self.0.health_check(call),
            "monitoring.register_health_check" => self.0.register(call),
            "monitoring.unregister_health_check" => self.0.unregister(call),
            _ => return None,
        })
    }

    fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
        Some(match request.path.as_str() {
            ROUTE_HEALTH => self.0.health_route(request),
            ROUTE_LIVE => HttpResponse::json(200, &json!({"status": "alive"})),
            ROUTE_READY => self.0.ready_route(),
            _ => return None,
        })
    }

    fn tick(&self, _now_unix_ms: u64) {
        if self.0.checker.due() {
            self.0.request_round();
        }
    }

    fn status_fields(&self) -> serde_json::Map<String, Value> {
        let mut fields = serde_json::Map::new();
        fields.insert(
            "custom_health_checks".into(),
            json!(self.0.checker.custom_checks()),
        );
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(callback_timeout_ms: u64, service_timeout_ms: u64) -> HostInfo_Ref {
        plugin_abi::HostInfo {
            host_version: "t".into(),
            abi_version: plugin_abi::ABI_VERSION.into(),
            started_unix_ms: 0,
            pid: 1,
            data_dir: "".into(),
            plugins_dir: "".into(),
            trace_sample_ratio: 1.0,
            service_timeout_ms,
            callback_timeout_ms,
        }
        .leak()
    }

    #[test]
    fn refresh_wait_stays_under_the_host_deadline() {
        let info = host(1000, 30_000);
        assert_eq!(health_refresh_wait(5.0, &info), Duration::from_millis(800));
        assert_eq!(
            health_refresh_wait(0.5, &info),
            Duration::from_millis(750),
            "check timeout + 250 ms when that is shorter"
        );
        assert_eq!(
            health_refresh_wait(60.0, &host(0, 0)),
            Duration::from_millis(4_000),
            "5 s default deadline"
        );
    }
}
