//! The host's system logger: one JSON object per line on stdout.
//!
//! Plugins log through the ABI (`HostApi::log`) and end up here with their
//! name in the `plugin` field, so one stream carries the whole host.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use plugin_abi::LogLevel;
use serde_json::{Map, Value};

/// The lowest level any target writes (a fast path before the filter).
static MIN_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static OUT: Mutex<()> = Mutex::new(());
static FILTER: parking_lot::RwLock<Option<LogFilter>> = parking_lot::const_rwlock(None);

/// Per-target log levels in `RUST_LOG` syntax: a default level and
/// `target=level` directives, comma-separated (`warn,bus=debug,plugin.monitoring=trace`).
/// A directive applies to its target and to targets below it
/// (`plugin` covers `plugin.monitoring`); the longest match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    default: LogLevel,
    /// Longest target first.
    directives: Vec<(String, LogLevel)>,
}

impl LogFilter {
    /// Parses a filter; a plain level (`info`) is a filter without directives.
    pub fn parse(spec: &str) -> Result<LogFilter, String> {
        let mut default = LogLevel::Info;
        let mut directives = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                None => {
                    default = parse_level(part).ok_or_else(|| {
                        format!("{part:?} is not one of trace, debug, info, warn, error")
                    })?;
                }
                Some((target, level)) => {
                    let target = target.trim();
                    if !valid_target(target) {
                        return Err(format!("{target:?} is not a log target"));
                    }
                    let level = parse_level(level.trim()).ok_or_else(|| {
                        format!("{level:?} is not one of trace, debug, info, warn, error")
                    })?;
                    directives.push((target.replace("::", "."), level));
                }
            }
        }
        directives.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        Ok(LogFilter {
            default,
            directives,
        })
    }

    /// The level in force for `target`.
    pub fn level_for(&self, target: &str) -> LogLevel {
        self.directives
            .iter()
            .find(|(t, _)| {
                target == t
                    || target
                        .strip_prefix(t.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            .map_or(self.default, |(_, l)| *l)
    }

    fn min_level(&self) -> LogLevel {
        self.directives
            .iter()
            .map(|(_, l)| *l)
            .chain([self.default])
            .min_by_key(|l| *l as u8)
            .unwrap_or(self.default)
    }
}

fn valid_target(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Installs a filter (replacing any level set before).
pub fn set_filter(filter: LogFilter) {
    MIN_LEVEL.store(filter.min_level() as u8, Ordering::Relaxed);
    *FILTER.write() = Some(filter);
}

/// Whether a line at `level` from `target` (host lines) or from `plugin`
/// (target `plugin.<name>`) would be written.
pub fn enabled_for(level: LogLevel, target: &str, plugin: Option<&str>) -> bool {
    if !enabled(level) {
        return false;
    }
    let guard = FILTER.read();
    let Some(filter) = guard.as_ref() else {
        return true;
    };
    let level_for = match plugin {
        Some(p) => filter.level_for(&format!("plugin.{p}")),
        None => filter.level_for(target),
    };
    level as u8 >= level_for as u8
}

/// Parses a level name (`trace`, `debug`, `info`, `warn`, `error`).
pub fn parse_level(name: &str) -> Option<LogLevel> {
    match name.to_ascii_lowercase().as_str() {
        "trace" => Some(LogLevel::Trace),
        "debug" => Some(LogLevel::Debug),
        "info" => Some(LogLevel::Info),
        "warn" | "warning" => Some(LogLevel::Warn),
        "error" => Some(LogLevel::Error),
        _ => None,
    }
}

/// Sets the minimum level written (removing any per-target filter).
pub fn set_level(level: LogLevel) {
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
    *FILTER.write() = None;
}

/// Whether a line at `level` would be written.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Writes one log line. `fields` must be a JSON object (anything else is
/// stored under `fields.value`).
pub fn log(level: LogLevel, target: &str, message: &str, plugin: Option<&str>, fields: Value) {
    log_traced(level, target, message, plugin, fields, None);
}

/// Like [`log`], with the span the line was written in: its `trace_id` and
/// `span_id` (hex) become top-level fields, so log lines and traces join.
pub fn log_traced(
    level: LogLevel,
    target: &str,
    message: &str,
    plugin: Option<&str>,
    fields: Value,
    span: Option<&crate::tracecontext::SpanContext>,
) {
    if !enabled_for(level, target, plugin) {
        return;
    }
    let mut line = Map::new();
    line.insert(
        "timestamp".into(),
        Value::String(crate::time::rfc3339(SystemTime::now())),
    );
    line.insert("level".into(), Value::String(level.as_str().into()));
    line.insert("target".into(), Value::String(target.into()));
    line.insert("message".into(), Value::String(message.into()));
    if let Some(plugin) = plugin {
        line.insert("plugin".into(), Value::String(plugin.into()));
    }
    if let Some(span) = span {
        line.insert("trace_id".into(), Value::String(span.trace_id_hex()));
        line.insert("span_id".into(), Value::String(span.span_id_hex()));
    }
    match fields {
        Value::Null => {}
        Value::Object(map) if map.is_empty() => {}
        Value::Object(map) => {
            line.insert("fields".into(), Value::Object(map));
        }
        other => {
            let mut map = Map::new();
            map.insert("value".into(), other);
            line.insert("fields".into(), Value::Object(map));
        }
    }
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    let _guard = OUT.lock();
    let mut out = std::io::stdout().lock();
    // A closed stdout must not take the host down.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Logs at info level from the host.
pub fn info(target: &str, message: &str, fields: Value) {
    log(LogLevel::Info, target, message, None, fields);
}

/// Logs at warn level from the host.
pub fn warn(target: &str, message: &str, fields: Value) {
    log(LogLevel::Warn, target, message, None, fields);
}

/// Logs at error level from the host.
pub fn error(target: &str, message: &str, fields: Value) {
    log(LogLevel::Error, target, message, None, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_target_filters() {
        let f = LogFilter::parse("warn, plugin=info, plugin.monitoring=debug, bus=error").unwrap();
        assert_eq!(f.level_for("api"), LogLevel::Warn);
        assert_eq!(f.level_for("bus"), LogLevel::Error);
        assert_eq!(f.level_for("plugin.demo-devices"), LogLevel::Info);
        assert_eq!(f.level_for("plugin.monitoring"), LogLevel::Debug);
        assert_eq!(f.level_for("plugin.monitoringx"), LogLevel::Info);
        assert_eq!(f.min_level(), LogLevel::Debug);
        assert_eq!(
            LogFilter::parse("debug").unwrap().level_for("x"),
            LogLevel::Debug
        );
        assert_eq!(
            LogFilter::parse("host::bus=trace")
                .unwrap()
                .level_for("host.bus"),
            LogLevel::Trace
        );
        for bad in ["loud", "bus=loud", "a b=info"] {
            assert!(LogFilter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_levels() {
        assert_eq!(parse_level("WARN"), Some(LogLevel::Warn));
        assert_eq!(parse_level("nope"), None);
    }
}
