//! HealthChecker: periodic, concurrent, time-bounded health checks of
//! storage, modules, plugins and custom checks registered by plugins.
//!
//! Each check runs on its own thread with a deadline; a check that does not
//! answer in time is unhealthy ("timed out after 5s") and never delays the
//! others. A check still running from the previous round is not started
//! again. The latest results are kept so `/health` answers fast; status
//! changes are returned for the caller to publish (the health capability
//! sends them on the bus as `monitoring.health.changed`). The host is seen
//! only through [`HostView`], so a round runs in a unit test too.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::RString;
use parking_lot::{Condvar, Mutex, RwLock};
use plugin_abi::telemetry::{HealthCheckBox, RegisteredCheck};
use plugin_abi::{CircuitState, HealthStatus, PluginError, PluginState, PluginSummary};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::HealthConfig;
use crate::store::KvStore;

/// What a health round reads from the host: storage (written and read back
/// as a probe), the module and plugin lists, and the services behind
/// custom checks. The host's handle is one; a test gives a fake, so the
/// checker runs without a host.
pub trait HostView: Send + Sync + 'static {
    /// Writes `value_json` under `namespace`/`key`.
    fn storage_set(&self, namespace: &str, key: &str, value_json: &str) -> Result<(), PluginError>;
    /// Reads `namespace`/`key`.
    fn storage_get(&self, namespace: &str, key: &str) -> Result<Option<String>, PluginError>;
    /// One module's facts (`details.probe` of `storage` is used).
    fn get_module(&self, name: &str) -> Option<Value>;
    /// Every module: `[{name, status, details}]`.
    fn list_modules(&self) -> Value;
    /// Every plugin, typed.
    fn list_plugins(&self) -> Vec<PluginSummary>;
    /// Calls a service with `{}` (a custom check); the answer is the
    /// callee's string, handed on uncopied.
    fn call_service(&self, name: &str, input: &str) -> Result<RString, PluginError>;
    /// Health checks plugins registered through the telemetry API (the
    /// host's slot); none by default.
    fn registered_checks(&self) -> Vec<RegisteredCheck> {
        Vec::new()
    }
}

/// Health of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Healthy,
    /// Works with reduced function or speed.
    Degraded,
    /// Does not work.
    Unhealthy,
}

impl Status {
    /// Gauge value: 1, 0.5, 0.
    pub fn score(self) -> f64 {
        match self {
            Status::Healthy => 1.0,
            Status::Degraded => 0.5,
            Status::Unhealthy => 0.0,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        match text {
            "healthy" | "ok" | "up" => Some(Status::Healthy),
            "degraded" | "warning" => Some(Status::Degraded),
            "unhealthy" | "down" | "error" => Some(Status::Unhealthy),
            _ => None,
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    /// Outcome.
    pub status: Status,
    /// Why (empty when healthy).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
    /// How long the check took, milliseconds.
    pub duration_ms: f64,
    /// When it was taken, Unix epoch milliseconds.
    pub checked_at_ms: u64,
    /// Extra facts (plugin state, generation, …).
    #[serde(skip_serializing_if = "Value::is_null", default)]
    pub details: Value,
}

impl CheckResult {
    fn new(status: Status, message: impl Into<String>, started: Instant) -> Self {
        CheckResult {
            status,
            message: message.into(),
            duration_ms: started.elapsed().as_secs_f64() * 1_000.0,
            checked_at_ms: now_ms(),
            details: Value::Null,
        }
    }
}

/// All results of one round.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Worst status across components (non-critical custom checks count as
    /// degraded at most).
    pub status: Status,
    /// When the round finished, Unix epoch ms.
    pub checked_at_ms: u64,
    /// Round duration, ms.
    pub duration_ms: f64,
    /// Per component.
    pub checks: Checks,
}

/// Per-component results in the seed's shape.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Checks {
    /// Storage probe.
    pub storage: Option<CheckResult>,
    /// Built-in modules.
    pub modules: BTreeMap<String, CheckResult>,
    /// Plugins.
    pub plugins: BTreeMap<String, CheckResult>,
    /// Custom checks.
    pub custom: BTreeMap<String, CheckResult>,
}

impl Snapshot {
    /// `(component label, result)` for every check.
    pub fn components(&self) -> Vec<(String, &CheckResult)> {
        let mut out = Vec::new();
        if let Some(s) = &self.checks.storage {
            out.push(("storage".to_owned(), s));
        }
        out.extend(
            self.checks
                .modules
                .iter()
                .map(|(k, v)| (format!("module:{k}"), v)),
        );
        out.extend(
            self.checks
                .plugins
                .iter()
                .map(|(k, v)| (format!("plugin:{k}"), v)),
        );
        out.extend(
            self.checks
                .custom
                .iter()
                .map(|(k, v)| (format!("custom:{k}"), v)),
        );
        out
    }
}

/// A custom check registered by a plugin: a service the checker calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CustomCheck {
    /// Check name (unique).
    pub name: String,
    /// Service called with `{}`; it answers `{"status": "healthy"|"degraded"|"unhealthy", "message": …}`.
    pub service: String,
    /// Whether an unhealthy result makes the whole host unhealthy (else degraded).
    #[serde(default = "yes")]
    pub critical: bool,
    /// Plugin that registered it.
    #[serde(default)]
    pub registered_by: String,
}

