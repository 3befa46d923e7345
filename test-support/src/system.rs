//! Real shared libraries of this system, found where the dynamic loader
//! mapped them (`/proc/self/maps`), so no distribution's library directory
//! is assumed: tests that need "a shared object that is not a plugin" use
//! one of these.

use std::path::PathBuf;

/// The file of a library this process has mapped whose file name starts
/// with `prefix` (e.g. `"libm.so"`), if any.
pub fn mapped_library(prefix: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(PathBuf::from)
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
}

/// A real shared library that is not a HomeConsole plugin: the C library
/// (or the GCC runtime) every Rust test binary on Linux is linked with.
#[track_caller]
pub fn system_library() -> PathBuf {
    ["libc.so", "libgcc_s.so", "libm.so"]
        .into_iter()
        .find_map(mapped_library)
        .expect("this test process maps no libc, libgcc_s or libm: /proc/self/maps unreadable?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_library_is_found_and_is_a_file() {
        let lib = system_library();
        assert!(lib.is_file(), "{}", lib.display());
        assert!(mapped_library("no-such-library-prefix").is_none());
    }
}
