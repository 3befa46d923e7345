//! The host's clock readings and timestamp formats, in one place: the
//! logger, the observer stream, the trace-id seed, the bus, the breaker and
//! the plugin manager all read wall-clock time through these helpers, and
//! the log line's RFC 3339 timestamp is formatted by `chrono`.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

/// `time` in Unix epoch nanoseconds (0 before the epoch).
pub fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `time` in Unix epoch milliseconds (0 before the epoch).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `time` in Unix epoch seconds with a fraction (0.0 before the epoch).
pub fn unix_secs_f64(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Now, in Unix epoch nanoseconds.
pub fn now_unix_ns() -> u64 {
    unix_ns(SystemTime::now())
}

/// Now, in Unix epoch milliseconds.
pub fn now_unix_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// Formats a time as RFC 3339 UTC with milliseconds
/// (`2023-11-14T22:13:20.123Z`), the log line's `timestamp`.
pub fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_rfc3339_with_milliseconds_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn epoch_readings_agree_and_clamp_before_the_epoch() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(unix_ms(t), 1_700_000_000_123);
        assert_eq!(unix_ns(t), 1_700_000_000_123_000_000);
        assert!((unix_secs_f64(t) - 1_700_000_000.123).abs() < 1e-6);
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!((unix_ms(before), unix_ns(before)), (0, 0));
        assert_eq!(unix_secs_f64(before), 0.0);
    }
}
