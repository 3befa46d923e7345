//! Demo plugin: a few simulated devices that give a running host real
//! activity — device events on the bus, service calls, storage use, and a
//! configurable fraction of failing calls.
//!
//! Config (JSON, from `[plugins.demo-devices]`):
//! - `devices`: light names (default `["light1", "light2", "light3"]`)
//! - `interval_ms`: period of the simulation thread (default 1000; 0 = off)
//! - `fail_ratio`: fraction of `demo.light.toggle` calls that fail (default 0)
//!
//! It reports to the monitoring plugin both ways a plugin can
//! (docs/instrument-your-plugin.md): light toggles through a counter handle
//! of the telemetry API (one per device, created once), and the light's new
//! state through the `monitoring.record_metric` service in the seed's shape
//! (a plugin → plugin call, traced as a child of the toggle).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use plugin_abi::telemetry::{Counter, InstrumentOpts};
use plugin_abi::{
    export_plugin, Event, Host, HttpRequest, HttpResponse, PluginError, PluginImpl, ServiceCall,
    TraceContext,
};
use serde::Deserialize;
use serde_json::{json, Value};

const NAMESPACE: &str = "demo-devices";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    devices: Vec<String>,
    interval_ms: u64,
    fail_ratio: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            devices: vec!["light1".into(), "light2".into(), "light3".into()],
            interval_ms: 1_000,
            fail_ratio: 0.0,
        }
    }
}

/// Stop signal for the simulation thread.
#[derive(Default)]
struct StopFlag {
    stopped: Mutex<bool>,
    cv: Condvar,
}

struct Shared {
    host: Host,
    config: Config,
    calls: AtomicU64,
    stop: StopFlag,
    /// What `demo.health` answers, and how long it takes.
    health: Mutex<(Value, u64)>,
    /// `demo_light_toggles_total{device}`, one handle per configured light.
    toggles: HashMap<String, Counter>,
}

/// The demo plugin.
pub struct DemoDevices {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

const SERVICES: &[(&str, &str)] = &[
    ("demo.light.toggle", "toggle a light: {\"device\": name}"),
    ("demo.light.get", "state of a light: {\"device\": name}"),
    ("demo.devices.list", "all simulated devices and their state"),
    (
        "demo.kv.put",
        "store a JSON value durably: {\"key\", \"value\"}",
    ),
    ("demo.kv.get", "read a stored value: {\"key\"}"),
    (
        "demo.kv.peek",
        "read another namespace (refused unless granted): {\"namespace\", \"key\"}",
    ),
    (
        "demo.sleep",
        "sleep for {\"ms\": n} milliseconds, then answer",
    ),
    (
        "demo.burn",
        "busy-loop on the CPU for {\"ms\": n} milliseconds (at most 4000), for profiling",
    ),
    ("demo.fail", "always fails"),
    (
        "demo.log_error",
        "write an error-level log line: {\"message\", \"fields\"?}",
    ),
    (
        "demo.publish",
        "publish {\"topic\", \"payload\"} on the bus",
    ),
    (
        "demo.health",
        "health of the simulated hub (a custom health check target)",
    ),
    (
        "demo.health.set",
        "set what demo.health answers: {\"status\", \"message\"?, \"delay_ms\"?}",
    ),
];

impl Shared {
    fn light(&self, device: &str) -> Result<bool, PluginError> {
        if !self.config.devices.iter().any(|d| d == device) {
            return Err(PluginError::not_found(format!(
                "no device named {device:?}"
            )));
        }
        let stored = self
            .host
            .storage_get(NAMESPACE, &format!("light/{device}"))?;
        Ok(stored
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["on"].as_bool())
            .unwrap_or(false))
    }

