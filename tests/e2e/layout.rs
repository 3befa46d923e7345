//! The maps match the house: the README's layout table and
//! docs/ARCHITECTURE.md name every crate and every top-level module of the
//! host and the plugin, every path they name exists, and every code comment
//! that points at a document points at one in the repository (and at a
//! section that exists).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::{read_repo_file, repo_root};

/// The backticked words of `text` that look like repository paths.
fn paths_named(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.contains(' ') && !w.contains('*') && !w.contains('<'))
        .filter(|w| w.ends_with('/') || w.ends_with(".rs") || w.ends_with(".md"))
        .map(str::to_owned)
        .collect()
}

/// The workspace members of the root manifest.
fn members() -> Vec<String> {
    let manifest: toml::Value = toml::from_str(&read_repo_file("Cargo.toml")).unwrap();
    manifest["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

/// The section of `text` from the heading `## {title}` to the next `## `.
fn section<'a>(text: &'a str, title: &str) -> &'a str {
    let start = text
        .find(&format!("## {title}"))
        .unwrap_or_else(|| panic!("no section {title:?}"));
    let rest = &text[start + 3..];
    &text[start..start + 3 + rest.find("\n## ").unwrap_or(rest.len())]
}

/// The entries directly under `dir` (files as `name.rs`, folders as `name/`).
fn entries(dir: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    out.sort();
    out
}

#[test]
fn readme_layout_table_names_every_crate_and_only_real_paths() {
    let table = section(&read_repo_file("README.md"), "Workspace layout").to_owned();
    let named = paths_named(&table);
    for path in &named {
        assert!(
            repo_root().join(path).exists(),
            "README names {path}, which does not exist"
        );
    }
    for member in members() {
        let covered = named
            .iter()
            .any(|p| format!("{member}/").starts_with(p.as_str()));
        assert!(
            covered,
            "README's layout table does not cover the crate {member}"
        );
    }
}

#[test]
fn architecture_names_every_module_and_only_real_paths() {
    let doc = read_repo_file("docs/ARCHITECTURE.md");
    let known = source_paths();
    for path in paths_named(&doc) {
        let found = repo_root().join(&path).exists()
            || repo_root().join("docs").join(&path).exists()
            || known.iter().any(|k| {
                k == path.trim_end_matches('/')
                    || k.ends_with(&format!("/{}", path.trim_end_matches('/')))
            });
        assert!(
            found,
            "docs/ARCHITECTURE.md names {path}, which does not exist"
        );
    }
    for (dir, title) in [
        ("host-harness/src", "host-harness/src"),
        ("monitoring-plugin/src", "monitoring-plugin/src"),
    ] {
        let part = section(&doc, "2. Layout");
        let part = &part[part.find(&format!("### {title}")).expect(title)..];
        let part = &part[..part[4..].find("### ").map_or(part.len(), |i| i + 4)];
        for entry in entries(dir) {
            assert!(
                part.contains(&format!("`{entry}`")),
                "docs/ARCHITECTURE.md's layout of {dir} does not name {entry}"
            );
        }
    }
}

/// Every file and folder under the crates' `src/` directories, relative to
/// the repository (so a map may name `plugins/breaker.rs` or `breaker.rs`).
fn source_paths() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
            let path = e.path();
            out.push(
                path.strip_prefix(repo_root())
                    .unwrap()
                    .display()
                    .to_string(),
            );
            if e.file_type().unwrap().is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    for dir in [
        "plugin-abi/src",
        "host-harness/src",
        "monitoring-plugin/src",
        "test-support/src",
    ] {
        walk(&repo_root().join(dir), &mut out);
    }
    out
}

/// Every `.rs` file of the workspace's crates (not `target/`).
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
            let path = e.path();
            let name = e.file_name();
            if name == "target" || name == "node_modules" || name.to_string_lossy().starts_with('.')
            {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in [
        "plugin-abi",
        "host-harness",
        "monitoring-plugin",
        "example-plugins",
        "test-support",
        "tests",
    ] {
        walk(&repo_root().join(dir), &mut out);
    }
    out
}

#[test]
fn code_points_only_at_documents_and_sections_that_exist() {
    let architecture = read_repo_file("docs/ARCHITECTURE.md");
    let headings: Vec<String> = architecture
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.to_lowercase())
        .collect();
    let mut checked = 0;
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file
            .strip_prefix(repo_root())
            .unwrap_or(&file)
            .display()
            .to_string();
        assert!(
            !text.contains(&["DESIGN", ".md"].concat()),
            "{shown} cites a design file that is not in the repository"
        );
        for (at, _) in text.match_indices("docs/") {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/_-.".contains(c)))
                .unwrap_or(rest.len());
            let cited = rest[..end].trim_end_matches('.');
            if !cited.ends_with(".md") {
                continue;
            }
            checked += 1;
            assert!(
                repo_root().join(cited).exists(),
                "{shown} cites {cited}, which does not exist"
            );
            if cited == "docs/ARCHITECTURE.md" {
                let after = &rest[end..];
                if let Some(name) = after
                    .strip_prefix(", section '")
                    .and_then(|s| s.split('\'').next())
                {
                    let name = name.to_lowercase();
                    assert!(
                        headings.iter().any(|h| h.contains(&name)),
                        "{shown} cites the section {name:?} of docs/ARCHITECTURE.md, which has none"
                    );
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no source cites a document: the scan is broken"
    );
}
