//! Everything about plugins: loading a file (`loader`: cache copy,
//! pre-flight, abi_stable), the manager's tables of files and instances
//! (`manager`), the operations that load, start, stop and replace instances
//! (`supervisor`, above the core), watching the plugins directory
//! (`watcher`), calling into a plugin (`invoke`: admission, deadline,
//! in-flight tracking; `breaker`: circuit breaker and bulkhead; `chain`:
//! nested-call depth), the routes plugins register (`routes`), and the host
//! handle each plugin receives (`host_api`).

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
