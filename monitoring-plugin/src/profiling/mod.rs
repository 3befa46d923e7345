//! On-demand CPU profiling of the whole host process.
//!
//! The monitoring plugin answers "where is the CPU going?" for the host and every plugin
//! loaded into it. [`Profiler::profile`] samples all threads with pprof-rs (`SIGPROF` +
//! `ITIMER_PROF`) for a bounded number of seconds and returns either an SVG flamegraph or a
//! gzip pprof protobuf; every frame is tagged with the shared object it ran in
//! (`[libdemo_devices.so] demo_devices::burn`), so the cost of each plugin is visible.
//!
//! * [`session`] — the one-profile-per-process rule ([`ProfileError::Busy`] → HTTP 409);
//! * [`signal`] — the do-nothing `SIGPROF` handler that keeps a late tick from killing the
//!   host (tikv/pprof-rs issue 288; pprof is pinned to `=0.15.0` for the same reason);
//! * [`maps`] — `/proc/self/maps` parsing and plugin-cache path → library name;
//! * [`report`] — symbolization with library attribution, [`top_libraries`];
//! * [`render`] — flamegraph SVG and `profile.pb.gz` output.

pub mod capability;
pub mod maps;
pub mod render;
pub mod report;
pub mod session;
pub mod signal;

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Serialize;

pub use self::report::{top_libraries, LibrarySamples, ProfileReport, ProfileSummary};
pub use self::session::{is_busy, ProfileGuard};

/// Accepted profile durations, in seconds.
pub const SECONDS: RangeInclusive<u64> = 1..=60;
/// Duration used when the request names none.
pub const DEFAULT_SECONDS: u64 = 10;
/// Accepted sampling frequencies, in Hz (pprof-rs's timer resolution is 1 µs; above 1 kHz the
/// handler's cost dominates).
pub const FREQUENCY_HZ: RangeInclusive<u32> = 1..=1000;
/// Default sampling frequency: 99 Hz avoids lock-step with 100 Hz periodic work.
pub const DEFAULT_FREQUENCY_HZ: u32 = 99;

/// Why a profile could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Another profile is running in this process (HTTP 409).
    #[error("a CPU profile is already running in this process")]
    Busy,
    /// Requested duration outside [`SECONDS`].
    #[error("profile duration must be between {min} and {max} seconds, got {got}")]
    InvalidDuration {
        /// Requested value.
        got: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Requested frequency outside [`FREQUENCY_HZ`].
    #[error("sampling frequency must be between {min} and {max} Hz, got {got}")]
    InvalidFrequency {
        /// Requested value.
        got: u32,
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
    },
    /// Unrecognised output format name.
    #[error("unknown profile format {0:?}: expected \"flamegraph\" or \"pprof\"")]
    UnknownFormat(String),
    /// The caller's stop flag was set before the profile completed.
    #[error("the profile was cancelled")]
    Cancelled,
    /// The do-nothing `SIGPROF` handler could not be installed; profiling is refused.
    #[error("cannot install the SIGPROF guard: {0}")]
    SignalSetup(String),
    /// pprof-rs failed.
    #[error("profiler failure: {0}")]
    Profiler(String),
    /// The output could not be rendered.
    #[error("cannot render the {format} output: {reason}")]
    Render {
        /// Output format being rendered.
        format: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl ProfileError {
    /// HTTP status the API layer should answer with: 409 busy, 400 bad request, 503
    /// cancelled (plugin stopping), 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Busy => 409,
            Self::InvalidDuration { .. }
            | Self::InvalidFrequency { .. }
            | Self::UnknownFormat(_) => 400,
            Self::Cancelled => 503,
            Self::SignalSetup(_) | Self::Profiler(_) | Self::Render { .. } => 500,
        }
    }
}

/// Output format of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileFormat {
    /// Interactive SVG flamegraph (`image/svg+xml`).
    #[default]
    Flamegraph,
    /// gzip-compressed pprof protobuf (`profile.pb.gz`), for `go tool pprof`.
    Pprof,
}

impl ProfileFormat {
    /// HTTP `Content-Type` of the body.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Flamegraph => "image/svg+xml",
            Self::Pprof => "application/octet-stream",
        }
    }

    /// File name for `Content-Disposition`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Flamegraph => "flamegraph.svg",
            Self::Pprof => "profile.pb.gz",
        }
    }
}

impl FromStr for ProfileFormat {
    type Err = ProfileError;

    /// `flamegraph` / `svg`, or `pprof` / `proto` / `pb` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flamegraph" | "svg" => Ok(Self::Flamegraph),
            "pprof" | "proto" | "pb" => Ok(Self::Pprof),
            _ => Err(ProfileError::UnknownFormat(s.chars().take(32).collect())),
        }
    }
}

/// A finished profile, ready to send.
#[derive(Debug, Clone)]
pub struct ProfileOutput {
    /// HTTP `Content-Type`.
    pub content_type: &'static str,
    /// Suggested download name.
    pub file_name: &'static str,
    /// SVG text or gzip'd protobuf.
    pub body: Vec<u8>,
    /// Number of samples taken.
    pub samples: u64,
    /// Self samples per library, most first.
    pub libraries: Vec<LibrarySamples>,
}

