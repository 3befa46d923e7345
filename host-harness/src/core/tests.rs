//! Unit tests of the host's call path, in-process: a [`HostCore`] on a test
//! runtime and a plugin built from a [`PluginImpl`] in this file (no `.so`),
//! loaded, started and stopped by the real plugin supervisor. The e2e tests
//! cover the real binary; these cover the core, the supervisor and the
//! invoke layer alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

use plugin_abi::guest::{root_module, Host, PluginImpl, ServiceCall};
use plugin_abi::{ErrorKind, PluginError, PluginState};

use super::HostCore;
use crate::config::Config;
use crate::observer::Name;
use crate::plugins::breaker::CircuitState;
use crate::plugins::loader::{LoadError, LoadedLibrary};
use crate::plugins::manager::PluginInstance;
use test_support::wait_until;

/// A gate the `calltest.hang` service waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// Gates by key (the plugin's config names its gate: tests share the
/// process under `cargo test`).
static GATES: LazyLock<Mutex<HashMap<String, Arc<Gate>>>> = LazyLock::new(Default::default);

fn gate(key: &str) -> Arc<Gate> {
    GATES
        .lock()
        .unwrap()
        .entry(key.to_owned())
        .or_default()
        .clone()
}

/// The plugin under test: `calltest.echo` answers its input,
/// `calltest.fail` a conflict, `calltest.hang` waits at its gate,
/// `calltest.thread` the id of the thread it runs on, `calltest.panic`
/// panics, and `calltest.relay` calls the service its input names (with
/// the same input) through the host, as a plugin calling a plugin, and
/// answers `[its thread, the answer]`.
struct CallTest {
    host: Host,
    gate: Arc<Gate>,
}

impl PluginImpl for CallTest {
    const NAME: &'static str = "calltest";
    const VERSION: &'static str = "1.0.0";

    fn new(host: Host, config: &str) -> Result<Self, PluginError> {
        let config: serde_json::Value =
            serde_json::from_str(config).map_err(|e| PluginError::bad_request(e.to_string()))?;
        let key = config["gate"].as_str().unwrap_or("none");
        Ok(CallTest {
            host,
            gate: gate(key),
        })
    }

    fn start(&self) -> Result<(), PluginError> {
        for name in [
            "calltest.echo",
            "calltest.fail",
            "calltest.hang",
            "calltest.thread",
            "calltest.panic",
            "calltest.relay",
        ] {
            self.host.register_service(name, "test")?;
        }
        Ok(())
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        match call.name {
            "calltest.echo" => Ok(call.input.to_owned()),
            "calltest.fail" => Err(PluginError::conflict("taken")),
            "calltest.hang" => {
                self.gate.wait();
                Ok("\"late\"".into())
            }
            "calltest.thread" => Ok(serde_json::to_string(&thread_id()).unwrap()),
            "calltest.panic" => panic!("calltest.panic was called"),
            "calltest.relay" => {
                let target: String = serde_json::from_str(call.input)
                    .map_err(|e| PluginError::bad_request(e.to_string()))?;
                let answer = self.host.call_service(&target, call.input, None)?;
                Ok(format!(
                    "[{}, {answer}]",
                    serde_json::to_string(&thread_id()).unwrap()
                ))
            }
            other => Err(PluginError::not_found(format!("no {other}"))),
        }
    }
}

/// The current thread's id, as text.
fn thread_id() -> String {
    format!("{:?}", std::thread::current().id())
}

/// A host core with `calltest` loaded and started; the gate opens when it
/// is dropped, so no blocking thread outlives a failed test.
struct Fixture {
    core: Arc<HostCore>,
    runtime: tokio::runtime::Runtime,
    gate: Arc<Gate>,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.gate.open();
    }
}

const FILE: &str = "/plugins/libcalltest.so";

