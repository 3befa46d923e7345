//! Span objects handed to other plugins: a sampled span collects its
//! attributes and status and, when it ends, becomes a [`SpanRecord`] in the
//! same sink (trace store, OTLP export) as the spans this plugin makes from
//! the host's observations. An unsampled span only carries its context, so
//! propagation works and nothing is recorded.

use std::cell::RefCell;
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RStr;
use plugin_abi::telemetry::{AttrValue, SpanApi, SpanApi_TO, SpanBox, SpanKind, SpanStatus};
use plugin_abi::TraceContext;

use super::Shared;
use crate::time::now_ns;
use crate::tracing::{self, SpanRecord};

/// Most attributes one span keeps (later new keys are dropped).
pub(super) const MAX_ATTRIBUTES: usize = 64;

/// Starts a span of `plugin`: a child of `parent` or a new root sampled by
/// the provider's sampler; recorded only when sampled and the provider is
/// open. The record is built here and filled in place, so ending the span
/// moves it to the sink without copying its parts.
pub(super) fn start(
    shared: &Arc<Shared>,
    plugin: &Arc<str>,
    name: &str,
    kind: SpanKind,
    parent: Option<TraceContext>,
) -> SpanBox {
    let context = TraceContext::child_or_root(parent.as_ref(), &shared.sampler);
    if !context.sampled() || shared.is_closed() {
        return SpanApi_TO::from_value(Unrecorded(context), TD_Opaque);
    }
    let record = SpanRecord {
        trace_id: context.trace_id,
        span_id: context.span_id,
        parent_span_id: parent.map(|p| p.span_id),
        name: shared_name(name),
        kind,
        start_unix_ns: now_ns(),
        end_unix_ns: 0,
        status: tracing::SpanStatus::Unset,
        attributes: Vec::new(),
        plugin: plugin.clone(),
        service_name: None,
        timed_out: false,
    };
    SpanApi_TO::from_value(
        Recording {
            shared: shared.clone(),
            context,
            record: Some(record),
        },
        TD_Opaque,
    )
}

/// Recent span names kept per thread, at most.
const NAME_CACHE_SLOTS: usize = 8;

/// Longest name the per-thread cache keeps (longer ones are copied).
const NAME_CACHE_MAX_LEN: usize = 128;

/// The names of the thread's recent spans: a plugin starts the same few
/// operations over and over, so a span takes a shared copy of a name it
/// finds here (one reference count) instead of copying the name.
struct NameCache {
    slots: [Option<Arc<str>>; NAME_CACHE_SLOTS],
    next: usize,
}

thread_local! {
    static NAMES: RefCell<NameCache> = const {
        RefCell::new(NameCache {
            slots: [const { None }; NAME_CACHE_SLOTS],
            next: 0,
        })
    };
}

/// `name` as a shared string, from the thread's cache when it was seen
/// recently (see [`NameCache`]).
fn shared_name(name: &str) -> Arc<str> {
    if name.len() > NAME_CACHE_MAX_LEN {
        return name.into();
    }
    NAMES
        .try_with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(hit) = cache.slots.iter().flatten().find(|n| ***n == *name) {
                return hit.clone();
            }
            let fresh: Arc<str> = name.into();
            let slot = cache.next;
            cache.slots[slot] = Some(fresh.clone());
            cache.next = (slot + 1) % NAME_CACHE_SLOTS;
            fresh
        })
        .unwrap_or_else(|_| name.into())
}

/// A span nobody records (not sampled, or the provider was closed).
struct Unrecorded(TraceContext);

impl SpanApi for Unrecorded {
    fn context(&self) -> TraceContext {
        self.0
    }
    fn set_attribute(&mut self, _key: RStr<'_>, _value: AttrValue<'_>) {}
    fn set_status(&mut self, _status: SpanStatus, _message: RStr<'_>) {}
    fn end(&mut self) {}
}

/// A sampled span being recorded (`record` is `None` once it ended).
struct Recording {
    shared: Arc<Shared>,
    context: TraceContext,
    record: Option<SpanRecord>,
}

fn value_of(value: AttrValue<'_>) -> tracing::AttrValue {
    match value {
        AttrValue::Str(s) => tracing::AttrValue::String(s.as_str().to_owned()),
        AttrValue::I64(v) => tracing::AttrValue::I64(v),
        AttrValue::F64(v) => tracing::AttrValue::F64(v),
        AttrValue::Bool(v) => tracing::AttrValue::Bool(v),
    }
}

impl SpanApi for Recording {
    fn context(&self) -> TraceContext {
        self.context
    }

    fn set_attribute(&mut self, key: RStr<'_>, value: AttrValue<'_>) {
        let Some(record) = &mut self.record else {
            return;
        };
        let value = value_of(value);
        let attributes = &mut record.attributes;
        if let Some(slot) = attributes.iter_mut().find(|(k, _)| **k == *key.as_str()) {
            slot.1 = value;
        } else if attributes.len() < MAX_ATTRIBUTES {
            attributes.push((shared_name(key.as_str()), value));
        }
    }

    fn set_status(&mut self, status: SpanStatus, message: RStr<'_>) {
        let Some(record) = &mut self.record else {
            return;
        };
        record.status = match status {
            SpanStatus::Unset => tracing::SpanStatus::Unset,
            SpanStatus::Ok => tracing::SpanStatus::Ok,
            SpanStatus::Error => tracing::SpanStatus::error(message.as_str()),
        };
    }

    fn end(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        if self.shared.is_closed() {
            return;
        }
        record.end_unix_ns = now_ns();
        self.shared.spans.submit(record);
    }
}
