//! A PromQL evaluator for the subset alert rules need, over the in-process [`History`].
//!
//! Rules must behave exactly as they would in Prometheus 2.x (so that the same rule
//! file can move to a real Prometheus), but the plugin has no TSDB. Expressions are
//! parsed with `promql-parser`, checked against the supported subset at LOAD time
//! (anything else is refused with an error naming the construct), and converted into
//! the small [`Expr`] tree evaluated here.
//!
//! Supported: instant and range vector selectors (`=`, `!=`, `=~`, `!~`, `offset`),
//! number literals, parentheses, unary minus, the functions `rate`, `irate`,
//! `increase`, `delta`, `avg_over_time`, `min_over_time`, `max_over_time`,
//! `sum_over_time`, `count_over_time`, `absent`, `histogram_quantile`, the aggregations
//! `sum`, `avg`, `min`, `max`, `count` (with `by`/`without`), arithmetic
//! `+ - * / % ^`, comparisons `== != > < >= <=` (with or without `bool`), the set
//! operators `and`, `or`, `unless`, and one-to-one vector matching with
//! `on(...)`/`ignoring(...)`. Semantics follow Prometheus 2.42 (range selectors are
//! closed intervals, 5 m lookback is inclusive, staleness markers end a series).

use std::collections::HashMap;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser as pp;

use super::history::{is_stale_nan, History, Labels, SeriesData, METRIC_NAME};

pub mod limits;

pub use limits::{check_text, on_query_stack, Budget, QueryLimits};

/// How far back an instant selector looks for a sample (Prometheus default, 5 m).
pub const LOOKBACK_MS: i64 = 300_000;

/// Errors from parsing, checking or evaluating an expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromqlError {
    /// The text is not valid PromQL.
    #[error("parse error: {0}")]
    Parse(String),
    /// Valid PromQL outside the supported subset.
    #[error("{0}")]
    Unsupported(String),
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

fn unsupported<T>(msg: impl Into<String>) -> Result<T, PromqlError> {
    Err(PromqlError::Unsupported(msg.into()))
}

/// A series selector: matchers (the metric name as a `__name__` matcher) and an offset.
#[derive(Debug, Clone)]
pub struct Selector {
    /// All matchers, including the one on `__name__`.
    pub matchers: Vec<Matcher>,
    /// `offset` in milliseconds (0 when absent).
    pub offset_ms: i64,
}

/// Functions of the supported subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `rate(v[r])`
    Rate,
    /// `irate(v[r])`
    Irate,
    /// `increase(v[r])`
    Increase,
    /// `delta(v[r])`
    Delta,
    /// `avg_over_time(v[r])`
    AvgOverTime,
    /// `min_over_time(v[r])`
    MinOverTime,
    /// `max_over_time(v[r])`
    MaxOverTime,
    /// `sum_over_time(v[r])`
    SumOverTime,
    /// `count_over_time(v[r])`
    CountOverTime,
}

/// Aggregation operators of the supported subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `count`
    Count,
}

/// Binary operators of the supported subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `and`
    And,
    /// `or`
    Or,
    /// `unless`
    Unless,
}

impl BinOp {
    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }
    fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// Label grouping of an aggregation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// `by (...)` (no clause = `by ()`).
    By(Vec<String>),
    /// `without (...)`.
    Without(Vec<String>),
}

/// Vector matching of a binary operation (`on`/`ignoring`; none = `ignoring()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    /// true for `on(...)`, false for `ignoring(...)`.
    pub on: bool,
    /// The listed labels.
    pub labels: Vec<String>,
}

/// A checked expression of the supported subset.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A number literal.
    Number(f64),
    /// An instant vector selector.
    Instant(Selector),
    /// A range vector selector with its range in milliseconds.
    Range(Selector, i64),
    /// A range function applied to a range selector.
    RangeFunc(Func, Selector, i64),
    /// `absent(expr)`; the labels come from the equality matchers of a selector argument.
    Absent(Box<Expr>),
    /// `histogram_quantile(q, buckets)`.
    HistogramQuantile(Box<Expr>, Box<Expr>),
    /// An aggregation.
    Aggregate(AggOp, Grouping, Box<Expr>),
    /// A binary operation.
    Binary {
        /// Operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
        /// `bool` modifier.
        return_bool: bool,
        /// Vector matching.
        matching: Matching,
    },
    /// Unary minus.
    Neg(Box<Expr>),
}

