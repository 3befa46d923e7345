//! The event bus: dotted topics, wildcard subscriptions, one bounded queue
//! and one delivery thread per subscribing plugin.
//!
//! Publishing never blocks: each matching subscriber's queue gets a
//! `try_send`; a full queue drops the event for that subscriber only and
//! counts it. A handler that publishes from inside its delivery thread does
//! not deadlock (no lock is held while delivering). A slow or hung subscriber
//! only fills its own queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};

/// Why a topic, pattern or payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Malformed topic.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The topic.
        topic: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Malformed subscription pattern.
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The payload is not JSON.
    #[error("event payload is not valid JSON: {0}")]
    InvalidPayload(String),
    /// No such subscription for this owner.
    #[error("no subscription {0} for this plugin")]
    UnknownSubscription(u64),
}

/// Longest accepted topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
}

/// Checks a concrete topic such as `device.light1.state`.
pub fn validate_topic(topic: &str) -> Result<(), BusError> {
    let invalid = |reason| BusError::InvalidTopic {
        topic: topic.to_owned(),
        reason,
    };
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(invalid("must be 1 to 256 bytes"));
    }
    if !topic.split('.').all(valid_segment) {
        return Err(invalid(
            "segments are separated by '.' and use only [A-Za-z0-9_:-]",
        ));
    }
    Ok(())
}

/// A compiled subscription pattern.
///
/// `*` as a segment matches exactly one segment; as the LAST segment it
/// matches one or more segments. So `internal.*` matches
/// `internal.plugin.loaded`, `*` matches everything, and `device.*.state`
/// matches `device.light1.state` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Option<String>>,
}

impl Pattern {
    /// Parses a pattern.
    pub fn parse(text: &str) -> Result<Pattern, BusError> {
        let invalid = |reason| BusError::InvalidPattern {
            pattern: text.to_owned(),
            reason,
        };
        if text.is_empty() || text.len() > MAX_TOPIC_BYTES {
            return Err(invalid("must be 1 to 256 bytes"));
        }
        let mut segments = Vec::new();
        for seg in text.split('.') {
            if seg == "*" {
                segments.push(None);
            } else if valid_segment(seg) {
                segments.push(Some(seg.to_owned()));
            } else {
                return Err(invalid("segments are '*' or use only [A-Za-z0-9_:-]"));
            }
        }
        Ok(Pattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a (valid) topic matches.
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        let last = self.segments.len() - 1;
        for (i, seg) in self.segments.iter().enumerate() {
            let Some(part) = parts.next() else {
                return false;
            };
            match seg {
                Some(lit) if lit != part => return false,
                Some(_) => {}
                None if i == last => return true,
                None => {}
            }
        }
        parts.next().is_none()
    }
}

/// An event on the bus.
#[derive(Debug, Clone)]
pub struct BusEvent {
    /// Dotted topic.
    pub topic: String,
    /// JSON payload.
    pub payload: String,
    /// Publisher: plugin name or `host`.
    pub source: String,
    /// Unix epoch milliseconds.
    pub published_at_ms: u64,
    /// The publish (producer) span, if traced; each delivery is a child.
    pub trace_context: Option<crate::tracecontext::SpanContext>,
}

/// One event queued for one subscription.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event (shared by all its deliveries).
    pub event: Arc<BusEvent>,
    /// The subscription it matched.
    pub subscription_id: u64,
    /// When it was queued (for queue-wait measurement).
    pub enqueued: Instant,
    /// What the event counts against the queue's byte budget.
    pub bytes: usize,
}

impl BusEvent {
    /// Approximate memory the event holds (its strings plus the struct),
    /// counted against each subscriber queue's byte budget.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<BusEvent>() + self.topic.len() + self.payload.len() + self.source.len()
    }
}

/// Delivers one event to a subscriber; runs on the subscriber's thread.
pub type DeliverFn = Arc<dyn Fn(Delivery) + Send + Sync>;

/// The queue and thread of one subscribing owner (a plugin instance).
pub struct SubscriberQueue {
    owner: u64,
    owner_name: Arc<str>,
    tx: Sender<Delivery>,
    closed: Arc<AtomicBool>,
    dropped: AtomicU64,
    delivered: Arc<AtomicU64>,
    /// Bytes of the events waiting in the queue (see [`EventBus::with_max_bytes`]).
    queued_bytes: Arc<AtomicUsize>,
}

