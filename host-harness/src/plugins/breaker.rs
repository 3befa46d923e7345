//! The circuit breaker and the bulkhead of one plugin instance.
//!
//! A thread inside a hung plugin callback cannot be interrupted, so the host
//! must stop sending that plugin more work while the call is stuck — but a
//! plugin that was slow once must not stay disabled until its file is
//! replaced. The breaker does both:
//!
//! - **closed**: calls go through. A call still busy past its deadline
//!   (`hung`) opens the circuit at once; so do `breaker_timeouts`
//!   consecutive calls that returned only after their deadline.
//! - **open**: calls are refused at once with the reason and when the next
//!   trial happens. The circuit stays open while any hung call has not
//!   returned; once the last one has, a cooldown starts.
//! - **half-open**: after the cooldown one trial call goes through; if it
//!   answers in time the circuit closes (and the cooldown resets), if it
//!   times out, hangs or panics the circuit opens again with a doubled
//!   cooldown (up to `cooldown_max_ms`).
//!
//! The bulkhead caps the calls in flight to one plugin, so a hung plugin
//! pins at most that many blocking-pool threads; calls over the cap are
//! refused at once. Both are per instance: a new generation starts closed.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::ResilienceSettings;
use crate::time::unix_ms;

/// The state of a circuit: plugin-abi's, the same value plugins read in
/// their `PluginSummary`.
pub use plugin_abi::CircuitState;

/// Writes a circuit state as its JSON name (`closed`, `half_open`, `open`).
fn state_name<S: serde::Serializer>(state: &CircuitState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

/// How a call admitted by the breaker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin answered (success or an error of its own) within the
    /// deadline.
    Answered,
    /// The plugin answered, but after the deadline.
    Late,
    /// The callback panicked.
    Panicked,
}

/// A call let through by [`Breaker::admit`]; hand it back to
/// [`Breaker::record`] when the call ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticket {
    /// The trial number when this call is the half-open trial.
    trial: Option<u64>,
}

impl Ticket {
    /// Whether this call is the half-open trial.
    pub fn is_trial(&self) -> bool {
        self.trial.is_some()
    }
}

/// A state change, to be published by the caller (never under the lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: CircuitState,
    /// State after.
    pub to: CircuitState,
    /// Why it opened (for `open`) or what the trial did.
    pub reason: String,
}

/// A state change as sent to the host (in order, one channel for all
/// plugins) to be logged and published as `internal.plugin.circuit`.
#[derive(Debug, Clone)]
pub struct CircuitChange {
    /// Plugin instance id.
    pub instance: u64,
    /// Plugin name.
    pub plugin: Arc<str>,
    /// The change.
    pub transition: Transition,
    /// When it happened (Unix ms).
    pub since_ms: u64,
    /// When the next trial call is let through (Unix ms), when known.
    pub next_retry_ms: Option<u64>,
    /// The cooldown the circuit waits once no call is hung, ms.
    pub cooldown_ms: u64,
}

/// Why a call was refused by an open or half-open circuit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin} is unavailable: its circuit has been {} for {since_ago} ({reason}); {retry}", state.as_str().replace('_', "-"))]
pub struct OpenCircuit {
    /// The plugin.
    pub plugin: String,
    /// Open or half-open.
    pub state: CircuitState,
    /// How long it has been in that state, human readable.
    pub since_ago: String,
    /// Why it opened.
    pub reason: String,
    /// When calls are tried again.
    pub retry: String,
}

/// A snapshot of a circuit for the API.
#[derive(Debug, Clone, Serialize)]
pub struct CircuitSnapshot {
    /// `closed`, `half_open` or `open`.
    #[serde(serialize_with = "state_name")]
    pub state: CircuitState,
    /// When it entered that state (Unix ms).
    pub since_ms: u64,
    /// Why it last opened (kept after it closes, for the record).
    pub reason: Option<String>,
    /// When the next trial call is let through (Unix ms), while open and
    /// no hung call is left; `null` otherwise.
    pub next_retry_ms: Option<u64>,
    /// Calls hung past their deadline that have not returned yet.
    pub hung_calls: u32,
    /// The cooldown the next (or current) opening waits, ms.
    pub cooldown_ms: u64,
    /// Times the circuit opened.
    pub opened_total: u64,
    /// Calls refused because the circuit was not closed.
    pub rejected_total: u64,
}

