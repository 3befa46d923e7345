//! Reading criterion's results back after a run, so a bench can print the
//! ratio of our median to a peer's median measured in the same run (the
//! issue goals are ratios, not absolute figures, on a shared machine).

use std::path::PathBuf;

/// Where criterion wrote its estimates (its own rule, minus `cargo metadata`):
/// `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// workspace's `target/criterion`.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// The median of one benchmark in nanoseconds, if it ran.
pub fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// One line of a ratio table: `ours / peer` in `group`, with the goal shown
/// in brackets (`"<= 1.0"`, or `"-"` for a comparison without a goal).
#[derive(Debug, Clone, Copy)]
pub struct Ratio<'a> {
    /// Criterion group of both benchmarks.
    pub group: &'a str,
    /// Our benchmark's name.
    pub ours: &'a str,
    /// The peer's benchmark's name.
    pub peer: &'a str,
    /// The goal, as printed.
    pub goal: &'a str,
}

/// Prints `title`, then `ours / peer` for every row (from the medians of
/// this run), or says which pair was not measured.
pub fn print_ratios(title: &str, rows: &[Ratio<'_>]) {
    println!("\n{title} (goal in brackets):");
    for r in rows {
        match (median_ns(r.group, r.ours), median_ns(r.group, r.peer)) {
            (Some(a), Some(p)) => println!(
                "  {}: {} {a:.1} ns / {} {p:.1} ns = {:.2} [{}]",
                r.group,
                r.ours,
                r.peer,
                a / p,
                r.goal
            ),
            _ => println!(
                "  {}: {} / {}: not measured in this run",
                r.group, r.ours, r.peer
            ),
        }
    }
}
