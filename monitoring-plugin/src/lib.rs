//! HomeConsole monitoring plugin: dropped into the host's plugins directory,
//! it gives the host Prometheus metrics, health checks, alerting (with a
//! Prometheus-compatible query API), error tracking, tracing, profiling and
//! a dashboard. Each capability is one folder whose `capability.rs` alone
//! touches the host; [`module`] drives the life cycle and dispatches to
//! them ([`capabilities`] lists them, [`capability`] is their seam). This
//! file only declares the modules and exports the root module.

#![forbid(unsafe_code)]

pub mod alerting;
pub mod capabilities;
pub mod capability;
pub mod config;
pub mod dashboard;
pub mod error_tracking;
pub mod health;
pub mod http;
pub mod metrics;
pub mod module;
pub mod outbound;
pub mod profiling;
pub mod store;
pub mod telemetry_provider;
pub mod time;
pub mod tracing;

plugin_abi::export_plugin!(crate::module::MonitoringModule);

/// Builds typed plugin summaries from the JSON shape the HTTP API shows
/// (`/api/v1/plugins`), so unit tests can state plugin lists briefly.
#[cfg(test)]
pub(crate) fn summaries(list: &serde_json::Value) -> Vec<plugin_abi::PluginSummary> {
    use abi_stable::std_types::{ROption, RString};
    use plugin_abi::{
        BulkheadSummary, CallbackTime, CircuitState, CircuitSummary, HealthReport, HealthStatus,
        PluginState, PluginSummary,
    };
    let text = |v: &serde_json::Value| -> ROption<RString> { v.as_str().map(RString::from).into() };
    list.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let state = match p["state"].as_str() {
                Some("started") => PluginState::Started,
                Some("stopped") => PluginState::Stopped,
                Some("error") => PluginState::Error,
                _ => PluginState::Loaded,
            };
            let mut s = PluginSummary::new(
                p["name"].as_str().unwrap_or("p"),
                state,
                p["generation"].as_u64().unwrap_or(0) as u32,
            );
            s.version = text(&p["version"]);
            s.error = text(&p["error"]);
            s.file_present = p["file_present"].as_bool().unwrap_or(true);
            s.health = p["health"]["status"]
                .as_str()
                .map(|status| HealthReport {
                    status: match status {
                        "unhealthy" => HealthStatus::Unhealthy,
                        "degraded" => HealthStatus::Degraded,
                        _ => HealthStatus::Healthy,
                    },
                    message: p["health"]["message"].as_str().unwrap_or("").into(),
                })
                .into();
            s.circuit = p["circuit"]["state"]
                .as_str()
                .map(|state| CircuitSummary {
                    state: match state {
                        "open" => CircuitState::Open,
                        "half_open" => CircuitState::HalfOpen,
                        _ => CircuitState::Closed,
                    },
                    reason: text(&p["circuit"]["reason"]),
                    opened_total: 0,
                    rejected_total: p["circuit"]["rejected_total"].as_u64().unwrap_or(0),
                })
                .into();
            s.bulkhead = p["bulkhead"]
                .as_object()
                .map(|b| BulkheadSummary {
                    in_flight: 0,
                    cap: 0,
                    rejected_total: b
                        .get("rejected_total")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0),
                    depth_rejected_total: b
                        .get("depth_rejected_total")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0),
                })
                .into();
            s.callbacks = p["callbacks"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, stat)| CallbackTime {
                    callback: name.as_str().into(),
                    calls: stat["calls"].as_u64().unwrap_or(0),
                    seconds: stat["seconds"].as_f64().unwrap_or(0.0),
                })
                .collect();
            s
        })
        .collect()
}
