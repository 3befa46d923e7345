//! Unit tests of the guest side without a host process: a recording
//! [`HostApi`](crate::HostApi) stands in for the host, and a small
//! [`PluginImpl`] goes through the same root module the host loads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RResult, RStr, RString, RVec};

use super::*;
use crate::error::ErrorKind;
use crate::facts::{HostCounters, HostInfo, HostInfo_Ref, PluginSummary};
use crate::ffi::{HostApi, HostApi_TO};
use crate::telemetry::{HealthCheckBox, InstrumentOpts, ProviderBox, TelemetrySlot};
use crate::types::PluginState;

/// A valid `traceparent` for the calls that carry a context.
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn tc(traceparent: &str) -> TraceContext {
    TraceContext::parse(traceparent).expect("valid traceparent")
}

/// Address of the last string `FakeHost::call_service` answered with.
static LAST_ANSWER: AtomicUsize = AtomicUsize::new(0);

/// What the plugin asked of the fake host, one line per call.
type Calls = Arc<Mutex<Vec<String>>>;

/// A host that records every call and answers from fixed data.
#[derive(Clone)]
struct FakeHost {
    calls: Calls,
    /// What `list_modules`, `get_module`, `list_plugins` and `host_info` answer.
    json: &'static str,
    /// The slot `telemetry_slot` answers.
    slot: RArc<TelemetrySlot>,
}

impl FakeHost {
    fn note(&self, line: String) {
        self.calls.lock().unwrap().push(line);
    }
}

impl HostApi for FakeHost {
    fn plugin_name(&self) -> RString {
        "fake".into()
    }

    fn register_service(&self, name: RStr<'_>, description: RStr<'_>) -> RResult<(), PluginError> {
        self.note(format!("register_service {name} {description}"));
        if name.as_str() == "taken" {
            return RResult::RErr(PluginError::conflict("taken is registered"));
        }
        RResult::ROk(())
    }

    fn unregister_service(&self, name: RStr<'_>) -> RResult<(), PluginError> {
        self.note(format!("unregister_service {name}"));
        RResult::ROk(())
    }

    fn call_service(
        &self,
        name: RStr<'_>,
        input: RStr<'_>,
        trace_context: ROption<TraceContext>,
    ) -> RResult<RString, PluginError> {
        let trace = trace_context
            .map(|t| t.traceparent().to_string())
            .unwrap_or_default();
        self.note(format!("call_service {name} {input} [{trace}]"));
        if name.as_str() == "missing" {
            return RResult::RErr(PluginError::not_found("no service missing"));
        }
        let answer = RString::from(format!("{{\"echo\":{input}}}"));
        LAST_ANSWER.store(answer.as_ptr() as usize, Ordering::Relaxed);
        RResult::ROk(answer)
    }

    fn subscribe(&self, pattern: RStr<'_>) -> RResult<u64, PluginError> {
        self.note(format!("subscribe {pattern}"));
        RResult::ROk(41)
    }

    fn unsubscribe(&self, subscription_id: u64) -> RResult<(), PluginError> {
        self.note(format!("unsubscribe {subscription_id}"));
        RResult::ROk(())
    }

    fn publish(
        &self,
        topic: RStr<'_>,
        payload: RStr<'_>,
        trace_context: ROption<TraceContext>,
    ) -> RResult<(), PluginError> {
        let trace = trace_context
            .map(|t| t.traceparent().to_string())
            .unwrap_or_default();
        self.note(format!("publish {topic} {payload} [{trace}]"));
        RResult::ROk(())
    }

    fn storage_get(
        &self,
        namespace: RStr<'_>,
        key: RStr<'_>,
    ) -> RResult<ROption<RString>, PluginError> {
        self.note(format!("storage_get {namespace} {key}"));
        RResult::ROk(match key.as_str() {
            "present" => ROption::RSome("1".into()),
            _ => ROption::RNone,
        })
    }

