//! Metric families: the set of series of one metric name, and the family handles.
//!
//! Exists to resolve label values to a series once (a hash lookup under a short
//! read lock), enforce the per-family series limit, and keep a cached, sorted
//! snapshot of the series so a scrape neither sorts nor holds the lock while it
//! writes.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{RwLock, RwLockUpgradableReadGuard};

use super::error::{clip, ConflictKind, MetricError, MetricKind};
use super::text::push_escaped_label_value;
use super::validate::{check_label_value, check_unit};
use super::value::{
    Cell, Counter, CounterCell, Gauge, GaugeCell, Histogram, HistogramCell, Series,
};

/// A view of label values used as a hash key, so that a lookup with borrowed
/// `&[&str]` finds a series stored under owned strings without allocating.
trait KeyView {
    fn len(&self) -> usize;
    fn part(&self, i: usize) -> &str;
}

struct Borrowed<'a>(&'a [&'a str]);

impl KeyView for Borrowed<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn part(&self, i: usize) -> &str {
        self.0[i]
    }
}

impl<C> KeyView for Series<C> {
    fn len(&self) -> usize {
        self.values.len()
    }
    fn part(&self, i: usize) -> &str {
        &self.values[i]
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for i in 0..self.len() {
            self.part(i).hash(state);
        }
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.part(i) == other.part(i))
    }
}

impl Eq for dyn KeyView + '_ {}

/// Set entry: a series hashed by its label values.
struct SeriesKey<C>(Arc<Series<C>>);

impl<'a, C: 'static> Borrow<dyn KeyView + 'a> for SeriesKey<C> {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        &*self.0
    }
}

impl<C: 'static> Hash for SeriesKey<C> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Borrow::<dyn KeyView>::borrow(self).hash(state);
    }
}

impl<C: 'static> PartialEq for SeriesKey<C> {
    fn eq(&self, other: &Self) -> bool {
        self.0.values == other.0.values
    }
}

impl<C: 'static> Eq for SeriesKey<C> {}

/// Sorted, shared list of a family's series as taken by a scrape.
pub(super) type Snapshot<C> = Arc<[Arc<Series<C>>]>;

struct SeriesSet<C> {
    index: HashSet<SeriesKey<C>>,
    /// Series sorted by label values; `None` after any insertion or removal.
    sorted: Option<Snapshot<C>>,
}

/// A series budget shared by every family of a store: bounds the series an
/// untrusted caller can create store-wide, whatever the per-family limits.
#[derive(Debug)]
pub(super) struct SeriesBudget {
    used: AtomicUsize,
    /// Most series all families together may hold.
    pub(super) limit: usize,
}

