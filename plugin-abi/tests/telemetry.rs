//! The telemetry API against an in-test provider: no-op without one,
//! values landing in the installed one, rebinding across provider
//! generations (also under concurrent use), spans, errors, health checks
//! and descriptor validation.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use plugin_abi::abi_stable::std_types::RArc;
use plugin_abi::telemetry::{
    InstrumentOpts, SpanKind, SpanStatus, Tag, Telemetry, TelemetryError, TelemetrySlot,
};
use plugin_abi::{HealthReport, HealthStatus, Sampler, TraceContext};
use support::provider::TestProvider;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn slot() -> RArc<TelemetrySlot> {
    RArc::new(TelemetrySlot::new())
}

fn installed() -> (RArc<TelemetrySlot>, TestProvider, Telemetry) {
    let slot = slot();
    let provider = TestProvider::new();
    assert!(slot.install(provider.boxed()).is_none());
    let telemetry = Telemetry::new(slot.clone());
    (slot, provider, telemetry)
}

/// Installs `next` and closes the provider it replaces through the ABI,
/// as the host will.
fn swap(slot: &TelemetrySlot, old: &TestProvider, next: &TestProvider) {
    slot.install(next.boxed())
        .expect("a provider was installed")
        .close();
    assert!(old.state.closed.load(Ordering::Relaxed));
}

#[test]
fn everything_is_a_no_op_without_a_provider() {
    for telemetry in [Telemetry::disabled(), Telemetry::new(slot())] {
        assert!(!telemetry.has_provider());
        let c = telemetry
            .counter(InstrumentOpts::new("c_total", "c"))
            .unwrap();
        c.inc();
        c.add(2.0);
        assert!(!c.is_live());
        let g = telemetry.gauge(InstrumentOpts::new("g", "g")).unwrap();
        g.set(1.0);
        assert!(!g.is_live());
        let h = telemetry
            .histogram(InstrumentOpts::new("h", "h"), &[1.0])
            .unwrap();
        h.observe(0.5);
        assert!(!h.is_live());
        telemetry.capture_error("boom", &[Tag::new("k", "v")], None);
        let parent = TraceContext::parse(PARENT).unwrap();
        let mut span = telemetry.span("op", SpanKind::Internal, Some(parent));
        span.set_attribute("k", 1i64);
        assert!(!span.is_recording());
        assert_eq!(span.context(), Some(parent), "the parent propagates");
        assert_eq!(
            telemetry.span("root", SpanKind::Server, None).context(),
            None
        );
    }
}

#[test]
fn values_land_in_the_provider_with_their_descriptor() {
    let (_slot, provider, telemetry) = installed();
    let c = telemetry
        .counter(
            InstrumentOpts::new("greetings_total", "Greetings sent.")
                .label("lang", "en")
                .label("kind", "short"),
        )
        .unwrap();
    c.inc();
    c.inc();
    c.add(2.5);
    c.add(-7.0); // the provider ignores a negative add
    assert!(c.is_live());
    assert_eq!(provider.counter("greetings_total{en,short}"), 4.5);
    let described = provider.state.described.lock().unwrap()["greetings_total"].clone();
    assert_eq!(described.help, "Greetings sent.");
    assert_eq!(described.label_names, ["lang", "kind"]);

    let g = telemetry
        .gauge(InstrumentOpts::new("queue_depth", "Queued items.").unit("items"))
        .unwrap();
    g.set(10.0);
    g.inc();
    g.dec();
    g.dec();
    g.add(0.5);
    assert_eq!(provider.gauge("queue_depth{}"), Some(9.5));
    assert_eq!(
        provider.state.described.lock().unwrap()["queue_depth"].unit,
        "items"
    );

    let h = telemetry
        .histogram(
            InstrumentOpts::new("latency_seconds", "Latency.").unit("seconds"),
            &[0.1, 1.0],
        )
        .unwrap();
    assert_eq!(h.buckets(), [0.1, 1.0]);
    for v in [0.05, 0.1, 0.5, 3.0, 4.0] {
        h.observe(v);
    }
    let cell = provider.histogram("latency_seconds{}").unwrap();
    let counts: Vec<u64> = cell
        .counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    assert_eq!(cell.bounds, [0.1, 1.0]);
    assert_eq!(counts, [2, 1, 2]);
    assert_eq!(cell.count.load(Ordering::Relaxed), 5);
    assert!((cell.sum.get() - 7.65).abs() < 1e-9);
    // Default buckets when none are asked for.
    let d = telemetry
        .histogram(InstrumentOpts::new("d", "d"), &[])
        .unwrap();
    d.observe(0.2);
    assert_eq!(provider.histogram("d{}").unwrap().bounds.len(), 11);
}

