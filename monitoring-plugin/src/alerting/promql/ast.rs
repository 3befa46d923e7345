//! The checked expression tree the evaluator runs.
//!
//! `promql-parser` parses and type-checks the text (its checks are
//! Prometheus's); this module turns its AST into a smaller tree with the
//! function and operator names resolved, durations in milliseconds, and the
//! constructs Prometheus 2.42 does not know (newer functions and aggregations,
//! fill modifiers) refused with Prometheus's own kind of message.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser as pp;

use super::super::samples::METRIC_NAME;
use super::PromqlError;

/// An `@` modifier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    /// `@ <unix seconds>`, in milliseconds.
    Time(i64),
    /// `@ start()`: the start of the range query (the evaluation time of an instant one).
    Start,
    /// `@ end()`.
    End,
}

/// A series selector: matchers (the metric name as a `__name__` matcher), offset and `@`.
#[derive(Debug, Clone)]
pub struct Selector {
    /// All matchers, including the one on `__name__`.
    pub matchers: Vec<Matcher>,
    /// `offset` in milliseconds (negative for `offset -5m`; 0 when absent).
    pub offset_ms: i64,
    /// The `@` modifier.
    pub at: Option<At>,
}

/// Every function of Prometheus 2.42's PromQL.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Abs,
    Absent,
    AbsentOverTime,
    Acos,
    Acosh,
    Asin,
    Asinh,
    Atan,
    Atanh,
    AvgOverTime,
    Ceil,
    Changes,
    Clamp,
    ClampMax,
    ClampMin,
    Cos,
    Cosh,
    CountOverTime,
    DaysInMonth,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Deg,
    Delta,
    Deriv,
    Exp,
    Floor,
    HistogramCount,
    HistogramSum,
    HistogramFraction,
    HistogramQuantile,
    HoltWinters,
    Hour,
    Idelta,
    Increase,
    Irate,
    LabelReplace,
    LabelJoin,
    LastOverTime,
    Ln,
    Log10,
    Log2,
    MaxOverTime,
    MinOverTime,
    Minute,
    Month,
    Pi,
    PredictLinear,
    PresentOverTime,
    QuantileOverTime,
    Rad,
    Rate,
    Resets,
    Round,
    Scalar,
    Sgn,
    Sin,
    Sinh,
    Sort,
    SortDesc,
    Sqrt,
    StddevOverTime,
    StdvarOverTime,
    SumOverTime,
    Tan,
    Tanh,
    Time,
    Timestamp,
    Vector,
    Year,
}

