//! Plugin life cycle: loading files, running instances, watching the
//! plugins directory, and the host handle each plugin receives.

pub mod breaker;
pub mod chain;
pub mod host_api;
pub mod invoke;
pub mod loader;
pub mod manager;
pub mod routes;
pub mod supervisor;
pub mod watcher;

pub use manager::{PluginInstance, PluginManager, PluginSummary};
