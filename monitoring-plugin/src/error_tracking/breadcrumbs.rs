//! Per-plugin breadcrumb rings: what each plugin did just before it failed.
//!
//! The host reports log lines, bus events and service calls as they happen;
//! each plugin keeps only its last `capacity` (default 50) entries, so a
//! captured error can carry the context of its own plugin at O(1) cost per
//! record and bounded memory (at most `max_plugins` rings; crumbs for further
//! plugins are dropped and counted).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::event::{limits, truncate_chars, Breadcrumb};

/// Default entries kept per plugin.
pub const DEFAULT_CAPACITY: usize = 50;
/// Default number of plugins with a ring.
pub const DEFAULT_MAX_PLUGINS: usize = 1024;

/// Ring buffers of breadcrumbs, one per plugin.
#[derive(Debug)]
pub struct BreadcrumbRing {
    capacity: usize,
    max_plugins: usize,
    rings: Mutex<HashMap<String, VecDeque<Breadcrumb>>>,
    dropped: AtomicU64,
}

impl Default for BreadcrumbRing {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl BreadcrumbRing {
    /// Rings of `capacity` entries per plugin.
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_MAX_PLUGINS)
    }

    /// Rings of `capacity` entries for at most `max_plugins` plugins.
    pub fn with_limits(capacity: usize, max_plugins: usize) -> Self {
        BreadcrumbRing {
            capacity: capacity.max(1),
            max_plugins,
            rings: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Appends a breadcrumb to `plugin`'s ring, evicting its oldest entry
    /// when full. Long messages are truncated.
    pub fn record(&self, plugin: &str, mut crumb: Breadcrumb) {
        if let Some(m) = &mut crumb.message {
            if m.len() > 1024 {
                *m = truncate_chars(m, 1024);
            }
        }
        if crumb.category.len() > limits::MAX_SHORT_CHARS {
            crumb.category = truncate_chars(&crumb.category, limits::MAX_SHORT_CHARS);
        }
        let mut rings = self.rings.lock();
        if !rings.contains_key(plugin) && rings.len() >= self.max_plugins {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ring = rings
            .entry(plugin.to_string())
            .or_insert_with(|| VecDeque::with_capacity(self.capacity));
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(crumb);
    }

    /// The plugin's breadcrumbs, oldest first.
    pub fn snapshot(&self, plugin: &str) -> Vec<Breadcrumb> {
        self.rings
            .lock()
            .get(plugin)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets a plugin's ring (e.g. when it is unloaded).
    pub fn clear(&self, plugin: &str) {
        self.rings.lock().remove(plugin);
    }

    /// Breadcrumbs dropped because `max_plugins` rings already existed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_tracking::event::Level;

    #[test]
    fn keeps_last_entries_per_plugin() {
        let ring = BreadcrumbRing::with_limits(3, 2);
        for i in 0..5 {
            ring.record("a", Breadcrumb::log(Level::Info, format!("a{i}")));
        }
        ring.record("b", Breadcrumb::event("topic.x"));
        ring.record("c", Breadcrumb::event("dropped"));
        let a: Vec<_> = ring
            .snapshot("a")
            .into_iter()
            .filter_map(|b| b.message)
            .collect();
        assert_eq!(a, ["a2", "a3", "a4"]);
        assert_eq!(ring.snapshot("b").len(), 1);
        assert!(ring.snapshot("c").is_empty());
        assert_eq!(ring.dropped(), 1);
        ring.clear("a");
        assert!(ring.snapshot("a").is_empty());
    }
}
