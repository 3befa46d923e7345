//! Alert notifications that never block evaluation.
//!
//! Each notifier owns one background std thread fed by a bounded queue: the engine
//! hands over a batch with [`Notifier::notify`], which never waits (a full queue drops
//! the batch and counts it). The thread sends either to Alertmanager's v2 API
//! (`POST {url}/api/v2/alerts`, every batch, so firing alerts are re-sent and resolved
//! ones carry `endsAt`) or to a webhook with Alertmanager's webhook payload version
//! "4" (state changes only). Errors, 5xx and 429 are retried with exponential backoff.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value as Json};

use super::engine::Notification;
use crate::time::rfc3339_millis;

/// Where a notifier sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Alertmanager base URL (`http://host:9093`); alerts go to `/api/v2/alerts`.
    Alertmanager {
        /// Base URL.
        url: String,
    },
    /// A webhook URL receiving Alertmanager's webhook payload (version "4").
    Webhook {
        /// Full URL.
        url: String,
        /// `receiver` field of the payload.
        receiver: String,
    },
}

/// Notifier settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifierConfig {
    /// Destination.
    pub target: Target,
    /// Batches waiting at most (default 256); more are dropped and counted.
    pub queue_capacity: usize,
    /// Retries after the first attempt (default 5).
    pub max_retries: u32,
    /// First backoff (default 500 ms), doubled per retry up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Backoff ceiling (default 30 s).
    pub max_backoff: Duration,
    /// Per-request timeout (default 10 s).
    pub timeout: Duration,
    /// `externalURL` of webhook payloads.
    pub external_url: String,
    /// Labels added to every alert sent (`external_labels`; an alert's own
    /// label of the same name wins).
    pub external_labels: std::collections::BTreeMap<String, String>,
    /// Trust roots and client certificate of `https://` targets.
    pub tls: crate::outbound::TlsSettings,
    /// Keeps (and logs) the last delivery error.
    pub errors: crate::outbound::LastError,
}

impl NotifierConfig {
    /// Defaults for `target`.
    pub fn new(target: Target) -> Self {
        NotifierConfig {
            target,
            queue_capacity: 256,
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            external_url: "http://localhost".into(),
            external_labels: std::collections::BTreeMap::new(),
            tls: crate::outbound::TlsSettings::default(),
            errors: crate::outbound::LastError::default(),
        }
    }
}

/// Counters of one notifier (alerts, not batches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifierStats {
    /// Alerts delivered.
    pub sent: u64,
    /// Alerts given up on after retries (or refused with a 4xx).
    pub failed: u64,
    /// Alerts dropped because the queue was full or the notifier stopped.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// Errors of notifier set-up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The thread could not be started.
    #[error("cannot start notifier thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// The TLS settings cannot be used.
    #[error("notifier: {0}")]
    Tls(#[from] crate::outbound::TlsError),
}

/// A running notifier.
pub struct Notifier {
    name: String,
    tx: Option<SyncSender<Vec<Notification>>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    errors: crate::outbound::LastError,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the background thread.
    pub fn start(name: &str, config: NotifierConfig) -> Result<Notifier, NotifyError> {
        let agent = crate::outbound::agent(config.timeout, &config.tls)?;
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let errors = config.errors.clone();
        let (c, s) = (counters.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name(format!("alerts-notify-{name}"))
            .spawn(move || worker(agent, config, rx, c, s))?;
        Ok(Notifier {
            name: name.to_string(),
            tx: Some(tx),
            counters,
            stop,
            handle: Some(handle),
            errors,
        })
    }

    /// The notifier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues a batch without blocking; returns false (and counts the alerts as
    /// dropped) if the queue is full.
    pub fn notify(&self, batch: Vec<Notification>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let n = batch.len() as u64;
        let Some(tx) = &self.tx else {
            self.counters.dropped.fetch_add(n, Ordering::Relaxed);
            return false;
        };
        match tx.try_send(batch) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                false
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> NotifierStats {
        NotifierStats {
            sent: self.counters.sent.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// The last delivery error (transport error with its cause, or HTTP
    /// status), if any.
    pub fn last_error(&self) -> Option<String> {
        self.errors.get()
    }

    /// Sends what is queued (without further retries once stopping) and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker(
    agent: ureq::Agent,
    config: NotifierConfig,
    rx: Receiver<Vec<Notification>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    while let Ok(mut batch) = rx.recv() {
        if !config.external_labels.is_empty() {
            for n in &mut batch {
                with_external_labels(n, &config.external_labels);
            }
        }
        let (url, body, n) = match &config.target {
            Target::Alertmanager { url } => {
                let body = Json::Array(batch.iter().map(am_alert).collect());
                (
                    format!("{}/api/v2/alerts", url.trim_end_matches('/')),
                    body,
                    batch.len(),
                )
            }
            Target::Webhook { url, receiver } => {
                let changed: Vec<&Notification> =
                    batch.iter().filter(|n| n.state_changed).collect();
                if changed.is_empty() {
                    continue;
                }
                (
                    url.clone(),
                    webhook_payload(receiver, &config.external_url, &changed),
                    changed.len(),
                )
            }
        };
        let text = body.to_string();
        let mut backoff = crate::outbound::Backoff::new(config.initial_backoff, config.max_backoff);
        let mut attempt = 0u32;
        loop {
            let res = agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(text.as_str());
            let (retry, retry_after) = match res {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    if (200..300).contains(&code) {
                        counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                        break;
                    }
                    config.errors.note(format!("POST {url}: HTTP {code}"));
                    (
                        code == 429 || code >= 500,
                        crate::outbound::retry::retry_after_of(&resp),
                    )
                }
                Err(e) => {
                    config.errors.note(format!(
                        "POST {url}: {}",
                        crate::outbound::errors::describe(&e)
                    ));
                    (true, None)
                }
            };
            if !retry || attempt >= config.max_retries || stop.load(Ordering::SeqCst) {
                counters.failed.fetch_add(n as u64, Ordering::Relaxed);
                break;
            }
            attempt += 1;
            // Sleep in slices so that a stop request is honoured quickly.
            let wait = backoff.next_delay(retry_after);
            let until = std::time::Instant::now() + wait;
            while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10).min(wait));
            }
        }
    }
}

