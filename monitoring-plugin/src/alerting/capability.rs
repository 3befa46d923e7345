//! The alerting capability: runs the [`crate::alerting`] engine (rules,
//! PromQL, templates, notifiers) inside the running plugin.
//!
//! It exists so that a host alerts with zero setup, with the very rule files a
//! Prometheus would use. On the host tick it samples the plugin's own exposition
//! into a bounded [`SampleStore`], evaluates the rule groups that are due, exports
//! `homeconsole_alerts`, persists the engine state to host storage (a firing alert
//! stays firing across a restart and is not notified twice), appends fired/resolved
//! transitions to a bounded, persisted alert history, publishes
//! `monitoring.alert.firing` / `monitoring.alert.resolved` on the bus, and hands
//! notifications to the Alertmanager and webhook notifiers, whose own threads do the
//! I/O (evaluation never waits for the network). Rules come from the built-in rule
//! file and an optional `rules_dir`, reloaded on `POST …/rules/reload` or when a file
//! there changes (mtimes polled on the tick).
//!
//! `homeconsole_alerts` has the shape of Prometheus' `ALERTS`: one series per pending
//! or firing alert, value 1, labels = `alertname`, `alertstate` and every label of the
//! alert (so label names differ between series of the family; the text format and
//! Prometheus accept that, and `sum by (alertname, alertstate)` works in Grafana).
//! Label names that are reserved in an exposition (`__*`, `le`, `quantile`) are left
//! out, and the family is capped at [`MAX_ALERT_SERIES`] series.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use plugin_abi::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::alerting::engine::{Alert, Engine, EngineConfig, Notification, RuleHealth};
use crate::alerting::exposition;
use crate::alerting::notify::{Notifier, NotifierConfig, NotifierStats, Target};
use crate::alerting::rules::{load_dir, parse_rule_file, RuleError, RuleGroup};
use crate::alerting::samples::{Labels, SampleStore, SampleStoreConfig};
use crate::capability::{Capability, Ctx, Route};
use crate::config::AlertingConfig;
use crate::http::{error, query_param, require_admin};
use crate::metrics::names;
use crate::metrics::{CounterFamily, Gauge, GaugeFamily};
use crate::store::KvStore;
use crate::time::{now_ms_signed, rfc3339_millis};

/// The built-in rules, shipped with the plugin.
pub const DEFAULT_RULES: &str =
    include_str!("../../../deploy/prometheus/rules/homeconsole.rules.yml");

/// How the built-in rule file is named in errors and in `/rules`.
pub const DEFAULT_RULES_FILE: &str = "builtin:homeconsole.rules.yml";

/// Storage namespace of the alerting state.
pub const NAMESPACE: &str = "monitoring-alerts";

/// Storage key of the fired/resolved history.
pub const HISTORY_KEY: &str = "alerts/history/v1";

/// Most series `homeconsole_alerts` exports.
pub const MAX_ALERT_SERIES: usize = 1_000;

/// Bus topic of an alert that starts firing.
pub const TOPIC_FIRING: &str = "monitoring.alert.firing";
/// Bus topic of an alert that is resolved.
pub const TOPIC_RESOLVED: &str = "monitoring.alert.resolved";

const ROUTE_ALERTS: &str = "/api/v1/monitoring/alerts";
const ROUTE_HISTORY: &str = "/api/v1/monitoring/alerts/history";
const ROUTE_RULES: &str = "/api/v1/monitoring/rules";
const ROUTE_RELOAD: &str = "/api/v1/monitoring/rules/reload";

/// A wall clock going back by more than this (ms) resets schedules and samples.
const CLOCK_STEP_TOLERANCE_MS: i64 = 5_000;

const RESULTS: [&str; 3] = ["sent", "failed", "dropped"];

/// One fired/resolved transition, as kept in the alert history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the transition was seen (ms since the epoch).
    pub at_ms: i64,
    /// `firing` or `resolved`.
    pub status: String,
    /// The alert's name.
    pub alertname: String,
    /// All labels of the alert.
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// The expression's value (text, as Prometheus reports it).
    pub value: String,
    /// When the alert became active (ms).
    pub starts_at_ms: i64,
    /// When it was resolved (ms); `None` while firing.
    pub ends_at_ms: Option<i64>,
}