/// Kind of value an expression yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A scalar.
    Scalar,
    /// An instant vector.
    Vector,
    /// A range vector.
    Matrix,
}

impl Expr {
    /// The kind of value this expression yields.
    pub fn kind(&self) -> ValueKind {
        match self {
            Expr::Number(_) => ValueKind::Scalar,
            Expr::Range(..) => ValueKind::Matrix,
            Expr::Neg(e) => e.kind(),
            Expr::Binary { lhs, rhs, .. } => {
                if lhs.kind() == ValueKind::Scalar && rhs.kind() == ValueKind::Scalar {
                    ValueKind::Scalar
                } else {
                    ValueKind::Vector
                }
            }
            _ => ValueKind::Vector,
        }
    }
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
    /// A range vector (only from a top-level range selector).
    Matrix(Vec<SeriesData>),
}

/// Parses `expr` and checks that it lies in the supported subset, within the
/// default [`QueryLimits`].
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
    let ast = pp::parse(expr).map_err(PromqlError::Parse)?;
    convert(&ast)
}

fn convert_selector(vs: &pp::VectorSelector) -> Result<Selector, PromqlError> {
    if vs.at.is_some() {
        return unsupported("@ modifier is not supported");
    }
    if !vs.matchers.or_matchers.is_empty() {
        return unsupported("\"or\" inside label matchers is not supported");
    }
    let mut matchers = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        matchers.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    matchers.extend(vs.matchers.matchers.iter().cloned());
    let offset_ms = match &vs.offset {
        None => 0,
        Some(pp::Offset::Pos(d)) => duration_ms(d)?,
        Some(pp::Offset::Neg(_)) => return unsupported("negative offset is not supported"),
    };
    Ok(Selector {
        matchers,
        offset_ms,
    })
}

fn duration_ms(d: &std::time::Duration) -> Result<i64, PromqlError> {
    i64::try_from(d.as_millis()).map_err(|_| PromqlError::Unsupported("duration too large".into()))
}