/// Name → function, as Prometheus 2.42 knows them.
const FUNCS: &[(&str, Func)] = &[
    ("abs", Func::Abs),
    ("absent", Func::Absent),
    ("absent_over_time", Func::AbsentOverTime),
    ("acos", Func::Acos),
    ("acosh", Func::Acosh),
    ("asin", Func::Asin),
    ("asinh", Func::Asinh),
    ("atan", Func::Atan),
    ("atanh", Func::Atanh),
    ("avg_over_time", Func::AvgOverTime),
    ("ceil", Func::Ceil),
    ("changes", Func::Changes),
    ("clamp", Func::Clamp),
    ("clamp_max", Func::ClampMax),
    ("clamp_min", Func::ClampMin),
    ("cos", Func::Cos),
    ("cosh", Func::Cosh),
    ("count_over_time", Func::CountOverTime),
    ("days_in_month", Func::DaysInMonth),
    ("day_of_month", Func::DayOfMonth),
    ("day_of_week", Func::DayOfWeek),
    ("day_of_year", Func::DayOfYear),
    ("deg", Func::Deg),
    ("delta", Func::Delta),
    ("deriv", Func::Deriv),
    ("exp", Func::Exp),
    ("floor", Func::Floor),
    ("histogram_count", Func::HistogramCount),
    ("histogram_sum", Func::HistogramSum),
    ("histogram_fraction", Func::HistogramFraction),
    ("histogram_quantile", Func::HistogramQuantile),
    ("holt_winters", Func::HoltWinters),
    ("hour", Func::Hour),
    ("idelta", Func::Idelta),
    ("increase", Func::Increase),
    ("irate", Func::Irate),
    ("label_replace", Func::LabelReplace),
    ("label_join", Func::LabelJoin),
    ("last_over_time", Func::LastOverTime),
    ("ln", Func::Ln),
    ("log10", Func::Log10),
    ("log2", Func::Log2),
    ("max_over_time", Func::MaxOverTime),
    ("min_over_time", Func::MinOverTime),
    ("minute", Func::Minute),
    ("month", Func::Month),
    ("pi", Func::Pi),
    ("predict_linear", Func::PredictLinear),
    ("present_over_time", Func::PresentOverTime),
    ("quantile_over_time", Func::QuantileOverTime),
    ("rad", Func::Rad),
    ("rate", Func::Rate),
    ("resets", Func::Resets),
    ("round", Func::Round),
    ("scalar", Func::Scalar),
    ("sgn", Func::Sgn),
    ("sin", Func::Sin),
    ("sinh", Func::Sinh),
    ("sort", Func::Sort),
    ("sort_desc", Func::SortDesc),
    ("sqrt", Func::Sqrt),
    ("stddev_over_time", Func::StddevOverTime),
    ("stdvar_over_time", Func::StdvarOverTime),
    ("sum_over_time", Func::SumOverTime),
    ("tan", Func::Tan),
    ("tanh", Func::Tanh),
    ("time", Func::Time),
    ("timestamp", Func::Timestamp),
    ("vector", Func::Vector),
    ("year", Func::Year),
];

impl Func {
    /// The function of that name, if Prometheus 2.42 has it.
    pub fn from_name(name: &str) -> Option<Func> {
        FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The function's name.
    pub fn name(self) -> &'static str {
        FUNCS
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// Whether it returns a scalar (otherwise an instant vector).
    pub fn returns_scalar(self) -> bool {
        matches!(self, Func::Time | Func::Scalar | Func::Pi)
    }
}

/// Aggregation operators.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

/// Binary operators.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    /// `== != > < >= <=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    /// `and or unless`.
    pub fn is_set(self) -> bool {
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

/// Cardinality of a vector matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Card {
    /// One-to-one (no group modifier).
    OneToOne,
    /// `group_left(labels)`.
    ManyToOne(Vec<String>),
    /// `group_right(labels)`.
    OneToMany(Vec<String>),
    /// Set operators.
    ManyToMany,
}

/// Vector matching of a binary operation (`on`/`ignoring`; none = `ignoring()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    /// true for `on(...)`, false for `ignoring(...)`.
    pub on: bool,
    /// The listed labels.
    pub labels: Vec<String>,
    /// Cardinality and the extra labels of `group_left`/`group_right`.
    pub card: Card,
}

/// A checked expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A number literal.
    Number(f64),
    /// A string literal.
    Str(String),
    /// An instant vector selector.
    Instant(Selector),
    /// A range vector selector with its range in milliseconds.
    Range(Selector, i64),
    /// A subquery `expr[range:step]`.
    Subquery {
        /// The inner instant-vector expression.
        expr: Box<Expr>,
        /// Range, ms.
        range_ms: i64,
        /// Step, ms (`None`: the evaluation interval).
        step_ms: Option<i64>,
        /// Offset, ms.
        offset_ms: i64,
        /// `@` modifier.
        at: Option<At>,
    },
    /// A function call.
    Call(Func, Vec<Expr>),
    /// An aggregation.
    Aggregate {
        /// Operator.
        op: AggOp,
        /// `by`/`without`.
        grouping: Grouping,
        /// Parameter of `topk`, `bottomk`, `quantile`, `count_values`.
        param: Option<Box<Expr>>,
        /// The aggregated expression.
        expr: Box<Expr>,
    },
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
    /// A string.
    String,
}

