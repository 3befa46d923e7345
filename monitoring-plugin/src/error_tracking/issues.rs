//! The issue store: grouped errors, persisted through the host's [`KvStore`].
//!
//! Why: a raw event stream is useless to a person; an *issue* (one bug, with
//! an exact count, when it started, whom it hits and a few examples) is what
//! the dashboard shows and what alerting keys on.
//!
//! # Storage layout
//! * `issue/{id}` — the issue's metadata (JSON), rewritten on every event.
//! * `samples/{id}` — a JSON array of at most `max_samples_per_issue` events:
//!   the first one ever seen plus the most recent ones.
//!
//! Issue metadata is also held in memory (bounded by `max_issues`); samples
//! are read from the store only when an issue is opened. Construction loads
//! every `issue/` key, so the store survives restarts.
//!
//! # Guarantees
//! * Counts are exact: every recorded event increments its issue's count,
//!   even when its sample is rate limited, the issue is ignored, or the store
//!   failed to persist it (the failure is reported in the outcome).
//! * Memory and storage are bounded: issues (least recently seen evicted),
//!   samples per issue, stored samples per fingerprint per minute, plugins and
//!   user ids tracked per issue, metric label cardinality, event sizes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::event::{truncate_chars, ErrorEvent, Level};
use super::grouping::{fingerprint, group_id};
use crate::store::KvStore;
use crate::time::{now_ms, DAY_MS};

const ISSUE_PREFIX: &str = "issue/";
const SAMPLES_PREFIX: &str = "samples/";
const RATE_WINDOW_MS: u64 = 60_000;
const PRUNE_INTERVAL_MS: u64 = 60_000;
/// Plugin label used for metric series beyond the cardinality cap.
pub const OTHER_PLUGIN_LABEL: &str = "other";

/// Errors of the issue store.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The underlying [`KvStore`] failed.
    #[error("issue storage failed: {0}")]
    Storage(String),
    /// A stored value could not be encoded or decoded.
    #[error("issue data could not be (de)serialised: {0}")]
    Serde(#[from] serde_json::Error),
}

/// Limits of the issue store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueStoreConfig {
    /// Maximum number of issues; the least recently seen is evicted.
    pub max_issues: usize,
    /// Samples kept per issue (the first plus the most recent).
    pub max_samples_per_issue: usize,
    /// Issues not seen for this many days are dropped.
    pub max_age_days: u64,
    /// Samples stored per issue (fingerprint) per minute; counts stay exact.
    pub samples_per_minute: u32,
    /// Distinct user ids remembered per issue for "users affected".
    pub max_users_tracked: usize,
    /// Plugins remembered per issue.
    pub max_plugins_per_issue: usize,
    /// Distinct plugin labels in [`IssueStore::counts`]; more fold into `other`.
    pub max_metric_plugins: usize,
}

impl Default for IssueStoreConfig {
    fn default() -> Self {
        IssueStoreConfig {
            max_issues: 1000,
            max_samples_per_issue: 10,
            max_age_days: 30,
            samples_per_minute: 5,
            max_users_tracked: 1000,
            max_plugins_per_issue: 64,
            max_metric_plugins: 256,
        }
    }
}

/// Triage state of an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueStatus {
    /// Open.
    #[default]
    Unresolved,
    /// Marked fixed; a new event reopens it as a regression.
    Resolved,
    /// Muted (see [`IgnoreUntil`]).
    Ignored,
}

/// How long an ignored issue stays ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum IgnoreUntil {
    /// Until unignored by hand.
    Forever,
    /// Until this many more events arrive: the `remaining`-th one reopens it.
    Events {
        /// Events still to come before the issue reopens (decremented).
        remaining: u64,
    },
    /// Until an event arrives at or after this time (ms since the epoch).
    Time {
        /// Milliseconds since the Unix epoch.
        until_ms: u64,
    },
}

