//! The "profiling" capability: answers "where does the time go, and whose
//! fault is it?" for the host and each plugin loaded into it.
//!
//! * `GET /api/v1/monitoring/profile` takes an on-demand CPU profile of the
//!   whole host process (admin token required) and answers a flamegraph or a
//!   gzip pprof whose frames carry their library (`[libdemo_devices.so]`).
//!   The request blocks inside this plugin's `handle_http` for the profile's
//!   duration, so the route is registered with a 70 s deadline; a stopped or
//!   replaced plugin cancels it and waits for it to end, so no profiler is
//!   left running in a library copy nobody controls any more.
//! * Slow calls: every `ServiceCall` observation feeds per-service totals; a
//!   call slower than `profiling.slow_call_ms` is logged through the host
//!   logger and kept (bounded) for `GET /api/v1/monitoring/slow`.
//! * Stalls: the host's watchdog reports callbacks busy longer than its stall
//!   threshold; each report becomes a log line, a counter and a
//!   `monitoring.stall` bus event. The stalled thread's stack is not
//!   included: in this design nothing can safely unwind another thread (see
//!   [`STACK_UNAVAILABLE_REASON`]).
//!
//! Per-callback time (`homeconsole_plugin_callback_seconds_total`) is mirrored
//! from the host's plugin list by the collector on every scrape.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plugin_abi::{
    CallStatus, HttpRequest, HttpResponse, LogLevel, Observation, ObservationKind, PluginError,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::capability::{Capability, Ctx, Route};
use crate::config::ProfilingConfig;
use crate::http::{error, has_token, query_param, require_admin};
use crate::profiling::{
    render_output, validate_frequency, ProfileError, ProfileFormat, ProfileGuard,
};

/// The CPU profile route.
pub const PROFILE_PATH: &str = "/api/v1/monitoring/profile";
/// The slow calls and stalls route.
pub const SLOW_PATH: &str = "/api/v1/monitoring/slow";
/// Deadline of the profile route: the longest profile (60 s) plus symbolization.
pub const PROFILE_ROUTE_TIMEOUT_MS: u64 = 70_000;
/// Bus topic of a stall report.
pub const STALL_TOPIC: &str = "monitoring.stall";
/// Why a stall report carries no stack.
pub const STACK_UNAVAILABLE_REASON: &str = "the stalled callback runs on a host thread inside another plugin's code; capturing its stack would mean signalling that thread and unwinding it from a signal handler, which is not async-signal-safe and not possible from the plugin without unsafe code; take a CPU profile while the stall lasts instead (GET /api/v1/monitoring/profile)";
/// Shortest profile accepted through `millis`, ms.
pub const MIN_PROFILE_MILLIS: u64 = 100;
/// Services tracked by name; beyond this they are folded into `other`.
pub const MAX_SERVICES: usize = 10_000;
/// Stall reports kept for `/slow`.
pub const STALLS_KEPT: usize = 50;
/// Slow-call log lines per second at most; the rest are counted and summarized.
pub const SLOW_LOGS_PER_SECOND: u32 = 20;
/// How long [`Capability::stop`] waits for a running profile to end.
const STOP_WAIT: Duration = Duration::from_secs(4);

/// One service call slower than the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowCall {
    /// Service name.
    pub service: String,
    /// Calling plugin (`http` for API calls).
    pub caller: String,
    /// `ok`, `error`, `timeout` or `not_found`.
    pub status: &'static str,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// When it ended, Unix epoch ms.
    pub at_unix_ms: u64,
    /// W3C trace id (32 hex digits) when the call was traced.
    pub trace_id: Option<String>,
}

/// Totals of one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceTotals {
    /// Calls seen.
    pub calls: u64,
    /// Sum of durations, ns.
    pub total_ns: u64,
    /// Longest call, ns.
    pub max_ns: u64,
    /// Calls slower than the threshold.
    pub slow: u64,
}

#[derive(Default)]
struct TrackerState {
    recent: VecDeque<SlowCall>,
    services: HashMap<String, ServiceTotals>,
    slow_total: u64,
}

/// Per-service totals and the most recent slow calls, fed from observer
/// batches (one lock per batch, no allocation for a call that is not slow
/// and whose service is already known).
pub struct SlowCallTracker {
    threshold_ns: u64,
    kept: usize,
    state: Mutex<TrackerState>,
}

