//! Calling into plugins: admission (call depth, bulkhead, circuit breaker),
//! then the callback — in-line on the caller's thread or on a blocking
//! thread with a deadline — tracked while in flight.
//!
//! tokio cannot cross the ABI, so a call from async code (the HTTP API) or
//! the plugin manager runs synchronously on tokio's blocking pool; the
//! caller waits with a deadline and gets `Timeout` if the plugin does not
//! answer ([`invoke_async`], [`invoke_sync`]). A plugin calling another
//! plugin already runs on a thread that may block, so its call runs in-line
//! on that thread ([`invoke_inline`]): no hop, no channel; the watchdog
//! (not the caller) finds an overrun. A thread stuck in a hung plugin
//! cannot be killed: it stays behind until the plugin returns.
//! So before a call is sent, [`admit`] checks the caller's chain of nested
//! callbacks against the depth limit, takes a slot of the plugin's
//! bulkhead (the threads one plugin may pin) and asks its circuit breaker
//! (refused at once while the plugin is hung or cooling down). Every call
//! is recorded in [`InFlight`]; one still busy past its deadline — seen by
//! the caller's timeout or by the watchdog — opens the plugin's circuit
//! until it returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::RResult;
use parking_lot::Mutex;
use plugin_abi::{ErrorKind, PluginError};

use super::breaker::{BulkheadFull, OpenCircuit, Outcome, Permit, Ticket};
use super::chain::{CallChain, TooDeep};
use super::manager::PluginInstance;
use crate::config::ResilienceSettings;

/// One plugin callback in progress.
#[derive(Debug, Clone)]
pub struct CallInFlight {
    /// Plugin instance.
    pub instance: u64,
    /// Plugin name.
    pub plugin: Arc<str>,
    /// Callback (`start`, `handle_service`, …).
    pub callback: &'static str,
    /// Detail such as the service name.
    pub detail: String,
    /// The thread running it.
    pub thread: String,
    /// When it started.
    pub started: Instant,
    /// Its deadline: busy longer than this means hung.
    pub limit: Duration,
    /// Whether the watchdog already reported it as stalled.
    pub stall_reported: bool,
    /// Whether it was already reported as hung.
    pub hang_reported: bool,
}

struct Entry {
    call: CallInFlight,
    instance: Arc<PluginInstance>,
    /// Whether its plugin's breaker counts it as hung (and must hear when
    /// it returns).
    counted_hung: bool,
}

/// The set of callbacks in progress.
#[derive(Default)]
pub struct InFlight {
    next: AtomicU64,
    calls: Mutex<HashMap<u64, Entry>>,
}

/// A call found busy past its deadline.
#[derive(Debug, Clone)]
pub struct HungCall {
    /// The call.
    pub call: CallInFlight,
    /// `hung in handle_service (x.y) for more than 5s`.
    pub reason: String,
    /// Whether its plugin's breaker was told (not for `start` and `stop`:
    /// the plugin manager handles those).
    pub breaker_told: bool,
}

/// Whether the circuit breaker applies to a callback: every callback but
/// the life-cycle ones, which the plugin manager handles (a hung `start`
/// leaves the plugin in the error state until its file is replaced; a hung
/// `stop` does not delay the replacement).
pub fn breaker_applies(callback: &str) -> bool {
    !matches!(callback, "start" | "stop")
}

/// Removes its entry from [`InFlight`] and books the time spent on the
/// instance when dropped; tells the breaker when a hung call returns.
pub struct InFlightGuard {
    set: Arc<InFlight>,
    id: u64,
    instance: Arc<PluginInstance>,
    callback: &'static str,
    started: Instant,
}

impl InFlightGuard {
    /// The call's id in [`InFlight`].
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let counted_hung = self
            .set
            .calls
            .lock()
            .remove(&self.id)
            .is_some_and(|e| e.counted_hung);
        if counted_hung {
            self.instance.breaker.hung_returned(Instant::now());
        }
        self.instance
            .record_callback(self.callback, self.started.elapsed());
    }
}

