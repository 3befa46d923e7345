//! MetricsCollector: turns the host's observer reports and plugin list into
//! the seed's metric families, and renders the scrape.
//!
//! Families are registered once with pre-resolved handles where the label
//! values are fixed; per-service and per-topic series are looked up on the
//! observer thread (not on the caller's hot path: the host only queues a
//! report). A label value beyond the per-metric series limit is folded into
//! `other` so a flood of topics cannot grow memory without bound.
//!
//! Besides the fixed-label families, the collector holds *replaced* gauge
//! families ([`MetricsCollector::replace_gauge_family`]): their whole series
//! set is swapped at once and each series may carry its own label names (the
//! shape of Prometheus' `ALERTS`), which a fixed-label family cannot express.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use plugin_abi::metric_names::{is_label_name, is_metric_name};
use plugin_abi::{
    CallStatus, CircuitState, Observation, ObservationKind, PluginState, PluginSummary,
};
use prometheus::Encoder;

use crate::metrics::names;
use crate::metrics::{
    push_escaped_label_value, push_float, Counter, CounterFamily, Gauge, GaugeFamily,
    HistogramFamily, MetricError, MetricStore, StoreConfig, DEFAULT_SECONDS_BUCKETS,
};

/// Series cap of each of the host's own families (topics, services, …).
pub const INTERNAL_SERIES_CAP: usize = 10_000;

/// Label value that absorbs series beyond the per-metric limit.
pub const OVERFLOW_LABEL: &str = "other";

/// Storage latency buckets (seconds): storage is usually sub-millisecond.
const STORAGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The plugin's metrics.
pub struct MetricsCollector {
    /// The host's own families (`homeconsole_*`), with a generous series cap.
    internal: MetricStore,
    /// Families created through `monitoring.record_metric`, with the
    /// configured caps.
    store: Arc<MetricStore>,
    /// Per-plugin counters that must stay monotonic across a plugin's
    /// replacement (callback time, stalls): [`Self::forget_plugin`] leaves
    /// them alone, because a new generation would otherwise restart them at 0.
    durable: MetricStore,
    callback_seconds: CounterFamily,
    stalls: CounterFamily,
    slow_calls: CounterFamily,
    calls_refused: CounterFamily,
    /// Last host total seen per (plugin, callback): generation and seconds.
    callback_seen: Mutex<HashMap<(String, String), (u64, f64)>>,
    /// Last host total seen per (plugin, refusal reason).
    refused_seen: Mutex<HashMap<(String, String), (u64, f64)>>,
    process: prometheus::Registry,
    events: CounterFamily,
    service_calls: CounterFamily,
    service_duration: HistogramFamily,
    http_duration: HistogramFamily,
    storage_ops: CounterFamily,
    storage_duration: HistogramFamily,
    plugins_loaded: Gauge,
    plugin_state: GaugeFamily,
    plugin_circuit: GaugeFamily,
    health_status: GaugeFamily,
    health_duration: GaugeFamily,
    deliveries_dropped: CounterFamily,
    delivery_duration: HistogramFamily,
    errors: CounterFamily,
    observations: Counter,
    observations_dropped: Counter,
    refusals: CounterFamily,
    scrape_duration: Gauge,
    series: Gauge,
    host_dropped_seen: AtomicU64,
    refusals_seen: Mutex<HashMap<&'static str, u64>>,
    replaced: Mutex<BTreeMap<String, ReplacedFamily>>,
}

/// A gauge family whose series are replaced as a whole, each with its own
/// label names; rendered text is kept ready for the scrape.
#[derive(Debug, Default)]
struct ReplacedFamily {
    help: String,
    /// `name{labels} value` lines, sorted, without duplicates.
    lines: Vec<String>,
}

/// Why [`MetricsCollector::replace_gauge_family`] refused a family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceError {
    /// The family name is not a valid metric name.
    #[error("invalid metric name {0:?}")]
    InvalidName(String),
    /// The name belongs to a fixed-label family of the collector.
    #[error("metric {0:?} is already a fixed-label family")]
    Taken(String),
}

