//! In-memory store of recent traces, browsable through the monitoring API.
//!
//! This is the zero-setup half of tracing: the last traces stay in process memory, grouped by
//! trace id, so a user can list them and open one as a span tree without running a collector.
//! Memory is bounded by a number of traces AND a total of (approximate) bytes; the oldest
//! trace (by arrival) is dropped first and every drop is counted. `add` is on the hot path
//! (called for every service call), so it does O(1) work under one short lock and frees
//! evicted traces after releasing it.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde::Serialize;

use super::context::to_hex;
use super::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};

/// Bounds of a [`TraceStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Most traces kept.
    pub max_traces: usize,
    /// Most bytes (sum of [`SpanRecord::approx_size`]) kept.
    pub max_bytes: usize,
    /// Most spans kept per trace; later spans of a full trace are refused and counted.
    pub max_spans_per_trace: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_traces: 1_000,
            max_bytes: 16 * 1024 * 1024,
            max_spans_per_trace: 1_000,
        }
    }
}

/// Counters and sizes of a [`TraceStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StoreStats {
    /// Traces held now.
    pub traces: usize,
    /// Spans held now.
    pub spans: usize,
    /// Bytes held now.
    pub bytes: usize,
    /// Traces evicted to stay within the bounds, since creation.
    pub traces_dropped: u64,
    /// Spans that went with evicted traces.
    pub spans_dropped: u64,
    /// Spans refused: their trace was at the per-trace cap, or the span alone exceeded
    /// `max_bytes`.
    pub spans_rejected: u64,
}

/// Keep traces with or without an error span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// No span has an error status.
    Ok,
    /// At least one span has an error status.
    Error,
}

/// Criteria for [`TraceStore::list`]; every `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// Some span has this `service_name`.
    pub service: Option<String>,
    /// Some span belongs to this plugin.
    pub plugin: Option<String>,
    /// Error / no error.
    pub status: Option<StatusFilter>,
    /// Trace duration (first start to last end) at least this many nanoseconds.
    pub min_duration_ns: Option<u64>,
    /// Return at most this many summaries.
    pub limit: Option<usize>,
}

/// One line of a trace listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceSummary {
    /// Trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// Name of the root span; when the root is not (yet) in the store, of the earliest span.
    pub root_name: String,
    /// Whether the root span (one without a parent) is in the store.
    pub has_root: bool,
    /// Earliest span start, Unix ns.
    pub start_unix_ns: u64,
    /// Earliest start to latest end, ns.
    pub duration_ns: u64,
    /// Spans held for the trace.
    pub span_count: usize,
    /// Whether any span has an error status.
    pub error: bool,
    /// Plugins that own spans of the trace, sorted.
    pub plugins: Vec<String>,
}

/// A trace as a tree of spans.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceTree {
    /// Trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// Earliest span start, Unix ns.
    pub start_unix_ns: u64,
    /// Earliest start to latest end, ns.
    pub duration_ns: u64,
    /// Spans in the tree.
    pub span_count: usize,
    /// Top-level spans: the root(s) and orphans, by start time.
    pub roots: Vec<SpanNode>,
}

/// One span in a [`TraceTree`], with its children nested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanNode {
    /// Span id, 16 lowercase hex digits.
    pub span_id: String,
    /// Parent span id as recorded, if any.
    pub parent_span_id: Option<String>,
    /// Operation name.
    pub name: String,
    /// Span kind.
    #[serde(serialize_with = "super::span::serialize_kind")]
    pub kind: SpanKind,
    /// Owning plugin.
    pub plugin: String,
    /// Service called, if any.
    pub service_name: Option<String>,
    /// Final status.
    pub status: SpanStatus,
    /// Attributes (serialized as a JSON object).
    #[serde(serialize_with = "attrs_as_map")]
    pub attributes: Vec<(String, AttrValue)>,
    /// Start, Unix ns.
    pub start_unix_ns: u64,
    /// End, Unix ns.
    pub end_unix_ns: u64,
    /// Start relative to the trace start, ns.
    pub offset_ns: u64,
    /// Span duration, ns.
    pub duration_ns: u64,
    /// Closed by the sweeper instead of by its owner.
    pub timed_out: bool,
    /// The span names a parent that is not in the store (or its parent chain loops); it is
    /// shown at the top level.
    pub orphan: bool,
    /// Child spans by start time.
    pub children: Vec<SpanNode>,
}

