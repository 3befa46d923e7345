//! Attribution of a library loaded the way the host loads plugins: copied to
//! `<data_dir>/plugin-cache/<stem>.<pid>.<nanos>.<seq>.so` and `dlopen`ed from there. Uses a
//! copy of the system `libm` (a real shared object whose `cos` burns CPU) as the "plugin".
#![allow(unsafe_code)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use test_support::require_peer;

use monitoring_plugin::profiling::{render_output, top_libraries, ProfileFormat, Profiler};

/// Where this system's `libm` lives: asks the dynamic loader for
/// `libm.so.6` and reads the file it mapped from `/proc/self/maps`, so no
/// distribution's library directory is assumed.
fn system_libm() -> Result<PathBuf, String> {
    // SAFETY: libm's initialisers are trivial.
    let lib = unsafe { libloading::Library::new("libm.so.6") }
        .map_err(|e| format!("the dynamic loader finds no libm.so.6: {e}"))?;
    // Looked up while `lib` keeps it mapped.
    let found = test_support::mapped_library("libm.so")
        .or_else(|| test_support::mapped_library("libm-"))
        .ok_or_else(|| "libm.so.6 loaded but not found in /proc/self/maps".to_owned());
    drop(lib);
    found
}

#[test]
fn frames_of_a_plugin_cache_copy_are_tagged_with_its_plugin_name() {
    let libm = require_peer!(system_libm());
    let data_dir = tempfile::tempdir().expect("tempdir");
    let cache = data_dir.path().join("plugin-cache");
    std::fs::create_dir_all(&cache).expect("mkdir");
    let copy = cache.join(format!(
        "libm.{}.1700000000123456789.0.so",
        std::process::id()
    ));
    std::fs::copy(&libm, &copy).expect("copy");

    // SAFETY: libm's initialisers are trivial and `cos` has exactly this C signature.
    let lib = unsafe { libloading::Library::new(&copy) }.expect("dlopen copy");
    // SAFETY: see above.
    let cos: libloading::Symbol<unsafe extern "C" fn(f64) -> f64> =
        unsafe { lib.get(b"cos\0") }.expect("cos");
    let cos = *cos;

    let stop = Arc::new(AtomicBool::new(false));
    let burner = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut x = 0.5f64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1000 {
                    // SAFETY: `cos` is a pure C function from the library kept loaded below.
                    x = unsafe { cos(black_box(x)) } + 0.1;
                }
            }
            x
        })
    };
    let guard = Profiler::new().try_start(1, 499).expect("start");
    guard.wait(&AtomicBool::new(false)).expect("wait");
    let report = guard.finish().expect("finish");
    stop.store(true, Ordering::Relaxed);
    let _ = burner.join();

    let libs = top_libraries(&report);
    assert!(
        libs.iter().any(|(l, n)| l == "libm.so" && *n > 0),
        "{libs:?}"
    );
    let lib_entry = report
        .libraries
        .iter()
        .find(|l| l.name == "libm.so")
        .expect("libm.so");
    assert_eq!(Path::new(&lib_entry.path), copy.as_path());
    assert!(lib_entry.build_id.is_some(), "{lib_entry:?}");
    let svg = render_output(&report, ProfileFormat::Flamegraph).expect("svg");
    assert!(String::from_utf8_lossy(&svg.body).contains("[libm.so] "));
    eprintln!("libraries: {libs:?}");
    drop(lib);
}
