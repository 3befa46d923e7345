//! Forwarding to a real Sentry / GlitchTip: the "scale out" path for errors.
//!
//! When a DSN is configured, captured events are also sent as gzip'd
//! envelopes from one background std thread (the plugin has no tokio
//! runtime). The caller never blocks: [`Forwarder::send`] puts the event on a
//! bounded queue and counts a drop when it is full. Network errors and 5xx
//! are retried with exponential backoff; 429 and `X-Sentry-Rate-Limits` pause
//! the affected categories (events arriving meanwhile are dropped and counted
//! as `rate_limited`, as Sentry SDKs do). [`Forwarder::stop`] joins the thread.

use std::collections::HashMap;
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map};

use super::envelope::{write_envelope, EnvelopeItem};
use super::event::ErrorEvent;
use super::protocol::to_sentry_event;
use crate::time::{format_rfc3339, now_ms};

/// The data category of error events in Sentry rate limits.
const CATEGORY: &str = "error";

/// Forwarder errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwarderError {
    /// The DSN does not parse.
    #[error("invalid DSN: {0}")]
    InvalidDsn(&'static str),
    /// The sender thread could not be started.
    #[error("could not start the forwarder thread: {0}")]
    Spawn(String),
    /// The TLS settings cannot be used.
    #[error("forwarder: {0}")]
    Tls(#[from] crate::outbound::TlsError),
}

/// A parsed DSN: `{scheme}://{public_key}@{host}[:{port}][/{path}]/{project_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `http` or `https`.
    pub scheme: String,
    /// The public key.
    pub public_key: String,
    /// Host name or address.
    pub host: String,
    /// Explicit port.
    pub port: Option<u16>,
    /// Path before the project id (empty or `/prefix`).
    pub path: String,
    /// Project id.
    pub project_id: String,
}

impl FromStr for Dsn {
    type Err = ForwarderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s
            .trim()
            .split_once("://")
            .ok_or(ForwarderError::InvalidDsn("no scheme"))?;
        if scheme != "http" && scheme != "https" {
            return Err(ForwarderError::InvalidDsn("scheme must be http or https"));
        }
        let (userinfo, rest) = rest
            .split_once('@')
            .ok_or(ForwarderError::InvalidDsn("no public key"))?;
        let public_key = userinfo.split(':').next().unwrap_or("");
        if public_key.is_empty() {
            return Err(ForwarderError::InvalidDsn("empty public key"));
        }
        let (hostport, path) = rest
            .split_once('/')
            .ok_or(ForwarderError::InvalidDsn("no project id"))?;
        let path = path.trim_end_matches('/');
        let (prefix, project_id) = match path.rsplit_once('/') {
            Some((p, id)) => (format!("/{p}"), id),
            None => (String::new(), path),
        };
        if project_id.is_empty() || !project_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ForwarderError::InvalidDsn("project id must be numeric"));
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| ForwarderError::InvalidDsn("bad port"))?,
                ),
            ),
            _ => (hostport, None),
        };
        if host.is_empty() {
            return Err(ForwarderError::InvalidDsn("empty host"));
        }
        Ok(Dsn {
            scheme: scheme.to_string(),
            public_key: public_key.to_string(),
            host: host.to_string(),
            port,
            path: prefix,
            project_id: project_id.to_string(),
        })
    }
}

impl Dsn {
    /// `{scheme}://{host}[:{port}]{path}/api/{project}/envelope/`.
    pub fn envelope_url(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}{}/api/{}/envelope/",
            self.scheme, self.host, self.path, self.project_id
        )
    }

    /// The DSN as text, without any secret part.
    pub fn to_dsn_string(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}@{}{port}{}/{}",
            self.scheme, self.public_key, self.host, self.path, self.project_id
        )
    }
}