/// One group of events: one bug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// Stable id: 16 hex characters of the fingerprint hash.
    pub id: String,
    /// Fingerprint components the id was derived from.
    pub fingerprint: Vec<String>,
    /// `Type: value` or the message.
    pub title: String,
    /// `plugin / service` of the first event.
    pub culprit: String,
    /// Level of the latest event.
    pub level: Level,
    /// Exact number of events.
    pub count: u64,
    /// Plugins that reported it (at most `max_plugins_per_issue`).
    pub plugins: BTreeSet<String>,
    /// Distinct user ids seen (exact up to `max_users_tracked`).
    pub users_affected: u64,
    /// True once more distinct users were seen than are tracked.
    pub users_affected_capped: bool,
    /// First event (receive time, ms since the epoch).
    pub first_seen: u64,
    /// Latest event (receive time, ms since the epoch).
    pub last_seen: u64,
    /// Triage state.
    pub status: IssueStatus,
    /// Set when a resolved issue got a new event; cleared on resolve.
    pub regression: bool,
    /// When it was last resolved.
    pub resolved_at: Option<u64>,
    /// Present while ignored.
    pub ignore_until: Option<IgnoreUntil>,
    /// Id of the latest event.
    pub last_event_id: String,
    /// Samples not stored because of the per-minute limit.
    pub samples_rate_limited: u64,
}

/// What recording one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    /// The issue the event went to.
    pub issue_id: String,
    /// The issue did not exist before (publish `monitoring.error.new_issue`).
    pub new_issue: bool,
    /// A resolved issue reopened (publish `monitoring.error.regression`).
    pub regression: bool,
    /// An ignored issue's ignore period ended with this event.
    pub unignored: bool,
    /// The event is muted (issue still ignored); it was counted.
    pub ignored: bool,
    /// The event was kept as a sample.
    pub sample_stored: bool,
    /// The issue's count after this event.
    pub count: u64,
    /// Issues evicted to make room (least recently seen).
    pub evicted: Vec<String>,
    /// Set when persisting failed; the in-memory state is still updated.
    pub persist_error: Option<String>,
}

/// Sort order for [`IssueQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueSort {
    /// Most recently seen first.
    #[default]
    LastSeen,
    /// Most events first.
    Count,
    /// Newest issue first.
    FirstSeen,
}

/// Filters, sort and page for [`IssueStore::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IssueQuery {
    /// Only this status.
    pub status: Option<IssueStatus>,
    /// Only issues this plugin reported.
    pub plugin: Option<String>,
    /// Only this level.
    pub level: Option<Level>,
    /// Order (descending; ties by id).
    pub sort: IssueSort,
    /// Issues to skip.
    pub offset: usize,
    /// Page size (capped at 500).
    pub limit: usize,
}

impl Default for IssueQuery {
    fn default() -> Self {
        IssueQuery {
            status: None,
            plugin: None,
            level: None,
            sort: IssueSort::default(),
            offset: 0,
            limit: 50,
        }
    }
}

/// One page of issues.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssuePage {
    /// Issues matching the filters (before paging).
    pub total: usize,
    /// This page.
    pub issues: Vec<Issue>,
}

/// An issue with its sample events (each with its breadcrumbs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssueDetail {
    /// The issue.
    pub issue: Issue,
    /// Samples, oldest first (the first event ever, then the most recent).
    pub samples: Vec<ErrorEvent>,
}

/// Health counters of the store itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IssueStoreStats {
    /// Issues currently held.
    pub issues: usize,
    /// Issues evicted for space.
    pub evicted: u64,
    /// Issues dropped for age.
    pub expired: u64,
    /// Stored values skipped at load because they did not parse.
    pub load_errors: u64,
    /// Failed writes/deletes.
    pub storage_errors: u64,
}

/// What is persisted under `issue/{id}`: the issue plus bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IssueRecord {
    issue: Issue,
    #[serde(default)]
    user_hashes: BTreeSet<u64>,
    #[serde(default)]
    window_start_ms: u64,
    #[serde(default)]
    window_samples: u32,
}

#[derive(Default)]
struct Inner {
    issues: HashMap<String, IssueRecord>,
    counts: BTreeMap<(String, Level), u64>,
    metric_plugins: BTreeSet<String>,
    last_prune_ms: u64,
    stats: IssueStoreStats,
}