    fn storage_set(
        &self,
        namespace: RStr<'_>,
        key: RStr<'_>,
        value: RStr<'_>,
    ) -> RResult<(), PluginError> {
        self.note(format!("storage_set {namespace} {key} {value}"));
        RResult::RErr(PluginError::unavailable("disk full"))
    }

    fn storage_delete(&self, namespace: RStr<'_>, key: RStr<'_>) -> RResult<bool, PluginError> {
        self.note(format!("storage_delete {namespace} {key}"));
        RResult::ROk(key.as_str() == "present")
    }

    fn storage_list_keys(
        &self,
        namespace: RStr<'_>,
        prefix: RStr<'_>,
    ) -> RResult<RVec<RString>, PluginError> {
        self.note(format!("storage_list_keys {namespace} {prefix}"));
        RResult::ROk(RVec::from(vec![RString::from("a1"), RString::from("a2")]))
    }

    fn list_modules(&self) -> RString {
        self.json.into()
    }

    fn get_module(&self, name: RStr<'_>) -> ROption<RString> {
        match name.as_str() {
            "known" => ROption::RSome(self.json.into()),
            _ => ROption::RNone,
        }
    }

    fn list_plugins(&self) -> RVec<PluginSummary> {
        RVec::from(vec![PluginSummary::new("demo", PluginState::Started, 3)])
    }

    fn register_route(
        &self,
        method: RStr<'_>,
        path: RStr<'_>,
        timeout_ms: u64,
    ) -> RResult<(), PluginError> {
        self.note(format!("register_route {method} {path} {timeout_ms}"));
        RResult::ROk(())
    }

    fn unregister_route(&self, method: RStr<'_>, path: RStr<'_>) -> RResult<(), PluginError> {
        self.note(format!("unregister_route {method} {path}"));
        RResult::ROk(())
    }

    fn log(&self, level: LogLevel, message: RStr<'_>, fields_json: RStr<'_>) {
        self.note(format!("log {} {message} [{fields_json}]", level.as_str()));
    }

    fn set_observer(&self, enabled: bool) -> RResult<(), PluginError> {
        self.note(format!("set_observer {enabled}"));
        RResult::ROk(())
    }

    fn host_info(&self) -> HostInfo_Ref {
        HostInfo {
            host_version: "9.9.9".into(),
            abi_version: crate::ABI_VERSION.into(),
            started_unix_ms: 1,
            pid: 2,
            data_dir: "/d".into(),
            plugins_dir: "/p".into(),
            trace_sample_ratio: 0.5,
            service_timeout_ms: 3,
            callback_timeout_ms: 4,
        }
        .leak()
    }

    fn host_counters(&self) -> HostCounters {
        HostCounters {
            observer_dropped_total: 5,
            ..HostCounters::default()
        }
    }

    fn telemetry_slot(&self) -> RArc<TelemetrySlot> {
        self.slot.clone()
    }

    fn install_telemetry_provider(&self, provider: ProviderBox) -> RResult<(), PluginError> {
        self.note("install_telemetry_provider".to_owned());
        if let Some(old) = self.slot.install(provider) {
            old.close();
        }
        RResult::ROk(())
    }

    fn register_health_check(&self, name: RStr<'_>, check: HealthCheckBox) -> u64 {
        self.note(format!("register_health_check {name}"));
        self.slot
            .register_health_check_for(7, "fake", name.as_str(), check)
    }
}

/// A fake host answering `json` to the JSON queries, and its call record.
fn fake_host(json: &'static str) -> (HostHandle, Calls) {
    let calls = Calls::default();
    let host = FakeHost {
        calls: calls.clone(),
        json,
        slot: RArc::new(TelemetrySlot::new()),
    };
    (HostApi_TO::from_ptr(RArc::new(host), TD_Opaque), calls)
}