fn yes() -> bool {
    true
}

use crate::time::now_ms;

const CHECK_PREFIX: &str = "healthcheck/";
const PROBE_NAMESPACE: &str = "monitoring";

/// Checks a custom check name.
pub fn valid_check_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// A status change, to be published.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Component label.
    pub component: String,
    /// Previous status (None for the first result).
    pub from: Option<Status>,
    /// New status.
    pub to: Status,
    /// Message of the new result.
    pub message: String,
}

/// The checker.
pub struct HealthChecker {
    host: Arc<dyn HostView>,
    config: HealthConfig,
    kv: Arc<dyn KvStore>,
    custom: RwLock<BTreeMap<String, CustomCheck>>,
    latest: RwLock<Option<Arc<Snapshot>>>,
    rounds: Mutex<Rounds>,
    round_done: Condvar,
    last_round: Mutex<Option<Instant>>,
    in_progress: Arc<Mutex<HashSet<String>>>,
}

/// Single-flight bookkeeping: at most one round runs at a time. A caller
/// that wants a fresh result asks for a round that starts after its call;
/// every caller asking while a round runs shares the one next round, so a
/// burst of requests costs at most two rounds, never one each.
#[derive(Debug, Default)]
struct Rounds {
    /// Whether a runner thread is running (or about to run) rounds.
    running: bool,
    /// Number of the last round started.
    started: u64,
    /// Number of the last round finished.
    completed: u64,
    /// Highest round number some caller waits for.
    wanted: u64,
}

impl HealthChecker {
    /// A checker; loads the persisted custom checks.
    pub fn new(host: Arc<dyn HostView>, config: HealthConfig, kv: Arc<dyn KvStore>) -> Self {
        let mut custom = BTreeMap::new();
        if let Ok(keys) = kv.list_keys(CHECK_PREFIX) {
            for key in keys {
                if let Ok(Some(text)) = kv.get(&key) {
                    if let Ok(check) = serde_json::from_str::<CustomCheck>(&text) {
                        custom.insert(check.name.clone(), check);
                    }
                }
            }
        }
        HealthChecker {
            host,
            config,
            kv,
            custom: RwLock::new(custom),
            latest: RwLock::new(None),
            rounds: Mutex::new(Rounds::default()),
            round_done: Condvar::new(),
            last_round: Mutex::new(None),
            in_progress: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.timeout_secs)
    }

