//! The documentation is checked against the real thing: every metric family
//! a scrape of the harness exposes is documented in docs/MONITORING.md, and
//! every family the docs list is registered by the plugin (or is a standard
//! process metric the scrape shows).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::support::{sample, wait_for, TestHost, DEMO, MONITORING};

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

/// The shell commands of one Markdown file's `sh` blocks that talk to the
/// host (`curl … localhost:8000 …`), each with its continuation lines (a
/// trailing `\` or a quote still open).
pub(crate) fn curl_commands(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            current = None;
            continue;
        }
        if !in_sh {
            continue;
        }
        let cmd = match current.take() {
            Some(mut c) => {
                c.push('\n');
                c.push_str(line);
                c
            }
            None if line.starts_with("curl ") => line.to_owned(),
            None => continue,
        };
        let open_quote = cmd.matches('\'').count() % 2 == 1;
        if line.trim_end().ends_with('\\') || open_quote {
            current = Some(cmd);
        } else if cmd.contains("localhost:8000") {
            out.push(cmd);
        }
    }
    out
}

/// Runs one documented command with the real `sh` against `host` (its
/// `localhost:8000` replaced by the host's address); it must succeed and
/// print something. Returns what it printed.
pub(crate) fn run_documented(host: &TestHost, command: &str) -> String {
    let command = command.replace("localhost:8000", &host.addr.to_string());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !stdout.trim().is_empty(),
        "{command}\n{:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The README's commands and every documented call of a service (the
/// examples the JSON-only rule changed) run with the real `curl` against a
/// real host: each succeeds and none answers an error body.
#[test]
fn readme_and_documented_service_calls_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let mut commands = curl_commands(&read("README.md"));
    assert!(
        commands
            .iter()
            .any(|c| c.contains("-XPOST") && c.contains("demo.light.toggle")),
        "{commands:?}"
    );
    for doc in [
        "docs/MONITORING.md",
        "docs/errors.md",
        "docs/tracing.md",
        "docs/alerting.md",
        "docs/profiling.md",
    ] {
        commands.extend(
            curl_commands(&read(doc))
                .into_iter()
                // Placeholders (`<span_id>`, `$ADMIN`) are not runnable as written.
                .filter(|c| {
                    c.contains("/api/v1/services/") && !c.contains('<') && !c.contains('$')
                }),
        );
    }
    assert!(commands.len() >= 10, "{commands:?}");
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[plugins.demo-devices]\ninterval_ms = 0")
        .start();
    for command in &commands {
        let stdout = run_documented(&host, command);
        assert!(
            !stdout.contains(r#"{"error":{"#),
            "{command}\nanswered an error: {stdout}"
        );
    }
    // Piped examples hide the body: count the toggles that really ran.
    let toggles = commands
        .iter()
        .filter(|c| c.contains("services/demo.light.toggle"))
        .count() as f64;
    wait_for(
        "the documented toggles observed",
        Duration::from_secs(10),
        || {
            let ok = sample(
                &host.metrics(),
                "homeconsole_service_calls_total",
                &[("service_name", "demo.light.toggle"), ("status", "ok")],
            );
            (ok == Some(toggles)).then_some(())
        },
    );
}
