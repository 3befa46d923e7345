//! What one PromQL query may cost, and the checks that enforce it.
//!
//! A query comes from an unauthenticated HTTP caller or from a rule file, so its
//! cost must be bounded the way Prometheus bounds it (`--query.max-samples`,
//! `--query.timeout`), and more: the plugin shares its process with the host and
//! every other plugin, so a stack overflow in the parser or the evaluator would
//! kill them all. Hence, in order:
//!
//! 1. [`check_text`]: the query's length and nesting depth, found by a cheap scan
//!    that respects string literals, before any parsing;
//! 2. [`on_query_stack`]: parsing and evaluation run on a thread whose stack size
//!    is chosen so that even a query just under the depth limit cannot overflow;
//! 3. [`Budget`]: the evaluator counts every sample it touches (selectors, range
//!    functions, subqueries, the points of a range query) against `max_samples`
//!    and checks the deadline as it goes, so an over-budget or late query stops
//!    computing instead of running on after its caller gave up.

use std::cell::Cell;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::PromqlError;

/// Stack size of the thread that parses and evaluates queries (64 MiB of
/// address space; only the pages a query touches are ever committed).
pub const QUERY_STACK_BYTES: usize = 64 << 20;

/// Query cost settings (`[plugins.monitoring.query]`), named after Prometheus's
/// `--query.*` flags.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryLimits {
    /// Longest query text accepted, bytes (default 16384).
    pub max_query_length: usize,
    /// Deepest nesting accepted: brackets plus operators, the most a parse tree
    /// can nest (default 256).
    pub max_nesting_depth: usize,
    /// Most samples one query may touch: every sample read by a selector or a
    /// range function, every point of a subquery and of a range query
    /// (default 5,000,000, like `--query.max-samples` but counted cumulatively).
    pub max_samples: u64,
    /// Deadline of one query, seconds (default 3; it must stay below the host's
    /// callback deadline, 5 s by default, so the plugin answers first).
    pub timeout_secs: f64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_query_length: 16 * 1024,
            max_nesting_depth: 256,
            max_samples: 5_000_000,
            timeout_secs: 3.0,
        }
    }
}

/// Most nesting a configuration may allow (the query stack is sized for it).
pub const MAX_NESTING_LIMIT: usize = 1_000;

impl QueryLimits {
    /// Checks the settings; the error names the offending key.
    pub fn check(&self) -> Result<(), String> {
        let bad = |m: &str| Err(format!("invalid monitoring config: query.{m}"));
        if self.max_query_length == 0 || self.max_query_length > 1 << 20 {
            return bad("max_query_length must be in 1..=1048576");
        }
        if self.max_nesting_depth == 0 || self.max_nesting_depth > MAX_NESTING_LIMIT {
            return bad("max_nesting_depth must be in 1..=1000");
        }
        if self.max_samples == 0 {
            return bad("max_samples must be > 0");
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0 && self.timeout_secs <= 600.0)
        {
            return bad("timeout_secs must be in (0, 600]");
        }
        Ok(())
    }

    /// The deadline as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }
}

/// Checks length and nesting depth of `text` before it is parsed.
///
/// The depth counted is an upper bound of the parse tree's depth: the deepest
/// bracket nesting (`(`, `[`, `{`) plus every operator (a chain `1+1+…` or
/// `- - - 1` nests without brackets). String literals (`"…"`, `'…'`, `` `…` ``)
/// and comments are skipped.
pub fn check_text(text: &str, limits: &QueryLimits) -> Result<(), PromqlError> {
    if text.len() > limits.max_query_length {
        return Err(PromqlError::Limit(format!(
            "query is {} bytes long, more than the limit of {} (max_query_length)",
            text.len(),
            limits.max_query_length
        )));
    }
    let depth = nesting_depth(text);
    if depth > limits.max_nesting_depth {
        return Err(PromqlError::Limit(format!(
            "query nests {depth} levels deep (brackets plus operators), more than the limit of {} (max_nesting_depth)",
            limits.max_nesting_depth
        )));
    }
    Ok(())
}

/// Deepest bracket nesting plus the number of operators in `text`.
pub fn nesting_depth(text: &str) -> usize {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut max_depth = 0usize;
    let mut operators = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => {
                operators += 1;
                // `==`, `!=`, `>=`, `<=`, `=~`, `!~` count once.
                if b.get(i + 1).is_some_and(|n| matches!(n, b'=' | b'~')) {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &text[start..i];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    operators += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    max_depth.saturating_add(operators)
}

/// Runs `f` on a thread whose stack is [`QUERY_STACK_BYTES`], and waits for it.
/// A panic inside `f` comes back as an error instead of unwinding further.
pub fn on_query_stack<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, PromqlError> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("promql".into())
            .stack_size(QUERY_STACK_BYTES)
            .spawn_scoped(s, f)
            .map_err(|e| PromqlError::Eval(format!("cannot start the query thread: {e}")))?;
        handle
            .join()
            .map_err(|_| PromqlError::Eval("the query evaluation panicked".into()))
    })
}

