//! A real HomeConsole host that mimics the core runtime: service registry,
//! event bus, storage, module and plugin managers, HTTP API and JSON
//! logger. It hot-loads abi_stable plugins from a directory so the
//! monitoring plugin can be run, demonstrated and tested end to end.

pub mod access;
pub mod api;
pub mod app;
pub mod bus;
pub mod byte_budget;
pub mod config;
pub mod core;
pub mod env;
pub mod http_error;
pub mod logger;
pub mod observer;
pub mod plugins;
pub mod registry;
pub mod storage;
pub mod time;
pub mod tracecontext;

pub use app::{App, AppError};
pub use config::Config;