impl HistoryEntry {
    fn to_json(&self) -> Value {
        json!({
            "at": rfc3339_millis(self.at_ms),
            "status": self.status,
            "alertname": self.alertname,
            "labels": self.labels,
            "annotations": self.annotations,
            "value": self.value,
            "startsAt": rfc3339_millis(self.starts_at_ms),
            "endsAt": self.ends_at_ms.map(rfc3339_millis),
        })
    }
}

/// Where a loaded group came from (the engine keeps groups in this order).
#[derive(Debug, Clone)]
struct GroupMeta {
    file: String,
    name: String,
    interval_ms: i64,
    rules: usize,
}

/// Modification signature of the rule directory: (path, mtime, length).
type DirSignature = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// Mutable state, behind one lock (tick, reload and the API take it briefly).
struct State {
    engine: Engine,
    groups: Vec<GroupMeta>,
    load_errors: Vec<RuleError>,
    loaded_at_ms: i64,
    dir_signature: DirSignature,
    last_sample_ms: Option<i64>,
    /// Time of the previous tick (to notice the wall clock going back).
    last_tick_ms: Option<i64>,
    /// The persisted part of the engine state last saved (to skip no-op writes).
    last_saved: Option<String>,
    last_eval_seconds: f64,
    max_eval_seconds: f64,
    last_sample_seconds: f64,
    evaluations: u64,
    persist_errors: u64,
    malformed_sample_lines: usize,
}

/// Metric handles of the capability.
struct Metrics {
    notifications: CounterFamily,
    eval_duration: Gauge,
    rules: GaugeFamily,
    load_errors: Gauge,
    history_series: Gauge,
}

/// The alerting capability (see the module docs).
pub struct Alerting {
    ctx: Ctx,
    config: AlertingConfig,
    kv: Arc<dyn KvStore>,
    /// Replaced as a whole when the wall clock goes back (see `run_tick`).
    samples: RwLock<Arc<SampleStore>>,
    state: Mutex<Option<State>>,
    /// What `/alerts`, `/rules` and `/status` show, published by whoever
    /// holds `state` after a change (tick, reload, start): readers never
    /// wait for a running tick or reload.
    view: RwLock<Arc<View>>,
    log: Mutex<VecDeque<HistoryEntry>>,
    notifiers: Mutex<Vec<(Notifier, NotifierStats)>>,
    metrics: Option<Metrics>,
}

/// A read-only picture of the alerting state (see `Alerting::view`).
#[derive(Debug, Default)]
struct View {
    /// `/alerts` body.
    alerts: Value,
    /// `/rules` body.
    rules: Value,
    /// Counters for `/status`.
    status: Value,
}

fn secs_to_ms(s: f64) -> i64 {
    ((s * 1e3).round() as i64).max(1)
}

fn value_text(v: f64) -> String {
    let mut s = String::new();
    crate::metrics::push_float(&mut s, v);
    s
}

fn labels_map(labels: &Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn pairs_map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

fn rule_error_json(e: &RuleError) -> Value {
    json!({
        "file": e.file,
        "group": e.group,
        "rule": e.rule,
        "message": e.message,
        "error": e.to_string(),
    })
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "labels": labels_map(&a.labels),
        "annotations": pairs_map(&a.annotations),
        "state": a.state.as_str(),
        "value": value_text(a.value),
        "activeAt": rfc3339_millis(a.active_at_ms),
        "firedAt": a.fired_at_ms.map(rfc3339_millis),
    })
}

/// The rule files' modification signature (empty when the dir is unreadable).
fn dir_signature(dir: &Path) -> DirSignature {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut sig: DirSignature = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yml") | Some("yaml")
            )
        })
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (p, mtime, len)
        })
        .collect();
    sig.sort();
    sig
}

/// Loads the built-in rules (unless disabled) and the rules of `rules_dir`.
fn load_rules(config: &AlertingConfig) -> (Vec<RuleGroup>, Vec<RuleError>) {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    if config.default_rules {
        let r = parse_rule_file(DEFAULT_RULES, DEFAULT_RULES_FILE);
        groups.extend(r.groups);
        errors.extend(r.errors);
    }
    if let Some(dir) = &config.rules_dir {
        let r = load_dir(dir);
        groups.extend(r.groups);
        errors.extend(r.errors);
    }
    (groups, errors)
}

