//! The plugin manager: one entry per plugin file, one live instance per
//! entry, generations on replacement, states and errors for the API.
//!
//! Replacement follows DESIGN.md §2.3: load and construct the new library
//! first; on failure keep the old instance running and record the error; on
//! success stop the old instance, revoke its services, subscriptions,
//! routes and observer, then start the new one. Libraries are never
//! unloaded (§2.4): each replacement leaves one mapped copy behind.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use abi_stable::std_types::{RArc, RStr};
use parking_lot::{Mutex, RwLock};
use plugin_abi::{HealthStatus, HostApi_TO, PluginBox, PluginState};
use serde_json::json;

use super::breaker::{Breaker, Bulkhead, BulkheadSnapshot, CircuitSnapshot, CircuitState};
use super::host_api::HostApiImpl;
use super::invoke::{humanize, invoke_sync, Admission, Call};
use super::loader;
use crate::core::HostCore;
use crate::logger;
use crate::tracecontext::{self, SpanContext};

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
struct Status {
    state: PluginState,
    error: Option<String>,
    start_ms: Option<f64>,
    health: Option<(HealthStatus, String)>,
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
    status: Mutex<Status>,
    callback_stats: [CallbackStat; CALLBACKS.len()],
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
struct CallbackStat {
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

struct FileEntry {
    name: Option<String>,
    generation: u32,
    instance: Option<Arc<PluginInstance>>,
    failure: Option<String>,
    fingerprint: Option<Fingerprint>,
    present: bool,
}

/// A plugin as listed by the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginSummary {
    /// Plugin name (the file stem when the file never loaded).
    pub name: String,
    /// The plugin file.
    pub file: String,
    /// `loaded`, `started`, `stopped` or `error`.
    pub state: &'static str,
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
    /// The plugin's own last health report.
    pub health: Option<serde_json::Value>,
    /// Whether the file is still in the plugins directory.
    pub file_present: bool,
    /// Time spent in each callback of the current instance.
    pub callbacks: serde_json::Value,
}

/// All plugins.
#[derive(Default)]
pub struct PluginManager {
    entries: Mutex<BTreeMap<PathBuf, FileEntry>>,
    live: RwLock<HashMap<u64, Arc<PluginInstance>>>,
    next_id: AtomicU64,
    seq: AtomicU64,
    load_lock: Mutex<()>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

impl PluginManager {
    /// A live (not revoked) instance by id.
    pub fn live(&self, id: u64) -> Option<Arc<PluginInstance>> {
        self.live.read().get(&id).cloned()
    }

