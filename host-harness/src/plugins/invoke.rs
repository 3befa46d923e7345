//! Calling into plugins: on a blocking thread, with a deadline, tracked
//! while in flight.
//!
//! tokio cannot cross the ABI (DESIGN.md §2.6), so every host → plugin call
//! runs synchronously on tokio's blocking pool; the caller waits with a
//! deadline and gets `Timeout` if the plugin does not answer. A thread stuck
//! in a hung plugin cannot be killed: it stays behind, the plugin is put in
//! the error state and quarantined so no further calls pile up on it.
//! Every call is recorded in [`InFlight`] so the watchdog can name plugins
//! that are busy for too long.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::RResult;
use parking_lot::Mutex;
use plugin_abi::{ErrorKind, PluginError};

use super::manager::PluginInstance;

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
    /// Whether the watchdog already reported it as hung.
    pub hang_reported: bool,
}

/// The set of callbacks in progress.
#[derive(Default)]
pub struct InFlight {
    next: AtomicU64,
    calls: Mutex<HashMap<u64, CallInFlight>>,
}

/// Removes its entry from [`InFlight`] and books the time spent on the
/// instance when dropped.
pub struct InFlightGuard<'a> {
    set: &'a InFlight,
    id: u64,
    instance: Arc<PluginInstance>,
    callback: &'static str,
    started: Instant,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.set.calls.lock().remove(&self.id);
        self.instance
            .record_callback(self.callback, self.started.elapsed());
    }
}

impl InFlight {
    /// Records a call until the guard is dropped.
    pub fn enter(
        &self,
        instance: &Arc<PluginInstance>,
        callback: &'static str,
        detail: &str,
        limit: Duration,
    ) -> InFlightGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        self.calls.lock().insert(
            id,
            CallInFlight {
                instance: instance.id,
                plugin: instance.name.clone(),
                callback,
                detail: detail.to_owned(),
                thread: std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_owned(),
                started,
                limit,
                stall_reported: false,
                hang_reported: false,
            },
        );
        InFlightGuard {
            set: self,
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
        for call in calls.values_mut() {
            if !call.stall_reported && call.started.elapsed() > threshold {
                call.stall_reported = true;
                out.push(call.clone());
            }
        }
        out
    }

    /// Calls busy longer than their own deadline and not reported as hung
    /// yet; marks them reported.
    pub fn take_hung(&self) -> Vec<CallInFlight> {
        let mut calls = self.calls.lock();
        let mut out = Vec::new();
        for call in calls.values_mut() {
            if !call.hang_reported && call.started.elapsed() > call.limit {
                call.hang_reported = true;
                out.push(call.clone());
            }
        }
        out
    }

    /// Snapshot of every call in progress.
    pub fn snapshot(&self) -> Vec<CallInFlight> {
        self.calls.lock().values().cloned().collect()
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

/// A plugin callback to run: borrows the instance, returns the FFI result.
pub type Callback<R> = Box<dyn FnOnce(&PluginInstance) -> RResult<R, PluginError> + Send>;

/// Runs `f` on the blocking pool and waits up to `timeout` (sync callers).
pub fn invoke_sync<R: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    inflight: &Arc<InFlight>,
    instance: &Arc<PluginInstance>,
    callback: &'static str,
    detail: &str,
    timeout: Duration,
    f: Callback<R>,
) -> Result<R, PluginError> {
    if let Some(reason) = instance.quarantine_reason() {
        return Err(PluginError::unavailable(format!(
            "plugin {} is quarantined: {reason}",
            instance.name
        )));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (inst, set, detail_owned) = (instance.clone(), inflight.clone(), detail.to_owned());
    runtime.spawn_blocking(move || {
        let _guard = set.enter(&inst, callback, &detail_owned, timeout);
        let result = f(&inst).into_result();
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(timeout_error(&instance.name, callback, timeout)),
    }
}

/// Runs `f` on the blocking pool and waits up to `timeout` (async callers).
pub async fn invoke_async<R: Send + 'static>(
    inflight: &Arc<InFlight>,
    instance: &Arc<PluginInstance>,
    callback: &'static str,
    detail: &str,
    timeout: Duration,
    f: Callback<R>,
) -> Result<R, PluginError> {
    if let Some(reason) = instance.quarantine_reason() {
        return Err(PluginError::unavailable(format!(
            "plugin {} is quarantined: {reason}",
            instance.name
        )));
    }
    let (inst, set, detail_owned) = (instance.clone(), inflight.clone(), detail.to_owned());
    let task = tokio::task::spawn_blocking(move || {
        let _guard = set.enter(&inst, callback, &detail_owned, timeout);
        f(&inst).into_result()
    });
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(PluginError::new(
            ErrorKind::Panicked,
            format!("host task failed: {join}"),
        )),
        Err(_) => Err(timeout_error(&instance.name, callback, timeout)),
    }
}
