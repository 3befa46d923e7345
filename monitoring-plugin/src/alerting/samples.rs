//! The embedded sample store: a bounded in-memory ring of the plugin's own
//! samples ([`SampleStore`]; not to be confused with the alert history of
//! fired/resolved transitions, which the alerting capability keeps).
//!
//! Alert rules need time windows (`rate(x[5m])`, `for: 10m`) without an external
//! Prometheus. This module keeps a short, bounded ring of every series the plugin
//! exports, with Prometheus staleness semantics: a series missing from a snapshot
//! gets a staleness marker, exactly as Prometheus does on a scrape. Memory is bounded
//! by a retention window, a maximum number of series and a maximum number of samples;
//! whatever is dropped to respect those bounds is counted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use parking_lot::RwLock;
use promql_parser::label::{MatchOp, Matcher};

/// The label holding a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// The bit pattern Prometheus uses for a staleness marker (a special NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Returns the staleness-marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is a staleness marker (and not an ordinary NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A sorted, de-duplicated label set (including `__name__` when the series has one).
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Builds a label set from pairs; sorts by name, drops empty values, keeps the
    /// last value of a repeated name.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == n => last.1 = v,
                _ => out.push((n, v)),
            }
        }
        Labels(out)
    }

    /// Builds a label set from a metric name and further labels.
    pub fn with_name(name: &str, labels: &[(String, String)]) -> Self {
        let mut pairs = labels.to_vec();
        pairs.push((METRIC_NAME.to_string(), name.to_string()));
        Self::new(pairs)
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The metric name, if any.
    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Sets (or with an empty value, removes) a label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    /// Removes a label.
    pub fn remove(&mut self, name: &str) {
        self.set(name, "");
    }

    /// A copy without `__name__`.
    pub fn without_name(&self) -> Labels {
        let mut l = self.clone();
        l.remove(METRIC_NAME);
        l
    }

    /// Keeps only the listed labels.
    pub fn keep_only(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| names.contains(n))
                .cloned()
                .collect(),
        )
    }

    /// Drops the listed labels.
    pub fn drop_these(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| !names.contains(n))
                .cloned()
                .collect(),
        )
    }

    /// Iterates `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every matcher accepts this label set (a missing label reads as "").
    pub fn matches(&self, matchers: &[Matcher]) -> bool {
        matchers
            .iter()
            .all(|m| m.is_match(self.get(&m.name).unwrap_or("")))
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.name().unwrap_or("");
        write!(f, "{name}{{")?;
        let mut first = true;
        for (n, v) in self.iter().filter(|(n, _)| *n != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{n}={v:?}")?;
        }
        write!(f, "}}")
    }
}

/// One sample of a snapshot handed to [`SampleStore::ingest`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels other than the name.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// Bounds of a [`SampleStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleStoreConfig {
    /// Samples older than `newest - retention_ms` are dropped (default 1 h).
    pub retention_ms: i64,
    /// Maximum number of series held (default 50,000).
    pub max_series: usize,
    /// Maximum number of samples held over all series (default 5,000,000).
    pub max_samples: usize,
}

impl Default for SampleStoreConfig {
    fn default() -> Self {
        SampleStoreConfig {
            retention_ms: 3_600_000,
            max_series: 50_000,
            max_samples: 5_000_000,
        }
    }
}

/// Counters of what the sample store dropped to stay within its bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Series currently held.
    pub series: usize,
    /// Samples currently held (staleness markers included).
    pub samples: usize,
    /// Samples removed because they were older than the retention.
    pub samples_expired: u64,
    /// Oldest samples removed because `max_samples` was reached.
    pub samples_evicted: u64,
    /// Series removed (oldest last sample first) because `max_series` was reached.
    pub series_evicted: u64,
    /// Samples refused because their timestamp was not after the series' last one.
    pub samples_out_of_order: u64,
}

/// A selected series: its labels and its samples (oldest first) in the asked range.
/// Staleness markers are included as [`stale_nan`] values.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// Full label set including `__name__`.
    pub labels: Labels,
    /// `(timestamp ms, value)` pairs, oldest first.
    pub samples: Vec<(i64, f64)>,
}

#[derive(Debug, Default)]
struct Series {
    /// Key of the series in `Inner::by_last` / `Inner::keys`.
    id: u64,
    samples: VecDeque<(i64, f64)>,
}