/// Grouped, persisted issues. Thread-safe; all methods take `&self`.
pub struct IssueStore {
    kv: Arc<dyn KvStore>,
    config: IssueStoreConfig,
    inner: Mutex<Inner>,
    /// Serialises the storage writes of [`IssueStore::record_at`] so they land
    /// in the order the records changed, without holding `inner` (and so
    /// every reader of the issues) during the I/O. Taken while `inner` is
    /// held, released before `inner` is taken again: no lock cycle.
    writes: Mutex<()>,
}

impl std::fmt::Debug for IssueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn issue_key(id: &str) -> String {
    format!("{ISSUE_PREFIX}{id}")
}

fn samples_key(id: &str) -> String {
    format!("{SAMPLES_PREFIX}{id}")
}

fn stable_hash(text: &str) -> u64 {
    // FNV-1a: stable across runs and platforms (unlike `DefaultHasher`).
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    text.hash(&mut h);
    h.finish()
}

impl IssueStore {
    /// Opens the store over `kv`, loading every persisted issue. Unparseable
    /// entries are skipped (counted in [`IssueStoreStats::load_errors`]);
    /// retention is applied right away and orphaned samples are removed.
    pub fn open(kv: Arc<dyn KvStore>, config: IssueStoreConfig) -> Result<Self, IssueError> {
        Self::open_at(kv, config, now_ms())
    }

    /// [`open`](Self::open) with an explicit clock (for tests).
    pub fn open_at(
        kv: Arc<dyn KvStore>,
        config: IssueStoreConfig,
        now: u64,
    ) -> Result<Self, IssueError> {
        let mut inner = Inner::default();
        for key in kv.list_keys(ISSUE_PREFIX).map_err(IssueError::Storage)? {
            let Some(text) = kv.get(&key).map_err(IssueError::Storage)? else {
                continue;
            };
            match serde_json::from_str::<IssueRecord>(&text) {
                Ok(rec) if issue_key(&rec.issue.id) == key => {
                    inner.issues.insert(rec.issue.id.clone(), rec);
                }
                _ => inner.stats.load_errors += 1,
            }
        }
        let store = IssueStore {
            kv,
            config,
            inner: Mutex::new(inner),
            writes: Mutex::new(()),
        };
        {
            let mut inner = store.inner.lock();
            store.prune_locked(&mut inner, now);
            while inner.issues.len() > store.config.max_issues.max(1) {
                store.evict_lru_locked(&mut inner);
            }
            let orphans: Vec<String> = store
                .kv
                .list_keys(SAMPLES_PREFIX)
                .map_err(IssueError::Storage)?
                .into_iter()
                .filter(|k| !inner.issues.contains_key(&k[SAMPLES_PREFIX.len()..]))
                .collect();
            for key in orphans {
                if store.kv.delete(&key).is_err() {
                    inner.stats.storage_errors += 1;
                }
            }
        }
        Ok(store)
    }

    /// The limits in force.
    pub fn config(&self) -> &IssueStoreConfig {
        &self.config
    }

    /// Records one event now. See [`record_at`](Self::record_at).
    pub fn record(&self, event: ErrorEvent) -> RecordOutcome {
        self.record_at(event, now_ms())
    }

