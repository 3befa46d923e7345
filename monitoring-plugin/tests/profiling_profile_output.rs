//! End-to-end profiles of this test process: the flamegraph and the pprof output must name a
//! function that burned CPU here, tagged with the object it ran in; busy, bounds and cancel.

use std::hint::black_box;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use monitoring_plugin::profiling::maps::library_name;
use monitoring_plugin::profiling::{
    is_busy, render_output, top_libraries, ProfileError, ProfileFormat, ProfileReport, Profiler,
};
use pprof::protos::Message;

/// Profiles are process-wide: tests of this binary that profile take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[inline(never)]
fn profiling_test_burn_cpu_xyz(stop: &AtomicBool) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            x = black_box(x.rotate_left(7) ^ x.wrapping_mul(0x2545_f491_4f6c_dd1d));
        }
    }
    x
}

/// Spends its time in libc's `memset`/`memcpy` so libc frames show up as leaves.
#[inline(never)]
fn profiling_test_libc_copy(stop: &AtomicBool) -> u64 {
    let mut a = vec![0u8; 1 << 22];
    let mut b = vec![0u8; 1 << 22];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        a.fill(black_box(n as u8));
        b.copy_from_slice(black_box(&a));
        n += u64::from(b[n as usize % b.len()]);
    }
    n
}

