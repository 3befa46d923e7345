//! End-to-end tests: the real `host-harness` binary, the real plugin
//! libraries, real HTTP on loopback.

mod alerting;
mod dashboard;
mod deploy;
mod docs;
mod errors;
mod example;
mod foundation;
mod hardening;
mod health;
mod metrics;
mod profiling;
mod query_bounds;
mod support;
mod tracing;