    /// Registers (or replaces) a custom check and persists it.
    pub fn register(&self, check: CustomCheck) -> Result<(), String> {
        if !valid_check_name(&check.name) {
            return Err(format!(
                "invalid health check name {:?}: use 1 to 64 characters from [a-z0-9_.-]",
                check.name
            ));
        }
        if check.service.is_empty() {
            return Err("health check needs a service name".into());
        }
        let text = serde_json::to_string(&check).map_err(|e| e.to_string())?;
        self.kv
            .set(&format!("{CHECK_PREFIX}{}", check.name), &text)?;
        self.custom.write().insert(check.name.clone(), check);
        Ok(())
    }

    /// Removes a custom check.
    pub fn unregister(&self, name: &str) -> Result<bool, String> {
        let existed = self.custom.write().remove(name).is_some();
        self.kv.delete(&format!("{CHECK_PREFIX}{name}"))?;
        Ok(existed)
    }

    /// Who registered the custom check `name`, if it exists.
    pub fn owner_of(&self, name: &str) -> Option<String> {
        self.custom
            .read()
            .get(name)
            .map(|c| c.registered_by.clone())
    }

    /// Registered custom checks.
    pub fn custom_checks(&self) -> Vec<CustomCheck> {
        self.custom.read().values().cloned().collect()
    }

