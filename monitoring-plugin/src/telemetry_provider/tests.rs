//! The provider against the plugin's real stores: a metric store, a trace
//! store and an issue store, reached through the `plugin_abi::telemetry`
//! API (a slot, handles) the way another plugin reaches them.

use std::sync::Arc;

use abi_stable::std_types::{RArc, ROption, RSlice, RStr};
use plugin_abi::telemetry::{
    InstrumentDesc, InstrumentOpts, SpanKind, SpanStatus, Tag, Telemetry, TelemetryProvider,
    TelemetrySlot,
};
use plugin_abi::{Sampler, TraceContext};

use super::Provider;
use crate::error_tracking::{IssueQuery, IssueStore, IssueStoreConfig, Level, MemoryKvStore};
use crate::metrics::MetricStore;
use crate::tracing::{self, StoreConfig, TraceStore};

struct Stores {
    metrics: Arc<MetricStore>,
    traces: Arc<TraceStore>,
    issues: Arc<IssueStore>,
    provider: Provider,
}

fn stores(sampler: Sampler) -> Stores {
    let metrics = Arc::new(MetricStore::new());
    let traces = Arc::new(TraceStore::new(StoreConfig::default()));
    let issues = Arc::new(
        IssueStore::open(Arc::new(MemoryKvStore::new()), IssueStoreConfig::default()).unwrap(),
    );
    let sink = issues.clone();
    let provider = Provider::new(
        metrics.clone(),
        traces.clone(),
        Arc::new(move |event| {
            sink.record(event);
        }),
        sampler,
    );
    Stores {
        metrics,
        traces,
        issues,
        provider,
    }
}

/// A slot holding the provider scoped to plugin `demo`, as the host's slot
/// would after `install_telemetry_provider`, and telemetry on it.
fn installed(s: &Stores) -> (RArc<TelemetrySlot>, Telemetry) {
    let slot = RArc::new(TelemetrySlot::new());
    slot.install(s.provider.boxed());
    let telemetry = Telemetry::new(slot.clone());
    (slot, telemetry)
}

/// The error of a refused creation (instrument objects have no `Debug`).
fn refusal<T>(
    r: abi_stable::std_types::RResult<T, plugin_abi::PluginError>,
) -> plugin_abi::PluginError {
    match r.into_result() {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e,
    }
}

fn desc<'a>(name: &'a str, names: &'a [RStr<'a>], values: &'a [RStr<'a>]) -> InstrumentDesc<'a> {
    InstrumentDesc {
        name: RStr::from_str(name),
        help: RStr::from_str("Help text."),
        unit: RStr::from_str(""),
        label_names: RSlice::from_slice(names),
        label_values: RSlice::from_slice(values),
    }
}

#[test]
fn a_series_is_created_once_per_descriptor_and_handles_share_it() {
    let s = stores(Sampler::always_on());
    let (_slot, telemetry) = installed(&s);
    let opts = InstrumentOpts::new("greetings_total", "Greetings sent.").label("lang", "en");
    let a = telemetry.counter(opts.clone()).unwrap();
    let b = telemetry.counter(opts).unwrap();
    a.inc();
    b.inc();
    b.add(3.0);
    a.add(-1.0); // ignored: a counter only goes up
    assert_eq!(s.metrics.series_count(), 1);
    let text = s.metrics.encode_to_string();
    assert!(text.contains("greetings_total{lang=\"en\"} 5\n"), "{text}");
    assert!(
        text.contains("# HELP greetings_total Greetings sent.\n"),
        "{text}"
    );
}

#[test]
fn a_scoped_provider_adds_the_plugin_label_and_refuses_one_given() {
    let s = stores(Sampler::always_on());
    let scoped = s.provider.scoped(RStr::from_str("demo"));
    let names = [RStr::from_str("room")];
    let values = [RStr::from_str("kitchen")];
    let gauge = scoped
        .gauge(desc("temperature_celsius", &names, &values))
        .unwrap();
    gauge.set(21.5);
    let text = s.metrics.encode_to_string();
    assert!(
        text.contains("temperature_celsius{plugin=\"demo\",room=\"kitchen\"} 21.5\n"),
        "{text}"
    );

    let names = [RStr::from_str("plugin")];
    let values = [RStr::from_str("other")];
    let err = refusal(scoped.counter(desc("forged_total", &names, &values)));
    assert!(
        err.message.contains("label \"plugin\" is reserved"),
        "{err}"
    );
}

