//! The metric store: registration, the validated `record` entry point for
//! untrusted requests, series removal and refusal accounting.
//!
//! Exists as the single thread-safe owner of all metric families (shared via
//! `Arc`), so that host code gets pre-resolved lock-free handles while plugin
//! requests (`monitoring.record_metric`) go through one validating path that can
//! never corrupt existing metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::RwLock;

use super::error::{clip, ConflictKind, MetricError, MetricKind, REASONS};
use super::family::{CounterFamily, FamilyCore, GaugeFamily, HistogramFamily, SeriesBudget};
use super::validate::{
    check_buckets, check_kind_suffix, check_label_name, check_label_value, check_metric_name,
    sanitize_help,
};
use super::value::{CounterCell, GaugeCell, HistogramCell};

/// Default histogram buckets, for durations in seconds.
pub const DEFAULT_SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Help text of families created by [`MetricStore::record`] without a `help`.
pub const DEFAULT_RECORD_HELP: &str = "Recorded via monitoring.record_metric";

/// Help text used when a registration passes an empty help string.
pub const FALLBACK_HELP: &str = "No help text given";

/// Limits and policies of a [`MetricStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Most series one family may have (default 1,000).
    pub max_series_per_family: usize,
    /// Most families the store may have (default 1,000); bounds what untrusted
    /// requests can create.
    pub max_families: usize,
    /// Most series all families of the store may hold together (default
    /// unlimited); bounds what untrusted requests can create store-wide.
    pub max_series: usize,
    /// Most labels one metric may have (default 16).
    pub max_labels: usize,
    /// Longest label value in bytes (default 1,024).
    pub max_label_value_len: usize,
    /// Name prefixes that [`MetricStore::record`] refuses (default `["homeconsole_"]`).
    /// Registration through `register_*` is not affected: they belong to the host.
    pub reserved_prefixes: Vec<String>,
    /// Also refuse names that `promtool check metrics` would warn about
    /// (camelCase, `:`, type names, abbreviated or non-base units, `quantile`
    /// label). Default `true`.
    pub lint_names: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_series_per_family: 1_000,
            max_families: 1_000,
            max_series: usize::MAX,
            max_labels: 16,
            max_label_value_len: 1_024,
            reserved_prefixes: vec!["homeconsole_".to_owned()],
            lint_names: true,
        }
    }
}

/// An untrusted "record a metric" request (`monitoring.record_metric`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRequest {
    /// Metric name; counters must end in `_total`.
    pub name: String,
    /// Counter: increment (`>= 0`); gauge: new value; histogram: observation.
    pub value: f64,
    /// Label names and values; the set of names must match the family's.
    pub labels: BTreeMap<String, String>,
    /// Metric kind; must match the family's if it exists.
    pub kind: MetricKind,
    /// Help text used when the family is created (default [`DEFAULT_RECORD_HELP`]).
    pub help: Option<String>,
}

/// A family of any kind, as stored in the map.
#[derive(Clone)]
pub(super) enum AnyFamily {
    Counter(Arc<FamilyCore<CounterCell>>),
    Gauge(Arc<FamilyCore<GaugeCell>>),
    Histogram(Arc<FamilyCore<HistogramCell>>),
}

macro_rules! each {
    ($self:expr, $f:ident => $e:expr) => {
        match $self {
            AnyFamily::Counter($f) => $e,
            AnyFamily::Gauge($f) => $e,
            AnyFamily::Histogram($f) => $e,
        }
    };
}

impl AnyFamily {
    fn kind(&self) -> MetricKind {
        each!(self, f => f.kind)
    }
    fn label_names(&self) -> &[Box<str>] {
        each!(self, f => &f.label_names)
    }
    fn label_list(&self) -> String {
        each!(self, f => f.label_list())
    }
    fn series_count(&self) -> usize {
        each!(self, f => f.series_count())
    }
    fn remove_where(&self, label: &str, value: &str) -> usize {
        each!(self, f => f.remove_where(label, value))
    }
}

/// Thread-safe store of metric families; share it via `Arc`.
pub struct MetricStore {
    pub(super) config: StoreConfig,
    pub(super) families: RwLock<BTreeMap<Box<str>, AnyFamily>>,
    /// The store-wide series budget (`None` when unlimited).
    budget: Option<Arc<SeriesBudget>>,
    refusals: [AtomicU64; REASONS.len()],
}

impl Default for MetricStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MetricStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricStore")
            .field("config", &self.config)
            .field("families", &self.families.read().len())
            .finish()
    }
}

