//! W3C trace context on the host side: the span contexts the host creates
//! for every HTTP request, service call, event publish and delivery, storage
//! operation and plugin life-cycle step, and the "current" context of the
//! thread running a plugin callback.
//!
//! Why here and not from the monitoring plugin: the host must not depend on
//! the plugin crate (it is a hot-loadable cdylib), so the few pieces both
//! need — parse/format a `traceparent`, random ids, the trace-id-ratio rule —
//! are kept here in their minimal form. The rules are the same as the
//! plugin's `trace::context` (strict W3C, all-zero ids invalid, OpenTelemetry's
//! `TraceIdRatioBased` sampling decision) so both sides agree on every trace.
//!
//! Cost model (docs/ARCHITECTURE.md, section "Costs"): a [`SpanContext`]
//! is a 25-byte `Copy` value. Creating a child is one id draw from a
//! per-thread wyrand generator (a multiply); setting the thread's current
//! context is one thread-local write. Formatting a header writes into a caller's stack buffer, so the hot
//! path never allocates for tracing.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;
/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One span's identity: trace id, span id, trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    /// 16-byte trace id, never all zeros.
    pub trace_id: [u8; 16],
    /// 8-byte span id, never all zeros.
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

impl SpanContext {
    /// A new root: fresh trace and span ids; sampled when `sampler` says so
    /// for the new trace id.
    pub fn new_root(sampler: &Sampler) -> Self {
        let trace_id = new_trace_id();
        SpanContext {
            trace_id,
            span_id: new_span_id(),
            flags: if sampler.sample_trace_id(&trace_id) {
                FLAG_SAMPLED
            } else {
                0
            },
        }
    }

    /// A child span: same trace and flags, a new span id.
    #[inline]
    pub fn child(&self) -> Self {
        SpanContext {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            flags: self.flags,
        }
    }

    /// A child of `parent` when there is one, else a new root.
    #[inline]
    pub fn child_or_root(parent: Option<&SpanContext>, sampler: &Sampler) -> Self {
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

    /// Parses a `traceparent` value strictly (W3C Trace Context). Returns
    /// `None` for anything invalid; never panics.
    pub fn parse(value: &str) -> Option<Self> {
        let s = value.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
        if s.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = decode_hex::<1>(&s[..2])?[0];
        if version == 0xff
            || (version == 0 && s.len() != TRACEPARENT_LEN)
            || (s.len() > TRACEPARENT_LEN && s[TRACEPARENT_LEN] != b'-')
        {
            return None;
        }
        if s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return None;
        }
        let trace_id = decode_hex::<16>(&s[3..35])?;
        let span_id = decode_hex::<8>(&s[36..52])?;
        let flags = decode_hex::<1>(&s[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Formats as a version-00 `traceparent` into a caller's buffer.
    pub fn write_header<'a>(&self, buf: &'a mut [u8; TRACEPARENT_LEN]) -> &'a str {
        buf[0] = b'0';
        buf[1] = b'0';
        buf[2] = b'-';
        encode_hex_into(&self.trace_id, &mut buf[3..35]);
        buf[35] = b'-';
        encode_hex_into(&self.span_id, &mut buf[36..52]);
        buf[52] = b'-';
        encode_hex_into(&[self.flags], &mut buf[53..55]);
        // Only ASCII hex digits and '-' were written.
        std::str::from_utf8(buf).unwrap_or("")
    }

    /// The `traceparent` value as an owned string.
    pub fn to_header(&self) -> String {
        let mut buf = [0u8; TRACEPARENT_LEN];
        self.write_header(&mut buf).to_owned()
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

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (hex_val(s[2 * i])? << 4) | hex_val(s[2 * i + 1])?;
    }
    Some(out)
}

fn encode_hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0x0f) as usize];
    }
}

/// Lowercase hex of a byte slice.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    encode_hex_into(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

// ---- ids: per-thread wyrand, seeded from std's random hasher keys ------------

static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
    static CURRENT: Cell<Option<SpanContext>> = const { Cell::new(None) };
}

fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(SEED_COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u64(crate::time::now_unix_ns());
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

/// A random, non-zero trace id.
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

/// A random, non-zero span id.
#[inline]
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = next_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

// ---- sampling ------------------------------------------------------------------

/// Root sampling by trace id: sampled when the low 8 bytes of the trace id
/// (big-endian, shifted right by one) fall below `ratio * 2^63` — the rule of
/// OpenTelemetry's `TraceIdRatioBased` and of the plugin's `Sampler`.
/// Children follow their parent's flag and never consult it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
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
        Sampler { threshold }
    }

    /// The decision for a new root with this trace id.
    #[inline]
    pub fn sample_trace_id(&self, trace_id: &[u8; 16]) -> bool {
        if self.threshold == u64::MAX {
            return true;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        (u64::from_be_bytes(low) >> 1) < self.threshold
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new(1.0)
    }
}

// ---- the thread's current context ------------------------------------------------

/// The context of the plugin callback this thread is running, if any.
#[inline]
pub fn current() -> Option<SpanContext> {
    CURRENT.with(Cell::get)
}

/// Restores the previous current context when dropped.
#[must_use = "the context is current only while the guard lives"]
pub struct CurrentGuard {
    previous: Option<SpanContext>,
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Makes `ctx` the thread's current context until the guard is dropped
/// (nests: the previous one comes back).
#[inline]
pub fn enter(ctx: Option<SpanContext>) -> CurrentGuard {
    CurrentGuard {
        previous: CURRENT.with(|c| c.replace(ctx)),
    }
}

/// The parent a host operation should hang from: the explicit
/// `traceparent` when it parses, else the thread's current context.
#[inline]
pub fn parent_of(explicit: Option<&str>) -> Option<SpanContext> {
    explicit.and_then(SpanContext::parse).or_else(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_round_trip() {
        let c = SpanContext::parse(VALID).unwrap();
        assert!(c.sampled());
        assert_eq!(c.to_header(), VALID);
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id_hex(), "00f067aa0ba902b7");
        let child = c.child();
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
        assert_eq!(child.flags, c.flags);
    }

    #[test]
    fn rejects_bad_values_without_panicking() {
        for bad in [
            "",
            "00",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert_eq!(SpanContext::parse(bad), None, "{bad:?}");
        }
        // A future version keeps its version-00 prefix.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(SpanContext::parse(future).is_some());
    }

    #[test]
    fn sampler_is_a_pure_function_of_the_trace_id() {
        let never = Sampler::new(0.0);
        let always = Sampler::new(1.0);
        let half = Sampler::new(0.5);
        let mut kept = 0;
        for _ in 0..2_000 {
            let root = SpanContext::new_root(&half);
            assert_eq!(root.sampled(), half.sample_trace_id(&root.trace_id));
            kept += usize::from(root.sampled());
            assert!(!SpanContext::new_root(&never).sampled());
            assert!(SpanContext::new_root(&always).sampled());
        }
        assert!((800..1200).contains(&kept), "{kept}");
        // The plugin's rule: low 8 bytes >> 1 < ratio * 2^63.
        let mut id = [0u8; 16];
        id[8] = 0x7f;
        assert!(half.sample_trace_id(&id));
        id[8] = 0x80;
        assert!(!half.sample_trace_id(&id));
    }

    #[test]
    fn current_context_nests_and_restores() {
        assert_eq!(current(), None);
        let a = SpanContext::new_root(&Sampler::default());
        let b = a.child();
        {
            let _g = enter(Some(a));
            assert_eq!(current(), Some(a));
            {
                let _g = enter(Some(b));
                assert_eq!(current(), Some(b));
                assert_eq!(parent_of(None), Some(b));
                assert_eq!(parent_of(Some("garbage")), Some(b));
                assert_eq!(parent_of(Some(VALID)), SpanContext::parse(VALID));
            }
            assert_eq!(current(), Some(a));
        }
        assert_eq!(current(), None);
    }
}
