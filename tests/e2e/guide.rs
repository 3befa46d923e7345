//! docs/instrument-your-plugin.md stays true: every excerpt it shows is the
//! lines of the file it names (together they cover the whole example
//! plugin), its `Cargo.toml` has `plugin-abi` as the only ABI dependency and
//! the example's dependencies, and its `curl` commands run against a real
//! host with the example loaded and answer what the page says.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::docs::{curl_commands, run_documented};
use crate::support::{read_repo_file, sample, wait_for, TestHost, MONITORING};

const GUIDE: &str = "docs/instrument-your-plugin.md";
const EXAMPLE: &str = "example-plugins/hello-observability/src/lib.rs";

/// One `<!-- code: FILE A-B -->` marker and the fenced block after it.
struct Excerpt {
    file: String,
    first: usize,
    last: usize,
    shown: Vec<String>,
}

fn excerpts(markdown: &str) -> Vec<Excerpt> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line
            .strip_prefix("<!-- code: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let (file, range) = rest.split_once(' ').expect("marker: FILE A-B");
        let (a, b) = range.split_once('-').expect("marker range A-B");
        assert!(
            lines[i + 1].starts_with("```"),
            "a fenced block follows {line}"
        );
        let shown = lines[i + 2..]
            .iter()
            .take_while(|l| !l.starts_with("```"))
            .map(|l| (*l).to_owned())
            .collect();
        out.push(Excerpt {
            file: file.to_owned(),
            first: a.parse().unwrap(),
            last: b.parse().unwrap(),
            shown,
        });
    }
    out
}

#[test]
fn the_guides_excerpts_are_the_lines_they_name_and_show_the_whole_example() {
    let all = excerpts(&read_repo_file(GUIDE));
    assert!(all.len() >= 5, "{} excerpts", all.len());
    for e in &all {
        let source = read_repo_file(&e.file);
        let lines: Vec<&str> = source.lines().collect();
        assert!(
            e.first >= 1 && e.last <= lines.len(),
            "{} has {} lines",
            e.file,
            lines.len()
        );
        assert_eq!(
            e.shown,
            lines[e.first - 1..e.last],
            "{GUIDE}: the excerpt of {} lines {}-{} is stale; show the current lines \
             and fix the marker",
            e.file,
            e.first,
            e.last
        );
    }
    // Every non-blank line after the module comment is shown somewhere.
    let source = read_repo_file(EXAMPLE);
    let first_code = source
        .lines()
        .position(|l| !l.starts_with("//!") && !l.is_empty())
        .unwrap()
        + 1;
    let shown: BTreeSet<usize> = all
        .iter()
        .filter(|e| e.file == EXAMPLE)
        .flat_map(|e| e.first..=e.last)
        .collect();
    let missing: Vec<usize> = source
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(n, l)| *n >= first_code && !l.trim().is_empty() && !shown.contains(n))
        .map(|(n, _)| n)
        .collect();
    assert!(
        missing.is_empty(),
        "{EXAMPLE} lines not in {GUIDE}: {missing:?}"
    );
}

/// The dependency names of a manifest's `[dependencies]` table.
fn dependencies(manifest: &toml::Value) -> BTreeSet<String> {
    manifest["dependencies"]
        .as_table()
        .expect("[dependencies]")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_guides_cargo_toml_depends_on_plugin_abi_alone_for_the_abi() {
    let guide = read_repo_file(GUIDE);
    let block: String = guide
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block")
        .to_owned();
    let shown: toml::Value = toml::from_str(&block).expect("the guide's Cargo.toml parses");
    let example: toml::Value = toml::from_str(&read_repo_file(
        "example-plugins/hello-observability/Cargo.toml",
    ))
    .unwrap();
    let deps = dependencies(&shown);
    assert!(deps.contains("plugin-abi"), "{deps:?}");
    assert!(!deps.contains("abi_stable"), "{deps:?}");
    assert_eq!(deps, dependencies(&example), "same as the example's");
    assert_eq!(shown["lib"]["crate-type"], example["lib"]["crate-type"]);
    assert_eq!(shown["package"]["name"], example["package"]["name"]);
}

/// What the page says a command prints: the `# …` line after it, when it is
/// complete JSON (`...` marks an abridged answer, not checked).
fn expected_answers(markdown: &str) -> Vec<(String, Value)> {
    let lines: Vec<&str> = markdown.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("curl ") || w[0].starts_with("  -d "))
        .filter_map(|w| {
            let answer = w[1].strip_prefix("# ")?;
            let value: Value = serde_json::from_str(answer).ok()?;
            let body = w[0].rsplit_once("-d '")?.1.trim_end_matches('\'');
            Some((body.to_owned(), value))
        })
        .collect()
}

#[test]
fn the_guides_commands_run_against_a_host_with_the_example() {
    let guide = read_repo_file(GUIDE);
    let commands = curl_commands(&guide);
    assert!(commands.len() >= 6, "{commands:?}");
    let expected = expected_answers(&guide);
    assert!(expected.len() >= 2, "{expected:?}");
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin("hello_observability")
        .start();
    // The page's commands read what earlier ones caused (metrics, spans);
    // the health check and the handles need the provider installed first.
    wait_for(
        "the example's health check",
        Duration::from_secs(10),
        || {
            let h = host.get("/api/v1/monitoring/health?refresh=true").json();
            (h["checks"]["custom"]["hello"]["status"] == "healthy").then_some(())
        },
    );
    for command in &commands {
        let stdout = run_documented(&host, command);
        let refused = command.contains(r#""name":"error""#);
        assert_eq!(
            stdout.contains(r#"{"error":{"#),
            refused,
            "{command}\nanswered: {stdout}"
        );
        if let Some((_, want)) = expected.iter().find(|(body, _)| command.contains(body)) {
            let got: Value = serde_json::from_str(&stdout).expect("a JSON answer");
            assert_eq!(&got, want, "{command}");
        }
    }
    // What the page says the reader will see.
    let text = host.metrics();
    assert_eq!(
        sample(&text, "hello_greetings_total", &[("outcome", "ok")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "demo_light_on",
            &[("device", "light1"), ("plugin", "http")]
        ),
        Some(1.0)
    );
}
