//! The remote_write capability: the one part of remote_write that touches
//! the host. It owns the sender thread that samples the plugin's exposition
//! every `interval_secs`, turns it into a `WriteRequest` ([`super::write_request`]),
//! queues and POSTs it with the shared backoff and `Retry-After` rule, and
//! reports its counters under `capabilities.remote_write` in `/status`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plugin_abi::PluginError;
use serde_json::{json, Value};

use super::{proto, write_request};
use crate::capability::{Capability, Ctx};
use crate::config::RemoteWriteConfig;
use crate::metrics::Counter;
use crate::outbound::{Backoff, LastError};

/// One queued request.
struct Batch {
    body: Vec<u8>,
    samples: u64,
}

struct Counters {
    sent: Counter,
    failed: Counter,
    dropped: Counter,
}

/// The remote_write capability (idle when no URL is configured).
pub struct RemoteWrite {
    ctx: Ctx,
    config: RemoteWriteConfig,
    counters: Option<Arc<Counters>>,
    errors: LastError,
    stop: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl RemoteWrite {
    /// Registers the counters; the thread starts in `start`.
    pub fn new(ctx: &Ctx) -> Result<Self, PluginError> {
        let config = ctx.config.remote_write.clone();
        // Registered (at 0) even when off, so dashboards and alerts can rely on it.
        let counters = {
            let family = ctx
                .collector
                .internal()
                .register_counter(
                    crate::metrics::names::REMOTE_WRITE_SAMPLES_TOTAL,
                    "Samples pushed with Prometheus remote_write, by result (sent, failed after retries or refused, dropped from a full queue).",
                    &["result"],
                )
                .map_err(|e| PluginError::failed(e.to_string()))?;
            let c = |r: &str| {
                family
                    .with_labels(&[r])
                    .map_err(|e| PluginError::failed(e.to_string()))
            };
            Some(Arc::new(Counters {
                sent: c("sent")?,
                failed: c("failed")?,
                dropped: c("dropped")?,
            }))
        };
        Ok(RemoteWrite {
            ctx: ctx.clone(),
            config,
            counters,
            errors: ctx.last_error("remote_write"),
            stop: Arc::new(AtomicBool::new(false)),
            queued: Arc::new(AtomicUsize::new(0)),
            thread: Mutex::new(None),
        })
    }
}

/// Header values of one request: authorization and extra headers.
fn request_headers(config: &RemoteWriteConfig) -> Vec<(String, String)> {
    use base64::Engine;
    let mut headers: Vec<(String, String)> = config
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(b) = &config.basic_auth {
        let raw = format!("{}:{}", b.username, b.password.as_deref().unwrap_or(""));
        headers.push((
            "Authorization".into(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ),
        ));
    } else if let Some(t) = &config.bearer_token {
        headers.push(("Authorization".into(), format!("Bearer {t}")));
    }
    headers
}

enum Outcome {
    Sent,
    Retry(Option<Duration>),
    Fail,
}

struct Worker {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    config: RemoteWriteConfig,
    ctx: Ctx,
    counters: Arc<Counters>,
    errors: LastError,
    stop: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
}

impl Worker {
    fn post(&self, body: &[u8]) -> Outcome {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                "User-Agent",
                concat!("homeconsole-monitoring/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        match req.send(body) {
            Ok(resp) => {
                let code = resp.status().as_u16();
                if (200..300).contains(&code) {
                    return Outcome::Sent;
                }
                self.errors.note(format!("POST {}: HTTP {code}", self.url));
                if code == 429 || code >= 500 {
                    Outcome::Retry(crate::outbound::retry::retry_after_of(&resp))
                } else {
                    Outcome::Fail
                }
            }
            Err(e) => {
                self.errors.note(format!(
                    "POST {}: {}",
                    self.url,
                    crate::outbound::errors::describe(&e)
                ));
                Outcome::Retry(None)
            }
        }
    }

    fn collect(&self) -> Batch {
        let now_ms = crate::time::now_ms() as i64;
        let text = self.ctx.collector.render_for_sampling();
        let (request, samples) = write_request(&text, now_ms, &self.ctx.config.external_labels);
        Batch {
            body: proto::encode(&request),
            samples,
        }
    }

