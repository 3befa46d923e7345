//! The plugin's one wall clock and calendar.
//!
//! Every capability stamps things in milliseconds since the Unix epoch
//! (UTC); peers want text: Sentry RFC 3339 with microseconds, Alertmanager
//! and the Prometheus API RFC 3339 with milliseconds, PromQL's date
//! functions and templates a civil date. The calendar is `chrono`'s (already
//! in the tree through `promql-parser`); this module only fixes the exact
//! output forms the peers parse, and never panics on bad input.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// Milliseconds per day.
pub const DAY_MS: u64 = 86_400_000;

/// Latest accepted timestamp (year 9999), so arithmetic never overflows.
const MAX_MS: u64 = 253_402_300_799_999;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// Current wall-clock time in milliseconds since the Unix epoch (0 if the
/// clock is before 1970, capped at year 9999).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(u128::from(MAX_MS)) as u64)
        .unwrap_or(0)
}

/// [`now_ms`] as the signed milliseconds PromQL, the alert engine and the
/// query API count in (their timestamps may lie before 1970).
pub fn now_ms_signed() -> i64 {
    now_ms() as i64
}

/// Current wall-clock time in nanoseconds since the Unix epoch (span
/// timestamps; 0 if the clock is before 1970).
///
/// Read with `clock_gettime(CLOCK_REALTIME)` directly: a span reads the
/// clock twice, and `SystemTime::now().duration_since(UNIX_EPOCH)` costs
/// half as much again as the clock read itself (its checked `Duration`
/// arithmetic), which the span's start and end pay on the caller's thread.
pub fn now_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let (Ok(secs), Ok(nanos)) = (u64::try_from(now.tv_sec), u64::try_from(now.tv_nsec)) else {
        return 0;
    };
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Days in one cycle of the Gregorian calendar (400 years), after which
/// every date repeats.
const DAYS_PER_400_YEARS: i64 = 146_097;

/// Civil date (year, month 1-12, day 1-31) for days since 1970-01-01
/// (timestamps, PromQL date functions, template formatting). Exact for any
/// `i64`, as Go's `time` is for PromQL: chrono dates the day within its
/// 400-year cycle and the cycles are added to the year.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let cycles = days.div_euclid(DAYS_PER_400_YEARS);
    let within = days.rem_euclid(DAYS_PER_400_YEARS);
    // 1970-01-01 plus less than 400 years: always in chrono's range.
    let date = NaiveDate::from_num_days_from_ce_opt((within + UNIX_EPOCH_DAYS_FROM_CE) as i32)
        .unwrap_or_default();
    (
        i64::from(date.year()) + cycles * 400,
        date.month(),
        date.day(),
    )
}

/// Days since 1970-01-01 for a civil date, `None` for a date that does not
/// exist (month 13, February 30).
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
    Some(i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE)
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// RFC 3339 UTC with microseconds (`2024-05-01T12:00:00.123000Z`), the
/// form Sentry SDKs send and parse.
pub fn format_rfc3339(ms: u64) -> String {
    utc(ms.min(MAX_MS) as i64)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// RFC 3339 UTC with milliseconds (`2024-01-02T03:04:05.678Z`), the form of
/// the Alertmanager API and the Prometheus HTTP API.
pub fn rfc3339_millis(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, b| {
        acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

/// Parses an RFC 3339 / ISO 8601 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac][Z|±HH:MM]`;
/// a missing offset means UTC, as Sentry assumes, and `±HHMM` is accepted
/// too, which chrono's RFC 3339 parser refuses). Returns milliseconds since
/// the epoch, or `None` for anything malformed or before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.trim().as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0u64;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut scale = 100u64;
        for c in &frac[..n.min(3)] {
            millis += u64::from(c - b'0') * scale;
            scale /= 10;
        }
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let h = i64::from(digits(&[*h1, *h2])?);
            let m = i64::from(digits(&[*m1, *m2])?);
            let off = h * 3600 + m * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day)?;
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    if secs < 0 {
        return None;
    }
    let ms = (secs as u64).checked_mul(1000)?.checked_add(millis)?;
    (ms <= MAX_MS).then_some(ms)
}

/// Converts float seconds since the epoch (Sentry's numeric timestamp form).
pub fn from_float_seconds(secs: f64) -> Option<u64> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let ms = secs * 1000.0;
    (ms <= MAX_MS as f64).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_offsets() {
        let ms = parse_rfc3339("2026-11-27T01:51:43.600310Z").unwrap();
        assert_eq!(format_rfc3339(ms), "2026-11-27T01:51:43.600000Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00"), Some(951_782_400_000));
        assert_eq!(
            format_rfc3339(951_782_400_000),
            "2000-02-29T00:00:00.000000Z"
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T00:00:00.Z",
            "1969-12-31T23:59:59Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(from_float_seconds(1.5), Some(1500));
        assert_eq!(from_float_seconds(f64::NAN), None);
        assert_eq!(from_float_seconds(1e30), None);
    }

    #[test]
    fn leap_second_rolls_into_the_next_minute() {
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn millisecond_form_is_the_alertmanager_one() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn microsecond_form_caps_at_year_9999() {
        assert_eq!(format_rfc3339(u64::MAX), "9999-12-31T23:59:59.999000Z");
    }

    #[test]
    fn civil_dates_match_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_722), (2023, 12, 31));
        for days in [-800_000, -1, 0, 59, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{days}");
        }
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(civil_from_days(DAYS_PER_400_YEARS), (2370, 1, 1));
        assert_eq!(civil_from_days(-DAYS_PER_400_YEARS), (1570, 1, 1));
        // Far beyond chrono's range (PromQL's year(vector(1e16))): still exact.
        assert_eq!(
            civil_from_days(DAYS_PER_400_YEARS * 1_000_000 + 11_016),
            (400_002_000, 2, 29)
        );
        let (y, _, _) = civil_from_days(i64::MAX);
        assert!(y > 25_000_000_000_000_000, "{y}");
        let (y, _, _) = civil_from_days(i64::MIN);
        assert!(y < -25_000_000_000_000_000, "{y}");
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
        assert!(now_ns() / 1_000_000 >= 1_577_836_800_000);
    }

    #[test]
    fn now_ns_reads_the_same_clock_as_system_time() {
        let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let before = since_epoch(SystemTime::now());
        let ns = now_ns();
        let after = since_epoch(SystemTime::now());
        assert!(before <= ns && ns <= after, "{before} <= {ns} <= {after}");
    }
}
