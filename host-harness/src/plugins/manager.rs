//! The plugin manager: one entry per plugin file, one live instance per
//! entry, generations on replacement, states and errors for the API.
//!
//! These are the manager's tables and the instance's state; loading,
//! starting, stopping and replacing instances needs the host core and lives
//! in `plugins/supervisor.rs`, so this file sits below the core.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use plugin_abi::{HealthStatus, PluginBox, PluginState};
use serde_json::json;

use super::breaker::{Breaker, Bulkhead, BulkheadSnapshot, CircuitSnapshot};

/// Size and modification time of a plugin file, to notice changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// File size.
    pub len: u64,
    /// Modification time.
    pub modified: SystemTime,
}

impl Fingerprint {
    /// Reads a file's fingerprint.
    pub fn of(path: &Path) -> Option<Fingerprint> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        Some(Fingerprint {
            len: meta.len(),
            modified: meta.modified().ok()?,
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct Status {
    pub(super) state: PluginState,
    pub(super) error: Option<String>,
    pub(super) start_ms: Option<f64>,
    pub(super) health: Option<(HealthStatus, String)>,
}

/// One constructed plugin object and what the host knows about it.
pub struct PluginInstance {
    /// Unique id of this instance (never reused).
    pub id: u64,
    /// Plugin name.
    pub name: Arc<str>,
    /// The name interned for observer reports.
    pub key: crate::observer::Name,
    /// Plugin version.
    pub version: String,
    /// plugin-abi version it was built against.
    pub abi_version: String,
    /// What it does.
    pub description: String,
    /// The file in the plugins directory.
    pub file: PathBuf,
    /// The cache copy that was loaded.
    pub copy: PathBuf,
    /// 1 for the first load of a file, +1 per replacement.
    pub generation: u32,
    /// The FFI object.
    pub plugin: PluginBox,
    /// When it was loaded (Unix ms).
    pub loaded_at_ms: u64,
    /// Load + construct time, ms.
    pub load_ms: f64,
    /// Order of loading, for reverse-order shutdown.
    pub load_seq: u64,
    /// Whether a tick is running now.
    pub ticking: AtomicBool,
    /// The circuit breaker: stops calls while the plugin is hung.
    pub breaker: Breaker,
    /// The cap on calls in flight to this instance.
    pub bulkhead: Arc<Bulkhead>,
    pub(super) status: Mutex<Status>,
    pub(super) callback_stats: [CallbackStat; CALLBACKS.len()],
}

/// The plugin callbacks the host times, in a fixed order.
pub const CALLBACKS: [&str; 8] = [
    "start",
    "stop",
    "handle_service",
    "handle_http",
    "on_event",
    "on_observations",
    "tick",
    "health",
];

/// Time spent in one callback of one instance.
#[derive(Default)]
pub(super) struct CallbackStat {
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl PluginInstance {
    /// Current state.
    pub fn state(&self) -> PluginState {
        self.status.lock().state
    }

    /// Current error message, if any.
    pub fn error(&self) -> Option<String> {
        self.status.lock().error.clone()
    }

    pub(crate) fn set_state(&self, state: PluginState, error: Option<String>) -> bool {
        let mut s = self.status.lock();
        let changed = s.state != state || s.error != error;
        s.state = state;
        s.error = error;
        changed
    }

    pub(crate) fn set_health(&self, status: HealthStatus, message: String) {
        self.status.lock().health = Some((status, message));
    }

    /// Books time spent in a callback (two relaxed atomic adds).
    pub fn record_callback(&self, callback: &str, spent: Duration) {
        if let Some(i) = CALLBACKS.iter().position(|c| *c == callback) {
            let stat = &self.callback_stats[i];
            stat.nanos
                .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
            stat.calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `{callback: {"seconds": total, "calls": n}}` for every callback used.
    pub fn callback_stats_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (i, name) in CALLBACKS.iter().enumerate() {
            let calls = self.callback_stats[i].calls.load(Ordering::Relaxed);
            if calls > 0 {
                let secs = self.callback_stats[i].nanos.load(Ordering::Relaxed) as f64 / 1e9;
                map.insert((*name).to_owned(), json!({"seconds": secs, "calls": calls}));
            }
        }
        serde_json::Value::Object(map)
    }
}

pub(super) struct FileEntry {
    pub(super) name: Option<String>,
    pub(super) generation: u32,
    pub(super) instance: Option<Arc<PluginInstance>>,
    pub(super) failure: Option<String>,
    pub(super) fingerprint: Option<Fingerprint>,
    pub(super) present: bool,
}

/// A plugin as listed by the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginSummary {
    /// Plugin name (the file stem when the file never loaded).
    pub name: String,
    /// The plugin file.
    pub file: String,
    /// Its life-cycle state, written `loaded`, `started`, `stopped` or
    /// `error`.
    #[serde(serialize_with = "state_text")]
    pub state: PluginState,
    /// Error message when in error, or the last failed reload.
    pub error: Option<String>,
    /// Generation of the running instance (0 if none ever loaded).
    pub generation: u32,
    /// Plugin version.
    pub version: Option<String>,
    /// plugin-abi version.
    pub abi_version: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// Load + construct time of the instance, ms.
    pub load_ms: Option<f64>,
    /// Start time of the instance, ms.
    pub start_ms: Option<f64>,
    /// When the instance was loaded (Unix ms).
    pub loaded_at_ms: Option<u64>,
    /// The circuit breaker of the instance (`null` when none is loaded).
    pub circuit: Option<CircuitSnapshot>,
    /// The bulkhead of the instance (`null` when none is loaded).
    pub bulkhead: Option<BulkheadSnapshot>,
    /// The plugin's own last health report, written
    /// `{"status": "healthy", "message": "..."}`.
    #[serde(serialize_with = "health_json")]
    pub health: Option<(HealthStatus, String)>,
    /// Whether the file is still in the plugins directory.
    pub file_present: bool,
    /// Time spent in each callback of the current instance.
    pub callbacks: serde_json::Value,
}

fn state_text<S: serde::Serializer>(state: &PluginState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

fn health_json<S: serde::Serializer>(
    health: &Option<(HealthStatus, String)>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    health
        .as_ref()
        .map(|(status, message)| json!({"status": status.as_str(), "message": message}))
        .serialize(s)
}

/// All plugins.
#[derive(Default)]
pub struct PluginManager {
    pub(super) entries: Mutex<BTreeMap<PathBuf, FileEntry>>,
    /// The live instances, looked up on every call: an immutable snapshot
    /// read without a lock, replaced by a changed copy (`rcu`, which
    /// retries a racing change) when an instance starts or is revoked.
    pub(super) live: ArcSwap<HashMap<u64, Arc<PluginInstance>>>,
    pub(super) next_id: AtomicU64,
    pub(super) seq: AtomicU64,
    pub(super) load_lock: Mutex<()>,
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

impl PluginManager {
    /// A live (not revoked) instance by id.
    pub fn live(&self, id: u64) -> Option<Arc<PluginInstance>> {
        self.live.load().get(&id).cloned()
    }

    /// Every live instance.
    pub fn live_instances(&self) -> Vec<Arc<PluginInstance>> {
        self.live.load().values().cloned().collect()
    }

    /// The fingerprint the current entry of `file` was loaded (or failed) with.
    pub fn known_fingerprint(&self, file: &Path) -> Option<Fingerprint> {
        self.entries
            .lock()
            .get(file)
            .filter(|e| e.present)
            .and_then(|e| e.fingerprint)
    }

    /// Files with a present entry.
    pub fn present_files(&self) -> Vec<PathBuf> {
        self.entries
            .lock()
            .iter()
            .filter(|(_, e)| e.present)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Lists every plugin known to the host.
    pub fn list(&self) -> Vec<PluginSummary> {
        let entries = self.entries.lock();
        let mut out: Vec<PluginSummary> =
            entries.iter().map(|(file, e)| summarize(file, e)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.file.cmp(&b.file)));
        out
    }
}

pub(super) fn file_stem(file: &Path) -> String {
    file.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("unknown")
        .to_owned()
}

fn state_without_instance(e: &FileEntry) -> PluginState {
    match (e.present, e.failure.is_some()) {
        (true, true) => PluginState::Error,
        (true, false) => PluginState::Loaded,
        (false, _) => PluginState::Stopped,
    }
}

impl PluginSummary {
    /// The summary of `file` with no instance loaded: nothing but its
    /// name and `state` (no error, generation 0, file present).
    fn without_instance(name: String, file: &Path, state: PluginState) -> Self {
        PluginSummary {
            name,
            file: file.display().to_string(),
            state,
            error: None,
            generation: 0,
            version: None,
            abi_version: None,
            description: None,
            load_ms: None,
            start_ms: None,
            loaded_at_ms: None,
            circuit: None,
            bulkhead: None,
            health: None,
            file_present: true,
            callbacks: serde_json::Value::Null,
        }
    }

    /// The typed summary plugins get from `HostApi::list_plugins` (the
    /// fields plugins read; the HTTP API serializes `self`).
    pub fn to_abi(&self) -> plugin_abi::PluginSummary {
        use abi_stable::std_types::RString;
        let text = |s: &Option<String>| s.as_deref().map(RString::from).into();
        plugin_abi::PluginSummary {
            name: self.name.as_str().into(),
            version: text(&self.version),
            state: plugin_abi::PluginState_NE::new(self.state),
            generation: self.generation,
            error: text(&self.error),
            file_present: self.file_present,
            health: self
                .health
                .as_ref()
                .map(|(status, message)| plugin_abi::HealthReport {
                    status: *status,
                    message: message.as_str().into(),
                })
                .into(),
            circuit: self
                .circuit
                .as_ref()
                .map(|c| plugin_abi::CircuitSummary {
                    state: c.state,
                    reason: text(&c.reason),
                    opened_total: c.opened_total,
                    rejected_total: c.rejected_total,
                })
                .into(),
            bulkhead: self
                .bulkhead
                .as_ref()
                .map(|b| plugin_abi::BulkheadSummary {
                    in_flight: b.in_flight as u64,
                    cap: b.cap as u64,
                    rejected_total: b.rejected_total,
                    depth_rejected_total: b.depth_rejected_total,
                })
                .into(),
            callbacks: self
                .callbacks
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, stat)| plugin_abi::CallbackTime {
                    callback: name.as_str().into(),
                    calls: stat["calls"].as_u64().unwrap_or(0),
                    seconds: stat["seconds"].as_f64().unwrap_or(0.0),
                })
                .collect(),
        }
    }
}

fn summarize(file: &Path, e: &FileEntry) -> PluginSummary {
    let name = e.name.clone().unwrap_or_else(|| file_stem(file));
    match &e.instance {
        Some(i) => {
            let s = i.status.lock().clone();
            PluginSummary {
                name,
                file: file.display().to_string(),
                state: s.state,
                error: s.error.or_else(|| e.failure.clone()),
                generation: i.generation,
                version: Some(i.version.clone()),
                abi_version: Some(i.abi_version.clone()),
                description: Some(i.description.clone()),
                load_ms: Some(i.load_ms),
                start_ms: s.start_ms,
                loaded_at_ms: Some(i.loaded_at_ms),
                circuit: Some(i.breaker.snapshot(Instant::now())),
                bulkhead: Some(i.bulkhead.snapshot()),
                health: s.health,
                file_present: e.present,
                callbacks: i.callback_stats_json(),
            }
        }
        // No instance: failed, removed, or (briefly) still loading.
        None => PluginSummary {
            error: e.failure.clone(),
            generation: e.generation,
            file_present: e.present,
            ..PluginSummary::without_instance(name, file, state_without_instance(e))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(state: PluginState, health: Option<(HealthStatus, String)>) -> PluginSummary {
        PluginSummary {
            health,
            ..PluginSummary::without_instance("p".into(), Path::new("p.so"), state)
        }
    }

    #[test]
    fn the_api_writes_state_and_health_as_text_from_the_typed_fields() {
        let json = serde_json::to_value(summary(
            PluginState::Error,
            Some((HealthStatus::Degraded, "slow disk".into())),
        ))
        .unwrap();
        assert_eq!(json["state"], "error");
        assert_eq!(
            json["health"],
            json!({"status": "degraded", "message": "slow disk"})
        );
        let json = serde_json::to_value(summary(PluginState::Started, None)).unwrap();
        assert_eq!(
            (&json["state"], &json["health"]),
            (&json!("started"), &json!(null))
        );
    }

    #[test]
    fn the_typed_summary_carries_the_same_state_and_health() {
        let abi = summary(
            PluginState::Error,
            Some((HealthStatus::Unhealthy, "down".into())),
        )
        .to_abi();
        assert_eq!(abi.state(), PluginState::Error);
        let health = abi.health.into_option().unwrap();
        assert_eq!(
            (health.status, health.message.as_str()),
            (HealthStatus::Unhealthy, "down")
        );
    }
}