    /// The latest snapshot, if any round finished.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.read().clone()
    }

    /// Whether a periodic round is due: none ran for the interval, and
    /// none is running or asked for already.
    pub fn due(&self) -> bool {
        {
            let rounds = self.rounds.lock();
            if rounds.running || rounds.wanted > rounds.started {
                return false;
            }
        }
        match *self.last_round.lock() {
            None => true,
            Some(t) => t.elapsed() >= Duration::from_secs(self.config.interval_secs),
        }
    }

    /// Asks for a round that starts after this call. Returns its number
    /// (for [`HealthChecker::wait_for_round`]) and whether the caller must
    /// start a runner: true when none is running, and then the caller runs
    /// [`HealthChecker::next_round`] / [`HealthChecker::run`] /
    /// [`HealthChecker::round_finished`] until `next_round` says `None`.
    pub fn request_round(&self) -> (u64, bool) {
        let mut rounds = self.rounds.lock();
        let target = rounds.started + 1;
        rounds.wanted = rounds.wanted.max(target);
        let start_runner = !std::mem::replace(&mut rounds.running, true);
        (target, start_runner)
    }

    /// For the runner: the number of the next round to run, or `None` when
    /// no caller waits for one (the runner then ends).
    pub fn next_round(&self) -> Option<u64> {
        let mut rounds = self.rounds.lock();
        if rounds.wanted > rounds.started {
            rounds.started += 1;
            Some(rounds.started)
        } else {
            rounds.running = false;
            None
        }
    }

    /// For the runner: round `number` finished; wakes its waiters.
    pub fn round_finished(&self, number: u64) {
        let mut rounds = self.rounds.lock();
        rounds.completed = rounds.completed.max(number);
        self.round_done.notify_all();
    }

    /// For a runner that cannot run (stopping, no thread): gives up the
    /// rounds asked for so far.
    pub fn abandon_rounds(&self) {
        let mut rounds = self.rounds.lock();
        rounds.running = false;
        rounds.wanted = rounds.started;
        self.round_done.notify_all();
    }

    /// Waits until round `number` has finished, at most `max`; true if it did.
    pub fn wait_for_round(&self, number: u64, max: Duration) -> bool {
        let until = Instant::now() + max;
        let mut rounds = self.rounds.lock();
        while rounds.completed < number {
            if self.round_done.wait_until(&mut rounds, until).timed_out() {
                return rounds.completed >= number;
            }
        }
        true
    }

    /// Runs every check now (concurrently, each bounded by the timeout) and
    /// returns the snapshot and the status changes since the previous one.
    /// Only the runner (see [`HealthChecker::request_round`]) calls this.
    pub fn run(&self) -> (Arc<Snapshot>, Vec<Change>) {
        let started = Instant::now();
        let timeout = self.timeout();
        let deadline = started + timeout;

        // Slow checks go to threads first, so they run while we do the rest.
        let storage_rx = self.spawn_check("storage", {
            let host = self.host.clone();
            let slow = Duration::from_millis(self.config.storage_slow_ms);
            move || storage_probe(&*host, slow)
        });
        let custom: Vec<CustomCheck> = self.custom.read().values().cloned().collect();
        let custom_rx: Vec<(CustomCheck, Option<mpsc::Receiver<CheckResult>>)> = custom
            .into_iter()
            .map(|c| {
                let host = self.host.clone();
                let service = c.service.clone();
                let rx = self.spawn_check(&format!("custom:{}", c.name), move || {
                    custom_probe(&*host, &service)
                });
                (c, rx)
            })
            .collect();

        let registered_rx: Vec<(RegisteredCheck, Option<mpsc::Receiver<CheckResult>>)> = self
            .host
            .registered_checks()
            .into_iter()
            .map(|c| {
                let check = c.check.clone();
                let key = format!("registered:{}:{}", c.plugin, c.name);
                let rx = self.spawn_check(&key, move || registered_probe(&check));
                (c, rx)
            })
            .collect();

        let mut checks = Checks::default();
        let t = Instant::now();
        for m in self
            .host
            .list_modules()
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(name) = m["name"].as_str() else {
                continue;
            };
            let status = if m["status"] == "running" {
                Status::Healthy
            } else {
                Status::Unhealthy
            };
            let mut r = CheckResult::new(
                status,
                if status == Status::Healthy {
                    ""
                } else {
                    "module is not running"
                },
                t,
            );
            r.details = m["details"].clone();
            checks.modules.insert(name.to_owned(), r);
        }
        for p in self.host.list_plugins() {
            checks
                .plugins
                .insert(p.name.to_string(), plugin_result(&p, t));
        }

        checks.storage = Some(wait(storage_rx, deadline, timeout, started));
        for (c, rx) in custom_rx {
            checks
                .custom
                .insert(c.name.clone(), wait(rx, deadline, timeout, started));
        }
        for (c, rx) in registered_rx {
            let mut result = wait(rx, deadline, timeout, started);
            result.details = json!({"registered_by": c.plugin, "via": "telemetry"});
            // A service-based custom check of the same name keeps its name.
            let name = if checks.custom.contains_key(&c.name) {
                format!("{}.{}", c.plugin, c.name)
            } else {
                c.name
            };
            checks.custom.insert(name, result);
        }

        let mut status = Status::Healthy;
        let custom_critical: BTreeMap<String, bool> = self
            .custom
            .read()
            .values()
            .map(|c| (c.name.clone(), c.critical))
            .collect();
        if let Some(s) = &checks.storage {
            status = status.max(s.status);
        }
        for r in checks.modules.values().chain(checks.plugins.values()) {
            status = status.max(r.status);
        }
        for (name, r) in &checks.custom {
            let s = if custom_critical.get(name).copied().unwrap_or(true) {
                r.status
            } else {
                r.status.min(Status::Degraded)
            };
            status = status.max(s);
        }
        let snapshot = Arc::new(Snapshot {
            status,
            checked_at_ms: now_ms(),
            duration_ms: started.elapsed().as_secs_f64() * 1_000.0,
            checks,
        });
        let changes = diff(self.latest().as_deref(), &snapshot);
        *self.latest.write() = Some(snapshot.clone());
        *self.last_round.lock() = Some(Instant::now());
        (snapshot, changes)
    }

    /// Runs `f` on its own thread unless the same check is still running.
    fn spawn_check(
        &self,
        key: &str,
        f: impl FnOnce() -> CheckResult + Send + 'static,
    ) -> Option<mpsc::Receiver<CheckResult>> {
        if !self.in_progress.lock().insert(key.to_owned()) {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let in_progress = self.in_progress.clone();
        let key_owned = key.to_owned();
        let spawned = std::thread::Builder::new()
            .name(format!("health-{key}"))
            .spawn(move || {
                let result = f();
                in_progress.lock().remove(&key_owned);
                let _ = tx.send(result);
            });
        if spawned.is_err() {
            self.in_progress.lock().remove(key);
            return None;
        }
        Some(rx)
    }

    /// Waits (bounded) for checks still running, e.g. when stopping.
    pub fn wait_idle(&self, max: Duration) {
        let until = Instant::now() + max;
        while !self.in_progress.lock().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn wait(
    rx: Option<mpsc::Receiver<CheckResult>>,
    deadline: Instant,
    timeout: Duration,
    started: Instant,
) -> CheckResult {
    let secs = timeout.as_secs_f64();
    let msg = if secs.fract() == 0.0 {
        format!("timed out after {}s", secs as u64)
    } else {
        format!("timed out after {secs}s")
    };
    match rx {
        None => CheckResult::new(
            Status::Unhealthy,
            format!("{msg} (previous check still running)"),
            started,
        ),
        Some(rx) => {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) => r,
                Err(_) => CheckResult::new(Status::Unhealthy, msg, started),
            }
        }
    }
}