struct Inner {
    state: CircuitState,
    since: SystemTime,
    reason: Option<String>,
    hung: u32,
    cooldown: Duration,
    retry_at: Option<Instant>,
    trial: u64,
    opened_total: u64,
}

/// The circuit breaker of one plugin instance.
pub struct Breaker {
    plugin: Arc<str>,
    instance: u64,
    notify: crossbeam_channel::Sender<CircuitChange>,
    timeouts_to_open: u32,
    cooldown: Duration,
    cooldown_max: Duration,
    /// Mirror of `state == Closed`, so the common case takes no lock.
    closed: AtomicBool,
    consecutive_late: AtomicU32,
    rejected: AtomicU64,
    inner: Mutex<Inner>,
}

fn tenths(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Breaker {
    /// A closed breaker for instance `instance` of `plugin`; state changes
    /// are sent to `notify`.
    pub fn new(
        plugin: Arc<str>,
        instance: u64,
        settings: &ResilienceSettings,
        notify: crossbeam_channel::Sender<CircuitChange>,
    ) -> Breaker {
        let cooldown = Duration::from_millis(settings.cooldown_ms);
        Breaker {
            plugin,
            instance,
            notify,
            timeouts_to_open: settings.breaker_timeouts.max(1),
            cooldown,
            cooldown_max: Duration::from_millis(settings.cooldown_max_ms).max(cooldown),
            closed: AtomicBool::new(true),
            consecutive_late: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                since: SystemTime::now(),
                reason: None,
                hung: 0,
                cooldown,
                retry_at: None,
                trial: 0,
                opened_total: 0,
            }),
        }
    }

    /// Current state.
    pub fn state(&self) -> CircuitState {
        if self.closed.load(Ordering::Acquire) {
            CircuitState::Closed
        } else {
            self.inner.lock().state
        }
    }

    /// Lets a call through or refuses it. An open circuit whose cooldown
    /// has passed turns half-open and lets this call through as the trial.
    /// A closed circuit costs one atomic load.
    pub fn admit(&self) -> Result<Ticket, OpenCircuit> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(Ticket { trial: None });
        }
        self.admit_at(Instant::now())
    }

    /// [`Breaker::admit`] at a given time.
    pub fn admit_at(&self, now: Instant) -> Result<Ticket, OpenCircuit> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(Ticket { trial: None });
        }
        let mut s = self.inner.lock();
        match s.state {
            CircuitState::Closed => Ok(Ticket { trial: None }),
            CircuitState::Open if s.hung == 0 && s.retry_at.is_some_and(|at| now >= at) => {
                s.trial += 1;
                s.state = CircuitState::HalfOpen;
                s.since = SystemTime::now();
                s.retry_at = None;
                let reason = format!("cooldown of {} passed: trying one call", tenths(s.cooldown));
                self.emit(
                    &s,
                    Transition {
                        from: CircuitState::Open,
                        to: CircuitState::HalfOpen,
                        reason,
                    },
                    now,
                );
                Ok(Ticket {
                    trial: Some(s.trial),
                })
            }
            state => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let retry = match (state, s.hung, s.retry_at) {
                    (CircuitState::HalfOpen, _, _) => {
                        "a trial call is in progress; calls resume if it succeeds".to_owned()
                    }
                    (_, 0, Some(at)) => format!(
                        "next trial call in {}",
                        tenths(at.saturating_duration_since(now))
                    ),
                    (_, n, _) => format!(
                        "waiting for {n} hung call{} to return, then a trial call after {}",
                        if n == 1 { "" } else { "s" },
                        tenths(s.cooldown)
                    ),
                };
                Err(OpenCircuit {
                    plugin: self.plugin.to_string(),
                    state,
                    since_ago: tenths(s.since.elapsed().unwrap_or_default()),
                    reason: s.reason.clone().unwrap_or_default(),
                    retry,
                })
            }
        }
    }

    /// Records how an admitted call ended. A call answered in time on a
    /// closed circuit costs one atomic load.
    pub fn record(&self, ticket: Ticket, outcome: Outcome) -> Option<Transition> {
        if ticket.trial.is_none()
            && outcome == Outcome::Answered
            && self.consecutive_late.load(Ordering::Relaxed) == 0
        {
            return None;
        }
        self.record_at(ticket, outcome, Instant::now())
    }

    /// [`Breaker::record`] at a given time.
    pub fn record_at(&self, ticket: Ticket, outcome: Outcome, now: Instant) -> Option<Transition> {
        if ticket.trial.is_none() {
            match outcome {
                Outcome::Answered => {
                    if self.consecutive_late.load(Ordering::Relaxed) != 0 {
                        self.consecutive_late.store(0, Ordering::Relaxed);
                    }
                    return None;
                }
                Outcome::Panicked => return None,
                Outcome::Late => {
                    let n = self.consecutive_late.fetch_add(1, Ordering::Relaxed) + 1;
                    if n < self.timeouts_to_open {
                        return None;
                    }
                    self.consecutive_late.store(0, Ordering::Relaxed);
                    let mut s = self.inner.lock();
                    if s.state != CircuitState::Closed {
                        return None;
                    }
                    return Some(self.trip(
                        &mut s,
                        format!("{n} consecutive calls answered after their deadline"),
                        now,
                    ));
                }
            }
        }
        let mut s = self.inner.lock();
        if s.state != CircuitState::HalfOpen || ticket.trial != Some(s.trial) {
            return None;
        }
        match outcome {
            Outcome::Answered => {
                s.state = CircuitState::Closed;
                s.since = SystemTime::now();
                s.cooldown = self.cooldown;
                s.retry_at = None;
                self.consecutive_late.store(0, Ordering::Relaxed);
                self.closed.store(true, Ordering::Release);
                Some(self.emit(
                    &s,
                    Transition {
                        from: CircuitState::HalfOpen,
                        to: CircuitState::Closed,
                        reason: "the trial call answered in time".to_owned(),
                    },
                    now,
                ))
            }
            Outcome::Late => Some(self.trip(
                &mut s,
                "the trial call answered after its deadline".to_owned(),
                now,
            )),
            Outcome::Panicked => Some(self.trip(&mut s, "the trial call panicked".to_owned(), now)),
        }
    }

    /// A call is still busy past its deadline: opens the circuit (or keeps
    /// it open) until the call returns ([`Breaker::hung_returned`]).
    pub fn hung(&self, reason: String, now: Instant) -> Option<Transition> {
        let mut s = self.inner.lock();
        s.hung += 1;
        if s.state == CircuitState::Open {
            s.retry_at = None;
            return None;
        }
        Some(self.trip(&mut s, reason, now))
    }

    /// A call reported by [`Breaker::hung`] has returned; the cooldown
    /// starts when the last one has.
    pub fn hung_returned(&self, now: Instant) {
        let mut s = self.inner.lock();
        s.hung = s.hung.saturating_sub(1);
        if s.hung == 0 && s.state == CircuitState::Open {
            s.retry_at = Some(now + s.cooldown);
        }
    }

    fn trip(&self, s: &mut Inner, reason: String, now: Instant) -> Transition {
        let from = s.state;
        if from == CircuitState::HalfOpen {
            s.cooldown = (s.cooldown * 2).min(self.cooldown_max);
        }
        s.state = CircuitState::Open;
        s.since = SystemTime::now();
        s.reason = Some(reason.clone());
        s.opened_total += 1;
        s.retry_at = (s.hung == 0).then(|| now + s.cooldown);
        self.closed.store(false, Ordering::Release);
        self.emit(
            s,
            Transition {
                from,
                to: CircuitState::Open,
                reason,
            },
            now,
        )
    }

    /// Sends a change to the host; runs under the lock, so changes arrive
    /// in order.
    fn emit(&self, s: &Inner, transition: Transition, now: Instant) -> Transition {
        let _ = self.notify.send(CircuitChange {
            instance: self.instance,
            plugin: self.plugin.clone(),
            transition: transition.clone(),
            since_ms: unix_ms(s.since),
            next_retry_ms: retry_ms(s, now),
            cooldown_ms: s.cooldown.as_millis() as u64,
        });
        transition
    }

    /// The circuit for the API.
    pub fn snapshot(&self, now: Instant) -> CircuitSnapshot {
        let s = self.inner.lock();
        let next_retry_ms = retry_ms(&s, now);
        CircuitSnapshot {
            state: s.state,
            since_ms: unix_ms(s.since),
            reason: s.reason.clone(),
            next_retry_ms,
            hung_calls: s.hung,
            cooldown_ms: s.cooldown.as_millis() as u64,
            opened_total: s.opened_total,
            rejected_total: self.rejected.load(Ordering::Relaxed),
        }
    }
}