/// The persisted part of the engine state that matters for restarts (values and
/// validity horizons change on every evaluation and are left out of the
/// comparison, not of the saved state).
fn significant(engine: &Engine) -> String {
    let snap = engine.snapshot();
    let mut out = String::new();
    for (rule, alerts) in &snap.rules {
        out.push_str(rule);
        for a in alerts {
            out.push_str(&format!(
                "|{:?}{:?}{}{:?}{:?}{:?}{:?}{:?}",
                a.labels,
                a.state,
                a.active_at_ms,
                a.fired_at_ms,
                a.resolved_at_ms,
                a.keep_firing_since_ms,
                a.last_sent_ms,
                a.last_sent_state
            ));
        }
        out.push('\n');
    }
    out
}

impl Alerting {
    /// Creates the capability; rules, state and notifiers are set up in `start`.
    /// The embedded sample store as it is now (it is replaced after a clock jump).
    pub fn samples(&self) -> Arc<SampleStore> {
        self.samples.read().clone()
    }

    /// Builds the capability from the plugin context.
    pub fn new(ctx: &Ctx) -> Alerting {
        let config = ctx.config.alerting.clone();
        let samples = RwLock::new(Arc::new(Self::new_sample_store(&config)));
        let metrics = Self::register_metrics(ctx);
        if let Err(e) = &metrics {
            ctx.host
                .error(&format!("alerting: cannot register metrics: {e}"));
        }
        let alerting = Alerting {
            kv: ctx.kv(NAMESPACE),
            ctx: ctx.clone(),
            config,
            samples,
            state: Mutex::new(None),
            view: RwLock::new(Arc::new(View::default())),
            log: Mutex::new(VecDeque::new()),
            notifiers: Mutex::new(Vec::new()),
            metrics: metrics.ok(),
        };
        alerting.publish(None);
        alerting
    }

