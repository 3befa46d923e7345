//! The event model: one captured error, whatever its origin.
//!
//! Errors reported by plugins through the host ([`EventSource::Captured`]) and
//! errors sent by external Sentry SDKs ([`EventSource::SentryIngest`]) become
//! the same [`ErrorEvent`], so grouping, storage and forwarding have one input
//! type. Field names follow the Sentry event payload where one exists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::now_ms;

/// Severity of an event or breadcrumb (Sentry's fixed set of five).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Unrecoverable: the plugin or process is going down.
    Fatal,
    /// An error (the default).
    #[default]
    Error,
    /// Something unexpected that was handled.
    Warning,
    /// Informational.
    Info,
    /// Debug detail.
    Debug,
}

impl Level {
    /// All levels, most severe first (the fixed metric label set).
    pub const ALL: [Level; 5] = [
        Level::Fatal,
        Level::Error,
        Level::Warning,
        Level::Info,
        Level::Debug,
    ];

    /// The lowercase protocol name (`"error"`), used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Fatal => "fatal",
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// Parses a level leniently, as Sentry does: `warn` → warning,
    /// `critical` → fatal, `log`/`trace` → info/debug; case-insensitive.
    /// Anything unknown becomes [`Level::Error`].
    pub fn parse_lenient(text: &str) -> Level {
        match text.trim().to_ascii_lowercase().as_str() {
            "fatal" | "critical" | "panic" => Level::Fatal,
            "warning" | "warn" => Level::Warning,
            "info" | "log" | "notice" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => Level::Error,
        }
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// Reported by a plugin or the host through the monitoring plugin.
    #[default]
    Captured,
    /// Received from an external Sentry SDK through the ingest endpoint.
    SentryIngest,
}

/// One stack frame. Frames are ordered oldest call first, as in Sentry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Frame {
    /// Function name (may be mangled or contain a hash suffix).
    pub function: Option<String>,
    /// Module / package path.
    pub module: Option<String>,
    /// File name as reported (often relative).
    pub filename: Option<String>,
    /// Absolute path of the file.
    pub abs_path: Option<String>,
    /// Line number.
    pub lineno: Option<u32>,
    /// Whether the frame belongs to the application rather than a library.
    pub in_app: Option<bool>,
    /// Instruction address (native frames), e.g. `0x7f3a…`.
    pub instruction_addr: Option<String>,
}

/// One exception of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExceptionInfo {
    /// Exception type, e.g. `ValueError` or `std::io::Error`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The exception's message.
    pub value: Option<String>,
    /// Module the type lives in.
    pub module: Option<String>,
    /// Stack frames, oldest call first.
    pub frames: Vec<Frame>,
}

/// Something that happened before an error: a log line, an event, a call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Breadcrumb {
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Category, e.g. `log`, `event`, `service_call`, `http`.
    pub category: String,
    /// Human-readable text.
    pub message: Option<String>,
    /// Severity.
    pub level: Level,
    /// Structured details.
    pub data: Map<String, Value>,
}

impl Breadcrumb {
    /// A breadcrumb stamped now.
    pub fn new(category: impl Into<String>, level: Level, message: impl Into<String>) -> Self {
        Breadcrumb {
            timestamp: now_ms(),
            category: category.into(),
            message: Some(message.into()),
            level,
            data: Map::new(),
        }
    }

    /// A log line.
    pub fn log(level: Level, message: impl Into<String>) -> Self {
        Self::new("log", level, message)
    }

    /// An event published on the bus.
    pub fn event(topic: impl Into<String>) -> Self {
        Self::new("event", Level::Info, topic)
    }

    /// A service call with its outcome and duration.
    pub fn service_call(service: impl Into<String>, status: &str, duration_ms: f64) -> Self {
        let level = if status == "ok" {
            Level::Info
        } else {
            Level::Warning
        };
        let mut crumb = Self::new("service_call", level, service);
        crumb.data.insert("status".into(), Value::from(status));
        crumb
            .data
            .insert("duration_ms".into(), Value::from(duration_ms));
        crumb
    }
}

/// The user an event happened to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserInfo {
    /// Stable user id (used for "users affected").
    pub id: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// IP address.
    pub ip_address: Option<String>,
}

/// The SDK that produced an event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SdkInfo {
    /// SDK name, e.g. `sentry.python`.
    pub name: String,
    /// SDK version.
    pub version: String,
}

