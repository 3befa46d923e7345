//! Host hot paths: a service call through the registry (with and without
//! the monitoring plugin observing; a plugin calling a plugin in-line, and
//! the HTTP path's hop to the blocking pool with a deadline beside it;
//! `monitoring.record_metric` from a plugin), the observer report itself, event
//! publish → delivery, a full scrape of 10,000 series over HTTP, and the
//! health endpoint with 100 custom checks, and the admission every plugin
//! call passes (call depth, bulkhead, circuit breaker). The observer report
//! is measured beside its peer, the `prometheus` crate's pre-resolved
//! counter + histogram with two clock reads, and the ratio of the medians is
//! printed right after that group (run: `cargo bench -p host-harness --bench
//! host -- observer_report`).
//!
//! Needs the release plugin libraries next to the bench binary's parent
//! dir: run `./scripts/bench` (it builds them first).
#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use host_harness::bus::{BusEvent, Delivery, EventBus};
use host_harness::config::ResilienceSettings;
use host_harness::core::HostCore;
use host_harness::observer::{ObserverHub, Report};
use host_harness::plugins::breaker::{Breaker, Bulkhead, Outcome};
use host_harness::plugins::chain::CallChain;
use host_harness::plugins::loader::LoadedLibrary;
use host_harness::{App, Config};
use plugin_abi::guest::{root_module, Host, PluginImpl};
use plugin_abi::{CallStatus, ObservationKind, PluginError};
use serde_json::json;
use test_support::bench::{print_ratios, Ratio};

fn lib_dir() -> PathBuf {
    // target/release/deps/host-<hash> → target/release
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

struct RunningHost {
    core: Arc<HostCore>,
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// Whether the release plugin libraries are next to the bench; when not,
/// the groups that load them say so and are skipped (so that one group,
/// e.g. `-- observer_report`, runs without building every plugin).
fn plugins_built(group: &str, plugins: &[&str]) -> bool {
    let missing: Vec<&str> = plugins
        .iter()
        .copied()
        .filter(|p| !lib_dir().join(format!("lib{p}.so")).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "{group}: skipped, release libraries of {missing:?} missing: run ./scripts/bench"
        );
    }
    missing.is_empty()
}

fn start_host(plugins: &[&str], extra_toml: &str) -> RunningHost {
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    for p in plugins {
        let src = lib_dir().join(format!("lib{p}.so"));
        assert!(
            src.exists(),
            "{} missing: run ./scripts/bench",
            src.display()
        );
        std::fs::copy(&src, plugins_dir.join(format!("lib{p}.so"))).unwrap();
    }
    let mut config = Config::from_toml(&format!(
        "[host]\nlog_level = \"error\"\n[plugins.demo-devices]\ninterval_ms = 0\n{extra_toml}"
    ))
    .unwrap();
    config.plugins_dir = plugins_dir;
    config.data_dir = dir.path().join("data");
    config.listen = "127.0.0.1:0".parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (core, addr) = runtime.block_on(async {
        let app = App::build(config).await.unwrap();
        let core = app.core().clone();
        let addr = app.local_addr().unwrap();
        tokio::spawn(app.run(std::future::pending()));
        (core, addr)
    });
    // Wait until the plugins are started.
    for _ in 0..200 {
        if core.plugins.live_instances().len() == plugins.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    RunningHost {
        core,
        addr,
        _runtime: runtime,
        _dir: dir,
    }
}

fn http_get(addr: SocketAddr, path: &str) -> usize {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    s.read_to_end(&mut buf).unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&buf[..buf.len().min(300)])
    );
    buf.len()
}

/// The `Host` handle the in-process bench plugin received: the bench calls
/// services through it exactly as a plugin does (guest wrapper, FFI, host,
/// callee), on the bench thread.
static CALLER_HOST: Mutex<Option<Host>> = Mutex::new(None);

/// A plugin that only keeps its host handle.
struct BenchCaller;

impl PluginImpl for BenchCaller {
    const NAME: &'static str = "bench-caller";
    const VERSION: &'static str = "1.0.0";

    fn new(host: Host, _config: &str) -> Result<Self, PluginError> {
        *CALLER_HOST.lock().unwrap() = Some(host);
        Ok(BenchCaller)
    }
}

/// Loads [`BenchCaller`] into `host` (in-process, through the real
/// supervisor, as `core/tests.rs` does) and returns its host handle.
fn caller_plugin(host: &RunningHost) -> Host {
    host.core
        .plugins
        .load_from(&host.core, Path::new("/bench/libbench_caller.so"), |file| {
            let module = root_module::<BenchCaller>();
            Ok(LoadedLibrary {
                module,
                info: (module.info())(),
                copy: PathBuf::from(file),
            })
        });
    CALLER_HOST
        .lock()
        .unwrap()
        .take()
        .expect("bench-caller loaded")
}