fn retry_ms(s: &Inner, now: Instant) -> Option<u64> {
    match (s.state, s.retry_at) {
        (CircuitState::Open, Some(at)) => Some(unix_ms(
            SystemTime::now() + at.saturating_duration_since(now),
        )),
        _ => None,
    }
}

/// Calls refused by the bulkhead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many calls in flight to plugin {plugin} (cap {cap}); the call was refused without waiting"
)]
pub struct BulkheadFull {
    /// The plugin.
    pub plugin: String,
    /// The cap.
    pub cap: usize,
}

/// The per-instance cap on calls in flight.
pub struct Bulkhead {
    plugin: Arc<str>,
    cap: usize,
    in_flight: AtomicUsize,
    rejected: AtomicU64,
    depth_rejected: AtomicU64,
}

/// One slot of a [`Bulkhead`], released when dropped (when the plugin's
/// callback returns, not when the caller stops waiting).
pub struct Permit {
    bulkhead: Arc<Bulkhead>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.bulkhead.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A snapshot of a bulkhead for the API.
#[derive(Debug, Clone, Serialize)]
pub struct BulkheadSnapshot {
    /// Calls in flight now.
    pub in_flight: usize,
    /// The cap.
    pub cap: usize,
    /// Calls refused because the cap was reached.
    pub rejected_total: u64,
    /// Calls to this plugin refused by the call-depth limit.
    pub depth_rejected_total: u64,
}

impl Bulkhead {
    /// A bulkhead of `cap` slots for `plugin`.
    pub fn new(plugin: Arc<str>, cap: usize) -> Arc<Bulkhead> {
        Arc::new(Bulkhead {
            plugin,
            cap: cap.max(1),
            in_flight: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            depth_rejected: AtomicU64::new(0),
        })
    }

