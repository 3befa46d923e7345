//! PromQL as Prometheus 2.42 evaluates it (float samples), over the in-process
//! [`SampleStore`].
//!
//! Rules must behave exactly as they would in Prometheus (the same rule file
//! moves to a real Prometheus unchanged), and the query API lets Grafana and
//! the dashboard chart the host with no TSDB. Expressions are parsed and
//! type-checked by `promql-parser` ([`parse_with`] bounds their length and
//! nesting first), converted into the tree of [`ast`], and evaluated by
//! [`eval`] with [`functions`], [`aggregate`] and [`binary`], every query
//! within its [`limits`].
//!
//! Everything of 2.42's PromQL for float samples is here: all functions,
//! aggregations with their parameters, binary operators with `bool`, set
//! operators, one-to-one, many-to-one and one-to-many matching with
//! `on`/`ignoring`/`group_left`/`group_right`, subqueries, `offset`
//! (negative too) and `@` (with `start()`/`end()`). Semantics follow 2.42:
//! range selectors are closed intervals, the 5 m lookback is inclusive and
//! staleness markers end a series. Native histograms are not stored, so the
//! native-histogram functions find none.

use promql_parser::parser as pp;

use super::samples::{Labels, SampleStore, SeriesData};

pub mod aggregate;
pub mod ast;
pub mod binary;
pub mod eval;
pub mod functions;
pub mod limits;
pub mod numeric;

pub use ast::{AggOp, At, BinOp, Card, Expr, Func, Grouping, Matching, Selector, ValueKind};
pub use limits::{check_text, on_query_stack, Budget, QueryLimits};

use eval::Evaluator;

/// How far back an instant selector looks for a sample (Prometheus default, 5 m).
pub const LOOKBACK_MS: i64 = 300_000;

/// Step of subqueries that name none, when the caller gives no evaluation
/// interval (Prometheus's default `evaluation_interval`, 1 m).
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Errors from parsing, checking or evaluating an expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromqlError {
    /// The text is not valid PromQL (as Prometheus 2.42 parses it).
    #[error("parse error: {0}")]
    Parse(String),
    /// An evaluation error (e.g. many-to-many matching), as Prometheus reports it.
    #[error("evaluation error: {0}")]
    Eval(String),
    /// The query text is longer or nests deeper than the configured limits.
    #[error("{0}")]
    Limit(String),
    /// The query touched more samples than `max_samples` allows (the budget).
    #[error(
        "query processing would load too many samples into memory in query execution \
         (the budget is max_samples = {0} per query)"
    )]
    TooManySamples(u64),
    /// The query ran past its deadline and was stopped.
    #[error("query timed out in expression evaluation")]
    Timeout,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// Labels (with `__name__` where Prometheus keeps it).
    pub labels: Labels,
    /// Value.
    pub value: f64,
}

/// The result of an instant evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar.
    Scalar(f64),
    /// An instant vector.
    Vector(Vec<VectorSample>),
    /// A range vector (from a top-level range selector or subquery).
    Matrix(Vec<SeriesData>),
    /// A string.
    String(String),
}

/// Parses and checks `expr` within the default [`QueryLimits`].
pub fn parse_supported(expr: &str) -> Result<Expr, PromqlError> {
    parse_with(expr, &QueryLimits::default())
}

/// Checks `expr` against `limits` (length, nesting), then parses and checks it
/// on the query thread (see [`on_query_stack`]).
pub fn parse_with(expr: &str, limits: &QueryLimits) -> Result<Expr, PromqlError> {
    check_text(expr, limits)?;
    on_query_stack(|| parse_here(expr, limits))?
}

/// [`parse_with`] on the calling thread: for callers already on the query thread.
pub fn parse_here(expr: &str, limits: &QueryLimits) -> Result<Expr, PromqlError> {
    check_text(expr, limits)?;
    ast::register_legacy_functions();
    let ast = pp::parse(expr).map_err(PromqlError::Parse)?;
    ast::convert(&ast)
}

/// Evaluates `expr` at `ts_ms` over `samples` within the default [`QueryLimits`],
/// on the query thread.
pub fn eval_instant(expr: &Expr, ts_ms: i64, samples: &SampleStore) -> Result<Value, PromqlError> {
    let limits = QueryLimits::default();
    on_query_stack(|| eval_instant_in(expr, ts_ms, samples, &Budget::new(&limits)))?
}

