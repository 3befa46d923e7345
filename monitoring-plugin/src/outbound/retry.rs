//! The one retry rule of outbound clients (OTLP exporter, Sentry forwarder,
//! Alertmanager/webhook notifier, remote_write): exponential backoff with
//! jitter, overridden by the server's `Retry-After` (delta-seconds or an
//! HTTP date), which is capped so that a hostile header cannot park a
//! sender for days.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Exponential backoff: each delay is a random point in `[d/2, d]`, `d`
/// doubling from `initial` up to `max`; a server's `Retry-After` replaces it.
#[derive(Debug, Clone)]
pub struct Backoff {
    current: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`, never above `max` (unless `Retry-After` says so).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            current: initial,
            max: max.max(initial),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let jittered = jitter(self.current);
        self.current = self.current.saturating_mul(2).min(self.max);
        match retry_after {
            Some(d) => d.min(MAX_RETRY_AFTER),
            None => jittered,
        }
    }
}

/// A random delay in `[d/2, d]`.
fn jitter(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1024) as u32;
    d / 2 + d / 2 * r / 1023
}

/// The one `Retry-After` rule of every exporter: how long to wait after a
/// response that carries `value`. Delta-seconds (fractions accepted, as
/// some collectors send them) or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37
/// GMT`; a date in the past means zero), capped at [`MAX_RETRY_AFTER`] so a
/// hostile header cannot park a sender for days. `None` for anything
/// unreadable: the caller's own backoff decides then.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let wait = if let Ok(secs) = v.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return None;
        }
        Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
    } else {
        let when = parse_imf_fixdate(v)?;
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Duration::from_secs(u64::try_from(when).unwrap_or(0).saturating_sub(now))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The `Retry-After` header of a response, by [`parse_retry_after`].
pub fn retry_after_of(resp: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// Seconds since the epoch of an IMF-fixdate (RFC 9110). The weekday is not
/// checked against the date (the old rule did not either).
fn parse_imf_fixdate(v: &str) -> Option<i64> {
    let (_weekday, rest) = v.split_once(", ")?;
    let at = chrono::NaiveDateTime::parse_from_str(rest, "%d %b %Y %H:%M:%S GMT").ok()?;
    Some(at.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sun, 06 Nov 1994 08:49:37 GMT.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn imf_fixdates() {
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_imf_fixdate("Sun, 32 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(parse_imf_fixdate("Wed, 29 Feb 2023 08:49:37 GMT"), None);
    }

    #[test]
    fn retry_after_seconds_and_fractions() {
        assert_eq!(parse_retry_after("3", now()), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now()),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn retry_after_dates_future_and_past() {
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 1968 00:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_none() {
        for bad in [
            "",
            "-1",
            "soon",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "NaN",
            "inf",
            "06 Nov 1994 08:49:47 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_is_capped() {
        assert_eq!(parse_retry_after("7200", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1e300", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now()),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn backoff_doubles_up_to_max_and_obeys_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<Duration> = (0..5).map(|_| b.next_delay(None)).collect();
        let bounds = [100, 200, 400, 400, 400];
        for (d, hi) in delays.iter().zip(bounds) {
            assert!(
                *d >= Duration::from_millis(hi / 2) && *d <= Duration::from_millis(hi),
                "{delays:?}"
            );
        }
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(7200))),
            MAX_RETRY_AFTER
        );
    }
}