    /// Every live instance.
    pub fn live_instances(&self) -> Vec<Arc<PluginInstance>> {
        self.live.read().values().cloned().collect()
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

    /// Loads (or reloads) `file`. Never panics; failures end up in the
    /// entry's error and in the log.
    ///
    /// Traced as a `load` span (child of the thread's current context: the
    /// startup trace during the initial scan, else a new root) covering
    /// load, construction and start, with a `start` child span.
    pub fn load_file(&self, core: &Arc<HostCore>, file: &Path) {
        let _serial = self.load_lock.lock();
        let parent = tracecontext::current();
        let span = core.new_span(parent.as_ref());
        let began = Instant::now();
        let (name, error) = {
            let _current = tracecontext::enter(Some(span));
            self.load_file_traced(core, file, span)
        };
        let name: Arc<str> = Arc::from(name.unwrap_or_else(|| file_stem(file)).as_str());
        core.report_lifecycle("load", &name, span, parent.as_ref(), began.elapsed(), error);
    }

    /// The body of [`PluginManager::load_file`]; returns the plugin name
    /// (when known) and the error, if it failed.
    fn load_file_traced(
        &self,
        core: &Arc<HostCore>,
        file: &Path,
        load_span: SpanContext,
    ) -> (Option<String>, Option<String>) {
        let fingerprint = Fingerprint::of(file);
        let generation = {
            let mut entries = self.entries.lock();
            let entry = entries.entry(file.to_owned()).or_insert(FileEntry {
                name: None,
                generation: 0,
                instance: None,
                failure: None,
                fingerprint: None,
                present: true,
            });
            entry.present = true;
            entry.fingerprint = fingerprint;
            entry.generation + 1
        };
        let started = Instant::now();
        let lib = match loader::load(file, &core.config.data_dir.join("plugin-cache")) {
            Ok(lib) => lib,
            Err(e) => {
                let msg = e.to_string();
                self.fail(core, file, None, msg.clone());
                return (None, Some(msg));
            }
        };
        let name = lib.info.name.to_string();
        if let Some(other) = self.name_taken_by_other_file(&name, file) {
            let msg = format!(
                "{}: plugin name {name:?} is already provided by {}",
                file.display(),
                other.display()
            );
            self.fail(core, file, Some(&name), msg.clone());
            return (Some(name), Some(msg));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = HostApi_TO::from_ptr(
            RArc::new(HostApiImpl::new(
                Arc::downgrade(core),
                Arc::from(name.as_str()),
                id,
            )),
            abi_stable::sabi_trait::TD_Opaque,
        );
        let config = core.config.plugin_config(&name);
        let constructor = lib.module.new();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        core.runtime.spawn_blocking(move || {
            let result = constructor(handle, RStr::from(config.as_str())).into_result();
            let _ = tx.send(result);
        });
        let timeout = core.config.callback_timeout();
        let plugin = match rx.recv_timeout(timeout) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let msg = format!(
                    "{}: constructor of plugin {name} failed: {e}",
                    file.display()
                );
                self.fail(core, file, Some(&name), msg.clone());
                return (Some(name), Some(msg));
            }
            Err(_) => {
                let msg = format!(
                    "{}: constructor of plugin {name} did not return within {}",
                    file.display(),
                    humanize(timeout)
                );
                self.fail(core, file, Some(&name), msg.clone());
                return (Some(name), Some(msg));
            }
        };
        let instance = Arc::new(PluginInstance {
            id,
            name: Arc::from(name.as_str()),
            key: crate::observer::intern(&name),
            version: lib.info.version.to_string(),
            abi_version: lib.info.abi_version.to_string(),
            description: lib.info.description.to_string(),
            file: file.to_owned(),
            copy: lib.copy.clone(),
            generation,
            plugin,
            loaded_at_ms: crate::time::now_unix_ms(),
            load_ms: ms(started.elapsed()),
            load_seq: self.seq.fetch_add(1, Ordering::Relaxed),
            ticking: AtomicBool::new(false),
            breaker: Breaker::new(
                Arc::from(name.as_str()),
                id,
                &core.config.host.resilience,
                core.circuit_sender(),
            ),
            bulkhead: Bulkhead::new(
                Arc::from(name.as_str()),
                core.config.host.resilience.max_in_flight,
            ),
            status: Mutex::new(Status {
                state: PluginState::Loaded,
                error: None,
                start_ms: None,
                health: None,
            }),
            callback_stats: Default::default(),
        });
        let old = {
            let mut entries = self.entries.lock();
            let entry = entries.get_mut(file).expect("entry created above");
            let old = entry.instance.take();
            entry.instance = Some(instance.clone());
            entry.generation = generation;
            entry.name = Some(name.clone());
            entry.failure = None;
            old
        };
        if let Some(old) = old {
            if self.live(old.id).is_some() {
                self.stop_instance(core, &old, "replaced by a new generation");
            }
        }
        self.live.write().insert(id, instance.clone());
        core.plugin_state_changed(&instance, "loaded");
        logger::info(
            "plugin_manager",
            "plugin loaded",
            json!({"name": name, "version": instance.version, "generation": generation,
                   "file": file.display().to_string(), "load_ms": instance.load_ms}),
        );
        let start_began = Instant::now();
        let start_span = load_span.child();
        let result = invoke_sync(
            &**core,
            Call {
                instance: &instance,
                callback: "start",
                detail: "",
                timeout,
            },
            Admission::lifecycle(&instance),
            Box::new(move |inst: &PluginInstance| {
                let _current = tracecontext::enter(Some(start_span));
                inst.plugin.start()
            }),
        );
        instance.status.lock().start_ms = Some(ms(start_began.elapsed()));
        core.report_lifecycle(
            "start",
            &instance.name,
            start_span,
            Some(&load_span),
            start_began.elapsed(),
            result.as_ref().err().map(|e| e.to_string()),
        );
        let failure = result.as_ref().err().map(|e| format!("start failed: {e}"));
        match result {
            Ok(()) => {
                instance.set_state(PluginState::Started, None);
                core.plugin_state_changed(&instance, "started");
                logger::info(
                    "plugin_manager",
                    "plugin started",
                    json!({"name": name, "generation": generation, "start_ms": ms(start_began.elapsed())}),
                );
            }
            Err(e) => {
                let msg = format!("start failed: {e}");
                self.revoke(core, &instance);
                instance.set_state(PluginState::Error, Some(msg.clone()));
                core.plugin_state_changed(&instance, "error");
                core.report_error("plugin_start", &instance.name, &msg);
                logger::error(
                    "plugin_manager",
                    "plugin failed to start",
                    json!({"name": name, "error": msg}),
                );
            }
        }
        (Some(name), failure)
    }

