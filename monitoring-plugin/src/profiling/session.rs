//! One CPU profile at a time in the whole process.
//!
//! `SIGPROF` and `ITIMER_PROF` are process-wide, and pprof-rs keeps a single global profiler
//! per copy of the library. A static flag makes a second start fail fast with
//! [`ProfileError::Busy`] (HTTP 409) — even from another `Profiler` value, or another instance
//! of the plugin type loaded from the same library. [`ProfileGuard`] owns the running profile:
//! dropping it stops sampling, [`ProfileGuard::finish`] stops it and returns the report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::maps::LibraryResolver;
use super::report::ProfileReport;
use super::signal::install_sigprof_guard;
use super::ProfileError;

/// Set while a profile runs in this process (this copy of the library).
static BUSY: AtomicBool = AtomicBool::new(false);

/// How often [`ProfileGuard::wait`] checks the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// Releases [`BUSY`] when dropped.
struct BusyToken(());

impl BusyToken {
    fn acquire() -> Result<Self, ProfileError> {
        BUSY.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| BusyToken(()))
            .map_err(|_| ProfileError::Busy)
    }
}

impl Drop for BusyToken {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

/// Whether a profile is running in this process.
pub fn is_busy() -> bool {
    BUSY.load(Ordering::Acquire)
}

/// A running CPU profile. Sampling stops when it is dropped or finished.
pub struct ProfileGuard {
    // Field order matters: pprof's guard (disarms the timer, then sets SIG_IGN) drops before
    // the busy token is released.
    pprof: pprof::ProfilerGuard<'static>,
    busy: BusyToken,
    started: Instant,
    deadline: Instant,
    frequency_hz: u32,
}

impl std::fmt::Debug for ProfileGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileGuard")
            .field("started", &self.started)
            .field("deadline", &self.deadline)
            .field("frequency_hz", &self.frequency_hz)
            .finish_non_exhaustive()
    }
}

impl ProfileGuard {
    /// Starts sampling (arguments already validated by the caller).
    pub(crate) fn start(duration: Duration, frequency_hz: u32) -> Result<Self, ProfileError> {
        install_sigprof_guard()?;
        let busy = BusyToken::acquire()?;
        let frequency = i32::try_from(frequency_hz)
            .map_err(|_| ProfileError::Profiler(format!("bad frequency {frequency_hz}")))?;
        let pprof = pprof::ProfilerGuardBuilder::default()
            .frequency(frequency)
            .build()
            .map_err(|e| match e {
                // Someone else in this library drives pprof directly.
                pprof::Error::Running => ProfileError::Busy,
                e => ProfileError::Profiler(e.to_string()),
            })?;
        let started = Instant::now();
        Ok(Self {
            pprof,
            busy,
            started,
            deadline: started + duration,
            frequency_hz,
        })
    }

    /// Sampling frequency.
    pub fn frequency_hz(&self) -> u32 {
        self.frequency_hz
    }

    /// When the requested duration is over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time since sampling started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Blocks until the deadline, or returns [`ProfileError::Cancelled`] as soon as `stop` is
    /// set (checked every 20 ms).
    pub fn wait(&self, stop: &AtomicBool) -> Result<(), ProfileError> {
        loop {
            if stop.load(Ordering::Acquire) {
                return Err(ProfileError::Cancelled);
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(POLL));
        }
    }

    /// Stops sampling now (whatever the deadline) and symbolizes what was collected. The busy
    /// flag is released before symbolizing, so the next profile can start meanwhile.
    pub fn finish(self) -> Result<ProfileReport, ProfileError> {
        let unresolved = self
            .pprof
            .report()
            .build_unresolved()
            .map_err(|e| ProfileError::Profiler(e.to_string()));
        let Self { pprof, busy, .. } = self;
        drop(pprof);
        drop(busy);
        let unresolved = unresolved?;
        let mut resolver = LibraryResolver::for_self();
        Ok(ProfileReport::from_unresolved(&unresolved, &mut resolver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<ProfileGuard>();
        assert_send::<ProfileReport>();
    }
}
