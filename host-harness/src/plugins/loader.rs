//! Loading one plugin library file safely.
//!
//! dlopen returns the already-loaded library for a path it has seen (and for
//! hard links and symlinks to it), so every load first byte-copies the file
//! to a unique path in the plugin cache. A pre-flight opens the copy with
//! `libloading` and checks the root-module symbol before abi_stable is
//! asked, so a shared library that is not a plugin is refused by name.
//! abi_stable's `RootModule::load_from_file` caches one module per type, so
//! each file is loaded with `lib_header_from_path` + `init_root_module`.
//! Errors are turned into one short paragraph naming the file and, for
//! version mismatches, the expected and found versions.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use abi_stable::library::{
    lib_header_from_path, LibraryError, ROOT_MODULE_LOADER_NAME, ROOT_MODULE_LOADER_NAME_WITH_NUL,
};
use plugin_abi::{PluginInfo, PluginMod_Ref};

/// Why a file could not be loaded as a plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The file could not be copied to the plugin cache.
    #[error("{file}: cannot copy to the plugin cache: {reason}")]
    Copy {
        /// The plugin file.
        file: String,
        /// The I/O error.
        reason: String,
    },
    /// dlopen refused the file.
    #[error("{file}: not a loadable shared library ({reason})")]
    NotALibrary {
        /// The plugin file.
        file: String,
        /// The loader's reason, shortened.
        reason: String,
    },
    /// A library that does not export the root-module symbol every
    /// plugin exports (found by the pre-flight, before abi_stable is asked).
    #[error("{file}: not a HomeConsole plugin: the library does not export the root-module symbol `{symbol}` that every plugin built with plugin-abi's `export_plugin!` exports (a different shared library, or a plugin built against another abi_stable)")]
    MissingRootModule {
        /// The plugin file.
        file: String,
        /// The symbol looked for.
        symbol: &'static str,
    },
    /// A library, but without an abi_stable root module.
    #[error("{file}: not a HomeConsole plugin (no abi_stable root module): {reason}")]
    NotAPlugin {
        /// The plugin file.
        file: String,
        /// Why.
        reason: String,
    },
    /// Built against an incompatible plugin-abi or abi_stable version.
    #[error("{file}: incompatible ABI version: the host expects {expected}, the plugin was built against {found}; rebuild the plugin against plugin-abi {expected}")]
    IncompatibleVersion {
        /// The plugin file.
        file: String,
        /// What the host expects.
        expected: String,
        /// What the plugin declares.
        found: String,
    },
    /// The types at the boundary differ from the host's.
    #[error("{file}: incompatible ABI: the plugin's types differ from the host's ({summary}); rebuild the plugin against plugin-abi {expected}")]
    AbiMismatch {
        /// The plugin file.
        file: String,
        /// The host's ABI version.
        expected: String,
        /// First lines of abi_stable's report.
        summary: String,
    },
    /// Anything else abi_stable reported.
    #[error("{file}: cannot load plugin: {reason}")]
    Other {
        /// The plugin file.
        file: String,
        /// The reason, shortened.
        reason: String,
    },
}

/// A library that loaded and whose root module passed every check.
pub struct LoadedLibrary {
    /// The root module.
    pub module: PluginMod_Ref,
    /// Facts the plugin reports about itself.
    pub info: PluginInfo,
    /// The cache copy that was dlopen'ed.
    pub copy: PathBuf,
}

fn shorten(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() <= max {
        one_line
    } else {
        let mut cut = max;
        while !one_line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &one_line[..cut])
    }
}

static COPY_SEQ: AtomicU64 = AtomicU64::new(0);