#[derive(Debug, Default)]
struct Inner {
    /// name -> labels -> series
    by_name: HashMap<String, HashMap<Labels, Series>>,
    /// number of samples per timestamp, to find the oldest ones quickly.
    ts_counts: BTreeMap<i64, usize>,
    /// series of the previous snapshot (for staleness markers).
    last_snapshot: HashSet<Labels>,
    /// (newest sample's timestamp, series id) of every series with samples:
    /// the series to evict first is the first entry, found in O(log n).
    by_last: BTreeSet<(i64, u64)>,
    /// series id -> (metric name, labels), to find an evicted series.
    keys: HashMap<u64, (String, Labels)>,
    next_id: u64,
    series: usize,
    samples: usize,
    newest_ts: i64,
    stats: HistoryStats,
}

/// The embedded sample store: bounded and thread-safe.
#[derive(Debug, Default)]
pub struct SampleStore {
    config: SampleStoreConfig,
    inner: RwLock<Inner>,
}

impl SampleStore {
    /// Creates an empty store with the given bounds.
    pub fn new(config: SampleStoreConfig) -> Self {
        SampleStore {
            config,
            inner: RwLock::new(Inner {
                newest_ts: i64::MIN,
                ..Inner::default()
            }),
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> SampleStoreConfig {
        self.config
    }

    /// Ingests a full snapshot of all series at `ts_ms`. Series of the previous snapshot
    /// that are absent from this one receive a staleness marker at `ts_ms`.
    pub fn ingest(&self, ts_ms: i64, samples: &[Sample]) {
        let mut inner = self.inner.write();
        let mut seen = HashSet::with_capacity(samples.len());
        for s in samples {
            let labels = Labels::with_name(&s.name, &s.labels);
            self.append_locked(&mut inner, &labels, ts_ms, s.value);
            seen.insert(labels);
        }
        let gone: Vec<Labels> = inner.last_snapshot.difference(&seen).cloned().collect();
        for labels in gone {
            self.append_locked(&mut inner, &labels, ts_ms, stale_nan());
        }
        inner.last_snapshot = seen;
        self.enforce_locked(&mut inner);
    }

    /// Appends one sample to one series (no staleness inference). Used for recording
    /// rule output and test input. `value` may be [`stale_nan`].
    pub fn append(&self, labels: &Labels, ts_ms: i64, value: f64) {
        let mut inner = self.inner.write();
        self.append_locked(&mut inner, labels, ts_ms, value);
        self.enforce_locked(&mut inner);
    }

    fn append_locked(&self, inner: &mut Inner, labels: &Labels, ts: i64, value: f64) {
        let name = labels.name().unwrap_or("").to_string();
        let exists = inner
            .by_name
            .get(&name)
            .is_some_and(|m| m.contains_key(labels));
        if !exists {
            if is_stale_nan(value) {
                return;
            }
            if inner.series >= self.config.max_series && !evict_oldest_series(inner) {
                return;
            }
            inner.series += 1;
            let id = inner.next_id;
            inner.next_id += 1;
            inner.keys.insert(id, (name.clone(), labels.clone()));
            inner.by_name.entry(name.clone()).or_default().insert(
                labels.clone(),
                Series {
                    id,
                    samples: VecDeque::new(),
                },
            );
        }
        let Some(series) = inner.by_name.get_mut(&name).and_then(|m| m.get_mut(labels)) else {
            return;
        };
        let previous_last = series.samples.back().map(|&(t, _)| t);
        if let Some(last) = previous_last {
            if ts <= last {
                inner.stats.samples_out_of_order += 1;
                return;
            }
        }
        series.samples.push_back((ts, value));
        let id = series.id;
        if let Some(last) = previous_last {
            inner.by_last.remove(&(last, id));
        }
        inner.by_last.insert((ts, id));
        *inner.ts_counts.entry(ts).or_insert(0) += 1;
        inner.samples += 1;
        if ts > inner.newest_ts {
            inner.newest_ts = ts;
        }
    }

    fn enforce_locked(&self, inner: &mut Inner) {
        let cutoff = inner.newest_ts.saturating_sub(self.config.retention_ms);
        let expired = inner
            .ts_counts
            .first_key_value()
            .is_some_and(|(&t, _)| t < cutoff);
        if expired {
            let n = drop_before(inner, cutoff);
            inner.stats.samples_expired += n;
        }
        while inner.samples > self.config.max_samples {
            let Some((&oldest, _)) = inner.ts_counts.first_key_value() else {
                break;
            };
            let n = drop_before(inner, oldest.saturating_add(1));
            inner.stats.samples_evicted += n;
            if n == 0 {
                break;
            }
        }
    }

    /// Selects the series accepted by all `matchers` (the metric name is matched as the
    /// `__name__` label) with their samples in `[start_ms, end_ms]` (both inclusive).
    /// Series without samples in the range are omitted.
    pub fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<SeriesData> {
        let mut out = Vec::new();
        self.for_each_selected(matchers, |labels, samples| {
            let from = samples.partition_point(|(t, _)| *t < start_ms);
            let to = samples.partition_point(|(t, _)| *t <= end_ms);
            if from < to {
                out.push(SeriesData {
                    labels: labels.clone(),
                    samples: samples.range(from..to).copied().collect(),
                });
            }
        });
        out
    }

    /// Calls `f` for every series accepted by `matchers`, with all its samples.
    pub(crate) fn for_each_selected<F>(&self, matchers: &[Matcher], mut f: F)
    where
        F: FnMut(&Labels, &VecDeque<(i64, f64)>),
    {
        let inner = self.inner.read();
        let exact_name = matchers.iter().find_map(|m| {
            (m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal)).then_some(m.value.as_str())
        });
        let mut visit = |series: &HashMap<Labels, Series>| {
            for (labels, s) in series {
                if labels.matches(matchers) {
                    f(labels, &s.samples);
                }
            }
        };
        match exact_name {
            Some(name) => {
                if let Some(series) = inner.by_name.get(name) {
                    visit(series);
                }
            }
            None => inner.by_name.values().for_each(visit),
        }
    }

    /// Counters and sizes.
    pub fn stats(&self) -> HistoryStats {
        let inner = self.inner.read();
        HistoryStats {
            series: inner.series,
            samples: inner.samples,
            ..inner.stats
        }
    }

    /// The newest timestamp held, if any sample was ever ingested.
    pub fn newest_ts(&self) -> Option<i64> {
        let t = self.inner.read().newest_ts;
        (t != i64::MIN).then_some(t)
    }
}

/// Drops all samples with `t < cutoff`; returns how many were dropped.
fn drop_before(inner: &mut Inner, cutoff: i64) -> u64 {
    let mut dropped = 0u64;
    let mut emptied: Vec<(i64, u64)> = Vec::new();
    for series in inner.by_name.values_mut() {
        series.retain(|_, s| {
            let last = s.samples.back().map_or(i64::MIN, |&(t, _)| t);
            while s.samples.front().is_some_and(|(t, _)| *t < cutoff) {
                s.samples.pop_front();
                dropped += 1;
            }
            // A series whose only remaining sample is a staleness marker is gone.
            while s.samples.len() == 1 && s.samples.front().is_some_and(|(_, v)| is_stale_nan(*v)) {
                s.samples.pop_front();
                dropped += 1;
            }
            let keep = !s.samples.is_empty();
            if !keep {
                emptied.push((last, s.id));
            }
            keep
        });
    }
    let emptied_series = emptied.len();
    for entry in emptied {
        inner.by_last.remove(&entry);
        inner.keys.remove(&entry.1);
    }
    inner.by_name.retain(|_, m| !m.is_empty());
    // Rebuild the timestamp counts lazily: remove old keys, they are exact for t < cutoff.
    let keep = inner.ts_counts.split_off(&cutoff);
    inner.ts_counts = keep;
    inner.samples = inner.samples.saturating_sub(dropped as usize);
    inner.series = inner.series.saturating_sub(emptied_series);
    dropped
}

/// Evicts the series whose newest sample is oldest (O(log n) through
/// `by_last`). Returns false if nothing could go.
fn evict_oldest_series(inner: &mut Inner) -> bool {
    let Some((_, id)) = inner.by_last.pop_first() else {
        return false;
    };
    let Some((name, labels)) = inner.keys.remove(&id) else {
        return false;
    };
    let Some(map) = inner.by_name.get_mut(&name) else {
        return false;
    };
    if let Some(s) = map.remove(&labels) {
        for (t, _) in &s.samples {
            if let Some(c) = inner.ts_counts.get_mut(t) {
                *c -= 1;
                if *c == 0 {
                    inner.ts_counts.remove(t);
                }
            }
        }
        inner.samples = inner.samples.saturating_sub(s.samples.len());
    }
    if map.is_empty() {
        inner.by_name.remove(&name);
    }
    inner.last_snapshot.remove(&labels);
    inner.series -= 1;
    inner.stats.series_evicted += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, l: &[(&str, &str)], v: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: l
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            value: v,
        }
    }

    fn name_matcher(n: &str) -> Vec<Matcher> {
        vec![Matcher::new(MatchOp::Equal, METRIC_NAME, n)]
    }

    #[test]
    fn snapshot_staleness() {
        let h = SampleStore::new(SampleStoreConfig::default());
        h.ingest(0, &[s("a", &[("x", "1")], 1.0), s("a", &[("x", "2")], 2.0)]);
        h.ingest(15_000, &[s("a", &[("x", "1")], 3.0)]);
        let sel = h.select(&name_matcher("a"), 0, 20_000);
        assert_eq!(sel.len(), 2);
        let two = sel.iter().find(|d| d.labels.get("x") == Some("2")).unwrap();
        assert_eq!(two.samples.len(), 2);
        assert!(is_stale_nan(two.samples[1].1));
        // A third snapshot without it adds no second marker.
        h.ingest(30_000, &[s("a", &[("x", "1")], 4.0)]);
        assert_eq!(h.stats().samples, 5);
    }

    #[test]
    fn retention_and_bounds() {
        let cfg = SampleStoreConfig {
            retention_ms: 60_000,
            max_series: 2,
            max_samples: 5,
        };
        let h = SampleStore::new(cfg);
        for i in 0..10 {
            h.ingest(i * 15_000, &[s("a", &[], i as f64)]);
        }
        let st = h.stats();
        assert!(st.samples <= 5);
        assert!(st.samples_expired > 0);
        h.ingest(
            200_000,
            &[s("a", &[], 1.0), s("b", &[], 1.0), s("c", &[], 1.0)],
        );
        let st = h.stats();
        assert_eq!(st.series, 2);
        assert!(st.series_evicted >= 1);
        let any = h.select(&[], 0, i64::MAX).remove(0).labels;
        h.append(&any, 100_000, 1.0);
        assert_eq!(h.stats().samples_out_of_order, 1);
    }

    #[test]
    fn a_series_flood_evicts_the_least_recently_updated_series() {
        let h = SampleStore::new(SampleStoreConfig {
            max_series: 1_000,
            ..SampleStoreConfig::default()
        });
        let keep = Labels::with_name("kept", &[]);
        // 20,000 distinct series, one new series per sample; "kept" is
        // updated all along, so it is never the oldest.
        for i in 0..20_000i64 {
            let id = i.to_string();
            h.append(
                &Labels::with_name("flood", &[("id".into(), id)]),
                i * 2,
                1.0,
            );
            h.append(&keep, i * 2 + 1, 1.0);
        }
        let st = h.stats();
        assert_eq!(st.series, 1_000);
        assert_eq!(st.series_evicted, 20_001 - 1_000);
        assert_eq!(h.select(&name_matcher("kept"), 0, i64::MAX).len(), 1);
        // The survivors are the newest 999 flood series.
        let flood = h.select(&name_matcher("flood"), 0, i64::MAX);
        assert_eq!(flood.len(), 999);
        let oldest_kept = flood
            .iter()
            .filter_map(|s| s.labels.get("id")?.parse::<i64>().ok())
            .min();
        assert_eq!(oldest_kept, Some(20_000 - 999));
        // Eviction freed their samples too.
        assert_eq!(st.samples, 999 + 20_000);
    }

    #[test]
    fn labels_ops() {
        let mut l = Labels::new(vec![("b".into(), "2".into()), ("a".into(), "1".into())]);
        assert_eq!(l.get("a"), Some("1"));
        l.set("a", "");
        assert_eq!(l.get("a"), None);
        l.set("c", "3");
        assert_eq!(l.pairs().len(), 2);
    }
}
