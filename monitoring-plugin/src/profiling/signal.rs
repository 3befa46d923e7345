//! Keeps a stray `SIGPROF` from killing the host.
//!
//! `SIGPROF`'s default action terminates the process. pprof-rs arms `ITIMER_PROF` and installs
//! its handler while profiling; 0.15.0 sets `SIG_IGN` when it stops, but an unmerged upstream
//! change (tikv/pprof-rs PR 276, issue 288) restores the *previous* disposition instead, and a
//! timer tick still in flight then killed the process (DEPENDENCIES.md). So before the first
//! profile we install a do-nothing handler: whatever pprof restores afterwards is then either
//! `SIG_IGN` or this handler, never the default. A handler for some other component that
//! arms `ITIMER_PROF` outside a profile is covered too.
//!
//! The handler is registered through `signal-hook`'s safe [`signal_hook::flag::register`]
//! (it only sets an atomic flag, which is async-signal-safe), so this module needs no
//! `unsafe`. [`sigprof_disposition`] reads the current disposition from `/proc/self/status`
//! so callers and tests can check the invariant after every stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::ProfileError;

/// Linux signal number of `SIGPROF`.
pub const SIGPROF: i32 = signal_hook::consts::SIGPROF;

static GUARD: OnceLock<Result<Arc<AtomicBool>, String>> = OnceLock::new();

/// Installs the do-nothing `SIGPROF` handler once per process (per copy of this library);
/// later calls return the first call's outcome. Called by every profile start.
pub fn install_sigprof_guard() -> Result<(), ProfileError> {
    GUARD
        .get_or_init(|| {
            let seen = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(SIGPROF, Arc::clone(&seen))
                .map(|_| seen)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(|_| ())
        .map_err(|reason| ProfileError::SignalSetup(reason.clone()))
}

/// Whether the do-nothing handler has absorbed at least one `SIGPROF` (a tick that arrived
/// while no pprof handler was installed). Diagnostic only.
pub fn stray_sigprof_absorbed() -> bool {
    GUARD
        .get()
        .and_then(|g| g.as_ref().ok())
        .is_some_and(|seen| seen.load(Ordering::SeqCst))
}

/// How the process currently handles a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalDisposition {
    /// `SIG_DFL`: for `SIGPROF` this terminates the process.
    Default,
    /// `SIG_IGN`.
    Ignored,
    /// A handler is installed.
    Caught,
}

/// The current disposition of `signo` for this process, from `/proc/self/status`; `None` if
/// that file cannot be read or parsed.
pub fn signal_disposition(signo: i32) -> Option<SignalDisposition> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_disposition(&status, signo)
}

/// The current disposition of `SIGPROF` (see [`signal_disposition`]).
pub fn sigprof_disposition() -> Option<SignalDisposition> {
    signal_disposition(SIGPROF)
}

/// Reads the disposition of `signo` from the `SigIgn:` / `SigCgt:` hex masks of a
/// `/proc/<pid>/status` text (pure). Bit `signo - 1` is set when the signal is ignored or
/// caught; neither means `SIG_DFL`.
pub fn parse_status_disposition(status: &str, signo: i32) -> Option<SignalDisposition> {
    if !(1..=64).contains(&signo) {
        return None;
    }
    let mask = |key: &str| -> Option<u64> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        u64::from_str_radix(line.trim(), 16).ok()
    };
    let bit = 1u64 << (signo - 1);
    let (ignored, caught) = (mask("SigIgn:")?, mask("SigCgt:")?);
    Some(if caught & bit != 0 {
        SignalDisposition::Caught
    } else if ignored & bit != 0 {
        SignalDisposition::Ignored
    } else {
        SignalDisposition::Default
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_masks() {
        let status = "Name:\tx\nSigBlk:\t0000000000000000\nSigIgn:\t0000000004001000\n\
                      SigCgt:\t0000000100000440\n";
        // SIGPROF = 27 → bit 26 = 0x4000000 (ignored).
        assert_eq!(
            parse_status_disposition(status, 27),
            Some(SignalDisposition::Ignored)
        );
        // SIGPIPE = 13 → bit 12 = 0x1000 (ignored).
        assert_eq!(
            parse_status_disposition(status, 13),
            Some(SignalDisposition::Ignored)
        );
        // SIGUSR1 = 10 → bit 9 = 0x200 (default); SIGSEGV = 11 → 0x400 (caught).
        assert_eq!(
            parse_status_disposition(status, 10),
            Some(SignalDisposition::Default)
        );
        assert_eq!(
            parse_status_disposition(status, 11),
            Some(SignalDisposition::Caught)
        );
        assert_eq!(
            parse_status_disposition(status, 33),
            Some(SignalDisposition::Caught)
        );
        assert_eq!(parse_status_disposition(status, 0), None);
        assert_eq!(parse_status_disposition(status, 65), None);
        assert_eq!(
            parse_status_disposition("SigIgn:\tzz\nSigCgt:\t0\n", 27),
            None
        );
        assert_eq!(parse_status_disposition("", 27), None);
    }

    #[test]
    fn guard_installs_a_handler() {
        install_sigprof_guard().expect("install");
        install_sigprof_guard().expect("idempotent");
        // Another test in this binary may be profiling (pprof's handler) or have stopped
        // (SIG_IGN): anything but the default is fine.
        assert_ne!(sigprof_disposition(), Some(SignalDisposition::Default));
    }
}