fn cache_copy(file: &Path, cache_dir: &Path) -> Result<PathBuf, LoadError> {
    let name = file.display().to_string();
    let copy_err = |e: std::io::Error| LoadError::Copy {
        file: name.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(cache_dir).map_err(copy_err)?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let ext = file.extension().and_then(|s| s.to_str()).unwrap_or("so");
    let seq = COPY_SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = crate::time::now_unix_ns();
    let copy = cache_dir.join(format!("{stem}.{}.{nanos}.{seq}.{ext}", std::process::id()));
    std::fs::copy(file, &copy).map_err(copy_err)?;
    Ok(copy)
}

fn describe(file: &Path, err: LibraryError) -> LoadError {
    let file = file.display().to_string();
    match err {
        LibraryError::OpenError { err, .. } => LoadError::NotALibrary {
            file,
            reason: shorten(&err.to_string(), 200),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            file,
            reason: "the library does not export abi_stable's root module symbol".into(),
        },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::IncompatibleVersion {
            file,
            expected: expected_version.to_string(),
            found: actual_version.to_string(),
        },
        LibraryError::InvalidAbiHeader(header) => {
            let ours = abi_stable::library::AbiHeader::VALUE;
            LoadError::IncompatibleVersion {
                file,
                expected: format!("abi_stable ABI {}.{}", ours.abi_major, ours.abi_minor),
                found: format!("abi_stable ABI {}.{}", header.abi_major, header.abi_minor),
            }
        }
        LibraryError::Many(mut errors) if !errors.is_empty() => {
            describe(Path::new(&file), errors.remove(0))
        }
        LibraryError::AbiInstability(e) => {
            // abi_stable prints both layouts in full (~700 lines); the
            // useful part is the `Error:` line and its Expected / Found.
            let text = e.to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let start = lines
                .iter()
                .position(|l| l.starts_with("Error:"))
                .unwrap_or(0);
            let tail = &lines[start..];
            let after = |label: &str| {
                tail.iter()
                    .position(|l| *l == label)
                    .and_then(|i| tail.get(i + 1))
                    .copied()
            };
            let what = tail
                .first()
                .map(|l| l.trim_start_matches("Error:").trim())
                .unwrap_or("layout differs");
            match (after("Expected:"), after("Found:")) {
                (Some(expected), Some(found)) if what.contains("version") => {
                    LoadError::IncompatibleVersion {
                        file,
                        expected: expected.to_owned(),
                        found: found.to_owned(),
                    }
                }
                (Some(expected), Some(found)) => LoadError::AbiMismatch {
                    file,
                    expected: plugin_abi::ABI_VERSION.into(),
                    summary: shorten(&format!("{what}: expected {expected}, found {found}"), 240),
                },
                _ => LoadError::AbiMismatch {
                    file,
                    expected: plugin_abi::ABI_VERSION.into(),
                    summary: shorten(what, 240),
                },
            }
        }
        other => LoadError::Other {
            file,
            reason: shorten(&other.to_string(), 300),
        },
    }
}

/// The pre-flight: opens `library` with `libloading` and checks that it
/// exports abi_stable's root-module loader symbol, before abi_stable is
/// asked; a shared library that is not a HomeConsole plugin is refused with
/// an error naming the symbol and `file` (the name reported). The handle is
/// closed again before returning, so abi_stable's own dlopen of the same
/// path starts from the library's reference count before the pre-flight.
#[allow(unsafe_code)] // dlopen and dlsym; see the SAFETY notes.
pub fn preflight(file: &Path, library: &Path) -> Result<(), LoadError> {
    let name = || file.display().to_string();
    // SAFETY: dlopen runs the library's initialisers. The pre-flight opens
    // exactly the file the loader is about to dlopen through abi_stable
    // anyway, so it runs no code the load itself would not.
    let lib = unsafe { libloading::Library::new(library) }.map_err(|e| LoadError::NotALibrary {
        file: name(),
        reason: shorten(&e.to_string(), 200),
    })?;
    // SAFETY: the symbol's address is only tested for presence; it is
    // neither called nor dereferenced.
    let found =
        unsafe { lib.get::<*const ()>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes()) }.is_ok();
    let _ = lib.close();
    if found {
        Ok(())
    } else {
        Err(LoadError::MissingRootModule {
            file: name(),
            symbol: ROOT_MODULE_LOADER_NAME,
        })
    }
}

/// Copies `file` into `cache_dir`, pre-flights the copy ([`preflight`]),
/// dlopens it through abi_stable and checks its root module. Never panics;
/// every failure is a [`LoadError`].
pub fn load(file: &Path, cache_dir: &Path) -> Result<LoadedLibrary, LoadError> {
    let copy = cache_copy(file, cache_dir)?;
    if let Err(e) = preflight(file, &copy) {
        let _ = std::fs::remove_file(&copy);
        return Err(e);
    }
    let result =
        lib_header_from_path(&copy).and_then(|header| header.init_root_module::<PluginMod_Ref>());
    let module = match result {
        Ok(m) => m,
        Err(e) => {
            // The copy is useless now; a library that did load stays mapped.
            let _ = std::fs::remove_file(&copy);
            return Err(describe(file, e));
        }
    };
    let info = (module.info())();
    if info.abi_version.as_str() != plugin_abi::ABI_VERSION {
        return Err(LoadError::IncompatibleVersion {
            file: file.display().to_string(),
            expected: plugin_abi::ABI_VERSION.into(),
            found: info.abi_version.to_string(),
        });
    }
    Ok(LoadedLibrary { module, info, copy })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_file_is_a_short_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("garbage.so");
        std::fs::write(&f, b"this is not an ELF file").unwrap();
        let err = load(&f, &dir.path().join("cache"))
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(matches!(err, LoadError::NotALibrary { .. }), "{text}");
        assert!(text.contains("garbage.so"), "{text}");
        assert!(text.len() < 400, "{text}");
    }

    #[test]
    fn preflight_refuses_a_library_without_the_root_module_naming_the_symbol() {
        let lib = test_support::system_library();
        let err = preflight(Path::new("plugins/libnot_a_plugin.so"), &lib)
            .expect_err("a system library is not a plugin");
        let text = err.to_string();
        assert!(matches!(err, LoadError::MissingRootModule { .. }), "{text}");
        assert!(text.contains(ROOT_MODULE_LOADER_NAME), "{text}");
        assert!(text.contains("plugins/libnot_a_plugin.so"), "{text}");
        assert!(text.contains("not a HomeConsole plugin"), "{text}");
    }

    #[test]
    fn load_of_a_non_plugin_library_fails_in_the_preflight_and_removes_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libnot_a_plugin.so");
        std::fs::copy(test_support::system_library(), &file).unwrap();
        let cache = dir.path().join("cache");
        let err = load(&file, &cache).err().expect("must fail");
        assert!(matches!(err, LoadError::MissingRootModule { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    }

    #[test]
    fn preflight_refuses_a_file_that_is_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("garbage.so");
        std::fs::write(&f, b"this is not an ELF file").unwrap();
        let err = preflight(&f, &f).expect_err("must fail");
        assert!(matches!(err, LoadError::NotALibrary { .. }), "{err}");
    }

    #[test]
    fn shorten_cuts_on_char_boundary() {
        assert_eq!(shorten("a  b\n c", 10), "a b c");
        assert_eq!(shorten("ééééé", 3), "é…");
    }
}
