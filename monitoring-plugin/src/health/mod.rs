//! Health: the checks of storage, modules, plugins and custom services
//! ([`checker`], host access only through the handle it is given), run in
//! rounds by the [`capability`], which reports them as `/health`,
//! readiness, gauges and `monitoring.health.changed` events.

pub mod capability;
pub mod checker;