    /// Records one event received at `now` (ms since the epoch): groups it,
    /// counts it, updates status (regression / end of ignore), stores it as a
    /// sample unless rate limited, and persists. Receive time, not the
    /// event's own timestamp, drives first/last seen and retention, so a
    /// client with a wrong clock cannot evict or pin issues.
    pub fn record_at(&self, mut event: ErrorEvent, now: u64) -> RecordOutcome {
        event.enforce_limits();
        let components = fingerprint(&event);
        let id = group_id(&components);
        let mut guard = self.inner.lock();
        let inner = &mut *guard;

        let plugin_label = if event.plugin.is_empty() {
            "unknown"
        } else {
            event.plugin.as_str()
        };
        let label = if inner.metric_plugins.contains(plugin_label)
            || inner.metric_plugins.len() < self.config.max_metric_plugins
        {
            inner.metric_plugins.insert(plugin_label.to_string());
            plugin_label.to_string()
        } else {
            OTHER_PLUGIN_LABEL.to_string()
        };
        *inner.counts.entry((label, event.level)).or_insert(0) += 1;

        if now.saturating_sub(inner.last_prune_ms) >= PRUNE_INTERVAL_MS {
            self.prune_locked(inner, now);
        }

        let mut outcome = RecordOutcome {
            issue_id: id.clone(),
            new_issue: false,
            regression: false,
            unignored: false,
            ignored: false,
            sample_stored: false,
            count: 0,
            evicted: Vec::new(),
            persist_error: None,
        };

        if !inner.issues.contains_key(&id) {
            while inner.issues.len() >= self.config.max_issues.max(1) {
                match self.evict_lru_locked(inner) {
                    Some(evicted) => outcome.evicted.push(evicted),
                    None => break,
                }
            }
            outcome.new_issue = true;
            let issue = Issue {
                id: id.clone(),
                fingerprint: components,
                title: event.title(),
                culprit: truncate_chars(&event.culprit(), 200),
                level: event.level,
                count: 0,
                plugins: BTreeSet::new(),
                users_affected: 0,
                users_affected_capped: false,
                first_seen: now,
                last_seen: now,
                status: IssueStatus::Unresolved,
                regression: false,
                resolved_at: None,
                ignore_until: None,
                last_event_id: String::new(),
                samples_rate_limited: 0,
            };
            let rec = IssueRecord {
                issue,
                user_hashes: BTreeSet::new(),
                window_start_ms: now,
                window_samples: 0,
            };
            inner.issues.insert(id.clone(), rec);
        }
        let Some(rec) = inner.issues.get_mut(&id) else {
            return outcome; // unreachable: inserted above
        };
        let issue = &mut rec.issue;
        issue.count += 1;
        issue.last_seen = issue.last_seen.max(now);
        issue.level = event.level;
        issue.last_event_id = event.event_id.clone();
        if !event.plugin.is_empty()
            && (issue.plugins.contains(&event.plugin)
                || issue.plugins.len() < self.config.max_plugins_per_issue)
        {
            issue.plugins.insert(event.plugin.clone());
        }
        if let Some(uid) = event
            .user
            .as_ref()
            .and_then(|u| u.id.as_deref())
            .filter(|u| !u.is_empty())
        {
            let h = stable_hash(uid);
            if rec.user_hashes.contains(&h) || rec.user_hashes.len() < self.config.max_users_tracked
            {
                rec.user_hashes.insert(h);
            } else {
                issue.users_affected_capped = true;
            }
            issue.users_affected = rec.user_hashes.len() as u64;
        }
        outcome.count = issue.count;

        match issue.status {
            IssueStatus::Unresolved => {}
            IssueStatus::Resolved => {
                issue.status = IssueStatus::Unresolved;
                issue.regression = true;
                outcome.regression = true;
            }
            IssueStatus::Ignored => {
                let reopen = match &mut issue.ignore_until {
                    None | Some(IgnoreUntil::Forever) => false,
                    Some(IgnoreUntil::Events { remaining }) => {
                        *remaining = remaining.saturating_sub(1);
                        *remaining == 0
                    }
                    Some(IgnoreUntil::Time { until_ms }) => now >= *until_ms,
                };
                if reopen {
                    issue.status = IssueStatus::Unresolved;
                    issue.ignore_until = None;
                    outcome.unignored = true;
                } else {
                    outcome.ignored = true;
                }
            }
        }

        // Per-fingerprint sample rate limit (the first event always stored).
        if now.saturating_sub(rec.window_start_ms) >= RATE_WINDOW_MS || now < rec.window_start_ms {
            rec.window_start_ms = now;
            rec.window_samples = 0;
        }
        let store_sample = rec.window_samples < self.config.samples_per_minute || outcome.new_issue;
        if store_sample {
            rec.window_samples += 1;
        } else {
            rec.issue.samples_rate_limited += 1;
        }

        let record_json = serde_json::to_string(&*rec);
        // Storage I/O happens outside the issue map's lock (readers of the
        // issue API never wait for a disk), in change order (`writes`).
        let writes = self.writes.lock();
        drop(guard);
        let mut errors = Vec::new();
        if store_sample && self.config.max_samples_per_issue > 0 {
            match self.append_sample(&id, event) {
                Ok(()) => outcome.sample_stored = true,
                Err(e) => errors.push(e.to_string()),
            }
        }
        match record_json {
            Ok(json) => {
                if let Err(e) = self.kv.set(&issue_key(&id), &json) {
                    errors.push(IssueError::Storage(e).to_string());
                }
            }
            Err(e) => errors.push(IssueError::Serde(e).to_string()),
        }
        drop(writes);
        if !errors.is_empty() {
            self.inner.lock().stats.storage_errors += errors.len() as u64;
            outcome.persist_error = Some(errors.join("; "));
        }
        outcome
    }