impl SlowCallTracker {
    /// A tracker flagging calls slower than `slow_call_ms`, keeping `kept`.
    pub fn new(slow_call_ms: u64, kept: usize) -> Self {
        SlowCallTracker {
            threshold_ns: slow_call_ms.saturating_mul(1_000_000),
            kept: kept.max(1),
            state: Mutex::new(TrackerState::default()),
        }
    }

    /// Applies a batch; returns the calls in it that were slow.
    pub fn observe(&self, batch: &[Observation]) -> Vec<SlowCall> {
        let mut slow = Vec::new();
        let mut state = self.state.lock();
        let state = &mut *state;
        for o in batch {
            if o.kind != ObservationKind::ServiceCall || o.status == CallStatus::NotFound {
                continue;
            }
            let name = o.name.as_str();
            let is_slow = o.duration_ns > self.threshold_ns;
            let totals = match state.services.get_mut(name) {
                Some(t) => t,
                None => {
                    let key = if state.services.len() < MAX_SERVICES {
                        name
                    } else {
                        crate::metrics::collector::OVERFLOW_LABEL
                    };
                    state.services.entry(key.to_owned()).or_default()
                }
            };
            totals.calls += 1;
            totals.total_ns = totals.total_ns.saturating_add(o.duration_ns);
            totals.max_ns = totals.max_ns.max(o.duration_ns);
            if is_slow {
                totals.slow += 1;
                state.slow_total += 1;
                let call = SlowCall {
                    service: name.to_owned(),
                    caller: o.caller.as_str().to_owned(),
                    status: o.status().as_str(),
                    duration_ms: o.duration_ns as f64 / 1e6,
                    at_unix_ms: o.at_unix_ns / 1_000_000,
                    trace_id: o
                        .trace_context
                        .as_ref()
                        .map(|t| t.trace_id_hex())
                        .into_option(),
                };
                if state.recent.len() == self.kept {
                    state.recent.pop_front();
                }
                state.recent.push_back(call.clone());
                slow.push(call);
            }
        }
        slow
    }

    /// Slow calls seen since start.
    pub fn slow_total(&self) -> u64 {
        self.state.lock().slow_total
    }

    /// Totals of one service.
    pub fn service(&self, name: &str) -> Option<ServiceTotals> {
        self.state.lock().services.get(name).copied()
    }

    /// The kept slow calls, slowest first, and the `top` services by total
    /// time, as JSON.
    pub fn snapshot(&self, top: usize) -> Value {
        let state = self.state.lock();
        let mut recent: Vec<&SlowCall> = state.recent.iter().collect();
        recent.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
        let mut services: Vec<(&String, &ServiceTotals)> = state.services.iter().collect();
        services.sort_by(|a, b| b.1.total_ns.cmp(&a.1.total_ns).then_with(|| a.0.cmp(b.0)));
        let services: Vec<Value> = services
            .into_iter()
            .take(top)
            .map(|(name, t)| {
                json!({
                    "service": name,
                    "calls": t.calls,
                    "total_seconds": t.total_ns as f64 / 1e9,
                    "mean_ms": if t.calls == 0 { 0.0 } else { t.total_ns as f64 / t.calls as f64 / 1e6 },
                    "max_ms": t.max_ns as f64 / 1e6,
                    "slow_calls": t.slow,
                })
            })
            .collect();
        json!({
            "slow_call_ms": self.threshold_ns / 1_000_000,
            "slow_calls_total": state.slow_total,
            "slowest_recent_calls": recent,
            "top_services_by_total_time": services,
        })
    }
}

/// One stall report, as kept for `/slow` and published on the bus.
#[derive(Debug, Clone, Serialize)]
pub struct StallReport {
    /// The plugin whose callback stalled.
    pub plugin: String,
    /// The callback (`handle_service`, `on_event`, `tick`, …).
    pub callback: String,
    /// What it was doing: service, topic or path.
    pub detail: String,
    /// How long it had been busy when reported, ms.
    pub busy_ms: f64,
    /// Name of the host thread running it.
    pub thread: String,
    /// When it was reported, Unix epoch ms.
    pub at_unix_ms: u64,
    /// Always `null`: see [`STACK_UNAVAILABLE_REASON`].
    pub stack: Option<String>,
    /// Why there is no stack.
    pub stack_unavailable_reason: &'static str,
}

