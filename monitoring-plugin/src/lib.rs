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
