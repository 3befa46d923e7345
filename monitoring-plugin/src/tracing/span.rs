//! The finished-span record every part of the trace module exchanges.
//!
//! The host reports finished operations, the monitoring plugin turns each into a
//! [`SpanRecord`], and the store, the manual-span registry and the exporter all speak this one
//! type. It carries an approximate heap size so the store can bound its memory in bytes.

use std::mem::size_of;
use std::sync::Arc;

/// What role a span plays, as in OpenTelemetry: the one enum that crosses the
/// ABI in the telemetry API (`plugin_abi::telemetry::SpanKind`).
pub use plugin_abi::telemetry::SpanKind;

/// Serializes a [`SpanKind`] by its lowercase name (`internal`, `server`, …),
/// the form the tracing API answers with.
pub fn serialize_kind<S: serde::Serializer>(kind: &SpanKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

/// How a span ended.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum SpanStatus {
    /// No status was set.
    #[default]
    Unset,
    /// The operation succeeded.
    Ok,
    /// The operation failed.
    Error {
        /// Human-readable reason.
        message: String,
    },
}

impl SpanStatus {
    /// An error status with the given message.
    pub fn error(message: impl Into<String>) -> Self {
        SpanStatus::Error {
            message: message.into(),
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, SpanStatus::Error { .. })
    }
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// A float.
    F64(f64),
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::String(v.to_string())
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::String(v)
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::I64(v)
    }
}
impl From<f64> for AttrValue {
    fn from(v: f64) -> Self {
        AttrValue::F64(v)
    }
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// Trace the span belongs to.
    pub trace_id: [u8; 16],
    /// The span's own id.
    pub span_id: [u8; 8],
    /// Parent span, `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// Operation name (shared: a telemetry provider's spans reuse the
    /// name of the thread's recent spans instead of copying it per span).
    pub name: Arc<str>,
    /// Role of the span.
    pub kind: SpanKind,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// End time, nanoseconds since the Unix epoch.
    pub end_unix_ns: u64,
    /// Final status.
    pub status: SpanStatus,
    /// Key/value attributes, in insertion order (keys shared like
    /// [`name`](Self::name)).
    pub attributes: Vec<(Arc<str>, AttrValue)>,
    /// The plugin the span belongs to: shared, because every span of one
    /// plugin names the same plugin (the telemetry provider's spans clone
    /// the scope's name instead of copying it per span).
    pub plugin: Arc<str>,
    /// The service called, when the span is a service call.
    pub service_name: Option<String>,
    /// Whether the span was closed by the sweeper because it was never ended.
    pub timed_out: bool,
}

impl SpanRecord {
    /// A span with the given ids, name and times; everything else default/empty.
    pub fn new(
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent_span_id: Option<[u8; 8]>,
        name: impl Into<Arc<str>>,
        start_unix_ns: u64,
        end_unix_ns: u64,
    ) -> Self {
        Self {
            trace_id,
            span_id,
            parent_span_id,
            name: name.into(),
            kind: SpanKind::Internal,
            start_unix_ns,
            end_unix_ns,
            status: SpanStatus::Unset,
            attributes: Vec::new(),
            plugin: Arc::default(),
            service_name: None,
            timed_out: false,
        }
    }

    /// Duration in nanoseconds (0 when the end precedes the start).
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns)
    }

    /// Approximate memory held by this record: the struct itself plus the bytes of its
    /// strings and attribute entries (lengths, not capacities, so the figure is
    /// deterministic). Used by the store for its byte bound.
    pub fn approx_size(&self) -> usize {
        let strings = self.name.len()
            + self.plugin.len()
            + self.service_name.as_ref().map_or(0, String::len)
            + match &self.status {
                SpanStatus::Error { message } => message.len(),
                _ => 0,
            };
        let attrs: usize = self
            .attributes
            .iter()
            .map(|(k, v)| {
                size_of::<(Arc<str>, AttrValue)>()
                    + k.len()
                    + match v {
                        AttrValue::String(s) => s.len(),
                        _ => 0,
                    }
            })
            .sum();
        size_of::<Self>() + strings + attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approx_size_counts_strings_and_attributes() {
        let mut s = SpanRecord::new([1; 16], [2; 8], None, "abc", 10, 5);
        let base = size_of::<SpanRecord>();
        assert_eq!(s.approx_size(), base + 3);
        assert_eq!(s.duration_ns(), 0, "end before start saturates");
        s.plugin = "pl".into();
        s.service_name = Some("svc".into());
        s.status = SpanStatus::error("boom");
        s.attributes.push(("key".into(), "value".into()));
        s.attributes.push(("n".into(), AttrValue::I64(1)));
        let entry = size_of::<(Arc<str>, AttrValue)>();
        assert_eq!(
            s.approx_size(),
            base + 3 + 2 + 3 + 4 + entry + 3 + 5 + entry + 1
        );
    }
}
