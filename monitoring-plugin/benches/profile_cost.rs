//! Measures what a profile costs: `cargo run --release --example profile_cost [seconds] [hz]`.
//!
//! Burns CPU on two threads, profiles the process, and prints how long each output format
//! takes to produce after sampling ends, its size, and the top folded stacks.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use monitoring_plugin::profiling::{render, render_output, ProfileFormat, Profiler};

#[inline(never)]
fn example_burn(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        x = black_box(x.rotate_left(5) ^ x.wrapping_mul(31));
    }
    x
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let hz: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(99);
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || example_burn(&stop))
        })
        .collect();
    for round in 0..3 {
        let guard = match Profiler::new().try_start(seconds, hz) {
            Ok(g) => g,
            Err(e) => return eprintln!("start: {e}"),
        };
        if let Err(e) = guard.wait(&AtomicBool::new(false)) {
            return eprintln!("wait: {e}");
        }
        let t0 = Instant::now();
        let report = match guard.finish() {
            Ok(r) => r,
            Err(e) => return eprintln!("finish: {e}"),
        };
        let t_report = t0.elapsed();
        let t1 = Instant::now();
        let svg = render_output(&report, ProfileFormat::Flamegraph).map(|o| o.body.len());
        let t_svg = t1.elapsed();
        let t2 = Instant::now();
        let pb = render_output(&report, ProfileFormat::Pprof).map(|o| o.body.len());
        let t_pb = t2.elapsed();
        println!(
            "round {round}: {seconds} s @ {hz} Hz: {} samples, {} stacks, {} locations; \
             stop+symbolize {:?}; svg {:?} ({:?} B); pprof {:?} ({:?} B gz)",
            report.samples(),
            report.stacks.len(),
            report.locations.len(),
            t_report,
            t_svg,
            svg,
            t_pb,
            pb
        );
        if round == 0 {
            for line in render::folded_stacks(&report).iter().take(3) {
                println!("  {line}");
            }
            println!("  top libraries: {:?}", report.top_libraries());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
}
