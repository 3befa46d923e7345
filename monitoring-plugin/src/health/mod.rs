//! Health: the checks of storage, modules, plugins and custom services
//! ([`checker`]), run in rounds and reported as `/health`, readiness and
//! `monitoring.health.changed` events.

pub mod checker;