fn attrs_as_map<S: serde::Serializer>(
    attrs: &[(String, AttrValue)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(attrs.iter().map(|(k, v)| (k, v)))
}

struct TraceEntry {
    spans: Vec<SpanRecord>,
    bytes: usize,
    start: u64,
    end: u64,
    error: bool,
    /// Index of the earliest span without a parent.
    root: Option<usize>,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    traces: HashMap<[u8; 16], TraceEntry>,
    /// Trace ids in arrival order of their first span; the front is evicted first.
    order: VecDeque<[u8; 16]>,
    bytes: usize,
    spans: usize,
    seq: u64,
    traces_dropped: u64,
    spans_dropped: u64,
    spans_rejected: u64,
}

/// Thread-safe store of recent traces. See the module docs.
pub struct TraceStore {
    config: StoreConfig,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for TraceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceStore")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for TraceStore {
    fn default() -> Self {
        Self::new(StoreConfig::default())
    }
}

impl TraceStore {
    /// An empty store with the given bounds (zero bounds are raised to 1).
    pub fn new(config: StoreConfig) -> Self {
        let config = StoreConfig {
            max_traces: config.max_traces.max(1),
            max_bytes: config.max_bytes.max(1),
            max_spans_per_trace: config.max_spans_per_trace.max(1),
        };
        Self {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Adds a finished span; returns whether it was kept. Evicts the oldest traces until the
    /// store is within its bounds again (which may include the span's own trace, when it is
    /// the oldest).
    pub fn add(&self, span: SpanRecord) -> bool {
        let size = span.approx_size();
        let mut evicted: Vec<TraceEntry> = Vec::new();
        let kept = {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            if size > self.config.max_bytes {
                inner.spans_rejected += 1;
                false
            } else {
                let seq = inner.seq;
                let entry = match inner.traces.entry(span.trace_id) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        inner.seq += 1;
                        inner.order.push_back(span.trace_id);
                        v.insert(TraceEntry {
                            spans: Vec::new(),
                            bytes: 0,
                            start: span.start_unix_ns,
                            end: span.end_unix_ns,
                            error: false,
                            root: None,
                            seq,
                        })
                    }
                };
                if entry.spans.len() >= self.config.max_spans_per_trace {
                    inner.spans_rejected += 1;
                    false
                } else {
                    entry.start = entry.start.min(span.start_unix_ns);
                    entry.end = entry.end.max(span.end_unix_ns);
                    entry.error |= span.status.is_error();
                    if span.parent_span_id.is_none()
                        && entry
                            .root
                            .is_none_or(|r| entry.spans[r].start_unix_ns > span.start_unix_ns)
                    {
                        entry.root = Some(entry.spans.len());
                    }
                    entry.bytes += size;
                    entry.spans.push(span);
                    inner.bytes += size;
                    inner.spans += 1;
                    while inner.traces.len() > self.config.max_traces
                        || inner.bytes > self.config.max_bytes
                    {
                        let Some(oldest) = inner.order.pop_front() else {
                            break;
                        };
                        if let Some(gone) = inner.traces.remove(&oldest) {
                            inner.bytes -= gone.bytes;
                            inner.spans -= gone.spans.len();
                            inner.traces_dropped += 1;
                            inner.spans_dropped += gone.spans.len() as u64;
                            evicted.push(gone);
                        }
                    }
                    true
                }
            }
        };
        drop(evicted); // freed outside the lock
        kept
    }

    /// Counters and sizes.
    pub fn stats(&self) -> StoreStats {
        let inner = self.inner.lock();
        StoreStats {
            traces: inner.traces.len(),
            spans: inner.spans,
            bytes: inner.bytes,
            traces_dropped: inner.traces_dropped,
            spans_dropped: inner.spans_dropped,
            spans_rejected: inner.spans_rejected,
        }
    }

    /// Number of traces held.
    pub fn len(&self) -> usize {
        self.inner.lock().traces.len()
    }

    /// Whether no trace is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every trace (counters are kept).
    pub fn clear(&self) {
        let old = {
            let mut inner = self.inner.lock();
            inner.order.clear();
            inner.bytes = 0;
            inner.spans = 0;
            std::mem::take(&mut inner.traces)
        };
        drop(old);
    }

    /// Summaries of the traces matching `filter`, newest (latest start) first.
    pub fn list(&self, filter: &TraceFilter) -> Vec<TraceSummary> {
        let inner = self.inner.lock();
        let mut hits: Vec<(&[u8; 16], &TraceEntry)> = inner
            .traces
            .iter()
            .filter(|(_, e)| matches(e, filter))
            .collect();
        hits.sort_unstable_by_key(|(_, e)| std::cmp::Reverse((e.start, e.seq)));
        hits.truncate(filter.limit.unwrap_or(usize::MAX));
        hits.into_iter().map(|(id, e)| summarize(id, e)).collect()
    }

    /// Copies of the spans held for a trace, in arrival order.
    pub fn spans(&self, trace_id: &[u8; 16]) -> Option<Vec<SpanRecord>> {
        self.inner
            .lock()
            .traces
            .get(trace_id)
            .map(|e| e.spans.clone())
    }

    /// The trace as a span tree, or `None` when it is not held. The spans are copied under
    /// the lock and the tree is built after releasing it.
    pub fn get(&self, trace_id: &[u8; 16]) -> Option<TraceTree> {
        let spans = self.spans(trace_id)?;
        Some(build_tree(trace_id, spans))
    }
}

fn matches(e: &TraceEntry, f: &TraceFilter) -> bool {
    if let Some(status) = f.status {
        if (status == StatusFilter::Error) != e.error {
            return false;
        }
    }
    if let Some(min) = f.min_duration_ns {
        if e.end.saturating_sub(e.start) < min {
            return false;
        }
    }
    if let Some(plugin) = &f.plugin {
        if !e.spans.iter().any(|s| *s.plugin == **plugin) {
            return false;
        }
    }
    if let Some(service) = &f.service {
        if !e
            .spans
            .iter()
            .any(|s| s.service_name.as_ref() == Some(service))
        {
            return false;
        }
    }
    true
}

fn summarize(id: &[u8; 16], e: &TraceEntry) -> TraceSummary {
    let root = e
        .root
        .and_then(|r| e.spans.get(r))
        .or_else(|| e.spans.iter().min_by_key(|s| s.start_unix_ns));
    let mut plugins: Vec<String> = Vec::new();
    for s in &e.spans {
        if !plugins.iter().any(|p| **p == *s.plugin) {
            plugins.push(s.plugin.to_string());
        }
    }
    plugins.sort();
    TraceSummary {
        trace_id: to_hex(id),
        root_name: root.map(|s| s.name.to_string()).unwrap_or_default(),
        has_root: e.root.is_some(),
        start_unix_ns: e.start,
        duration_ns: e.end.saturating_sub(e.start),
        span_count: e.spans.len(),
        error: e.error,
        plugins,
    }
}

/// Builds the nested tree without recursion (a hostile trace could be a 1000-deep chain):
/// parents are resolved by span id, spans whose parent is missing become top-level orphans,
/// and parent loops are cut at their earliest span, which becomes a top-level orphan too.
fn build_tree(trace_id: &[u8; 16], spans: Vec<SpanRecord>) -> TraceTree {
    let n = spans.len();
    let start = spans.iter().map(|s| s.start_unix_ns).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_ns).max().unwrap_or(0);

    let mut index: HashMap<[u8; 8], usize> = HashMap::with_capacity(n);
    for (i, s) in spans.iter().enumerate() {
        index.entry(s.span_id).or_insert(i);
    }
    let mut parent: Vec<Option<usize>> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parent_span_id
                .and_then(|p| index.get(&p).copied())
                .filter(|&p| p != i)
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut tops: Vec<usize> = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => children[*p].push(i),
            None => tops.push(i),
        }
    }
    let by_start =
        |a: &usize, b: &usize| (spans[*a].start_unix_ns, *a).cmp(&(spans[*b].start_unix_ns, *b));
    for c in &mut children {
        c.sort_by(by_start);
    }

    // Pre-order walk from the tops; whatever stays unvisited lies on a parent loop.
    let mut visited = vec![false; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut walk = |from: usize, visited: &mut Vec<bool>, children: &Vec<Vec<usize>>| {
        let mut stack = vec![from];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut visited[i], true) {
                continue;
            }
            order.push(i);
            stack.extend(children[i].iter().rev());
        }
    };
    for &t in &tops {
        walk(t, &mut visited, &children);
    }
    while let Some(cut) = (0..n).filter(|&i| !visited[i]).min_by(by_start) {
        if let Some(p) = parent[cut].take() {
            children[p].retain(|&c| c != cut);
        }
        tops.push(cut);
        walk(cut, &mut visited, &children);
    }
    tops.sort_by(by_start);

    // Build nodes children-first (reverse pre-order).
    let mut records: Vec<Option<SpanRecord>> = spans.into_iter().map(Some).collect();
    let mut nodes: Vec<Option<SpanNode>> = (0..n).map(|_| None).collect();
    for &i in order.iter().rev() {
        let Some(s) = records[i].take() else { continue };
        let kids: Vec<SpanNode> = children[i]
            .iter()
            .filter_map(|&c| nodes[c].take())
            .collect();
        nodes[i] = Some(SpanNode {
            span_id: to_hex(&s.span_id),
            parent_span_id: s.parent_span_id.map(|p| to_hex(&p)),
            orphan: parent[i].is_none() && s.parent_span_id.is_some(),
            offset_ns: s.start_unix_ns.saturating_sub(start),
            duration_ns: s.duration_ns(),
            name: s.name.to_string(),
            kind: s.kind,
            plugin: s.plugin.to_string(),
            service_name: s.service_name,
            status: s.status,
            attributes: s
                .attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            start_unix_ns: s.start_unix_ns,
            end_unix_ns: s.end_unix_ns,
            timed_out: s.timed_out,
            children: kids,
        });
    }
    let roots: Vec<SpanNode> = tops.iter().filter_map(|&t| nodes[t].take()).collect();
    TraceTree {
        trace_id: to_hex(trace_id),
        start_unix_ns: start,
        duration_ns: end.saturating_sub(start),
        span_count: n,
        roots,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u8) -> [u8; 16] {
        [n; 16]
    }

    fn sid(n: u8) -> [u8; 8] {
        [n; 8]
    }

    fn span(t: u8, s: u8, parent: Option<u8>, start: u64, end: u64) -> SpanRecord {
        let mut r = SpanRecord::new(
            tid(t),
            sid(s),
            parent.map(sid),
            format!("op{s}"),
            start,
            end,
        );
        r.plugin = format!("plugin{}", s % 2).into();
        r
    }

    #[test]
    fn count_bound_drops_oldest_traces_exactly() {
        let store = TraceStore::new(StoreConfig {
            max_traces: 3,
            max_bytes: usize::MAX,
            max_spans_per_trace: 100,
        });
        for t in 1..=5u8 {
            assert!(store.add(span(t, 1, None, t as u64, t as u64 + 1)));
            assert!(store.add(span(t, 2, Some(1), t as u64, t as u64 + 1)));
        }
        let st = store.stats();
        assert_eq!(st.traces, 3);
        assert_eq!(st.spans, 6);
        assert_eq!(st.traces_dropped, 2);
        assert_eq!(st.spans_dropped, 4);
        assert!(store.get(&tid(1)).is_none());
        assert!(store.get(&tid(2)).is_none());
        assert!(store.get(&tid(3)).is_some());
        // A late span of a kept trace does not change arrival order: trace 3 still goes next.
        store.add(span(3, 3, Some(1), 3, 4));
        store.add(span(6, 1, None, 6, 7));
        assert!(store.get(&tid(3)).is_none());
        assert_eq!(store.stats().traces_dropped, 3);
        assert_eq!(store.stats().spans_dropped, 7);
    }

    #[test]
    fn byte_bound_drops_oldest_traces_exactly() {
        let one = span(1, 1, None, 0, 1).approx_size();
        // Room for exactly 4 spans of this size.
        let store = TraceStore::new(StoreConfig {
            max_traces: 100,
            max_bytes: 4 * one,
            max_spans_per_trace: 100,
        });
        for t in 1..=4u8 {
            store.add(span(t, 1, None, 0, 1));
        }
        assert_eq!(store.stats().bytes, 4 * one);
        assert_eq!(store.stats().traces_dropped, 0);
        store.add(span(5, 1, None, 0, 1));
        let st = store.stats();
        assert_eq!(
            (st.traces, st.bytes, st.traces_dropped, st.spans_dropped),
            (4, 4 * one, 1, 1)
        );
        // A trace of two spans is evicted whole.
        store.add(span(2, 2, Some(1), 0, 1)); // trace 2 now two spans, 5 spans total
        let st = store.stats();
        assert_eq!(
            (st.traces, st.spans, st.traces_dropped, st.spans_dropped),
            (3, 3, 2, 3)
        );
        assert!(
            store.get(&tid(2)).is_none(),
            "trace 2 was the oldest, evicted with its new span"
        );
        // A span larger than the whole budget is refused, not stored.
        let mut huge = span(9, 1, None, 0, 1);
        huge.name = "x".repeat(4 * one).into();
        assert!(!store.add(huge));
        assert_eq!(store.stats().spans_rejected, 1);
        assert_eq!(store.stats().traces, 3);
    }

    #[test]
    fn per_trace_span_cap_is_counted() {
        let store = TraceStore::new(StoreConfig {
            max_traces: 10,
            max_bytes: usize::MAX,
            max_spans_per_trace: 2,
        });
        assert!(store.add(span(1, 1, None, 0, 1)));
        assert!(store.add(span(1, 2, Some(1), 0, 1)));
        assert!(!store.add(span(1, 3, Some(1), 0, 1)));
        let st = store.stats();
        assert_eq!((st.spans, st.spans_rejected), (2, 1));
    }

    #[test]
    fn tree_nests_children_with_offsets_and_marks_orphans() {
        let store = TraceStore::default();
        // Arrival order deliberately scrambled: children before parents.
        store.add(span(1, 4, Some(2), 130, 140)); // grandchild
        store.add(span(1, 3, Some(1), 150, 190)); // second child
        store.add(span(1, 2, Some(1), 110, 145)); // first child
        store.add(span(1, 1, None, 100, 200)); // root
        store.add(span(1, 9, Some(77), 160, 170)); // orphan: parent 77 not in store
        let tree = store.get(&tid(1)).unwrap();
        assert_eq!(tree.span_count, 5);
        assert_eq!(tree.start_unix_ns, 100);
        assert_eq!(tree.duration_ns, 100);
        assert_eq!(tree.roots.len(), 2);
        let root = &tree.roots[0];
        assert_eq!(root.name, "op1");
        assert!(!root.orphan);
        assert_eq!(root.offset_ns, 0);
        assert_eq!(root.duration_ns, 100);
        let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["op2", "op3"]);
        assert_eq!(root.children[0].offset_ns, 10);
        assert_eq!(root.children[0].children[0].name, "op4");
        assert_eq!(root.children[0].children[0].offset_ns, 30);
        assert_eq!(
            root.children[0].children[0].parent_span_id.as_deref(),
            Some("0202020202020202")
        );
        let orphan = &tree.roots[1];
        assert_eq!(orphan.name, "op9");
        assert!(orphan.orphan);
        assert_eq!(orphan.offset_ns, 60);
    }

    #[test]
    fn tree_survives_loops_self_parents_and_deep_chains() {
        let store = TraceStore::new(StoreConfig {
            max_spans_per_trace: 5000,
            ..StoreConfig::default()
        });
        store.add(span(1, 1, Some(2), 10, 20));
        store.add(span(1, 2, Some(1), 5, 20));
        store.add(span(1, 3, Some(3), 7, 8));
        let tree = store.get(&tid(1)).unwrap();
        assert_eq!(tree.span_count, 3);
        // Loop 1<->2 is cut at its earliest span (2); the self-parented span is an orphan.
        let top: Vec<(&str, bool)> = tree
            .roots
            .iter()
            .map(|r| (r.name.as_str(), r.orphan))
            .collect();
        assert_eq!(top, [("op2", true), ("op3", true)]);
        assert_eq!(tree.roots[0].children[0].name, "op1");

        // A 3000-deep chain builds and drops without recursion trouble in the builder.
        let mut prev = None;
        for i in 0..3000u64 {
            let mut s = SpanRecord::new(tid(2), (i + 1).to_be_bytes(), prev, "c", i, 10_000);
            s.plugin = "p".into();
            prev = Some(s.span_id);
            store.add(s);
        }
        let tree = store.get(&tid(2)).unwrap();
        let mut depth = 0;
        let mut node = &tree.roots[0];
        while let Some(c) = node.children.first() {
            node = c;
            depth += 1;
        }
        assert_eq!(depth, 2999);
    }

    #[test]
    fn list_filters_and_orders_newest_first() {
        let store = TraceStore::default();
        // Trace 1: ok, 100 ns, plugin0/plugin1, service "lights".
        let mut a = span(1, 1, None, 1000, 1100);
        a.service_name = Some("lights".into());
        store.add(a);
        store.add(span(1, 2, Some(1), 1010, 1050));
        // Trace 2: error, 10 ns, plugin1 only.
        let mut b = span(2, 1, None, 3000, 3010);
        b.status = SpanStatus::error("nope");
        b.plugin = "plugin1".into();
        store.add(b);
        // Trace 3: no root yet, 500 ns.
        store.add(span(3, 4, Some(9), 2000, 2500));

        let all = store.list(&TraceFilter::default());
        let ids: Vec<&str> = all.iter().map(|s| &s.trace_id[..2]).collect();
        assert_eq!(ids, ["02", "03", "01"]);
        let t1 = &all[2];
        assert_eq!(t1.root_name, "op1");
        assert!(t1.has_root);
        assert_eq!(
            (t1.start_unix_ns, t1.duration_ns, t1.span_count),
            (1000, 100, 2)
        );
        assert_eq!(t1.plugins, ["plugin0", "plugin1"]);
        assert!(!all[1].has_root);
        assert_eq!(all[1].root_name, "op4");

        let q = |f: TraceFilter| -> Vec<String> {
            store
                .list(&f)
                .into_iter()
                .map(|s| s.trace_id[..2].to_string())
                .collect()
        };
        assert_eq!(
            q(TraceFilter {
                status: Some(StatusFilter::Error),
                ..Default::default()
            }),
            ["02"]
        );
        assert_eq!(
            q(TraceFilter {
                status: Some(StatusFilter::Ok),
                ..Default::default()
            }),
            ["03", "01"]
        );
        assert_eq!(
            q(TraceFilter {
                service: Some("lights".into()),
                ..Default::default()
            }),
            ["01"]
        );
        assert_eq!(
            q(TraceFilter {
                plugin: Some("plugin0".into()),
                ..Default::default()
            }),
            ["03", "01"]
        );
        assert_eq!(
            q(TraceFilter {
                min_duration_ns: Some(100),
                ..Default::default()
            }),
            ["03", "01"]
        );
        assert_eq!(
            q(TraceFilter {
                limit: Some(1),
                ..Default::default()
            }),
            ["02"]
        );
    }

    #[test]
    fn concurrent_adds_are_all_accounted_for() {
        let store = std::sync::Arc::new(TraceStore::new(StoreConfig {
            max_traces: 50,
            max_bytes: usize::MAX,
            max_spans_per_trace: 1000,
        }));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        let mut s = span(0, 1, None, 0, 1);
                        s.trace_id[0] = t;
                        s.trace_id[1..5].copy_from_slice(&(i / 10).to_be_bytes());
                        s.span_id[..4].copy_from_slice(&i.to_be_bytes());
                        store.add(s);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = store.stats();
        assert_eq!(st.traces, 50);
        assert_eq!(st.spans as u64 + st.spans_dropped, 4000);
        // A trace can be evicted while its thread still adds to it and then comes back, so
        // the trace count is a lower bound; spans are accounted exactly.
        assert!(st.traces_dropped >= 400 - 50);
    }

    #[test]
    fn tree_serializes_to_json() {
        let store = TraceStore::default();
        let mut s = span(1, 1, None, 0, 5);
        s.attributes.push(("k".into(), AttrValue::I64(3)));
        s.status = SpanStatus::error("bad");
        store.add(s);
        let json = serde_json::to_value(store.get(&tid(1)).unwrap()).unwrap();
        assert_eq!(json["roots"][0]["attributes"]["k"], 3);
        assert_eq!(json["roots"][0]["status"]["code"], "error");
        assert_eq!(json["roots"][0]["status"]["message"], "bad");
        assert_eq!(json["roots"][0]["kind"], "internal");
    }
}
