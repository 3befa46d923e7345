//! Runs Prometheus' own checker, `promtool`, on what the tests produce:
//! exposition text (`check metrics`), rule files (`check rules`) and rule
//! unit-test files (`test rules`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The `promtool` binary, found on `PATH`.
#[derive(Debug, Clone, Copy)]
pub struct Promtool(());

/// What one `promtool` run said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromtoolOutput {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl PromtoolOutput {
    fn from_output(out: Output) -> PromtoolOutput {
        PromtoolOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Whether promtool exited with 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Standard output followed by standard error.
    pub fn report(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Promtool {
    /// `Some` when `promtool --version` runs here.
    pub fn find() -> Option<Promtool> {
        crate::skip::installed("promtool").then_some(Promtool(()))
    }

    /// `promtool check metrics` on exposition `text` (given on stdin).
    #[track_caller]
    pub fn check_metrics(&self, text: &str) -> PromtoolOutput {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool check metrics");
        let mut stdin = child.stdin.take().expect("promtool stdin");
        // promtool may exit early on bad input: a broken pipe is its answer.
        let _ = stdin.write_all(text.as_bytes());
        drop(stdin);
        PromtoolOutput::from_output(child.wait_with_output().expect("wait for promtool"))
    }

    /// `promtool check rules FILE`.
    #[track_caller]
    pub fn check_rules(&self, file: &Path) -> PromtoolOutput {
        self.run(&["check", "rules"], file, None)
    }

    /// `promtool test rules FILE`, run in `dir` (the test files name their
    /// rule files relative to it).
    #[track_caller]
    pub fn test_rules(&self, file: &Path, dir: &Path) -> PromtoolOutput {
        self.run(&["test", "rules"], file, Some(dir))
    }

    #[track_caller]
    fn run(&self, args: &[&str], file: &Path, dir: Option<&Path>) -> PromtoolOutput {
        let mut command = Command::new("promtool");
        command.args(args).arg(file);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("run promtool {}: {e}", args.join(" ")));
        PromtoolOutput::from_output(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_metrics_accepts_clean_text_and_reports_a_bad_one() {
        crate::require_binary!("promtool");
        let p = Promtool::find().expect("installed");
        let ok = p.check_metrics("# HELP up_total Ups.\n# TYPE up_total counter\nup_total 1\n");
        assert_eq!((ok.code, ok.report().as_str()), (0, ""), "{ok:?}");
        let bad = p.check_metrics("# TYPE x counter\nx{ 1\n");
        assert!(!bad.success(), "{bad:?}");
        assert!(!bad.report().is_empty());
    }

    #[test]
    fn check_rules_reads_the_file_it_is_given() {
        crate::require_binary!("promtool");
        let p = Promtool::find().expect("installed");
        let dir = std::env::temp_dir().join(format!("test-support-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yml");
        std::fs::write(
            &good,
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n",
        )
        .unwrap();
        let bad = dir.join("bad.yml");
        std::fs::write(
            &bad,
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n",
        )
        .unwrap();
        let ok = p.check_rules(&good);
        let refused = p.check_rules(&bad);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(ok.success(), "{ok:?}");
        assert!(ok.stdout.contains("SUCCESS: 1 rules found"), "{ok:?}");
        assert!(!refused.success(), "{refused:?}");
    }
}