impl SubscriberQueue {
    /// Bytes of the events waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` of the queue's budget `max`; false when it would be exceeded.
    fn reserve(&self, bytes: usize, max: usize) -> bool {
        crate::byte_budget::try_reserve(&self.queued_bytes, bytes, max)
    }

    /// Events dropped because this queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events handed to the subscriber.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// The owner's name.
    pub fn owner_name(&self) -> &str {
        &self.owner_name
    }
}

struct Subscription {
    id: u64,
    pattern: Pattern,
    queue: Arc<SubscriberQueue>,
}

/// Result of one publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Subscriptions the event was queued for.
    pub queued: usize,
    /// Subscriptions whose queue was full.
    pub dropped: usize,
}

/// A dropped delivery, reported to the caller of [`EventBus::publish`].
#[derive(Debug, Clone)]
pub struct DroppedFor {
    /// Owner of the full queue.
    pub owner_name: Arc<str>,
}

/// Default byte budget of one subscriber queue.
pub const DEFAULT_QUEUE_BYTES: usize = 16 << 20;

/// The bus.
pub struct EventBus {
    capacity: usize,
    max_bytes: usize,
    next_id: AtomicU64,
    subscriptions: RwLock<Arc<Vec<Subscription>>>,
    queues: Mutex<HashMap<u64, Arc<SubscriberQueue>>>,
    published: AtomicU64,
    dropped: AtomicU64,
}