    fn toggle(&self, device: &str, trace: Option<TraceContext>) -> Result<Value, PluginError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if should_fail(n, self.config.fail_ratio) {
            return Err(PluginError::failed(format!(
                "simulated failure toggling {device}"
            )));
        }
        let on = !self.light(device)?;
        let state = json!({"device": device, "on": on});
        self.host
            .storage_set(NAMESPACE, &format!("light/{device}"), &state.to_string())?;
        self.host
            .publish(&format!("device.{device}.state"), &state.to_string(), trace)?;
        // A custom metric through its handle (a no-op without monitoring).
        if let Some(toggles) = self.toggles.get(device) {
            toggles.inc();
        }
        self.record_state(device, on, trace);
        Ok(state)
    }

    fn simulate(&self) {
        let interval = Duration::from_millis(self.config.interval_ms);
        let mut round: u64 = 0;
        loop {
            {
                let mut stopped = self.stop.stopped.lock();
                if !*stopped {
                    self.stop.cv.wait_for(&mut stopped, interval);
                }
                if *stopped {
                    return;
                }
            }
            round += 1;
            let devices = &self.config.devices;
            if devices.is_empty() {
                continue;
            }
            let device = &devices[(round as usize) % devices.len()];
            // Through the registry, like any other caller would.
            let _ = self.host.call_service(
                "demo.light.toggle",
                &json!({"device": device}).to_string(),
                None,
            );
            let temperature = 20.0 + ((round % 20) as f64) / 4.0;
            let _ = self.host.publish(
                "device.thermostat1.temperature",
                &json!({"celsius": temperature}).to_string(),
                None,
            );
        }
    }

    /// The service API, in the seed's shape `{name, value, labels}` (no
    /// `kind`: a gauge). A toggle is a person pressing a switch, a rare
    /// event where a service call (~2 µs) costs nothing that matters; on a
    /// hot path use a handle like `toggles`. Monitoring may be absent, so
    /// the result is ignored.
    fn record_state(&self, device: &str, on: bool, trace: Option<TraceContext>) {
        let reading = json!({"name": "demo_light_on", "value": u8::from(on),
                             "labels": {"device": device}});
        let _ = self
            .host
            .call_service("monitoring.record_metric", &reading.to_string(), trace);
    }
}

/// Deterministic failure pattern: call `n` fails when the running share of
/// failures would otherwise fall below `ratio`.
fn should_fail(n: u64, ratio: f64) -> bool {
    if ratio <= 0.0 {
        return false;
    }
    let before = (n as f64 * ratio).floor();
    let after = ((n + 1) as f64 * ratio).floor();
    after > before
}

