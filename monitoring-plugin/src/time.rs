//! Wall-clock helpers without a date-time dependency.
//!
//! Events carry timestamps as milliseconds since the Unix epoch (UTC). The
//! Sentry protocol writes them either as float seconds or as RFC 3339 text;
//! this module converts between those forms (proleptic Gregorian calendar,
//! Howard Hinnant's civil-date algorithms) and never panics on bad input.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds per day.
pub const DAY_MS: u64 = 86_400_000;

/// Latest accepted timestamp (year 9999), so arithmetic never overflows.
const MAX_MS: u64 = 253_402_300_799_999;

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(u128::from(MAX_MS)) as u64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 for a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month 1-12, day 1-31) for days since 1970-01-01; the
/// one calendar conversion of the plugin (timestamps, PromQL date functions,
/// template formatting).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with microseconds
/// (`2024-05-01T12:00:00.123000Z`), the form Sentry SDKs send.
pub fn format_rfc3339(ms: u64) -> String {
    let ms = ms.min(MAX_MS);
    let days = (ms / DAY_MS) as i64;
    let rem = ms % DAY_MS;
    let (y, m, d) = civil_from_days(days);
    let secs = rem / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        rem % 1000
    )
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
/// a missing offset means UTC, as Sentry assumes). Returns milliseconds since
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
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
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
    let days = days_from_civil(i64::from(year), month, day);
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
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00"), Some(951_782_400_000));
        assert_eq!(
            format_rfc3339(951_782_400_000),
            "2000-02-29T00:00:00.000000Z"
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
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
}
