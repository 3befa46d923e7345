//! What `export_plugin!` expands to, so that a plugin's only ABI dependency
//! is `plugin-abi`.
//!
//! abi_stable's `#[export_root_module]` emits `::abi_stable::…` paths, which
//! resolve only in a crate that lists `abi_stable` itself. The macro instead
//! emits one `#[no_mangle]` static under the symbol abi_stable's loader
//! looks up ([`ROOT_MODULE_SYMBOL`]) whose value is built here, in this
//! crate, by [`lib_header`]. Reached through `plugin_abi::__private`, which
//! is not part of the documented surface.

use abi_stable::library::{
    __call_root_module_loader, CheckTypeLayout, IntoRootModuleResult, LibHeader, RootModuleResult,
};

use crate::ffi::PluginMod_Ref;
use crate::guest::{root_module, PluginImpl};

/// The symbol abi_stable's loader reads a library's header from
/// (`abi_stable::library::ROOT_MODULE_LOADER_NAME`; a test keeps them equal).
/// `export_plugin!` spells the same name as its static's identifier.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// The type-erased root-module constructor of `T`, called once by the loader.
pub extern "C" fn erased_root_module<T: PluginImpl>() -> RootModuleResult {
    __call_root_module_loader(root_module::<T>)
}

/// The library header for plugin `T`: the value of the static that
/// `export_plugin!` exports. The layout of [`PluginMod_Ref`] is checked at
/// load, as with `#[export_root_module]`.
pub const fn lib_header<T: PluginImpl>() -> LibHeader {
    // SAFETY: the constructor returns the root module of type
    // `PluginMod_Ref` (through `__call_root_module_loader`), which is the
    // module type named here, as `from_constructor` requires.
    #[allow(unsafe_code)]
    unsafe {
        LibHeader::from_constructor::<<PluginMod_Ref as IntoRootModuleResult>::Module>(
            erased_root_module::<T>,
            CheckTypeLayout::Yes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exported_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(
            ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