/// Forwarder settings.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Where to send.
    pub dsn: Dsn,
    /// Events waiting to be sent (default 100); more are dropped.
    pub queue_capacity: usize,
    /// Retries after the first attempt on network errors / 5xx (default 3).
    pub max_retries: u32,
    /// First backoff; doubled per retry (default 500 ms).
    pub initial_backoff: Duration,
    /// Backoff ceiling (default 30 s).
    pub max_backoff: Duration,
    /// Per-request timeout (default 10 s).
    pub timeout: Duration,
    /// How long `stop` spends sending what is still queued (default 2 s).
    pub shutdown_timeout: Duration,
    /// Version in `sentry_client=homeconsole-monitoring/{version}`.
    pub client_version: String,
    /// Trust roots and client certificate of an `https://` DSN.
    pub tls: crate::outbound::TlsSettings,
    /// `server_name` of forwarded events (from `external_labels.instance`).
    pub server_name: Option<String>,
    /// Tags added to forwarded events (the other external labels); an
    /// event's own tag of the same name wins.
    pub tags: std::collections::BTreeMap<String, String>,
    /// Keeps (and logs) the last delivery error.
    pub errors: crate::outbound::LastError,
}

impl ForwarderConfig {
    /// Defaults for `dsn`.
    pub fn new(dsn: Dsn) -> Self {
        ForwarderConfig {
            dsn,
            queue_capacity: 100,
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(2),
            client_version: env!("CARGO_PKG_VERSION").to_string(),
            tls: crate::outbound::TlsSettings::default(),
            server_name: None,
            tags: std::collections::BTreeMap::new(),
            errors: crate::outbound::LastError::default(),
        }
    }
}

/// Forwarder counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ForwarderStats {
    /// Accepted by the server (2xx).
    pub sent: u64,
    /// Given up on (4xx other than 429, or retries exhausted).
    pub failed: u64,
    /// Dropped because the queue was full or the forwarder stopped.
    pub dropped: u64,
    /// Dropped because of a 429 or an active rate limit.
    pub rate_limited: u64,
    /// Retry attempts made.
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
}

/// Rate limits in force, per category (`None` key = all categories).
#[derive(Debug, Default, Clone)]
pub struct RateLimits {
    until: HashMap<Option<String>, Instant>,
}

impl RateLimits {
    /// Applies an `X-Sentry-Rate-Limits` value
    /// (`retry_after:categories:scope[:reason][:namespaces], …`; categories
    /// `;`-separated, empty = all) received at `now`.
    pub fn apply_header(&mut self, value: &str, now: Instant) {
        for entry in value.split(',') {
            let mut parts = entry.trim().split(':');
            let Some(secs) = parts.next().and_then(|s| s.trim().parse::<f64>().ok()) else {
                continue;
            };
            if !secs.is_finite() || secs < 0.0 {
                continue;
            }
            let until = now + Duration::from_secs_f64(secs.min(86_400.0));
            let categories = parts.next().unwrap_or("").trim();
            if categories.is_empty() {
                self.extend(None, until);
            } else {
                for c in categories
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                {
                    self.extend(Some(c.to_string()), until);
                }
            }
        }
    }

    /// Pauses all categories for `duration` (a 429 with only `Retry-After`).
    pub fn apply_retry_after(&mut self, duration: Duration, now: Instant) {
        self.extend(None, now + duration);
    }

    fn extend(&mut self, key: Option<String>, until: Instant) {
        let e = self.until.entry(key).or_insert(until);
        if *e < until {
            *e = until;
        }
    }

    /// Whether `category` is paused at `now` (`error` events are also
    /// paused by limits on `default`, as Sentry treats them alike).
    pub fn is_limited(&self, category: &str, now: Instant) -> bool {
        let hit = |k: Option<&str>| {
            self.until
                .get(&k.map(str::to_string))
                .is_some_and(|u| *u > now)
        };
        hit(None) || hit(Some(category)) || (category == "error" && hit(Some("default")))
    }

    /// When `category` is paused until, if it is.
    pub fn limited_until(&self, category: &str, now: Instant) -> Option<Instant> {
        [
            None,
            Some(category.to_string()),
            Some("default".to_string()),
        ]
        .iter()
        .filter_map(|k| self.until.get(k))
        .filter(|u| **u > now)
        .max()
        .copied()
    }
}

/// How long a 429 pauses every category: the shared `Retry-After` rule,
/// and when the header is missing or unreadable the longest pause that rule
/// allows (Sentry's advice is to back off for a minute).
pub fn pause_after_429(retry_after: Option<&str>) -> Duration {
    retry_after
        .and_then(|v| crate::outbound::parse_retry_after(v, std::time::SystemTime::now()))
        .unwrap_or(crate::outbound::retry::MAX_RETRY_AFTER)
}

/// Builds the envelope body for one event.
pub fn build_envelope(event: &ErrorEvent, dsn: &Dsn, client: &str) -> Vec<u8> {
    build_envelope_labelled(event, dsn, client, None, &Default::default())
}

