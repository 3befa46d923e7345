//! Manual spans opened and closed by plugins through `monitoring.start_span` /
//! `monitoring.end_span`.
//!
//! Unlike host-reported operations, a manual span is open for a while and its owner may never
//! end it (a bug, a crash, a plugin reload). So open spans live in a bounded registry, a
//! sweeper closes the ones open longer than a timeout as errors flagged `timed_out`, and every
//! finished span goes to a [`SpanSink`] (the store, the exporter, or both). A span whose trace
//! is not sampled (flags `00`, inherited from its parent or decided for a new root) is tracked
//! like any other, so its owner can end it and propagate its context, but it is not recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::context::{
    new_span_id, new_trace_id, parse_span_id, to_hex, Sampler, TraceContext, TraceContextError,
    FLAG_SAMPLED,
};
use super::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};
use super::SpanSink;
use crate::time::now_ns as unix_now_ns;

/// How many recently ended span ids are remembered to tell "already ended" from "unknown".
const RECENT_ENDED: usize = 1024;

/// Settings of [`ManualSpans`].
#[derive(Debug, Clone, PartialEq)]
pub struct ManualConfig {
    /// Spans open longer than this are closed by [`ManualSpans::close_expired`].
    pub timeout: Duration,
    /// Most spans open at once; `start` beyond it fails.
    pub max_open: usize,
    /// Most attributes kept per span (start and end together); extra ones are ignored.
    pub max_attributes: usize,
    /// Decides the sampled flag of new root spans (propagated via [`ManualSpans::traceparent`]).
    pub sampler: Sampler,
}

impl Default for ManualConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            max_open: 10_000,
            max_attributes: 128,
            sampler: Sampler::always_on(),
        }
    }
}

/// Why a manual-span call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualSpanError {
    /// The registry is full.
    #[error("too many open spans (limit {limit}); end spans before starting new ones")]
    TooManyOpen {
        /// The configured `max_open`.
        limit: usize,
    },
    /// The parent is neither a valid traceparent nor a 16-hex-digit span id.
    #[error("invalid parent {parent:?}: expected a W3C traceparent or a 16-hex-digit span id ({reason})")]
    InvalidParent {
        /// The parent as given (truncated).
        parent: String,
        /// What was wrong with it.
        reason: TraceContextError,
    },
    /// The parent is a span id that is not an open manual span.
    #[error("parent span {0} is not an open span; pass its traceparent instead")]
    UnknownParent(String),
    /// The span id is not 16 lowercase hex digits.
    #[error("invalid span id {id:?}: {reason}")]
    InvalidSpanId {
        /// The id as given (truncated).
        id: String,
        /// What was wrong with it.
        reason: TraceContextError,
    },
    /// No span with this id was ever started here (or it ended too long ago to remember).
    #[error("unknown span id {0}")]
    UnknownSpan(String),
    /// The span was already ended.
    #[error("span {0} was already ended")]
    AlreadyEnded(String),
    /// The span was closed by the sweeper before its owner ended it.
    #[error("span {span_id} was already closed after not being ended within {timeout}")]
    TimedOut {
        /// The span id.
        span_id: String,
        /// The configured timeout, human readable.
        timeout: String,
    },
}

/// Counters of [`ManualSpans`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ManualStats {
    /// Spans open now.
    pub open: usize,
    /// Spans started.
    pub started: u64,
    /// Spans ended by their owner.
    pub ended: u64,
    /// Spans closed by the sweeper.
    pub timed_out: u64,
    /// `start` calls refused because the registry was full.
    pub refused: u64,
}

struct OpenSpan {
    trace_id: [u8; 16],
    parent: Option<[u8; 8]>,
    flags: u8,
    name: String,
    start_unix_ns: u64,
    attributes: Vec<(String, AttrValue)>,
    plugin: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    ByOwner,
    TimedOut,
}

