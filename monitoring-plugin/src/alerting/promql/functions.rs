//! Every PromQL function of Prometheus 2.42 for float samples, with its
//! exact arithmetic (extrapolated rates, regression, Holt-Winters, quantile
//! interpolation, classic-bucket histogram quantiles) and its label rules
//! (`__name__` dropped by all but `last_over_time`, `label_replace`,
//! `label_join` and `sort`). The native-histogram functions
//! (`histogram_count`, `histogram_sum`, `histogram_fraction`) find no native
//! histograms here and return nothing, as Prometheus does for float series.

use std::collections::HashMap;

use plugin_abi::metric_names::is_label_name;
use promql_parser::label::MatchOp;

use super::super::samples::{Labels, SeriesData, METRIC_NAME};
use super::ast::{Expr, Func, Selector};
use super::numeric::quantile;
use super::{PromqlError, Value, VectorSample};

/// Go's `math.Max` (NaN wins).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min` (NaN wins).
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// What a function needs from the evaluator: its arguments evaluated. The
/// evaluator implements it and calls [`call`]; functions never name the
/// evaluator, so the dependency runs one way.
pub(crate) trait Operands {
    /// Evaluates `e` at `ts`.
    fn eval(&self, e: &Expr, ts: i64) -> Result<Value, PromqlError>;

    /// A range selector or subquery evaluated at `ts`.
    fn window(&self, e: &Expr, ts: i64) -> Result<Window, PromqlError>;

    /// The latest sample of every series `sel` selects at `ts`, with its
    /// own timestamp (for `timestamp()`).
    fn select_instant(&self, sel: &Selector, ts: i64) -> Result<Vec<Selected>, PromqlError>;

    /// Evaluates `e` at `ts`, expecting a scalar.
    fn scalar(&self, e: &Expr, ts: i64) -> Result<f64, PromqlError> {
        match self.eval(e, ts)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(PromqlError::Eval("expected a scalar".into())),
        }
    }

    /// Evaluates `e` at `ts`, expecting an instant vector.
    fn vector(&self, e: &Expr, ts: i64) -> Result<Vec<VectorSample>, PromqlError> {
        match self.eval(e, ts)? {
            Value::Vector(v) => Ok(v),
            _ => Err(PromqlError::Eval("expected an instant vector".into())),
        }
    }

    /// Evaluates `e` at `ts`, expecting a string.
    fn string(&self, e: &Expr, ts: i64) -> Result<String, PromqlError> {
        match self.eval(e, ts)? {
            Value::String(v) => Ok(v),
            _ => Err(PromqlError::Eval("expected a string".into())),
        }
    }
}

/// One selected instant sample with its own timestamp (for `timestamp()`).
pub(crate) struct Selected {
    pub labels: Labels,
    pub t: i64,
    pub value: f64,
}

/// A range vector with the window it was selected over.
pub(crate) struct Window {
    pub series: Vec<SeriesData>,
    /// Window end (evaluation time, `@` and offset applied), ms.
    pub end: i64,
    /// Range, ms.
    pub range: i64,
}