fn service_calls(c: &mut Criterion) {
    if !plugins_built("service_call", &["demo_devices", "monitoring_plugin"]) {
        return;
    }
    let input = json!({"ms": 0}).to_string();
    let caller = host_harness::observer::intern("bench");
    let mut group = c.benchmark_group("service_call");
    let plain = start_host(&["demo_devices"], "");
    let plugin = caller_plugin(&plain);
    group.bench_function("registry_without_monitoring", |b| {
        b.iter(|| {
            plain
                .core
                .call_service(&caller, "demo.sleep", &input, None)
                .unwrap()
        })
    });
    // A plugin calling a plugin: in-line on the caller's thread.
    group.bench_function("plugin_to_plugin_without_monitoring", |b| {
        b.iter(|| plugin.call_service("demo.sleep", &input, None).unwrap())
    });
    // The deadline-bearing variant (HTTP API): a hop to the blocking pool
    // and back, what every plugin → plugin call paid before.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    group.bench_function("blocking_pool_hop_without_monitoring", |b| {
        b.iter(|| {
            rt.block_on(
                plain
                    .core
                    .call_service_async(&caller, "demo.sleep", input.clone(), None),
            )
            .unwrap()
        })
    });
    drop(plain);
    let observed = start_host(&["demo_devices", "monitoring_plugin"], "");
    let plugin = caller_plugin(&observed);
    group.bench_function("registry_with_monitoring", |b| {
        b.iter(|| {
            observed
                .core
                .call_service(&caller, "demo.sleep", &input, None)
                .unwrap()
        })
    });
    group.bench_function("plugin_to_plugin_with_monitoring", |b| {
        b.iter(|| plugin.call_service("demo.sleep", &input, None).unwrap())
    });
    group.bench_function("blocking_pool_hop_with_monitoring", |b| {
        b.iter(|| {
            rt.block_on(observed.core.call_service_async(
                &caller,
                "demo.sleep",
                input.clone(),
                None,
            ))
            .unwrap()
        })
    });
    // `monitoring.record_metric` in the seed's shape, from a plugin.
    let record = json!({"name": "bench_room_temperature_celsius", "value": 21.5,
                        "labels": {"room": "hall"}})
    .to_string();
    group.bench_function("record_metric_from_plugin", |b| {
        b.iter(|| {
            plugin
                .call_service("monitoring.record_metric", &record, None)
                .unwrap()
        })
    });
    group.finish();
}

fn observer_report(c: &mut Criterion) {
    let mut group = c.benchmark_group("observer_report");
    let name = host_harness::observer::intern("demo.light.toggle");
    let caller = host_harness::observer::intern("http");
    let idle = ObserverHub::new(65_536, Duration::from_millis(20));
    group.bench_function("no_observer", |b| {
        b.iter(|| {
            if idle.is_active() {
                idle.report(Report::new(
                    ObservationKind::ServiceCall,
                    CallStatus::Ok,
                    name.clone(),
                    caller.clone(),
                ));
            }
        })
    });
    // The host's default ring capacity, drained every millisecond. A full
    // ring drops reports, which is cheaper than queueing them, and nothing
    // drains as fast as a bench loop reports: so the reports are timed in
    // chunks that fit, and between chunks (untimed) the bench waits until
    // the drain thread has delivered them. What is measured is what a
    // caller pays for a report that is queued, never a drop.
    let capacity = host_harness::Config::default().host.observer_queue_capacity;
    let hub = ObserverHub::new(capacity, Duration::from_millis(1));
    hub.add(1, "bench", Arc::new(|_| {}));
    let chunk = (capacity / 4).max(1) as u64;
    let mut reported = 0u64;
    group.bench_function("one_observer_timed_call", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(chunk);
                let t = Instant::now();
                for _ in 0..n {
                    // As the service path does: two clock reads, the second
                    // giving the report both its duration and its time.
                    let started = Instant::now();
                    hub.report(Report::timed(
                        ObservationKind::ServiceCall,
                        CallStatus::Ok,
                        name.clone(),
                        caller.clone(),
                        started,
                    ));
                }
                timed += t.elapsed();
                left -= n;
                reported += n;
                while hub.stats()[0].delivered + hub.dropped_total() < reported {
                    std::thread::yield_now();
                }
            }
            timed
        })
    });
    assert_eq!(hub.dropped_total(), 0, "a timed report was dropped");
    // The peer: what a host instrumented with the `prometheus` crate would
    // pay per call with its counter and histogram resolved beforehand.
    let calls = prometheus::IntCounter::new("calls_total", "calls").unwrap();
    let durations = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
        "call_duration_seconds",
        "call durations",
    ))
    .unwrap();
    group.bench_function("prometheus_timed_call", |b| {
        b.iter(|| {
            let started = std::time::Instant::now();
            calls.inc();
            durations.observe(started.elapsed().as_secs_f64());
        })
    });
    group.finish();
    hub.remove(1);
    print_ratios(
        "observer report, ratio of medians",
        &[Ratio {
            group: "observer_report",
            ours: "one_observer_timed_call",
            peer: "prometheus_timed_call",
            goal: "<= 1.0",
        }],
    );
}

