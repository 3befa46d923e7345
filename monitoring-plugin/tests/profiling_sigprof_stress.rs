//! A late `SIGPROF` must never kill the process (tikv/pprof-rs issue 288).
//!
//! Each scenario runs in a child process (this test binary re-executed with
//! `PROFILING_SIGPROF_CHILD` set and filtered to the ignored `sigprof_child`), so a death
//! by `SIGPROF` shows up as the child's exit signal instead of killing the test runner.

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monitoring_plugin::profiling::signal::{
    install_sigprof_guard, sigprof_disposition, stray_sigprof_absorbed, SignalDisposition, SIGPROF,
};
use monitoring_plugin::profiling::Profiler;

const CHILD_ENV: &str = "PROFILING_SIGPROF_CHILD";
const PROFILES_ENV: &str = "PROFILING_SIGPROF_PROFILES";

/// Entry point of the child, not a test of its own: ignored in the normal
/// run, the tests below run it with `--ignored --exact` and a mode in
/// `PROFILING_SIGPROF_CHILD`.
#[test]
#[ignore = "the child half of the SIGPROF tests, which run it in a child process"]
fn sigprof_child() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("stress") => stress(),
        Ok("unguarded") => {
            // Control case: no guard, default disposition → SIGPROF terminates us.
            let _ = signal_hook::low_level::raise(SIGPROF);
            std::thread::sleep(Duration::from_millis(200));
            println!("UNEXPECTEDLY ALIVE");
        }
        other => panic!(
            "sigprof_child runs only as the child of the SIGPROF tests ({CHILD_ENV}={other:?})"
        ),
    }
}

#[inline(never)]
fn stress_burn(stop: &AtomicBool) -> u64 {
    let mut x = 7u64;
    while !stop.load(Ordering::Relaxed) {
        x = black_box(x.rotate_left(9) ^ x.wrapping_mul(0x9e37_79b9));
    }
    x
}

fn stress() {
    let profiles: usize = std::env::var(PROFILES_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    install_sigprof_guard().expect("guard");
    // A tick before the first profile: only the guard keeps this from being fatal.
    signal_hook::low_level::raise(SIGPROF).expect("raise");
    assert!(stray_sigprof_absorbed(), "guard handler did not run");

    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || stress_burn(&stop))
        })
        .collect();
    let started = Instant::now();
    let mut samples = 0;
    let (mut starting, mut finishing) = (Duration::ZERO, Duration::ZERO);
    for i in 0..profiles {
        let t = Instant::now();
        let guard = Profiler::new().try_start(1, 999).expect("start");
        starting += t.elapsed();
        std::thread::sleep(Duration::from_millis(20));
        if i % 2 == 0 {
            let t = Instant::now();
            samples += guard.finish().expect("finish").samples();
            finishing += t.elapsed();
        } else {
            drop(guard);
        }
        let disposition = sigprof_disposition();
        assert_ne!(
            disposition,
            Some(SignalDisposition::Default),
            "after profile {i}"
        );
        // A tick arriving late, after the profile stopped.
        signal_hook::low_level::raise(SIGPROF).expect("raise");
    }
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
    println!(
        "SURVIVED {profiles} profiles x 20 ms at 999 Hz with 3 burner threads in {:?}; \
         {samples} samples in the finished half; starting took {starting:?}, finishing \
         {finishing:?}; SIGPROF now {:?}",
        started.elapsed(),
        sigprof_disposition()
    );
}

fn run_child(mode: &str) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "sigprof_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .output()
        .expect("spawn child")
}

fn describe(out: &Output) -> String {
    let how = match (out.status.code(), out.status.signal()) {
        (_, Some(sig)) if sig == SIGPROF => format!("KILLED BY SIGPROF (signal {sig})"),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(code), _) => format!("exit code {code}"),
        _ => "unknown status".to_owned(),
    };
    format!(
        "child {how}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn many_short_profiles_under_load_never_die_of_sigprof() {
    let out = run_child("stress");
    let report = describe(&out);
    assert!(out.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("SURVIVED").map(|i| &l[i..]))
        .unwrap_or_default();
    assert!(!line.is_empty(), "{report}");
    eprintln!("{line}");
}

#[test]
fn harness_sees_a_death_by_sigprof() {
    let out = run_child("unguarded");
    assert_eq!(out.status.signal(), Some(SIGPROF), "{}", describe(&out));
}