struct Burners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Burners {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|i| {
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("burner-{i}"))
                    .spawn(move || {
                        if i == 0 {
                            profiling_test_burn_cpu_xyz(&stop)
                        } else {
                            profiling_test_libc_copy(&stop)
                        }
                    })
                    .expect("spawn")
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn exe_name() -> String {
    library_name(&std::env::current_exe().expect("exe").display().to_string())
}

#[test]
fn flamegraph_and_pprof_name_the_burning_function_and_its_library() {
    let _turn = one_at_a_time();
    let burners = Burners::start();
    let never = AtomicBool::new(false);
    let guard = Profiler::new().try_start(1, 499).expect("start");
    guard.wait(&never).expect("wait");
    let report = guard.finish().expect("report");
    drop(burners);
    assert!(!is_busy());
    assert!(report.samples() > 0, "no samples");
    let tagged = format!("[{}] ", exe_name());

    let svg = render_output(&report, ProfileFormat::Flamegraph).expect("svg");
    assert_eq!(svg.content_type, "image/svg+xml");
    let text = String::from_utf8(svg.body).expect("utf-8 svg");
    assert!(
        text.starts_with("<?xml"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(
        text.contains("profiling_test_burn_cpu_xyz"),
        "burn function missing"
    );
    // Debug info gives `profiling_profile_output::profiling_test_burn_cpu_xyz`; release builds with
    // `debug = "line-tables-only"` only have the short DWARF name.
    let tagged_burn = [
        format!("{tagged}profiling_profile_output::profiling_test_burn_cpu_xyz"),
        format!("{tagged}profiling_test_burn_cpu_xyz"),
    ];
    assert!(
        tagged_burn.iter().any(|name| text.contains(name.as_str())),
        "burn function not tagged with {tagged:?}"
    );
    assert!(
        !text.contains("perf_signal_handler"),
        "profiler frames leaked"
    );

    let libs = top_libraries(&report);
    assert!(
        libs.iter().any(|(l, n)| *l == exe_name() && *n > 0),
        "{libs:?}"
    );
    assert!(
        libs.iter().any(|(l, n)| l.starts_with("libc.so") && *n > 0),
        "{libs:?}"
    );
    assert_eq!(libs.iter().map(|(_, n)| n).sum::<u64>(), report.samples());

    let out = render_output(&report, ProfileFormat::Pprof).expect("pprof");
    assert_eq!(out.file_name, "profile.pb.gz");
    assert_eq!(out.samples, report.samples());
    let profile = pprof::protos::Profile::decode(gunzip(&out.body).as_slice()).expect("decode");
    let total: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(u64::try_from(total).ok(), Some(report.samples()));
    let st = &profile.string_table;
    assert_eq!(st[0], "");
    let burn = st
        .iter()
        .position(|s| s.contains("profiling_test_burn_cpu_xyz"))
        .expect("burn function in the string table") as i64;
    assert!(
        st[burn as usize].starts_with(&tagged),
        "{}",
        st[burn as usize]
    );
    // Its location points at the mapping of this executable.
    let function = profile
        .function
        .iter()
        .find(|f| f.name == burn)
        .expect("function");
    let location = profile
        .location
        .iter()
        .find(|l| l.line.iter().any(|line| line.function_id == function.id))
        .expect("location");
    assert!(location.address != 0);
    let mapping = profile
        .mapping
        .iter()
        .find(|m| m.id == location.mapping_id)
        .expect("mapping");
    assert!(mapping.memory_start <= location.address && location.address < mapping.memory_limit);
    let exe = std::env::current_exe().expect("exe").display().to_string();
    assert_eq!(st[mapping.filename as usize], exe);
    eprintln!(
        "samples {} | svg {} B | pprof {} B gz | build id {:?} | libraries {libs:?}",
        report.samples(),
        text.len(),
        out.body.len(),
        st[mapping.build_id as usize]
    );
    assert!(profile.sample.iter().all(|s| s.label.len() == 2));
    assert_eq!(profile.period, 1_000_000_000 / 499);
}

#[test]
fn blocking_profile_returns_pprof() {
    let _turn = one_at_a_time();
    let burners = Burners::start();
    let out = Profiler::with_frequency(199)
        .expect("frequency")
        .profile(1, ProfileFormat::Pprof, &AtomicBool::new(false))
        .expect("profile");
    drop(burners);
    assert_eq!(out.content_type, "application/octet-stream");
    assert!(out.samples > 0);
    let profile = pprof::protos::Profile::decode(gunzip(&out.body).as_slice()).expect("decode");
    assert!(!profile.sample.is_empty());
    assert!(profile.duration_nanos >= 1_000_000_000);
}

#[test]
fn second_profile_is_busy() {
    let _turn = one_at_a_time();
    let first = Profiler::new().try_start(5, 99).expect("first");
    assert!(is_busy());
    let second = Profiler::with_frequency(500).expect("f").try_start(1, 500);
    assert!(matches!(second, Err(ProfileError::Busy)), "{second:?}");
    let blocking = Profiler::new().profile(1, ProfileFormat::Flamegraph, &AtomicBool::new(false));
    match blocking {
        Err(e) => assert_eq!(e.http_status(), 409, "{e}"),
        Ok(_) => panic!("a second profile ran concurrently"),
    }
    drop(first);
    assert!(!is_busy());
    let third = Profiler::new().try_start(1, 99).expect("free again");
    drop(third);
}

#[test]
fn bounds_are_checked_before_starting() {
    let _turn = one_at_a_time();
    let p = Profiler::new();
    for (seconds, hz) in [
        (0, 99),
        (61, 99),
        (u64::MAX, 99),
        (1, 0),
        (1, 1001),
        (1, u32::MAX),
    ] {
        let err = p.try_start(seconds, hz).expect_err("out of bounds");
        assert!(
            matches!(
                err,
                ProfileError::InvalidDuration { .. } | ProfileError::InvalidFrequency { .. }
            ),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 400);
        assert!(!is_busy(), "a rejected request must not hold the profiler");
    }
    let err = p
        .profile(0, ProfileFormat::Pprof, &AtomicBool::new(false))
        .expect_err("0 s");
    assert_eq!(
        err.to_string(),
        "profile duration must be between 1 and 60 seconds, got 0"
    );
}

#[test]
fn stop_flag_cancels_quickly() {
    let _turn = one_at_a_time();
    let stop = Arc::new(AtomicBool::new(false));
    let setter = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::Release);
        })
    };
    let t = Instant::now();
    let res = Profiler::new().profile(30, ProfileFormat::Flamegraph, &stop);
    let _ = setter.join();
    assert!(matches!(res, Err(ProfileError::Cancelled)), "{res:?}");
    // A 30 s profile cancelled after 0.1 s: far less than 30 s proves the
    // cancel (the bound is loose because the machines are shared and noisy).
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert!(!is_busy());
}

#[test]
fn empty_report_renders_both_formats() {
    let report = ProfileReport {
        frequency_hz: 99,
        start_time: SystemTime::now(),
        duration: Duration::from_secs(1),
        libraries: vec![],
        locations: vec![],
        stacks: vec![],
    };
    let svg = render_output(&report, ProfileFormat::Flamegraph).expect("svg");
    assert_eq!(svg.samples, 0);
    assert!(String::from_utf8_lossy(&svg.body).contains("No samples"));
    let pb = render_output(&report, ProfileFormat::Pprof).expect("pprof");
    let profile = pprof::protos::Profile::decode(gunzip(&pb.body).as_slice()).expect("decode");
    assert!(profile.sample.is_empty());
    assert_eq!(profile.string_table[0], "");
}