    /// Takes a slot, or refuses when all are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, BulkheadFull> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.cap {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(BulkheadFull {
                plugin: self.plugin.to_string(),
                cap: self.cap,
            });
        }
        Ok(Permit {
            bulkhead: self.clone(),
        })
    }

    /// Counts a call to this plugin refused by the depth limit.
    pub fn count_depth_rejection(&self) {
        self.depth_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The bulkhead for the API.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        BulkheadSnapshot {
            in_flight: self.in_flight.load(Ordering::Acquire),
            cap: self.cap,
            rejected_total: self.rejected.load(Ordering::Relaxed),
            depth_rejected_total: self.depth_rejected.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("plugin", &self.plugin)
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        let (tx, _rx) = crossbeam_channel::unbounded();
        breaker_with(tx)
    }

    fn breaker_with(tx: crossbeam_channel::Sender<CircuitChange>) -> Breaker {
        Breaker::new(
            Arc::from("p"),
            7,
            &ResilienceSettings {
                breaker_timeouts: 3,
                cooldown_ms: 1_000,
                cooldown_max_ms: 3_000,
                max_in_flight: 2,
                max_call_depth: 4,
            },
            tx,
        )
    }

    #[test]
    fn a_hung_call_opens_until_it_returns_then_a_trial_closes() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let b = breaker_with(tx);
        let t0 = Instant::now();
        let ticket = b.admit_at(t0).unwrap();
        let open = b.hung("hung in handle_service".into(), t0).unwrap();
        assert_eq!(
            (open.from, open.to),
            (CircuitState::Closed, CircuitState::Open)
        );
        // Long after any cooldown, still open while the call is hung.
        let err = b.admit_at(t0 + Duration::from_secs(60)).unwrap_err();
        assert!(err.to_string().contains("waiting for 1 hung call"), "{err}");
        assert!(err.to_string().contains("hung in handle_service"), "{err}");
        // It returns (late): no change, the cooldown starts.
        let t1 = t0 + Duration::from_secs(61);
        b.hung_returned(t1);
        assert_eq!(b.record_at(ticket, Outcome::Late, t1), None);
        let err = b.admit_at(t1 + Duration::from_millis(500)).unwrap_err();
        assert!(
            err.to_string().contains("next trial call in 500ms"),
            "{err}"
        );
        // After the cooldown: one trial, others refused meanwhile.
        let trial = b.admit_at(t1 + Duration::from_secs(1)).unwrap();
        assert!(trial.is_trial());
        let err = b.admit_at(t1 + Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string().contains("trial call is in progress"),
            "{err}"
        );
        let closed = b.record_at(trial, Outcome::Answered, t1).unwrap();
        assert_eq!(closed.to, CircuitState::Closed);
        assert!(!b.admit_at(t1).unwrap().is_trial());
        let snap = b.snapshot(t1);
        assert_eq!(snap.opened_total, 1);
        assert_eq!(snap.rejected_total, 3);
        let sent: Vec<_> = rx
            .try_iter()
            .map(|c| (c.instance, c.transition.to, c.next_retry_ms.is_some()))
            .collect();
        assert_eq!(
            sent,
            [
                (7, CircuitState::Open, false),
                (7, CircuitState::HalfOpen, false),
                (7, CircuitState::Closed, false)
            ]
        );
    }

    #[test]
    fn failed_trials_double_the_cooldown_up_to_the_cap() {
        let b = breaker();
        let t0 = Instant::now();
        b.hung("hung".into(), t0);
        b.hung_returned(t0);
        let mut now = t0;
        for expected in [2_000, 3_000, 3_000] {
            now += Duration::from_millis(b.snapshot(now).cooldown_ms);
            let trial = b.admit_at(now).unwrap();
            let t = b.record_at(trial, Outcome::Late, now).unwrap();
            assert_eq!((t.from, t.to), (CircuitState::HalfOpen, CircuitState::Open));
            assert_eq!(b.snapshot(now).cooldown_ms, expected);
            assert!(b
                .admit_at(now + Duration::from_millis(expected - 1))
                .is_err());
        }
        now += Duration::from_secs(3);
        let trial = b.admit_at(now).unwrap();
        b.record_at(trial, Outcome::Answered, now).unwrap();
        assert_eq!(b.snapshot(now).cooldown_ms, 1_000, "reset on close");
    }

    #[test]
    fn consecutive_late_answers_open_and_an_answer_in_time_resets_the_count() {
        let b = breaker();
        let now = Instant::now();
        let normal = Ticket { trial: None };
        assert_eq!(b.record_at(normal, Outcome::Late, now), None);
        assert_eq!(b.record_at(normal, Outcome::Late, now), None);
        assert_eq!(b.record_at(normal, Outcome::Answered, now), None);
        assert_eq!(b.record_at(normal, Outcome::Late, now), None);
        assert_eq!(b.record_at(normal, Outcome::Late, now), None);
        assert_eq!(b.record_at(normal, Outcome::Panicked, now), None);
        let t = b.record_at(normal, Outcome::Late, now).unwrap();
        assert!(t.reason.contains("3 consecutive"), "{}", t.reason);
        assert_eq!(b.state(), CircuitState::Open);
        // No call is hung: the cooldown runs from now.
        assert!(b.admit_at(now + Duration::from_secs(1)).unwrap().is_trial());
    }

    #[test]
    fn a_stale_trial_or_normal_call_cannot_close_an_open_circuit() {
        let b = breaker();
        let now = Instant::now();
        let normal = b.admit_at(now).unwrap();
        b.hung("hung".into(), now);
        b.hung_returned(now);
        assert_eq!(b.record_at(normal, Outcome::Answered, now), None);
        assert_eq!(b.state(), CircuitState::Open);
        let later = now + Duration::from_secs(1);
        let trial = b.admit_at(later).unwrap();
        // The trial hangs: open again, and stays so until it returns.
        assert!(b.hung("trial hung".into(), later).is_some());
        assert_eq!(b.record_at(trial, Outcome::Answered, later), None);
        assert!(b.admit_at(later + Duration::from_secs(100)).is_err());
        b.hung_returned(later);
        assert!(b
            .admit_at(later + Duration::from_secs(2))
            .unwrap()
            .is_trial());
    }

    #[test]
    fn bulkhead_caps_and_releases() {
        let h = Bulkhead::new(Arc::from("p"), 2);
        let a = h.try_acquire().unwrap();
        let _b = h.try_acquire().unwrap();
        let err = h.try_acquire().err().unwrap();
        assert_eq!(
            err.to_string(),
            "too many calls in flight to plugin p (cap 2); the call was refused without waiting"
        );
        drop(a);
        assert!(h.try_acquire().is_ok());
        let snap = h.snapshot();
        assert_eq!((snap.in_flight, snap.rejected_total), (1, 1));
    }
}
