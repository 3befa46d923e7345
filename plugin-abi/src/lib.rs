//! The stable contract between the HomeConsole host and its plugins.
//!
//! Both sides compile against this crate and nothing else. Everything that
//! crosses the boundary is an `abi_stable` type; structured payloads are JSON
//! text. The crate has three layers:
//!
//! - [`types`] and [`error`]: the FFI-safe values (requests, events,
//!   observations, the one error type).
//! - [`ffi`]: the root module every plugin exports, the host handle
//!   (plugin → host) and the plugin object (host → plugin).
//! - [`guest`]: the safe side for plugin authors — implement [`PluginImpl`],
//!   call [`export_plugin!`], and every entry point runs under `catch_unwind`
//!   so a panicking plugin returns [`ErrorKind::Panicked`] instead of
//!   aborting the host.

pub mod error;
pub mod ffi;
pub mod guest;
pub mod telemetry;
pub mod trace_context;
pub mod types;

#[cfg(feature = "incompatible-fixture")]
mod incompatible_fixture;

pub use abi_stable;
pub use error::{ErrorKind, PluginError};
pub use ffi::{
    HostApi, HostApi_TO, HostHandle, Plugin, PluginBox, PluginMod, PluginMod_Ref, Plugin_TO,
};
pub use guest::{Host, PluginImpl, ServiceCall};
pub use trace_context::{Sampler, TraceContext, TraceContextError};
pub use types::*;

/// Version of this ABI crate. abi_stable refuses to load a plugin built
/// against an incompatible version (for 0.x: a different minor version).
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Caller name of a service call that came in over the host's HTTP API.
pub const HTTP_CALLER: &str = "http";
/// Caller name of a service call that came in over the host's HTTP API with
/// the host's admin token (`[host.access] admin_token`): plugins may allow
/// it what they refuse [`HTTP_CALLER`].
pub const HTTP_ADMIN_CALLER: &str = "http:admin";
/// Request header the host sets on every HTTP request it hands to a plugin
/// route: `anonymous`, `api` or `admin`, the strongest host token the
/// request carried. The host removes any such header a client sends.
pub const ACCESS_HEADER: &str = "x-homeconsole-access";