#[test]
fn a_handle_made_before_the_provider_binds_at_its_first_use_after() {
    let slot = slot();
    let telemetry = Telemetry::new(slot.clone());
    let c = telemetry
        .counter(InstrumentOpts::new("early_total", "e"))
        .unwrap();
    c.inc(); // lost: nobody to record it
    let provider = TestProvider::new();
    slot.install(provider.boxed());
    assert_eq!(provider.resolves(), 0, "binding is lazy");
    c.inc();
    c.inc();
    assert_eq!(provider.counter("early_total{}"), 2.0);
    assert_eq!(provider.resolves(), 1, "resolved once, then cached");
    assert!(telemetry.has_provider());
}

#[test]
fn a_swapped_provider_gets_the_next_use_and_the_old_one_nothing_more() {
    let (slot, a, telemetry) = installed();
    let c = telemetry
        .counter(InstrumentOpts::new("swaps_total", "s"))
        .unwrap();
    let h = telemetry
        .histogram(InstrumentOpts::new("h", "h"), &[1.0])
        .unwrap();
    c.inc();
    h.observe(0.5);
    let generation = slot.generation();
    let b = TestProvider::new();
    swap(&slot, &a, &b);
    assert_eq!(slot.generation(), generation + 1);
    c.inc();
    c.inc();
    h.observe(0.5);
    assert_eq!(a.counter("swaps_total{}"), 1.0);
    assert_eq!(b.counter("swaps_total{}"), 2.0);
    assert_eq!(a.histogram("h{}").unwrap().count.load(Ordering::Relaxed), 1);
    assert_eq!(b.histogram("h{}").unwrap().count.load(Ordering::Relaxed), 1);
    assert_eq!((a.resolves(), b.resolves()), (2, 2));
}

#[test]
fn a_removed_provider_makes_handles_no_ops_until_the_next_one() {
    let (slot, a, telemetry) = installed();
    let c = telemetry
        .counter(InstrumentOpts::new("gaps_total", "g"))
        .unwrap();
    c.inc();
    slot.remove().expect("a provider was installed").close();
    assert!(a.state.closed.load(Ordering::Relaxed));
    assert!(!slot.has_provider());
    c.inc();
    assert!(!c.is_live());
    assert!(!telemetry.has_provider());
    let b = TestProvider::new();
    slot.install(b.boxed());
    c.inc();
    assert_eq!(
        (a.counter("gaps_total{}"), b.counter("gaps_total{}")),
        (1.0, 1.0)
    );
}

#[test]
fn a_refused_instrument_is_a_no_op_and_is_not_asked_again_per_use() {
    let (slot, provider, telemetry) = installed();
    let c = telemetry
        .counter(InstrumentOpts::new("refused_total", "r"))
        .unwrap();
    for _ in 0..100 {
        c.inc();
    }
    assert!(!c.is_live());
    assert_eq!(provider.resolves(), 1);
    // A new generation asks again.
    let b = TestProvider::new();
    swap(&slot, &provider, &b);
    c.inc();
    assert_eq!(b.resolves(), 1);
}

/// Polls `cond` (test-support's wait); the bound is a guard against a
/// broken rebind, not a speed requirement.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    test_support::wait_until(what, std::time::Duration::from_secs(60), cond);
}