/// Why an evaluation was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// The samples budget ran out.
    Samples,
    /// The deadline passed.
    Timeout,
}

/// The cost budget of one query: samples left and a deadline.
#[derive(Debug)]
pub struct Budget {
    max_samples: u64,
    used: Cell<u64>,
    deadline: Instant,
    checks: Cell<u32>,
}

impl Budget {
    /// A budget starting now.
    pub fn new(limits: &QueryLimits) -> Self {
        Budget {
            max_samples: limits.max_samples,
            used: Cell::new(0),
            deadline: Instant::now() + limits.timeout(),
            checks: Cell::new(0),
        }
    }

    /// Samples counted so far.
    pub fn used(&self) -> u64 {
        self.used.get()
    }

    /// Counts `n` samples touched; fails when the budget is exceeded. Also
    /// checks the deadline every so often.
    pub fn take(&self, n: u64) -> Result<(), PromqlError> {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        if used > self.max_samples {
            return Err(PromqlError::TooManySamples(self.max_samples));
        }
        self.tick()
    }

    /// Checks the deadline (cheaply: the clock is read every 64th call).
    pub fn tick(&self) -> Result<(), PromqlError> {
        let c = self.checks.get().wrapping_add(1);
        self.checks.set(c);
        if c % 64 == 0 {
            self.check_deadline()
        } else {
            Ok(())
        }
    }

    /// Checks the deadline now.
    pub fn check_deadline(&self) -> Result<(), PromqlError> {
        if Instant::now() >= self.deadline {
            Err(PromqlError::Timeout)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_and_operators_not_strings() {
        assert_eq!(nesting_depth("up"), 0);
        assert_eq!(nesting_depth("sum(rate(x[5m]))"), 3);
        assert_eq!(nesting_depth("1+1+1"), 2);
        assert_eq!(nesting_depth("x{a=\"(((((\"}"), 2);
        assert_eq!(nesting_depth("x{a!=\"b\"} and y"), 3);
        assert_eq!(nesting_depth("- - -1"), 3);
        let deep = format!("{}1{}", "(".repeat(300), ")".repeat(300));
        let e = check_text(&deep, &QueryLimits::default()).unwrap_err();
        assert!(e.to_string().contains("max_nesting_depth"), "{e}");
        let long = "1+".repeat(10_000) + "1";
        let e = check_text(&long, &QueryLimits::default()).unwrap_err();
        assert!(e.to_string().contains("max_query_length"), "{e}");
    }

    #[test]
    fn budget_counts_and_times_out() {
        let b = Budget::new(&QueryLimits {
            max_samples: 10,
            ..QueryLimits::default()
        });
        b.take(10).unwrap();
        assert_eq!(b.take(1), Err(PromqlError::TooManySamples(10)));
        let late = Budget::new(&QueryLimits {
            timeout_secs: 1e-9,
            ..QueryLimits::default()
        });
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(late.check_deadline(), Err(PromqlError::Timeout));
    }

    #[test]
    fn the_plugin_config_section_is_read_and_checked() {
        use crate::config::MonitoringConfig;
        let c = MonitoringConfig::from_json("{}").unwrap();
        assert_eq!(c.query, QueryLimits::default());
        assert!(
            c.query.timeout_secs < 5.0,
            "below the host's callback deadline"
        );
        let c = MonitoringConfig::from_json(
            r#"{"query": {"max_samples": 10, "timeout_secs": 0.5, "max_query_length": 100, "max_nesting_depth": 10}}"#,
        )
        .unwrap();
        assert_eq!(c.query.max_samples, 10);
        assert_eq!(c.query.max_nesting_depth, 10);
        for bad in [
            r#"{"query": {"max_samples": 0}}"#,
            r#"{"query": {"max_nesting_depth": 5000}}"#,
            r#"{"query": {"timeout": 3}}"#,
        ] {
            let e = MonitoringConfig::from_json(bad).unwrap_err();
            assert!(
                e.contains("query") || e.contains("unknown field"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(QueryLimits::default().check().is_ok());
        for bad in [
            QueryLimits {
                max_nesting_depth: 0,
                ..QueryLimits::default()
            },
            QueryLimits {
                timeout_secs: 0.0,
                ..QueryLimits::default()
            },
            QueryLimits {
                max_samples: 0,
                ..QueryLimits::default()
            },
        ] {
            assert!(bad.check().unwrap_err().contains("query."));
        }
    }
}