fn convert(e: &pp::Expr) -> Result<Expr, PromqlError> {
    match e {
        pp::Expr::NumberLiteral(n) => Ok(Expr::Number(n.val)),
        pp::Expr::StringLiteral(_) => unsupported("string literals are not supported"),
        pp::Expr::Paren(p) => convert(&p.expr),
        pp::Expr::Subquery(_) => unsupported("subqueries are not supported"),
        pp::Expr::Extension(_) => unsupported("extension expressions are not supported"),
        pp::Expr::VectorSelector(vs) => Ok(Expr::Instant(convert_selector(vs)?)),
        pp::Expr::MatrixSelector(ms) => Ok(Expr::Range(
            convert_selector(&ms.vs)?,
            duration_ms(&ms.range)?,
        )),
        pp::Expr::Unary(u) => Ok(Expr::Neg(Box::new(convert(&u.expr)?))),
        pp::Expr::Aggregate(a) => {
            let name = a.op.to_string();
            let op = match name.as_str() {
                "sum" => AggOp::Sum,
                "avg" => AggOp::Avg,
                "min" => AggOp::Min,
                "max" => AggOp::Max,
                "count" => AggOp::Count,
                other => return unsupported(format!("unsupported aggregation \"{other}\"")),
            };
            if a.param.is_some() {
                return unsupported(format!("aggregation \"{name}\" takes no parameter"));
            }
            let grouping = match &a.modifier {
                None => Grouping::By(Vec::new()),
                Some(pp::LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
                Some(pp::LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
            };
            Ok(Expr::Aggregate(op, grouping, Box::new(convert(&a.expr)?)))
        }
        pp::Expr::Binary(b) => {
            let name = b.op.to_string();
            let op = match name.as_str() {
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                "%" => BinOp::Mod,
                "^" => BinOp::Pow,
                "==" => BinOp::Eq,
                "!=" => BinOp::Ne,
                ">" => BinOp::Gt,
                "<" => BinOp::Lt,
                ">=" => BinOp::Ge,
                "<=" => BinOp::Le,
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "unless" => BinOp::Unless,
                other => return unsupported(format!("unsupported operator \"{other}\"")),
            };
            let mut matching = Matching {
                on: false,
                labels: Vec::new(),
            };
            let mut return_bool = false;
            if let Some(m) = &b.modifier {
                match &m.card {
                    pp::VectorMatchCardinality::ManyToOne(_) => {
                        return unsupported("group_left is not supported")
                    }
                    pp::VectorMatchCardinality::OneToMany(_) => {
                        return unsupported("group_right is not supported")
                    }
                    _ => {}
                }
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return unsupported("fill modifiers are not supported");
                }
                match &m.matching {
                    None => {}
                    Some(pp::LabelModifier::Include(l)) => {
                        matching = Matching {
                            on: true,
                            labels: l.labels.clone(),
                        }
                    }
                    Some(pp::LabelModifier::Exclude(l)) => {
                        matching = Matching {
                            on: false,
                            labels: l.labels.clone(),
                        }
                    }
                }
                return_bool = m.return_bool;
            }
            let lhs = Box::new(convert(&b.lhs)?);
            let rhs = Box::new(convert(&b.rhs)?);
            if return_bool && !op.is_comparison() {
                return unsupported("bool modifier is only allowed on comparisons");
            }
            if op.is_comparison()
                && !return_bool
                && lhs.kind() == ValueKind::Scalar
                && rhs.kind() == ValueKind::Scalar
            {
                return Err(PromqlError::Parse(
                    "comparisons between scalars must use BOOL modifier".into(),
                ));
            }
            if lhs.kind() == ValueKind::Matrix || rhs.kind() == ValueKind::Matrix {
                return Err(PromqlError::Parse(
                    "binary expression must contain only scalar and instant vector types".into(),
                ));
            }
            if op.is_set() && (lhs.kind() != ValueKind::Vector || rhs.kind() != ValueKind::Vector) {
                return Err(PromqlError::Parse(format!(
                    "set operator \"{name}\" not allowed in binary scalar expression"
                )));
            }
            Ok(Expr::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            })
        }
        pp::Expr::Call(c) => {
            let fname = c.func.name;
            let args: Vec<&pp::Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
            let range_func = match fname {
                "rate" => Some(Func::Rate),
                "irate" => Some(Func::Irate),
                "increase" => Some(Func::Increase),
                "delta" => Some(Func::Delta),
                "avg_over_time" => Some(Func::AvgOverTime),
                "min_over_time" => Some(Func::MinOverTime),
                "max_over_time" => Some(Func::MaxOverTime),
                "sum_over_time" => Some(Func::SumOverTime),
                "count_over_time" => Some(Func::CountOverTime),
                _ => None,
            };
            if let Some(f) = range_func {
                if args.len() != 1 {
                    return Err(PromqlError::Parse(format!("{fname} expects 1 argument")));
                }
                return match convert(args[0])? {
                    Expr::Range(sel, range) => Ok(Expr::RangeFunc(f, sel, range)),
                    _ => unsupported(format!("{fname} needs a range vector selector argument")),
                };
            }
            match fname {
                "absent" if args.len() == 1 => {
                    let arg = convert(args[0])?;
                    if arg.kind() != ValueKind::Vector {
                        return Err(PromqlError::Parse(
                            "absent expects an instant vector".into(),
                        ));
                    }
                    Ok(Expr::Absent(Box::new(arg)))
                }
                "histogram_quantile" if args.len() == 2 => {
                    let q = convert(args[0])?;
                    let v = convert(args[1])?;
                    if q.kind() != ValueKind::Scalar || v.kind() != ValueKind::Vector {
                        return Err(PromqlError::Parse(
                            "histogram_quantile expects (scalar, instant vector)".into(),
                        ));
                    }
                    Ok(Expr::HistogramQuantile(Box::new(q), Box::new(v)))
                }
                "absent" | "histogram_quantile" => Err(PromqlError::Parse(format!(
                    "wrong number of arguments to {fname}"
                ))),
                other => unsupported(format!("unsupported function \"{other}\"")),
            }
        }
    }
}

