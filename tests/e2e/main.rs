//! End-to-end tests: the real `host-harness` binary, the real plugin
//! libraries, real HTTP on loopback.

mod alerting;
mod config_env;
mod dashboard;
mod deploy;
mod docs;
mod errors;
mod example;
mod foundation;
mod hardening;
mod health;
mod metrics;
mod openmetrics;
mod profiling;
mod remote_write;
mod stack;
mod support;
mod tls;
mod tracing;
