//! Alert evaluation with Prometheus semantics, and its persistent state.
//!
//! This is the in-process counterpart of Prometheus' rule manager: it evaluates rule
//! groups over the [`SampleStore`], moves alerts inactive → pending → firing (`for`),
//! keeps them firing for `keep_firing_for`, resolves them (`ResolvedAt`, kept 15 min
//! for notification), exports an `ALERTS`-style gauge, tracks per-rule health, and
//! decides which alerts need (re)sending. Its state serializes to a [`KvStore`] so a
//! firing alert stays firing across a restart and is not notified twice.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::promql::{
    eval_instant_step, on_query_stack, parse_here, Budget, QueryLimits, Value, VectorSample,
};
use super::rules::{AlertingRule, RecordingRule, Rule, RuleGroup};
use super::samples::{stale_nan, Labels, SampleStore, METRIC_NAME};
use super::template::{Env, QueryRow};
use crate::store::KvStore;

/// How long a resolved alert is kept (and re-notified as resolved), as Prometheus.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// The store key holding the engine snapshot.
pub const STATE_KEY: &str = "alerts/state/v1";

/// Engine settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Cost limits of each rule's evaluation (a rule over budget fails alone).
    pub limits: QueryLimits,
    /// Interval of groups without `interval:` (default 1 m, as Prometheus).
    pub default_interval_ms: i64,
    /// Firing alerts are re-sent this often (default 1 m, as Prometheus' resend delay).
    pub resend_delay_ms: i64,
    /// Name of the exported alert gauge (default `homeconsole_alerts`).
    pub alerts_metric: String,
    /// Base URL used to build `generatorURL`s.
    pub external_url: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: QueryLimits::default(),
            default_interval_ms: 60_000,
            resend_delay_ms: 60_000,
            alerts_metric: "homeconsole_alerts".into(),
            external_url: "http://localhost".into(),
        }
    }
}

/// State of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved (kept for a while to notify).
    Inactive,
    /// Active, waiting for `for`.
    Pending,
    /// Firing.
    Firing,
}

impl AlertState {
    /// `inactive`, `pending` or `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let t = String::deserialize(d)?;
        t.parse().map_err(serde::de::Error::custom)
    }
}

/// One alert instance of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Labels (sample labels without `__name__`, rule labels, `alertname`).
    pub labels: Labels,
    /// Rendered annotations, in name order.
    pub annotations: Vec<(String, String)>,
    /// Current state.
    pub state: AlertState,
    /// Latest value of the expression for this alert.
    #[serde(with = "float_text")]
    pub value: f64,
    /// When it became active (ms).
    pub active_at_ms: i64,
    /// When it started firing (ms).
    pub fired_at_ms: Option<i64>,
    /// When it was resolved (ms).
    pub resolved_at_ms: Option<i64>,
    /// Since when it has been kept firing by `keep_firing_for` (ms).
    pub keep_firing_since_ms: Option<i64>,
    /// When it was last handed to the notifiers (ms).
    pub last_sent_ms: Option<i64>,
    /// The state last handed to the notifiers (firing or inactive = resolved).
    pub last_sent_state: Option<AlertState>,
    /// `endsAt` to announce while firing (ms).
    pub valid_until_ms: i64,
}

/// Health of a rule's last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleHealth {
    /// Not evaluated yet.
    Unknown,
    /// Last evaluation succeeded.
    Ok,
    /// Last evaluation failed.
    Err,
}

/// Status of one rule, for an API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    /// Group name.
    pub group: String,
    /// Alert or record name.
    pub name: String,
    /// `alerting` or `recording`.
    pub kind: &'static str,
    /// Expression text.
    pub query: String,
    /// Health of the last evaluation.
    pub health: RuleHealth,
    /// Error of the last evaluation.
    pub last_error: Option<String>,
    /// Time of the last evaluation (ms).
    pub last_evaluation_ms: Option<i64>,
    /// Duration of the last evaluation (seconds).
    pub evaluation_seconds: f64,
    /// Alerts of an alerting rule.
    pub alerts: Vec<Alert>,
}