impl InFlight {
    /// Records a call until the guard is dropped; `thread` names where it
    /// runs (the current thread when `None`).
    pub fn enter(
        self: &Arc<Self>,
        instance: &Arc<PluginInstance>,
        callback: &'static str,
        detail: &str,
        limit: Duration,
        thread: Option<&str>,
    ) -> InFlightGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let thread = match thread {
            Some(t) => t.to_owned(),
            None => std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned(),
        };
        self.calls.lock().insert(
            id,
            Entry {
                call: CallInFlight {
                    instance: instance.id,
                    plugin: instance.name.clone(),
                    callback,
                    detail: detail.to_owned(),
                    thread,
                    started,
                    limit,
                    stall_reported: false,
                    hang_reported: false,
                },
                instance: instance.clone(),
                counted_hung: false,
            },
        );
        InFlightGuard {
            set: self.clone(),
            id,
            instance: instance.clone(),
            callback,
            started,
        }
    }

    /// Calls busy longer than `threshold` and not reported as stalled yet;
    /// marks them reported.
    pub fn take_stalled(&self, threshold: Duration) -> Vec<CallInFlight> {
        let mut calls = self.calls.lock();
        let mut out = Vec::new();
        for e in calls.values_mut() {
            if !e.call.stall_reported && e.call.started.elapsed() > threshold {
                e.call.stall_reported = true;
                out.push(e.call.clone());
            }
        }
        out
    }

    /// Calls busy longer than their own deadline and not reported as hung
    /// yet: marks them and opens their plugins' circuits.
    pub fn take_hung(&self) -> Vec<HungCall> {
        let mut calls = self.calls.lock();
        calls
            .values_mut()
            .filter(|e| !e.call.hang_reported && e.call.started.elapsed() > e.call.limit)
            .map(mark)
            .collect()
    }

    /// The caller stopped waiting for call `id`: if it is still running it
    /// is hung now (marked and its plugin's circuit opened).
    pub fn mark_hung(&self, id: u64) -> Option<HungCall> {
        let mut calls = self.calls.lock();
        calls
            .get_mut(&id)
            .filter(|e| !e.call.hang_reported)
            .map(mark)
    }

    /// Snapshot of every call in progress.
    pub fn snapshot(&self) -> Vec<CallInFlight> {
        self.calls.lock().values().map(|e| e.call.clone()).collect()
    }
}

/// Marks a call hung; runs under the [`InFlight`] lock, which the call's
/// return also takes, so every hung call the breaker counts is matched by
/// exactly one `hung_returned`.
fn mark(e: &mut Entry) -> HungCall {
    e.call.hang_reported = true;
    let reason = format!(
        "hung in {}{} for more than {}",
        e.call.callback,
        if e.call.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", e.call.detail)
        },
        humanize(e.call.limit)
    );
    let breaker_told = breaker_applies(e.call.callback);
    if breaker_told {
        e.instance.breaker.hung(reason.clone(), Instant::now());
        e.counted_hung = true;
    }
    HungCall {
        call: e.call.clone(),
        reason,
        breaker_told,
    }
}

/// Turns a timeout into the error callers see.
pub fn timeout_error(plugin: &str, callback: &str, timeout: Duration) -> PluginError {
    PluginError::new(
        ErrorKind::Timeout,
        format!(
            "plugin {plugin} did not answer {callback} within {}",
            humanize(timeout)
        ),
    )
}