impl Expr {
    /// The kind of value this expression yields.
    pub fn kind(&self) -> ValueKind {
        match self {
            Expr::Number(_) => ValueKind::Scalar,
            Expr::Str(_) => ValueKind::String,
            Expr::Range(..) | Expr::Subquery { .. } => ValueKind::Matrix,
            Expr::Neg(e) => e.kind(),
            Expr::Call(f, _) if f.returns_scalar() => ValueKind::Scalar,
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

fn parse_err<T>(msg: impl Into<String>) -> Result<T, PromqlError> {
    Err(PromqlError::Parse(msg.into()))
}

fn duration_ms(d: &std::time::Duration) -> Result<i64, PromqlError> {
    i64::try_from(d.as_millis()).map_err(|_| PromqlError::Parse("duration out of range".into()))
}

fn offset_ms(o: &Option<pp::Offset>) -> Result<i64, PromqlError> {
    Ok(match o {
        None => 0,
        Some(pp::Offset::Pos(d)) => duration_ms(d)?,
        Some(pp::Offset::Neg(d)) => -duration_ms(d)?,
    })
}

fn at_of(a: &Option<pp::AtModifier>) -> Result<Option<At>, PromqlError> {
    Ok(match a {
        None => None,
        Some(pp::AtModifier::Start) => Some(At::Start),
        Some(pp::AtModifier::End) => Some(At::End),
        Some(pp::AtModifier::At(t)) => {
            Some(At::Time(match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => duration_ms(&d)?,
                Err(e) => -duration_ms(&e.duration())?,
            }))
        }
    })
}

fn convert_selector(vs: &pp::VectorSelector) -> Result<Selector, PromqlError> {
    if !vs.matchers.or_matchers.is_empty() {
        return parse_err("unexpected \"or\" in label matching (not PromQL 2.42)");
    }
    let mut matchers = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        matchers.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    matchers.extend(vs.matchers.matchers.iter().cloned());
    Ok(Selector {
        matchers,
        offset_ms: offset_ms(&vs.offset)?,
        at: at_of(&vs.at)?,
    })
}

fn agg_op(name: &str) -> Result<AggOp, PromqlError> {
    Ok(match name {
        "sum" => AggOp::Sum,
        "avg" => AggOp::Avg,
        "min" => AggOp::Min,
        "max" => AggOp::Max,
        "count" => AggOp::Count,
        "group" => AggOp::Group,
        "stddev" => AggOp::Stddev,
        "stdvar" => AggOp::Stdvar,
        "topk" => AggOp::Topk,
        "bottomk" => AggOp::Bottomk,
        "quantile" => AggOp::Quantile,
        "count_values" => AggOp::CountValues,
        other => return parse_err(format!("unknown aggregation operator \"{other}\"")),
    })
}

fn bin_op(name: &str) -> Result<BinOp, PromqlError> {
    Ok(match name {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        "^" => BinOp::Pow,
        "atan2" => BinOp::Atan2,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        ">" => BinOp::Gt,
        "<" => BinOp::Lt,
        ">=" => BinOp::Ge,
        "<=" => BinOp::Le,
        "and" => BinOp::And,
        "or" => BinOp::Or,
        "unless" => BinOp::Unless,
        other => return parse_err(format!("unknown binary operator \"{other}\"")),
    })
}

/// Teaches the parser the 2.42 functions it no longer knows (`holt_winters`,
/// renamed in Prometheus 3). Idempotent.
pub fn register_legacy_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::function::{register_extra_functions, Function};
        use promql_parser::parser::value::ValueType;
        // Only fails on a name clash with a built-in, which would make the
        // built-in answer instead: nothing to do then.
        let _ = register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
}

/// Converts a parsed (and type-checked) AST.
pub fn convert(e: &pp::Expr) -> Result<Expr, PromqlError> {
    match e {
        pp::Expr::NumberLiteral(n) => Ok(Expr::Number(n.val)),
        pp::Expr::StringLiteral(s) => Ok(Expr::Str(s.val.clone())),
        pp::Expr::Paren(p) => convert(&p.expr),
        pp::Expr::Extension(_) => parse_err("extension expressions are not PromQL"),
        pp::Expr::VectorSelector(vs) => Ok(Expr::Instant(convert_selector(vs)?)),
        pp::Expr::MatrixSelector(ms) => Ok(Expr::Range(
            convert_selector(&ms.vs)?,
            duration_ms(&ms.range)?,
        )),
        pp::Expr::Subquery(sq) => {
            let step_ms = match &sq.step {
                Some(d) if !d.is_zero() => Some(duration_ms(d)?),
                _ => None,
            };
            Ok(Expr::Subquery {
                expr: Box::new(convert(&sq.expr)?),
                range_ms: duration_ms(&sq.range)?,
                step_ms,
                offset_ms: offset_ms(&sq.offset)?,
                at: at_of(&sq.at)?,
            })
        }
        pp::Expr::Unary(u) => Ok(Expr::Neg(Box::new(convert(&u.expr)?))),
        pp::Expr::Aggregate(a) => {
            let op = agg_op(&a.op.to_string())?;
            let grouping = match &a.modifier {
                None => Grouping::By(Vec::new()),
                Some(pp::LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
                Some(pp::LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
            };
            let param = match (&a.param, op) {
                (Some(p), AggOp::Topk | AggOp::Bottomk | AggOp::Quantile | AggOp::CountValues) => {
                    Some(Box::new(convert(p)?))
                }
                (None, AggOp::Topk | AggOp::Bottomk | AggOp::Quantile | AggOp::CountValues) => {
                    return parse_err(format!("wrong number of arguments for aggregate expression provided, expected 2, got 1 ({})", a.op));
                }
                (Some(_), _) => {
                    return parse_err(format!("wrong number of arguments for aggregate expression provided, expected 1, got 2 ({})", a.op));
                }
                (None, _) => None,
            };
            Ok(Expr::Aggregate {
                op,
                grouping,
                param,
                expr: Box::new(convert(&a.expr)?),
            })
        }
        pp::Expr::Binary(b) => {
            let op = bin_op(&b.op.to_string())?;
            let mut matching = Matching {
                on: false,
                labels: Vec::new(),
                card: if op.is_set() {
                    Card::ManyToMany
                } else {
                    Card::OneToOne
                },
            };
            let mut return_bool = false;
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return parse_err("fill modifiers are not PromQL 2.42");
                }
                matching.card = match &m.card {
                    pp::VectorMatchCardinality::OneToOne => Card::OneToOne,
                    pp::VectorMatchCardinality::ManyToOne(l) => Card::ManyToOne(l.labels.clone()),
                    pp::VectorMatchCardinality::OneToMany(l) => Card::OneToMany(l.labels.clone()),
                    pp::VectorMatchCardinality::ManyToMany => Card::ManyToMany,
                };
                match &m.matching {
                    None => {}
                    Some(pp::LabelModifier::Include(l)) => {
                        matching.on = true;
                        matching.labels = l.labels.clone();
                    }
                    Some(pp::LabelModifier::Exclude(l)) => {
                        matching.labels = l.labels.clone();
                    }
                }
                return_bool = m.return_bool;
            }
            Ok(Expr::Binary {
                op,
                lhs: Box::new(convert(&b.lhs)?),
                rhs: Box::new(convert(&b.rhs)?),
                return_bool,
                matching,
            })
        }
        pp::Expr::Call(c) => {
            let name = c.func.name;
            let Some(f) = Func::from_name(name) else {
                return parse_err(format!("unknown function with name {name:?}"));
            };
            let args = c
                .args
                .args
                .iter()
                .map(|a| convert(a))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Expr::Call(f, args))
        }
    }
}