    fn name_taken_by_other_file(&self, name: &str, file: &Path) -> Option<PathBuf> {
        let entries = self.entries.lock();
        entries
            .iter()
            .find(|(f, e)| {
                f.as_path() != file
                    && e.present
                    && e.name.as_deref() == Some(name)
                    && e.instance
                        .as_ref()
                        .is_some_and(|i| self.live(i.id).is_some())
            })
            .map(|(f, _)| f.clone())
    }

    fn fail(&self, core: &Arc<HostCore>, file: &Path, name: Option<&str>, message: String) {
        let display_name = {
            let mut entries = self.entries.lock();
            let entry = entries.get_mut(file);
            match entry {
                Some(e) => {
                    e.failure = Some(message.clone());
                    if e.name.is_none() {
                        e.name = name.map(str::to_owned);
                    }
                    e.name.clone()
                }
                None => name.map(str::to_owned),
            }
        }
        .unwrap_or_else(|| file_stem(file));
        let still_running = self
            .entries
            .lock()
            .get(file)
            .and_then(|e| e.instance.clone())
            .filter(|i| self.live(i.id).is_some());
        logger::error(
            "plugin_manager",
            "plugin failed to load",
            json!({"file": file.display().to_string(), "error": message,
                   "kept_running_generation": still_running.as_ref().map(|i| i.generation)}),
        );
        core.report_error("plugin_load", &display_name, &message);
        core.publish_internal(
            "internal.plugin.error",
            json!({"name": display_name, "file": file.display().to_string(), "error": message}),
        );
    }