/// Adds `external` labels an alert does not have itself.
fn with_external_labels(
    n: &mut Notification,
    external: &std::collections::BTreeMap<String, String>,
) {
    for (k, v) in external {
        if n.labels.get(k).is_none() {
            n.labels.set(k, v);
        }
    }
}

fn labels_json<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Json {
    Json::Object(
        pairs
            .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
            .collect(),
    )
}

fn am_alert(n: &Notification) -> Json {
    json!({
        "labels": labels_json(n.labels.iter()),
        "annotations": labels_json(n.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        "startsAt": rfc3339_millis(n.starts_at_ms),
        "endsAt": rfc3339_millis(n.ends_at_ms),
        "generatorURL": n.generator_url,
    })
}

fn common(maps: &[Map<String, Json>]) -> Json {
    let Some(first) = maps.first() else {
        return json!({});
    };
    let mut out = first.clone();
    out.retain(|k, v| maps.iter().all(|m| m.get(k) == Some(v)));
    Json::Object(out)
}

/// Alertmanager's webhook payload (version "4") for one batch (one group).
pub fn webhook_payload(receiver: &str, external_url: &str, alerts: &[&Notification]) -> Json {
    let label_maps: Vec<Map<String, Json>> = alerts
        .iter()
        .map(|n| match labels_json(n.labels.iter()) {
            Json::Object(m) => m,
            _ => Map::new(),
        })
        .collect();
    let ann_maps: Vec<Map<String, Json>> = alerts
        .iter()
        .map(
            |n| match labels_json(n.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                Json::Object(m) => m,
                _ => Map::new(),
            },
        )
        .collect();
    let firing = alerts.iter().any(|n| !n.resolved);
    let items: Vec<Json> = alerts
        .iter()
        .zip(label_maps.iter().zip(&ann_maps))
        .map(|(n, (l, a))| {
            json!({
                "status": if n.resolved { "resolved" } else { "firing" },
                "labels": l,
                "annotations": a,
                "startsAt": rfc3339_millis(n.starts_at_ms),
                "endsAt": if n.resolved { rfc3339_millis(n.ends_at_ms) } else { "0001-01-01T00:00:00Z".into() },
                "generatorURL": n.generator_url,
                "fingerprint": fingerprint(l),
            })
        })
        .collect();
    json!({
        "receiver": receiver,
        "status": if firing { "firing" } else { "resolved" },
        "alerts": items,
        "groupLabels": {},
        "commonLabels": common(&label_maps),
        "commonAnnotations": common(&ann_maps),
        "externalURL": external_url,
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    })
}

fn fingerprint(labels: &Map<String, Json>) -> String {
    // FNV-1a over sorted name/value pairs: stable, 16 hex digits like Alertmanager's.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k
            .bytes()
            .chain([0xff])
            .chain(v.as_str().unwrap_or("").bytes())
            .chain([0xff])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_labels_reach_webhook_payloads_without_overriding() {
        use crate::alerting::samples::Labels;
        let mut n = Notification {
            labels: Labels::new(vec![
                ("alertname".into(), "Hot".into()),
                ("site".into(), "own".into()),
            ]),
            annotations: Vec::new(),
            starts_at_ms: 0,
            ends_at_ms: 0,
            resolved: false,
            state_changed: true,
            generator_url: String::new(),
        };
        let external = [("instance", "host-a"), ("site", "lab")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        with_external_labels(&mut n, &external);
        let p = webhook_payload("r", "http://x", &[&n]);
        assert_eq!(p["commonLabels"]["instance"], "host-a");
        assert_eq!(
            p["alerts"][0]["labels"]["site"], "own",
            "the alert's label wins"
        );
    }
}