/// What a notifier must send for one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Alert labels.
    pub labels: Labels,
    /// Alert annotations.
    pub annotations: Vec<(String, String)>,
    /// `startsAt` (ms).
    pub starts_at_ms: i64,
    /// `endsAt` (ms): the resolve time, or a validity horizon while firing.
    pub ends_at_ms: i64,
    /// Whether the alert is resolved.
    pub resolved: bool,
    /// Whether this is a state change (first firing, or resolve) rather than a resend.
    pub state_changed: bool,
    /// Link to the rule's expression.
    pub generator_url: String,
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    /// Alerts by labels (alerting rules).
    active: BTreeMap<Labels, Alert>,
    /// Series written last time (recording rules), to mark vanished ones stale.
    last_written: Vec<Labels>,
    health: RuleHealth,
    last_error: Option<String>,
    last_eval_ms: Option<i64>,
    last_duration_s: f64,
}

#[derive(Debug)]
struct GroupState {
    name: String,
    file: String,
    interval_ms: i64,
    next_eval_ms: Option<i64>,
    rules: Vec<RuleState>,
}

/// Serialized engine state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// Alerts per rule id (`file/group/name#index`).
    pub rules: BTreeMap<String, Vec<Alert>>,
}

/// Errors of persistence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error("state store: {0}")]
    Store(String),
    /// The stored state is not readable.
    #[error("stored alert state is corrupt: {0}")]
    Corrupt(String),
}

/// The alert evaluation engine.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    groups: Vec<GroupState>,
}