/// Evaluates `expr` at `ts_ms` over `history` within the default [`QueryLimits`],
/// on the query thread.
pub fn eval_instant(expr: &Expr, ts_ms: i64, history: &History) -> Result<Value, PromqlError> {
    let budget_limits = QueryLimits::default();
    on_query_stack(|| eval_instant_in(expr, ts_ms, history, &Budget::new(&budget_limits)))?
}

/// Evaluates `expr` at `ts_ms` over `history` on the calling thread, charging
/// `budget`. The caller runs it on a thread with enough stack (see
/// [`on_query_stack`]); expressions from [`parse_with`] nest at most
/// `max_nesting_depth` levels.
pub fn eval_instant_in(
    expr: &Expr,
    ts_ms: i64,
    history: &History,
    budget: &Budget,
) -> Result<Value, PromqlError> {
    Evaluator { history, budget }.eval(expr, ts_ms)
}

/// Evaluates `expr` at every `step_ms` from `start_ms` to `end_ms` (inclusive), as a
/// Prometheus range query, within the default [`QueryLimits`], on the query thread.
/// Scalars become one series without labels.
pub fn eval_range(
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    history: &History,
) -> Result<Vec<SeriesData>, PromqlError> {
    let limits = QueryLimits::default();
    on_query_stack(|| {
        eval_range_in(
            expr,
            start_ms,
            end_ms,
            step_ms,
            history,
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
    history: &History,
    budget: &Budget,
) -> Result<Vec<SeriesData>, PromqlError> {
    if step_ms <= 0 {
        return Err(PromqlError::Eval(
            "zero or negative query resolution step".into(),
        ));
    }
    if end_ms < start_ms {
        return Err(PromqlError::Eval(
            "end timestamp must not be before start time".into(),
        ));
    }
    if expr.kind() == ValueKind::Matrix {
        return Err(PromqlError::Eval(
            "invalid expression type \"range vector\" for range query".into(),
        ));
    }
    if (end_ms - start_ms) / step_ms > 11_000 {
        return Err(PromqlError::Eval(
            "exceeded maximum resolution of 11,000 points per timeseries".into(),
        ));
    }
    let ev = Evaluator { history, budget };
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<SeriesData> = Vec::new();
    let mut ts = start_ms;
    while ts <= end_ms {
        let points = match ev.eval(expr, ts)? {
            Value::Scalar(v) => vec![VectorSample {
                labels: Labels::default(),
                value: v,
            }],
            Value::Vector(v) => v,
            Value::Matrix(_) => Vec::new(),
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

struct Evaluator<'a> {
    history: &'a History,
    budget: &'a Budget,
}

impl Evaluator<'_> {
    fn eval(&self, e: &Expr, ts: i64) -> Result<Value, PromqlError> {
        Ok(match e {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Instant(sel) => Value::Vector(self.instant(sel, ts)?),
            Expr::Range(sel, range) => Value::Matrix(self.range(sel, *range, ts)?),
            Expr::RangeFunc(f, sel, range) => Value::Vector(self.range_func(*f, sel, *range, ts)?),
            Expr::Absent(arg) => {
                let v = self.vector(arg, ts)?;
                if v.is_empty() {
                    Value::Vector(vec![VectorSample {
                        labels: absent_labels(arg),
                        value: 1.0,
                    }])
                } else {
                    Value::Vector(Vec::new())
                }
            }
            Expr::HistogramQuantile(q, v) => {
                let q = self.scalar(q, ts)?;
                let v = self.vector(v, ts)?;
                Value::Vector(histogram_quantile(q, v))
            }
            Expr::Aggregate(op, grouping, arg) => {
                Value::Vector(aggregate(*op, grouping, self.vector(arg, ts)?))
            }
            Expr::Neg(arg) => match self.eval(arg, ts)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => Value::Vector(
                    v.into_iter()
                        .map(|s| VectorSample {
                            labels: s.labels.without_name(),
                            value: -s.value,
                        })
                        .collect(),
                ),
                Value::Matrix(_) => return Err(PromqlError::Eval("unary minus on matrix".into())),
            },
            Expr::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            } => {
                let l = self.eval(lhs, ts)?;
                let r = self.eval(rhs, ts)?;
                binary(*op, *return_bool, matching, l, r)?
            }
        })
    }

    fn scalar(&self, e: &Expr, ts: i64) -> Result<f64, PromqlError> {
        match self.eval(e, ts)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(PromqlError::Eval("expected a scalar".into())),
        }
    }

    fn vector(&self, e: &Expr, ts: i64) -> Result<Vec<VectorSample>, PromqlError> {
        match self.eval(e, ts)? {
            Value::Vector(v) => Ok(v),
            _ => Err(PromqlError::Eval("expected an instant vector".into())),
        }
    }

    fn instant(&self, sel: &Selector, ts: i64) -> Result<Vec<VectorSample>, PromqlError> {
        let t_ref = ts - sel.offset_ms;
        let mut out = Vec::new();
        let mut charged = Ok(());
        self.history
            .for_each_selected(&sel.matchers, |labels, samples| {
                if charged.is_err() {
                    return;
                }
                charged = self.budget.take(1);
                let idx = samples.partition_point(|(t, _)| *t <= t_ref);
                if idx == 0 {
                    return;
                }
                let (t, v) = samples[idx - 1];
                if t < t_ref - LOOKBACK_MS || is_stale_nan(v) {
                    return;
                }
                out.push(VectorSample {
                    labels: labels.clone(),
                    value: v,
                });
            });
        charged.map(|()| out)
    }

    fn range(&self, sel: &Selector, range: i64, ts: i64) -> Result<Vec<SeriesData>, PromqlError> {
        let end = ts - sel.offset_ms;
        let start = end - range;
        let mut out = Vec::new();
        let mut charged = Ok(());
        self.history
            .for_each_selected(&sel.matchers, |labels, samples| {
                if charged.is_err() {
                    return;
                }
                let from = samples.partition_point(|(t, _)| *t < start);
                let to = samples.partition_point(|(t, _)| *t <= end);
                charged = self.budget.take((to - from) as u64);
                if charged.is_err() {
                    return;
                }
                let pts: Vec<(i64, f64)> = samples
                    .range(from..to)
                    .filter(|(_, v)| !is_stale_nan(*v))
                    .copied()
                    .collect();
                if !pts.is_empty() {
                    out.push(SeriesData {
                        labels: labels.clone(),
                        samples: pts,
                    });
                }
            });
        charged.map(|()| out)
    }

    fn range_func(
        &self,
        f: Func,
        sel: &Selector,
        range: i64,
        ts: i64,
    ) -> Result<Vec<VectorSample>, PromqlError> {
        let end = ts - sel.offset_ms;
        let start = end - range;
        let mut out = Vec::new();
        for s in self.range(sel, range, ts)? {
            let p = &s.samples;
            let v = match f {
                Func::Rate => extrapolated_rate(p, start, end, range, true, true),
                Func::Increase => extrapolated_rate(p, start, end, range, true, false),
                Func::Delta => extrapolated_rate(p, start, end, range, false, false),
                Func::Irate => irate(p),
                Func::AvgOverTime => Some(avg_over_time(p)),
                Func::MinOverTime => {
                    Some(p.iter().fold(
                        p[0].1,
                        |m, &(_, v)| {
                            if v < m || m.is_nan() {
                                v
                            } else {
                                m
                            }
                        },
                    ))
                }
                Func::MaxOverTime => {
                    Some(p.iter().fold(
                        p[0].1,
                        |m, &(_, v)| {
                            if v > m || m.is_nan() {
                                v
                            } else {
                                m
                            }
                        },
                    ))
                }
                Func::SumOverTime => Some(p.iter().map(|(_, v)| v).sum()),
                Func::CountOverTime => Some(p.len() as f64),
            };
            if let Some(value) = v {
                out.push(VectorSample {
                    labels: s.labels.without_name(),
                    value,
                });
            }
        }
        check_unique(&out)?;
        Ok(out)
    }
}

/// Prometheus 2.x `extrapolatedRate` for float samples.
fn extrapolated_rate(
    p: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first_t, first_v) = p[0];
    let (last_t, last_v) = p[p.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &p[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let duration_to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled_interval / (p.len() - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        avg_between / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        avg_between / 2.0
    };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Prometheus `irate` (instantValue with isRate).
fn irate(p: &[(i64, f64)]) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (lt, lv) = p[p.len() - 1];
    let (pt, pv) = p[p.len() - 2];
    let result = if lv < pv { lv } else { lv - pv };
    let interval = lt - pt;
    if interval == 0 {
        return None;
    }
    Some(result / (interval as f64 / 1000.0))
}

/// Prometheus 2.42 `avg_over_time` (incremental mean, infinity-safe).
fn avg_over_time(p: &[(i64, f64)]) -> f64 {
    let mut mean = 0.0f64;
    let mut count = 0.0f64;
    for &(_, v) in p {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

fn absent_labels(arg: &Expr) -> Labels {
    let Expr::Instant(sel) = arg else {
        return Labels::default();
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    for m in &sel.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !pairs.iter().any(|(n, _)| *n == m.name) {
            pairs.push((m.name.clone(), m.value.clone()));
        } else {
            dropped.push(m.name.clone());
        }
    }
    pairs.retain(|(n, _)| !dropped.contains(n));
    Labels::new(pairs)
}

/// Prometheus `histogram_quantile` over classic (`le`-labelled) buckets.
fn histogram_quantile(q: f64, v: Vec<VectorSample>) -> Vec<VectorSample> {
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(parse_go_float) else {
            continue;
        };
        let mut key = s.labels.without_name();
        key.remove("le");
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((le, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| VectorSample {
            labels,
            value: bucket_quantile(q, buckets),
        })
        .collect()
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    match buckets.last() {
        Some((ub, _)) if *ub == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (ub, c) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    // Ensure monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let b = merged[..n].partition_point(|(_, c)| *c < rank);
    if b == n {
        return merged[n - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut bucket_start = 0.0;
    let bucket_end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        bucket_start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

fn aggregate(op: AggOp, grouping: &Grouping, v: Vec<VectorSample>) -> Vec<VectorSample> {
    struct Group {
        labels: Labels,
        value: f64,
        count: f64,
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        let key = match grouping {
            Grouping::By(names) => s.labels.keep_only(names),
            Grouping::Without(names) => s.labels.drop_these(names).without_name(),
        };
        match index.get(&key) {
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    labels: key,
                    value: s.value,
                    count: 1.0,
                });
            }
            Some(&i) => {
                let g = &mut groups[i];
                g.count += 1.0;
                match op {
                    AggOp::Sum => g.value += s.value,
                    AggOp::Avg => {
                        if g.value.is_infinite() {
                            if s.value.is_infinite() && (g.value > 0.0) == (s.value > 0.0) {
                                continue;
                            }
                            if !s.value.is_infinite() && !s.value.is_nan() {
                                continue;
                            }
                        }
                        g.value += s.value / g.count - g.value / g.count;
                    }
                    AggOp::Min => {
                        if g.value > s.value || g.value.is_nan() {
                            g.value = s.value;
                        }
                    }
                    AggOp::Max => {
                        if g.value < s.value || g.value.is_nan() {
                            g.value = s.value;
                        }
                    }
                    AggOp::Count => {}
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|g| VectorSample {
            labels: g.labels,
            value: if op == AggOp::Count { g.count } else { g.value },
        })
        .collect()
}

/// Applies an arithmetic or comparison operator; returns (value, keep).
fn elem_binop(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (f64::NAN, false),
    }
}

fn signature(labels: &Labels, m: &Matching) -> Labels {
    if m.on {
        labels.keep_only(&m.labels)
    } else {
        labels.drop_these(&m.labels).without_name()
    }
}

fn check_unique(v: &[VectorSample]) -> Result<(), PromqlError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(PromqlError::Eval(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}

fn binary(
    op: BinOp,
    return_bool: bool,
    m: &Matching,
    l: Value,
    r: Value,
) -> Result<Value, PromqlError> {
    match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => {
            let (v, keep) = elem_binop(op, a, b);
            if op.is_comparison() {
                Ok(Value::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Value::Scalar(v))
            }
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            Ok(Value::Vector(vector_scalar(op, return_bool, v, s, false)))
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            Ok(Value::Vector(vector_scalar(op, return_bool, v, s, true)))
        }
        (Value::Vector(a), Value::Vector(b)) => {
            let out = match op {
                BinOp::And => {
                    let sigs: std::collections::HashSet<Labels> =
                        b.iter().map(|s| signature(&s.labels, m)).collect();
                    a.into_iter()
                        .filter(|s| sigs.contains(&signature(&s.labels, m)))
                        .collect()
                }
                BinOp::Unless => {
                    let sigs: std::collections::HashSet<Labels> =
                        b.iter().map(|s| signature(&s.labels, m)).collect();
                    a.into_iter()
                        .filter(|s| !sigs.contains(&signature(&s.labels, m)))
                        .collect()
                }
                BinOp::Or => {
                    let sigs: std::collections::HashSet<Labels> =
                        a.iter().map(|s| signature(&s.labels, m)).collect();
                    let mut out = a;
                    out.extend(
                        b.into_iter()
                            .filter(|s| !sigs.contains(&signature(&s.labels, m))),
                    );
                    out
                }
                _ => vector_vector(op, return_bool, m, a, b)?,
            };
            Ok(Value::Vector(out))
        }
        _ => Err(PromqlError::Eval(
            "binary operation on a range vector".into(),
        )),
    }
}

fn vector_scalar(
    op: BinOp,
    return_bool: bool,
    v: Vec<VectorSample>,
    s: f64,
    swap: bool,
) -> Vec<VectorSample> {
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let (lv, rv) = if swap { (s, e.value) } else { (e.value, s) };
        let (mut value, mut keep) = elem_binop(op, lv, rv);
        if op.is_comparison() && swap {
            value = rv;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            e.value = value;
            if !op.is_comparison() || return_bool {
                e.labels.remove(METRIC_NAME);
            }
            out.push(e);
        }
    }
    out
}

fn vector_vector(
    op: BinOp,
    return_bool: bool,
    m: &Matching,
    lhs: Vec<VectorSample>,
    rhs: Vec<VectorSample>,
) -> Result<Vec<VectorSample>, PromqlError> {
    let mut right: HashMap<Labels, f64> = HashMap::with_capacity(rhs.len());
    for s in rhs {
        let sig = signature(&s.labels, m);
        if right.contains_key(&sig) {
            return Err(PromqlError::Eval(format!(
                "found duplicate series for the match group {sig} on the right hand-side of \
                 the operation: many-to-many matching not allowed: matching labels must be \
                 unique on one side"
            )));
        }
        right.insert(sig, s.value);
    }
    let mut matched = std::collections::HashSet::new();
    let mut out = Vec::new();
    for s in lhs {
        let sig = signature(&s.labels, m);
        let Some(&rv) = right.get(&sig) else { continue };
        let (mut value, keep) = elem_binop(op, s.value, rv);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels = s.labels;
        if !op.is_comparison() || return_bool {
            labels.remove(METRIC_NAME);
        }
        labels = if m.on {
            labels.keep_only(&m.labels)
        } else {
            labels.drop_these(&m.labels)
        };
        if !matched.insert(sig) {
            return Err(PromqlError::Eval(
                "multiple matches for labels: many-to-one matching must be explicit \
                 (group_left/group_right)"
                    .into(),
            ));
        }
        out.push(VectorSample { labels, value });
    }
    check_unique(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::history::HistoryConfig;
    use super::*;

    fn hist() -> History {
        let h = History::new(HistoryConfig::default());
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
    fn refuses_outside_subset() {
        let cases = [
            (
                "label_replace(up, \"a\", \"b\", \"c\", \"d\")",
                "unsupported function \"label_replace\"",
            ),
            ("topk(3, up)", "unsupported aggregation \"topk\""),
            ("rate(up[5m:1m])", "subqueries are not supported"),
            ("up @ 100", "@ modifier is not supported"),
            ("a * on(x) group_left b", "group_left is not supported"),
            ("\"s\"", "string literals are not supported"),
        ];
        for (e, msg) in cases {
            let err = parse_supported(e).unwrap_err().to_string();
            assert!(err.contains(msg), "{e}: {err}");
        }
        assert!(matches!(parse_supported("up{"), Err(PromqlError::Parse(_))));
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

    #[test]
    fn quantile() {
        let b = vec![
            (0.1, 10.0),
            (0.5, 50.0),
            (1.0, 90.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((bucket_quantile(0.5, b.clone()) - 0.5).abs() < 1e-12);
        assert_eq!(bucket_quantile(0.99, b), 1.0);
    }
}
