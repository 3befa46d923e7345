//! HomeConsole monitoring plugin: dropped into the host's plugins directory,
//! it gives the host Prometheus metrics and health checks (and, as the
//! project grows, tracing, alerting, error tracking, profiling and
//! dashboards). This file only exports the root module; each capability is
//! its own module.

#![forbid(unsafe_code)]

pub mod alerting;
pub mod alerts;
pub mod capability;
pub mod collector;
pub mod config;
pub mod dashboard;
pub mod error_tracking;
pub mod errors;
pub mod health;

pub mod http;
pub mod metrics;
pub mod module;
pub mod names;
pub mod outbound;
pub mod profiling;
pub mod profiling_api;
pub mod promapi;
pub mod remote_write;
pub mod store;
pub mod time;
pub mod trace;
pub mod tracing_capability;

plugin_abi::export_plugin!(crate::module::MonitoringModule);