/// One error occurrence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorEvent {
    /// 32 lowercase hex characters (a UUID without dashes).
    pub event_id: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Severity.
    pub level: Level,
    /// Log message, when the event is not (only) an exception.
    pub message: Option<String>,
    /// Exception chain, innermost cause first and outermost last (Sentry order).
    pub exception: Vec<ExceptionInfo>,
    /// Plugin that reported or caused it.
    pub plugin: String,
    /// That plugin's version.
    pub plugin_version: Option<String>,
    /// Service or bus topic being handled (Sentry's culprit / transaction).
    pub service_or_topic: Option<String>,
    /// Host version.
    pub host_version: Option<String>,
    /// Deployment environment.
    pub environment: Option<String>,
    /// Release identifier.
    pub release: Option<String>,
    /// Trace id linking it to a distributed trace.
    pub trace_id: Option<String>,
    /// Indexed key-value tags.
    pub tags: BTreeMap<String, String>,
    /// Arbitrary extra data.
    pub extra: Map<String, Value>,
    /// What happened before, oldest first.
    pub breadcrumbs: Vec<Breadcrumb>,
    /// Custom grouping fingerprint; may contain `{{ default }}`.
    pub fingerprint: Option<Vec<String>>,
    /// Origin.
    pub source: EventSource,
    /// Affected user.
    pub user: Option<UserInfo>,
    /// Reporting SDK.
    pub sdk: Option<SdkInfo>,
}

impl Default for ErrorEvent {
    fn default() -> Self {
        ErrorEvent {
            event_id: new_event_id(),
            timestamp: now_ms(),
            level: Level::Error,
            message: None,
            exception: Vec::new(),
            plugin: String::new(),
            plugin_version: None,
            service_or_topic: None,
            host_version: None,
            environment: None,
            release: None,
            trace_id: None,
            tags: BTreeMap::new(),
            extra: Map::new(),
            breadcrumbs: Vec::new(),
            fingerprint: None,
            source: EventSource::Captured,
            user: None,
            sdk: None,
        }
    }
}

impl ErrorEvent {
    /// A message event from `plugin`, with a fresh id and the current time.
    pub fn message(plugin: impl Into<String>, level: Level, message: impl Into<String>) -> Self {
        ErrorEvent {
            plugin: plugin.into(),
            level,
            message: Some(message.into()),
            ..ErrorEvent::default()
        }
    }

    /// An exception event (a single exception; push more for a chain).
    pub fn exception(
        plugin: impl Into<String>,
        ty: impl Into<String>,
        value: impl Into<String>,
        frames: Vec<Frame>,
    ) -> Self {
        ErrorEvent {
            plugin: plugin.into(),
            exception: vec![ExceptionInfo {
                ty: ty.into(),
                value: Some(value.into()),
                module: None,
                frames,
            }],
            ..ErrorEvent::default()
        }
    }

    /// The issue title: `Type: value` of the outermost exception, else the
    /// message, else `<unlabeled event>`; at most 200 characters.
    pub fn title(&self) -> String {
        let raw = if let Some(exc) = self.exception.last() {
            match exc.value.as_deref() {
                Some(v) if !v.is_empty() => format!("{}: {v}", exc.ty),
                _ => exc.ty.clone(),
            }
        } else {
            match self.message.as_deref() {
                Some(m) if !m.trim().is_empty() => m.lines().next().unwrap_or("").to_string(),
                _ => "<unlabeled event>".to_string(),
            }
        };
        truncate_chars(&raw, 200)
    }

    /// The culprit: `plugin / service_or_topic`, or just the plugin.
    pub fn culprit(&self) -> String {
        match self.service_or_topic.as_deref() {
            Some(s) if !s.is_empty() => format!("{} / {s}", self.plugin),
            _ => self.plugin.clone(),
        }
    }
}

/// Size limits applied to every stored or forwarded event (hostile input bound).
pub mod limits {
    /// Characters kept of a message or exception value.
    pub const MAX_MESSAGE_CHARS: usize = 8192;
    /// Characters kept of short strings (types, names, tags, frame fields).
    pub const MAX_SHORT_CHARS: usize = 256;
    /// Exceptions kept per chain (the outermost ones).
    pub const MAX_EXCEPTIONS: usize = 16;
    /// Frames kept per exception (the innermost ones, nearest the crash).
    pub const MAX_FRAMES: usize = 128;
    /// Breadcrumbs kept (the most recent ones).
    pub const MAX_BREADCRUMBS: usize = 100;
    /// Tags kept.
    pub const MAX_TAGS: usize = 64;
    /// Fingerprint entries kept.
    pub const MAX_FINGERPRINT: usize = 32;
    /// Serialised bytes kept of `extra` (and of each breadcrumb's `data`).
    pub const MAX_EXTRA_BYTES: usize = 16 * 1024;
}

fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        *s = truncate_chars(s, max);
    }
}

fn cut_opt(s: &mut Option<String>, max: usize) {
    if let Some(v) = s {
        cut(v, max);
    }
}

fn cap_map(map: &mut Map<String, Value>) {
    let size = serde_json::to_string(map).map_or(usize::MAX, |s| s.len());
    if size > limits::MAX_EXTRA_BYTES {
        map.clear();
        map.insert(
            "_truncated".into(),
            Value::from(format!("{size} bytes dropped")),
        );
    }
}

impl ErrorEvent {
    /// Cuts every field to the bounds in [`limits`], so one hostile event
    /// cannot take unbounded memory or storage.
    pub fn enforce_limits(&mut self) {
        use limits::*;
        cut(&mut self.event_id, 64);
        cut_opt(&mut self.message, MAX_MESSAGE_CHARS);
        if self.exception.len() > MAX_EXCEPTIONS {
            let drop = self.exception.len() - MAX_EXCEPTIONS;
            self.exception.drain(..drop);
        }
        for exc in &mut self.exception {
            cut(&mut exc.ty, MAX_SHORT_CHARS);
            cut_opt(&mut exc.value, MAX_MESSAGE_CHARS);
            cut_opt(&mut exc.module, MAX_SHORT_CHARS);
            if exc.frames.len() > MAX_FRAMES {
                let drop = exc.frames.len() - MAX_FRAMES;
                exc.frames.drain(..drop);
            }
            for f in &mut exc.frames {
                cut_opt(&mut f.function, MAX_SHORT_CHARS);
                cut_opt(&mut f.module, MAX_SHORT_CHARS);
                cut_opt(&mut f.filename, MAX_SHORT_CHARS);
                cut_opt(&mut f.abs_path, MAX_SHORT_CHARS);
                cut_opt(&mut f.instruction_addr, 64);
            }
        }
        cut(&mut self.plugin, MAX_SHORT_CHARS);
        for s in [
            &mut self.plugin_version,
            &mut self.service_or_topic,
            &mut self.host_version,
            &mut self.environment,
            &mut self.release,
            &mut self.trace_id,
        ] {
            cut_opt(s, MAX_SHORT_CHARS);
        }
        if self.tags.len() > MAX_TAGS
            || self
                .tags
                .iter()
                .any(|(k, v)| k.len() > 200 || v.len() > 200)
        {
            self.tags = std::mem::take(&mut self.tags)
                .into_iter()
                .take(MAX_TAGS)
                .map(|(k, v)| (truncate_chars(&k, 200), truncate_chars(&v, 200)))
                .collect();
        }
        cap_map(&mut self.extra);
        if self.breadcrumbs.len() > MAX_BREADCRUMBS {
            let drop = self.breadcrumbs.len() - MAX_BREADCRUMBS;
            self.breadcrumbs.drain(..drop);
        }
        for b in &mut self.breadcrumbs {
            cut(&mut b.category, MAX_SHORT_CHARS);
            cut_opt(&mut b.message, MAX_MESSAGE_CHARS);
            cap_map(&mut b.data);
        }
        if let Some(fp) = &mut self.fingerprint {
            fp.truncate(MAX_FINGERPRINT);
            for p in fp.iter_mut() {
                cut(p, MAX_SHORT_CHARS);
            }
        }
        if let Some(u) = &mut self.user {
            for s in [&mut u.id, &mut u.username, &mut u.email, &mut u.ip_address] {
                cut_opt(s, MAX_SHORT_CHARS);
            }
        }
        if let Some(sdk) = &mut self.sdk {
            cut(&mut sdk.name, MAX_SHORT_CHARS);
            cut(&mut sdk.version, MAX_SHORT_CHARS);
        }
    }
}

/// A fresh random event id (UUID v4 as 32 lowercase hex characters).
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Truncates to at most `max` characters (never splits a UTF-8 character).
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((idx, _)) => text[..idx].to_string(),
        None => text.to_string(),
    }
}