impl Engine {
    /// Creates an engine over loaded rule groups.
    pub fn new(groups: Vec<RuleGroup>, config: EngineConfig) -> Engine {
        let groups = groups
            .into_iter()
            .map(|g| GroupState {
                interval_ms: g.interval_ms.unwrap_or(config.default_interval_ms).max(1),
                name: g.name,
                file: g.file,
                next_eval_ms: None,
                rules: g
                    .rules
                    .into_iter()
                    .map(|rule| RuleState {
                        rule,
                        active: BTreeMap::new(),
                        last_written: Vec::new(),
                        health: RuleHealth::Unknown,
                        last_error: None,
                        last_eval_ms: None,
                        last_duration_s: 0.0,
                    })
                    .collect(),
            })
            .collect();
        Engine { config, groups }
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Evaluates every group whose interval has elapsed at `now_ms` (a group is first
    /// evaluated on the first tick). Returns how many groups were evaluated.
    pub fn tick(&mut self, now_ms: i64, samples: &SampleStore) -> usize {
        // Rules run on the query thread (its stack fits the nesting limit);
        // should that thread not start, they run here.
        match on_query_stack(|| self.tick_here(now_ms, samples)) {
            Ok(n) => n,
            Err(_) => self.tick_here(now_ms, samples),
        }
    }

    fn tick_here(&mut self, now_ms: i64, samples: &SampleStore) -> usize {
        let mut n = 0;
        for gi in 0..self.groups.len() {
            let due = self.groups[gi].next_eval_ms.is_none_or(|t| now_ms >= t);
            if due {
                self.eval_group(gi, now_ms, samples);
                let g = &mut self.groups[gi];
                let mut next = g.next_eval_ms.unwrap_or(now_ms) + g.interval_ms;
                if next <= now_ms {
                    // Missed iterations are skipped, as Prometheus does.
                    next = now_ms + g.interval_ms - (now_ms - next) % g.interval_ms;
                }
                g.next_eval_ms = Some(next);
                n += 1;
            }
        }
        n
    }

    /// Evaluates all groups at `ts_ms` regardless of their interval (as promtool does).
    pub fn eval_all(&mut self, ts_ms: i64, samples: &SampleStore) {
        let all = |e: &mut Engine| {
            for gi in 0..e.groups.len() {
                e.eval_group(gi, ts_ms, samples);
            }
        };
        if on_query_stack(|| all(self)).is_err() {
            all(self);
        }
    }

    fn eval_group(&mut self, gi: usize, ts: i64, samples: &SampleStore) {
        let interval = self.groups[gi].interval_ms;
        let resend = self.config.resend_delay_ms;
        let limits = &self.config.limits;
        let external_url = self.config.external_url.as_str();
        for rs in &mut self.groups[gi].rules {
            let start = Instant::now();
            let budget = Budget::new(limits);
            let q = Query {
                samples,
                budget: &budget,
                interval_ms: interval,
                limits,
                external_url,
            };
            let res = match &rs.rule {
                Rule::Alerting(r) => {
                    eval_alerting(r, &mut rs.active, ts, &q, resend.max(interval) * 4)
                }
                Rule::Recording(r) => eval_recording(r, &mut rs.last_written, ts, &q),
            };
            rs.last_duration_s = start.elapsed().as_secs_f64();
            rs.last_eval_ms = Some(ts);
            match res {
                Ok(()) => {
                    rs.health = RuleHealth::Ok;
                    rs.last_error = None;
                }
                Err(e) => {
                    rs.health = RuleHealth::Err;
                    rs.last_error = Some(e);
                }
            }
        }
    }

    /// All pending and firing alerts (of every rule).
    pub fn active_alerts(&self) -> Vec<Alert> {
        self.alert_iter()
            .filter(|a| a.state != AlertState::Inactive)
            .cloned()
            .collect()
    }

    /// Firing alerts of the rule(s) named `alertname`.
    pub fn firing_alerts(&self, alertname: &str) -> Vec<Alert> {
        self.alert_iter()
            .filter(|a| {
                a.state == AlertState::Firing && a.labels.get("alertname") == Some(alertname)
            })
            .cloned()
            .collect()
    }

    fn alert_iter(&self) -> impl Iterator<Item = &Alert> {
        self.groups
            .iter()
            .flat_map(|g| g.rules.iter())
            .flat_map(|r| r.active.values())
    }

    /// The `ALERTS`-style series: one per pending/firing alert, named
    /// [`EngineConfig::alerts_metric`], labels = alert labels + `alertstate`, value 1.
    pub fn alert_series(&self) -> Vec<VectorSample> {
        self.alert_iter()
            .filter(|a| a.state != AlertState::Inactive)
            .map(|a| {
                let mut labels = a.labels.clone();
                labels.set(METRIC_NAME, &self.config.alerts_metric);
                labels.set("alertstate", a.state.as_str());
                VectorSample { labels, value: 1.0 }
            })
            .collect()
    }

    /// Status of every rule.
    pub fn rule_statuses(&self) -> Vec<RuleStatus> {
        let mut out = Vec::new();
        for g in &self.groups {
            for r in &g.rules {
                let (kind, query) = match &r.rule {
                    Rule::Alerting(a) => ("alerting", a.expr_text.clone()),
                    Rule::Recording(rr) => ("recording", rr.expr_text.clone()),
                };
                out.push(RuleStatus {
                    group: g.name.clone(),
                    name: r.rule.name().to_string(),
                    kind,
                    query,
                    health: r.health,
                    last_error: r.last_error.clone(),
                    last_evaluation_ms: r.last_eval_ms,
                    evaluation_seconds: r.last_duration_s,
                    alerts: r
                        .active
                        .values()
                        .filter(|a| a.state != AlertState::Inactive)
                        .cloned()
                        .collect(),
                });
            }
        }
        out
    }

    /// Alerts that must be (re)sent at `now_ms`, as Prometheus decides it: firing alerts
    /// not sent within the resend delay, and alerts resolved since their last send.
    /// Marks them sent.
    pub fn take_notifications(&mut self, now_ms: i64) -> Vec<Notification> {
        let resend = self.config.resend_delay_ms;
        let base = self.config.external_url.trim_end_matches('/').to_string();
        let mut out = Vec::new();
        for g in &mut self.groups {
            for r in &mut g.rules {
                let Rule::Alerting(rule) = &r.rule else {
                    continue;
                };
                let url = format!(
                    "{base}/graph?g0.expr={}&g0.tab=1",
                    url_escape(&rule.expr_text)
                );
                for a in r.active.values_mut() {
                    if a.state == AlertState::Pending {
                        continue;
                    }
                    let resolved_since_sent = match (a.resolved_at_ms, a.last_sent_ms) {
                        (Some(res), Some(sent)) => res > sent,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    let due =
                        resolved_since_sent || a.last_sent_ms.is_none_or(|t| t + resend < now_ms);
                    // A resolved alert already announced as resolved is not resent.
                    if !due
                        || (a.state == AlertState::Inactive
                            && a.last_sent_state == Some(AlertState::Inactive))
                    {
                        continue;
                    }
                    let resolved = a.state == AlertState::Inactive;
                    let state_changed = a.last_sent_state != Some(a.state);
                    out.push(Notification {
                        labels: a.labels.clone(),
                        annotations: a.annotations.clone(),
                        starts_at_ms: a.active_at_ms,
                        ends_at_ms: if resolved {
                            a.resolved_at_ms.unwrap_or(now_ms)
                        } else {
                            a.valid_until_ms
                        },
                        resolved,
                        state_changed,
                        generator_url: url.clone(),
                    });
                    a.last_sent_ms = Some(now_ms);
                    a.last_sent_state = Some(a.state);
                }
            }
        }
        out
    }

    /// The persistent part of the state.
    pub fn snapshot(&self) -> EngineSnapshot {
        let mut rules = BTreeMap::new();
        for g in &self.groups {
            for (i, r) in g.rules.iter().enumerate() {
                if !r.active.is_empty() {
                    rules.insert(rule_id(g, i, &r.rule), r.active.values().cloned().collect());
                }
            }
        }
        EngineSnapshot { rules }
    }

    /// Restores alerts of rules that still exist (same file, group, name and position).
    pub fn restore(&mut self, snap: &EngineSnapshot) {
        for g in &mut self.groups {
            for i in 0..g.rules.len() {
                let id = rule_id(g, i, &g.rules[i].rule);
                if let Some(alerts) = snap.rules.get(&id) {
                    g.rules[i].active = alerts
                        .iter()
                        .map(|a| (a.labels.clone(), a.clone()))
                        .collect();
                }
            }
        }
    }

    /// Writes the snapshot to `store` under [`STATE_KEY`].
    pub fn save(&self, store: &dyn KvStore) -> Result<(), EngineError> {
        let json = serde_json::to_string(&self.snapshot())
            .map_err(|e| EngineError::Corrupt(e.to_string()))?;
        store.set(STATE_KEY, &json).map_err(EngineError::Store)
    }

    /// Restores from `store`; returns whether a snapshot was found.
    pub fn load(&mut self, store: &dyn KvStore) -> Result<bool, EngineError> {
        let Some(json) = store.get(STATE_KEY).map_err(EngineError::Store)? else {
            return Ok(false);
        };
        let snap: EngineSnapshot =
            serde_json::from_str(&json).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        self.restore(&snap);
        Ok(true)
    }
}

fn rule_id(g: &GroupState, i: usize, r: &Rule) -> String {
    format!("{}/{}/{}#{}", g.file, g.name, r.name(), i)
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a rule evaluation reads: the embedded sample store, within its cost budget.
#[derive(Clone, Copy)]
struct Query<'a> {
    samples: &'a SampleStore,
    budget: &'a Budget,
    /// The group's interval: the step of subqueries that name none.
    interval_ms: i64,
    /// Limits of the `query` template function's queries.
    limits: &'a QueryLimits,
    /// `$externalURL` of templates.
    external_url: &'a str,
}

fn query_vector(
    expr: &super::promql::Expr,
    ts: i64,
    q: &Query<'_>,
) -> Result<Vec<VectorSample>, String> {
    match eval_instant_step(expr, ts, q.samples, q.budget, q.interval_ms)
        .map_err(|e| e.to_string())?
    {
        Value::Vector(v) => Ok(v),
        Value::Scalar(v) => Ok(vec![VectorSample {
            labels: Labels::default(),
            value: v,
        }]),
        Value::Matrix(_) | Value::String(_) => Err("rule result is not a vector or scalar".into()),
    }
}

fn eval_recording(
    r: &RecordingRule,
    last: &mut Vec<Labels>,
    ts: i64,
    q: &Query<'_>,
) -> Result<(), String> {
    let h = q.samples;
    let v = query_vector(&r.expr, ts, q)?;
    let mut written = Vec::with_capacity(v.len());
    for s in v {
        let mut l = s.labels;
        l.set(METRIC_NAME, &r.record);
        for (k, val) in &r.labels {
            l.set(k, val);
        }
        if written.contains(&l) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        h.append(&l, ts, s.value);
        written.push(l);
    }
    for old in last.iter() {
        if !written.contains(old) {
            h.append(old, ts, stale_nan());
        }
    }
    *last = written;
    Ok(())
}

fn eval_alerting(
    r: &AlertingRule,
    active: &mut BTreeMap<Labels, Alert>,
    ts: i64,
    q: &Query<'_>,
    valid_for_ms: i64,
) -> Result<(), String> {
    let res = query_vector(&r.expr, ts, q)?;
    let mut fresh: BTreeMap<Labels, Alert> = BTreeMap::new();
    let no_external_labels = BTreeMap::new();
    let run_query = |text: &str| -> Result<Vec<QueryRow>, String> {
        let expr = parse_here(text, q.limits).map_err(|e| e.to_string())?;
        let budget = Budget::new(q.limits);
        let sub = Query {
            budget: &budget,
            ..*q
        };
        Ok(query_vector(&expr, ts, &sub)?
            .into_iter()
            .map(|s| {
                let l = s.labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
                (l.collect(), s.value)
            })
            .collect())
    };
    for s in res {
        let sample_labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let env = Env {
            labels: &sample_labels,
            value: s.value,
            external_labels: &no_external_labels,
            external_url: q.external_url,
            query: Some(&run_query),
        };
        let mut labels = s.labels.without_name();
        for (k, t) in &r.labels {
            labels.set(k, &t.expand(&env));
        }
        labels.set("alertname", &r.name);
        let annotations: Vec<(String, String)> = r
            .annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.expand(&env)))
            .collect();
        if fresh.contains_key(&labels) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
        fresh.insert(
            labels.clone(),
            Alert {
                labels,
                annotations,
                state: AlertState::Pending,
                value: s.value,
                active_at_ms: ts,
                fired_at_ms: None,
                resolved_at_ms: None,
                keep_firing_since_ms: None,
                last_sent_ms: None,
                last_sent_state: None,
                valid_until_ms: ts + valid_for_ms,
            },
        );
    }
    for (k, a) in &fresh {
        match active.get_mut(k) {
            Some(existing) if existing.state != AlertState::Inactive => {
                existing.value = a.value;
                existing.annotations = a.annotations.clone();
            }
            Some(existing) => {
                // Re-activated after a resolve: a new alert, but remember what was sent.
                let (sent, sent_state) = (existing.last_sent_ms, existing.last_sent_state);
                *existing = a.clone();
                existing.last_sent_ms = sent;
                existing.last_sent_state = sent_state;
            }
            None => {
                active.insert(k.clone(), a.clone());
            }
        }
    }
    let mut remove = Vec::new();
    for (k, a) in active.iter_mut() {
        if !fresh.contains_key(k) {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && r.keep_firing_for_ms > 0 {
                let since = *a.keep_firing_since_ms.get_or_insert(ts);
                keep_firing = ts - since < r.keep_firing_for_ms;
            }
            let expired = a
                .resolved_at_ms
                .is_some_and(|t| ts - t > RESOLVED_RETENTION_MS);
            if a.state == AlertState::Pending || expired {
                remove.push(k.clone());
            }
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at_ms = Some(ts);
            }
            if !keep_firing {
                continue;
            }
        } else {
            a.keep_firing_since_ms = None;
        }
        if a.state == AlertState::Pending && ts - a.active_at_ms >= r.for_ms {
            a.state = AlertState::Firing;
            a.fired_at_ms = Some(ts);
        }
        if a.state == AlertState::Firing {
            a.valid_until_ms = ts + valid_for_ms;
        }
    }
    for k in remove {
        active.remove(&k);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::rules::parse_rule_file;
    use super::super::samples::SampleStoreConfig;
    use super::*;
    use parking_lot::Mutex;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MemStore(Mutex<HashMap<String, String>>);
    impl KvStore for MemStore {
        fn get(&self, key: &str) -> Result<Option<String>, String> {
            Ok(self.0.lock().get(key).cloned())
        }
        fn set(&self, key: &str, value_json: &str) -> Result<(), String> {
            self.0.lock().insert(key.into(), value_json.into());
            Ok(())
        }
        fn delete(&self, key: &str) -> Result<bool, String> {
            Ok(self.0.lock().remove(key).is_some())
        }
        fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
            Ok(self
                .0
                .lock()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        }
    }

    const RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: High
        expr: x > 5
        for: 1m
        labels: {severity: "{{ $labels.job }}-page"}
        annotations: {summary: "value {{ $value }}"}
"#;

    fn engine() -> Engine {
        let r = parse_rule_file(RULES, "t.yml");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        Engine::new(r.groups, EngineConfig::default())
    }

    #[test]
    fn pending_firing_resolved_and_restart() {
        let h = SampleStore::new(SampleStoreConfig::default());
        let l = Labels::with_name("x", &[("job".into(), "api".into())]);
        let mut e = engine();
        for i in 0..=4 {
            h.append(&l, i * 30_000, 10.0);
            e.eval_all(i * 30_000, &h);
        }
        let firing = e.firing_alerts("High");
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].labels.get("severity"), Some("api-page"));
        assert_eq!(firing[0].annotations[0].1, "value 10");
        assert_eq!(e.alert_series()[0].labels.get("alertstate"), Some("firing"));
        let n = e.take_notifications(120_000);
        assert_eq!(n.len(), 1);
        assert!(n[0].state_changed);
        assert!(e.take_notifications(130_000).is_empty());

