//! W3C Trace Context in the monitoring plugin: the `tracestate` header and its errors.
//!
//! The `traceparent` side (the 25-byte context, parsing and formatting, ids, the
//! trace-id-ratio sampler) is `plugin_abi::trace_context`, the one implementation the host,
//! this plugin and every instrumented plugin share, re-exported here so the rest of the
//! plugin keeps its paths. `tracestate` is read only here, so it stays here. Parsing never
//! panics on bad input.

use std::fmt;

pub use plugin_abi::trace_context::{
    new_span_id, new_trace_id, parse_span_id, parse_trace_id, to_hex, Sampler, TraceContext,
    TraceContextError, FLAG_SAMPLED, TRACEPARENT_LEN,
};

/// Most list-members a `tracestate` may carry.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;

/// Why a `tracestate` was rejected (a `traceparent` or hex id is rejected
/// with [`TraceContextError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
