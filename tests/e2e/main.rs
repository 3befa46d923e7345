//! End-to-end tests: the real `host-harness` binary, the real plugin
//! libraries, real HTTP on loopback.

mod access;
mod alerting;
mod budgets;
mod config_env;
mod dashboard;
mod deploy;
mod docs;
mod errors;
mod example;
mod foundation;
mod guide;
mod hardening;
mod health;
mod idle;
mod layout;
mod metrics;
mod openmetrics;
mod profiling;
mod query_bounds;
mod remote_write;
mod resilience;
mod self_protection;
mod stack;
mod support;
mod telemetry;
mod tls;
mod tracing;
