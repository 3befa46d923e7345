//! Polling with a deadline: tests wait for a named condition instead of
//! sleeping, and a timeout names what never happened.

use std::time::{Duration, Instant};

/// How long [`wait_for`] sleeps between two polls.
const POLL: Duration = Duration::from_millis(20);

/// Polls `f` until it returns `Some`, for at most `max`; panics with
/// "timed out after … waiting for `what`" at the caller's line.
#[track_caller]
pub fn wait_for<T>(what: &str, max: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + max;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > until {
            panic!("timed out after {max:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_for`] for a yes/no condition.
#[track_caller]
pub fn wait_until(what: &str, max: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, max, || cond().then_some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_found() {
        let mut n = 0;
        let got = wait_for("n reaches 3", Duration::from_secs(60), || {
            n += 1;
            (n >= 3).then_some(n * 10)
        });
        assert_eq!(got, 30);
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible")]
    fn names_what_never_happened() {
        wait_until("the impossible", Duration::ZERO, || false);
    }
}
