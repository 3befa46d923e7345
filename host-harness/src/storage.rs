//! Embedded, persistent, namespaced key-value storage (redb).
//!
//! Values are JSON text. Every write is its own durable transaction: when
//! `set` returns `Ok`, the value has been committed with fsync and survives
//! `kill -9` of the host.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use redb::{Database, TableDefinition};

const KV: TableDefinition<(&str, &str), &str> = TableDefinition::new("kv");

/// Longest namespace or key, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 << 20;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The caller's namespace, key or value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The database could not be read or written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The host's key-value store.
///
/// After an I/O error (disk full, read-only file system) redb refuses every
/// further operation until the database is reopened, so the store marks
/// itself poisoned and reopens on the next operation: storage recovers by
/// itself once the disk does.
pub struct Storage {
    db: RwLock<Option<Arc<Database>>>,
    poisoned: AtomicBool,
    dir: PathBuf,
    path: PathBuf,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

fn check_name(what: &str, name: &str) -> Result<(), StorageError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(StorageError::Invalid(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes long"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(StorageError::Invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

fn open_db(path: &Path) -> Result<Database, StorageError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        StorageError::Unavailable(format!("cannot open {}: {e}", path.display()))
    };
    let db = Database::create(path).map_err(|e| unavailable(&e))?;
    let tx = db.begin_write().map_err(|e| unavailable(&e))?;
    tx.open_table(KV).map_err(|e| unavailable(&e))?;
    tx.commit().map_err(|e| unavailable(&e))?;
    Ok(db)
}

impl Storage {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join("homeconsole.redb");
        let db = open_db(&path)?;
        Ok(Storage {
            db: RwLock::new(Some(Arc::new(db))),
            poisoned: AtomicBool::new(false),
            dir: dir.to_owned(),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, reopening it first if an earlier I/O error
    /// poisoned it.
    fn db(&self) -> Result<Arc<Database>, StorageError> {
        if self.poisoned.load(Ordering::Acquire) {
            let mut slot = self.db.write();
            if self.poisoned.load(Ordering::Acquire) {
                // Drop our handle first: redb refuses a second open.
                slot.take();
                let db = open_db(&self.path)?;
                *slot = Some(Arc::new(db));
                self.poisoned.store(false, Ordering::Release);
            }
        }
        self.db
            .read()
            .clone()
            .ok_or_else(|| StorageError::Unavailable("database is being reopened".into()))
    }

    /// Maps a redb error and marks the database for reopening.
    fn fail(&self, e: impl std::fmt::Display) -> StorageError {
        self.poisoned.store(true, Ordering::Release);
        StorageError::Unavailable(e.to_string())
    }

    /// Reads a value.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, StorageError> {
        check_name("namespace", namespace)?;
        check_name("key", key)?;
        let db = self.db()?;
        let tx = db.begin_read().map_err(|e| self.fail(e))?;
        let table = tx.open_table(KV).map_err(|e| self.fail(e))?;
        let value = table.get((namespace, key)).map_err(|e| self.fail(e))?;
        Ok(value.map(|v| v.value().to_owned()))
    }

    /// Writes a JSON value durably.
    pub fn set(&self, namespace: &str, key: &str, value: &str) -> Result<(), StorageError> {
        check_name("namespace", namespace)?;
        check_name("key", key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StorageError::Invalid(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(value)
            .map_err(|e| StorageError::Invalid(format!("value is not valid JSON: {e}")))?;
        let db = self.db()?;
        let tx = db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = tx.open_table(KV).map_err(|e| self.fail(e))?;
            table
                .insert((namespace, key), value)
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))
    }

    /// Deletes a key; returns whether it existed.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<bool, StorageError> {
        check_name("namespace", namespace)?;
        check_name("key", key)?;
        let db = self.db()?;
        let tx = db.begin_write().map_err(|e| self.fail(e))?;
        let existed = {
            let mut table = tx.open_table(KV).map_err(|e| self.fail(e))?;
            let removed = table.remove((namespace, key)).map_err(|e| self.fail(e))?;
            removed.is_some()
        };
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(existed)
    }

