//! W3C Trace Context, once for host and plugins: the binary [`TraceContext`]
//! that crosses the ABI, strict `traceparent` parsing and allocation-free
//! formatting, fast random ids and the parent-based trace-id-ratio sampler.
//!
//! Why it lives in the contract crate: the host and the monitoring plugin
//! must agree on every trace (what is a valid header, which roots are
//! sampled), and a context that crosses the boundary as 25 bytes instead of
//! 55 characters of text is cheaper for both. The rules:
//!
//! - Version `00` is exactly 55 characters of lowercase hex fields separated
//!   by `-`; surrounding spaces and tabs (HTTP optional whitespace) are
//!   ignored. Version `ff` is forbidden. A higher version must be at least 55
//!   characters, followed by `-` when longer, and is read by its first four
//!   fields (the spec's forward-compatibility rule). All-zero ids are
//!   invalid; unknown flag bits are kept. Parsing never panics.
//! - Formatting always writes version `00`, into a fixed 55-byte buffer.
//! - Ids come from a per-thread wyrand generator (one multiply per 8 bytes)
//!   seeded from the OS: std's [`RandomState`] keys are drawn from the OS
//!   random source once per thread; a global counter and the clock are mixed
//!   in so two threads never share a stream. Fast, not cryptographic.
//! - Sampling is OpenTelemetry's `ParentBased(TraceIdRatioBased)`: a child
//!   follows its parent's `sampled` flag; a root is sampled when the low 8
//!   bytes of its trace id, big-endian and shifted right by one, are below
//!   `ratio * 2^63`, so the decision is a pure function of the trace id.
//!
//! `tracestate` is not handled here: only the monitoring plugin reads it.
#![allow(unsafe_code)] // `#[derive(StableAbi)]` expands to `unsafe impl`.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use abi_stable::StableAbi;

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;
/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Why a `traceparent` value or a hex id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceContextError {
    /// The value has the wrong length for its version.
    #[error("traceparent has invalid length {0} (version 00 needs exactly 55 characters)")]
    Length(usize),
    /// A `-` separator is missing where the format needs one.
    #[error("traceparent is missing a '-' separator at position {0}")]
    Separator(usize),
    /// A field holds something other than lowercase hex digits.
    #[error("{0} is not {1} lowercase hex digits")]
    Hex(&'static str, usize),
    /// Version `ff` is forbidden by the spec.
    #[error("traceparent version ff is invalid")]
    ForbiddenVersion,
    /// The trace id is all zeros.
    #[error("trace id is all zeros")]
    ZeroTraceId,
    /// The parent (span) id is all zeros.
    #[error("span id is all zeros")]
    ZeroSpanId,
}

/// One span's identity: what a W3C `traceparent` carries, as 25 bytes that
/// cross the ABI by value.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TraceContext {
    /// 16-byte trace id, never all zeros.
    pub trace_id: [u8; 16],
    /// 8-byte span id (the parent id of a received header), never all zeros.
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is `sampled`. Unknown bits are kept as received.
    pub flags: u8,
}

impl TraceContext {
    /// A new trace: fresh trace and span ids, sampled when `sampler` says so
    /// for the new trace id.
    pub fn new_root(sampler: &Sampler) -> Self {
        let trace_id = new_trace_id();
        Self {
            trace_id,
            span_id: new_span_id(),
            flags: if sampler.sample_trace_id(&trace_id) {
                FLAG_SAMPLED
            } else {
                0
            },
        }
    }

