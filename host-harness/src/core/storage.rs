//! Storage seen from plugins and the HTTP API: each operation timed,
//! reported as a `StorageOperation` observation and its error mapped to a
//! plugin error.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use plugin_abi::{CallStatus, ObservationKind, PluginError};

use super::HostCore;
use crate::observer::Report;
use crate::storage::{Storage, StorageError};
use crate::tracecontext;

static OP_GET: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("get"));

static OP_SET: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("set"));

static OP_DELETE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("delete"));

static OP_LIST: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("list"));

fn storage_err(e: StorageError) -> PluginError {
    match e {
        StorageError::Invalid(m) => PluginError::bad_request(m),
        StorageError::Unavailable(m) => {
            PluginError::unavailable(format!("storage unavailable: {m}"))
        }
    }
}

impl HostCore {
    fn observe_storage<T>(
        &self,
        op: &Arc<str>,
        caller: &str,
        namespace: &str,
        started: Instant,
        result: &Result<T, StorageError>,
    ) {
        if self.observers.is_active() {
            let status = match result {
                Ok(_) => CallStatus::Ok,
                Err(_) => CallStatus::Error,
            };
            // A child of the callback this thread runs, if any.
            let parent = tracecontext::current();
            let mut r = Report::timed(
                ObservationKind::StorageOperation,
                status,
                op.clone(),
                Arc::from(caller),
                started,
            )
            .with_span(parent.map(|p| p.child()), parent.as_ref());
            r.set_namespace(Arc::from(namespace));
            if let Err(e) = result {
                r.set_message(Some(e.to_string()));
            }
            self.observers.report(r);
        }
    }

    /// Runs one storage operation, reports it and maps its error.
    fn storage_op<T>(
        &self,
        op: &Arc<str>,
        caller: &str,
        namespace: &str,
        f: impl FnOnce(&Storage) -> Result<T, StorageError>,
    ) -> Result<T, PluginError> {
        let started = Instant::now();
        let r = f(&self.storage);
        self.observe_storage(op, caller, namespace, started, &r);
        r.map_err(storage_err)
    }

    /// Reads a value.
    pub fn storage_get(
        &self,
        caller: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<String>, PluginError> {
        self.storage_op(&OP_GET, caller, namespace, |storage| {
            storage.get(namespace, key)
        })
    }

    /// Writes a value durably.
    pub fn storage_set(
        &self,
        caller: &str,
        namespace: &str,
        key: &str,
        value: &str,
    ) -> Result<(), PluginError> {
        self.storage_op(&OP_SET, caller, namespace, |storage| {
            storage.set(namespace, key, value)
        })
    }

    /// Deletes a key.
    pub fn storage_delete(
        &self,
        caller: &str,
        namespace: &str,
        key: &str,
    ) -> Result<bool, PluginError> {
        self.storage_op(&OP_DELETE, caller, namespace, |storage| {
            storage.delete(namespace, key)
        })
    }

    /// Lists keys.
    pub fn storage_list_keys(
        &self,
        caller: &str,
        namespace: &str,
        prefix: &str,
    ) -> Result<Vec<String>, PluginError> {
        self.storage_op(&OP_LIST, caller, namespace, |storage| {
            storage.list_keys(namespace, prefix)
        })
    }
}