/// What a registration asks for, to compare with an existing family.
struct Wanted<'a> {
    kind: MetricKind,
    labels: &'a [&'a str],
    buckets: Option<&'a [f64]>,
}

impl MetricStore {
    /// A store with the default [`StoreConfig`].
    pub fn new() -> Self {
        Self::with_config(StoreConfig::default())
    }

    /// A store with the given limits and policies.
    pub fn with_config(config: StoreConfig) -> Self {
        Self {
            budget: (config.max_series != usize::MAX)
                .then(|| Arc::new(SeriesBudget::new(config.max_series))),
            config,
            families: RwLock::new(BTreeMap::new()),
            refusals: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Registers (or returns the existing) counter family. The name must end in
    /// `_total`. Registering again with the same kind and label names returns
    /// the existing family; anything else is [`MetricError::Conflict`].
    pub fn register_counter(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<CounterFamily, MetricError> {
        let w = Wanted {
            kind: MetricKind::Counter,
            labels: label_names,
            buckets: None,
        };
        match self.register(name, help, &w)? {
            AnyFamily::Counter(f) => Ok(CounterFamily(f)),
            _ => unreachable!("register checks the kind"),
        }
    }

    /// Registers (or returns the existing) gauge family; see [`Self::register_counter`].
    pub fn register_gauge(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<GaugeFamily, MetricError> {
        let w = Wanted {
            kind: MetricKind::Gauge,
            labels: label_names,
            buckets: None,
        };
        match self.register(name, help, &w)? {
            AnyFamily::Gauge(f) => Ok(GaugeFamily(f)),
            _ => unreachable!("register checks the kind"),
        }
    }

    /// Registers (or returns the existing) histogram family with these bucket
    /// upper bounds (finite, strictly increasing; `+Inf` is implicit). Different
    /// bounds for an existing histogram are a [`MetricError::Conflict`].
    pub fn register_histogram(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramFamily, MetricError> {
        let w = Wanted {
            kind: MetricKind::Histogram,
            labels: label_names,
            buckets: Some(buckets),
        };
        match self.register(name, help, &w)? {
            AnyFamily::Histogram(f) => Ok(HistogramFamily(f)),
            _ => unreachable!("register checks the kind"),
        }
    }

    fn register(&self, name: &str, help: &str, w: &Wanted<'_>) -> Result<AnyFamily, MetricError> {
        if let Some(f) = self.families.read().get(name) {
            return compatible(name, f, w);
        }
        let lint = self.config.lint_names;
        check_metric_name(name, lint)?;
        check_kind_suffix(name, w.kind)?;
        if w.labels.len() > self.config.max_labels {
            return Err(MetricError::TooManyLabels {
                metric: clip(name),
                count: w.labels.len(),
                limit: self.config.max_labels,
            });
        }
        for (i, l) in w.labels.iter().enumerate() {
            check_label_name(name, l, lint)?;
            if w.labels[..i].contains(l) {
                return Err(MetricError::InvalidLabel {
                    metric: clip(name),
                    label: clip(l),
                    why: "duplicate label name".to_owned(),
                });
            }
        }
        let buckets = w.buckets.map(|b| check_buckets(name, b)).transpose()?;
        let help = sanitize_help(help).unwrap_or_else(|| FALLBACK_HELP.to_owned());

        let mut families = self.families.write();
        if let Some(f) = families.get(name) {
            return compatible(name, f, w);
        }
        check_collision(&families, name, w.kind)?;
        if families.len() >= self.config.max_families {
            return Err(MetricError::TooManyFamilies {
                metric: clip(name),
                limit: self.config.max_families,
            });
        }
        let (max, vlen) = (
            self.config.max_series_per_family,
            self.config.max_label_value_len,
        );
        let fam = match w.kind {
            MetricKind::Counter => AnyFamily::Counter(Arc::new(FamilyCore::new(
                name,
                help,
                w.kind,
                w.labels,
                (),
                max,
                vlen,
                self.budget.clone(),
            ))),
            MetricKind::Gauge => AnyFamily::Gauge(Arc::new(FamilyCore::new(
                name,
                help,
                w.kind,
                w.labels,
                (),
                max,
                vlen,
                self.budget.clone(),
            ))),
            MetricKind::Histogram => AnyFamily::Histogram(Arc::new(FamilyCore::new(
                name,
                help,
                w.kind,
                w.labels,
                buckets.unwrap_or_default().into(),
                max,
                vlen,
                self.budget.clone(),
            ))),
        };
        families.insert(name.into(), fam.clone());
        Ok(fam)
    }

    /// Validates and applies an untrusted record request: a counter is
    /// incremented by `value`, a gauge set to it, a histogram observes it (new
    /// histograms get [`DEFAULT_SECONDS_BUCKETS`]). The family and series are
    /// created on first use. Every refusal is counted under
    /// [`MetricError::reason`] (see [`Self::refusals`]) and leaves all existing
    /// metrics untouched.
    pub fn record(&self, req: &RecordRequest) -> Result<(), MetricError> {
        let r = self.record_inner(req);
        if let Err(e) = &r {
            self.refusals[e.reason_index()].fetch_add(1, Relaxed);
        }
        r
    }

    /// The reserved prefix `name` starts with, if any (names under it
    /// belong to the host's own metrics).
    pub fn reserved_prefix(&self, name: &str) -> Option<&str> {
        self.config
            .reserved_prefixes
            .iter()
            .map(String::as_str)
            .find(|p| name.starts_with(p))
    }

    fn record_inner(&self, req: &RecordRequest) -> Result<(), MetricError> {
        let name = req.name.as_str();
        if let Some(p) = self.reserved_prefix(name) {
            return Err(MetricError::ReservedName {
                name: clip(name),
                prefix: p.to_owned(),
            });
        }
        if !req.value.is_finite() {
            return Err(MetricError::InvalidValue {
                metric: clip(name),
                value: req.value,
            });
        }
        if req.kind == MetricKind::Counter && req.value < 0.0 {
            return Err(MetricError::NegativeIncrement {
                metric: clip(name),
                value: req.value,
            });
        }
        if req.labels.len() > self.config.max_labels {
            return Err(MetricError::TooManyLabels {
                metric: clip(name),
                count: req.labels.len(),
                limit: self.config.max_labels,
            });
        }
        let lint = self.config.lint_names;
        let existing = self.families.read().get(name).cloned();
        let fam = match existing {
            Some(f) => {
                if f.kind() != req.kind {
                    return Err(kind_conflict(name, f.kind(), req.kind));
                }
                let names = f.label_names();
                let same = names.len() == req.labels.len()
                    && names.iter().all(|n| req.labels.contains_key(&**n));
                if !same {
                    for l in req.labels.keys() {
                        check_label_name(name, l, lint)?;
                    }
                    return Err(MetricError::Conflict {
                        metric: clip(name),
                        what: ConflictKind::LabelNames,
                        existing: format!("label names {}", f.label_list()),
                        requested: format!("label names {}", key_list(&req.labels)),
                    });
                }
                f
            }
            None => {
                // Validate everything before creating the family, so a refused
                // request never leaves an empty family behind.
                check_metric_name(name, lint)?;
                check_kind_suffix(name, req.kind)?;
                for (l, v) in &req.labels {
                    check_label_name(name, l, lint)?;
                    check_label_value(name, l, v, self.config.max_label_value_len)?;
                }
                if self.config.max_series_per_family == 0 {
                    return Err(MetricError::TooManySeries {
                        metric: clip(name),
                        limit: 0,
                    });
                }
                let labels: Vec<&str> = req.labels.keys().map(String::as_str).collect();
                let help = req
                    .help
                    .as_deref()
                    .filter(|h| sanitize_help(h).is_some())
                    .unwrap_or(DEFAULT_RECORD_HELP);
                let w = Wanted {
                    kind: req.kind,
                    labels: &labels,
                    buckets: (req.kind == MetricKind::Histogram)
                        .then_some(&DEFAULT_SECONDS_BUCKETS[..]),
                };
                // Another request may have created it meanwhile with other labels:
                // `register` then reports the conflict. Record requests compare
                // label names as sets, so re-check in set terms.
                match self.register(name, help, &w) {
                    Ok(f) => f,
                    Err(MetricError::Conflict {
                        what: ConflictKind::LabelNames | ConflictKind::Buckets,
                        ..
                    }) => return self.record_inner(req),
                    Err(e) => return Err(e),
                }
            }
        };
        let values: Vec<&str> = fam
            .label_names()
            .iter()
            .map(|n| req.labels[&**n].as_str())
            .collect();
        match &fam {
            AnyFamily::Counter(f) => f.get_or_create(&values)?.cell.add(req.value),
            AnyFamily::Gauge(f) => f.get_or_create(&values)?.cell.0.set(req.value),
            AnyFamily::Histogram(f) => f.get_or_create(&values)?.cell.observe(req.value),
        }
        Ok(())
    }

    /// Drops every series, in every family, whose label `label_name` equals
    /// `label_value` (e.g. all series of a removed plugin); returns how many.
    /// Handles still held to them keep working but are no longer exported.
    pub fn remove_series_where(&self, label_name: &str, label_value: &str) -> usize {
        let fams: Vec<AnyFamily> = self.families.read().values().cloned().collect();
        fams.iter()
            .map(|f| f.remove_where(label_name, label_value))
            .sum()
    }

    /// Whether a family named `name` exists.
    pub fn has_family(&self, name: &str) -> bool {
        self.families.read().contains_key(name)
    }

    /// Total number of series in all families.
    pub fn series_count(&self) -> usize {
        self.families
            .read()
            .values()
            .map(AnyFamily::series_count)
            .sum()
    }

    /// Series counted against the store-wide budget, and the budget
    /// (`None` when the store has none).
    pub fn series_budget(&self) -> Option<(usize, usize)> {
        self.budget.as_ref().map(|b| (b.used(), b.limit))
    }

    /// Number of registered families (including empty ones).
    pub fn family_count(&self) -> usize {
        self.families.read().len()
    }

    /// Names of every registered family, with or without series.
    pub fn family_names(&self) -> Vec<String> {
        self.families.read().keys().map(|k| k.to_string()).collect()
    }

    /// Refusals of [`Self::record`] so far, per reason, for every reason in
    /// [`crate::metrics::REASONS`] order (zeros included).
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        REASONS
            .iter()
            .zip(&self.refusals)
            .map(|(r, c)| (*r, c.load(Relaxed)))
            .collect()
    }
}

fn kind_conflict(name: &str, existing: MetricKind, requested: MetricKind) -> MetricError {
    MetricError::Conflict {
        metric: clip(name),
        what: ConflictKind::Kind,
        existing: existing.to_string(),
        requested: requested.to_string(),
    }
}

fn key_list(labels: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = labels.keys().map(|k| clip(k)).collect();
    format!("[{}]", v.join(", "))
}

/// Whether an existing family satisfies a registration request (same kind,
/// same label names in the same order, same buckets).
fn compatible(name: &str, f: &AnyFamily, w: &Wanted<'_>) -> Result<AnyFamily, MetricError> {
    if f.kind() != w.kind {
        return Err(kind_conflict(name, f.kind(), w.kind));
    }
    let names = f.label_names();
    if names.len() != w.labels.len() || names.iter().zip(w.labels).any(|(a, b)| &**a != *b) {
        let req: Vec<String> = w.labels.iter().map(|l| clip(l)).collect();
        return Err(MetricError::Conflict {
            metric: clip(name),
            what: ConflictKind::LabelNames,
            existing: format!("label names {}", f.label_list()),
            requested: format!("label names [{}]", req.join(", ")),
        });
    }
    if let (AnyFamily::Histogram(h), Some(b)) = (f, w.buckets) {
        let mut b = b;
        if b.last() == Some(&f64::INFINITY) {
            b = &b[..b.len() - 1];
        }
        if *h.params != *b {
            return Err(MetricError::Conflict {
                metric: clip(name),
                what: ConflictKind::Buckets,
                existing: format!("buckets {:?}", &*h.params),
                requested: format!("buckets {b:?}"),
            });
        }
    }
    Ok(f.clone())
}

const GENERATED: [&str; 3] = ["_bucket", "_count", "_sum"];

/// Refuses a name equal to a series name another family generates
/// (`x_count` vs histogram `x`), and a histogram whose generated names exist.
fn check_collision(
    families: &BTreeMap<Box<str>, AnyFamily>,
    name: &str,
    kind: MetricKind,
) -> Result<(), MetricError> {
    let collide = |other: &str, f: &AnyFamily| MetricError::Conflict {
        metric: clip(name),
        what: ConflictKind::NameCollision,
        existing: format!("{} {other:?}", f.kind()),
        requested: format!("{kind} {:?}", clip(name)),
    };
    for s in GENERATED {
        if let Some(stem) = name.strip_suffix(s) {
            if let Some(f @ AnyFamily::Histogram(_)) = families.get(stem) {
                return Err(collide(stem, f));
            }
        }
        if kind == MetricKind::Histogram {
            let generated = format!("{name}{s}");
            if let Some(f) = families.get(generated.as_str()) {
                return Err(collide(&generated, f));
            }
        }
    }
    Ok(())
}