/// `5s`, `250ms`.
pub fn humanize(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Why a call was refused before it reached the plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    /// The caller's chain of nested callbacks is at the depth limit.
    #[error(transparent)]
    TooDeep(#[from] TooDeep),
    /// The plugin's circuit is open (or half-open with its trial running).
    #[error(transparent)]
    Open(#[from] OpenCircuit),
    /// The plugin's bulkhead is full.
    #[error(transparent)]
    Full(#[from] BulkheadFull),
}

impl Refused {
    /// The error the caller sees: `Unavailable` (503) for an open circuit
    /// or a full bulkhead (retrying later may work), `Failed` for the depth
    /// limit (the call chain itself is the bug).
    pub fn to_plugin_error(&self) -> PluginError {
        let kind = match self {
            Refused::TooDeep(_) => ErrorKind::Failed,
            Refused::Open(_) | Refused::Full(_) => ErrorKind::Unavailable,
        };
        PluginError::new(kind, self.to_string())
    }
}

/// What lets an admitted call run: the breaker's ticket, a bulkhead slot
/// (released when the plugin returns) and the chain the callee runs with.
pub struct Admission {
    /// `None` for life-cycle callbacks, which the breaker ignores.
    ticket: Option<Ticket>,
    permit: Option<Permit>,
    chain: CallChain,
}

impl Admission {
    /// Admission for a life-cycle callback (`start`, `stop`): no breaker,
    /// no bulkhead; a new chain.
    pub fn lifecycle(instance: &PluginInstance) -> Admission {
        Admission {
            ticket: None,
            permit: None,
            chain: CallChain::default().then(&instance.name),
        }
    }
}

/// Admits a call to `instance` from a caller whose chain is `chain` (empty
/// for HTTP and host calls): depth limit, then bulkhead, then breaker.
pub fn admit(
    settings: &ResilienceSettings,
    instance: &Arc<PluginInstance>,
    chain: &CallChain,
    target: &str,
) -> Result<Admission, Refused> {
    if let Err(e) = chain.check(settings.max_call_depth, &instance.name, target) {
        instance.bulkhead.count_depth_rejection();
        return Err(e.into());
    }
    let permit = instance.bulkhead.try_acquire()?;
    let ticket = instance.breaker.admit()?;
    Ok(Admission {
        ticket: Some(ticket),
        permit: Some(permit),
        chain: chain.then(&instance.name),
    })
}

/// Admits a callback the host runs on a thread of its own (event delivery,
/// observations, tick, health): breaker only — those run one at a time per
/// plugin, so they need no bulkhead — and a new chain.
pub fn admit_inline(instance: &Arc<PluginInstance>) -> Result<Admission, OpenCircuit> {
    let ticket = instance.breaker.admit()?;
    Ok(Admission {
        ticket: Some(ticket),
        permit: None,
        chain: CallChain::default().then(&instance.name),
    })
}

fn outcome_of<R>(result: &Result<R, PluginError>, spent: Duration, limit: Duration) -> Outcome {
    match result {
        Err(e) if e.kind == ErrorKind::Panicked => Outcome::Panicked,
        _ if spent > limit => Outcome::Late,
        _ => Outcome::Answered,
    }
}

/// Runs an admitted callback on the current thread with its chain as the
/// current chain, and tells the breaker how it ended. The caller holds the
/// [`InFlight`] entry.
pub fn run_admitted<R>(
    instance: &PluginInstance,
    admission: Admission,
    limit: Duration,
    f: impl FnOnce(&PluginInstance) -> RResult<R, PluginError>,
) -> Result<R, PluginError> {
    let started = Instant::now();
    let Admission {
        ticket,
        permit,
        chain,
    } = admission;
    let result = {
        let _chain = chain.enter();
        f(instance).into_result()
    };
    let outcome = outcome_of(&result, started.elapsed(), limit);
    if let Some(ticket) = ticket {
        instance.breaker.record(ticket, outcome);
    }
    drop(permit);
    result
}

/// A plugin callback to run: borrows the instance, returns the FFI result.
pub type Callback<R> = Box<dyn FnOnce(&PluginInstance) -> RResult<R, PluginError> + Send>;

/// What to call.
pub struct Call<'a> {
    /// The plugin instance.
    pub instance: &'a Arc<PluginInstance>,
    /// Callback name (`handle_service`, …).
    pub callback: &'static str,
    /// Detail such as the service name or path.
    pub detail: &'a str,
    /// Deadline.
    pub timeout: Duration,
}

/// What a call needs from the host that sends it: the in-flight set it is
/// recorded in, the runtime whose blocking pool runs it, and where a call
/// found hung is reported. The host core implements it, so this file does
/// not name it (`core/reports.rs`).
pub trait CallHost: Send + Sync {
    /// The callbacks in progress.
    fn inflight(&self) -> &Arc<InFlight>;
    /// The runtime whose blocking pool runs plugin callbacks.
    fn runtime(&self) -> &tokio::runtime::Handle;
    /// A call was found busy past its deadline.
    fn report_hung(&self, hung: &HungCall);
}

/// The blocking-pool thread name recorded for calls sent there.
const POOL_THREAD: &str = "blocking pool";

/// Records an admitted call in [`InFlight`] and runs it on the blocking
/// pool; `reply` gets its result (after the in-flight entry is gone, so
/// the time spent is booked before the caller sees the answer). Returns
/// the call's in-flight id. The one sending half of [`invoke_sync`] and
/// [`invoke_async`].
fn send<R: Send + 'static>(
    host: &dyn CallHost,
    call: &Call<'_>,
    admission: Admission,
    f: Callback<R>,
    reply: impl FnOnce(Result<R, PluginError>) + Send + 'static,
) -> u64 {
    let guard = host.inflight().enter(
        call.instance,
        call.callback,
        call.detail,
        call.timeout,
        Some(POOL_THREAD),
    );
    let id = guard.id();
    let (inst, limit) = (call.instance.clone(), call.timeout);
    host.runtime().spawn_blocking(move || {
        let result = run_admitted(&inst, admission, limit, f);
        drop(guard);
        reply(result);
    });
    id
}

/// The caller stopped waiting for call `id` at its deadline: marks it hung
/// if it still runs (its circuit opens), reports it, and returns the
/// `Timeout` error the caller sees. The one timeout half of [`invoke_sync`]
/// and [`invoke_async`].
fn timed_out(host: &dyn CallHost, call: &Call<'_>, id: u64) -> PluginError {
    if let Some(hung) = host.inflight().mark_hung(id) {
        host.report_hung(&hung);
    }
    timeout_error(&call.instance.name, call.callback, call.timeout)
}

/// The error when the thread running a call ended without an answer.
fn lost_answer() -> PluginError {
    PluginError::new(
        ErrorKind::Panicked,
        "host task failed: the callback's thread ended without an answer",
    )
}

/// Runs an admitted call in-line on the current thread (a plugin calling a
/// plugin): recorded in [`InFlight`] under this thread's name, so the
/// watchdog reports an overrun (stall, then hung) and opens the callee's
/// circuit for every other caller; this caller waits until the callee
/// returns — an in-line call cannot be interrupted. No thread hop, no
/// channel, no boxed callback.
pub fn invoke_inline<R>(
    host: &dyn CallHost,
    call: Call<'_>,
    admission: Admission,
    f: impl FnOnce(&PluginInstance) -> RResult<R, PluginError>,
) -> Result<R, PluginError> {
    let guard = host.inflight().enter(
        call.instance,
        call.callback,
        call.detail,
        call.timeout,
        None,
    );
    let result = run_admitted(call.instance, admission, call.timeout, f);
    drop(guard);
    result
}

/// Runs an admitted call on the blocking pool and waits up to its deadline,
/// blocking the current thread (sync callers: plugin threads, the plugin
/// manager).
pub fn invoke_sync<R: Send + 'static>(
    host: &dyn CallHost,
    call: Call<'_>,
    admission: Admission,
    f: Callback<R>,
) -> Result<R, PluginError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let id = send(host, &call, admission, f, move |result| {
        let _ = tx.send(result);
    });
    match rx.recv_timeout(call.timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(lost_answer()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(timed_out(host, &call, id)),
    }
}