/// Builds the envelope body for one event with this host's `server_name`
/// and extra tags (its external labels).
pub fn build_envelope_labelled(
    event: &ErrorEvent,
    dsn: &Dsn,
    client: &str,
    server_name: Option<&str>,
    tags: &std::collections::BTreeMap<String, String>,
) -> Vec<u8> {
    let mut sentry_event = to_sentry_event(event);
    if let Some(o) = sentry_event.as_object_mut() {
        if let Some(name) = server_name {
            o.entry("server_name").or_insert_with(|| json!(name));
        }
        if !tags.is_empty() {
            let t = o.entry("tags").or_insert_with(|| json!({}));
            if let Some(t) = t.as_object_mut() {
                for (k, v) in tags {
                    t.entry(k.clone()).or_insert_with(|| json!(v));
                }
            }
        }
    }
    let payload = serde_json::to_vec(&sentry_event).unwrap_or_default();
    let mut header = Map::new();
    header.insert("event_id".into(), json!(event.event_id));
    header.insert("dsn".into(), json!(dsn.to_dsn_string()));
    header.insert("sent_at".into(), json!(format_rfc3339(now_ms())));
    header.insert(
        "sdk".into(),
        json!({ "name": "homeconsole-monitoring", "version": client }),
    );
    let mut item_header = Map::new();
    item_header.insert("content_type".into(), json!("application/json"));
    let item = EnvelopeItem {
        item_type: "event".into(),
        header: item_header,
        payload,
    };
    write_envelope(&header, &[item])
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if enc.write_all(bytes).is_err() {
        return Vec::new();
    }
    enc.finish().unwrap_or_default()
}

/// Result of one HTTP attempt.
enum Attempt {
    Sent,
    Retry,
    Fail,
    RateLimited,
}

struct Worker {
    config: ForwarderConfig,
    agent: ureq::Agent,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    limits: RateLimits,
    auth: String,
    url: String,
}

