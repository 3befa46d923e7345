//! Facts about the host: the built-in modules and host information plugins
//! and the HTTP API read.

use plugin_abi::{HostCounters, HostInfo, HostInfo_Ref};
use serde_json::{json, Value};

use super::{HostCore, HOST_VERSION};

/// Names of the built-in modules.
pub const MODULES: &[&str] = &[
    "api",
    "storage",
    "event_bus",
    "service_registry",
    "plugin_manager",
    "logger",
];

impl HostCore {
    /// The built-in modules as a JSON array.
    pub fn modules_json(&self) -> Value {
        Value::Array(MODULES.iter().filter_map(|m| self.module_json(m)).collect())
    }

    /// One built-in module as JSON.
    pub fn module_json(&self, name: &str) -> Option<Value> {
        let details = match name {
            "api" => {
                json!({"listen": self.config.listen.to_string(), "routes": self.routes.list().len()})
            }
            "storage" => {
                let probe = match self.storage.probe() {
                    Ok(d) => json!({"ok": true, "duration_ms": d.as_secs_f64() * 1e3}),
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                };
                json!({"path": self.storage.path().display().to_string(), "probe": probe})
            }
            "event_bus" => {
                json!({"subscriptions": self.bus.subscriptions().len(), "published": self.bus.published(), "dropped": self.bus.dropped()})
            }
            "service_registry" => json!({"services": self.registry.len()}),
            "plugin_manager" => {
                json!({"plugins_dir": self.config.plugins_dir.display().to_string(), "live": self.plugins.live_instances().len()})
            }
            "logger" => json!({"format": "json", "level": self.config.host.log_level}),
            _ => return None,
        };
        let description = match name {
            "api" => "HTTP API under /api/v1",
            "storage" => "embedded persistent key-value storage (redb)",
            "event_bus" => "topic event bus with wildcard subscriptions",
            "service_registry" => "named services provided by plugins",
            "plugin_manager" => "loads, hot-reloads and supervises plugins",
            _ => "structured JSON system logger",
        };
        Some(
            json!({"name": name, "status": "running", "description": description, "details": details}),
        )
    }

    /// Facts about the host fixed for its life, typed, for plugins: built
    /// on first use, then the same `'static` reference.
    pub fn host_info_ref(&self) -> HostInfo_Ref {
        *self.info.get_or_init(|| {
            HostInfo {
                host_version: HOST_VERSION.into(),
                abi_version: plugin_abi::ABI_VERSION.into(),
                started_unix_ms: crate::time::unix_ms(self.started_at),
                pid: std::process::id(),
                data_dir: HostInfo::leak_str(self.config.data_dir.display().to_string()),
                plugins_dir: HostInfo::leak_str(self.config.plugins_dir.display().to_string()),
                trace_sample_ratio: self.config.host.trace_sample_ratio,
                service_timeout_ms: self.config.host.service_timeout_ms,
                callback_timeout_ms: self.config.host.callback_timeout_ms,
            }
            .leak()
        })
    }

    /// Host totals that change while it runs, typed, for plugins.
    pub fn host_counters(&self) -> HostCounters {
        HostCounters {
            observer_dropped_total: self.observers.dropped_total(),
            events_published_total: self.bus.published(),
            events_dropped_total: self.bus.dropped(),
        }
    }

    /// Facts about the host as JSON (`GET /api/v1/host`).
    pub fn host_info(&self) -> Value {
        let started = crate::time::unix_secs_f64(self.started_at);
        json!({
            "host_version": HOST_VERSION,
            "abi_version": plugin_abi::ABI_VERSION,
            "started_at_unix": started,
            "pid": std::process::id(),
            "observer_dropped_total": self.observers.dropped_total(),
            "observers": self.observers.stats(),
            "events_published_total": self.bus.published(),
            "events_dropped_total": self.bus.dropped(),
            "event_queues": self.bus.queues().iter().map(|q| json!({"plugin": q.owner_name(), "queued": q.queued(), "queued_bytes": q.queued_bytes(), "dropped": q.dropped(), "delivered": q.delivered()})).collect::<Vec<_>>(),
                        "data_dir": self.config.data_dir.display().to_string(),
            "trace_sample_ratio": self.config.host.trace_sample_ratio,
            "service_timeout_ms": self.config.host.service_timeout_ms,
            "callback_timeout_ms": self.config.host.callback_timeout_ms,
            "plugins_dir": self.config.plugins_dir.display().to_string(),
        })
    }
}