/// Rate limit of slow-call log lines.
struct LogBudget {
    second: u64,
    used: u32,
    suppressed: u64,
}

/// Decrements the running-profile count when dropped.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a profile request was refused before sampling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// A parameter is not a number.
    #[error("query parameter {name} must be a whole number, got {value:?}")]
    NotANumber {
        /// Parameter name.
        name: &'static str,
        /// What was given (truncated).
        value: String,
    },
    /// A duration outside the accepted range.
    #[error("{name} must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// Parameter name.
        name: &'static str,
        /// What was given.
        got: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// Both `seconds` and `millis`.
    #[error("give either seconds or millis, not both")]
    BothDurations,
}

/// A parsed profile request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileParams {
    /// How long to sample.
    pub duration: Duration,
    /// Output format.
    pub format: ProfileFormat,
    /// Sampling frequency, Hz.
    pub frequency_hz: u32,
}

fn number(query: &str, name: &'static str) -> Result<Option<u64>, RequestError> {
    match query_param(query, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| RequestError::NotANumber {
                name,
                value: v.chars().take(32).collect(),
            }),
    }
}

fn in_range(name: &'static str, got: u64, min: u64, max: u64) -> Result<u64, RequestError> {
    if (min..=max).contains(&got) {
        Ok(got)
    } else {
        Err(RequestError::OutOfRange {
            name,
            got,
            min,
            max,
        })
    }
}

/// Parses `seconds` (default 10, at most `max_profile_seconds`) or
/// `millis` (for short profiles, e.g. in tests), `format` and `hz`.
pub fn parse_profile_query(query: &str, config: &ProfilingConfig) -> Result<ProfileParams, String> {
    let max_s = config.max_profile_seconds;
    let duration = match (number(query, "seconds"), number(query, "millis")) {
        (Err(e), _) | (_, Err(e)) => return Err(e.to_string()),
        (Ok(Some(_)), Ok(Some(_))) => return Err(RequestError::BothDurations.to_string()),
        (Ok(Some(s)), Ok(None)) => {
            Duration::from_secs(in_range("seconds", s, 1, max_s).map_err(|e| e.to_string())?)
        }
        (Ok(None), Ok(Some(ms))) => Duration::from_millis(
            in_range("millis", ms, MIN_PROFILE_MILLIS, max_s * 1000).map_err(|e| e.to_string())?,
        ),
        (Ok(None), Ok(None)) => Duration::from_secs(crate::profiling::DEFAULT_SECONDS.min(max_s)),
    };
    let format = match query_param(query, "format") {
        Some(f) => f.parse::<ProfileFormat>().map_err(|e| e.to_string())?,
        None => ProfileFormat::Flamegraph,
    };
    let frequency_hz = match number(query, "hz").map_err(|e| e.to_string())? {
        Some(hz) => {
            validate_frequency(u32::try_from(hz).unwrap_or(u32::MAX)).map_err(|e| e.to_string())?
        }
        None => config.default_frequency_hz,
    };
    Ok(ProfileParams {
        duration,
        format,
        frequency_hz,
    })
}

/// Keeps a header value printable ASCII.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

use crate::time::now_ms;

/// The profiling capability.
pub struct Profiling {
    ctx: Ctx,
    own_name: String,
    tracker: SlowCallTracker,
    cancel: AtomicBool,
    running: AtomicUsize,
    profiles_taken: AtomicU64,
    stalls: Mutex<VecDeque<StallReport>>,
    stalls_total: AtomicU64,
    own_profile_stalls: AtomicU64,
    budget: Mutex<LogBudget>,
}

