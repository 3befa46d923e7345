//! W3C Trace Context: `traceparent` / `tracestate` parsing and formatting, id generation and
//! the sampling decision.
//!
//! The host propagates trace context across HTTP requests, service calls and events as W3C
//! `traceparent` headers. Everything that reads one (the host's reports, manual spans opened
//! by plugins) must agree on what is valid, so the rules of the spec live here once:
//! version `00` is exactly 55 characters of lowercase hex, all-zero ids are invalid, version
//! `ff` is invalid, and a higher version is parsed by its version-00 prefix (the spec's
//! forward-compatibility rule). Parsing never panics on bad input.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;
/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;
/// Most list-members a `tracestate` may hold.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Why a `traceparent`, `tracestate` or hex id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
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
    /// A `tracestate` list-member is malformed.
    #[error("invalid tracestate member: {0}")]
    TraceState(String),
    /// A `tracestate` has more than 32 list-members.
    #[error("tracestate has more than 32 members")]
    TooManyMembers,
    /// A `tracestate` key appears twice.
    #[error("duplicate tracestate key: {0}")]
    DuplicateKey(String),
}

/// The parsed content of a `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// 16-byte trace id, never all zeros.
    pub trace_id: [u8; 16],
    /// 8-byte id of the span that is the parent of the receiver's span, never all zeros.
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is `sampled`. Unknown bits are kept as received.
    pub flags: u8,
}

impl TraceContext {
    /// Starts a new trace: random trace and span ids, with the given sampled flag.
    pub fn new_root(sampled: bool) -> Self {
        Self {
            trace_id: new_trace_id(),
            span_id: new_span_id(),
            flags: if sampled { FLAG_SAMPLED } else { 0 },
        }
    }

    /// A context for a child span of `self`: same trace and flags, a new span id.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            flags: self.flags,
        }
    }

    /// Whether the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Parses a `traceparent` header value strictly per W3C Trace Context.
    ///
    /// Surrounding spaces and tabs (HTTP optional whitespace) are ignored. Version `00` must
    /// be exactly 55 characters. A higher version (not `ff`) must be at least 55 characters,
    /// followed by `-` if longer; its first four fields are read as version 00 and the rest
    /// is ignored.
    pub fn parse(value: &str) -> Result<Self, ContextError> {
        let s = value.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
        if s.len() < 2 {
            return Err(ContextError::Length(s.len()));
        }
        let version = decode_hex::<1>(&s[..2]).ok_or(ContextError::Hex("version", 2))?[0];
        if version == 0xff {
            return Err(ContextError::ForbiddenVersion);
        }
        if version == 0 {
            if s.len() != TRACEPARENT_LEN {
                return Err(ContextError::Length(s.len()));
            }
        } else if s.len() < TRACEPARENT_LEN {
            return Err(ContextError::Length(s.len()));
        } else if s.len() > TRACEPARENT_LEN && s[TRACEPARENT_LEN] != b'-' {
            return Err(ContextError::Separator(TRACEPARENT_LEN));
        }
        for pos in [2, 35, 52] {
            if s[pos] != b'-' {
                return Err(ContextError::Separator(pos));
            }
        }
        let trace_id = decode_hex::<16>(&s[3..35]).ok_or(ContextError::Hex("trace id", 32))?;
        let span_id = decode_hex::<8>(&s[36..52]).ok_or(ContextError::Hex("span id", 16))?;
        let flags = decode_hex::<1>(&s[53..55]).ok_or(ContextError::Hex("trace flags", 2))?[0];
        if trace_id == [0; 16] {
            return Err(ContextError::ZeroTraceId);
        }
        if span_id == [0; 8] {
            return Err(ContextError::ZeroSpanId);
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Formats as a version-00 `traceparent` value (always 55 characters).
    pub fn to_header(&self) -> String {
        let mut buf = [0u8; TRACEPARENT_LEN];
        self.write_header(&mut buf).to_string()
    }

    /// Formats into a caller's buffer without allocating; returns the header as `&str`.
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
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header())
    }
}