#[test]
fn telemetry_reads_the_hosts_slot_and_is_a_no_op_without_a_provider() {
    let (handle, calls) = fake_host("{}");
    let host = Host::new(handle);
    let telemetry = host.telemetry();
    assert!(!telemetry.has_provider());
    let counter = telemetry
        .counter(InstrumentOpts::new("greetings_total", "Greetings."))
        .unwrap();
    counter.inc();
    assert!(!counter.is_live());
    // The same slot for every call: a second `telemetry()` agrees.
    assert!(!host.telemetry().has_provider());
    assert!(
        taken(&calls).is_empty(),
        "reading the slot is not a host call"
    );
}

fn taken(calls: &Calls) -> Vec<String> {
    std::mem::take(&mut *calls.lock().unwrap())
}

#[test]
fn host_methods_pass_arguments_and_map_results() {
    let (handle, calls) = fake_host(r#"{"modules":1}"#);
    let host = Host::new(handle);
    assert_eq!(host.plugin_name(), "fake");
    let answer = host.call_service("echo", "[1]", Some(tc(TP))).unwrap();
    assert_eq!(answer, r#"{"echo":[1]}"#);
    assert_eq!(
        answer.as_ptr() as usize,
        LAST_ANSWER.load(Ordering::Relaxed),
        "the callee's string reaches the caller uncopied"
    );
    assert_eq!(
        host.call_service("missing", "{}", None).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        host.register_service("taken", "d").unwrap_err(),
        PluginError::conflict("taken is registered")
    );
    assert_eq!(host.subscribe("device.*").unwrap(), 41);
    host.publish("a.b", "{}", None).unwrap();
    assert_eq!(host.storage_get("ns", "present").unwrap(), Some("1".into()));
    assert_eq!(host.storage_get("ns", "absent").unwrap(), None);
    assert_eq!(
        host.storage_set("ns", "k", "2").unwrap_err().kind,
        ErrorKind::Unavailable
    );
    assert!(host.storage_delete("ns", "present").unwrap());
    assert_eq!(host.storage_list_keys("ns", "a").unwrap(), ["a1", "a2"]);
    host.register_route("GET", "/api/x").unwrap();
    host.register_route_with_timeout("GET", "/api/slow", 30_000)
        .unwrap();
    host.set_observer(true).unwrap();
    assert_eq!(
        taken(&calls),
        [
            "call_service echo [1] [00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01]",
            "call_service missing {} []",
            "register_service taken d",
            "subscribe device.*",
            "publish a.b {} []",
            "storage_get ns present",
            "storage_get ns absent",
            "storage_set ns k 2",
            "storage_delete ns present",
            "storage_list_keys ns a",
            "register_route GET /api/x 0",
            "register_route GET /api/slow 30000",
            "set_observer true",
        ]
    );
}

#[test]
fn log_helpers_send_the_level_and_fields_as_json_text() {
    let (handle, calls) = fake_host("{}");
    let host = Host::new(handle);
    host.log(LogLevel::Debug, "d", &serde_json::Value::Null);
    host.log(LogLevel::Info, "i", &serde_json::json!({"n": 1}));
    host.info("a");
    host.warn("b");
    host.error("c");
    assert_eq!(
        taken(&calls),
        [
            "log debug d []",
            r#"log info i [{"n":1}]"#,
            "log info a []",
            "log warn b []",
            "log error c []",
        ]
    );
}

#[test]
fn json_queries_parse_and_fall_back_to_null_on_bad_text() {
    let (handle, _) = fake_host(r#"{"uptime_s":3}"#);
    let host = Host::new(handle);
    assert_eq!(host.list_modules()["uptime_s"], 3);
    assert!(host.get_module("known").is_some());
    assert!(host.get_module("unknown").is_none());

    let (handle, _) = fake_host("not json");
    let host = Host::new(handle);
    assert!(host.list_modules().is_null());
    assert!(host.get_module("known").is_none(), "unparsable is absent");
    assert_eq!(format!("{host:?}"), "Host { .. }");
}

#[test]
fn host_facts_and_plugin_summaries_are_typed_values() {
    let (handle, _) = fake_host("{}");
    let host = Host::new(handle);
    let info = host.host_info();
    assert_eq!(info.host_version().as_str(), "9.9.9");
    assert_eq!(info.trace_sample_ratio(), 0.5);
    assert_eq!(info.callback_timeout_ms(), 4);
    assert_eq!(host.host_counters().observer_dropped_total, 5);
    let plugins = host.list_plugins();
    assert_eq!(plugins.len(), 1);
    assert_eq!(
        (
            plugins[0].name.as_str(),
            plugins[0].state(),
            plugins[0].generation
        ),
        ("demo", PluginState::Started, 3)
    );
}

#[test]
fn guard_passes_results_through() {
    assert_eq!(guard("tick", || Ok(5)).into_result(), Ok(5));
    assert_eq!(
        guard::<()>("tick", || Err(PluginError::bad_request("no"))).into_result(),
        Err(PluginError::bad_request("no"))
    );
}

#[test]
fn guard_turns_a_panic_into_panicked_naming_callback_message_and_location() {
    install_panic_hook();
    let err = guard::<()>("on_event", || panic!("boom {}", 7))
        .into_result()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Panicked);
    assert_eq!(err.message.as_str(), "panicked in on_event: boom 7");
    let at = err.panic.as_ref().into_option().expect("location recorded");
    assert_eq!(at.file.as_str(), file!());
    assert!(at.line > line!() - 10 && at.line < line!(), "{at}");
    assert!(at.column > 0, "{at}");

    let err = guard::<()>("tick", || std::panic::panic_any(42u8))
        .into_result()
        .unwrap_err();
    assert!(
        err.message
            .as_str()
            .starts_with("panicked in tick: non-string panic payload"),
        "{err}"
    );
}

/// A plugin with a few behaviours of its own; the rest are the defaults.
struct Probe {
    host: Host,
    config: String,
}

impl PluginImpl for Probe {
    const NAME: &'static str = "probe";
    const VERSION: &'static str = "3.1.4";
    const DESCRIPTION: &'static str = "tests the guest adapter";

    fn new(host: Host, config: &str) -> Result<Self, PluginError> {
        if config.contains("explode") {
            panic!("bad config");
        }
        Ok(Probe {
            host,
            config: config.to_owned(),
        })
    }

    fn start(&self) -> Result<(), PluginError> {
        self.host.register_service("probe.echo", "echoes")
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        match call.name {
            "probe.echo" => Ok(format!(
                "{}|{}|{}|{}",
                call.input,
                call.caller,
                call.trace_context
                    .map_or_else(|| "-".to_owned(), |t| t.traceparent().to_string()),
                self.config
            )),
            _ => Err(PluginError::not_found(format!("no {}", call.name))),
        }
    }

    fn on_event(&self, event: &Event) -> Result<(), PluginError> {
        panic!("cannot handle {}", event.topic)
    }
}

/// A plugin that implements nothing but construction.
struct Bare;

impl PluginImpl for Bare {
    const NAME: &'static str = "bare";
    const VERSION: &'static str = "0.0.1";

    fn new(_host: Host, _config: &str) -> Result<Self, PluginError> {
        Ok(Bare)
    }
}

/// Everything that goes through `plugin_new` is in this one test: the
/// library-wide panic host is set by the first plugin built.
#[test]
fn a_plugin_built_through_its_root_module_is_guarded_end_to_end() {
    let module = root_module::<Probe>();
    let info = (module.info())();
    assert_eq!(info.name.as_str(), "probe");
    assert_eq!(info.version.as_str(), "3.1.4");
    assert_eq!(info.abi_version.as_str(), crate::ABI_VERSION);
    assert_eq!(info.description.as_str(), "tests the guest adapter");

    let (handle, calls) = fake_host("{}");
    let plugin = (module.new())(handle, RStr::from(r#"{"a":1}"#))
        .into_result()
        .expect("constructed");
    plugin.start().into_result().unwrap();
    assert_eq!(
        taken(&calls)
            .into_iter()
            .filter(|l| !l.contains(PANIC_BACKTRACE_LOG))
            .collect::<Vec<_>>(),
        ["register_service probe.echo echoes"],
        "(under `cargo test`, other tests' panics are logged here too)"
    );
    let out = plugin
        .handle_service(
            "probe.echo".into(),
            "[1]".into(),
            crate::HTTP_CALLER.into(),
            ROption::RSome(tc(TP)),
        )
        .into_result()
        .unwrap();
    assert_eq!(
        out.as_str(),
        r#"[1]|http|00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01|{"a":1}"#
    );
    let missing = plugin
        .handle_service("nope".into(), "{}".into(), "host".into(), ROption::RNone)
        .into_result()
        .unwrap_err();
    assert_eq!(missing, PluginError::not_found("no nope"));

    // A panicking callback: an error for the caller, a backtrace for the log.
    let event = Event {
        topic: "device.x".into(),
        payload: "{}".into(),
        source: "host".into(),
        subscription_id: 1,
        published_at_ms: 0,
        trace_context: ROption::RNone,
    };
    let err = plugin.on_event(&event).into_result().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Panicked);
    assert_eq!(
        err.message.as_str(),
        "panicked in on_event: cannot handle device.x"
    );
    assert!(
        err.panic
            .as_ref()
            .into_option()
            .is_some_and(|at| at.file.as_str() == file!() && at.line > 0),
        "{err:?}"
    );
    let logged: Vec<String> = taken(&calls)
        .into_iter()
        .filter(|l| l.contains("cannot handle device.x"))
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].starts_with(&format!("log error {PANIC_BACKTRACE_LOG} [")),
        "{logged:?}"
    );
    assert!(logged[0].contains(r#""callback":"on_event""#), "{logged:?}");
    assert!(logged[0].contains(r#""backtrace":"#), "{logged:?}");

    // Defaults of a plugin that implements only `new`.
    assert_eq!(
        plugin.health().into_result().unwrap().status,
        crate::HealthStatus::Healthy
    );
    assert!(plugin.tick(1).into_result().is_ok());
    assert!(plugin.stop().into_result().is_ok());
    let bare_module = root_module::<Bare>();
    assert_eq!((bare_module.info())().description.as_str(), "");
    let (handle, _) = fake_host("{}");
    let bare = (bare_module.new())(handle, RStr::from("{}"))
        .into_result()
        .unwrap();
    let e = bare
        .handle_service("bare.x".into(), "{}".into(), "host".into(), ROption::RNone)
        .into_result()
        .unwrap_err();
    assert_eq!(
        e,
        PluginError::not_found("service bare.x is not implemented")
    );
    let request = HttpRequest {
        path: "/api/bare".into(),
        ..HttpRequest::default()
    };
    let e = bare.handle_http(&request).into_result().unwrap_err();
    assert_eq!(e, PluginError::not_found("no handler for /api/bare"));
    assert!(bare.on_event(&event).into_result().is_ok());
    assert!(bare
        .on_observations(RSlice::from_slice(&[Observation::empty(
            crate::ObservationKind::LogLine
        )]))
        .into_result()
        .is_ok());

    // A constructor that panics is refused, not fatal.
    let (handle, _) = fake_host("{}");
    let refused = (module.new())(handle, RStr::from(r#"{"explode":true}"#))
        .into_result()
        .err()
        .expect("refused");
    assert_eq!(refused.kind, ErrorKind::Panicked);
    assert!(
        refused
            .message
            .as_str()
            .starts_with("panicked in new: bad config"),
        "{refused}"
    );
}
