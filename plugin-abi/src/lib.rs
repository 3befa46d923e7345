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
mod export;
pub mod facts;
pub mod ffi;
pub mod guest;
pub mod metric_names;
pub mod telemetry;
pub mod trace_context;
pub mod types;

pub use abi_stable;

/// What `export_plugin!` expands to; not part of the documented surface.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{erased_root_module, lib_header, ROOT_MODULE_SYMBOL};
    pub use abi_stable::library::LibHeader;
}
pub use error::{ErrorKind, ErrorKind_NE, PanicLocation, PluginError};
pub use facts::{
    BulkheadSummary, CallbackTime, CircuitState, CircuitSummary, HostCounters, HostInfo,
    HostInfo_Ref, PluginSummary,
};
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

#[cfg(test)]
mod tests {
    use abi_stable::library::RootModule;
    use abi_stable::sabi_types::VersionNumber;

    use super::*;

    #[test]
    fn the_root_module_carries_the_crate_version() {
        assert_eq!(ABI_VERSION, env!("CARGO_PKG_VERSION"));
        let declared = PluginMod_Ref::VERSION_STRINGS.parsed().expect("semver");
        let ours = VersionNumber::new(abi_stable::sabi_types::VersionStrings::new(ABI_VERSION))
            .expect("semver");
        assert_eq!(declared, ours);
        assert_eq!(PluginMod_Ref::NAME, "homeconsole_plugin");
    }

    #[test]
    fn a_plugin_of_another_minor_version_is_incompatible_and_a_patch_is_not() {
        let ours = PluginMod_Ref::VERSION_STRINGS.parsed().unwrap();
        let next_minor = VersionNumber {
            minor: ours.minor + 1,
            patch: 0,
            ..ours
        };
        let next_patch = VersionNumber {
            patch: ours.patch + 1,
            ..ours
        };
        // The rule of 0.x crates, which abi_stable applies at load.
        assert_eq!(ours.major, 0, "update this test when the ABI reaches 1.0");
        assert!(!ours.is_loosely_compatible(next_minor));
        assert!(ours.is_compatible(next_patch));
    }

    #[test]
    fn caller_names_and_the_access_header_are_the_documented_strings() {
        assert_eq!(HTTP_CALLER, "http");
        assert_eq!(HTTP_ADMIN_CALLER, "http:admin");
        assert!(HTTP_ADMIN_CALLER.starts_with(HTTP_CALLER));
        assert_eq!(ACCESS_HEADER, ACCESS_HEADER.to_ascii_lowercase());
    }
}