    fn run(self) {
        let interval = Duration::from_secs_f64(self.config.interval_secs);
        let backoff_of = || {
            Backoff::new(
                Duration::from_millis(self.config.initial_backoff_ms),
                Duration::from_millis(self.config.max_backoff_ms),
            )
        };
        let mut queue: VecDeque<Batch> = VecDeque::new();
        let mut next_collect = Instant::now();
        let mut retry_at = Instant::now();
        let mut attempts = 0u32;
        let mut backoff = backoff_of();
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= next_collect {
                let batch = self.collect();
                if queue.len() >= self.config.max_queue {
                    if let Some(old) = queue.pop_front() {
                        self.counters.dropped.inc_by(old.samples as f64);
                        attempts = 0;
                        backoff = backoff_of();
                    }
                }
                queue.push_back(batch);
                next_collect = now + interval;
            }
            if now >= retry_at {
                if let Some(head) = queue.front() {
                    match self.post(&head.body) {
                        Outcome::Sent => {
                            self.counters.sent.inc_by(head.samples as f64);
                            queue.pop_front();
                            attempts = 0;
                            backoff = backoff_of();
                        }
                        Outcome::Fail => {
                            self.counters.failed.inc_by(head.samples as f64);
                            queue.pop_front();
                            attempts = 0;
                            backoff = backoff_of();
                        }
                        Outcome::Retry(after) => {
                            attempts += 1;
                            if attempts > self.config.max_retries {
                                self.counters.failed.inc_by(head.samples as f64);
                                queue.pop_front();
                                attempts = 0;
                                backoff = backoff_of();
                            } else {
                                retry_at = Instant::now() + backoff.next_delay(after);
                            }
                        }
                    }
                    self.queued.store(queue.len(), Ordering::Relaxed);
                    continue;
                }
            }
            self.queued.store(queue.len(), Ordering::Relaxed);
            let wake = if queue.is_empty() {
                next_collect
            } else {
                next_collect.min(retry_at)
            };
            while !self.stop.load(Ordering::SeqCst) && Instant::now() < wake {
                std::thread::sleep(
                    wake.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(50)),
                );
            }
        }
        let left: u64 = queue.iter().map(|b| b.samples).sum();
        self.counters.dropped.inc_by(left as f64);
    }
}

impl Capability for RemoteWrite {
    fn name(&self) -> &'static str {
        "remote_write"
    }

    fn start(&self) -> Result<(), PluginError> {
        let (Some(url), Some(counters)) = (&self.config.url, &self.counters) else {
            return Ok(());
        };
        let agent = crate::outbound::agent(
            Duration::from_secs_f64(self.config.timeout_secs),
            &self.ctx.config.tls,
        )
        .map_err(|e| PluginError::bad_request(format!("remote_write: {e}")))?;
        let worker = Worker {
            agent,
            url: url.clone(),
            headers: request_headers(&self.config),
            config: self.config.clone(),
            ctx: self.ctx.clone(),
            counters: counters.clone(),
            errors: self.errors.clone(),
            stop: self.stop.clone(),
            queued: self.queued.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("remote-write".into())
            .spawn(move || worker.run())
            .map_err(|e| PluginError::failed(format!("cannot start remote_write: {e}")))?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }

    fn status(&self) -> Value {
        let Some(c) = self.counters.as_ref().filter(|_| self.config.url.is_some()) else {
            return json!({"enabled": false});
        };
        json!({
            "enabled": true,
            "url": self.config.url,
            "sent": c.sent.get(),
            "failed": c.failed.get(),
            "dropped": c.dropped.get(),
            "queued_batches": self.queued.load(Ordering::Relaxed),
            "last_error": self.errors.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers() {
        let mut c = RemoteWriteConfig {
            basic_auth: Some(crate::config::BasicAuth {
                username: "u".into(),
                password: Some("p".into()),
                password_file: None,
            }),
            ..RemoteWriteConfig::default()
        };
        assert!(request_headers(&c).contains(&("Authorization".into(), "Basic dTpw".into())));
        c.basic_auth = None;
        c.bearer_token = Some("t".into());
        assert!(request_headers(&c).contains(&("Authorization".into(), "Bearer t".into())));
    }
}
