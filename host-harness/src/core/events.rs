//! The event bus seen from plugins and the host: subscribing, publishing
//! (with a producer span and reserved-topic checks), the host's own
//! `internal.*` events, and delivering an event to one subscriber.

use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::RString;
use plugin_abi::{CallStatus, ErrorKind, Event, ObservationKind, PluginError, PluginState};
use serde_json::{json, Value};

use super::{HostCore, HOST_CALLER};
use crate::bus::{BusEvent, Delivery, PublishOutcome};
use crate::logger;
use crate::observer::Report;
use crate::plugins::invoke::{admit_inline, run_admitted};
use crate::plugins::PluginInstance;
use crate::tracecontext::{self, SpanContext};

fn status_of<T>(r: &Result<T, PluginError>) -> CallStatus {
    match r {
        Ok(_) => CallStatus::Ok,
        Err(e) if e.kind == ErrorKind::Timeout => CallStatus::Timeout,
        Err(_) => CallStatus::Error,
    }
}

impl HostCore {
    /// Subscribes a plugin instance to a pattern.
    pub fn subscribe(
        self: &Arc<Self>,
        instance_id: u64,
        pattern: &str,
    ) -> Result<u64, PluginError> {
        let instance = self.live_instance(instance_id)?;
        let core = Arc::downgrade(self);
        let inst = instance.clone();
        self.bus
            .subscribe(instance_id, &instance.name, pattern, move || {
                Arc::new(move |d: Delivery| {
                    if let Some(core) = core.upgrade() {
                        core.deliver_event(&inst, d);
                    }
                })
            })
            .map_err(|e| PluginError::bad_request(e.to_string()))
    }

    /// Removes a subscription.
    pub fn unsubscribe(&self, instance_id: u64, id: u64) -> Result<(), PluginError> {
        self.bus
            .unsubscribe(instance_id, id)
            .map_err(|e| PluginError::not_found(e.to_string()))
    }

    fn deliver_event(&self, instance: &Arc<PluginInstance>, d: Delivery) {
        if self.plugins.live(instance.id).is_none() {
            return;
        }
        // While the circuit is open the event is not delivered (counted as
        // refused by the breaker); a half-open circuit may take it as trial.
        let Ok(admission) = admit_inline(instance) else {
            return;
        };
        let ev = &d.event;
        // The consumer span: a child of the publish (producer) span.
        let span = ev.trace_context.map(|p| p.child());
        let event = Event {
            topic: RString::from(ev.topic.as_str()),
            payload: RString::from(ev.payload.as_str()),
            source: RString::from(ev.source.as_str()),
            subscription_id: d.subscription_id,
            published_at_ms: ev.published_at_ms,
            trace_context: span.into(),
        };
        let result = {
            let _current = tracecontext::enter(span);
            let limit = self.config.callback_timeout();
            let _guard = self
                .inflight
                .enter(instance, "on_event", &ev.topic, limit, None);
            run_admitted(instance, admission, limit, |inst| {
                inst.plugin.on_event(&event)
            })
        };
        if self.observers.is_active() {
            let mut r = Report::timed(
                ObservationKind::EventDelivered,
                status_of(&result),
                Arc::from(ev.topic.as_str()),
                instance.name.clone(),
                d.enqueued,
            )
            .with_span(span, ev.trace_context.as_ref());
            if let Err(e) = &result {
                r.set_message(Some(e.message.to_string()));
            }
            self.observers.report(r);
        }
        if let Err(e) = result {
            let msg = format!("event handler for {} failed: {e}", ev.topic);
            logger::warn(
                "bus",
                "event handler failed",
                json!({"plugin": &*instance.name, "topic": ev.topic, "error": e.to_string()}),
            );
            self.report_plugin_error(
                "event_handler",
                &instance.name,
                &msg,
                e.panic.as_ref().into_option(),
            );
            if e.kind == ErrorKind::Panicked && instance.set_state(PluginState::Error, Some(msg)) {
                self.plugin_state_changed(instance, "error");
            }
        }
    }

    /// Publishes an event. Never blocks on subscribers. The publish span is
    /// a child of `trace` when given, else of the
    /// thread's current context; a plugin publishing outside any span starts
    /// a new trace, the host's own `internal.*` events outside a span are
    /// not traced.
    pub fn publish(
        &self,
        source: &Arc<str>,
        topic: &str,
        payload: &str,
        trace: Option<SpanContext>,
    ) -> Result<PublishOutcome, PluginError> {
        let parent = tracecontext::parent_of(trace);
        self.publish_traced(source, topic, payload, parent)
    }

    /// [`HostCore::publish`] with the parent span already resolved. A
    /// reserved topic (`internal.*`, `[host.access] topic_owners`) is
    /// refused unless `source` is its owner.
    pub fn publish_traced(
        &self,
        source: &Arc<str>,
        topic: &str,
        payload: &str,
        parent: Option<SpanContext>,
    ) -> Result<PublishOutcome, PluginError> {
        if let Some(owner) =
            crate::access::topic_owner(topic, &self.config.host.access.topic_owners)
        {
            if &**source != owner {
                return Err(PluginError::bad_request(format!(
                    "topic {topic:?} is reserved: only {owner} may publish it (internal.* belongs to the host; see [host.access] topic_owners)"
                )));
            }
        }
        let span = match &parent {
            Some(p) => Some(p.child()),
            None if Arc::ptr_eq(source, &HOST_CALLER) => None,
            None => Some(SpanContext::new_root(&self.sampler)),
        };
        let started = Instant::now();
        let event = BusEvent {
            topic: topic.to_owned(),
            payload: if payload.trim().is_empty() {
                "null".to_owned()
            } else {
                payload.to_owned()
            },
            source: source.to_string(),
            published_at_ms: crate::time::now_unix_ms(),
            trace_context: span,
        };
        let observing = self.observers.is_active();
        let outcome = self
            .bus
            .publish(event, |dropped| {
                if observing {
                    let r = Report::new(
                        ObservationKind::EventDropped,
                        CallStatus::Error,
                        Arc::from(topic),
                        dropped.owner_name.clone(),
                    );
                    self.observers.report(r);
                }
            })
            .map_err(|e| PluginError::bad_request(e.to_string()))?;
        if observing {
            let r = Report::timed(
                ObservationKind::EventPublished,
                CallStatus::Ok,
                Arc::from(topic),
                source.clone(),
                started,
            )
            .with_span(span, parent.as_ref());
            self.observers.report(r);
        }
        Ok(outcome)
    }

    /// Publishes a host event (`internal.*`); failures are logged.
    pub fn publish_internal(&self, topic: &str, payload: Value) {
        if let Err(e) = self.publish(&HOST_CALLER, topic, &payload.to_string(), None) {
            logger::warn(
                "bus",
                "cannot publish internal event",
                json!({"topic": topic, "error": e.to_string()}),
            );
        }
    }
}