/// Whether `s` is a metric name without `:` (promtool reserves `:` for
/// recording rules).
fn is_plain_metric_name(s: &str) -> bool {
    is_metric_name(s) && !s.contains(':')
}

/// Whether `s` is a label name a scrape accepts and that is not reserved
/// (`__*`, and `le`/`quantile`, which promtool reserves for histograms and
/// summaries).
fn is_plain_label_name(s: &str) -> bool {
    is_label_name(s) && !s.starts_with("__") && s != "le" && s != "quantile"
}

/// A family registration failed: a bug in this crate, reported as an error.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric families: {0}")]
pub struct SetupError(#[from] MetricError);

fn with_overflow<T>(
    get: impl Fn(&[&str]) -> Result<T, MetricError>,
    labels: &[&str],
    overflow_at: usize,
) -> Option<T> {
    match get(labels) {
        Ok(h) => Some(h),
        Err(MetricError::TooManySeries { .. }) => {
            let mut folded: Vec<&str> = labels.to_vec();
            folded[overflow_at] = OVERFLOW_LABEL;
            get(&folded).ok()
        }
        Err(_) => None,
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl MetricsCollector {
    /// Registers every family; custom metrics get the default store-wide
    /// series budget ([`crate::config::MetricsConfig`]'s `max_series`).
    pub fn new(
        max_series_per_metric: usize,
        max_labels: usize,
        build: &BuildInfo,
    ) -> Result<Self, SetupError> {
        let budget = crate::config::MetricsConfig::default().max_series;
        Self::with_series_budget(max_series_per_metric, max_labels, budget, build)
    }

    /// Registers every family; custom metrics (`monitoring.record_metric`)
    /// may hold at most `max_series` series together.
    pub fn with_series_budget(
        max_series_per_metric: usize,
        max_labels: usize,
        max_series: usize,
        build: &BuildInfo,
    ) -> Result<Self, SetupError> {
        let store = Arc::new(MetricStore::with_config(StoreConfig {
            max_series_per_family: max_series_per_metric,
            max_series,
            max_labels,
            ..StoreConfig::default()
        }));
        let internal = MetricStore::with_config(StoreConfig {
            max_series_per_family: INTERNAL_SERIES_CAP,
            ..StoreConfig::default()
        });
        let s = &internal;
        let build_info = s.register_gauge(
            names::BUILD_INFO,
            "Build information: host, ABI and monitoring plugin versions (always 1).",
            &["host_version", "abi_version", "plugin_version"],
        )?;
        build_info
            .with_labels(&[
                &build.host_version,
                &build.abi_version,
                &build.plugin_version,
            ])?
            .set(1.0);
        let durable = MetricStore::with_config(StoreConfig {
            max_series_per_family: INTERNAL_SERIES_CAP,
            ..StoreConfig::default()
        });
        let callback_seconds = durable.register_counter(
            names::PLUGIN_CALLBACK_SECONDS_TOTAL,
            "Seconds the host spent inside each plugin callback, summed over the plugin's generations.",
            &["plugin", "callback"],
        )?;
        let stalls = durable.register_counter(
            names::PLUGIN_STALLS_TOTAL,
            "Plugin callbacks reported busy longer than the host's stall threshold.",
            &["plugin", "callback"],
        )?;
        let slow_calls = durable.register_counter(
            names::SLOW_SERVICE_CALLS_TOTAL,
            "Service calls slower than profiling.slow_call_ms, by service.",
            &["service_name"],
        )?;
        let calls_refused = durable.register_counter(
            names::PLUGIN_CALLS_REFUSED_TOTAL,
            "Calls the host refused before they reached the plugin, by reason (circuit_open, bulkhead, call_depth).",
            &["plugin", "reason"],
        )?;
        let process = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = process.register(Box::new(pc));
        }
        Ok(MetricsCollector {
            events: s.register_counter(names::EVENTS_TOTAL, "Events published on the event bus, by topic.", &["event_type"])?,
            service_calls: s.register_counter(
                names::SERVICE_CALLS_TOTAL,
                "Service calls by service and status (ok, error, timeout, not_found).",
                &["service_name", "status"],
            )?,
            service_duration: s.register_histogram(
                names::SERVICE_CALL_DURATION,
                "Service call latency in seconds, including the plugin's handler.",
                &["service_name"],
                &DEFAULT_SECONDS_BUCKETS,
            )?,
            http_duration: s.register_histogram(
                names::HTTP_REQUEST_DURATION,
                "Latency of the host's HTTP API in seconds, by matched route and method.",
                &["route", "method"],
                &DEFAULT_SECONDS_BUCKETS,
            )?,
            storage_ops: s.register_counter(
                names::STORAGE_OPERATIONS_TOTAL,
                "Storage operations by operation (get, set, delete, list) and namespace.",
                &["operation", "namespace"],
            )?,
            storage_duration: s.register_histogram(
                names::STORAGE_OPERATION_DURATION,
                "Storage operation latency in seconds.",
                &["operation"],
                STORAGE_BUCKETS,
            )?,
            plugins_loaded: s
                .register_gauge(names::PLUGINS_LOADED, "Plugins loaded in the host (state loaded or started).", &[])?
                .with_labels(&[])?,
            plugin_state: s.register_gauge(
                names::PLUGIN_STATE,
                "Plugin state: 1 started, 0 stopped or not yet started, -1 error.",
                &["plugin_name"],
            )?,
            plugin_circuit: s.register_gauge(
                names::PLUGIN_CIRCUIT_STATE,
                "Plugin circuit breaker: 0 closed, 1 half-open (one trial call), 2 open (calls refused).",
                &["plugin_name"],
            )?,
            health_status: s.register_gauge(
                names::HEALTH_STATUS,
                "Health per component: 1 healthy, 0.5 degraded, 0 unhealthy (component=overall for the host).",
                &["component"],
            )?,
            health_duration: s.register_gauge(
                names::HEALTH_CHECK_DURATION,
                "Duration of the latest health check of each component, in seconds.",
                &["component"],
            )?,
            deliveries_dropped: s.register_counter(
                names::EVENT_DELIVERIES_DROPPED_TOTAL,
                "Event deliveries dropped because the subscriber's queue was full.",
                &["plugin"],
            )?,
            delivery_duration: s.register_histogram(
                names::EVENT_DELIVERY_DURATION,
                "Event delivery latency per subscriber in seconds: queue wait plus handler time.",
                &["plugin"],
                &DEFAULT_SECONDS_BUCKETS,
            )?,
            errors: s.register_counter(names::ERRORS_TOTAL, "Errors reported by the host and plugins.", &["plugin", "level"])?,
            observations: s
                .register_counter(names::OBSERVATIONS_TOTAL, "Observer reports processed by the monitoring plugin.", &[])?
                .with_labels(&[])?,
            observations_dropped: s
                .register_counter(
                    names::OBSERVATIONS_DROPPED_TOTAL,
                    "Observer reports the host dropped because the monitoring queue was full.",
                    &[],
                )?
                .with_labels(&[])?,
            refusals: s.register_counter(
                names::RECORD_REFUSALS_TOTAL,
                "monitoring.record_metric requests refused, by reason.",
                &["reason"],
            )?,
            scrape_duration: s
                .register_gauge(names::SCRAPE_DURATION, "Duration of the previous metrics scrape in seconds.", &[])?
                .with_labels(&[])?,
            series: s
                .register_gauge(names::SERIES, "Series in the monitoring plugin's own metric store.", &[])?
                .with_labels(&[])?,
            internal,
            store,
            durable,
            callback_seconds,
            stalls,
            slow_calls,
            calls_refused,
            callback_seen: Mutex::new(HashMap::new()),
            refused_seen: Mutex::new(HashMap::new()),
            process,
            host_dropped_seen: AtomicU64::new(0),
            refusals_seen: Mutex::new(HashMap::new()),
            replaced: Mutex::new(BTreeMap::new()),
        })
    }

    /// Every host family registered (`homeconsole_*`), series or not.
    pub fn host_family_names(&self) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> =
            self.internal.family_names().into_iter().collect();
        // Families rendered only while they have series (e.g. homeconsole_alerts).
        names.extend(names::ALL.iter().map(|n| (*n).to_owned()));
        names.into_iter().collect()
    }

    /// The store of the host's own `homeconsole_*` families, for capabilities
    /// that register families of their own (alerting's notification counters).
    pub fn internal_store(&self) -> &MetricStore {
        &self.internal
    }

    /// Replaces every series of the gauge family `name` by `series` (labels,
    /// value). Series may have different label names; label pairs with an
    /// invalid or reserved name (`__*`, `le`, `quantile`) or an empty value
    /// are left out, and series that become identical are rendered once (the
    /// first wins). At most `max_series` series are kept (the rest are
    /// dropped, sorted order); returns how many were dropped. An empty
    /// `series` removes the family from the scrape.
    pub fn replace_gauge_family(
        &self,
        name: &str,
        help: &str,
        series: &[(Vec<(String, String)>, f64)],
        max_series: usize,
    ) -> Result<usize, ReplaceError> {
        if !is_plain_metric_name(name) {
            return Err(ReplaceError::InvalidName(name.to_owned()));
        }
        if self.internal.has_family(name) {
            return Err(ReplaceError::Taken(name.to_owned()));
        }
        let mut lines: Vec<String> = Vec::with_capacity(series.len());
        for (labels, value) in series {
            let mut pairs: Vec<&(String, String)> = labels
                .iter()
                .filter(|(k, v)| is_plain_label_name(k) && !v.is_empty())
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs.dedup_by(|a, b| a.0 == b.0);
            let mut line = String::with_capacity(64);
            line.push_str(name);
            if !pairs.is_empty() {
                line.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(k);
                    line.push_str("=\"");
                    push_escaped_label_value(&mut line, v);
                    line.push('"');
                }
                line.push('}');
            }
            line.push(' ');
            lines.push(line);
            let last = lines.len() - 1;
            push_float(&mut lines[last], *value);
        }
        // Sort and de-duplicate by series (the part before the value).
        let series_of = |l: &String| l.rsplit_once(' ').map_or(l.clone(), |(s, _)| s.to_owned());
        lines.sort_by_key(series_of);
        lines.dedup_by(|a, b| series_of(a) == series_of(b));
        let dropped = lines.len().saturating_sub(max_series);
        lines.truncate(max_series);
        let mut replaced = self.replaced.lock();
        if lines.is_empty() {
            replaced.remove(name);
        } else {
            replaced.insert(
                name.to_owned(),
                ReplacedFamily {
                    help: help.replace('\\', "\\\\").replace('\n', "\\n"),
                    lines,
                },
            );
        }
        Ok(dropped)
    }

    /// The metric store (for record_metric).
    pub fn store(&self) -> &Arc<MetricStore> {
        &self.store
    }

    /// The store of the host's own `homeconsole_*` families, for
    /// capabilities that register counters of their own (they are rendered
    /// with the scrape).
    pub fn internal(&self) -> &MetricStore {
        &self.internal
    }

    /// Applies a batch of observer reports.
    pub fn observe(&self, batch: &[Observation]) {
        for o in batch {
            // A kind this plugin does not know is ignored.
            let Some(kind) = o.kind() else {
                continue;
            };
            match kind {
                ObservationKind::ServiceCall => {
                    let name = o.name.as_str();
                    let status = o.status().as_str();
                    if let Some(c) =
                        with_overflow(|l| self.service_calls.with_labels(l), &[name, status], 0)
                    {
                        c.inc();
                    }
                    if o.status != CallStatus::NotFound {
                        if let Some(h) =
                            with_overflow(|l| self.service_duration.with_labels(l), &[name], 0)
                        {
                            h.observe_traced(
                                seconds(o.duration_ns),
                                o.trace_context.as_ref().into_option(),
                            );
                        }
                    }
                }
                ObservationKind::StorageOperation => {
                    let op = o.name.as_str();
                    if let Some(c) = with_overflow(
                        |l| self.storage_ops.with_labels(l),
                        &[op, o.namespace.as_str()],
                        1,
                    ) {
                        c.inc();
                    }
                    if let Some(h) =
                        with_overflow(|l| self.storage_duration.with_labels(l), &[op], 0)
                    {
                        h.observe(seconds(o.duration_ns));
                    }
                }
                ObservationKind::EventPublished => {
                    if let Some(c) =
                        with_overflow(|l| self.events.with_labels(l), &[o.name.as_str()], 0)
                    {
                        c.inc();
                    }
                }
                ObservationKind::EventDelivered => {
                    if let Some(h) = with_overflow(
                        |l| self.delivery_duration.with_labels(l),
                        &[o.caller.as_str()],
                        0,
                    ) {
                        h.observe(seconds(o.duration_ns));
                    }
                }
                ObservationKind::EventDropped => {
                    if let Some(c) = with_overflow(
                        |l| self.deliveries_dropped.with_labels(l),
                        &[o.caller.as_str()],
                        0,
                    ) {
                        c.inc();
                    }
                }
                // Errors are counted once, with their real level, by the
                // error-tracking capability (`count_error`), not here.
                ObservationKind::HttpRequest => {
                    // `detail` is "<METHOD> <status>".
                    let detail = o.detail.as_str();
                    let method = detail.split(' ').next().unwrap_or("");
                    if let Some(h) = with_overflow(
                        |l| self.http_duration.with_labels(l),
                        &[o.name.as_str(), method],
                        0,
                    ) {
                        h.observe_traced(
                            seconds(o.duration_ns),
                            o.trace_context.as_ref().into_option(),
                        );
                    }
                }
                ObservationKind::Error
                | ObservationKind::PluginState
                | ObservationKind::LogLine
                | ObservationKind::Stall => {}
                _ => {}
            }
        }
        self.observations.inc_by(batch.len() as f64);
    }

    /// Counts an error at a given level: the one place that feeds
    /// `homeconsole_errors_total` (called by error tracking for every
    /// captured or ingested event).
    pub fn count_error(&self, plugin: &str, level: &str) {
        if let Some(c) = with_overflow(|l| self.errors.with_labels(l), &[plugin, level], 0) {
            c.inc();
        }
    }

    /// Updates the plugin gauges from the host's plugin list.
    pub fn update_plugins(&self, plugins: &[PluginSummary]) {
        let mut loaded = 0.0;
        for p in plugins {
            let value = match p.state() {
                PluginState::Started => 1.0,
                PluginState::Error => -1.0,
                _ => 0.0,
            };
            if matches!(p.state(), PluginState::Started | PluginState::Loaded) {
                loaded += 1.0;
            }
            if let Some(g) =
                with_overflow(|l| self.plugin_state.with_labels(l), &[p.name.as_str()], 0)
            {
                g.set(value);
            }
        }
        self.plugins_loaded.set(loaded);
        self.sync_callback_seconds(plugins);
        self.sync_resilience(plugins);
    }

    /// Mirrors each plugin's circuit state into a gauge and the host's
    /// refusal counts (circuit, bulkhead, call depth) into a counter that
    /// never goes down (per generation, as callback time).
    pub fn sync_resilience(&self, plugins: &[PluginSummary]) {
        let mut seen = self.refused_seen.lock();
        for p in plugins {
            // No instance (failed or removed): nothing to call.
            let Some(circuit) = p.circuit.as_ref().into_option() else {
                continue;
            };
            let name = p.name.as_str();
            let state = match circuit.state {
                CircuitState::Closed => 0.0,
                CircuitState::HalfOpen => 1.0,
                CircuitState::Open => 2.0,
            };
            if let Some(g) = with_overflow(|l| self.plugin_circuit.with_labels(l), &[name], 0) {
                g.set(state);
            }
            let bulkhead = p.bulkhead.as_ref().into_option();
            for (reason, total) in [
                ("circuit_open", circuit.rejected_total),
                ("bulkhead", bulkhead.map_or(0, |b| b.rejected_total)),
                ("call_depth", bulkhead.map_or(0, |b| b.depth_rejected_total)),
            ] {
                let delta = monotonic_delta(
                    &mut seen,
                    (name.to_owned(), reason.to_owned()),
                    u64::from(p.generation),
                    total as f64,
                );
                if let Some(c) =
                    with_overflow(|l| self.calls_refused.with_labels(l), &[name, reason], 0)
                {
                    c.inc_by(delta);
                }
            }
        }
    }

    /// Mirrors the host's per-callback time (the summaries' `callbacks`)
    /// into a counter that never goes down: a new generation restarts the
    /// host's totals at 0, so its whole total is added on top. Time the old
    /// generation spent after the previous sync is not seen (the host
    /// forgets it with the instance).
    pub fn sync_callback_seconds(&self, plugins: &[PluginSummary]) {
        let mut seen = self.callback_seen.lock();
        for p in plugins {
            let name = p.name.as_str();
            for stat in p.callbacks.iter() {
                let total = stat.seconds;
                if !total.is_finite() || total < 0.0 {
                    continue;
                }
                let callback = stat.callback.as_str();
                // The map is bounded by plugin files × the host's fixed callbacks.
                let delta = monotonic_delta(
                    &mut seen,
                    (name.to_owned(), callback.to_owned()),
                    u64::from(p.generation),
                    total,
                );
                if let Some(c) = with_overflow(
                    |l| self.callback_seconds.with_labels(l),
                    &[name, callback],
                    0,
                ) {
                    c.inc_by(delta);
                }
            }
        }
    }

    /// Counts a stalled callback of `plugin`.
    pub fn count_stall(&self, plugin: &str, callback: &str) {
        if let Some(c) = with_overflow(|l| self.stalls.with_labels(l), &[plugin, callback], 0) {
            c.inc();
        }
    }

    /// Counts a service call slower than the configured threshold.
    pub fn count_slow_call(&self, service: &str) {
        if let Some(c) = with_overflow(|l| self.slow_calls.with_labels(l), &[service], 0) {
            c.inc();
        }
    }

    /// Sets a component's health gauges.
    pub fn set_health(&self, component: &str, score: f64, duration_secs: f64) {
        if let Some(g) = with_overflow(|l| self.health_status.with_labels(l), &[component], 0) {
            g.set(score);
        }
        if let Some(g) = with_overflow(|l| self.health_duration.with_labels(l), &[component], 0) {
            g.set(duration_secs);
        }
    }

    /// Mirrors the host's observer-drop counter (monotonic there).
    pub fn sync_host_drops(&self, host_dropped_total: u64) {
        let seen = self
            .host_dropped_seen
            .swap(host_dropped_total, Ordering::Relaxed);
        if host_dropped_total > seen {
            self.observations_dropped
                .inc_by((host_dropped_total - seen) as f64);
        }
    }

    fn sync_refusals(&self) {
        let mut seen = self.refusals_seen.lock();
        for (reason, count) in self.store.refusals() {
            let before = seen.insert(reason, count).unwrap_or(0);
            if let Ok(c) = self.refusals.with_labels(&[reason]) {
                // Creating the series (even at 0) keeps every reason visible.
                c.inc_by((count.saturating_sub(before)) as f64);
            }
        }
    }

    /// Drops every series labelled `plugin=<name>` (a removed plugin).
    pub fn forget_plugin(&self, name: &str) -> usize {
        self.store.remove_series_where("plugin", name)
            + self.internal.remove_series_where("plugin", name)
    }

    /// Renders the whole exposition (text format 0.0.4).
    pub fn render(&self) -> String {
        let started = Instant::now();
        let out = self.render_text();
        self.scrape_duration.set(started.elapsed().as_secs_f64());
        out
    }

    /// Renders the whole exposition as OpenMetrics 1.0, with exemplars
    /// (trace and span id) on the histogram buckets.
    pub fn render_openmetrics(&self) -> String {
        let started = Instant::now();
        let out = crate::metrics::to_openmetrics(&self.render_with(true));
        self.scrape_duration.set(started.elapsed().as_secs_f64());
        out
    }

    /// Renders the exposition without counting it as a scrape (the scrape
    /// duration gauge is left alone): used to sample the plugin's own
    /// metrics for alert evaluation.
    pub fn render_for_sampling(&self) -> String {
        self.render_text()
    }

    fn render_text(&self) -> String {
        self.render_with(false)
    }

    fn render_with(&self, exemplars: bool) -> String {
        self.sync_refusals();
        self.series.set(
            (self.internal.series_count() + self.durable.series_count() + self.store.series_count())
                as f64,
        );
        let mut out = String::with_capacity(64 * 1024);
        let encode = |store: &MetricStore, out: &mut String| {
            if exemplars {
                store.encode_with_exemplars(out);
            } else {
                store.encode(out);
            }
        };
        encode(&self.internal, &mut out);
        for (name, family) in self.replaced.lock().iter() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            out.push_str(&family.help);
            out.push_str("\n# TYPE ");
            out.push_str(name);
            out.push_str(" gauge\n");
            for line in &family.lines {
                out.push_str(line);
                out.push('\n');
            }
        }
        encode(&self.durable, &mut out);
        encode(&self.store, &mut out);
        let mut buf = Vec::new();
        if prometheus::TextEncoder::new()
            .encode(&self.process.gather(), &mut buf)
            .is_ok()
        {
            out.push_str(&String::from_utf8_lossy(&buf));
        }
        out
    }
}