    /// Lists the keys of a namespace that start with `prefix`, in order.
    pub fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_name("namespace", namespace)?;
        let db = self.db()?;
        let tx = db.begin_read().map_err(|e| self.fail(e))?;
        let table = tx.open_table(KV).map_err(|e| self.fail(e))?;
        let mut keys = Vec::new();
        for entry in table
            .range((namespace, prefix)..)
            .map_err(|e| self.fail(e))?
        {
            let (k, _) = entry.map_err(|e| self.fail(e))?;
            let (ns, key) = k.value();
            if ns != namespace || !key.starts_with(prefix) {
                break;
            }
            keys.push(key.to_owned());
        }
        Ok(keys)
    }

    /// Write-and-read probe used by health checks: checks that the data
    /// directory is writable and that the database commits and reads back.
    /// Returns how long it took.
    pub fn probe(&self) -> Result<Duration, StorageError> {
        let started = Instant::now();
        let marker = self.dir.join(".probe");
        std::fs::write(&marker, b"probe")
            .map_err(|e| StorageError::Unavailable(format!("data dir is not writable: {e}")))?;
        let _ = std::fs::remove_file(&marker);
        let stamp = format!("{}", started.elapsed().as_nanos());
        self.set("__probe", "probe", &stamp)?;
        match self.get("__probe", "probe")? {
            Some(v) if v == stamp => Ok(started.elapsed()),
            _ => Err(StorageError::Unavailable(
                "probe value did not read back".into(),
            )),
        }
    }
}

/// The storage isolation rule: a plugin may use the namespace named after
/// it, namespaces starting with `<name>-` or `<name>.`, and whatever
/// `[host.storage_grants]` gives it. Nothing else: another plugin's data is
/// out of reach unless granted.
pub fn namespace_allowed(
    plugin: &str,
    namespace: &str,
    grants: &std::collections::BTreeMap<String, Vec<String>>,
) -> bool {
    let own = namespace == plugin
        || namespace
            .strip_prefix(plugin)
            .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('.'));
    own || grants.get(plugin).is_some_and(|list| {
        list.iter().any(|g| match g.strip_suffix('*') {
            Some(prefix) => namespace.starts_with(prefix),
            None => g == namespace,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_isolation_rule() {
        let mut grants = std::collections::BTreeMap::new();
        grants.insert("backup".to_owned(), vec!["*".to_owned()]);
        grants.insert(
            "ui".to_owned(),
            vec!["demo-devices".to_owned(), "shared.*".to_owned()],
        );
        assert!(super::namespace_allowed("demo", "demo", &grants));
        assert!(super::namespace_allowed("demo", "demo-x", &grants));
        assert!(super::namespace_allowed("demo", "demo.x", &grants));
        assert!(!super::namespace_allowed("demo", "demolition", &grants));
        assert!(!super::namespace_allowed("demo", "monitoring", &grants));
        assert!(super::namespace_allowed("backup", "anything", &grants));
        assert!(super::namespace_allowed("ui", "demo-devices", &grants));
        assert!(super::namespace_allowed("ui", "shared.a", &grants));
        assert!(!super::namespace_allowed("ui", "demo-devices-2", &grants));
    }

    #[test]
    fn set_get_delete_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        s.set("a", "k1", "1").unwrap();
        s.set("a", "k2", r#"{"x":2}"#).unwrap();
        s.set("a", "z", "3").unwrap();
        s.set("b", "k1", "4").unwrap();
        assert_eq!(s.get("a", "k2").unwrap().as_deref(), Some(r#"{"x":2}"#));
        assert_eq!(s.get("a", "nope").unwrap(), None);
        assert_eq!(s.list_keys("a", "k").unwrap(), vec!["k1", "k2"]);
        assert_eq!(s.list_keys("a", "").unwrap(), vec!["k1", "k2", "z"]);
        assert!(s.delete("a", "k1").unwrap());
        assert!(!s.delete("a", "k1").unwrap());
        assert_eq!(s.list_keys("b", "").unwrap(), vec!["k1"]);
        s.probe().unwrap();
    }

    #[test]
    fn rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        assert!(matches!(
            s.set("a", "k", "not json"),
            Err(StorageError::Invalid(_))
        ));
        assert!(matches!(s.set("", "k", "1"), Err(StorageError::Invalid(_))));
        assert!(matches!(
            s.get("a", "bad\nkey"),
            Err(StorageError::Invalid(_))
        ));
        assert_eq!(s.get("a", "k").unwrap(), None);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            s.set("ns", "k", "\"v\"").unwrap();
        }
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get("ns", "k").unwrap().as_deref(), Some("\"v\""));
    }
}