/// Runs an admitted call on the blocking pool and waits up to its deadline
/// without blocking the executor (async callers: the HTTP API).
pub async fn invoke_async<R: Send + 'static>(
    host: &dyn CallHost,
    call: Call<'_>,
    admission: Admission,
    f: Callback<R>,
) -> Result<R, PluginError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let id = send(host, &call, admission, f, move |result| {
        let _ = tx.send(result);
    });
    match tokio::time::timeout(call.timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(lost_answer()),
        Err(_) => Err(timed_out(host, &call, id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_in_whole_seconds_or_milliseconds() {
        assert_eq!(humanize(Duration::from_secs(5)), "5s");
        assert_eq!(humanize(Duration::from_millis(250)), "250ms");
        assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
        let e = timeout_error("demo", "handle_service", Duration::from_millis(200));
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert_eq!(
            e.message.as_str(),
            "plugin demo did not answer handle_service within 200ms"
        );
    }

    #[test]
    fn the_breaker_ignores_only_life_cycle_callbacks() {
        for cb in ["start", "stop"] {
            assert!(!breaker_applies(cb), "{cb}");
        }
        for cb in [
            "handle_service",
            "handle_http",
            "on_event",
            "tick",
            "health",
        ] {
            assert!(breaker_applies(cb), "{cb}");
        }
    }

    #[test]
    fn a_late_or_panicked_answer_is_told_to_the_breaker_as_such() {
        let limit = Duration::from_millis(100);
        let ok: Result<(), PluginError> = Ok(());
        let panicked: Result<(), PluginError> = Err(PluginError::new(ErrorKind::Panicked, "boom"));
        assert!(matches!(
            outcome_of(&ok, limit / 2, limit),
            Outcome::Answered
        ));
        assert!(matches!(outcome_of(&ok, limit * 2, limit), Outcome::Late));
        assert!(matches!(
            outcome_of(&panicked, limit / 2, limit),
            Outcome::Panicked
        ));
    }

    #[test]
    fn a_lost_answer_is_a_panicked_host_task() {
        let e = lost_answer();
        assert_eq!(e.kind, ErrorKind::Panicked);
        assert!(e.message.starts_with("host task failed"), "{}", e.message);
    }
}
