//! `loadgen`: drives a running host with service calls and events through
//! the demo plugin while scraping metrics and health, then prints requests/s,
//! errors, p50/p99 latency per endpoint, the host's RSS at start, after
//! warm-up and at the end, and the drop counters. Loopback only; bounded by
//! `--seconds`.
//!
//! `./scripts/soak` starts a release host and runs this against it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

/// Load generator for a HomeConsole host running the demo plugin.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Host address (loopback).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// How long to run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Warm-up before the "after warm-up" RSS reading.
    #[arg(long, default_value_t = 30)]
    warmup_seconds: u64,
    /// Worker threads sending service calls and events.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Requests per second per worker (0 = as fast as possible).
    #[arg(long, default_value_t = 100)]
    rate: u64,
}

#[derive(Default)]
struct Stats {
    latencies_us: BTreeMap<&'static str, Vec<u32>>,
    errors: BTreeMap<&'static str, u64>,
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn record(stats: &Mutex<Stats>, name: &'static str, started: Instant, ok: bool) {
    let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
    let mut s = stats.lock().unwrap();
    s.latencies_us.entry(name).or_default().push(us);
    if !ok {
        *s.errors.entry(name).or_default() += 1;
    }
}

fn rss_kib(pid: u64) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>()
        + 0.0
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let args = Args::parse();
    let addr = args.addr;
    assert!(
        addr.ip().is_loopback(),
        "loadgen only targets loopback addresses"
    );
    let host = request(addr, "GET", "/api/v1/host", "").expect("host reachable");
    let pid: u64 = serde_json::from_str::<serde_json::Value>(&host.1)
        .ok()
        .and_then(|v| v["pid"].as_u64())
        .expect("host pid");
    let rss_start = rss_kib(pid);
    let stats = Arc::new(Mutex::new(Stats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.threads {
        let (stats, stop) = (stats.clone(), stop.clone());
        let period = 1_000_000u64
            .checked_div(args.rate)
            .map_or(Duration::ZERO, Duration::from_micros);
        workers.push(std::thread::spawn(move || {
            let mut n: u64 = 0;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let light = format!("light{}", 1 + (n + w as u64) % 3);
                let t = Instant::now();
                let (name, result) = match n % 4 {
                    0 => (
                        "POST demo.light.toggle",
                        request(
                            addr,
                            "POST",
                            "/api/v1/services/demo.light.toggle",
                            &format!("{{\"device\":\"{light}\"}}"),
                        ),
                    ),
                    1 => (
                        "POST demo.light.get",
                        request(
                            addr,
                            "POST",
                            "/api/v1/services/demo.light.get",
                            &format!("{{\"device\":\"{light}\"}}"),
                        ),
                    ),
                    2 => (
                        "POST demo.kv.put",
                        request(
                            addr,
                            "POST",
                            "/api/v1/services/demo.kv.put",
                            &format!("{{\"key\":\"w{w}-{}\",\"value\":{n}}}", n % 100),
                        ),
                    ),
                    _ => (
                        "POST events",
                        request(
                            addr,
                            "POST",
                            &format!("/api/v1/events/device.{light}.command"),
                            "{\"action\":\"noop\"}",
                        ),
                    ),
                };
                let ok = matches!(result, Ok((status, _)) if status / 100 == 2);
                let name = if result.is_err() {
                    "connection error"
                } else {
                    name
                };
                record(&stats, name, t, ok);
                if !period.is_zero() {
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            }
        }));
    }
    // Scraper: metrics and health once a second each.
    let mut rss_warm = None;
    let mut last_metrics = String::new();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        let t = Instant::now();
        let m = request(addr, "GET", "/api/v1/monitoring/metrics", "");
        let ok = matches!(&m, Ok((200, _)));
        if let Ok((_, body)) = m {
            last_metrics = body;
        }
        record(&stats, "GET metrics", t, ok);
        let t = Instant::now();
        let h = request(addr, "GET", "/api/v1/monitoring/health", "");
        record(&stats, "GET health", t, matches!(h, Ok((200, _))));
        if rss_warm.is_none()
            && started.elapsed() >= Duration::from_secs(args.warmup_seconds.min(args.seconds))
        {
            rss_warm = rss_kib(pid);
        }
        std::thread::sleep(Duration::from_millis(1000).saturating_sub(t.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid);
    // Let the observer queue drain, then read the drop counters.
    std::thread::sleep(Duration::from_millis(500));
    if let Ok((200, body)) = request(addr, "GET", "/api/v1/monitoring/metrics", "") {
        last_metrics = body;
    }
    let stats = stats.lock().unwrap();
    let total: usize = stats.latencies_us.values().map(Vec::len).sum();
    let errors: u64 = stats.errors.values().sum();
    println!(
        "duration_s={elapsed:.1} requests={total} requests_per_s={:.1} errors={errors}",
        total as f64 / elapsed
    );
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>7}",
        "endpoint", "count", "p50_ms", "p99_ms", "errors"
    );
    for (name, lat) in &stats.latencies_us {
        let mut sorted = lat.clone();
        sorted.sort_unstable();
        println!(
            "{name:<26} {:>9} {:>9.2} {:>9.2} {:>7}",
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            stats.errors.get(name).copied().unwrap_or(0)
        );
    }
    let kib = |v: Option<u64>| {
        v.map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "rss_mib start={} after_warmup={} end={}",
        kib(rss_start),
        kib(rss_warm),
        kib(rss_end)
    );
    if let (Some(w), Some(e)) = (rss_warm, rss_end) {
        println!(
            "rss_growth_after_warmup_percent={:.1}",
            (e as f64 - w as f64) / w as f64 * 100.0
        );
    }
    println!(
        "observations_dropped={} event_deliveries_dropped={}",
        metric(
            &last_metrics,
            "homeconsole_monitoring_observations_dropped_total"
        ),
        metric(&last_metrics, "homeconsole_event_deliveries_dropped_total")
    );
}
