//! The span guard plugin authors hold: attributes and status while it
//! lives, ended exactly once when dropped (or by [`Span::end`]).

use abi_stable::std_types::RStr;

use super::abi::{AttrValue, SpanBox, SpanStatus};
use crate::trace_context::TraceContext;

/// A started span. Without a provider it records nothing and its
/// [`context`](Span::context) is the parent's, so propagation still works.
#[must_use = "a span ends when this guard is dropped"]
pub struct Span {
    inner: Option<SpanBox>,
    context: Option<TraceContext>,
}

impl Span {
    pub(crate) fn new(inner: Option<SpanBox>, parent: Option<TraceContext>) -> Self {
        let context = match &inner {
            Some(span) => Some(span.context()),
            None => parent,
        };
        Span { inner, context }
    }

    /// The context to hand to children and callees: the span's own when a
    /// provider recorded it, else the parent it was started with.
    pub fn context(&self) -> Option<TraceContext> {
        self.context
    }

    /// Whether a provider records this span.
    pub fn is_recording(&self) -> bool {
        self.inner.is_some()
    }

    /// Sets one attribute.
    pub fn set_attribute<'a>(&mut self, key: &str, value: impl Into<AttrValue<'a>>) {
        if let Some(span) = &mut self.inner {
            span.set_attribute(RStr::from_str(key), value.into());
        }
    }

    /// Sets the status (the message matters for `Error`).
    pub fn set_status(&mut self, status: SpanStatus, message: &str) {
        if let Some(span) = &mut self.inner {
            span.set_status(status, RStr::from_str(message));
        }
    }

    /// Ends the span now (dropping the guard does the same).
    pub fn end(self) {}
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(mut span) = self.inner.take() {
            span.end();
        }
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("context", &self.context)
            .field("recording", &self.is_recording())
            .finish()
    }
}
