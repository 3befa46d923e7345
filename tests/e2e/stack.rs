//! `./scripts/stack` drives the shipped Prometheus and Alertmanager configs
//! (Debian binaries) against a running host: Prometheus scrapes it
//! (`up == 1`), loads the shipped rules, and a firing test alert reaches
//! Alertmanager. SIGTERM stops both servers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{free_port, wait_for, TestHost, MONITORING};
use test_support::require_binary;
use test_support::RecordingPeer;

const WAIT: Duration = Duration::from_secs(90);

/// The stack script, stopped with SIGTERM (which stops its servers) when dropped.
struct Stack(Child);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn get_json(url: &str) -> Option<Value> {
    let mut resp = ureq::get(url).call().ok()?;
    serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()
}

#[test]
fn the_shipped_stack_scrapes_the_host_loads_the_rules_and_alerts() {
    require_binary!("prometheus");
    require_binary!("prometheus-alertmanager");
    let host = TestHost::builder().plugin(MONITORING).start();
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("stack-test.yml"),
        "groups:\n  - name: stack-test\n    rules:\n      - alert: StackTestAlert\n        expr: vector(1)\n        labels:\n          severity: critical\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let hook_rx = RecordingPeer::start();
    let hook_port = hook_rx.port();
    let started = std::time::Instant::now();
    let (prom_port, am_port) = (free_port(), free_port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack");
    let child = Command::new(&script)
        .arg("--host")
        .arg(host.addr.to_string())
        .arg("--prometheus-port")
        .arg(prom_port.to_string())
        .arg("--alertmanager-port")
        .arg(am_port.to_string())
        .arg("--interval")
        .arg("1s")
        .arg("--rules-dir")
        .arg(rules.path())
        .arg("--dir")
        .arg(work.path())
        .arg("--webhook-url")
        .arg(format!("http://127.0.0.1:{hook_port}/hook"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run scripts/stack");
    let mut stack = Stack(child);
    let prom = format!("http://127.0.0.1:{prom_port}");
    let am = format!("http://127.0.0.1:{am_port}");
    let log = |name: &str| std::fs::read_to_string(work.path().join(name)).unwrap_or_default();

    let up = wait_for("up{job=\"homeconsole\"} == 1", WAIT, || {
        let v = get_json(&format!(
            "{prom}/api/v1/query?query=up%7Bjob%3D%22homeconsole%22%7D"
        ))?;
        let r = v["data"]["result"].as_array()?.first()?.clone();
        (r["value"][1] == "1").then_some(r)
    });
    assert_eq!(up["metric"]["instance"], host.addr.to_string(), "{up}");
    eprintln!("stack: up after {:?}", started.elapsed());

    // The shipped rules are loaded and evaluate without errors.
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/prometheus/rules/homeconsole.rules.yml"),
    )
    .unwrap();
    let shipped_alerts: Vec<&str> = shipped
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(!shipped_alerts.is_empty());
    let loaded = wait_for("the shipped rules evaluated", WAIT, || {
        let v = get_json(&format!("{prom}/api/v1/rules"))?;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let all_ok = rules
            .iter()
            .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z");
        (all_ok && rules.len() > shipped_alerts.len()).then_some(rules)
    });
    for name in &shipped_alerts {
        assert!(
            loaded.iter().any(|r| r["name"] == *name),
            "{name} not loaded; prometheus log:\n{}",
            log("prometheus.log")
        );
    }

    eprintln!("stack: rules after {:?}", started.elapsed());
    // A firing alert reaches the shipped Alertmanager.
    let alert = wait_for("StackTestAlert in Alertmanager", WAIT, || {
        let v = get_json(&format!("{am}/api/v2/alerts"))?;
        v.as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "StackTestAlert")
            .cloned()
    });
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical");
    eprintln!("stack: in alertmanager after {:?}", started.elapsed());
    // …and its shipped route delivers it to the receiver's webhook.
    let hook = wait_for("the webhook notification", WAIT, || {
        let r = hook_rx.next_request(Duration::from_millis(200))?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        (v["commonLabels"]["alertname"] == "StackTestAlert").then_some(v)
    });
    assert_eq!(hook["receiver"], "homeconsole-webhook", "{hook}");
    eprintln!("stack: alert delivered after {:?}", started.elapsed());

    // SIGTERM stops the script and both servers.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(stack.0.id().to_string())
        .status();
    let status = stack.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    wait_for("both servers stopped", WAIT, || {
        (get_json(&format!("{prom}/api/v1/status/buildinfo")).is_none()
            && ureq::get(&format!("{am}/-/ready")).call().is_err())
        .then_some(())
    });
}