impl EventBus {
    /// A bus whose subscriber queues hold `capacity` events each, and at
    /// most [`DEFAULT_QUEUE_BYTES`] of them.
    pub fn new(capacity: usize) -> Self {
        EventBus {
            capacity,
            max_bytes: DEFAULT_QUEUE_BYTES,
            next_id: AtomicU64::new(1),
            subscriptions: RwLock::new(Arc::new(Vec::new())),
            queues: Mutex::new(HashMap::new()),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Bounds each subscriber queue to `max_bytes` of events (see
    /// [`BusEvent::approx_bytes`]) as well as `capacity` events: an event
    /// that does not fit is dropped like one arriving at a full queue.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    fn queue_for(
        &self,
        owner: u64,
        owner_name: &str,
        deliver: impl FnOnce() -> DeliverFn,
    ) -> Arc<SubscriberQueue> {
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get(&owner) {
            return q.clone();
        }
        let (tx, rx) = bounded::<Delivery>(self.capacity);
        let closed = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(AtomicU64::new(0));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        spawn_worker(
            owner_name,
            rx,
            Counters {
                closed: closed.clone(),
                delivered: delivered.clone(),
                queued_bytes: queued_bytes.clone(),
            },
            deliver(),
        );
        let q = Arc::new(SubscriberQueue {
            owner,
            owner_name: Arc::from(owner_name),
            tx,
            closed,
            dropped: AtomicU64::new(0),
            delivered,
            queued_bytes,
        });
        queues.insert(owner, q.clone());
        q
    }

    /// Subscribes `owner` to `pattern`. `deliver` is used to build the
    /// owner's delivery function the first time it subscribes.
    pub fn subscribe(
        &self,
        owner: u64,
        owner_name: &str,
        pattern: &str,
        deliver: impl FnOnce() -> DeliverFn,
    ) -> Result<u64, BusError> {
        let pattern = Pattern::parse(pattern)?;
        let queue = self.queue_for(owner, owner_name, deliver);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subs = self.subscriptions.write();
        let mut next: Vec<Subscription> = subs
            .iter()
            .map(|s| Subscription {
                id: s.id,
                pattern: s.pattern.clone(),
                queue: s.queue.clone(),
            })
            .collect();
        next.push(Subscription { id, pattern, queue });
        *subs = Arc::new(next);
        Ok(id)
    }

    /// Removes one subscription of `owner`.
    pub fn unsubscribe(&self, owner: u64, id: u64) -> Result<(), BusError> {
        let mut subs = self.subscriptions.write();
        if !subs.iter().any(|s| s.id == id && s.queue.owner == owner) {
            return Err(BusError::UnknownSubscription(id));
        }
        let next = subs
            .iter()
            .filter(|s| s.id != id)
            .map(|s| Subscription {
                id: s.id,
                pattern: s.pattern.clone(),
                queue: s.queue.clone(),
            })
            .collect();
        *subs = Arc::new(next);
        Ok(())
    }

    /// Removes every subscription of `owner` and stops its delivery thread
    /// (queued events are discarded). Returns how many were removed.
    pub fn remove_owner(&self, owner: u64) -> usize {
        let removed;
        {
            let mut subs = self.subscriptions.write();
            let before = subs.len();
            let next: Vec<Subscription> = subs
                .iter()
                .filter(|s| s.queue.owner != owner)
                .map(|s| Subscription {
                    id: s.id,
                    pattern: s.pattern.clone(),
                    queue: s.queue.clone(),
                })
                .collect();
            removed = before - next.len();
            *subs = Arc::new(next);
        }
        if let Some(q) = self.queues.lock().remove(&owner) {
            q.closed.store(true, Ordering::Release);
        }
        removed
    }

    /// Publishes an event to every matching subscription without blocking.
    /// `on_drop` is called for each subscriber whose queue was full.
    pub fn publish(
        &self,
        event: BusEvent,
        mut on_drop: impl FnMut(&DroppedFor),
    ) -> Result<PublishOutcome, BusError> {
        validate_topic(&event.topic)?;
        serde_json::from_str::<serde::de::IgnoredAny>(&event.payload)
            .map_err(|e| BusError::InvalidPayload(e.to_string()))?;
        self.published.fetch_add(1, Ordering::Relaxed);
        let subs = self.subscriptions.read().clone();
        let bytes = event.approx_bytes();
        let event = Arc::new(event);
        let mut outcome = PublishOutcome::default();
        let now = Instant::now();
        for sub in subs.iter().filter(|s| s.pattern.matches(&event.topic)) {
            let delivery = Delivery {
                event: event.clone(),
                subscription_id: sub.id,
                enqueued: now,
                bytes,
            };
            let sent = sub.queue.reserve(bytes, self.max_bytes)
                && match sub.queue.tx.try_send(delivery) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        sub.queue.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                        false
                    }
                };
            if sent {
                outcome.queued += 1;
            } else {
                outcome.dropped += 1;
                sub.queue.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                on_drop(&DroppedFor {
                    owner_name: sub.queue.owner_name.clone(),
                });
            }
        }
        Ok(outcome)
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Deliveries dropped so far (all subscribers).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// `(subscription id, owner name, pattern)` of every subscription.
    pub fn subscriptions(&self) -> Vec<(u64, String, String)> {
        self.subscriptions
            .read()
            .iter()
            .map(|s| {
                (
                    s.id,
                    s.queue.owner_name.to_string(),
                    s.pattern.as_str().to_owned(),
                )
            })
            .collect()
    }

    /// The queues of all subscribing owners.
    pub fn queues(&self) -> Vec<Arc<SubscriberQueue>> {
        self.queues.lock().values().cloned().collect()
    }
}

/// Counters a delivery thread shares with its [`SubscriberQueue`].
struct Counters {
    closed: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    queued_bytes: Arc<AtomicUsize>,
}

fn spawn_worker(owner_name: &str, rx: Receiver<Delivery>, counters: Counters, deliver: DeliverFn) {
    let name = format!("bus-{owner_name}");
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let hand_over = |d: Delivery| {
            counters.queued_bytes.fetch_sub(d.bytes, Ordering::AcqRel);
            deliver(d);
            counters.delivered.fetch_add(1, Ordering::Relaxed);
        };
        // `recv` returns Err once every sender is gone (owner removed).
        while let Ok(first) = rx.recv() {
            if counters.closed.load(Ordering::Acquire) {
                return;
            }
            hand_over(first);
            // Drain what is already queued before parking again.
            while let Ok(next) = rx.try_recv() {
                if counters.closed.load(Ordering::Acquire) {
                    return;
                }
                hand_over(next);
            }
        }
    });
    if let Err(e) = spawned {
        crate::logger::error(
            "bus",
            "cannot start delivery thread",
            serde_json::json!({"error": e.to_string()}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn queues_are_bounded_in_bytes_as_well_as_in_events() {
        // Room for 1,000 events but only ~1 MiB: big events are dropped once
        // the bytes are spent, and small ones still get through.
        let bus = EventBus::new(1_000).with_max_bytes(1 << 20);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let release_rx = Arc::new(Mutex::new(release_rx));
        let delivered = Arc::new(AtomicU64::new(0));
        let d = delivered.clone();
        bus.subscribe(1, "slow", "t.*", move || {
            Arc::new(move |_d: Delivery| {
                // Block until released, so everything published stays queued.
                let _ = release_rx.lock().recv_timeout(Duration::from_secs(10));
                d.fetch_add(1, Ordering::Relaxed);
            })
        })
        .unwrap();
        let big = format!("\"{}\"", "x".repeat(100_000));
        let mut dropped = 0;
        for _ in 0..20 {
            dropped += bus
                .publish(event_with("t.big", big.clone()), |_| {})
                .unwrap()
                .dropped;
        }
        // 20 × 100 kB = 2 MB > 1 MiB: about half is dropped (one may be in
        // the handler already, out of the queue).
        assert!((8..=11).contains(&dropped), "dropped {dropped}");
        let queue = &bus.queues()[0];
        assert!(queue.queued_bytes() <= 1 << 20, "{}", queue.queued_bytes());
        let small = bus
            .publish(event_with("t.small", "1".into()), |_| {})
            .unwrap();
        assert_eq!(small.queued, 1, "small events still fit");
        // Delivering gives the bytes back.
        drop(release_tx);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while queue.queued_bytes() > 0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(queue.queued_bytes(), 0);
        assert_eq!(
            bus.publish(event_with("t.big", big), |_| {})
                .unwrap()
                .queued,
            1,
            "room again once delivered"
        );
    }

    #[test]
    fn patterns() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("internal.*").matches("internal.plugin.loaded"));
        assert!(p("internal.*").matches("internal.x"));
        assert!(!p("internal.*").matches("internal"));
        assert!(!p("internal.*").matches("internals.x"));
        assert!(p("*").matches("a.b.c"));
        assert!(p("device.*.state").matches("device.l1.state"));
        assert!(!p("device.*.state").matches("device.l1.x.state"));
        assert!(!p("device.*.state").matches("device.l1.state.x"));
        assert!(p("a.b").matches("a.b"));
        assert!(!p("a.b").matches("a.b.c"));
        assert!(Pattern::parse("a..b").is_err());
        assert!(Pattern::parse("a.b*").is_err());
        assert!(validate_topic("a.*").is_err());
        assert!(validate_topic("device.light-1.state").is_ok());
    }

    fn event(topic: &str) -> BusEvent {
        event_with(topic, "{}".into())
    }

    fn event_with(topic: &str, payload: String) -> BusEvent {
        BusEvent {
            topic: topic.into(),
            payload,
            source: "test".into(),
            published_at_ms: 0,
            trace_context: None,
        }
    }

    #[test]
    fn delivers_and_drops_when_full() {
        let bus = EventBus::new(2);
        let gate = Arc::new(parking_lot::Mutex::new(()));
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (g, s) = (gate.clone(), seen.clone());
        let hold = gate.lock();
        bus.subscribe(1, "slow", "x.*", move || {
            Arc::new(move |d: Delivery| {
                let _wait = g.lock();
                s.lock().push(d.event.topic.clone());
            })
        })
        .unwrap();
        let mut drops = 0;
        for i in 0..10 {
            bus.publish(event(&format!("x.{i}")), |_| drops += 1)
                .unwrap();
        }
        // One in the handler (blocked), two queued, the rest dropped.
        assert!(drops >= 7, "drops {drops}");
        drop(hold);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(seen.lock().len(), 10 - drops);
        assert_eq!(bus.dropped(), drops as u64);
        assert!(bus.publish(event("bad topic"), |_| {}).is_err());
        let mut bad = event("x.y");
        bad.payload = "{".into();
        assert!(matches!(
            bus.publish(bad, |_| {}),
            Err(BusError::InvalidPayload(_))
        ));
    }
}
