//! Trace context on the host side: the span contexts the host creates for
//! every HTTP request, service call, event publish and delivery, storage
//! operation and plugin life-cycle step, and the "current" context of the
//! thread running a plugin callback.
//!
//! The context itself, `traceparent` parsing and formatting, ids and the
//! sampler are `plugin_abi::trace_context`, the one implementation host and
//! plugins share (the host calls the context [`SpanContext`]); only the
//! thread's current context is host-only and lives here.
//!
//! Cost model (docs/ARCHITECTURE.md, section "Costs"): a [`SpanContext`]
//! is a 25-byte `Copy` value. Creating a child is one id draw from a
//! per-thread wyrand generator (a multiply); setting the thread's current
//! context is one thread-local write. Formatting a header writes into a
//! caller's stack buffer, so the hot path never allocates for tracing.

use std::cell::Cell;

pub use plugin_abi::trace_context::{Sampler, TRACEPARENT_LEN};
/// One span's identity: trace id, span id, trace flags (plugin-abi's
/// `#[repr(C)]` [`plugin_abi::TraceContext`]).
pub use plugin_abi::TraceContext as SpanContext;

thread_local! {
    static CURRENT: Cell<Option<SpanContext>> = const { Cell::new(None) };
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

/// The parent a host operation should hang from: the explicit context a
/// plugin passed, else the thread's current context.
#[inline]
pub fn parent_of(explicit: Option<SpanContext>) -> Option<SpanContext> {
    explicit.or_else(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

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
                let explicit = SpanContext::parse(VALID).unwrap();
                assert_eq!(parent_of(Some(explicit)), Some(explicit));
            }
            assert_eq!(current(), Some(a));
        }
        assert_eq!(current(), None);
    }
}