/// Checks a duration against [`SECONDS`].
pub fn validate_seconds(seconds: u64) -> Result<Duration, ProfileError> {
    if SECONDS.contains(&seconds) {
        Ok(Duration::from_secs(seconds))
    } else {
        Err(ProfileError::InvalidDuration {
            got: seconds,
            min: *SECONDS.start(),
            max: *SECONDS.end(),
        })
    }
}

/// Checks a frequency against [`FREQUENCY_HZ`].
pub fn validate_frequency(frequency_hz: u32) -> Result<u32, ProfileError> {
    if FREQUENCY_HZ.contains(&frequency_hz) {
        Ok(frequency_hz)
    } else {
        Err(ProfileError::InvalidFrequency {
            got: frequency_hz,
            min: *FREQUENCY_HZ.start(),
            max: *FREQUENCY_HZ.end(),
        })
    }
}

/// Entry point: starts profiles at a configured frequency. Cheap to create; the
/// one-at-a-time rule is process-wide, not per `Profiler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profiler {
    frequency_hz: u32,
}

impl Default for Profiler {
    fn default() -> Self {
        Self {
            frequency_hz: DEFAULT_FREQUENCY_HZ,
        }
    }
}

impl Profiler {
    /// A profiler sampling at [`DEFAULT_FREQUENCY_HZ`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A profiler sampling at `frequency_hz` (checked against [`FREQUENCY_HZ`]).
    pub fn with_frequency(frequency_hz: u32) -> Result<Self, ProfileError> {
        Ok(Self {
            frequency_hz: validate_frequency(frequency_hz)?,
        })
    }

    /// Sampling frequency of [`Profiler::profile`].
    pub fn frequency_hz(&self) -> u32 {
        self.frequency_hz
    }

    /// Starts a profile of `seconds` (its [`ProfileGuard::deadline`]) at `frequency_hz`
    /// without blocking. Fails with [`ProfileError::Busy`] while another profile runs
    /// anywhere in the process, or with a bounds error.
    pub fn try_start(&self, seconds: u64, frequency_hz: u32) -> Result<ProfileGuard, ProfileError> {
        let duration = validate_seconds(seconds)?;
        let frequency_hz = validate_frequency(frequency_hz)?;
        ProfileGuard::start(duration, frequency_hz)
    }

    /// Profiles the whole process for `seconds` and renders `format`. Blocks the calling
    /// thread (run it on a blocking thread); returns [`ProfileError::Cancelled`] soon after
    /// `stop` is set.
    pub fn profile(
        &self,
        seconds: u64,
        format: ProfileFormat,
        stop: &AtomicBool,
    ) -> Result<ProfileOutput, ProfileError> {
        let guard = self.try_start(seconds, self.frequency_hz)?;
        guard.wait(stop)?;
        let report = guard.finish()?;
        render_output(&report, format)
    }
}

/// Renders a finished report in `format`.
pub fn render_output(
    report: &ProfileReport,
    format: ProfileFormat,
) -> Result<ProfileOutput, ProfileError> {
    let body = match format {
        ProfileFormat::Flamegraph => render::flamegraph_svg(report)?,
        ProfileFormat::Pprof => render::pprof_gz(report)?,
    };
    Ok(ProfileOutput {
        content_type: format.content_type(),
        file_name: format.file_name(),
        body,
        samples: report.samples(),
        libraries: report.summary().libraries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(matches!(
            validate_seconds(0),
            Err(ProfileError::InvalidDuration {
                got: 0,
                min: 1,
                max: 60
            })
        ));
        assert!(matches!(
            validate_seconds(61),
            Err(ProfileError::InvalidDuration { .. })
        ));
        assert!(matches!(
            validate_seconds(u64::MAX),
            Err(ProfileError::InvalidDuration { .. })
        ));
        assert_eq!(validate_seconds(60).ok(), Some(Duration::from_secs(60)));
        assert!(matches!(
            validate_frequency(0),
            Err(ProfileError::InvalidFrequency {
                got: 0,
                min: 1,
                max: 1000
            })
        ));
        assert!(matches!(
            validate_frequency(1001),
            Err(ProfileError::InvalidFrequency { .. })
        ));
        assert!(Profiler::with_frequency(u32::MAX).is_err());
        assert_eq!(
            Profiler::with_frequency(999).map(|p| p.frequency_hz()).ok(),
            Some(999)
        );
        let e = validate_seconds(0)
            .err()
            .map(|e| (e.http_status(), e.to_string()));
        assert_eq!(
            e,
            Some((
                400,
                "profile duration must be between 1 and 60 seconds, got 0".into()
            ))
        );
        assert_eq!(ProfileError::Busy.http_status(), 409);
    }

    #[test]
    fn formats() {
        assert_eq!(
            "flamegraph".parse::<ProfileFormat>().ok(),
            Some(ProfileFormat::Flamegraph)
        );
        assert_eq!(
            " SVG ".parse::<ProfileFormat>().ok(),
            Some(ProfileFormat::Flamegraph)
        );
        assert_eq!(
            "pprof".parse::<ProfileFormat>().ok(),
            Some(ProfileFormat::Pprof)
        );
        let err = "x".repeat(100).parse::<ProfileFormat>().err();
        assert!(matches!(err, Some(ProfileError::UnknownFormat(ref s)) if s.len() == 32));
        assert_eq!(ProfileFormat::Pprof.file_name(), "profile.pb.gz");
        assert_eq!(ProfileFormat::Flamegraph.content_type(), "image/svg+xml");
    }
}