    /// Stops a live instance and revokes everything it registered.
    pub fn stop_instance(
        &self,
        core: &Arc<HostCore>,
        instance: &Arc<PluginInstance>,
        reason: &str,
    ) {
        // A `stop` span: child of the current context (the new generation's
        // `load` span on a replacement), else a root.
        let parent = tracecontext::current();
        let span = core.new_span(parent.as_ref());
        let began = Instant::now();
        // A plugin whose circuit is not closed is hung or recovering from a
        // hang: `stop` would most likely hang too and delay the replacement
        // or the shutdown by a whole deadline, so it is not called.
        let result = match instance.breaker.state() {
            CircuitState::Closed => invoke_sync(
                &**core,
                Call {
                    instance,
                    callback: "stop",
                    detail: reason,
                    timeout: core.config.callback_timeout(),
                },
                Admission::lifecycle(instance),
                Box::new(move |inst: &PluginInstance| {
                    let _current = tracecontext::enter(Some(span));
                    inst.plugin.stop()
                }),
            ),
            state => Err(plugin_abi::PluginError::unavailable(format!(
                "stop not called: the circuit of plugin {} is {}",
                instance.name,
                state.as_str()
            ))),
        };
        core.report_lifecycle(
            "stop",
            &instance.name,
            span,
            parent.as_ref(),
            began.elapsed(),
            result.as_ref().err().map(|e| e.to_string()),
        );
        self.revoke(core, instance);
        match result {
            Ok(()) => {
                if instance.state() != PluginState::Error {
                    instance.set_state(PluginState::Stopped, None);
                }
            }
            Err(e) => {
                let msg = format!("stop failed: {e}");
                logger::warn(
                    "plugin_manager",
                    "plugin failed to stop cleanly",
                    json!({"name": &*instance.name, "error": msg}),
                );
                core.report_error("plugin_stop", &instance.name, &msg);
                instance.set_state(PluginState::Stopped, Some(msg));
            }
        }
        core.plugin_state_changed(instance, "stopped");
        logger::info(
            "plugin_manager",
            "plugin stopped",
            json!({"name": &*instance.name, "generation": instance.generation, "reason": reason}),
        );
    }

    /// Revokes services, routes, subscriptions and observer of an instance.
    fn revoke(&self, core: &Arc<HostCore>, instance: &Arc<PluginInstance>) {
        self.live.write().remove(&instance.id);
        core.revoke_instance(instance);
    }

    /// The file was removed: stop its plugin.
    pub fn unload_file(&self, core: &Arc<HostCore>, file: &Path) {
        let _serial = self.load_lock.lock();
        let instance = {
            let mut entries = self.entries.lock();
            let Some(entry) = entries.get_mut(file) else {
                return;
            };
            entry.present = false;
            entry.fingerprint = None;
            entry.instance.clone()
        };
        if let Some(instance) = instance {
            if self.live(instance.id).is_some() {
                self.stop_instance(core, &instance, "file removed");
            } else if instance.state() != PluginState::Stopped {
                // It had failed (and was revoked) already: now it is gone.
                instance.set_state(PluginState::Stopped, None);
                core.plugin_state_changed(&instance, "stopped");
            }
        }
        logger::info(
            "plugin_manager",
            "plugin file removed",
            json!({"file": file.display().to_string()}),
        );
    }

    /// Stops every live plugin in reverse load order.
    pub fn stop_all(&self, core: &Arc<HostCore>) {
        let _serial = self.load_lock.lock();
        let mut live = self.live_instances();
        live.sort_by_key(|i| std::cmp::Reverse(i.load_seq));
        for instance in live {
            self.stop_instance(core, &instance, "host shutdown");
        }
    }
}

fn file_stem(file: &Path) -> String {
    file.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("unknown")
        .to_owned()
}

fn summarize(file: &Path, e: &FileEntry) -> PluginSummary {
    let name = e.name.clone().unwrap_or_else(|| file_stem(file));
    match &e.instance {
        Some(i) => {
            let s = i.status.lock().clone();
            PluginSummary {
                name,
                file: file.display().to_string(),
                state: s.state.as_str(),
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
                health: s
                    .health
                    .map(|(st, m)| json!({"status": st.as_str(), "message": m})),
                file_present: e.present,
                callbacks: i.callback_stats_json(),
            }
        }
        None => PluginSummary {
            name,
            file: file.display().to_string(),
            // No instance: failed, removed, or (briefly) still loading.
            state: match (e.present, e.failure.is_some()) {
                (true, true) => PluginState::Error.as_str(),
                (true, false) => PluginState::Loaded.as_str(),
                (false, _) => PluginState::Stopped.as_str(),
            },
            error: e.failure.clone(),
            generation: e.generation,
            version: None,
            abi_version: None,
            description: None,
            load_ms: None,
            start_ms: None,
            loaded_at_ms: None,
            circuit: None,
            bulkhead: None,
            health: None,
            file_present: e.present,
            callbacks: serde_json::Value::Null,
        },
    }
}
