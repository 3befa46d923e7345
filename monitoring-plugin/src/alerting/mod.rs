//! Prometheus-compatible alerting evaluated in-process (HomeConsole monitoring plugin).
//!
//! The plugin must alert without an external Prometheus, yet with the same rule files
//! and the same results a Prometheus 2.x would give, so that alerting can move to
//! Prometheus + Alertmanager unchanged. [`capability`] alone touches the
//! host (routes, services, the evaluator thread); [`query_api`] answers the
//! Prometheus HTTP query API over the same samples. The host-free pieces, in
//! data-flow order:
//!
//! - [`exposition`]: parses the plugin's own scrape text into samples;
//! - [`samples`]: the embedded sample store, a bounded ring of the plugin's own series
//!   (with staleness); "history" means only the fired/resolved alert transitions;
//! - [`promql`]: PromQL as Prometheus 2.42 runs it, checked at load time, evaluated over the samples;
//! - [`template`]: Go `text/template` with Prometheus's functions, rendered as Prometheus does;
//! - [`syntax`]: label-name and duration rules shared by the three below;
//! - [`rules`]: Prometheus rule files, loaded rule by rule with precise errors;
//! - [`engine`]: pending/firing/resolved state machine, health, persistence;
//! - [`notify`]: Alertmanager v2 and webhook (payload v4) notifiers on their own threads.
pub mod capability;
pub mod engine;
pub mod exposition;
pub mod notify;
pub mod promql;
pub mod query_api;
pub mod rules;
pub mod samples;
pub mod syntax;
pub mod template;