/// Evaluates `expr` at `ts_ms` over `samples` on the calling thread, charging
/// `budget`; subqueries without a step use [`DEFAULT_SUBQUERY_STEP_MS`]. The
/// caller runs it on a thread with enough stack (see [`on_query_stack`]);
/// expressions from [`parse_with`] nest at most `max_nesting_depth` levels.
pub fn eval_instant_in(
    expr: &Expr,
    ts_ms: i64,
    samples: &SampleStore,
    budget: &Budget,
) -> Result<Value, PromqlError> {
    eval_instant_step(expr, ts_ms, samples, budget, DEFAULT_SUBQUERY_STEP_MS)
}

/// [`eval_instant_in`] with the evaluation interval `step_ms` (the default
/// step of subqueries; a rule group's interval).
pub fn eval_instant_step(
    expr: &Expr,
    ts_ms: i64,
    samples: &SampleStore,
    budget: &Budget,
    step_ms: i64,
) -> Result<Value, PromqlError> {
    let ev = Evaluator {
        samples,
        budget,
        start_ms: ts_ms,
        end_ms: ts_ms,
        default_step_ms: step_ms,
    };
    ev.eval(expr, ts_ms)
}

/// Evaluates `expr` at every `step_ms` from `start_ms` to `end_ms` (inclusive), as a
/// Prometheus range query, within the default [`QueryLimits`], on the query thread.
/// Scalars become one series without labels.
pub fn eval_range(
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    samples: &SampleStore,
) -> Result<Vec<SeriesData>, PromqlError> {
    let limits = QueryLimits::default();
    on_query_stack(|| {
        eval_range_in(
            expr,
            start_ms,
            end_ms,
            step_ms,
            samples,
            &Budget::new(&limits),
        )
    })?
}