        // Restart: state restored, no duplicate notification.
        let store = MemStore::default();
        e.save(&store).unwrap();
        let mut e2 = engine();
        assert!(e2.load(&store).unwrap());
        assert_eq!(e2.firing_alerts("High").len(), 1);
        assert!(e2.take_notifications(140_000).is_empty());
        h.append(&l, 150_000, 1.0);
        e2.eval_all(150_000, &h);
        assert!(e2.firing_alerts("High").is_empty());
        let n = e2.take_notifications(150_000);
        assert_eq!(n.len(), 1);
        assert!(n[0].resolved && n[0].ends_at_ms == 150_000);
        assert!(e2.take_notifications(400_000).is_empty());
        let st = e2.rule_statuses();
        assert_eq!(st[0].health, RuleHealth::Ok);
    }

    #[test]
    fn a_rule_over_the_samples_budget_fails_alone() {
        let text = r#"
groups:
  - name: g
    rules:
      - alert: Heavy
        expr: count_over_time(x[1h]) > 0
      - alert: Light
        expr: x > 5
"#;
        let r = parse_rule_file(text, "t.yml");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let mut e = Engine::new(
            r.groups,
            EngineConfig {
                limits: QueryLimits {
                    max_samples: 50,
                    ..QueryLimits::default()
                },
                ..EngineConfig::default()
            },
        );
        let h = SampleStore::new(SampleStoreConfig::default());
        let l = Labels::with_name("x", &[("job".into(), "api".into())]);
        for i in 0..100 {
            h.append(&l, i * 15_000, 10.0);
        }
        e.eval_all(99 * 15_000, &h);
        let st = e.rule_statuses();
        assert_eq!(st[0].health, RuleHealth::Err);
        let err = st[0].last_error.as_deref().unwrap();
        assert!(
            err.contains("too many samples") && err.contains("max_samples = 50"),
            "{err}"
        );
        assert_eq!(st[1].health, RuleHealth::Ok);
        assert_eq!(e.active_alerts().len(), 1);
    }
}
