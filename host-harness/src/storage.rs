//! Embedded, persistent, namespaced key-value storage (redb).
//!
//! Values are JSON text. Every write is its own durable transaction: when
//! `set` returns `Ok`, the value has been committed with fsync and survives
//! `kill -9` of the host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

/// The host's key-value store.
pub struct Storage {
    db: Database,
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

impl Storage {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let path = dir.join("homeconsole.redb");
        let db = Database::create(&path).map_err(|e| {
            StorageError::Unavailable(format!("cannot open {}: {e}", path.display()))
        })?;
        let tx = db.begin_write().map_err(unavailable)?;
        tx.open_table(KV).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(Storage {
            db,
            dir: dir.to_owned(),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads a value.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, StorageError> {
        check_name("namespace", namespace)?;
        check_name("key", key)?;
        let tx = self.db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(KV).map_err(unavailable)?;
        let value = table.get((namespace, key)).map_err(unavailable)?;
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
        let tx = self.db.begin_write().map_err(unavailable)?;
        {
            let mut table = tx.open_table(KV).map_err(unavailable)?;
            table.insert((namespace, key), value).map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)
    }

    /// Deletes a key; returns whether it existed.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<bool, StorageError> {
        check_name("namespace", namespace)?;
        check_name("key", key)?;
        let tx = self.db.begin_write().map_err(unavailable)?;
        let existed = {
            let mut table = tx.open_table(KV).map_err(unavailable)?;
            let removed = table.remove((namespace, key)).map_err(unavailable)?;
            removed.is_some()
        };
        tx.commit().map_err(unavailable)?;
        Ok(existed)
    }

    /// Lists the keys of a namespace that start with `prefix`, in order.
    pub fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_name("namespace", namespace)?;
        let tx = self.db.begin_read().map_err(unavailable)?;
        let table = tx.open_table(KV).map_err(unavailable)?;
        let mut keys = Vec::new();
        for entry in table.range((namespace, prefix)..).map_err(unavailable)? {
            let (k, _) = entry.map_err(unavailable)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