/// Threads keep incrementing one shared handle while the provider is
/// swapped. Without closing the old provider nothing is lost; with closing,
/// at most one in-flight call per thread is.
fn concurrent_swap(close_old: bool) {
    const THREADS: u64 = 4;
    let (slot, a, telemetry) = installed();
    let c = Arc::new(
        telemetry
            .counter(InstrumentOpts::new("busy_total", "b"))
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (c, stop, done) = (Arc::clone(&c), Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.inc();
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    wait_until("the first provider counts", || {
        a.counter("busy_total{}") >= 1_000.0
    });
    let b = TestProvider::new();
    let old = slot.install(b.boxed()).expect("a provider was installed");
    if close_old {
        old.close();
    }
    wait_until("the new provider counts", || {
        b.counter("busy_total{}") >= 1_000.0
    });
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let total = done.load(Ordering::Relaxed) as f64;
    let landed = a.counter("busy_total{}") + b.counter("busy_total{}");
    if close_old {
        assert!(
            landed <= total && total - landed <= THREADS as f64,
            "{landed} of {total}"
        );
    } else {
        assert_eq!(landed, total);
    }
    assert_eq!(b.resolves(), 1, "one thread rebinds; the others reuse it");
}

#[test]
fn many_threads_lose_nothing_across_a_swap_when_the_old_provider_stays_open() {
    concurrent_swap(false);
}

#[test]
fn many_threads_lose_at_most_the_in_flight_calls_when_the_old_provider_closes() {
    concurrent_swap(true);
}

#[test]
fn spans_record_parent_attributes_and_status_once() {
    let (_slot, provider, telemetry) = installed();
    let parent = TraceContext::parse(PARENT).unwrap();
    let mut span = telemetry.span("greet", SpanKind::Server, Some(parent));
    assert!(span.is_recording());
    let ctx = span.context().unwrap();
    assert_eq!(ctx.trace_id, parent.trace_id);
    assert_ne!(ctx.span_id, parent.span_id);
    span.set_attribute("lang", "en");
    span.set_attribute("count", 3i64);
    span.set_attribute("ratio", 0.5);
    span.set_attribute("cached", true);
    span.set_attribute("count", 4i64);
    span.set_status(SpanStatus::Error, "no greeting");
    drop(span);
    let child = telemetry.span("child", SpanKind::Client, Some(ctx));
    child.end();
    let root = telemetry.span("root", SpanKind::Internal, None);
    let root_ctx = root.context().unwrap();
    drop(root);

    let spans = provider.state.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[0].name, "greet");
    assert_eq!(spans[0].kind, SpanKind::Server);
    assert_eq!(
        (spans[0].kind.as_str(), spans[0].status.as_str()),
        ("server", "error")
    );
    assert_eq!(spans[0].parent, Some(parent));
    assert_eq!(
        spans[0].attributes,
        [
            ("lang".into(), "en".into()),
            ("ratio".into(), "0.5".into()),
            ("cached".into(), "true".into()),
            ("count".into(), "4".into()),
        ]
    );
    assert_eq!(
        (spans[0].status, spans[0].message.as_str()),
        (SpanStatus::Error, "no greeting")
    );
    assert_eq!(spans[1].parent, Some(ctx));
    assert_eq!(spans[2].parent, None);
    assert_eq!(spans[2].context, root_ctx);
    assert!(root_ctx.sampled(), "the provider's sampler is AlwaysOn");
    assert_ne!(root_ctx.trace_id, parent.trace_id);
}

#[test]
fn a_span_started_on_a_closed_provider_is_not_recorded_anywhere() {
    let (slot, a, telemetry) = installed();
    let span = telemetry.span("long", SpanKind::Internal, None);
    let b = TestProvider::new();
    swap(&slot, &a, &b);
    drop(span);
    assert_eq!(a.state.spans_ended.load(Ordering::Relaxed), 0);
    assert_eq!(b.state.spans_ended.load(Ordering::Relaxed), 0);
    drop(telemetry.span("next", SpanKind::Internal, None));
    assert_eq!(b.state.spans_ended.load(Ordering::Relaxed), 1);
}

#[test]
fn errors_land_with_tags_and_trace() {
    let (_slot, provider, telemetry) = installed();
    let ctx = TraceContext::new_root(&Sampler::always_on());
    telemetry.capture_error(
        "disk full",
        &[Tag::new("device", "sda"), Tag::new("op", "write")],
        Some(ctx),
    );
    telemetry.capture_error("plain", &[], None);
    let errors = provider.state.errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].message, "disk full");
    assert_eq!(
        errors[0].tags,
        [
            ("device".into(), "sda".into()),
            ("op".into(), "write".into())
        ]
    );
    assert_eq!(errors[0].context, Some(ctx));
    assert_eq!(
        (errors[1].message.as_str(), errors[1].context),
        ("plain", None)
    );
}

#[test]
fn health_checks_outlive_provider_generations_and_go_with_their_guard() {
    let (slot, a, telemetry) = installed();
    let calls = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&calls);
    let ok = telemetry.register_health_check("disk", move || {
        seen.fetch_add(1, Ordering::Relaxed);
        HealthReport::healthy()
    });
    let bad = telemetry.register_health_check("panicky", || panic!("checking"));
    swap(&slot, &a, &TestProvider::new());
    let reports = slot.run_health_checks();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (reports[0].0.as_str(), reports[0].1.status),
        ("disk", HealthStatus::Healthy)
    );
    assert_eq!(reports[1].0, "panicky");
    assert_eq!(reports[1].1.status, HealthStatus::Unhealthy);
    assert_eq!(reports[1].1.message.as_str(), "health check panicked");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    drop(bad);
    assert_eq!(slot.run_health_checks().len(), 1);
    drop(ok);
    assert!(slot.run_health_checks().is_empty());
    // Without a slot the guard is inert.
    drop(Telemetry::disabled().register_health_check("x", HealthReport::healthy));
}