    /// A child span of `self`: same trace and flags, a new span id.
    #[inline]
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            flags: self.flags,
        }
    }

    /// A child of `parent` when there is one, else a new root decided by
    /// `sampler` (the parent-based rule).
    #[inline]
    pub fn child_or_root(parent: Option<&TraceContext>, sampler: &Sampler) -> Self {
        match parent {
            Some(p) => p.child(),
            None => Self::new_root(sampler),
        }
    }

    /// Whether the `sampled` flag is set.
    #[inline]
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Parses a `traceparent` header value strictly (see the module docs).
    pub fn parse(value: &str) -> Result<Self, TraceContextError> {
        let s = value.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
        if s.len() < 2 {
            return Err(TraceContextError::Length(s.len()));
        }
        let version = decode_hex::<1>(&s[..2]).ok_or(TraceContextError::Hex("version", 2))?[0];
        if version == 0xff {
            return Err(TraceContextError::ForbiddenVersion);
        }
        if version == 0 {
            if s.len() != TRACEPARENT_LEN {
                return Err(TraceContextError::Length(s.len()));
            }
        } else if s.len() < TRACEPARENT_LEN {
            return Err(TraceContextError::Length(s.len()));
        } else if s.len() > TRACEPARENT_LEN && s[TRACEPARENT_LEN] != b'-' {
            return Err(TraceContextError::Separator(TRACEPARENT_LEN));
        }
        for pos in [2, 35, 52] {
            if s[pos] != b'-' {
                return Err(TraceContextError::Separator(pos));
            }
        }
        let trace_id = decode_hex::<16>(&s[3..35]).ok_or(TraceContextError::Hex("trace id", 32))?;
        let span_id = decode_hex::<8>(&s[36..52]).ok_or(TraceContextError::Hex("span id", 16))?;
        let flags = decode_hex::<1>(&s[53..55]).ok_or(TraceContextError::Hex("trace flags", 2))?[0];
        if trace_id == [0; 16] {
            return Err(TraceContextError::ZeroTraceId);
        }
        if span_id == [0; 8] {
            return Err(TraceContextError::ZeroSpanId);
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Formats as a version-00 `traceparent` into a caller's buffer, without
    /// allocating; returns the header as `&str`.
    pub fn write_header<'a>(&self, buf: &'a mut [u8; TRACEPARENT_LEN]) -> &'a str {
        buf[0] = b'0';
        buf[1] = b'0';
        buf[2] = b'-';
        encode_hex_into(&self.trace_id, &mut buf[3..35]);
        buf[35] = b'-';
        encode_hex_into(&self.span_id, &mut buf[36..52]);
        buf[52] = b'-';
        encode_hex_into(&[self.flags], &mut buf[53..55]);
        // Only ASCII hex digits and '-' were written, so this never falls back.
        std::str::from_utf8(buf).unwrap_or("")
    }

    /// The version-00 `traceparent` as a 55-byte value on the stack (derefs
    /// to `&str`; no allocation).
    pub fn traceparent(&self) -> Traceparent {
        let mut buf = [0u8; TRACEPARENT_LEN];
        self.write_header(&mut buf);
        Traceparent(buf)
    }

    /// The `traceparent` value as an owned string.
    pub fn to_header(&self) -> String {
        self.traceparent().as_str().to_owned()
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        to_hex(&self.span_id)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl std::str::FromStr for TraceContext {
    type Err = TraceContextError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A formatted version-00 `traceparent`: 55 ASCII bytes held by value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Traceparent([u8; TRACEPARENT_LEN]);

impl Traceparent {
    /// The header text.
    pub fn as_str(&self) -> &str {
        // Built only by `TraceContext::traceparent`: ASCII hex and '-'.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl Deref for Traceparent {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

// ---- hex -------------------------------------------------------------------

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes exactly `2 * N` lowercase hex digits.
fn decode_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (hex_val(s[2 * i])? << 4) | hex_val(s[2 * i + 1])?;
    }
    Some(out)
}

fn encode_hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0x0f) as usize];
    }
}

/// Lowercase hex of any byte slice.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    encode_hex_into(bytes, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a 32-digit lowercase hex trace id (all zeros refused).
pub fn parse_trace_id(s: &str) -> Result<[u8; 16], TraceContextError> {
    let id = decode_hex::<16>(s.as_bytes()).ok_or(TraceContextError::Hex("trace id", 32))?;
    if id == [0; 16] {
        return Err(TraceContextError::ZeroTraceId);
    }
    Ok(id)
}

/// Parses a 16-digit lowercase hex span id (all zeros refused).
pub fn parse_span_id(s: &str) -> Result<[u8; 8], TraceContextError> {
    let id = decode_hex::<8>(s.as_bytes()).ok_or(TraceContextError::Hex("span id", 16))?;
    if id == [0; 8] {
        return Err(TraceContextError::ZeroSpanId);
    }
    Ok(id)
}

