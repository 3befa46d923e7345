//! An in-memory [`KvStore`], for tests and for running without host storage.
//!
//! It can be told to fail reads or writes so the error paths of
//! [`IssueStore`](super::IssueStore) can be exercised.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::store::KvStore;

/// A `BTreeMap` behind a mutex, implementing [`KvStore`].
#[derive(Debug, Default)]
pub struct MemoryKvStore {
    map: Mutex<BTreeMap<String, String>>,
    fail_writes: AtomicBool,
    fail_reads: AtomicBool,
    writes: AtomicU64,
}

impl MemoryKvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every following `set`/`delete` fail (or succeed again).
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Makes every following `get`/`list_keys` fail (or succeed again).
    pub fn set_fail_reads(&self, fail: bool) {
        self.fail_reads.store(fail, Ordering::SeqCst);
    }

    /// Number of successful `set` calls so far.
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.lock().is_empty()
    }

    /// Total bytes of keys and values (to check that memory stays bounded).
    pub fn total_bytes(&self) -> usize {
        self.map.lock().iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl KvStore for MemoryKvStore {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err("injected read failure".into());
        }
        Ok(self.map.lock().get(key).cloned())
    }

    fn set(&self, key: &str, value_json: &str) -> Result<(), String> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err("injected write failure".into());
        }
        self.map
            .lock()
            .insert(key.to_string(), value_json.to_string());
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool, String> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err("injected write failure".into());
        }
        Ok(self.map.lock().remove(key).is_some())
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err("injected read failure".into());
        }
        Ok(self
            .map
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }
}