    fn load_samples(&self, id: &str) -> Result<Vec<ErrorEvent>, IssueError> {
        match self.kv.get(&samples_key(id)).map_err(IssueError::Storage)? {
            None => Ok(Vec::new()),
            Some(text) => Ok(serde_json::from_str(&text)?),
        }
    }

    fn append_sample(&self, id: &str, event: ErrorEvent) -> Result<(), IssueError> {
        // A corrupt sample list is replaced rather than blocking new samples.
        let mut samples = self.load_samples(id).unwrap_or_default();
        samples.push(event);
        let max = self.config.max_samples_per_issue;
        while samples.len() > max {
            // Keep the first event ever seen; drop the oldest of the rest.
            let idx = if max >= 2 { 1 } else { 0 };
            samples.remove(idx);
        }
        let json = serde_json::to_string(&samples)?;
        self.kv
            .set(&samples_key(id), &json)
            .map_err(IssueError::Storage)
    }

    fn remove_locked(&self, inner: &mut Inner, id: &str) -> bool {
        let existed = inner.issues.remove(id).is_some();
        for key in [issue_key(id), samples_key(id)] {
            if self.kv.delete(&key).is_err() {
                inner.stats.storage_errors += 1;
            }
        }
        existed
    }

    fn evict_lru_locked(&self, inner: &mut Inner) -> Option<String> {
        let victim = inner
            .issues
            .values()
            .min_by(|a, b| (a.issue.last_seen, &a.issue.id).cmp(&(b.issue.last_seen, &b.issue.id)))
            .map(|r| r.issue.id.clone())?;
        self.remove_locked(inner, &victim);
        inner.stats.evicted += 1;
        Some(victim)
    }

    fn prune_locked(&self, inner: &mut Inner, now: u64) -> Vec<String> {
        inner.last_prune_ms = now;
        let max_age = self.config.max_age_days.saturating_mul(DAY_MS);
        let expired: Vec<String> = inner
            .issues
            .values()
            .filter(|r| now.saturating_sub(r.issue.last_seen) > max_age)
            .map(|r| r.issue.id.clone())
            .collect();
        for id in &expired {
            self.remove_locked(inner, id);
            inner.stats.expired += 1;
        }
        expired
    }

    /// Drops issues not seen for `max_age_days` (as of `now`); returns their ids.
    /// Also runs at most once a minute from [`record_at`](Self::record_at).
    pub fn prune_at(&self, now: u64) -> Vec<String> {
        let mut inner = self.inner.lock();
        self.prune_locked(&mut inner, now)
    }