/// Runs a check registered through the telemetry API (the guest side
/// already turns a panic into `Unhealthy`); the round adds who registered
/// it to the result.
fn registered_probe(check: &HealthCheckBox) -> CheckResult {
    let started = Instant::now();
    let report = check.check();
    let status = match report.status {
        HealthStatus::Healthy => Status::Healthy,
        HealthStatus::Degraded => Status::Degraded,
        HealthStatus::Unhealthy => Status::Unhealthy,
    };
    CheckResult::new(status, report.message.as_str(), started)
}

fn storage_probe(host: &dyn HostView, slow: Duration) -> CheckResult {
    let started = Instant::now();
    let stamp = format!("{}", now_ms());
    let write = host.storage_set(PROBE_NAMESPACE, "__health_probe", &stamp);
    let read = write
        .as_ref()
        .ok()
        .map(|_| host.storage_get(PROBE_NAMESPACE, "__health_probe"));
    let host_probe = host
        .get_module("storage")
        .map(|m| m["details"]["probe"].clone())
        .unwrap_or(Value::Null);
    let mut result = match (write, read) {
        (Err(e), _) => CheckResult::new(
            Status::Unhealthy,
            format!("storage write failed: {}", e.message),
            started,
        ),
        (Ok(()), Some(Ok(Some(v)))) if v == stamp => {
            if host_probe["ok"] == false {
                let msg = host_probe["error"]
                    .as_str()
                    .unwrap_or("host storage probe failed")
                    .to_owned();
                CheckResult::new(Status::Unhealthy, msg, started)
            } else if started.elapsed() > slow {
                CheckResult::new(
                    Status::Degraded,
                    format!(
                        "storage is slow: probe took {:.0} ms (threshold {} ms)",
                        started.elapsed().as_secs_f64() * 1e3,
                        slow.as_millis()
                    ),
                    started,
                )
            } else {
                CheckResult::new(Status::Healthy, "", started)
            }
        }
        (Ok(()), Some(Err(e))) => CheckResult::new(
            Status::Unhealthy,
            format!("storage read failed: {}", e.message),
            started,
        ),
        _ => CheckResult::new(
            Status::Unhealthy,
            "storage probe value did not read back",
            started,
        ),
    };
    result.details = json!({"host_probe": host_probe});
    result
}

fn custom_probe(host: &dyn HostView, service: &str) -> CheckResult {
    let started = Instant::now();
    match host.call_service(service, "{}") {
        Ok(text) => {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let status = v["status"].as_str().and_then(Status::parse);
            match status {
                Some(s) => CheckResult::new(s, v["message"].as_str().unwrap_or(""), started),
                None => CheckResult::new(
                    Status::Unhealthy,
                    format!("check service {service} answered without a valid \"status\" (healthy, degraded or unhealthy)"),
                    started,
                ),
            }
        }
        Err(e) => CheckResult::new(
            Status::Unhealthy,
            format!("check service {service} failed: {}", e.message),
            started,
        ),
    }
}