fn input(text: &str) -> Result<Value, PluginError> {
    serde_json::from_str(text)
        .map_err(|e| PluginError::bad_request(format!("input is not JSON: {e}")))
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, PluginError> {
    v[name]
        .as_str()
        .ok_or_else(|| PluginError::bad_request(format!("input needs a string field {name:?}")))
}

impl PluginImpl for DemoDevices {
    const NAME: &'static str = "demo-devices";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "simulated lights and a thermostat";

    fn new(host: Host, config: &str) -> Result<Self, PluginError> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| PluginError::bad_request(format!("invalid demo-devices config: {e}")))?;
        if !(0.0..=1.0).contains(&config.fail_ratio) {
            return Err(PluginError::bad_request(
                "fail_ratio must be between 0 and 1",
            ));
        }
        let telemetry = host.telemetry();
        let mut toggles = HashMap::new();
        for device in &config.devices {
            let opts = InstrumentOpts::new(
                "demo_light_toggles_total",
                "Light toggles in the demo plugin.",
            )
            .label("device", device.as_str());
            let counter = telemetry
                .counter(opts)
                .map_err(|e| PluginError::bad_request(e.to_string()))?;
            toggles.insert(device.clone(), counter);
        }
        Ok(DemoDevices {
            shared: Arc::new(Shared {
                host,
                toggles,
                config,
                calls: AtomicU64::new(0),
                stop: StopFlag::default(),
                health: Mutex::new((json!({"status": "healthy"}), 0)),
            }),
            thread: Mutex::new(None),
        })
    }

    fn start(&self) -> Result<(), PluginError> {
        let host = &self.shared.host;
        for (name, description) in SERVICES {
            host.register_service(name, description)?;
        }
        host.subscribe("device.*.command")?;
        host.register_route("GET", "/api/v1/demo/devices")?;
        if self.shared.config.interval_ms > 0 {
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name("demo-devices".into())
                .spawn(move || shared.simulate())
                .map_err(|e| PluginError::failed(format!("cannot start simulation thread: {e}")))?;
            *self.thread.lock() = Some(handle);
        }
        host.info("demo devices started");
        Ok(())
    }

    fn stop(&self) -> Result<(), PluginError> {
        *self.shared.stop.stopped.lock() = true;
        self.shared.stop.cv.notify_all();
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
        Ok(())
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Result<String, PluginError> {
        let (name, input_text, trace) = (call.name, call.input, call.trace_context);
        let s = &self.shared;
        let out = match name {
            "demo.light.toggle" => s.toggle(field(&input(input_text)?, "device")?, trace)?,
            "demo.light.get" => {
                let v = input(input_text)?;
                let device = field(&v, "device")?;
                json!({"device": device, "on": s.light(device)?})
            }
            "demo.devices.list" => {
                let mut lights = Vec::new();
                for d in &s.config.devices {
                    lights.push(json!({"device": d, "on": s.light(d)?}));
                }
                json!({"lights": lights})
            }
            "demo.kv.put" => {
                let v = input(input_text)?;
                let key = field(&v, "key")?;
                s.host
                    .storage_set(NAMESPACE, &format!("kv/{key}"), &v["value"].to_string())?;
                json!({"stored": key})
            }
            "demo.kv.get" => {
                let v = input(input_text)?;
                let key = field(&v, "key")?;
                match s.host.storage_get(NAMESPACE, &format!("kv/{key}"))? {
                    Some(text) => {
                        json!({"key": key, "value": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)})
                    }
                    None => {
                        return Err(PluginError::not_found(format!(
                            "no value stored under {key:?}"
                        )))
                    }
                }
            }
            "demo.kv.peek" => {
                let v = input(input_text)?;
                let value = s
                    .host
                    .storage_get(field(&v, "namespace")?, field(&v, "key")?)?;
                json!({"value": value})
            }
            "demo.sleep" => {
                let ms = input(input_text)?["ms"].as_u64().unwrap_or(0).min(60_000);
                std::thread::sleep(Duration::from_millis(ms));
                json!({"slept_ms": ms})
            }
            "demo.burn" => {
                let ms = input(input_text)?["ms"].as_u64().unwrap_or(0).min(4_000);
                let rounds = demo_devices_burn_cpu(Duration::from_millis(ms));
                json!({"burned_ms": ms, "rounds": rounds})
            }
            "demo.fail" => return Err(PluginError::failed("demo.fail always fails")),
            "demo.log_error" => {
                let v = input(input_text)?;
                let message = field(&v, "message")?;
                s.host
                    .log(plugin_abi::LogLevel::Error, message, &v["fields"]);
                json!({"logged": message})
            }
            "demo.health" => {
                let (answer, delay) = s.health.lock().clone();
                std::thread::sleep(Duration::from_millis(delay));
                answer
            }
            "demo.health.set" => {
                let v = input(input_text)?;
                let delay = v["delay_ms"].as_u64().unwrap_or(0).min(600_000);
                let answer = json!({"status": field(&v, "status")?, "message": v["message"].as_str().unwrap_or("")});
                *s.health.lock() = (answer.clone(), delay);
                answer
            }
            "demo.publish" => {
                let v = input(input_text)?;
                let topic = field(&v, "topic")?;
                s.host.publish(topic, &v["payload"].to_string(), trace)?;
                json!({"published": topic})
            }
            other => return Err(PluginError::not_found(format!("no service {other}"))),
        };
        Ok(out.to_string())
    }

    fn on_event(&self, event: &Event) -> Result<(), PluginError> {
        // device.<name>.command {"action": "toggle"}
        let mut parts = event.topic.as_str().split('.');
        let device = parts.nth(1).unwrap_or_default();
        let command: Value = serde_json::from_str(event.payload.as_str()).unwrap_or(Value::Null);
        if command["action"] == "toggle" {
            let trace = event.trace_context.into_option();
            self.shared.toggle(device, trace)?;
        }
        Ok(())
    }

    fn handle_http(&self, request: &HttpRequest) -> Result<HttpResponse, PluginError> {
        let call = ServiceCall {
            name: "demo.devices.list",
            input: "null",
            caller: "http",
            trace_context: None,
        };
        let out = self.handle_service(&call)?;
        let _ = request;
        Ok(HttpResponse::new(200, "application/json", out.into_bytes()))
    }
}

export_plugin!(DemoDevices);

/// Spins on the CPU for `budget`: a uniquely named, never-inlined function so
/// a CPU profile shows this plugin by name (`[libdemo_devices.so]
/// demo_devices::demo_devices_burn_cpu`).
#[inline(never)]
pub fn demo_devices_burn_cpu(budget: Duration) -> u64 {
    let until = std::time::Instant::now() + budget;
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rounds = 0u64;
    while std::time::Instant::now() < until {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.rotate_left(7) ^ x.wrapping_mul(0x2545_f491_4f6c_dd1d));
        }
        rounds += 1;
    }
    std::hint::black_box(x);
    rounds
}

#[cfg(test)]
mod tests {
    use super::should_fail;

    #[test]
    fn failure_pattern_matches_ratio() {
        let fails = (0..1000).filter(|&n| should_fail(n, 0.25)).count();
        assert_eq!(fails, 250);
        assert_eq!((0..1000).filter(|&n| should_fail(n, 0.0)).count(), 0);
        assert_eq!((0..10).filter(|&n| should_fail(n, 1.0)).count(), 10);
    }
}