// ---- ids: per-thread wyrand --------------------------------------------------

static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A per-thread seed: std's OS-seeded hasher keys, a global counter (so two
/// threads that start in the same nanosecond still differ) and the clock.
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(SEED_COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    h.write_u64(now);
    h.finish()
}

#[inline]
fn next_u64() -> u64 {
    RNG.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A random, non-zero 16-byte trace id.
pub fn new_trace_id() -> [u8; 16] {
    loop {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&next_u64().to_be_bytes());
        id[8..].copy_from_slice(&next_u64().to_be_bytes());
        if id != [0; 16] {
            return id;
        }
    }
}

/// A random, non-zero 8-byte span id.
#[inline]
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = next_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

// ---- sampling ----------------------------------------------------------------

/// Parent-based sampler with a trace-id ratio for roots (OpenTelemetry's
/// `ParentBased(TraceIdRatioBased)`; see the module docs for the rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    ratio: f64,
    threshold: u64,
}

impl Sampler {
    /// A sampler for `ratio`, clamped to `0.0..=1.0` (NaN → 0).
    pub fn new(ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        let threshold = if ratio >= 1.0 {
            u64::MAX
        } else {
            (ratio * (1u64 << 63) as f64) as u64
        };
        Self { ratio, threshold }
    }

    /// Samples every root.
    pub fn always_on() -> Self {
        Self::new(1.0)
    }

    /// Samples no root.
    pub fn always_off() -> Self {
        Self::new(0.0)
    }