/// [`eval_range`] on the calling thread, charging `budget` (every point of the
/// result counts as a sample, on top of what the steps read).
pub fn eval_range_in(
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    samples: &SampleStore,
    budget: &Budget,
) -> Result<Vec<SeriesData>, PromqlError> {
    if step_ms <= 0 {
        return Err(PromqlError::Eval(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end_ms < start_ms {
        return Err(PromqlError::Eval(
            "end timestamp must not be before start time".into(),
        ));
    }
    match expr.kind() {
        ValueKind::Matrix => {
            return Err(PromqlError::Eval(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
            ))
        }
        ValueKind::String => {
            return Err(PromqlError::Eval(
                "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
            ))
        }
        _ => {}
    }
    if (end_ms - start_ms) / step_ms > 11_000 {
        return Err(PromqlError::Eval(
            "exceeded maximum resolution of 11,000 points per timeseries".into(),
        ));
    }
    let ev = Evaluator {
        samples,
        budget,
        start_ms,
        end_ms,
        default_step_ms: step_ms,
    };
    let mut index: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
    let mut out: Vec<SeriesData> = Vec::new();
    let mut ts = start_ms;
    while ts <= end_ms {
        let points = match ev.eval(expr, ts)? {
            Value::Scalar(v) => vec![VectorSample {
                labels: Labels::default(),
                value: v,
            }],
            Value::Vector(v) => v,
            Value::Matrix(_) | Value::String(_) => Vec::new(),
        };
        budget.take(points.len() as u64)?;
        budget.check_deadline()?;
        for p in points {
            let i = *index.entry(p.labels.clone()).or_insert_with(|| {
                out.push(SeriesData {
                    labels: p.labels.clone(),
                    samples: Vec::new(),
                });
                out.len() - 1
            });
            out[i].samples.push((ts, p.value));
        }
        ts += step_ms;
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::samples::SampleStoreConfig;
    use super::*;

    fn hist() -> SampleStore {
        let h = SampleStore::new(SampleStoreConfig::default());
        for i in 0..=20i64 {
            let t = i * 15_000;
            h.append(
                &Labels::with_name("c", &[("a".into(), "1".into())]),
                t,
                (i * 10) as f64,
            );
            h.append(
                &Labels::with_name("c", &[("a".into(), "2".into())]),
                t,
                (i * 20) as f64,
            );
        }
        h
    }

    fn vec_of(v: Value) -> Vec<VectorSample> {
        match v {
            Value::Vector(v) => v,
            other => panic!("not a vector: {other:?}"),
        }
    }

    #[test]
    fn refuses_what_prometheus_2_42_refuses() {
        let cases = [
            (
                "sort_by_label(up, \"a\")",
                "unknown function with name \"sort_by_label\"",
            ),
            ("limitk(3, up)", "unknown aggregation operator"),
            (
                "1 > 2",
                "comparisons between scalars must use BOOL modifier",
            ),
            ("rate(up)", "expected type matrix"),
            (
                "up + on(a) group_left(a) up",
                "must not occur in ON and GROUP clause at once",
            ),
            ("up and 1", "set operator"),
            ("topk(up, up)", "expected type scalar"),
        ];
        for (e, msg) in cases {
            let err = parse_supported(e).unwrap_err().to_string();
            assert!(err.contains(msg), "{e}: {err}");
        }
        assert!(matches!(parse_supported("up{"), Err(PromqlError::Parse(_))));
    }

    #[test]
    fn subqueries_are_charged_to_the_budget_and_stop_at_the_deadline() {
        let h = hist();
        // 1 h at a 1 ms step: 3.6 million inner evaluations.
        let e = parse_supported("max_over_time(c[1h:1ms])").unwrap();
        let limits = QueryLimits {
            max_samples: 100_000,
            ..QueryLimits::default()
        };
        let err = eval_instant_in(&e, 300_000, &h, &Budget::new(&limits)).unwrap_err();
        assert_eq!(err, PromqlError::TooManySamples(100_000));
        let late = QueryLimits {
            timeout_secs: 1e-9,
            max_samples: u64::MAX,
            ..QueryLimits::default()
        };
        let budget = Budget::new(&late);
        std::thread::sleep(std::time::Duration::from_millis(1));
        let e = parse_supported("max_over_time(nothing[1h:1ms])").unwrap();
        assert_eq!(
            eval_instant_in(&e, 300_000, &h, &budget).unwrap_err(),
            PromqlError::Timeout
        );
    }

    #[test]
    fn same_labelset_after_dropping_the_name_is_refused() {
        let h = SampleStore::new(SampleStoreConfig::default());
        for name in ["x", "y"] {
            h.append(
                &Labels::with_name(name, &[("a".into(), "1".into())]),
                0,
                1.0,
            );
        }
        let run = |q: &str| {
            let e = parse_supported(q).unwrap();
            eval_instant(&e, 0, &h)
        };
        for q in [
            "abs({__name__=~\"x|y\"})",
            "{__name__=~\"x|y\"} * 1",
            "{__name__=~\"x|y\"} > bool 0",
            "-{__name__=~\"x|y\"}",
            "label_replace({__name__=~\"x|y\"}, \"__name__\", \"z\", \"a\", \".*\")",
        ] {
            let err = run(q).unwrap_err().to_string();
            assert!(err.contains("same labelset"), "{q}: {err}");
        }
        for q in ["abs(x)", "{__name__=~\"x|y\"} > 0", "x + y", "x or y"] {
            assert!(run(q).is_ok(), "{q}");
        }
    }

    #[test]
    fn every_2_42_function_parses() {
        for name in [
            "abs",
            "absent",
            "absent_over_time",
            "acos",
            "acosh",
            "asin",
            "asinh",
            "atan",
            "atanh",
            "avg_over_time",
            "ceil",
            "changes",
            "clamp",
            "clamp_max",
            "clamp_min",
            "cos",
            "cosh",
            "count_over_time",
            "days_in_month",
            "day_of_month",
            "day_of_week",
            "day_of_year",
            "deg",
            "delta",
            "deriv",
            "exp",
            "floor",
            "histogram_count",
            "histogram_sum",
            "histogram_fraction",
            "histogram_quantile",
            "holt_winters",
            "hour",
            "idelta",
            "increase",
            "irate",
            "label_replace",
            "label_join",
            "last_over_time",
            "ln",
            "log10",
            "log2",
            "max_over_time",
            "min_over_time",
            "minute",
            "month",
            "pi",
            "predict_linear",
            "present_over_time",
            "quantile_over_time",
            "rad",
            "rate",
            "resets",
            "round",
            "scalar",
            "sgn",
            "sin",
            "sinh",
            "sort",
            "sort_desc",
            "sqrt",
            "stddev_over_time",
            "stdvar_over_time",
            "sum_over_time",
            "tan",
            "tanh",
            "time",
            "timestamp",
            "vector",
            "year",
        ] {
            assert!(Func::from_name(name).is_some(), "{name}");
            let err = parse_supported(&format!("{name}()"));
            if let Err(PromqlError::Parse(m)) = &err {
                assert!(!m.contains("unknown function"), "{name}: {m}");
            }
        }
    }

    #[test]
    fn rate_and_sum() {
        let h = hist();
        let e = parse_supported("sum(rate(c[1m]))").unwrap();
        let v = vec_of(eval_instant(&e, 300_000, &h).unwrap());
        assert_eq!(v.len(), 1);
        assert!((v[0].value - 2.0).abs() < 1e-9, "{}", v[0].value);
        let e = parse_supported("c > bool 100").unwrap();
        let v = vec_of(eval_instant(&e, 300_000, &h).unwrap());
        assert!(v
            .iter()
            .all(|s| s.labels.name().is_none() && s.value == 1.0));
        let e = parse_supported("c / ignoring(a) c").unwrap();
        assert!(eval_instant(&e, 300_000, &h).is_err());
        let r = eval_range(&parse_supported("c").unwrap(), 0, 60_000, 15_000, &h).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].samples.len(), 5);
    }

    #[test]
    fn deepest_allowed_queries_do_not_overflow_the_query_stack() {
        let limits = QueryLimits {
            max_nesting_depth: limits::MAX_NESTING_LIMIT,
            ..QueryLimits::default()
        };
        let n = limits::MAX_NESTING_LIMIT;
        let h = hist();
        let cases = [
            format!("{}c{}", "(".repeat(n), ")".repeat(n)),
            format!("{}c{}", "sum(".repeat(n / 2), ")".repeat(n / 2)),
            format!("c{}", " + 1".repeat(n)),
            format!("{}c", "-".repeat(n)),
            format!("{}c{}", "(-".repeat(n / 2), ")".repeat(n / 2)),
        ];
        for q in &cases {
            assert!(limits::nesting_depth(q) <= n, "{q}");
            let e = parse_with(q, &limits).unwrap_or_else(|e| panic!("{e}"));
            let v = on_query_stack(|| {
                let r = eval_instant_in(&e, 300_000, &h, &Budget::new(&limits));
                drop(e);
                r
            })
            .unwrap();
            assert!(v.is_ok(), "{v:?}");
        }
        let too_deep = format!("{}c{}", "(".repeat(n + 1), ")".repeat(n + 1));
        assert!(matches!(
            parse_with(&too_deep, &limits),
            Err(PromqlError::Limit(_))
        ));
    }

    #[test]
    fn samples_budget_and_deadline_stop_evaluation() {
        let h = hist();
        let e = parse_supported("sum(rate(c[5m]))").unwrap();
        let small = QueryLimits {
            max_samples: 30,
            ..QueryLimits::default()
        };
        let err = eval_instant_in(&e, 300_000, &h, &Budget::new(&small)).unwrap_err();
        assert_eq!(err, PromqlError::TooManySamples(30));
        assert!(err.to_string().contains("max_samples = 30"), "{err}");
        // A range query charges its points: 2 series x 21 steps > 30.
        let e = parse_supported("c").unwrap();
        let err = eval_range_in(&e, 0, 300_000, 15_000, &h, &Budget::new(&small)).unwrap_err();
        assert_eq!(err, PromqlError::TooManySamples(30));
        let late = QueryLimits {
            timeout_secs: 1e-9,
            ..QueryLimits::default()
        };
        let budget = Budget::new(&late);
        std::thread::sleep(std::time::Duration::from_millis(1));
        let err = eval_range_in(&e, 0, 300_000, 15_000, &h, &budget).unwrap_err();
        assert_eq!(err, PromqlError::Timeout);
    }
}