fn fixture(tune: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().display().to_string();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config
        .plugins
        .insert("calltest".into(), serde_json::json!({"gate": key}));
    tune(&mut config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let core = HostCore::new(config, runtime.handle().clone()).unwrap();
    load(&core, FILE);
    Fixture {
        core,
        runtime,
        gate: gate(&key),
        _dir: dir,
    }
}

/// Loads `calltest` as if from `file`, through the real supervisor.
fn load(core: &Arc<HostCore>, file: &str) {
    core.plugins.load_from(core, Path::new(file), |file| {
        let module = root_module::<CallTest>();
        Ok(LoadedLibrary {
            module,
            info: (module.info())(),
            copy: PathBuf::from(file),
        })
    });
}

const CALLER: Name = Name::Static(&"test");

/// How long a test waits for something that must happen (generous: the
/// machines are shared).
const WAIT: Duration = Duration::from_secs(30);

/// After a hung call returned, a trial call past the cooldown closes the
/// plugin's circuit again.
#[track_caller]
fn trial_call_closes_the_circuit(fx: &Fixture, instance: &PluginInstance) {
    wait_until("a trial call to close the circuit", WAIT, || {
        fx.core
            .call_service(&CALLER, "calltest.echo", "2", None)
            .is_ok()
    });
    assert_eq!(instance.breaker.state(), CircuitState::Closed);
}

#[test]
fn a_service_answers_sync_and_async_callers_alike() {
    let fx = fixture(|_| {});
    let sync = fx
        .core
        .call_service(&CALLER, "calltest.echo", r#"{"a":1}"#, None);
    assert_eq!(sync.unwrap(), r#"{"a":1}"#);
    let asynch = fx.runtime.block_on(fx.core.call_service_async(
        &CALLER,
        "calltest.echo",
        r#"{"b":2}"#.into(),
        None,
    ));
    assert_eq!(asynch.unwrap(), r#"{"b":2}"#);
    let summary = fx.core.plugins.list();
    let stats = &summary[0].callbacks["handle_service"];
    assert_eq!(stats["calls"], 2, "{stats}");
}

#[test]
fn an_unknown_service_is_not_found_for_both_callers() {
    let fx = fixture(|_| {});
    let sync = fx.core.call_service(&CALLER, "nope", "null", None);
    let asynch =
        fx.runtime.block_on(
            fx.core
                .call_service_async(&CALLER, "nope", "null".into(), None),
        );
    for r in [sync, asynch] {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message.as_str(), r#"no service named "nope""#);
    }
}

#[test]
fn a_plugin_error_keeps_its_kind_and_message() {
    let fx = fixture(|_| {});
    let e = fx
        .core
        .call_service(&CALLER, "calltest.fail", "null", None)
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.message.as_str()),
        (ErrorKind::Conflict, "taken")
    );
    let api = crate::http_error::ApiError::from(e);
    assert_eq!(api.status(), axum::http::StatusCode::CONFLICT);
}

#[test]
fn an_async_call_past_its_deadline_times_out_and_opens_the_circuit_until_it_returns() {
    let fx = fixture(|c| {
        c.host.service_timeout_ms = 200;
        c.host.resilience.cooldown_ms = 1;
    });
    let e = fx
        .runtime
        .block_on(
            fx.core
                .call_service_async(&CALLER, "calltest.hang", "null".into(), None),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(
        e.message.as_str(),
        "plugin calltest did not answer handle_service within 200ms"
    );
    let instance = fx.core.plugins.live_instances().pop().unwrap();
    assert_eq!(instance.breaker.state(), CircuitState::Open);
    // While the hung call runs, every caller is refused at once.
    let sync = fx.core.call_service(&CALLER, "calltest.echo", "1", None);
    let asynch =
        fx.runtime.block_on(
            fx.core
                .call_service_async(&CALLER, "calltest.echo", "1".into(), None),
        );
    for r in [sync, asynch] {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("circuit"), "{e}");
    }
    // The hung call returns; after the cooldown a trial call closes the
    // circuit again.
    fx.gate.open();
    trial_call_closes_the_circuit(&fx, &instance);
}

#[test]
fn a_plugin_calling_a_plugin_runs_the_callee_on_its_own_thread() {
    let fx = fixture(|_| {});
    // The relay runs on a blocking-pool thread (the async caller's hop)
    // and calls `calltest.thread` through the host as a plugin would.
    let answer = fx
        .runtime
        .block_on(fx.core.call_service_async(
            &CALLER,
            "calltest.relay",
            r#""calltest.thread""#.into(),
            None,
        ))
        .unwrap();
    let [caller, callee]: [String; 2] = serde_json::from_str(&answer).unwrap();
    assert_eq!(caller, callee, "the callee ran on another thread");
    // Both calls were booked on the instance.
    let stats = &fx.core.plugins.list()[0].callbacks["handle_service"];
    assert_eq!(stats["calls"], 2, "{stats}");
}

#[test]
fn a_hung_in_line_callee_opens_its_circuit_for_others_while_its_caller_waits() {
    let fx = fixture(|c| {
        c.host.service_timeout_ms = 200;
        c.host.resilience.cooldown_ms = 1;
    });
    let core = fx.core.clone();
    let first =
        std::thread::spawn(move || core.call_service(&CALLER, "calltest.hang", "null", None));
    wait_until("the hung call to be in flight", WAIT, || {
        fx.core.inflight.snapshot().len() == 1
    });
    // The in-line call runs on its caller's thread, not the blocking pool.
    assert_ne!(fx.core.inflight.snapshot()[0].thread, "blocking pool");
    let instance = fx.core.plugins.live_instances().pop().unwrap();
    // The watchdog (driven here by hand) finds it past its deadline and
    // opens the circuit.
    wait_until("the watchdog to open the circuit", WAIT, || {
        fx.core.watchdog_pass(Duration::from_millis(100));
        instance.breaker.state() == CircuitState::Open
    });
    // Every other caller is refused at once; the first one still waits.
    let e = fx
        .core
        .call_service(&CALLER, "calltest.echo", "1", None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("circuit"), "{e}");
    assert!(
        !first.is_finished(),
        "an in-line caller cannot be interrupted"
    );
    // The callee returns: its caller gets the (late) answer and a trial
    // call after the cooldown closes the circuit again.
    fx.gate.open();
    assert_eq!(first.join().unwrap().unwrap().as_str(), "\"late\"");
    trial_call_closes_the_circuit(&fx, &instance);
}

#[test]
fn a_panicking_in_line_callee_gives_panicked_and_the_host_lives() {
    let fx = fixture(|_| {});
    let e = fx
        .core
        .call_service(&CALLER, "calltest.relay", r#""calltest.panic""#, None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Panicked, "{e}");
    assert!(e.message.contains("calltest.panic was called"), "{e}");
    // The host still answers: the registry and the plugin table are there.
    assert_eq!(fx.core.plugins.list()[0].state, PluginState::Error);
    let e = fx
        .core
        .call_service(&CALLER, "nope", "null", None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[test]
fn the_depth_limit_refuses_a_re_entrant_in_line_chain() {
    let fx = fixture(|c| c.host.resilience.max_call_depth = 4);
    // The relay calls itself until the limit refuses the next call.
    let e = fx
        .core
        .call_service(&CALLER, "calltest.relay", r#""calltest.relay""#, None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Failed, "{e}");
    assert!(
        e.message
            .starts_with("call depth limit 4 reached calling calltest.relay"),
        "{e}"
    );
    // The chain unwound: nothing is left in flight.
    assert!(fx.core.inflight.snapshot().is_empty());
}

#[test]
fn a_full_bulkhead_refuses_the_next_call_without_waiting() {
    let fx = fixture(|c| c.host.resilience.max_in_flight = 1);
    let core = fx.core.clone();
    let first =
        std::thread::spawn(move || core.call_service(&CALLER, "calltest.hang", "null", None));
    wait_until("the first call to be in flight", WAIT, || {
        fx.core.inflight.snapshot().len() == 1
    });
    let e = fx
        .core
        .call_service(&CALLER, "calltest.echo", "1", None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert_eq!(
        e.message.as_str(),
        "too many calls in flight to plugin calltest (cap 1); the call was refused without waiting"
    );
    fx.gate.open();
    assert_eq!(first.join().unwrap().unwrap(), "\"late\"");
    assert_eq!(
        fx.core
            .call_service(&CALLER, "calltest.echo", "2", None)
            .unwrap(),
        "2"
    );
}

#[test]
fn the_supervisor_starts_an_instance_and_stop_all_revokes_its_services() {
    let fx = fixture(|_| {});
    let list = fx.core.plugins.list();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].name.as_str(), list[0].state, list[0].generation),
        ("calltest", PluginState::Started, 1)
    );
    assert_eq!(fx.core.registry.len(), 6);
    fx.core.plugins.stop_all(&fx.core);
    assert_eq!(fx.core.plugins.list()[0].state, PluginState::Stopped);
    assert_eq!(fx.core.registry.len(), 0);
    let e = fx
        .core
        .call_service(&CALLER, "calltest.echo", "1", None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[test]
fn reloading_a_file_replaces_its_instance_with_the_next_generation() {
    let fx = fixture(|_| {});
    let first = fx.core.plugins.live_instances().pop().unwrap();
    load(&fx.core, FILE);
    let list = fx.core.plugins.list();
    assert_eq!(
        (list[0].state, list[0].generation),
        (PluginState::Started, 2)
    );
    assert!(fx.core.plugins.live(first.id).is_none());
    assert_eq!(
        fx.core
            .call_service(&CALLER, "calltest.echo", "3", None)
            .unwrap(),
        "3"
    );
}

#[test]
fn a_second_file_with_the_same_plugin_name_is_refused() {
    let fx = fixture(|_| {});
    load(&fx.core, "/plugins/copy/libcalltest.so");
    let list = fx.core.plugins.list();
    let copy = list
        .iter()
        .find(|p| p.file == "/plugins/copy/libcalltest.so")
        .unwrap();
    assert_eq!(copy.state, PluginState::Error);
    let error = copy.error.as_deref().unwrap();
    assert!(
        error.contains("is already provided by /plugins/libcalltest.so"),
        "{error}"
    );
    assert_eq!(fx.core.plugins.live_instances().len(), 1);
}

#[test]
fn a_library_that_fails_to_open_is_the_files_error() {
    let fx = fixture(|_| {});
    let file = "/plugins/libother.so";
    fx.core.plugins.load_from(&fx.core, Path::new(file), |f| {
        Err(LoadError::MissingRootModule {
            file: f.display().to_string(),
            symbol: "root_symbol",
        })
    });
    let list = fx.core.plugins.list();
    let other = list.iter().find(|p| p.file == file).unwrap();
    assert_eq!(
        (other.name.as_str(), other.state),
        ("libother", PluginState::Error)
    );
    assert!(
        other.error.as_deref().unwrap().contains("`root_symbol`"),
        "{:?}",
        other.error
    );
}