    fn new_sample_store(config: &AlertingConfig) -> SampleStore {
        SampleStore::new(SampleStoreConfig {
            retention_ms: i64::try_from(config.retention_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            ..SampleStoreConfig::default()
        })
    }

    fn register_metrics(ctx: &Ctx) -> Result<Metrics, crate::metrics::MetricError> {
        let s = ctx.collector.internal_store();
        Ok(Metrics {
            notifications: s.register_counter(
                names::ALERT_NOTIFICATIONS_TOTAL,
                "Alert notifications by notifier and result (sent, failed after retries, dropped because the queue was full).",
                &["notifier", "result"],
            )?,
            eval_duration: s
                .register_gauge(
                    names::ALERT_EVALUATION_DURATION,
                    "Duration of the latest alert evaluation (sampling excluded) in seconds.",
                    &[],
                )?
                .with_labels(&[])?,
            rules: s.register_gauge(
                names::ALERT_RULES,
                "Alert and recording rules by health of their latest evaluation (ok, err, unknown).",
                &["health"],
            )?,
            load_errors: s
                .register_gauge(
                    names::ALERT_RULE_LOAD_ERRORS,
                    "Rule-file problems found at the latest rule (re)load.",
                    &[],
                )?
                .with_labels(&[])?,
            history_series: s
                .register_gauge(
                    names::ALERT_HISTORY_SERIES,
                    "Series held in the alerting sample history.",
                    &[],
                )?
                .with_labels(&[])?,
        })
    }

    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            limits: self.ctx.config.query.clone(),
            default_interval_ms: secs_to_ms(self.config.evaluation_interval_secs),
            resend_delay_ms: secs_to_ms(self.config.resend_interval_secs),
            alerts_metric: names::ALERTS.to_owned(),
            external_url: self.config.external_url.clone(),
        }
    }

    /// Builds a fresh state from the rule files, carrying over `previous` alerts.
    fn build_state(&self, previous: Option<&Engine>) -> State {
        let signature = self
            .config
            .rules_dir
            .as_deref()
            .map(dir_signature)
            .unwrap_or_default();
        let (groups, errors) = load_rules(&self.config);
        for e in &errors {
            self.ctx.host.warn(&format!("alert rule not loaded: {e}"));
        }
        let meta = groups
            .iter()
            .map(|g| GroupMeta {
                file: g.file.clone(),
                name: g.name.clone(),
                interval_ms: g
                    .interval_ms
                    .unwrap_or(secs_to_ms(self.config.evaluation_interval_secs)),
                rules: g.rules.len(),
            })
            .collect();
        let mut engine = Engine::new(groups, self.engine_config());
        if let Some(prev) = previous {
            engine.restore(&prev.snapshot());
        }
        if let Some(m) = &self.metrics {
            m.load_errors.set(errors.len() as f64);
        }
        State {
            engine,
            groups: meta,
            load_errors: errors,
            loaded_at_ms: now_ms_signed(),
            dir_signature: signature,
            last_sample_ms: None,
            last_tick_ms: None,
            last_saved: None,
            last_eval_seconds: 0.0,
            max_eval_seconds: 0.0,
            last_sample_seconds: 0.0,
            evaluations: 0,
            persist_errors: 0,
            malformed_sample_lines: 0,
        }
    }

    /// Reloads the rule files now; alerts of rules that still exist (same file,
    /// group, name and position) keep their state.
    pub fn reload(&self) -> Value {
        let mut guard = self.state.lock();
        let previous = guard.take();
        let mut st = self.build_state(previous.as_ref().map(|s| &s.engine));
        if let Some(p) = previous {
            st.last_sample_ms = p.last_sample_ms;
            st.last_tick_ms = p.last_tick_ms;
            st.max_eval_seconds = p.max_eval_seconds;
            st.evaluations = p.evaluations;
            st.persist_errors = p.persist_errors;
        }
        let summary = json!({
            "groups": st.groups.len(),
            "rules": st.groups.iter().map(|g| g.rules).sum::<usize>(),
            "errors": st.load_errors.iter().map(rule_error_json).collect::<Vec<_>>(),
        });
        self.ctx.host.info(&format!(
            "alert rules loaded: {} groups, {} rules, {} errors",
            summary["groups"],
            summary["rules"],
            st.load_errors.len()
        ));
        self.publish(Some(&st));
        *guard = Some(st);
        summary
    }

    fn start_notifiers(&self) {
        let mut targets: Vec<(String, Target)> = Vec::new();
        if let Some(url) = &self.config.alertmanager_url {
            targets.push((
                "alertmanager".to_owned(),
                Target::Alertmanager { url: url.clone() },
            ));
        }
        for (i, url) in self.config.webhook_urls.iter().enumerate() {
            targets.push((
                format!("webhook-{i}"),
                Target::Webhook {
                    url: url.clone(),
                    receiver: "homeconsole".to_owned(),
                },
            ));
        }
        let mut notifiers = self.notifiers.lock();
        for (name, target) in targets {
            let mut config = NotifierConfig::new(target);
            config.max_retries = self.config.notify_max_retries;
            config.timeout = Duration::from_secs_f64(self.config.notify_timeout_secs);
            config.external_url = self.config.external_url.clone();
            config.external_labels = self.ctx.config.external_labels.clone();
            config.tls = self.ctx.config.tls.clone();
            config.errors = self.ctx.last_error(&format!("alerting: notifier {name}"));
            match Notifier::start(&name, config) {
                Ok(n) => {
                    if let Some(m) = &self.metrics {
                        for result in RESULTS {
                            // Create every series at 0 so that failures are visible as a rate.
                            let _ = m.notifications.with_labels(&[&name, result]);
                        }
                    }
                    notifiers.push((n, NotifierStats::default()));
                }
                Err(e) => self
                    .ctx
                    .host
                    .error(&format!("alerting: notifier {name} not started: {e}")),
            }
        }
    }

    fn load_log(&self) {
        match self.kv.get(HISTORY_KEY) {
            Ok(Some(text)) => match serde_json::from_str::<Vec<HistoryEntry>>(&text) {
                Ok(entries) => {
                    let mut log = self.log.lock();
                    *log = entries.into();
                    while log.len() > self.config.history_limit {
                        log.pop_front();
                    }
                }
                Err(e) => self.ctx.host.warn(&format!(
                    "alert history in storage is unreadable, starting empty: {e}"
                )),
            },
            Ok(None) => {}
            Err(e) => self
                .ctx
                .host
                .warn(&format!("cannot read alert history: {e}")),
        }
    }

    /// One tick: reload on change, sample, evaluate, export, persist, notify.
    fn run_tick(&self, now: i64) {
        // Never wait behind a reload or a long API call: the next tick will do.
        let Some(mut guard) = self.state.try_lock() else {
            return;
        };
        // The wall clock went back (NTP step, VM resume): samples and schedules
        // in the future would stall sampling and evaluation until the clock
        // catches up, so start them afresh (alert states are kept).
        let went_back = guard
            .as_ref()
            .and_then(|st| st.last_tick_ms)
            .is_some_and(|prev| now + CLOCK_STEP_TOLERANCE_MS < prev);
        let changed = match (guard.as_ref(), &self.config.rules_dir) {
            (Some(st), Some(dir)) => dir_signature(dir) != st.dir_signature,
            _ => false,
        };
        if went_back {
            self.ctx.host.warn(
                "wall clock went back: restarting the alert sample history and rule schedules",
            );
            *self.samples.write() = Arc::new(Self::new_sample_store(&self.config));
            if let Some(st) = guard.as_mut() {
                st.last_sample_ms = None;
                st.last_tick_ms = None;
            }
        }
        if changed || went_back {
            drop(guard);
            if changed {
                self.ctx.host.info("alert rule files changed: reloading");
            }
            self.reload();
            let Some(g) = self.state.try_lock() else {
                return;
            };
            guard = g;
        }
        let Some(st) = guard.as_mut() else {
            return;
        };
        st.last_tick_ms = Some(now);
        let samples = self.samples.read().clone();
        let sample_every = secs_to_ms(self.config.sample_interval_secs);
        if st.last_sample_ms.is_none_or(|t| now - t >= sample_every) {
            let sampling = Instant::now();
            let parsed = exposition::parse(&self.ctx.collector.render_for_sampling());
            st.malformed_sample_lines = parsed.malformed;
            samples.ingest(now, &parsed.samples);
            st.last_sample_ms = Some(now);
            st.last_sample_seconds = sampling.elapsed().as_secs_f64();
            if let Some(m) = &self.metrics {
                m.history_series.set(samples.stats().series as f64);
            }
        }
        let started = Instant::now();
        let evaluated = st.engine.tick(now, &samples);
        if evaluated == 0 {
            drop(guard);
            self.sync_notifier_stats();
            return;
        }
        let elapsed = started.elapsed().as_secs_f64();
        st.last_eval_seconds = elapsed;
        st.max_eval_seconds = st.max_eval_seconds.max(elapsed);
        st.evaluations += 1;
        self.export(&st.engine, Some(elapsed));
        self.publish(Some(st));
        // Values of alerts about to be notified (resolved ones included).
        let notes = st.engine.take_notifications(now);
        let values: BTreeMap<Labels, (f64, i64)> = if notes.is_empty() {
            BTreeMap::new()
        } else {
            st.engine
                .snapshot()
                .rules
                .into_values()
                .flatten()
                .map(|a| (a.labels, (a.value, a.active_at_ms)))
                .collect()
        };
        // Persist before notifying: a crash right after never notifies twice.
        let sig = significant(&st.engine);
        if st.last_saved.as_deref() != Some(sig.as_str()) {
            match st.engine.save(self.kv.as_ref()) {
                Ok(()) => st.last_saved = Some(sig),
                Err(e) => {
                    st.persist_errors += 1;
                    self.ctx
                        .host
                        .warn(&format!("cannot persist alert state: {e}"));
                }
            }
        }
        drop(guard);
        if !notes.is_empty() {
            self.dispatch(now, notes, &values);
        }
        self.sync_notifier_stats();
    }

    /// Exports `homeconsole_alerts` and the rule-health gauges.
    fn export(&self, engine: &Engine, eval_seconds: Option<f64>) {
        let series: Vec<(Vec<(String, String)>, f64)> = engine
            .alert_series()
            .into_iter()
            .map(|s| (s.labels.without_name().pairs().to_vec(), s.value))
            .collect();
        let res = self.ctx.collector.replace_gauge_family(
            names::ALERTS,
            "Pending and firing alerts: one series per alert (value 1) with alertname, alertstate and the alert's labels.",
            &series,
            MAX_ALERT_SERIES,
        );
        if let Err(e) = res {
            self.ctx
                .host
                .error(&format!("alerting: cannot export alerts: {e}"));
        }
        if let Some(m) = &self.metrics {
            let mut counts = [0usize; 3];
            for r in engine.rule_statuses() {
                counts[match r.health {
                    RuleHealth::Ok => 0,
                    RuleHealth::Err => 1,
                    RuleHealth::Unknown => 2,
                }] += 1;
            }
            for (health, n) in ["ok", "err", "unknown"].iter().zip(counts) {
                if let Ok(g) = m.rules.with_labels(&[health]) {
                    g.set(n as f64);
                }
            }
            if let Some(secs) = eval_seconds {
                m.eval_duration.set(secs);
            }
        }
    }

    /// Bus events, alert history and notifiers, for one batch of notifications.
    fn dispatch(&self, now: i64, notes: Vec<Notification>, values: &BTreeMap<Labels, (f64, i64)>) {
        let mut log_changed = false;
        for n in notes.iter().filter(|n| n.state_changed) {
            let (value, active_at) = values
                .get(&n.labels)
                .copied()
                .unwrap_or((f64::NAN, n.starts_at_ms));
            let status = if n.resolved { "resolved" } else { "firing" };
            let entry = HistoryEntry {
                at_ms: now,
                status: status.to_owned(),
                alertname: n.labels.get("alertname").unwrap_or_default().to_owned(),
                labels: labels_map(&n.labels),
                annotations: pairs_map(&n.annotations),
                value: value_text(value),
                starts_at_ms: n.starts_at_ms,
                ends_at_ms: n.resolved.then_some(n.ends_at_ms),
            };
            let payload = json!({
                "status": status,
                "labels": entry.labels,
                "annotations": entry.annotations,
                "value": entry.value,
                "activeAt": rfc3339_millis(active_at),
                "startsAt": rfc3339_millis(n.starts_at_ms),
                "endsAt": n.resolved.then(|| rfc3339_millis(n.ends_at_ms)),
                "generatorURL": n.generator_url,
            });
            let topic = if n.resolved {
                TOPIC_RESOLVED
            } else {
                TOPIC_FIRING
            };
            if let Err(e) = self.ctx.host.publish(topic, &payload.to_string(), None) {
                self.ctx.host.warn(&format!("cannot publish {topic}: {e}"));
            }
            self.ctx.host.info(&format!(
                "alert {} {status} {}",
                entry.alertname,
                serde_json::to_string(&entry.labels).unwrap_or_default()
            ));
            let mut log = self.log.lock();
            log.push_back(entry);
            while log.len() > self.config.history_limit {
                log.pop_front();
            }
            log_changed = true;
        }
        if log_changed {
            let text = {
                let log = self.log.lock();
                serde_json::to_string(&*log).unwrap_or_else(|_| "[]".to_owned())
            };
            if let Err(e) = self.kv.set(HISTORY_KEY, &text) {
                self.ctx
                    .host
                    .warn(&format!("cannot persist alert history: {e}"));
            }
        }
        for (notifier, _) in self.notifiers.lock().iter() {
            notifier.notify(notes.clone());
        }
    }

    /// Adds what the notifier threads counted since the last call to the counters.
    fn sync_notifier_stats(&self) {
        let Some(m) = &self.metrics else {
            return;
        };
        for (notifier, seen) in self.notifiers.lock().iter_mut() {
            let now = notifier.stats();
            let deltas = [
                now.sent.saturating_sub(seen.sent),
                now.failed.saturating_sub(seen.failed),
                now.dropped.saturating_sub(seen.dropped),
            ];
            for (result, d) in RESULTS.iter().zip(deltas) {
                if d > 0 {
                    if let Ok(c) = m.notifications.with_labels(&[notifier.name(), result]) {
                        c.inc_by(d as f64);
                    }
                }
            }
            *seen = now;
        }
    }

    /// Publishes the view of `st` for readers (call with `state` held).
    fn publish(&self, st: Option<&State>) {
        let view = View {
            alerts: Self::active_json(st),
            rules: self.rules_json(st),
            status: json!({
                "groups": st.map_or(0, |s| s.groups.len()),
                "rules": st.map_or(0, |s| s.groups.iter().map(|g| g.rules).sum::<usize>()),
                "load_errors": st.map_or(0, |s| s.load_errors.len()),
                "active_alerts": st.map_or(0, |s| s.engine.active_alerts().len()),
                "evaluations": st.map_or(0, |s| s.evaluations),
                "last_evaluation_seconds": st.map_or(0.0, |s| s.last_eval_seconds),
                "max_evaluation_seconds": st.map_or(0.0, |s| s.max_eval_seconds),
                "last_sample_seconds": st.map_or(0.0, |s| s.last_sample_seconds),
                "persist_errors": st.map_or(0, |s| s.persist_errors),
                "malformed_sample_lines": st.map_or(0, |s| s.malformed_sample_lines),
            }),
        };
        *self.view.write() = Arc::new(view);
    }

    fn active_json(st: Option<&State>) -> Value {
        let alerts: Vec<Value> = st
            .map(|st| st.engine.active_alerts().iter().map(alert_json).collect())
            .unwrap_or_default();
        json!({ "alerts": alerts })
    }

    fn history_json(&self, query: &str) -> Value {
        let limit = query_param(query, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(100)
            .min(self.config.history_limit);
        let name = query_param(query, "alertname");
        let status = query_param(query, "status");
        let log = self.log.lock();
        let entries: Vec<Value> = log
            .iter()
            .rev()
            .filter(|e| name.as_deref().is_none_or(|n| e.alertname == n))
            .filter(|e| status.as_deref().is_none_or(|s| e.status == s))
            .take(limit)
            .map(HistoryEntry::to_json)
            .collect();
        json!({ "total": log.len(), "limit": self.config.history_limit, "entries": entries })
    }

    fn rules_json(&self, st: Option<&State>) -> Value {
        let Some(st) = st else {
            return json!({"groups": [], "errors": [], "enabled": self.config.enabled});
        };
        let mut statuses = st.engine.rule_statuses().into_iter();
        let groups: Vec<Value> = st
            .groups
            .iter()
            .map(|g| {
                let rules: Vec<Value> = statuses
                    .by_ref()
                    .take(g.rules)
                    .map(|r| {
                        json!({
                            "name": r.name,
                            "type": r.kind,
                            "query": r.query,
                            "health": r.health,
                            "lastError": r.last_error,
                            "lastEvaluation": r.last_evaluation_ms.map(rfc3339_millis),
                            "evaluationTime": r.evaluation_seconds,
                            "alerts": r.alerts.iter().map(alert_json).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "name": g.name,
                    "file": g.file,
                    "interval": g.interval_ms as f64 / 1e3,
                    "rules": rules,
                })
            })
            .collect();
        json!({
            "enabled": self.config.enabled,
            "loadedAt": rfc3339_millis(st.loaded_at_ms),
            "groups": groups,
            "errors": st.load_errors.iter().map(rule_error_json).collect::<Vec<_>>(),
        })
    }
}

impl Capability for Alerting {
    fn name(&self) -> &'static str {
        "alerting"
    }

    fn routes(&self) -> Vec<Route> {
        vec![
            Route::new("GET", ROUTE_ALERTS),
            Route::new("GET", ROUTE_HISTORY),
            Route::new("GET", ROUTE_RULES),
            Route::new("POST", ROUTE_RELOAD),
        ]
    }

    fn start(&self) -> Result<(), plugin_abi::PluginError> {
        if !self.config.enabled {
            return Ok(());
        }
        self.reload();
        if let Some(st) = self.state.lock().as_mut() {
            match st.engine.load(self.kv.as_ref()) {
                Ok(true) => {
                    st.last_saved = Some(significant(&st.engine));
                    self.ctx.host.info(&format!(
                        "alert state restored: {} active alerts",
                        st.engine.active_alerts().len()
                    ));
                }
                Ok(false) => {}
                Err(e) => self
                    .ctx
                    .host
                    .warn(&format!("alert state not restored: {e}")),
            }
            self.export(&st.engine, None);
            self.publish(Some(st));
        }
        self.load_log();
        self.start_notifiers();
        Ok(())
    }

    fn stop(&self) {
        if let Some(st) = self.state.lock().as_ref() {
            if let Err(e) = st.engine.save(self.kv.as_ref()) {
                self.ctx
                    .host
                    .warn(&format!("cannot persist alert state at stop: {e}"));
            }
        }
        let notifiers: Vec<(Notifier, NotifierStats)> = std::mem::take(&mut *self.notifiers.lock());
        for (n, _) in notifiers {
            n.stop();
        }
    }

    fn tick(&self, now_unix_ms: u64) {
        if self.config.enabled {
            self.run_tick(i64::try_from(now_unix_ms).unwrap_or(i64::MAX));
        }
    }

    fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
        let path = request.path.as_str();
        let method = request.method.as_str();
        let response = match (method, path) {
            ("GET", ROUTE_ALERTS) => HttpResponse::json(200, &self.view.read().alerts),
            ("GET", ROUTE_HISTORY) => {
                HttpResponse::json(200, &self.history_json(request.query.as_str()))
            }
            ("GET", ROUTE_RULES) => HttpResponse::json(200, &self.view.read().rules),
            ("POST", ROUTE_RELOAD) => {
                if let Err(denied) = require_admin(&self.ctx.config.access, request, "rule reload")
                {
                    return Some(denied);
                }
                if !self.config.enabled {
                    return Some(error(
                        409,
                        "disabled",
                        "alerting is disabled: set enabled = true under [plugins.monitoring.alerting]",
                    ));
                }
                HttpResponse::json(200, &self.reload())
            }
            (_, ROUTE_ALERTS | ROUTE_HISTORY | ROUTE_RULES | ROUTE_RELOAD) => error(
                405,
                "method_not_allowed",
                &format!("{method} is not allowed on {path}"),
            ),
            _ => return None,
        };
        Some(response)
    }

    fn status(&self) -> Value {
        let notifiers: Vec<Value> = self
            .notifiers
            .lock()
            .iter()
            .map(|(n, _)| {
                let s = n.stats();
                json!({"name": n.name(), "sent": s.sent, "failed": s.failed, "dropped": s.dropped, "last_error": n.last_error()})
            })
            .collect();
        let hist = self.samples.read().stats();
        let mut status = self.view.read().status.clone();
        status["enabled"] = json!(self.config.enabled);
        status["history"] = json!({"series": hist.series, "samples": hist.samples});
        status["alert_history_entries"] = json!(self.log.lock().len());
        status["notifiers"] = json!(notifiers);
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_load_without_errors() {
        let r = parse_rule_file(DEFAULT_RULES, DEFAULT_RULES_FILE);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r.groups.iter().map(|g| g.rules.len()).sum::<usize>() >= 9);
    }

    #[test]
    fn rules_dir_errors_name_file_group_and_rule_and_others_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("good.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: Good\n        expr: up == 0\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "groups:\n  - name: broken\n    rules:\n      - alert: Bad\n        expr: rate(x[5m]\n      - alert: Fine\n        expr: up == 1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "not a rule file").unwrap();
        let config = AlertingConfig {
            default_rules: false,
            rules_dir: Some(dir.path().to_owned()),
            ..AlertingConfig::default()
        };
        let (groups, errors) = load_rules(&config);
        let names: Vec<&str> = groups
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| r.name()))
            .collect();
        assert_eq!(names, vec!["Fine", "Good"]);
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.contains("bad.yaml") && text.contains("broken") && text.contains("Bad"),
            "{text}"
        );
    }

    #[test]
    fn signature_changes_with_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir_signature(dir.path());
        assert!(a.is_empty());
        std::fs::write(dir.path().join("r.yml"), "groups: []\n").unwrap();
        let b = dir_signature(dir.path());
        assert_eq!(b.len(), 1);
        std::fs::write(dir.path().join("r.yml"), "groups: []\n# longer\n").unwrap();
        assert_ne!(dir_signature(dir.path()), b);
        assert!(dir_signature(Path::new("/nonexistent/dir")).is_empty());
    }

    #[test]
    fn history_entries_round_trip() {
        let e = HistoryEntry {
            at_ms: 1_700_000_000_000,
            status: "firing".into(),
            alertname: "A".into(),
            labels: [("alertname".to_owned(), "A".to_owned())].into(),
            annotations: BTreeMap::new(),
            value: "1".into(),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: None,
        };
        let text = serde_json::to_string(&vec![e.clone()]).unwrap();
        let back: Vec<HistoryEntry> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, vec![e.clone()]);
        assert_eq!(e.to_json()["at"], "2023-11-14T22:13:20.000Z");
    }
}
