//! A bounded, lock-free hand-off for spans finished on other plugins'
//! threads (the telemetry provider's spans): the caller pushes the record
//! and goes on; the tracing capability moves the queued records into its
//! sink (sampling ratio, trace store, OTLP export) on its tick and before
//! it answers a trace route, so a reader never misses a finished span.
//!
//! Exists because the trace store takes a lock and may evict a whole trace
//! per insertion: on the caller's thread that made a span's end cost more
//! than an `opentelemetry_sdk` span's start and end together
//! (docs/telemetry-design.md, section 6). A full queue drops the record
//! and counts it (the tracing capability reports it as a `rejected` span),
//! as OpenTelemetry's batch processor does: a burst beyond the queue costs
//! spans, never a slower caller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::{SpanRecord, SpanSink};

/// Records queued before the next drain, at most.
pub const HANDOFF_CAPACITY: usize = 4_096;

/// The hand-off in front of a sink. See the module docs.
pub struct SpanHandoff {
    queue: ArrayQueue<SpanRecord>,
    sink: Arc<dyn SpanSink>,
    dropped: AtomicU64,
}

impl SpanHandoff {
    /// A hand-off of `capacity` records in front of `sink`.
    pub fn new(sink: Arc<dyn SpanSink>, capacity: usize) -> Self {
        SpanHandoff {
            queue: ArrayQueue::new(capacity.max(1)),
            sink,
            dropped: AtomicU64::new(0),
        }
    }

    /// Moves every queued record into the sink; returns how many.
    pub fn drain(&self) -> usize {
        let mut n = 0;
        while let Some(span) = self.queue.pop() {
            self.sink.submit(span);
            n += 1;
        }
        n
    }

    /// Records dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting for the next drain.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }
}

impl SpanSink for SpanHandoff {
    fn submit(&self, span: SpanRecord) {
        if self.queue.push(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracing::{StoreConfig, TraceStore};

    #[test]
    fn queued_spans_reach_the_sink_on_drain_and_a_full_queue_drops_and_counts() {
        let store = Arc::new(TraceStore::new(StoreConfig::default()));
        let handoff = SpanHandoff::new(store.clone(), 2);
        let span = |n: u8| SpanRecord::new([n; 16], [n; 8], None, "s", 1, 2);
        handoff.submit(span(1));
        handoff.submit(span(2));
        assert!(store.is_empty(), "queued, not yet stored");
        handoff.submit(span(3)); // full: dropped, counted
        assert_eq!((handoff.pending(), handoff.dropped()), (2, 1));
        assert_eq!(handoff.drain(), 2);
        assert!(store.spans(&[1; 16]).is_some() && store.spans(&[2; 16]).is_some());
        assert!(store.spans(&[3; 16]).is_none());
        assert_eq!(handoff.pending(), 0);
    }
}