impl std::str::FromStr for TraceContext {
    type Err = ContextError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A parsed `tracestate` header: ordered vendor key/value pairs, most recent first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceState {
    entries: Vec<(String, String)>,
}

impl TraceState {
    /// Parses a `tracestate` value. Empty list-members (`a=1,,b=2`) and optional whitespace
    /// around members are allowed; malformed keys or values, duplicate keys and more than
    /// 32 members are errors (the caller should then drop the whole header, as the spec says).
    pub fn parse(value: &str) -> Result<Self, ContextError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for member in value.split(',') {
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            if member.is_empty() {
                continue;
            }
            let (key, val) = member
                .split_once('=')
                .ok_or_else(|| ContextError::TraceState(truncate(member)))?;
            if !valid_key(key) || !valid_value(val) {
                return Err(ContextError::TraceState(truncate(member)));
            }
            if entries.iter().any(|(k, _)| k == key) {
                return Err(ContextError::DuplicateKey(key.to_string()));
            }
            if entries.len() == TRACESTATE_MAX_MEMBERS {
                return Err(ContextError::TooManyMembers);
            }
            entries.push((key.to_string(), val.to_string()));
        }
        Ok(Self { entries })
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value` and moves it to the front (a vendor that modifies its entry
    /// must move it left). When that would exceed 32 members the right-most one is dropped.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), ContextError> {
        if !valid_key(key) || !valid_value(value) {
            return Err(ContextError::TraceState(truncate(&format!(
                "{key}={value}"
            ))));
        }
        self.entries.retain(|(k, _)| k != key);
        self.entries.insert(0, (key.to_string(), value.to_string()));
        self.entries.truncate(TRACESTATE_MAX_MEMBERS);
        Ok(())
    }

    /// The key/value pairs, left to right.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Formats as a header value: `k1=v1,k2=v2`.
    pub fn to_header(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

/// `simple-key = lcalpha 0*255(keychar)` or
/// `tenant-id@system-id` with `tenant-id = (lcalpha/DIGIT) 0*240(keychar)` and
/// `system-id = lcalpha 0*13(keychar)`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            b.len() <= 256 && b.first().is_some_and(u8::is_ascii_lowercase) && {
                b.iter().all(|&c| key_char(c))
            }
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|&c| key_char(c))
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().all(|&c| key_char(c))
        }
    }
}

/// `value = 0*255(chr) nblk-chr`, `chr = %x20 / nblk-chr`,
/// `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E` (printable ASCII except `,` and `=`).
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    let nblk = |c: u8| (0x21..=0x7e).contains(&c) && c != b',' && c != b'=';
    !b.is_empty()
        && b.len() <= 256
        && b.iter().all(|&c| c == b' ' || nblk(c))
        && nblk(b[b.len() - 1])
}

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

/// Parses a 32-digit lowercase hex trace id (all zeros rejected).
pub fn parse_trace_id(s: &str) -> Result<[u8; 16], ContextError> {
    let id = decode_hex::<16>(s.as_bytes()).ok_or(ContextError::Hex("trace id", 32))?;
    if id == [0; 16] {
        return Err(ContextError::ZeroTraceId);
    }
    Ok(id)
}

/// Parses a 16-digit lowercase hex span id (all zeros rejected).
pub fn parse_span_id(s: &str) -> Result<[u8; 8], ContextError> {
    let id = decode_hex::<8>(s.as_bytes()).ok_or(ContextError::Hex("span id", 16))?;
    if id == [0; 8] {
        return Err(ContextError::ZeroSpanId);
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// Id generation: a per-thread wyrand generator seeded once from the std hasher's random keys,
// the clock and a global counter. Fast (a multiply per 8 bytes), not cryptographic.

static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(SEED_COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u64(crate::time::now_ns());
    h.finish()
}

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
        let hi = next_u64().to_be_bytes();
        let lo = next_u64().to_be_bytes();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&hi);
        id[8..].copy_from_slice(&lo);
        if id != [0; 16] {
            return id;
        }
    }
}

/// A random, non-zero 8-byte span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = next_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling.

/// Parent-based sampler with a trace-id ratio for root spans.
///
/// A span with a parent follows the parent's `sampled` flag. A root span is sampled when the
/// low 8 bytes of its trace id, read big-endian and shifted right by one, fall below
/// `ratio * 2^63` — the same rule as OpenTelemetry's `TraceIdRatioBased`, so the decision is
/// a pure function of the trace id and every span of a trace agrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    ratio: f64,
    threshold: u64,
}

impl Sampler {
    /// A sampler for the given ratio; values outside `0.0..=1.0` (and NaN → 0) are clamped.
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

    /// Samples everything.
    pub fn always_on() -> Self {
        Self::new(1.0)
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

    /// The parent-based decision: `parent_sampled` is the parent's sampled flag when the span
    /// has a parent (local or remote), `None` for a root span.
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

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let tc = TraceContext::parse(VALID).unwrap();
        assert_eq!(to_hex(&tc.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(to_hex(&tc.span_id), "00f067aa0ba902b7");
        assert!(tc.sampled());
        assert_eq!(tc.to_header(), VALID);
        assert_eq!(tc.to_string(), VALID);
        let mut buf = [0u8; TRACEPARENT_LEN];
        assert_eq!(tc.write_header(&mut buf), VALID);
        let unsampled = TraceContext::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn optional_whitespace_is_ignored() {
        assert!(TraceContext::parse(&format!(" \t{VALID} ")).is_ok());
    }

    #[test]
    fn rejects_bad_version_00_values() {
        use ContextError::*;
        let cases: &[(&str, ContextError)] = &[
            ("", Length(0)),
            ("0", Length(1)),
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
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
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
                "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Hex("trace id", 32),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                TraceContext::parse(input).as_ref(),
                Err(want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn future_versions_are_parsed_by_their_prefix() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09";
        let tc = TraceContext::parse(v).unwrap();
        assert!(tc.sampled());
        assert_eq!(tc.flags, 0x09, "unknown flag bits are kept");
        // Longer values are fine when the 56th character is '-'.
        assert!(TraceContext::parse(&format!("{v}-what-the-future-brings")).is_ok());
        // ... and invalid otherwise.
        assert_eq!(
            TraceContext::parse(&format!("{v}x")),
            Err(ContextError::Separator(55))
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
        assert!(parse_span_id("0000000000000000").is_err());
        assert!(parse_span_id("00f067aa0ba902b").is_err());
        assert!(parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736").is_ok());
        assert!(parse_trace_id("00000000000000000000000000000000").is_err());
    }

    #[test]
    fn tracestate_parse_and_format() {
        let ts = TraceState::parse("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,  ").unwrap();
        assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(ts.to_header(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        let mt = TraceState::parse("tenant1@vendor=x y").unwrap();
        assert_eq!(mt.get("tenant1@vendor"), Some("x y"));
        assert!(TraceState::parse("").unwrap().is_empty());
        for bad in [
            "Rojo=1",
            "rojo",
            "rojo=",
            "rojo=a,b",
            "rojo=a=b",
            "rojo=ta\tb",
            "rojo=caf\u{e9}",
            "1abc=x",
            "a@=x",
            "a@verylongsystemid=x",
            "rojo=1,rojo=2",
            "ro jo=1",
        ] {
            assert!(
                TraceState::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            TraceState::parse(&many.join(",")),
            Err(ContextError::TooManyMembers)
        );
        assert!(TraceState::parse(&many[..32].join(",")).is_ok());
    }

    #[test]
    fn tracestate_insert_moves_to_front_and_caps() {
        let mut ts = TraceState::parse("a=1,b=2").unwrap();
        ts.insert("b", "3").unwrap();
        assert_eq!(ts.to_header(), "b=3,a=1");
        assert!(ts.insert("B", "3").is_err());
        for i in 0..40 {
            ts.insert(&format!("k{i}"), "v").unwrap();
        }
        assert_eq!(ts.entries().len(), TRACESTATE_MAX_MEMBERS);
        assert_eq!(ts.entries()[0].0, "k39");
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
        let root = TraceContext::new_root(true);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(TraceContext::parse(&child.to_header()), Ok(child));
        // Ids from another thread differ (independent per-thread seeds).
        let other = std::thread::spawn(new_trace_id).join().unwrap();
        assert!(!seen.contains(&other));
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
    }

    #[test]
    fn sampler_ratio_is_respected() {
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
    }
}