#[test]
fn bad_descriptors_are_refused_before_any_provider_sees_them() {
    let (_slot, provider, t) = installed();
    let c = |o: InstrumentOpts| t.counter(o).err();
    assert_eq!(
        c(InstrumentOpts::new("9lives", "x")),
        Some(TelemetryError::MetricName("9lives".into()))
    );
    assert_eq!(
        c(InstrumentOpts::new("", "x")),
        Some(TelemetryError::MetricName(String::new()))
    );
    assert_eq!(
        c(InstrumentOpts::new("a-b", "x")),
        Some(TelemetryError::MetricName("a-b".into()))
    );
    assert_eq!(
        c(InstrumentOpts::new("ok", "x").label("__name", "v")),
        Some(TelemetryError::LabelName("__name".into()))
    );
    assert_eq!(
        c(InstrumentOpts::new("ok", "x").label("a:b", "v")),
        Some(TelemetryError::LabelName("a:b".into()))
    );
    assert_eq!(
        c(InstrumentOpts::new("ok", "x")
            .label("l", "1")
            .label("l", "2")),
        Some(TelemetryError::DuplicateLabel("l".into()))
    );
    assert!(c(InstrumentOpts::new("ns:ok_total", "x").label("_l1", "v")).is_none());
    for bad in [
        &[1.0, 1.0][..],
        &[2.0, 1.0],
        &[f64::NAN],
        &[1.0, f64::INFINITY],
    ] {
        assert!(matches!(
            t.histogram(InstrumentOpts::new("h", "h"), bad),
            Err(TelemetryError::Buckets(_))
        ));
    }
    assert!(t.gauge(InstrumentOpts::new("0g", "x")).is_err());
    assert_eq!(
        provider.resolves(),
        1,
        "only the valid counter reached the provider"
    );
    assert!(TelemetryError::LabelName("__x".into())
        .to_string()
        .starts_with("invalid label name \"__x\""));
}

#[test]
fn the_slot_pairs_generation_and_provider() {
    let slot = slot();
    assert_eq!(slot.generation(), 0);
    assert!(slot.current().1.is_none());
    let a = TestProvider::new();
    assert!(slot.install(a.boxed()).is_none());
    let (generation, provider) = slot.current();
    assert_eq!(generation, 1);
    assert!(provider.is_some());
    assert!(slot.install(TestProvider::new().boxed()).is_some());
    assert!(slot.remove().is_some());
    assert!(slot.remove().is_none());
    assert_eq!(slot.generation(), 4);
    assert_eq!(
        format!("{:?}", *slot),
        "TelemetrySlot { generation: 4, has_provider: false }"
    );
    // Clones of one Telemetry share the slot.
    let t = Telemetry::new(slot.clone());
    let t2 = t.clone();
    slot.install(a.boxed());
    assert!(t.has_provider() && t2.has_provider());
}

/// One step of the model test: what the host or the plugin does next.
#[derive(Debug, Clone)]
enum Step {
    Install,
    Remove,
    Inc(u8),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Step::Install),
        Just(Step::Remove),
        (1u8..5).prop_map(Step::Inc)
    ]
}

proptest::proptest! {
    /// Any sequence of installs, removals and increments: each increment
    /// lands in exactly the provider installed at that moment (none when
    /// there is none), whatever happened before.
    #[test]
    fn increments_land_in_the_provider_of_their_moment(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        let slot = slot();
        let telemetry = Telemetry::new(slot.clone());
        let c = telemetry.counter(InstrumentOpts::new("model_total", "m")).unwrap();
        let mut providers: Vec<(TestProvider, f64)> = Vec::new();
        let mut current: Option<usize> = None;
        for s in steps {
            match s {
                Step::Install => {
                    let p = TestProvider::new();
                    if let Some(old) = slot.install(p.boxed()) {
                        old.close();
                    }
                    providers.push((p, 0.0));
                    current = Some(providers.len() - 1);
                }
                Step::Remove => {
                    if let Some(old) = slot.remove() {
                        old.close();
                    }
                    current = None;
                }
                Step::Inc(n) => {
                    for _ in 0..n {
                        c.inc();
                    }
                    if let Some(i) = current {
                        providers[i].1 += f64::from(n);
                    }
                }
            }
            proptest::prop_assert_eq!(c.is_live(), current.is_some());
        }
        for (p, want) in &providers {
            proptest::prop_assert_eq!(p.counter("model_total{}"), *want);
        }
    }
}

#[test]
fn the_shared_types_pass_abi_stables_layout_check() {
    use plugin_abi::abi_stable::abi_stability::abi_checking::check_layout_compatibility;
    use plugin_abi::abi_stable::StableAbi;
    use plugin_abi::telemetry::ProviderBox;
    let slot = <TelemetrySlot as StableAbi>::LAYOUT;
    let provider = <ProviderBox as StableAbi>::LAYOUT;
    let context = <TraceContext as StableAbi>::LAYOUT;
    assert!(check_layout_compatibility(slot, slot).is_ok());
    assert!(check_layout_compatibility(provider, provider).is_ok());
    assert!(check_layout_compatibility(context, context).is_ok());
    // The check is real: 25 bytes of another shape are refused.
    let bytes = <[u8; 25] as StableAbi>::LAYOUT;
    assert!(check_layout_compatibility(context, bytes).is_err());
}
