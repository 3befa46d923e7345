//! Persistence seam: a namespaced key-value store of JSON values.
//!
//! The capabilities (health, alerts, errors) persist through this trait so
//! they can be tested without a host; [`HostKv`] backs it with host storage.

use plugin_abi::Host;

/// A key-value store of JSON text values (one namespace).
pub trait KvStore: Send + Sync {
    /// Reads a value.
    fn get(&self, key: &str) -> Result<Option<String>, String>;
    /// Writes a value durably.
    fn set(&self, key: &str, value_json: &str) -> Result<(), String>;
    /// Deletes a key; returns whether it existed.
    fn delete(&self, key: &str) -> Result<bool, String>;
    /// Lists keys starting with `prefix`.
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String>;
}

/// Host storage, one namespace.
pub struct HostKv {
    host: Host,
    namespace: String,
}

impl HostKv {
    /// A store over `namespace` of the host's storage.
    pub fn new(host: Host, namespace: &str) -> Self {
        HostKv {
            host,
            namespace: namespace.to_owned(),
        }
    }
}

impl KvStore for HostKv {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.host
            .storage_get(&self.namespace, key)
            .map_err(|e| e.to_string())
    }

    fn set(&self, key: &str, value_json: &str) -> Result<(), String> {
        self.host
            .storage_set(&self.namespace, key, value_json)
            .map_err(|e| e.to_string())
    }

    fn delete(&self, key: &str) -> Result<bool, String> {
        self.host
            .storage_delete(&self.namespace, key)
            .map_err(|e| e.to_string())
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        self.host
            .storage_list_keys(&self.namespace, prefix)
            .map_err(|e| e.to_string())
    }
}