/// Versions reported by `homeconsole_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// Host version.
    pub host_version: String,
    /// ABI version.
    pub abi_version: String,
    /// This plugin's version.
    pub plugin_version: String,
}

/// How much a per-generation host total grew since last seen: a new
/// generation restarts the host's total at 0, so all of it is new.
fn monotonic_delta(
    seen: &mut HashMap<(String, String), (u64, f64)>,
    key: (String, String),
    generation: u64,
    total: f64,
) -> f64 {
    match seen.get_mut(&key) {
        Some((g, before)) if *g == generation => {
            let d = (total - *before).max(0.0);
            *before = before.max(total);
            d
        }
        Some(entry) => {
            *entry = (generation, total);
            total
        }
        None => {
            seen.insert(key, (generation, total));
            total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector() -> MetricsCollector {
        let build = BuildInfo {
            host_version: "h".into(),
            abi_version: "a".into(),
            plugin_version: "p".into(),
        };
        MetricsCollector::new(100, 8, &build).unwrap()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn replaced_family_renders_varying_label_sets_sorted_and_unique() {
        let c = collector();
        let series = vec![
            (
                pairs(&[
                    ("alertstate", "firing"),
                    ("alertname", "B"),
                    ("room", "a\"b"),
                ]),
                1.0,
            ),
            (
                pairs(&[
                    ("alertname", "A"),
                    ("alertstate", "pending"),
                    ("__x", "y"),
                    ("le", "1"),
                ]),
                1.0,
            ),
            // Same series as the first once sorted: rendered once.
            (
                pairs(&[
                    ("room", "a\"b"),
                    ("alertname", "B"),
                    ("alertstate", "firing"),
                ]),
                1.0,
            ),
        ];
        let dropped = c
            .replace_gauge_family("homeconsole_alerts", "Alerts.", &series, 10)
            .unwrap();
        assert_eq!(dropped, 0);
        let text = c.render();
        let family: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("homeconsole_alerts"))
            .collect();
        assert_eq!(
            family,
            vec![
                "# HELP homeconsole_alerts Alerts.",
                "# TYPE homeconsole_alerts gauge",
                "homeconsole_alerts{alertname=\"A\",alertstate=\"pending\"} 1",
                "homeconsole_alerts{alertname=\"B\",alertstate=\"firing\",room=\"a\\\"b\"} 1",
            ]
        );
        // Replacing with nothing removes the family.
        c.replace_gauge_family("homeconsole_alerts", "Alerts.", &[], 10)
            .unwrap();
        assert!(!c.render().contains("homeconsole_alerts"));
    }

    #[test]
    fn replaced_family_is_capped_and_checked() {
        let c = collector();
        let series: Vec<(Vec<(String, String)>, f64)> = (0..5)
            .map(|i| (pairs(&[("n", &i.to_string())]), f64::from(i)))
            .collect();
        assert_eq!(c.replace_gauge_family("x_g", "h", &series, 3), Ok(2));
        assert_eq!(
            c.replace_gauge_family("bad-name", "h", &series, 3),
            Err(ReplaceError::InvalidName("bad-name".into()))
        );
        assert_eq!(
            c.replace_gauge_family("job:x_g", "h", &series, 3),
            Err(ReplaceError::InvalidName("job:x_g".into()))
        );
        assert_eq!(
            c.replace_gauge_family(names::PLUGINS_LOADED, "h", &series, 3),
            Err(ReplaceError::Taken(names::PLUGINS_LOADED.into()))
        );
        // The sampling render does not count as a scrape.
        let before = c.render();
        let _ = c.render_for_sampling();
        assert!(before.contains("x_g{n=\"2\"} 2"));
    }

    #[test]
    fn circuit_state_and_refusals_mirror_the_plugin_list() {
        let c = collector();
        let list = |generation: u64, state: &str, open: u64, full: u64, deep: u64| {
            serde_json::json!([{"name": "p", "state": "started", "generation": generation,
                "circuit": {"state": state, "rejected_total": open},
                "bulkhead": {"rejected_total": full, "depth_rejected_total": deep}},
                {"name": "gone", "state": "error", "circuit": null}])
        };
        c.update_plugins(&crate::summaries(&list(1, "open", 3, 2, 1)));
        c.update_plugins(&crate::summaries(&list(1, "half_open", 5, 2, 1)));
        let text = c.render();
        assert!(
            text.contains("homeconsole_plugin_circuit_state{plugin_name=\"p\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("homeconsole_plugin_circuit_state{plugin_name=\"gone\"}"),
            "{text}"
        );
        assert!(
            text.contains(
                "homeconsole_plugin_calls_refused_total{plugin=\"p\",reason=\"circuit_open\"} 5"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "homeconsole_plugin_calls_refused_total{plugin=\"p\",reason=\"bulkhead\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "homeconsole_plugin_calls_refused_total{plugin=\"p\",reason=\"call_depth\"} 1"
            ),
            "{text}"
        );
        // A new generation restarts the host's counts: they add on top.
        c.update_plugins(&crate::summaries(&list(2, "closed", 1, 0, 0)));
        let text = c.render();
        assert!(
            text.contains("homeconsole_plugin_circuit_state{plugin_name=\"p\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "homeconsole_plugin_calls_refused_total{plugin=\"p\",reason=\"circuit_open\"} 6"
            ),
            "{text}"
        );
    }
}
