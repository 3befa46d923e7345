//! The plugin supervisor: loads, starts, stops, replaces and unloads plugin
//! instances — the operations of the [`PluginManager`] that need the host
//! core (the host handle a plugin receives, the blocking pool, reports).
//! The manager's tables live in `plugins/manager.rs`, below the core.
//!
//! Replacement: load and construct the new library first; on failure keep
//! the old instance running and record the error; on success stop the old
//! instance, revoke its services, subscriptions, routes and observer, then
//! start the new one. Libraries are never unloaded: each replacement leaves
//! one mapped copy behind (see `plugins/loader.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::{RArc, RStr};
use parking_lot::Mutex;
use plugin_abi::{HostApi_TO, PluginState};
use serde_json::json;

use super::breaker::{Breaker, Bulkhead, CircuitState};
use super::host_api::HostApiImpl;
use super::invoke::{humanize, invoke_sync, Admission, Call};
use super::loader::{self, LoadError, LoadedLibrary};
use super::manager::{
    file_stem, ms, FileEntry, Fingerprint, PluginInstance, PluginManager, Status,
};
use crate::core::HostCore;
use crate::logger;
use crate::tracecontext::{self, SpanContext};

impl PluginManager {
    /// Loads (or reloads) `file`. Never panics; failures end up in the
    /// entry's error and in the log.
    ///
    /// Traced as a `load` span (child of the thread's current context: the
    /// startup trace during the initial scan, else a new root) covering
    /// load, construction and start, with a `start` child span.
    pub fn load_file(&self, core: &Arc<HostCore>, file: &Path) {
        let cache = core.config.data_dir.join("plugin-cache");
        self.load_from(core, file, |file| loader::load(file, &cache));
    }

    /// [`PluginManager::load_file`] with `open` as the library loader: the
    /// host passes [`loader::load`]; the unit tests pass a root module
    /// built in-process, so the whole life cycle runs without a `.so`.
    pub fn load_from(
        &self,
        core: &Arc<HostCore>,
        file: &Path,
        open: impl FnOnce(&Path) -> Result<LoadedLibrary, LoadError>,
    ) {
        let _serial = self.load_lock.lock();
        let parent = tracecontext::current();
        let span = core.new_span(parent.as_ref());
        let began = Instant::now();
        let (name, error) = {
            let _current = tracecontext::enter(Some(span));
            self.load_file_traced(core, file, span, open)
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
        open: impl FnOnce(&Path) -> Result<LoadedLibrary, LoadError>,
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
        let lib = match open(file) {
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
        self.live.rcu(|live| {
            let mut live = HashMap::clone(live);
            live.insert(id, instance.clone());
            live
        });
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
                core.report_plugin_error(
                    "plugin_start",
                    &instance.name,
                    &msg,
                    e.panic.as_ref().into_option(),
                );
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
                core.report_plugin_error(
                    "plugin_stop",
                    &instance.name,
                    &msg,
                    e.panic.as_ref().into_option(),
                );
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
        self.live.rcu(|live| {
            let mut live = HashMap::clone(live);
            live.remove(&instance.id);
            live
        });
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
