//! Watches the plugins directory: new files are loaded, changed files are
//! reloaded as a new generation, removed files are unloaded.
//!
//! File-system notifications (notify) wake the scanner when a file is
//! created, written, removed or renamed — never on mere reads: inotify
//! reports the scanner's own `read_dir` of the directory as an open event,
//! and rescanning on it would wake the scanner forever. Without
//! notifications the directory is polled every `plugin_scan_ms`; with them a
//! slow safety rescan (every [`SAFETY_RESCAN_FACTOR`] × `plugin_scan_ms`)
//! catches anything they miss. A file is only loaded once its size and
//! modification time have stayed the same for the settle time, so a library
//! still being written is never loaded half-way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::json;

use super::manager::Fingerprint;
use crate::core::HostCore;
use crate::logger;

/// With notifications working, the directory is still rescanned every
/// `plugin_scan_ms` × this factor, in case a notification was missed.
pub const SAFETY_RESCAN_FACTOR: u32 = 20;

/// Whether a file-system event can change the set of plugin files: creation,
/// modification (data, name, metadata such as the modification time) and
/// removal. Accesses (open, read, close) cannot — and the scanner's own
/// `read_dir` produces exactly those.
pub fn event_changes_files(kind: &EventKind) -> bool {
    !matches!(kind, EventKind::Access(_))
}

/// Whether a directory entry looks like a plugin library.
pub fn is_plugin_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let ext_ok = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib" | "dll")
    );
    !hidden && ext_ok && path.is_file()
}

fn list_plugin_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_plugin_file(p))
        .collect();
    files.sort();
    files
}

/// Loads every plugin file present now, in name order.
pub fn initial_scan(core: &Arc<HostCore>) {
    let dir = &core.config.plugins_dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        logger::error(
            "plugin_watcher",
            "cannot create plugins dir",
            json!({"dir": dir.display().to_string(), "error": e.to_string()}),
        );
    }
    for file in list_plugin_files(dir) {
        core.plugins.load_file(core, &file);
    }
}

/// Starts the watcher thread; it exits when `stop` is set.
pub fn spawn(core: Arc<HostCore>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("plugin-watcher".into())
        .spawn(move || run(&core, &stop))
}

fn run(core: &Arc<HostCore>, stop: &AtomicBool) {
    let dir = core.config.plugins_dir.clone();
    let (tx, rx) = crossbeam_channel::unbounded::<()>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Errors (e.g. an overflowed event queue) also wake the scanner: a
        // rescan is the safe answer to a lost notification.
        if res.is_err() || res.is_ok_and(|event| event_changes_files(&event.kind)) {
            let _ = tx.send(());
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|_| w));
    let notifier = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            logger::warn(
                "plugin_watcher",
                "file notifications unavailable; polling only",
                json!({"error": e.to_string()}),
            );
            None
        }
    };
    let settle = Duration::from_millis(core.config.host.plugin_settle_ms);
    let poll_every = Duration::from_millis(core.config.host.plugin_scan_ms);
    let scan_every = if notifier.is_some() {
        poll_every * SAFETY_RESCAN_FACTOR
    } else {
        poll_every
    };
    let mut pending: HashMap<PathBuf, (Fingerprint, Instant)> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        let wait = if pending.is_empty() {
            scan_every
        } else {
            (settle / 3).max(Duration::from_millis(20))
        };
        let _ = rx.recv_timeout(wait);
        while rx.try_recv().is_ok() {}
        if stop.load(Ordering::Acquire) {
            break;
        }
        let files = list_plugin_files(&dir);
        for file in &files {
            let Some(fp) = Fingerprint::of(file) else {
                continue;
            };
            if core.plugins.known_fingerprint(file) == Some(fp) {
                pending.remove(file);
                continue;
            }
            match pending.get(file) {
                Some((seen, since)) if *seen == fp => {
                    if since.elapsed() >= settle {
                        pending.remove(file);
                        core.plugins.load_file(core, file);
                    }
                }
                _ => {
                    pending.insert(file.clone(), (fp, Instant::now()));
                }
            }
        }
        pending.retain(|f, _| files.contains(f));
        for known in core.plugins.present_files() {
            if !files.contains(&known) {
                core.plugins.unload_file(core, &known);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn reads_of_the_directory_do_not_wake_the_scanner() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!event_changes_files(&kind), "{kind:?}");
        }
    }

    #[test]
    fn changes_to_files_wake_the_scanner() {
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(event_changes_files(&kind), "{kind:?}");
        }
    }
}