impl Worker {
    fn attempt(&mut self, body: &[u8]) -> Attempt {
        let resp = self
            .agent
            .post(&self.url)
            .header("X-Sentry-Auth", &self.auth)
            .header("Content-Type", "application/x-sentry-envelope")
            .header("Content-Encoding", "gzip")
            .send(body);
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.config.errors.note(format!(
                    "POST {}: {}",
                    self.url,
                    crate::outbound::errors::describe(&e)
                ));
                return Attempt::Retry;
            }
        };
        let now = Instant::now();
        let headers = resp.headers();
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let rate_header = get("x-sentry-rate-limits");
        let retry_after = get("retry-after");
        if let Some(h) = &rate_header {
            self.limits.apply_header(h, now);
        }
        let status = resp.status().as_u16();
        if !(200..=299).contains(&status) {
            self.config
                .errors
                .note(format!("POST {}: HTTP {status}", self.url));
        }
        match status {
            200..=299 => Attempt::Sent,
            429 => {
                if rate_header.is_none() {
                    self.limits
                        .apply_retry_after(pause_after_429(retry_after.as_deref()), now);
                }
                Attempt::RateLimited
            }
            500..=599 => Attempt::Retry,
            _ => Attempt::Fail,
        }
    }

    /// Sleeps up to `d`, waking early on stop. Returns false when stopping.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(20)));
        }
        false
    }

    fn deliver(&mut self, event: &ErrorEvent, retries_allowed: bool) {
        if self.limits.is_limited(CATEGORY, Instant::now()) {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let body = gzip(&build_envelope_labelled(
            event,
            &self.config.dsn,
            &self.config.client_version,
            self.config.server_name.as_deref(),
            &self.config.tags,
        ));
        let mut backoff =
            crate::outbound::Backoff::new(self.config.initial_backoff, self.config.max_backoff);
        let mut tries = 0;
        loop {
            match self.attempt(&body) {
                Attempt::Sent => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Attempt::RateLimited => {
                    self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Attempt::Fail => break,
                Attempt::Retry => {
                    if !retries_allowed
                        || tries >= self.config.max_retries
                        || !self.sleep(backoff.next_delay(None))
                    {
                        break;
                    }
                    tries += 1;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn run(mut self, rx: Receiver<ErrorEvent>) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(event) => self.deliver(&event, true),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Shutdown: one attempt each for what is queued, within the deadline.
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while let Ok(event) = rx.try_recv() {
            if Instant::now() < deadline {
                self.deliver(&event, false);
            } else {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sends events to a Sentry-compatible server from a background thread.
pub struct Forwarder {
    tx: Option<SyncSender<ErrorEvent>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    errors: crate::outbound::LastError,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Starts the sender thread.
    pub fn start(config: ForwarderConfig) -> Result<Self, ForwarderError> {
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let agent = crate::outbound::agent(config.timeout, &config.tls)?;
        let errors = config.errors.clone();
        let worker = Worker {
            auth: format!(
                "Sentry sentry_key={}, sentry_version=7, sentry_client=homeconsole-monitoring/{}",
                config.dsn.public_key, config.client_version
            ),
            url: config.dsn.envelope_url(),
            config,
            agent,
            counters: counters.clone(),
            stop: stop.clone(),
            limits: RateLimits::default(),
        };
        let thread = std::thread::Builder::new()
            .name("error-forwarder".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| ForwarderError::Spawn(e.to_string()))?;
        Ok(Forwarder {
            tx: Some(tx),
            thread: Some(thread),
            counters,
            stop,
            errors,
        })
    }

    /// Queues an event; never blocks. Returns false (and counts a drop)
    /// when the queue is full or the forwarder is stopped.
    pub fn send(&self, event: ErrorEvent) -> bool {
        let ok = match &self.tx {
            Some(tx) => match tx.try_send(event) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !ok {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The last delivery error (transport error with its cause, or HTTP
    /// status), if any.
    pub fn last_error(&self) -> Option<String> {
        self.errors.get()
    }

    /// Counters so far.
    pub fn stats(&self) -> ForwarderStats {
        let c = &self.counters;
        ForwarderStats {
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// Stops the thread and joins it: an attempt in flight finishes (bounded
    /// by the request timeout), backoff sleeps end at once, queued events get
    /// one attempt each within `shutdown_timeout`, the rest count as dropped.
    /// Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parsing() {
        let d: Dsn = "http://KEY@127.0.0.1:9000/42".parse().unwrap();
        assert_eq!(
            (
                d.public_key.as_str(),
                d.host.as_str(),
                d.port,
                d.project_id.as_str()
            ),
            ("KEY", "127.0.0.1", Some(9000), "42")
        );
        assert_eq!(d.envelope_url(), "http://127.0.0.1:9000/api/42/envelope/");
        let d: Dsn = "https://k:secret@sentry.example/sub/path/7/"
            .parse()
            .unwrap();
        assert_eq!(
            d.envelope_url(),
            "https://sentry.example/sub/path/api/7/envelope/"
        );
        assert_eq!(d.to_dsn_string(), "https://k@sentry.example/sub/path/7");
        for bad in [
            "",
            "ftp://k@h/1",
            "http://h/1",
            "http://@h/1",
            "http://k@h",
            "http://k@h/x",
            "http://k@h:99999/1",
            "http://k@/1",
        ] {
            assert!(bad.parse::<Dsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limit_header() {
        let now = Instant::now();
        let mut l = RateLimits::default();
        l.apply_header(
            "60:error:organization, 2700:default;transaction:organization, bogus, -1::x",
            now,
        );
        assert!(l.is_limited("error", now + Duration::from_secs(59)));
        assert!(l.is_limited("error", now + Duration::from_secs(61))); // via default
        assert!(!l.is_limited("error", now + Duration::from_secs(2701)));
        assert!(!l.is_limited("session", now));
        let mut all = RateLimits::default();
        all.apply_header("10::organization", now);
        assert!(all.is_limited("session", now));
        let mut r = RateLimits::default();
        r.apply_retry_after(pause_after_429(Some("2")), now);
        assert!(r.is_limited("error", now + Duration::from_secs(1)));
        assert!(!r.is_limited("error", now + Duration::from_secs(3)));
        assert_eq!(
            pause_after_429(Some("soon")),
            crate::outbound::retry::MAX_RETRY_AFTER
        );
        assert_eq!(pause_after_429(None), Duration::from_secs(60));
        assert_eq!(pause_after_429(Some("1.5")), Duration::from_millis(1500));
        assert_eq!(pause_after_429(Some("86400")), Duration::from_secs(60));
    }
}