#[derive(Default)]
struct Inner {
    open: HashMap<[u8; 8], OpenSpan>,
    recent: VecDeque<([u8; 8], Ended)>,
}

/// Registry of open manual spans. See the module docs.
pub struct ManualSpans {
    config: ManualConfig,
    sink: Arc<dyn SpanSink>,
    inner: Mutex<Inner>,
    started: AtomicU64,
    ended: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for ManualSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualSpans")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ManualSpans {
    /// A registry handing finished spans to `sink`.
    pub fn new(config: ManualConfig, sink: Arc<dyn SpanSink>) -> Self {
        Self {
            config,
            sink,
            inner: Mutex::new(Inner::default()),
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ManualConfig {
        &self.config
    }

    /// Opens a span now; see [`ManualSpans::start_at`].
    pub fn start(
        &self,
        operation: &str,
        attributes: Vec<(String, AttrValue)>,
        parent: Option<&str>,
        plugin: &str,
    ) -> Result<String, ManualSpanError> {
        self.start_at(operation, attributes, parent, plugin, unix_now_ns())
    }

    /// Opens a span starting at `now_unix_ns` and returns its span id (16 hex digits).
    ///
    /// `parent` is either a W3C `traceparent` (the span joins that trace as its child) or the
    /// span id of a manual span that is still open; `None` (or a blank string) starts a new
    /// trace.
    pub fn start_at(
        &self,
        operation: &str,
        mut attributes: Vec<(String, AttrValue)>,
        parent: Option<&str>,
        plugin: &str,
        now_unix_ns: u64,
    ) -> Result<String, ManualSpanError> {
        let parent = parent.map(str::trim).filter(|p| !p.is_empty());
        let invalid = |p: &str, reason| ManualSpanError::InvalidParent {
            parent: clip(p),
            reason,
        };
        let (remote, local_parent) = match parent {
            None => (None, None),
            Some(p) if p.len() > 16 => (
                Some(TraceContext::parse(p).map_err(|r| invalid(p, r))?),
                None,
            ),
            Some(p) => (None, Some(parse_span_id(p).map_err(|r| invalid(p, r))?)),
        };
        attributes.truncate(self.config.max_attributes);
        let span_id = {
            let mut inner = self.inner.lock();
            if inner.open.len() >= self.config.max_open {
                drop(inner);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(ManualSpanError::TooManyOpen {
                    limit: self.config.max_open,
                });
            }
            let (trace_id, parent_id, flags) = match (remote, local_parent) {
                (Some(tc), _) => (tc.trace_id, Some(tc.span_id), tc.flags),
                (None, Some(pid)) => match inner.open.get(&pid) {
                    Some(p) => (p.trace_id, Some(pid), p.flags),
                    None => return Err(ManualSpanError::UnknownParent(to_hex(&pid))),
                },
                (None, None) => {
                    let t = new_trace_id();
                    let sampled = self.config.sampler.should_sample(&t, None);
                    (t, None, if sampled { FLAG_SAMPLED } else { 0 })
                }
            };
            let mut span_id = new_span_id();
            while inner.open.contains_key(&span_id) {
                span_id = new_span_id();
            }
            inner.open.insert(
                span_id,
                OpenSpan {
                    trace_id,
                    parent: parent_id,
                    flags,
                    name: operation.to_string(),
                    start_unix_ns: now_unix_ns,
                    attributes,
                    plugin: plugin.to_string(),
                },
            );
            span_id
        };
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(to_hex(&span_id))
    }

    /// The `traceparent` to propagate for an open span (so calls it makes join its trace).
    pub fn traceparent(&self, span_id: &str) -> Result<String, ManualSpanError> {
        let id = self.parse_id(span_id)?;
        let inner = self.inner.lock();
        match inner.open.get(&id) {
            Some(s) => Ok(TraceContext {
                trace_id: s.trace_id,
                span_id: id,
                flags: s.flags,
            }
            .to_header()),
            None => Err(self.not_open(&inner, id)),
        }
    }

    /// Ends an open span now; see [`ManualSpans::end_at`].
    pub fn end(
        &self,
        span_id: &str,
        status: SpanStatus,
        attributes: Vec<(String, AttrValue)>,
    ) -> Result<(), ManualSpanError> {
        self.end_at(span_id, status, attributes, unix_now_ns())
    }

    /// Ends an open span at `now_unix_ns` with `status`, adding `attributes` (a key given
    /// again replaces the value given at start), and hands it to the sink.
    pub fn end_at(
        &self,
        span_id: &str,
        status: SpanStatus,
        attributes: Vec<(String, AttrValue)>,
        now_unix_ns: u64,
    ) -> Result<(), ManualSpanError> {
        let id = self.parse_id(span_id)?;
        let open = {
            let mut inner = self.inner.lock();
            match inner.open.remove(&id) {
                Some(open) => {
                    remember(&mut inner.recent, id, Ended::ByOwner);
                    open
                }
                None => return Err(self.not_open(&inner, id)),
            }
        };
        let sampled = open.flags & FLAG_SAMPLED != 0;
        let mut record = finish(id, open, now_unix_ns, status);
        for (k, v) in attributes {
            if let Some(slot) = record.attributes.iter_mut().find(|(key, _)| **key == *k) {
                slot.1 = v;
            } else if record.attributes.len() < self.config.max_attributes {
                record.attributes.push((k.into(), v));
            }
        }
        self.ended.fetch_add(1, Ordering::Relaxed);
        // Unsampled spans are tracked (so their owner can end them) but not recorded.
        if sampled {
            self.sink.submit(record);
        }
        Ok(())
    }

    /// Closes every span open longer than the timeout at `now_unix_ns`: it ends at `now`
    /// with an error status "span not ended within …", `timed_out = true`, and goes to the
    /// sink. Returns how many were closed.
    pub fn close_expired(&self, now_unix_ns: u64) -> usize {
        let timeout_ns = u64::try_from(self.config.timeout.as_nanos()).unwrap_or(u64::MAX);
        let expired: Vec<([u8; 8], OpenSpan)> = {
            let mut inner = self.inner.lock();
            let ids: Vec<[u8; 8]> = inner
                .open
                .iter()
                .filter(|(_, s)| now_unix_ns.saturating_sub(s.start_unix_ns) >= timeout_ns)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| {
                    let s = inner.open.remove(&id)?;
                    remember(&mut inner.recent, id, Ended::TimedOut);
                    Some((id, s))
                })
                .collect()
        };
        let n = expired.len();
        let message = format!("span not ended within {}", human(self.config.timeout));
        for (id, open) in expired {
            let sampled = open.flags & FLAG_SAMPLED != 0;
            let mut record = finish(id, open, now_unix_ns, SpanStatus::error(message.clone()));
            record.timed_out = true;
            if sampled {
                self.sink.submit(record);
            }
        }
        self.timed_out.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Counters.
    pub fn stats(&self) -> ManualStats {
        ManualStats {
            open: self.inner.lock().open.len(),
            started: self.started.load(Ordering::Relaxed),
            ended: self.ended.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    fn parse_id(&self, span_id: &str) -> Result<[u8; 8], ManualSpanError> {
        parse_span_id(span_id).map_err(|reason| ManualSpanError::InvalidSpanId {
            id: clip(span_id),
            reason,
        })
    }

    fn not_open(&self, inner: &Inner, id: [u8; 8]) -> ManualSpanError {
        match inner.recent.iter().rev().find(|(r, _)| *r == id) {
            Some((_, Ended::ByOwner)) => ManualSpanError::AlreadyEnded(to_hex(&id)),
            Some((_, Ended::TimedOut)) => ManualSpanError::TimedOut {
                span_id: to_hex(&id),
                timeout: human(self.config.timeout),
            },
            None => ManualSpanError::UnknownSpan(to_hex(&id)),
        }
    }
}

fn remember(recent: &mut VecDeque<([u8; 8], Ended)>, id: [u8; 8], how: Ended) {
    if recent.len() == RECENT_ENDED {
        recent.pop_front();
    }
    recent.push_back((id, how));
}

fn finish(id: [u8; 8], open: OpenSpan, end_unix_ns: u64, status: SpanStatus) -> SpanRecord {
    SpanRecord {
        trace_id: open.trace_id,
        span_id: id,
        parent_span_id: open.parent,
        name: open.name.into(),
        kind: SpanKind::Internal,
        start_unix_ns: open.start_unix_ns,
        end_unix_ns: end_unix_ns.max(open.start_unix_ns),
        status,
        attributes: open
            .attributes
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect(),
        plugin: open.plugin.into(),
        service_name: None,
        timed_out: false,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// `300s`, `1.5s`, `250ms`.
fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::TraceStore;
    use super::*;

    fn setup(config: ManualConfig) -> (Arc<TraceStore>, ManualSpans) {
        let store = Arc::new(TraceStore::default());
        let manual = ManualSpans::new(config, store.clone());
        (store, manual)
    }

    #[test]
    fn start_end_nests_and_reaches_the_store() {
        let (store, m) = setup(ManualConfig::default());
        let root = m
            .start_at(
                "import",
                vec![("a".into(), 1i64.into())],
                None,
                "energy",
                1_000,
            )
            .unwrap();
        let child = m
            .start_at("parse", vec![], Some(&root), "energy", 1_100)
            .unwrap();
        let tp = m.traceparent(&child).unwrap();
        let parsed = TraceContext::parse(&tp).unwrap();
        assert_eq!(to_hex(&parsed.span_id), child);
        m.end_at(&child, SpanStatus::Ok, vec![], 1_500).unwrap();
        m.end_at(
            &root,
            SpanStatus::error("disk full"),
            vec![("a".into(), 2i64.into()), ("b".into(), true.into())],
            2_000,
        )
        .unwrap();
        let tree = store.get(&parsed.trace_id).unwrap();
        assert_eq!(tree.roots.len(), 1);
        let r = &tree.roots[0];
        assert_eq!(r.span_id, root);
        assert_eq!(&*r.plugin, "energy");
        assert_eq!(r.status, SpanStatus::error("disk full"));
        assert_eq!(
            r.attributes,
            vec![
                ("a".to_string(), AttrValue::I64(2)),
                ("b".to_string(), AttrValue::Bool(true))
            ]
        );
        assert_eq!(r.duration_ns, 1_000);
        assert_eq!(r.children[0].span_id, child);
        assert_eq!(r.children[0].offset_ns, 100);
        let st = m.stats();
        assert_eq!((st.open, st.started, st.ended, st.timed_out), (0, 2, 2, 0));
    }

    #[test]
    fn remote_parent_joins_its_trace() {
        let (store, m) = setup(ManualConfig::default());
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let id = m.start_at("op", vec![], Some(unsampled), "p", 10).unwrap();
        // Unsampled parent flag propagates; the span can be ended but is not recorded.
        assert!(m.traceparent(&id).unwrap().ends_with("-00"));
        m.end_at(&id, SpanStatus::Unset, vec![], 20).unwrap();
        let trace_id = TraceContext::parse(unsampled).unwrap().trace_id;
        assert!(store.spans(&trace_id).is_none());
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let id = m.start_at("op", vec![], Some(tp), "p", 10).unwrap();
        assert!(m.traceparent(&id).unwrap().ends_with("-01"));
        m.end_at(&id, SpanStatus::Unset, vec![], 20).unwrap();
        let spans = store
            .spans(&TraceContext::parse(tp).unwrap().trace_id)
            .unwrap();
        assert_eq!(
            spans[0].parent_span_id.map(|p| to_hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
    }

    #[test]
    fn bad_and_unknown_ids_give_clear_errors() {
        let (_, m) = setup(ManualConfig::default());
        assert!(matches!(
            m.start("op", vec![], Some("00-zz-00f067aa0ba902b7-01"), "p"),
            Err(ManualSpanError::InvalidParent { .. })
        ));
        assert!(matches!(
            m.start("op", vec![], Some("nothex"), "p"),
            Err(ManualSpanError::InvalidParent { .. })
        ));
        assert!(
            m.start("op", vec![], Some(" "), "p").is_ok(),
            "blank parent = new trace"
        );
        assert_eq!(
            m.start("op", vec![], Some("00f067aa0ba902b7"), "p"),
            Err(ManualSpanError::UnknownParent("00f067aa0ba902b7".into()))
        );
        assert_eq!(
            m.end("00f067aa0ba902b7", SpanStatus::Ok, vec![]),
            Err(ManualSpanError::UnknownSpan("00f067aa0ba902b7".into()))
        );
        assert!(matches!(
            m.end("ÿÿ", SpanStatus::Ok, vec![]),
            Err(ManualSpanError::InvalidSpanId { .. })
        ));
        let id = m.start("op", vec![], None, "p").unwrap();
        m.end(&id, SpanStatus::Ok, vec![]).unwrap();
        let err = m.end(&id, SpanStatus::Ok, vec![]).unwrap_err();
        assert_eq!(err, ManualSpanError::AlreadyEnded(id.clone()));
        assert_eq!(err.to_string(), format!("span {id} was already ended"));
    }

    #[test]
    fn open_spans_are_bounded() {
        let (_, m) = setup(ManualConfig {
            max_open: 2,
            ..ManualConfig::default()
        });
        let a = m.start("a", vec![], None, "p").unwrap();
        m.start("b", vec![], None, "p").unwrap();
        let err = m.start("c", vec![], None, "p").unwrap_err();
        assert_eq!(err, ManualSpanError::TooManyOpen { limit: 2 });
        assert!(err.to_string().contains("too many open spans (limit 2)"));
        assert_eq!(m.stats().refused, 1);
        m.end(&a, SpanStatus::Ok, vec![]).unwrap();
        assert!(m.start("c", vec![], None, "p").is_ok());
    }

    #[test]
    fn sweeper_closes_expired_spans_as_timed_out_errors() {
        let (store, m) = setup(ManualConfig {
            timeout: Duration::from_secs(300),
            ..ManualConfig::default()
        });
        let s = 1_000_000_000_000u64;
        let old = m.start_at("old", vec![], None, "p", s).unwrap();
        let young = m
            .start_at("young", vec![], None, "p", s + 200_000_000_000)
            .unwrap();
        assert_eq!(m.close_expired(s + 299_999_999_999), 0);
        assert_eq!(m.close_expired(s + 300_000_000_000), 1);
        assert_eq!(m.stats().timed_out, 1);
        assert_eq!(m.stats().open, 1);
        let all = store.list(&Default::default());
        assert_eq!(all.len(), 1);
        assert!(all[0].error);
        let tree = store
            .get(&super::super::context::parse_trace_id(&all[0].trace_id).unwrap())
            .unwrap();
        let node = &tree.roots[0];
        assert_eq!(node.span_id, old);
        assert!(node.timed_out);
        assert_eq!(node.status, SpanStatus::error("span not ended within 300s"));
        assert_eq!(node.duration_ns, 300_000_000_000);
        // The owner ending it late gets a clear error.
        let err = m.end(&old, SpanStatus::Ok, vec![]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("span {old} was already closed after not being ended within 300s")
        );
        // The younger one goes in the next sweep.
        assert_eq!(m.close_expired(s + 500_000_000_000), 1);
        assert!(matches!(
            m.end(&young, SpanStatus::Ok, vec![]),
            Err(ManualSpanError::TimedOut { .. })
        ));
        assert_eq!(m.stats().timed_out, 2);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(300)), "300s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}
