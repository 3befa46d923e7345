//! The host's system logger: one JSON object per line on stdout.
//!
//! Plugins log through the ABI (`HostApi::log`) and end up here with their
//! name in the `plugin` field, so one stream carries the whole host.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use plugin_abi::LogLevel;
use serde_json::{Map, Value};

static MIN_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static OUT: Mutex<()> = Mutex::new(());

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

/// Sets the minimum level written.
pub fn set_level(level: LogLevel) {
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a line at `level` would be written.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
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
    if !enabled(level) {
        return;
    }
    let mut line = Map::new();
    line.insert(
        "timestamp".into(),
        Value::String(rfc3339(SystemTime::now())),
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
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_levels() {
        assert_eq!(parse_level("WARN"), Some(LogLevel::Warn));
        assert_eq!(parse_level("nope"), None);
    }
}
