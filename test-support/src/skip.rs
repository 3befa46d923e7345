//! Tests that need an external peer (promtool, Prometheus, Alertmanager,
//! Chromium, a Python SDK, user namespaces…): CI installs every peer, so a
//! missing one fails there; on a developer machine the test says
//! `SKIPPED: <why>` on stderr and passes.

use std::process::Command;

/// Whether the tests run under CI (the `CI` variable is set).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Whether `binary --version` runs and succeeds.
pub fn installed(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A required peer is missing: panics with `why` under CI, prints
/// `SKIPPED: <why>` otherwise. For helpers that skip one check and go on;
/// a test that cannot go on uses [`require_peer!`](crate::require_peer).
#[track_caller]
pub fn peer_missing(why: &str) {
    assert!(!in_ci(), "required under CI: {why}");
    eprintln!("SKIPPED: {why}");
}

/// Returns from the calling test when a peer is missing: fails under CI,
/// prints `SKIPPED: <why>` otherwise.
///
/// Three forms:
///
/// ```ignore
/// // A condition and the reason (format arguments allowed).
/// require_peer!(installed("promtool"), "promtool not installed");
/// // A pattern that must match.
/// require_peer!(let Some(py) = python(), "no Python with sentry-sdk");
/// // A `Result` whose error says why: evaluates to the `Ok` value.
/// let pki = require_peer!(Pki::new());
/// ```
#[macro_export]
macro_rules! require_peer {
    (let $pat:pat = $value:expr, $($why:tt)+) => {
        let $pat = $value else {
            $crate::peer_missing(&format!($($why)+));
            return;
        };
    };
    ($available:expr, $($why:tt)+) => {
        if !$available {
            $crate::peer_missing(&format!($($why)+));
            return;
        }
    };
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(why) => {
                $crate::peer_missing(&why.to_string());
                return;
            }
        }
    };
}

/// [`require_peer!`] for a peer binary: `require_binary!("prometheus")`
/// returns from the test unless `prometheus --version` runs.
#[macro_export]
macro_rules! require_binary {
    ($binary:expr) => {
        $crate::require_peer!($crate::installed($binary), "{} not installed", $binary)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_that_runs_is_installed_and_a_made_up_one_is_not() {
        assert!(installed("sh") || installed("true"));
        assert!(!installed("homeconsole-no-such-binary-here"));
    }

    fn skipping(available: bool, reached: &mut bool) {
        require_peer!(available, "peer {} missing", "x");
        *reached = true;
    }

    fn skipping_let(value: Option<u8>, reached: &mut Option<u8>) {
        require_peer!(let Some(v) = value, "no value");
        *reached = Some(v);
    }

    fn skipping_result(value: Result<u8, &str>, reached: &mut Option<u8>) {
        let v = require_peer!(value);
        *reached = Some(v);
    }

    #[test]
    fn require_peer_goes_on_when_the_peer_is_there() {
        let mut from_result = None;
        skipping_result(Ok(3), &mut from_result);
        assert_eq!(from_result, Some(3));
        let mut reached = false;
        skipping(true, &mut reached);
        assert!(reached);
        let mut got = None;
        skipping_let(Some(7), &mut got);
        assert_eq!(got, Some(7));
    }

    #[test]
    fn require_peer_returns_locally_and_fails_under_ci() {
        let mut reached = false;
        let outcome = std::panic::catch_unwind(move || {
            skipping(false, &mut reached);
            reached
        });
        let from_result = std::panic::catch_unwind(|| {
            let mut reached = None;
            skipping_result(Err("no openssl"), &mut reached);
            reached
        });
        if in_ci() {
            let err = outcome.expect_err("fails under CI");
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("peer x missing"), "{msg}");
            let err = from_result.expect_err("fails under CI");
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("no openssl"), "{msg}");
        } else {
            assert_eq!(outcome.ok(), Some(false), "returned before the rest");
            assert_eq!(from_result.ok(), Some(None), "returned before the rest");
        }
    }
}