impl SeriesBudget {
    pub(super) fn new(limit: usize) -> Self {
        SeriesBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes one series from the budget; false when it is spent.
    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.limit).then_some(used + 1)
            })
            .is_ok()
    }

    /// Gives `n` series back (they were removed).
    fn release(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Series taken so far.
    pub(super) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Shared state of one family.
pub(super) struct FamilyCore<C: Cell> {
    pub(super) name: Box<str>,
    /// Help text, already escaped for the exposition.
    pub(super) help: Box<str>,
    pub(super) kind: MetricKind,
    pub(super) label_names: Box<[Box<str>]>,
    pub(super) params: C::Params,
    pub(super) max_series: usize,
    pub(super) max_label_value_len: usize,
    /// The store-wide budget this family's series count against, if any.
    budget: Option<Arc<SeriesBudget>>,
    series: RwLock<SeriesSet<C>>,
    /// The unit (`# UNIT`), set once by the first registration that names one.
    pub(super) unit: OnceLock<Box<str>>,
}

impl<C: Cell> FamilyCore<C> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: &str,
        help: String,
        kind: MetricKind,
        label_names: &[&str],
        params: C::Params,
        max_series: usize,
        max_label_value_len: usize,
        budget: Option<Arc<SeriesBudget>>,
    ) -> Self {
        Self {
            budget,
            name: name.into(),
            help: help.into(),
            kind,
            label_names: label_names.iter().map(|&l| l.into()).collect(),
            params,
            max_series,
            max_label_value_len,
            series: RwLock::new(SeriesSet {
                index: HashSet::new(),
                sorted: None,
            }),
            unit: OnceLock::new(),
        }
    }

    /// Gives the family its unit, or checks it has this one already. The
    /// name must end in `_<unit>` (`_<unit>_total` for a counter), as
    /// OpenMetrics requires of a family with a unit.
    pub(super) fn set_unit(&self, unit: &str) -> Result<(), MetricError> {
        if unit.is_empty() {
            return Ok(());
        }
        check_unit(&self.name, self.kind, unit)?;
        let current = self.unit.get_or_init(|| unit.into());
        if &**current != unit {
            return Err(MetricError::InvalidName {
                name: clip(&self.name),
                why: format!(
                    "the metric has unit {current:?} already, not {:?}",
                    clip(unit)
                ),
            });
        }
        Ok(())
    }

    /// `[a, b]` style list of the label names, for error messages.
    pub(super) fn label_list(&self) -> String {
        format!("[{}]", self.label_names.join(", "))
    }

    /// Returns the series for `values` (in label-name order), creating it if needed.
    pub(super) fn get_or_create(&self, values: &[&str]) -> Result<Arc<Series<C>>, MetricError> {
        if values.len() != self.label_names.len() {
            return Err(MetricError::Conflict {
                metric: self.name.to_string(),
                what: ConflictKind::LabelNames,
                existing: format!("label names {}", self.label_list()),
                requested: format!("{} label values", values.len()),
            });
        }
        let key = Borrowed(values);
        let key: &dyn KeyView = &key;
        if let Some(s) = self.series.read().index.get(key) {
            return Ok(s.0.clone());
        }
        for (name, value) in self.label_names.iter().zip(values) {
            check_label_value(&self.name, name, value, self.max_label_value_len)?;
        }
        let mut set = self.series.write();
        if let Some(s) = set.index.get(key) {
            return Ok(s.0.clone());
        }
        if set.index.len() >= self.max_series {
            return Err(MetricError::TooManySeries {
                metric: clip(&self.name),
                limit: self.max_series,
            });
        }
        if let Some(budget) = &self.budget {
            if !budget.try_take() {
                return Err(MetricError::SeriesBudget {
                    metric: clip(&self.name),
                    limit: budget.limit,
                });
            }
        }
        let series = Arc::new(Series {
            values: values.iter().map(|&v| v.into()).collect(),
            labels: render_labels(&self.label_names, values).into(),
            cell: C::new(&self.params),
        });
        set.index.insert(SeriesKey(series.clone()));
        set.sorted = None;
        Ok(series)
    }

    /// The series sorted by label values. Cached until the next insertion or
    /// removal; rebuilding holds only an upgradable read lock while sorting, so
    /// concurrent lookups are not blocked.
    pub(super) fn snapshot(&self) -> Snapshot<C> {
        if let Some(s) = &self.series.read().sorted {
            return s.clone();
        }
        let set = self.series.upgradable_read();
        if let Some(s) = &set.sorted {
            return s.clone();
        }
        let mut v: Vec<Arc<Series<C>>> = set.index.iter().map(|k| k.0.clone()).collect();
        v.sort_unstable_by(|a, b| a.values.cmp(&b.values));
        let snap: Snapshot<C> = v.into();
        let mut set = RwLockUpgradableReadGuard::upgrade(set);
        set.sorted = Some(snap.clone());
        snap
    }

    /// Removes every series whose label `label_name` equals `value`; returns how many.
    pub(super) fn remove_where(&self, label_name: &str, value: &str) -> usize {
        let Some(idx) = self.label_names.iter().position(|l| &**l == label_name) else {
            return 0;
        };
        let mut set = self.series.write();
        let before = set.index.len();
        set.index.retain(|s| &*s.0.values[idx] != value);
        let removed = before - set.index.len();
        if removed > 0 {
            set.sorted = None;
            if let Some(budget) = &self.budget {
                budget.release(removed);
            }
        }
        removed
    }

    pub(super) fn series_count(&self) -> usize {
        self.series.read().index.len()
    }
}

/// Renders `a="x",b="y"` (values escaped) once, at series creation.
fn render_labels(names: &[Box<str>], values: &[&str]) -> String {
    let mut s = String::new();
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(n);
        s.push_str("=\"");
        push_escaped_label_value(&mut s, v);
        s.push('"');
    }
    s
}

macro_rules! family_handle {
    ($(#[$doc:meta])* $fam:ident, $cell:ty, $handle:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $fam(pub(super) Arc<FamilyCore<$cell>>);

        impl $fam {
            /// Returns the series for these label values (in the order the label
            /// names were registered), creating it if needed. Resolve once and keep
            /// the handle: updating it takes no lock.
            pub fn with_labels(&self, values: &[&str]) -> Result<$handle, MetricError> {
                self.0.get_or_create(values).map($handle)
            }

            /// The metric name.
            pub fn name(&self) -> &str {
                &self.0.name
            }

            /// Gives the family a unit (exported as `# UNIT`), or checks
            /// that it has this one; empty: no change. The name must end in
            /// `_<unit>` (`_<unit>_total` for a counter).
            pub fn with_unit(self, unit: &str) -> Result<Self, MetricError> {
                self.0.set_unit(unit)?;
                Ok(self)
            }

            /// The label names, in registration order.
            pub fn label_names(&self) -> Vec<&str> {
                self.0.label_names.iter().map(|l| &**l).collect()
            }

            /// Number of series currently exported by this family.
            pub fn series_count(&self) -> usize {
                self.0.series_count()
            }
        }

        impl fmt::Debug for $fam {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($fam))
                    .field("name", &self.0.name)
                    .field("label_names", &self.0.label_names)
                    .finish()
            }
        }
    };
}

family_handle!(
    /// Handle to a counter family; cheap to clone.
    CounterFamily,
    CounterCell,
    Counter
);
family_handle!(
    /// Handle to a gauge family; cheap to clone.
    GaugeFamily,
    GaugeCell,
    Gauge
);
family_handle!(
    /// Handle to a histogram family; cheap to clone.
    HistogramFamily,
    HistogramCell,
    Histogram
);

impl HistogramFamily {
    /// The bucket upper bounds (without the implicit `+Inf`).
    pub fn buckets(&self) -> &[f64] {
        &self.0.params
    }
}