fn plugin_result(p: &PluginSummary, t: Instant) -> CheckResult {
    let state = p.state().as_str();
    let error = p.error.as_ref().map_or("", |e| e.as_str());
    let health = p.health.as_ref().into_option();
    let (status, message) = match p.state() {
        // The host refuses calls to a plugin whose circuit is open (a call
        // hung): unhealthy until a trial call succeeds.
        PluginState::Started if p.circuit_state() == CircuitState::Open => (
            Status::Unhealthy,
            format!(
                "circuit open ({}); the host refuses calls until a trial call succeeds",
                p.circuit
                    .as_ref()
                    .and_then(|c| c.reason.as_ref())
                    .map_or("", |r| r.as_str())
            ),
        ),
        PluginState::Started if p.circuit_state() == CircuitState::HalfOpen => (
            Status::Degraded,
            "circuit half-open: a trial call is running".to_owned(),
        ),
        PluginState::Started => match health.map(|h| (h.status, h.message.as_str())) {
            Some((HealthStatus::Unhealthy, message)) => (
                Status::Unhealthy,
                format!("plugin reports unhealthy: {message}"),
            ),
            Some((HealthStatus::Degraded, message)) => (
                Status::Degraded,
                format!("plugin reports degraded: {message}"),
            ),
            _ => (Status::Healthy, String::new()),
        },
        PluginState::Stopped => (
            Status::Degraded,
            if error.is_empty() {
                "plugin is stopped".to_owned()
            } else {
                format!("plugin is stopped: {error}")
            },
        ),
        PluginState::Loaded => (
            Status::Degraded,
            "plugin is loaded but not started".to_owned(),
        ),
        _ => (
            Status::Unhealthy,
            if error.is_empty() {
                format!("plugin is in state {state}")
            } else {
                error.to_owned()
            },
        ),
    };
    let mut r = CheckResult::new(status, message, t);
    r.details = json!({"state": state, "generation": p.generation,
        "version": p.version.as_ref().map(|v| v.as_str()).into_option()});
    r
}