#[test]
fn refused_names_are_errors_with_a_reason_and_the_handle_is_a_no_op() {
    let s = stores(Sampler::always_on());
    let none: [RStr<'_>; 0] = [];
    for (name, why) in [
        ("homeconsole_fake_total", "reserved"),
        ("no_suffix", "must end in \"_total\""),
        ("fooBar_total", "invalid"),
    ] {
        let err = refusal(s.provider.counter(desc(name, &none, &none)));
        assert!(err.message.contains(why), "{name}: {err}");
        assert!(err.message.contains(name), "{name}: {err}");
    }
    // A counter name used for a gauge: the store's kind conflict.
    s.provider
        .counter(desc("jobs_total", &none, &none))
        .unwrap();
    let err = refusal(s.provider.gauge(desc("jobs_total", &none, &none)));
    assert!(err.message.contains("kind_conflict"), "{err}");

    let (_slot, telemetry) = installed(&s);
    let refused = telemetry
        .counter(InstrumentOpts::new("homeconsole_mine_total", "Not mine."))
        .unwrap();
    refused.inc();
    assert!(!refused.is_live(), "a refused handle binds to nothing");
    let why = refused.refusal().expect("the provider's refusal is kept");
    assert!(why.message.contains("is reserved"), "{why}");
    assert!(!s.metrics.has_family("homeconsole_mine_total"));
}

#[test]
fn units_and_chosen_buckets_reach_the_exposition() {
    let s = stores(Sampler::always_on());
    let (_slot, telemetry) = installed(&s);
    let h = telemetry
        .histogram(
            InstrumentOpts::new("job_duration_seconds", "Job time.").unit("seconds"),
            &[0.1, 0.5],
        )
        .unwrap();
    h.observe(0.2);
    h.observe(2.0);
    let text = s.metrics.encode_to_string();
    assert!(
        text.contains("# UNIT job_duration_seconds seconds\n"),
        "{text}"
    );
    assert!(
        text.contains("job_duration_seconds_bucket{le=\"0.1\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("job_duration_seconds_bucket{le=\"0.5\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("job_duration_seconds_bucket{le=\"+Inf\"} 2\n"),
        "{text}"
    );
    let om = crate::metrics::to_openmetrics(&text);
    assert!(om.contains("# UNIT job_duration_seconds seconds\n"), "{om}");

    let err = refusal(s.provider.gauge(InstrumentDesc {
        unit: RStr::from_str("bytes"),
        ..desc("queue_length", &[], &[])
    }));
    assert!(err.message.contains("must end in \"_bytes\""), "{err}");
}

#[test]
fn close_makes_every_instrument_and_span_a_no_op() {
    let s = stores(Sampler::always_on());
    let (_slot, telemetry) = installed(&s);
    let c = telemetry
        .counter(InstrumentOpts::new("ticks_total", "Ticks."))
        .unwrap();
    let g = telemetry
        .gauge(InstrumentOpts::new("level", "Level."))
        .unwrap();
    let h = telemetry
        .histogram(InstrumentOpts::new("wait_seconds", "Wait."), &[])
        .unwrap();
    c.inc();
    let open_span = telemetry.span("before.close", SpanKind::Internal, None);
    s.provider.close();
    c.inc();
    g.set(3.0);
    h.observe(1.0);
    drop(open_span); // ends after close: not recorded
    drop(telemetry.span("after.close", SpanKind::Internal, None));
    telemetry.capture_error("after close", &[], None);
    let text = s.metrics.encode_to_string();
    assert!(text.contains("ticks_total 1\n"), "{text}");
    assert!(text.contains("level 0\n"), "{text}");
    assert!(text.contains("wait_seconds_count 0\n"), "{text}");
    assert!(s.traces.is_empty());
    assert!(s.issues.is_empty());
    let none: [RStr<'_>; 0] = [];
    assert!(s.provider.counter(desc("new_total", &none, &none)).is_err());
}

#[test]
fn spans_reach_the_trace_store_with_attributes_status_kind_and_plugin() {
    let s = stores(Sampler::always_on());
    let scoped = s.provider.scoped(RStr::from_str("demo"));
    let slot = RArc::new(TelemetrySlot::new());
    slot.install(scoped);
    let telemetry = Telemetry::new(slot);
    let parent = TraceContext::new_root(&Sampler::always_on());
    let mut span = telemetry.span("device.poll", SpanKind::Client, Some(parent));
    span.set_attribute("device", "lamp");
    span.set_attribute("attempt", 1i64);
    span.set_attribute("attempt", 2i64);
    span.set_status(SpanStatus::Error, "timeout");
    let context = span.context().unwrap();
    assert_eq!(context.trace_id, parent.trace_id);
    span.end();

    let spans = s
        .traces
        .spans(&parent.trace_id)
        .expect("the trace is stored");
    assert_eq!(spans.len(), 1);
    let r = &spans[0];
    assert_eq!(&*r.name, "device.poll");
    assert_eq!(r.span_id, context.span_id);
    assert_eq!(r.parent_span_id, Some(parent.span_id));
    assert_eq!(r.kind, tracing::SpanKind::Client);
    assert_eq!(r.status, tracing::SpanStatus::error("timeout"));
    assert_eq!(&*r.plugin, "demo");
    assert_eq!(
        r.attributes,
        vec![
            ("device".into(), tracing::AttrValue::from("lamp")),
            ("attempt".into(), tracing::AttrValue::I64(2)),
        ]
    );
    assert!(r.end_unix_ns >= r.start_unix_ns);
}

#[test]
fn an_unsampled_root_is_not_recorded_but_still_has_a_context() {
    let s = stores(Sampler::always_off());
    let span = s
        .provider
        .start_span(RStr::from_str("quiet"), SpanKind::Internal, ROption::RNone);
    let context = span.context();
    assert!(!context.sampled());
    drop(span);
    assert!(s.traces.is_empty());
}

#[test]
fn captured_errors_reach_the_issue_store_with_tags_level_and_trace() {
    let s = stores(Sampler::always_on());
    let scoped = s.provider.scoped(RStr::from_str("demo"));
    let trace = TraceContext::new_root(&Sampler::always_on());
    let tags = [Tag::new("device", "lamp"), Tag::new("level", "warning")];
    scoped.capture_error(
        RStr::from_str("lamp unreachable"),
        RSlice::from_slice(&tags),
        ROption::RSome(trace),
    );
    scoped.capture_error(
        RStr::from_str("lamp unreachable"),
        RSlice::from_slice(&tags),
        ROption::RNone,
    );
    let page = s.issues.list(&IssueQuery::default());
    assert_eq!(page.total, 1, "grouped into one issue: {page:?}");
    let issue = &page.issues[0];
    assert_eq!(issue.count, 2);
    assert_eq!(issue.level, Level::Warning);
    assert!(issue.plugins.contains("demo"));
    assert!(issue.title.contains("lamp unreachable"), "{}", issue.title);
    let detail = s.issues.get(&issue.id).unwrap().unwrap();
    let sample = serde_json::to_value(&detail).unwrap().to_string();
    assert!(sample.contains("\"device\":\"lamp\""), "{sample}");
    assert!(sample.contains(&trace.trace_id_hex()), "{sample}");
}

#[test]
fn spans_of_one_scope_share_the_plugin_name_and_repeated_names_and_keys() {
    let s = stores(Sampler::always_on());
    let slot = RArc::new(TelemetrySlot::new());
    slot.install(s.provider.scoped(RStr::from_str("demo")));
    let telemetry = Telemetry::new(slot);
    let parent = TraceContext::new_root(&Sampler::always_on());
    let long = "n".repeat(200);
    for name in ["poll", "poll", "other", &long, &long] {
        let mut span = telemetry.span(name, SpanKind::Internal, Some(parent));
        span.set_attribute("device", 1i64);
    }
    let spans = s.traces.spans(&parent.trace_id).expect("stored");
    let names: Vec<&str> = spans.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["poll", "poll", "other", &long, &long]);
    assert!(spans.iter().all(|r| &*r.plugin == "demo"));
    assert!(
        Arc::ptr_eq(&spans[0].plugin, &spans[2].plugin),
        "one plugin name per scope"
    );
    assert!(
        Arc::ptr_eq(&spans[0].name, &spans[1].name),
        "a repeated name is shared"
    );
    assert!(
        !Arc::ptr_eq(&spans[3].name, &spans[4].name),
        "long names are copied"
    );
}
