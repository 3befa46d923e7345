//! End-to-end tests: the real `host-harness` binary, the real plugin
//! libraries, real HTTP on loopback.

mod foundation;
mod health;
mod metrics;
mod profiling;
mod support;