fn diff(before: Option<&Snapshot>, after: &Snapshot) -> Vec<Change> {
    let old: BTreeMap<String, Status> = before
        .map(|b| {
            b.components()
                .into_iter()
                .map(|(k, r)| (k, r.status))
                .chain([("overall".to_owned(), b.status)])
                .collect()
        })
        .unwrap_or_default();
    let mut changes = Vec::new();
    let mut current: Vec<(String, Status, String)> = after
        .components()
        .into_iter()
        .map(|(k, r)| (k, r.status, r.message.clone()))
        .collect();
    current.push(("overall".to_owned(), after.status, String::new()));
    for (component, status, message) in current {
        let from = old.get(&component).copied();
        if from != Some(status) {
            changes.push(Change {
                component,
                from,
                to: status,
                message,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with storage, one module, two plugins and one custom-check
    /// service, whose answers a test sets.
    #[derive(Default)]
    struct FakeHost {
        storage: Mutex<BTreeMap<String, String>>,
        storage_fails: bool,
        check_answer: Mutex<String>,
    }

    impl HostView for FakeHost {
        fn storage_set(&self, ns: &str, key: &str, value: &str) -> Result<(), PluginError> {
            if self.storage_fails {
                return Err(PluginError::failed("disk full"));
            }
            self.storage
                .lock()
                .insert(format!("{ns}/{key}"), value.to_owned());
            Ok(())
        }
        fn storage_get(&self, ns: &str, key: &str) -> Result<Option<String>, PluginError> {
            Ok(self.storage.lock().get(&format!("{ns}/{key}")).cloned())
        }
        fn get_module(&self, _name: &str) -> Option<Value> {
            Some(json!({"details": {"probe": {"ok": true}}}))
        }
        fn list_modules(&self) -> Value {
            json!([{"name": "storage", "status": "running", "details": {}}])
        }
        fn list_plugins(&self) -> Vec<PluginSummary> {
            crate::summaries(&json!([{"name": "demo", "state": "started"},
                {"name": "old", "state": "stopped"}]))
        }
        fn call_service(&self, name: &str, _input: &str) -> Result<RString, PluginError> {
            match name {
                "demo.health" => Ok(RString::from(self.check_answer.lock().as_str())),
                other => Err(PluginError::not_found(format!("no service {other}"))),
            }
        }
    }

    fn checker(host: FakeHost) -> (HealthChecker, Arc<FakeHost>) {
        let host = Arc::new(host);
        let kv: Arc<dyn KvStore> = Arc::new(crate::error_tracking::MemoryKvStore::new());
        let c = HealthChecker::new(host.clone(), HealthConfig::default(), kv);
        (c, host)
    }

    #[test]
    fn a_round_over_a_fake_host_reports_every_component() {
        let (c, host) = checker(FakeHost::default());
        *host.check_answer.lock() = r#"{"status": "healthy"}"#.into();
        c.register(CustomCheck {
            name: "demo".into(),
            service: "demo.health".into(),
            critical: true,
            registered_by: "demo".into(),
        })
        .unwrap();
        let (snap, _changes) = c.run();
        assert_eq!(
            snap.checks.storage.as_ref().unwrap().status,
            Status::Healthy
        );
        assert_eq!(snap.checks.modules["storage"].status, Status::Healthy);
        assert_eq!(snap.checks.plugins["demo"].status, Status::Healthy);
        assert_eq!(snap.checks.plugins["old"].status, Status::Degraded);
        assert_eq!(snap.checks.custom["demo"].status, Status::Healthy);
        assert_eq!(snap.status, Status::Degraded, "the stopped plugin degrades");
        assert!(c.latest().is_some());

        *host.check_answer.lock() = r#"{"status": "unhealthy", "message": "db down"}"#.into();
        let (snap, changes) = c.run();
        let custom = &snap.checks.custom["demo"];
        assert_eq!(
            (custom.status, custom.message.as_str()),
            (Status::Unhealthy, "db down")
        );
        assert_eq!(
            snap.status,
            Status::Unhealthy,
            "a critical check fails the host"
        );
        assert!(!changes.is_empty(), "the status change is reported");
    }

    #[test]
    fn failing_storage_is_unhealthy_with_its_reason() {
        let (c, _host) = checker(FakeHost {
            storage_fails: true,
            ..FakeHost::default()
        });
        let (snap, _) = c.run();
        let storage = snap.checks.storage.as_ref().unwrap();
        assert_eq!(storage.status, Status::Unhealthy);
        assert!(storage.message.contains("disk full"), "{}", storage.message);
    }

    #[test]
    fn plugin_states_map_to_health() {
        let t = Instant::now();
        let one = |v: Value| crate::summaries(&json!([v])).remove(0);
        assert_eq!(
            plugin_result(&one(json!({"state": "started"})), t).status,
            Status::Healthy
        );
        assert_eq!(
            plugin_result(&one(json!({"state": "stopped"})), t).status,
            Status::Degraded
        );
        let r = plugin_result(&one(json!({"state": "error", "error": "boom"})), t);
        assert_eq!((r.status, r.message.as_str()), (Status::Unhealthy, "boom"));
        let r = plugin_result(
            &one(json!({"state": "started", "health": {"status": "degraded", "message": "slow"}})),
            t,
        );
        assert_eq!(r.status, Status::Degraded);
        let r = plugin_result(
            &one(
                json!({"state": "started", "circuit": {"state": "open", "reason": "hung in tick"}}),
            ),
            t,
        );
        assert_eq!(r.status, Status::Unhealthy);
        assert!(r.message.contains("hung in tick"), "{}", r.message);
        let r = plugin_result(
            &one(json!({"state": "started", "circuit": {"state": "half_open"}})),
            t,
        );
        assert_eq!(r.status, Status::Degraded);
    }

    #[test]
    fn names_and_order() {
        assert!(valid_check_name("db.ping"));
        assert!(!valid_check_name("Bad Name"));
        assert!(Status::Unhealthy > Status::Degraded && Status::Degraded > Status::Healthy);
    }
}
