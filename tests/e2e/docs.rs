//! The documentation is checked against the real thing: every metric family
//! a scrape of the harness exposes is documented in docs/MONITORING.md, and
//! every family the docs list is registered by the plugin (or is a standard
//! process metric the scrape shows).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::support::{wait_for, TestHost, DEMO, MONITORING};

fn documented() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/MONITORING.md");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
        .filter(|name| name.starts_with("homeconsole_") || name.starts_with("process_"))
        .filter(|name| {
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_exported_metric_is_documented_and_vice_versa() {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[plugins.demo-devices]\ninterval_ms = 0")
        .start();
    host.call("demo.light.toggle", &json!({"device": "light1"}));
    host.call("demo.fail", &json!({}));
    host.get("/api/v1/monitoring/health?refresh=true");
    let text = wait_for("service calls observed", Duration::from_secs(10), || {
        let t = host.metrics();
        t.contains("homeconsole_service_calls_total{").then_some(t)
    });
    let docs = documented();
    // Custom metrics recorded by plugins (the demo's) are not the host's to document.
    let scraped: BTreeSet<String> = exposed(&text)
        .into_iter()
        .filter(|n| !n.starts_with("demo_"))
        .collect();
    let undocumented: Vec<&String> = scraped.difference(&docs).collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/MONITORING.md: {undocumented:?}"
    );

    let status = host.get("/api/v1/monitoring/status").json();
    let registered: BTreeSet<String> = status["metric_families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .chain(scraped.iter().cloned())
        .collect();
    let stale: Vec<&String> = docs.difference(&registered).collect();
    assert!(
        stale.is_empty(),
        "documented but not exported by the plugin: {stale:?}"
    );
}
