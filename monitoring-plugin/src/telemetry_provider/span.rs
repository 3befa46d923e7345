//! Span objects handed to other plugins: a sampled span collects its
//! attributes and status and, when it ends, becomes a [`SpanRecord`] in the
//! same sink (trace store, OTLP export) as the spans this plugin makes from
//! the host's observations. An unsampled span only carries its context, so
//! propagation works and nothing is recorded.

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RStr;
use plugin_abi::telemetry::{AttrValue, SpanApi, SpanApi_TO, SpanBox, SpanKind, SpanStatus};
use plugin_abi::TraceContext;

use super::{Shared, UNKNOWN_PLUGIN};
use crate::time::now_ns;
use crate::tracing::{self, SpanRecord};

/// Most attributes one span keeps (later new keys are dropped).
pub(super) const MAX_ATTRIBUTES: usize = 64;

/// Starts a span: a child of `parent` or a new root sampled by the
/// provider's sampler; recorded only when sampled and the provider is open.
pub(super) fn start(
    shared: &Arc<Shared>,
    plugin: Option<&Arc<str>>,
    name: &str,
    kind: SpanKind,
    parent: Option<TraceContext>,
) -> SpanBox {
    let context = TraceContext::child_or_root(parent.as_ref(), &shared.sampler);
    if !context.sampled() || shared.is_closed() {
        return SpanApi_TO::from_value(Unrecorded(context), TD_Opaque);
    }
    SpanApi_TO::from_value(
        Recording {
            shared: shared.clone(),
            plugin: plugin.cloned(),
            context,
            parent: parent.map(|p| p.span_id),
            name: name.to_owned(),
            kind,
            start_ns: now_ns(),
            attributes: Vec::new(),
            status: tracing::SpanStatus::Unset,
            ended: false,
        },
        TD_Opaque,
    )
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

/// A sampled span being recorded.
struct Recording {
    shared: Arc<Shared>,
    plugin: Option<Arc<str>>,
    context: TraceContext,
    parent: Option<[u8; 8]>,
    name: String,
    kind: SpanKind,
    start_ns: u64,
    attributes: Vec<(String, tracing::AttrValue)>,
    status: tracing::SpanStatus,
    ended: bool,
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
        let value = value_of(value);
        if let Some(slot) = self.attributes.iter_mut().find(|(k, _)| k == key.as_str()) {
            slot.1 = value;
        } else if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push((key.as_str().to_owned(), value));
        }
    }

    fn set_status(&mut self, status: SpanStatus, message: RStr<'_>) {
        self.status = match status {
            SpanStatus::Unset => tracing::SpanStatus::Unset,
            SpanStatus::Ok => tracing::SpanStatus::Ok,
            SpanStatus::Error => tracing::SpanStatus::error(message.as_str()),
        };
    }

    fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) || self.shared.is_closed() {
            return;
        }
        let mut record = SpanRecord::new(
            self.context.trace_id,
            self.context.span_id,
            self.parent,
            std::mem::take(&mut self.name),
            self.start_ns,
            now_ns(),
        );
        record.kind = self.kind;
        record.status = std::mem::take(&mut self.status);
        record.attributes = std::mem::take(&mut self.attributes);
        record.plugin = self.plugin.as_deref().unwrap_or(UNKNOWN_PLUGIN).to_owned();
        self.shared.spans.submit(record);
    }
}