fn events(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_bus");
    let bus = EventBus::new(1 << 16);
    let delivered = Arc::new(AtomicU64::new(0));
    let d = delivered.clone();
    bus.subscribe(1, "bench", "device.*.state", move || {
        Arc::new(move |_: Delivery| {
            d.fetch_add(1, Ordering::Release);
        })
    })
    .unwrap();
    let event = || BusEvent {
        topic: "device.light1.state".into(),
        payload: "{\"on\":true}".into(),
        source: "bench".into(),
        published_at_ms: 0,
        trace_context: None,
    };
    group.bench_function("publish_to_delivery", |b| {
        b.iter(|| {
            let before = delivered.load(Ordering::Acquire);
            bus.publish(event(), |_| {}).unwrap();
            while delivered.load(Ordering::Acquire) == before {
                std::hint::spin_loop();
            }
        })
    });
    group.bench_function("publish_only", |b| {
        b.iter(|| bus.publish(event(), |_| {}).unwrap())
    });
    group.finish();
}

fn scrape_and_health(c: &mut Criterion) {
    if !plugins_built("http", &["demo_devices", "monitoring_plugin"]) {
        return;
    }
    let host = start_host(
        &["demo_devices", "monitoring_plugin"],
        "[plugins.monitoring.metrics]\nmax_series_per_metric = 20000",
    );
    let caller = host_harness::observer::intern("bench");
    // 10,000 series: 100 × 100 label values of one counter.
    for a in 0..100 {
        for b in 0..100 {
            let input = json!({"name": "bench_requests_total", "kind": "counter", "value": 1,
                               "labels": {"a": format!("a{a}"), "b": format!("b{b}")}});
            host.core
                .call_service(
                    &caller,
                    "monitoring.record_metric",
                    &input.to_string(),
                    None,
                )
                .unwrap();
        }
    }
    for i in 0..100 {
        let input = json!({"name": format!("check{i}"), "service": "demo.health"});
        host.core
            .call_service(
                &caller,
                "monitoring.register_health_check",
                &input.to_string(),
                None,
            )
            .unwrap();
    }
    let bytes = http_get(host.addr, "/api/v1/monitoring/metrics");
    eprintln!("scrape body: {bytes} bytes");
    let mut group = c.benchmark_group("http");
    group.sample_size(30);
    group.bench_function("scrape_10k_series", |b| {
        b.iter(|| http_get(host.addr, "/api/v1/monitoring/metrics"))
    });
    group.bench_function("health_cached_100_checks", |b| {
        b.iter(|| http_get(host.addr, "/api/v1/monitoring/health"))
    });
    group.bench_function("health_refresh_100_checks", |b| {
        b.iter(|| http_get(host.addr, "/api/v1/monitoring/health?refresh=true"))
    });
    group.finish();
}

/// What every service or HTTP call to a plugin pays before and after the
/// callback: depth check, bulkhead slot, breaker ticket, the callee's chain
/// as current chain, the outcome. And the cost of a refusal while open.
fn call_admission(c: &mut Criterion) {
    let settings = ResilienceSettings::default();
    let (tx, _rx) = crossbeam_channel::unbounded();
    let name: Arc<str> = Arc::from("bench");
    let breaker = Breaker::new(name.clone(), 1, &settings, tx.clone());
    let bulkhead = Bulkhead::new(name.clone(), settings.max_in_flight);
    let mut group = c.benchmark_group("call_admission");
    group.bench_function("closed_circuit", |b| {
        b.iter(|| {
            let chain = CallChain::current();
            chain
                .check(settings.max_call_depth, &name, "bench.svc")
                .unwrap();
            let permit = bulkhead.try_acquire().unwrap();
            let ticket = breaker.admit().unwrap();
            {
                let _current = chain.then(&name).enter();
            }
            breaker.record(ticket, Outcome::Answered);
            drop(permit);
        })
    });
    let open = Breaker::new(name.clone(), 2, &settings, tx);
    open.hung("hung in bench".into(), Instant::now());
    group.bench_function("open_circuit_refusal", |b| {
        b.iter(|| open.admit().unwrap_err())
    });
    group.finish();
}

criterion_group!(
    benches,
    call_admission,
    observer_report,
    events,
    service_calls,
    scrape_and_health
);
criterion_main!(benches);
