//! Distributed tracing for the monitoring plugin: W3C context, span records, the in-memory
//! trace store, manual spans and the OTLP/HTTP exporter.
//!
//! Data flow: the host reports every finished operation (with its W3C trace context) to the
//! monitoring plugin, which turns it into a [`SpanRecord`]; plugins may also open and close
//! [`manual`] spans. Finished spans go to a [`SpanSink`]: the [`store::TraceStore`] keeps
//! recent traces browsable with zero setup, and, when an endpoint is configured, the
//! [`export::OtlpExporter`] ships them to any OTLP collector without ever blocking the caller.
//!
//! [`capability`] alone touches the host (routes, services, span intake); the rest is
//! host-free and refers to its siblings only through `super::` (and to
//! [`crate::time`] and [`crate::outbound`]). The plugin does not depend on the `tracing`
//! crate, so this module's name shadows nothing.

pub mod capability;
pub mod context;
pub mod export;
pub mod handoff;
pub mod manual;
pub mod span;
pub mod store;

use std::sync::Arc;

pub use context::{Sampler, TraceContext, TraceState};
pub use export::{ExportConfig, ExportOutcome, ExporterStats, OtlpExporter};
pub use handoff::{SpanHandoff, HANDOFF_CAPACITY};
pub use manual::{ManualConfig, ManualSpanError, ManualSpans};
pub use span::{AttrValue, SpanKind, SpanRecord, SpanStatus};
pub use store::{StoreConfig, TraceFilter, TraceStore};

/// Somewhere finished spans go. Must not block: it is called on the caller's thread.
pub trait SpanSink: Send + Sync {
    /// Takes one finished span.
    fn submit(&self, span: SpanRecord);
}

impl SpanSink for TraceStore {
    fn submit(&self, span: SpanRecord) {
        self.add(span);
    }
}

impl SpanSink for OtlpExporter {
    fn submit(&self, span: SpanRecord) {
        self.export(span);
    }
}

impl<T: SpanSink + ?Sized> SpanSink for Arc<T> {
    fn submit(&self, span: SpanRecord) {
        (**self).submit(span);
    }
}

/// Hands every span to several sinks (e.g. the store and the exporter).
pub struct Fanout(pub Vec<Arc<dyn SpanSink>>);

impl SpanSink for Fanout {
    fn submit(&self, span: SpanRecord) {
        if let Some((last, rest)) = self.0.split_last() {
            for sink in rest {
                sink.submit(span.clone());
            }
            last.submit(span);
        }
    }
}