    /// Lists issues matching `query`, sorted and paged.
    pub fn list(&self, query: &IssueQuery) -> IssuePage {
        let inner = self.inner.lock();
        let mut matching: Vec<&Issue> = inner
            .issues
            .values()
            .map(|r| &r.issue)
            .filter(|i| query.status.is_none_or(|s| i.status == s))
            .filter(|i| query.level.is_none_or(|l| i.level == l))
            .filter(|i| query.plugin.as_ref().is_none_or(|p| i.plugins.contains(p)))
            .collect();
        matching.sort_by(|a, b| {
            let key = |i: &Issue| match query.sort {
                IssueSort::LastSeen => i.last_seen,
                IssueSort::Count => i.count,
                IssueSort::FirstSeen => i.first_seen,
            };
            key(b).cmp(&key(a)).then_with(|| a.id.cmp(&b.id))
        });
        let total = matching.len();
        let issues = matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit.min(500))
            .cloned()
            .collect();
        IssuePage { total, issues }
    }

    /// One issue with its samples, or `None` if unknown.
    pub fn get(&self, id: &str) -> Result<Option<IssueDetail>, IssueError> {
        let issue = match self.inner.lock().issues.get(id) {
            Some(rec) => rec.issue.clone(),
            None => return Ok(None),
        };
        // Wait for a sample write still in flight (the issue map is updated
        // before its storage write lands), so the detail shows what the
        // list shows. Never taken while holding `inner`.
        let _settled = self.writes.lock();
        let samples = self.load_samples(id)?;
        Ok(Some(IssueDetail { issue, samples }))
    }

    /// Applies `change` to an issue and persists it; memory is only updated
    /// when the write succeeds. `Ok(false)` when the id is unknown.
    fn update(&self, id: &str, change: impl FnOnce(&mut Issue)) -> Result<bool, IssueError> {
        let mut inner = self.inner.lock();
        let Some(rec) = inner.issues.get(id) else {
            return Ok(false);
        };
        let mut updated = rec.clone();
        change(&mut updated.issue);
        let json = serde_json::to_string(&updated)?;
        if let Err(e) = self.kv.set(&issue_key(id), &json) {
            inner.stats.storage_errors += 1;
            return Err(IssueError::Storage(e));
        }
        inner.issues.insert(id.to_string(), updated);
        Ok(true)
    }

    /// Marks an issue resolved (clears the regression flag).
    pub fn resolve(&self, id: &str) -> Result<bool, IssueError> {
        self.resolve_at(id, now_ms())
    }

    /// [`resolve`](Self::resolve) with an explicit clock.
    pub fn resolve_at(&self, id: &str, now: u64) -> Result<bool, IssueError> {
        self.update(id, |i| {
            i.status = IssueStatus::Resolved;
            i.regression = false;
            i.resolved_at = Some(now);
            i.ignore_until = None;
        })
    }

    /// Ignores an issue until `until`. `Events { remaining: 0 }` means forever.
    pub fn ignore(&self, id: &str, until: IgnoreUntil) -> Result<bool, IssueError> {
        let until = match until {
            IgnoreUntil::Events { remaining: 0 } => IgnoreUntil::Forever,
            other => other,
        };
        self.update(id, |i| {
            i.status = IssueStatus::Ignored;
            i.ignore_until = Some(until);
        })
    }

    /// Reopens an issue (from resolved or ignored).
    pub fn unresolve(&self, id: &str) -> Result<bool, IssueError> {
        self.update(id, |i| {
            i.status = IssueStatus::Unresolved;
            i.ignore_until = None;
        })
    }

    /// Deletes an issue and its samples; `Ok(false)` when unknown.
    pub fn delete(&self, id: &str) -> Result<bool, IssueError> {
        let mut inner = self.inner.lock();
        if !inner.issues.contains_key(id) {
            return Ok(false);
        }
        for key in [issue_key(id), samples_key(id)] {
            self.kv.delete(&key).map_err(|e| {
                inner.stats.storage_errors += 1;
                IssueError::Storage(e)
            })?;
        }
        inner.issues.remove(id);
        Ok(true)
    }

    /// Events recorded since start, by (plugin, level), for
    /// `homeconsole_errors_total{plugin,level}`. Plugins beyond
    /// `max_metric_plugins` are folded into [`OTHER_PLUGIN_LABEL`].
    pub fn counts(&self) -> Vec<((String, Level), u64)> {
        self.inner
            .lock()
            .counts
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Number of issues held.
    pub fn len(&self) -> usize {
        self.inner.lock().issues.len()
    }

    /// Whether no issue is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Health counters of the store.
    pub fn stats(&self) -> IssueStoreStats {
        let inner = self.inner.lock();
        IssueStoreStats {
            issues: inner.issues.len(),
            ..inner.stats
        }
    }
}