impl Profiling {
    /// Builds the capability from the plugin config.
    pub fn new(ctx: &Ctx) -> Self {
        let p = &ctx.config.profiling;
        Profiling {
            own_name: ctx.host.plugin_name(),
            tracker: SlowCallTracker::new(p.slow_call_ms, p.slow_calls_kept),
            ctx: ctx.clone(),
            cancel: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            profiles_taken: AtomicU64::new(0),
            stalls: Mutex::new(VecDeque::new()),
            stalls_total: AtomicU64::new(0),
            own_profile_stalls: AtomicU64::new(0),
            budget: Mutex::new(LogBudget {
                second: 0,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// The slow-call tracker.
    pub fn tracker(&self) -> &SlowCallTracker {
        &self.tracker
    }

    fn profile(&self, request: &HttpRequest) -> HttpResponse {
        if let Err(denied) = require_admin(&self.ctx.config.access, request, "the profile endpoint")
        {
            return denied;
        }
        let params = match parse_profile_query(request.query.as_str(), &self.ctx.config.profiling) {
            Ok(p) => p,
            Err(message) => return error(400, "bad_request", &message),
        };
        if self.cancel.load(Ordering::SeqCst) {
            return error(503, "unavailable", "the monitoring plugin is stopping");
        }
        // SeqCst on both flags: either stop() sees this profile running, or
        // this profile sees the cancel flag (stop sets it before counting).
        self.running.fetch_add(1, Ordering::SeqCst);
        let _running = Running(&self.running);
        if self.cancel.load(Ordering::SeqCst) {
            return error(503, "unavailable", "the monitoring plugin is stopping");
        }
        let result = ProfileGuard::start(params.duration, params.frequency_hz).and_then(|guard| {
            guard.wait(&self.cancel)?;
            let report = guard.finish()?;
            render_output(&report, params.format)
        });
        match result {
            Ok(out) => {
                self.profiles_taken.fetch_add(1, Ordering::Relaxed);
                let top = out
                    .libraries
                    .iter()
                    .take(8)
                    .map(|l| format!("{}={}", header_safe(&l.library), l.samples))
                    .collect::<Vec<_>>()
                    .join(",");
                let disposition = match params.format {
                    ProfileFormat::Pprof => format!("attachment; filename=\"{}\"", out.file_name),
                    ProfileFormat::Flamegraph => format!("inline; filename=\"{}\"", out.file_name),
                };
                HttpResponse::new(200, out.content_type, out.body)
                    .with_header("content-disposition", &disposition)
                    .with_header("cache-control", "no-store")
                    .with_header("x-profile-samples", &out.samples.to_string())
                    .with_header("x-profile-top-libraries", &top)
            }
            Err(e) => {
                let kind = match &e {
                    ProfileError::Busy => "conflict",
                    ProfileError::Cancelled => "unavailable",
                    e if e.http_status() == 400 => "bad_request",
                    _ => "internal",
                };
                let message = match &e {
                    ProfileError::Busy => "a CPU profile is already running in this host: wait for it to finish (profiles are process-wide, one at a time)".to_owned(),
                    ProfileError::Cancelled => "the profile was cancelled: the monitoring plugin is stopping".to_owned(),
                    e if e.http_status() == 400 => e.to_string(),
                    _ => {
                        self.ctx.host.log(LogLevel::Error, "CPU profile failed", &json!({"error": e.to_string()}));
                        "the profile failed; see the host log".to_owned()
                    }
                };
                error(e.http_status(), kind, &message)
            }
        }
    }

    fn slow(&self, request: &HttpRequest) -> HttpResponse {
        let access = &self.ctx.config.access;
        if let Some(token) = access.metrics_token.as_deref() {
            if !has_token(request, &[Some(token), access.admin_token.as_deref()]) {
                return error(
                    401,
                    "unauthorized",
                    "the slow endpoint requires a bearer token: send Authorization: Bearer <token>",
                )
                .with_header("www-authenticate", "Bearer");
            }
        }
        let top = match number(request.query.as_str(), "limit") {
            Ok(n) => n.unwrap_or(20).clamp(1, 1000) as usize,
            Err(e) => return error(400, "bad_request", &e.to_string()),
        };
        let mut body = self.tracker.snapshot(top);
        let stalls: Vec<StallReport> = self.stalls.lock().iter().rev().cloned().collect();
        body["recent_stalls"] = serde_json::to_value(stalls).unwrap_or(Value::Null);
        body["stalls_total"] = json!(self.stalls_total.load(Ordering::Relaxed));
        HttpResponse::json(200, &body)
    }

    fn log_slow(&self, calls: &[SlowCall]) {
        let now_s = now_ms() / 1000;
        for call in calls {
            let (allowed, suppressed) = {
                let mut b = self.budget.lock();
                let mut suppressed = 0;
                if b.second != now_s {
                    suppressed = std::mem::take(&mut b.suppressed);
                    b.second = now_s;
                    b.used = 0;
                }
                let allowed = b.used < SLOW_LOGS_PER_SECOND;
                if allowed {
                    b.used += 1;
                } else {
                    b.suppressed += 1;
                }
                (allowed, suppressed)
            };
            if suppressed > 0 {
                self.ctx.host.log(
                    LogLevel::Warn,
                    "slow service call log lines suppressed",
                    &json!({"suppressed": suppressed}),
                );
            }
            if allowed {
                self.ctx.host.log(
                    LogLevel::Warn,
                    "slow service call",
                    &json!({
                        "caller": call.caller,
                        "service": call.service,
                        "status": call.status,
                        "duration_ms": call.duration_ms,
                        "threshold_ms": self.ctx.config.profiling.slow_call_ms,
                        "trace_id": call.trace_id,
                    }),
                );
            }
        }
    }

    /// A stall of our own profile request is expected: it blocks on purpose.
    fn is_own_profile(&self, o: &Observation) -> bool {
        o.caller.as_str() == self.own_name
            && o.name.as_str() == "handle_http"
            && o.detail.as_str() == PROFILE_PATH
    }

    fn on_stall(&self, o: &Observation) {
        if self.is_own_profile(o) {
            self.own_profile_stalls.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let report = StallReport {
            plugin: o.caller.as_str().to_owned(),
            callback: o.name.as_str().to_owned(),
            detail: o.detail.as_str().to_owned(),
            busy_ms: o.duration_ns as f64 / 1e6,
            thread: o.message.as_str().to_owned(),
            at_unix_ms: now_ms(),
            stack: None,
            stack_unavailable_reason: STACK_UNAVAILABLE_REASON,
        };
        self.stalls_total.fetch_add(1, Ordering::Relaxed);
        self.ctx
            .collector
            .count_stall(&report.plugin, &report.callback);
        self.ctx.host.log(
            LogLevel::Warn,
            "plugin callback stalled",
            &json!({
                "plugin": report.plugin,
                "callback": report.callback,
                "detail": report.detail,
                "busy_ms": report.busy_ms,
                "thread": report.thread,
            }),
        );
        let payload = serde_json::to_string(&report).unwrap_or_default();
        if let Err(e) = self.ctx.host.publish(STALL_TOPIC, &payload, None) {
            self.ctx
                .host
                .warn(&format!("cannot publish {STALL_TOPIC}: {e}"));
        }
        let mut kept = self.stalls.lock();
        if kept.len() == STALLS_KEPT {
            kept.pop_front();
        }
        kept.push_back(report);
    }
}

impl Capability for Profiling {
    fn name(&self) -> &'static str {
        "profiling"
    }

    fn routes(&self) -> Vec<Route> {
        vec![
            Route {
                method: "GET",
                path: PROFILE_PATH,
                timeout_ms: PROFILE_ROUTE_TIMEOUT_MS,
            },
            Route::new("GET", SLOW_PATH),
        ]
    }

    fn start(&self) -> Result<(), PluginError> {
        self.cancel.store(false, Ordering::Release);
        Ok(())
    }

    /// Cancels a running profile and waits (bounded) until it has ended, so
    /// no sampling timer outlives this instance.
    fn stop(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        let until = Instant::now() + STOP_WAIT;
        while self.running.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.running.load(Ordering::SeqCst) > 0 {
            self.ctx
                .host
                .error("a CPU profile did not end within 4 s of stop");
        }
    }

    fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
        match request.path.as_str() {
            PROFILE_PATH => Some(self.profile(request)),
            SLOW_PATH => Some(self.slow(request)),
            _ => None,
        }
    }

    fn on_observations(&self, batch: &[Observation]) {
        let slow = self.tracker.observe(batch);
        for call in &slow {
            self.ctx.collector.count_slow_call(&call.service);
        }
        if !slow.is_empty() {
            self.log_slow(&slow);
        }
        for o in batch {
            if o.kind == ObservationKind::Stall {
                self.on_stall(o);
            }
        }
    }

    fn status(&self) -> Value {
        json!({
            "profile_running": crate::profiling::is_busy(),
            "profiles_taken": self.profiles_taken.load(Ordering::Relaxed),
            "slow_call_ms": self.ctx.config.profiling.slow_call_ms,
            "slow_calls_total": self.tracker.slow_total(),
            "stalls_total": self.stalls_total.load(Ordering::Relaxed),
            "own_profile_stalls_ignored": self.own_profile_stalls.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn call(name: &str, ms: u64, trace: Option<&str>) -> Observation {
        let mut o = Observation::empty(ObservationKind::ServiceCall);
        o.name = name.into();
        o.caller = "demo".into();
        o.duration_ns = ms * 1_000_000;
        o.at_unix_ns = 5_000_000_000;
        o.trace_context = trace
            .map(|t| plugin_abi::TraceContext::parse(t).unwrap())
            .into();
        o
    }

    #[test]
    fn tracks_totals_and_keeps_the_slow_ones_bounded() {
        let t = SlowCallTracker::new(100, 2);
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let slow = t.observe(&[
            call("a", 10, None),
            call("a", 150, Some(tp)),
            call("b", 300, None),
            call("c", 200, None),
        ]);
        assert_eq!(slow.len(), 3);
        assert_eq!(
            slow[0].trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(
            t.service("a"),
            Some(ServiceTotals {
                calls: 2,
                total_ns: 160_000_000,
                max_ns: 150_000_000,
                slow: 1
            })
        );
        let snap = t.snapshot(10);
        let recent = snap["slowest_recent_calls"].as_array().unwrap();
        assert_eq!(recent.len(), 2, "{snap}");
        assert_eq!(recent[0]["service"], "b");
        assert_eq!(recent[1]["service"], "c");
        assert_eq!(snap["top_services_by_total_time"][0]["service"], "b");
        assert_eq!(snap["slow_calls_total"], 3);
        assert_eq!(
            t.snapshot(1)["top_services_by_total_time"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn ignores_other_kinds_and_not_found() {
        let t = SlowCallTracker::new(1, 5);
        let mut nf = call("x", 10, None);
        nf.status = plugin_abi::CallStatus_NE::new(CallStatus::NotFound);
        let other = Observation::empty(ObservationKind::EventPublished);
        assert!(t.observe(&[nf, other]).is_empty());
        assert_eq!(t.service("x"), None);
    }

    #[test]
    fn profile_query() {
        let c = ProfilingConfig::default();
        let p = parse_profile_query("", &c).unwrap();
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!(p.format, ProfileFormat::Flamegraph);
        assert_eq!(p.frequency_hz, 99);
        let p = parse_profile_query("seconds=2&format=pprof&hz=250", &c).unwrap();
        assert_eq!(
            (p.duration, p.format, p.frequency_hz),
            (Duration::from_secs(2), ProfileFormat::Pprof, 250)
        );
        assert_eq!(
            parse_profile_query("millis=300", &c).unwrap().duration,
            Duration::from_millis(300)
        );
        for bad in [
            "seconds=0",
            "seconds=61",
            "seconds=abc",
            "seconds=-1",
            "millis=5",
            "seconds=1&millis=500",
            "format=png",
            "hz=0",
            "hz=99999999999",
        ] {
            assert!(parse_profile_query(bad, &c).is_err(), "{bad}");
        }
        let small = ProfilingConfig {
            max_profile_seconds: 5,
            ..ProfilingConfig::default()
        };
        assert_eq!(
            parse_profile_query("", &small).unwrap().duration,
            Duration::from_secs(5)
        );
        assert!(parse_profile_query("seconds=6", &small).is_err());
        assert!(parse_profile_query("millis=5001", &small).is_err());
    }

    #[test]
    fn profiling_config_section() {
        use crate::config::MonitoringConfig;
        let c = MonitoringConfig::from_json(
            r#"{"profiling": {"slow_call_ms": 100, "slow_calls_kept": 5}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.profiling.slow_call_ms, c.profiling.slow_calls_kept),
            (100, 5)
        );
        assert_eq!(c.profiling.max_profile_seconds, 60);
        assert_eq!(c.profiling.default_frequency_hz, 99);
        for bad in [
            r#"{"profiling": {"slow_ms": 1}}"#,
            r#"{"profiling": {"slow_calls_kept": 0}}"#,
            r#"{"profiling": {"max_profile_seconds": 61}}"#,
            r#"{"profiling": {"default_frequency_hz": 0}}"#,
        ] {
            assert!(MonitoringConfig::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values_stay_ascii() {
        assert_eq!(header_safe("libdémo so\r\n"), "libd_mo_so__");
    }
}