/// Labels `absent`/`absent_over_time` give: the equality matchers of a selector argument.
fn absent_labels(arg: &Expr) -> Labels {
    let sel = match arg {
        Expr::Instant(sel) | Expr::Range(sel, _) => sel,
        _ => return Labels::default(),
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

fn map_values(v: Vec<VectorSample>, f: impl Fn(f64) -> f64) -> Vec<VectorSample> {
    v.into_iter()
        .map(|s| VectorSample {
            labels: s.labels.without_name(),
            value: f(s.value),
        })
        .collect()
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(f: Func, secs: i64) -> f64 {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::time::civil_from_days(days);
    match f {
        Func::Year => y as f64,
        Func::Month => m as f64,
        Func::DayOfMonth => d as f64,
        Func::DayOfWeek => (days + 4).rem_euclid(7) as f64,
        Func::DayOfYear => {
            const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let leap = u32::from(m > 2 && is_leap(y));
            (CUM[(m - 1) as usize] + d + leap) as f64
        }
        Func::DaysInMonth => match m {
            2 if is_leap(y) => 29.0,
            2 => 28.0,
            4 | 6 | 9 | 11 => 30.0,
            _ => 31.0,
        },
        Func::Hour => (sod / 3600) as f64,
        Func::Minute => ((sod % 3600) / 60) as f64,
        _ => f64::NAN,
    }
}

/// Go's float → int64 conversion of a timestamp in seconds (saturating).
fn secs_of(v: f64) -> i64 {
    if v.is_nan() {
        i64::MIN
    } else {
        v as i64
    }
}

/// Evaluates the call `f(args)` at `ts`.
pub(crate) fn call(
    ev: &impl Operands,
    f: Func,
    args: &[Expr],
    ts: i64,
) -> Result<Value, PromqlError> {
    let arg = |i: usize| {
        args.get(i)
            .ok_or_else(|| PromqlError::Eval(format!("missing argument {i} of {}", f.name())))
    };
    Ok(Value::Vector(match f {
        Func::Time => return Ok(Value::Scalar(ts as f64 / 1000.0)),
        Func::Pi => return Ok(Value::Scalar(std::f64::consts::PI)),
        Func::Scalar => {
            let v = ev.vector(arg(0)?, ts)?;
            return Ok(Value::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }));
        }
        Func::Vector => vec![VectorSample {
            labels: Labels::default(),
            value: ev.scalar(arg(0)?, ts)?,
        }],
        Func::Absent => {
            if ev.vector(arg(0)?, ts)?.is_empty() {
                vec![VectorSample {
                    labels: absent_labels(arg(0)?),
                    value: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        Func::Abs => map_values(ev.vector(arg(0)?, ts)?, f64::abs),
        Func::Ceil => map_values(ev.vector(arg(0)?, ts)?, f64::ceil),
        Func::Floor => map_values(ev.vector(arg(0)?, ts)?, f64::floor),
        Func::Exp => map_values(ev.vector(arg(0)?, ts)?, f64::exp),
        Func::Sqrt => map_values(ev.vector(arg(0)?, ts)?, f64::sqrt),
        Func::Ln => map_values(ev.vector(arg(0)?, ts)?, f64::ln),
        Func::Log2 => map_values(ev.vector(arg(0)?, ts)?, f64::log2),
        Func::Log10 => map_values(ev.vector(arg(0)?, ts)?, f64::log10),
        Func::Sin => map_values(ev.vector(arg(0)?, ts)?, f64::sin),
        Func::Cos => map_values(ev.vector(arg(0)?, ts)?, f64::cos),
        Func::Tan => map_values(ev.vector(arg(0)?, ts)?, f64::tan),
        Func::Asin => map_values(ev.vector(arg(0)?, ts)?, f64::asin),
        Func::Acos => map_values(ev.vector(arg(0)?, ts)?, f64::acos),
        Func::Atan => map_values(ev.vector(arg(0)?, ts)?, f64::atan),
        Func::Sinh => map_values(ev.vector(arg(0)?, ts)?, f64::sinh),
        Func::Cosh => map_values(ev.vector(arg(0)?, ts)?, f64::cosh),
        Func::Tanh => map_values(ev.vector(arg(0)?, ts)?, f64::tanh),
        Func::Asinh => map_values(ev.vector(arg(0)?, ts)?, f64::asinh),
        Func::Acosh => map_values(ev.vector(arg(0)?, ts)?, f64::acosh),
        Func::Atanh => map_values(ev.vector(arg(0)?, ts)?, f64::atanh),
        Func::Deg => map_values(ev.vector(arg(0)?, ts)?, |v| {
            v * 180.0 / std::f64::consts::PI
        }),
        Func::Rad => map_values(ev.vector(arg(0)?, ts)?, |v| {
            v * std::f64::consts::PI / 180.0
        }),
        Func::Sgn => map_values(ev.vector(arg(0)?, ts)?, |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        Func::Round => {
            let v = ev.vector(arg(0)?, ts)?;
            let to_nearest = match args.get(1) {
                Some(e) => ev.scalar(e, ts)?,
                None => 1.0,
            };
            let inv = 1.0 / to_nearest;
            map_values(v, |x| (x * inv + 0.5).floor() / inv)
        }
        Func::Clamp => {
            let v = ev.vector(arg(0)?, ts)?;
            let min = ev.scalar(arg(1)?, ts)?;
            let max = ev.scalar(arg(2)?, ts)?;
            if max < min {
                Vec::new()
            } else {
                map_values(v, |x| go_max(min, go_min(max, x)))
            }
        }
        Func::ClampMax => {
            let v = ev.vector(arg(0)?, ts)?;
            let max = ev.scalar(arg(1)?, ts)?;
            map_values(v, |x| go_min(x, max))
        }
        Func::ClampMin => {
            let v = ev.vector(arg(0)?, ts)?;
            let min = ev.scalar(arg(1)?, ts)?;
            map_values(v, |x| go_max(x, min))
        }
        Func::Year
        | Func::Month
        | Func::DayOfMonth
        | Func::DayOfWeek
        | Func::DayOfYear
        | Func::DaysInMonth
        | Func::Hour
        | Func::Minute => match args.first() {
            None => vec![VectorSample {
                labels: Labels::default(),
                value: date_part(f, ts.div_euclid(1000)),
            }],
            Some(e) => map_values(ev.vector(e, ts)?, |v| date_part(f, secs_of(v))),
        },
        Func::Timestamp => match arg(0)? {
            Expr::Instant(sel) => ev
                .select_instant(sel, ts)?
                .into_iter()
                .map(|s| VectorSample {
                    labels: s.labels.without_name(),
                    value: s.t as f64 / 1000.0,
                })
                .collect(),
            e => map_values(ev.vector(e, ts)?, |_| ts as f64 / 1000.0),
        },
        Func::LabelReplace => {
            let v = ev.vector(arg(0)?, ts)?;
            let dst = ev.string(arg(1)?, ts)?;
            let repl = ev.string(arg(2)?, ts)?;
            let src = ev.string(arg(3)?, ts)?;
            let re_text = ev.string(arg(4)?, ts)?;
            let re = regex::Regex::new(&format!("^(?:{re_text})$")).map_err(|_| {
                PromqlError::Eval(format!(
                    "invalid regular expression in label_replace(): {re_text}"
                ))
            })?;
            if !is_label_name(&dst) {
                return Err(PromqlError::Eval(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            v.into_iter()
                .map(|mut s| {
                    let src_val = s.labels.get(&src).unwrap_or("").to_owned();
                    if let Some(caps) = re.captures(&src_val) {
                        let mut res = String::new();
                        caps.expand(&repl, &mut res);
                        s.labels.set(&dst, &res);
                    }
                    s
                })
                .collect()
        }
        Func::LabelJoin => {
            let v = ev.vector(arg(0)?, ts)?;
            let dst = ev.string(arg(1)?, ts)?;
            let sep = ev.string(arg(2)?, ts)?;
            let mut srcs = Vec::new();
            for e in args.iter().skip(3) {
                let s = ev.string(e, ts)?;
                if !is_label_name(&s) {
                    return Err(PromqlError::Eval(format!(
                        "invalid source label name in label_join(): {s}"
                    )));
                }
                srcs.push(s);
            }
            if !is_label_name(&dst) {
                return Err(PromqlError::Eval(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            v.into_iter()
                .map(|mut s| {
                    let joined = srcs
                        .iter()
                        .map(|n| s.labels.get(n).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(&sep);
                    s.labels.set(&dst, &joined);
                    s
                })
                .collect()
        }
        Func::Sort | Func::SortDesc => {
            let mut v = ev.vector(arg(0)?, ts)?;
            let desc = f == Func::SortDesc;
            v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => {
                    let o = a
                        .value
                        .partial_cmp(&b.value)
                        .unwrap_or(std::cmp::Ordering::Equal);
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            });
            v
        }
        Func::HistogramQuantile => {
            let q = ev.scalar(arg(0)?, ts)?;
            histogram_quantile(q, ev.vector(arg(1)?, ts)?)
        }
        Func::HistogramCount | Func::HistogramSum | Func::HistogramFraction => {
            // Native histograms only: float series give nothing.
            for e in args {
                ev.eval(e, ts)?;
            }
            Vec::new()
        }
        _ => return range_function(ev, f, args, ts),
    }))
}

/// The functions over a range vector (a range selector or a subquery).
fn range_function(
    ev: &impl Operands,
    f: Func,
    args: &[Expr],
    ts: i64,
) -> Result<Value, PromqlError> {
    let (matrix_arg, scalars): (&Expr, Vec<f64>) = match f {
        Func::QuantileOverTime => (&args[1], vec![ev.scalar(&args[0], ts)?]),
        Func::PredictLinear => (&args[0], vec![ev.scalar(&args[1], ts)?]),
        Func::HoltWinters => (
            &args[0],
            vec![ev.scalar(&args[1], ts)?, ev.scalar(&args[2], ts)?],
        ),
        _ => (&args[0], Vec::new()),
    };
    if f == Func::HoltWinters {
        let (sf, tf) = (scalars[0], scalars[1]);
        if !(sf > 0.0 && sf < 1.0) {
            return Err(PromqlError::Eval(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
            )));
        }
        if !(tf > 0.0 && tf < 1.0) {
            return Err(PromqlError::Eval(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
            )));
        }
    }
    let w = ev.window(matrix_arg, ts)?;
    if f == Func::AbsentOverTime {
        return Ok(Value::Vector(if w.series.is_empty() {
            vec![VectorSample {
                labels: absent_labels(matrix_arg),
                value: 1.0,
            }]
        } else {
            Vec::new()
        }));
    }
    let start = w.end - w.range;
    let mut out = Vec::with_capacity(w.series.len());
    for s in w.series {
        let p = &s.samples;
        if p.is_empty() {
            continue;
        }
        let v = match f {
            Func::Rate => extrapolated_rate(p, start, w.end, w.range, true, true),
            Func::Increase => extrapolated_rate(p, start, w.end, w.range, true, false),
            Func::Delta => extrapolated_rate(p, start, w.end, w.range, false, false),
            Func::Irate => instant_value(p, true),
            Func::Idelta => instant_value(p, false),
            Func::Deriv => (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
            Func::PredictLinear => (p.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(p, ts);
                slope * scalars[0] + intercept
            }),
            Func::HoltWinters => holt_winters(p, scalars[0], scalars[1]),
            Func::Changes => Some(
                p.windows(2)
                    .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                    .count() as f64,
            ),
            Func::Resets => Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
            Func::AvgOverTime => Some(avg_over_time(p)),
            Func::MinOverTime => {
                Some(
                    p.iter()
                        .fold(p[0].1, |m, &(_, v)| if v < m || m.is_nan() { v } else { m }),
                )
            }
            Func::MaxOverTime => {
                Some(
                    p.iter()
                        .fold(p[0].1, |m, &(_, v)| if v > m || m.is_nan() { v } else { m }),
                )
            }
            Func::SumOverTime => Some(kahan_sum(p.iter().map(|(_, v)| *v))),
            Func::CountOverTime => Some(p.len() as f64),
            Func::LastOverTime => Some(p[p.len() - 1].1),
            Func::PresentOverTime => Some(1.0),
            Func::StddevOverTime => Some(variance_over_time(p).sqrt()),
            Func::StdvarOverTime => Some(variance_over_time(p)),
            Func::QuantileOverTime => {
                Some(quantile(scalars[0], p.iter().map(|(_, v)| *v).collect()))
            }
            _ => {
                return Err(PromqlError::Eval(format!(
                    "function {} is not a range function",
                    f.name()
                )))
            }
        };
        if let Some(value) = v {
            out.push(VectorSample {
                labels: if f == Func::LastOverTime {
                    s.labels
                } else {
                    s.labels.without_name()
                },
                value,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// Kahan-compensated sum (Prometheus's `sum_over_time`).
fn kahan_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for v in values {
        let t = sum + v;
        if t.is_infinite() {
            c = 0.0;
        } else if sum.abs() >= v.abs() {
            c += (sum - t) + v;
        } else {
            c += (v - t) + sum;
        }
        sum = t;
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

/// Population variance with Welford's running mean, as Prometheus's
/// `stdvar_over_time`.
fn variance_over_time(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut aux) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in p {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
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

/// Prometheus `irate`/`idelta` (instantValue).
fn instant_value(p: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (lt, lv) = p[p.len() - 1];
    let (pt, pv) = p[p.len() - 2];
    let result = if is_rate && lv < pv { lv } else { lv - pv };
    let interval = lt - pt;
    if interval == 0 {
        return None;
    }
    Some(if is_rate {
        result / (interval as f64 / 1000.0)
    } else {
        result
    })
}

/// Least-squares slope and intercept (at `intercept_t`), as Prometheus 2.42.
fn linear_regression(p: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut sum_y, mut sum_xy, mut sum_x2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = p[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in p.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        sum_x += x;
        sum_y += v;
        sum_xy += x * v;
        sum_x2 += x * x;
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Prometheus `holt_winters` (double exponential smoothing).
fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = p[0].1;
    let mut b = p[1].1 - p[0].1;
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
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

pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_go() {
        // 2024-02-29T13:45:00Z is a Thursday, day 60 of a leap year.
        let t = 1_709_214_300;
        assert_eq!(date_part(Func::Year, t), 2024.0);
        assert_eq!(date_part(Func::Month, t), 2.0);
        assert_eq!(date_part(Func::DayOfMonth, t), 29.0);
        assert_eq!(date_part(Func::DayOfWeek, t), 4.0);
        assert_eq!(date_part(Func::DayOfYear, t), 60.0);
        assert_eq!(date_part(Func::DaysInMonth, t), 29.0);
        assert_eq!(date_part(Func::Hour, t), 13.0);
        assert_eq!(date_part(Func::Minute, t), 45.0);
        assert_eq!(date_part(Func::DayOfWeek, 0), 4.0);
        assert_eq!(date_part(Func::Year, -1), 1969.0);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(2.0, vec![1.0]), f64::INFINITY);
        assert!(quantile(0.5, vec![]).is_nan());
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
