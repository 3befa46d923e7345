//! HomeConsole monitoring plugin: dropped into the host's plugins directory,
//! it gives the host Prometheus metrics and health checks (and, as the
//! project grows, tracing, alerting, error tracking, profiling and
//! dashboards). This file only exports the root module; each capability is
//! its own module.

#![forbid(unsafe_code)]

pub mod alerting;
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
pub mod time;
pub mod tracing;

plugin_abi::export_plugin!(crate::module::MonitoringModule);