    /// The (clamped) ratio.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// The root decision for a trace id (ignores any parent).
    #[inline]
    pub fn sample_trace_id(&self, trace_id: &[u8; 16]) -> bool {
        if self.threshold == u64::MAX {
            return true;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        (u64::from_be_bytes(low) >> 1) < self.threshold
    }

    /// The parent-based decision: `parent_sampled` is the parent's sampled
    /// flag when the span has a parent (local or remote), `None` for a root.
    #[inline]
    pub fn should_sample(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> bool {
        match parent_sampled {
            Some(sampled) => sampled,
            None => self.sample_trace_id(trace_id),
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::always_on()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example of the W3C Trace Context recommendation.
    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let tc = TraceContext::parse(VALID).unwrap();
        assert_eq!(tc.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tc.span_id_hex(), "00f067aa0ba902b7");
        assert!(tc.sampled());
        assert_eq!(tc.to_header(), VALID);
        assert_eq!(tc.to_string(), VALID);
        assert_eq!(&*tc.traceparent(), VALID);
        assert_eq!(format!("{:?}", tc.traceparent()), format!("{VALID:?}"));
        let mut buf = [0u8; TRACEPARENT_LEN];
        assert_eq!(tc.write_header(&mut buf), VALID);
        assert_eq!(VALID.parse::<TraceContext>(), Ok(tc));
        let unsampled = TraceContext::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn optional_whitespace_is_ignored() {
        assert!(TraceContext::parse(&format!(" \t{VALID} ")).is_ok());
    }

    #[test]
    fn refuses_bad_version_00_values_with_the_reason() {
        use TraceContextError::*;
        let cases: &[(&str, TraceContextError)] = &[
            ("", Length(0)),
            ("0", Length(1)),
            ("00", Length(2)),
            (&VALID[..54], Length(54)),
            (&format!("{VALID}-"), Length(56)),
            (&format!("{VALID}-extra"), Length(61)),
            (&VALID.to_uppercase(), Hex("trace id", 32)),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                Hex("trace id", 32),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                Hex("span id", 16),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                Hex("trace flags", 2),
            ),
            (
                "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Hex("version", 2),
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroSpanId,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Separator(2),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                Separator(35),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
                Separator(52),
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ForbiddenVersion,
            ),
            // Non-ASCII must not panic on slicing.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-0",
                Separator(35),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
                Length(56),
            ),
            (
                "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Hex("trace id", 32),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(TraceContext::parse(input), Err(*want), "input {input:?}");
        }
    }

    #[test]
    fn errors_read_as_one_clear_sentence() {
        assert_eq!(
            TraceContextError::Length(54).to_string(),
            "traceparent has invalid length 54 (version 00 needs exactly 55 characters)"
        );
        assert_eq!(
            TraceContextError::Hex("span id", 16).to_string(),
            "span id is not 16 lowercase hex digits"
        );
    }

    #[test]
    fn future_versions_are_parsed_by_their_first_four_fields() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09";
        let tc = TraceContext::parse(v).unwrap();
        assert!(tc.sampled());
        assert_eq!(tc.flags, 0x09, "unknown flag bits are kept");
        // Longer values are fine when the 56th character is '-'.
        assert_eq!(
            TraceContext::parse(&format!("{v}-what-the-future-brings")),
            Ok(tc)
        );
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceContext::parse(future).is_ok());
        // ... and invalid otherwise.
        assert_eq!(
            TraceContext::parse(&format!("{v}x")),
            Err(TraceContextError::Separator(55))
        );
        // Too short is invalid for any version.
        assert!(TraceContext::parse(&v[..54]).is_err());
        // Re-formatting downgrades to version 00.
        assert!(tc.to_header().starts_with("00-"));
    }

    #[test]
    fn hex_id_helpers() {
        assert_eq!(
            parse_span_id("00f067aa0ba902b7").unwrap(),
            [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parse_span_id("00F067aa0ba902b7").is_err());
        assert_eq!(
            parse_span_id("0000000000000000"),
            Err(TraceContextError::ZeroSpanId)
        );
        assert!(parse_span_id("00f067aa0ba902b").is_err());
        assert!(parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736").is_ok());
        assert_eq!(
            parse_trace_id("00000000000000000000000000000000"),
            Err(TraceContextError::ZeroTraceId)
        );
        assert_eq!(to_hex(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let t = new_trace_id();
            assert_ne!(t, [0; 16]);
            assert!(seen.insert(t));
            assert_ne!(new_span_id(), [0; 8]);
        }
        let root = TraceContext::new_root(&Sampler::always_on());
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(child.flags, root.flags);
        assert_eq!(TraceContext::parse(&child.to_header()), Ok(child));
        // Ids from another thread differ (independent per-thread seeds).
        let other = std::thread::spawn(new_trace_id).join().unwrap();
        assert!(!seen.contains(&other));
    }

    #[test]
    fn child_or_root_is_parent_based() {
        let off = Sampler::always_off();
        let parent = TraceContext::parse(VALID).unwrap();
        let child = TraceContext::child_or_root(Some(&parent), &off);
        assert_eq!(child.trace_id, parent.trace_id);
        assert!(child.sampled(), "a sampled parent wins over the ratio");
        let root = TraceContext::child_or_root(None, &off);
        assert_ne!(root.trace_id, parent.trace_id);
        assert!(!root.sampled());
    }

    #[test]
    fn sampler_is_deterministic_and_follows_parent() {
        let s = Sampler::new(0.25);
        for _ in 0..1000 {
            let t = new_trace_id();
            let first = s.should_sample(&t, None);
            for _ in 0..3 {
                assert_eq!(s.should_sample(&t, None), first);
            }
            assert!(s.should_sample(&t, Some(true)));
            assert!(!s.should_sample(&t, Some(false)));
        }
    }

    #[test]
    fn sampler_matches_the_opentelemetry_rule_at_the_threshold() {
        let s = Sampler::new(0.5);
        // low 8 bytes >> 1 must be < 2^62.
        let mut below = [0u8; 16];
        below[8..].copy_from_slice(&((1u64 << 63) - 2).to_be_bytes()); // >>1 = 2^62 - 1
        let mut at = [0u8; 16];
        at[8..].copy_from_slice(&(1u64 << 63).to_be_bytes()); // >>1 = 2^62
        assert!(s.sample_trace_id(&below));
        assert!(!s.sample_trace_id(&at));
        // The high 8 bytes do not matter.
        let mut high = at;
        high[..8].copy_from_slice(&[0xff; 8]);
        assert!(!s.sample_trace_id(&high));
        // The host copy's byte-level check of the same boundary.
        let mut id = [0u8; 16];
        id[8] = 0x7f;
        assert!(s.sample_trace_id(&id));
        id[8] = 0x80;
        assert!(!s.sample_trace_id(&id));
    }

    #[test]
    fn sampler_ratio_is_respected_and_clamped() {
        for ratio in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let s = Sampler::new(ratio);
            let n = 100_000;
            let hits = (0..n)
                .filter(|_| s.should_sample(&new_trace_id(), None))
                .count();
            let got = hits as f64 / n as f64;
            assert!((got - ratio).abs() < 0.01, "ratio {ratio}: got {got}");
        }
        assert_eq!(Sampler::new(f64::NAN).ratio(), 0.0);
        assert_eq!(Sampler::new(7.0).ratio(), 1.0);
        assert_eq!(Sampler::new(-1.0).ratio(), 0.0);
        assert!(!Sampler::new(0.0).should_sample(&[0xff; 16], None));
        assert!(Sampler::new(1.0).should_sample(&[0xff; 16], None));
        assert_eq!(Sampler::default(), Sampler::always_on());
    }

    #[test]
    fn roots_follow_the_sampler_for_their_trace_id() {
        let half = Sampler::new(0.5);
        for _ in 0..2_000 {
            let root = TraceContext::new_root(&half);
            assert_eq!(root.sampled(), half.sample_trace_id(&root.trace_id));
            assert!(!TraceContext::new_root(&Sampler::always_off()).sampled());
            assert!(TraceContext::new_root(&Sampler::always_on()).sampled());
        }
    }

    #[test]
    fn the_layout_is_25_bytes_without_padding() {
        assert_eq!(std::mem::size_of::<TraceContext>(), 25);
        assert_eq!(std::mem::align_of::<TraceContext>(), 1);
    }

    fn arb_context() -> impl Strategy<Value = TraceContext> {
        (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>())
            .prop_filter("ids are never all zeros", |(t, s, _)| {
                *t != [0; 16] && *s != [0; 8]
            })
            .prop_map(|(trace_id, span_id, flags)| TraceContext {
                trace_id,
                span_id,
                flags,
            })
    }

    proptest! {
        #[test]
        fn parse_after_format_is_identity(tc in arb_context()) {
            prop_assert_eq!(TraceContext::parse(&tc.traceparent()), Ok(tc));
        }

        #[test]
        fn format_after_parse_is_identity(
            s in "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"
        ) {
            if let Ok(tc) = TraceContext::parse(&s) {
                prop_assert_eq!(tc.to_header(), s);
            } else {
                // Only the all-zero ids may be refused.
                prop_assert!(s[3..35].bytes().all(|b| b == b'0')
                    || s[36..52].bytes().all(|b| b == b'0'));
            }
        }

        #[test]
        fn future_versions_with_a_suffix_read_the_prefix(
            tc in arb_context(),
            version in 1u8..0xff,
            suffix in "(-[ -~]{0,20})?",
        ) {
            let header = tc.to_header();
            let value = format!("{version:02x}{}{suffix}", &header[2..]);
            prop_assert_eq!(TraceContext::parse(&value), Ok(tc));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = TraceContext::parse(&s);
        }

        #[test]
        fn one_changed_character_is_caught_or_read_back(
            tc in arb_context(),
            pos in 0usize..TRACEPARENT_LEN,
            c in proptest::char::range('\u{20}', '\u{7e}'),
        ) {
            let mut bytes = tc.to_header().into_bytes();
            bytes[pos] = c as u8;
            let mutated = String::from_utf8(bytes).unwrap();
            if let Ok(parsed) = TraceContext::parse(&mutated) {
                // Whatever parses must format back to exactly the input (a
                // changed version digit pair becomes a future version).
                if mutated.starts_with("00") {
                    prop_assert_eq!(parsed.to_header(), mutated);
                } else {
                    prop_assert_eq!(&parsed.to_header()[2..], &mutated[2..]);
                }
            }
        }
    }
}
