//! The evaluator core: selectors, subqueries, `offset`/`@`, unary minus and
//! the dispatch to functions, aggregations and binary operators.
//!
//! An expression is evaluated at one timestamp at a time (a range query is
//! evaluated at every step), which keeps Prometheus's instant semantics
//! exact; every sample read and every subquery point is charged to the
//! query's [`Budget`], whose deadline is checked as it goes.

use std::collections::HashMap;

use super::super::samples::{is_stale_nan, Labels, SampleStore, SeriesData, METRIC_NAME};
use super::ast::{At, BinOp, Expr, Func, Selector};
use super::functions::{Operands, Selected, Window};
use super::{aggregate, binary, functions, Budget, PromqlError, Value, VectorSample, LOOKBACK_MS};

/// What an evaluation reads and where it stands.
pub(crate) struct Evaluator<'a> {
    /// The samples.
    pub samples: &'a SampleStore,
    /// The cost budget.
    pub budget: &'a Budget,
    /// Start of the query (`@ start()`), ms.
    pub start_ms: i64,
    /// End of the query (`@ end()`), ms.
    pub end_ms: i64,
    /// Step of subqueries that name none (the evaluation interval), ms.
    pub default_step_ms: i64,
}

impl Operands for Evaluator<'_> {
    fn eval(&self, e: &Expr, ts: i64) -> Result<Value, PromqlError> {
        Evaluator::eval(self, e, ts)
    }

    fn window(&self, e: &Expr, ts: i64) -> Result<Window, PromqlError> {
        Evaluator::window(self, e, ts)
    }

    fn select_instant(&self, sel: &Selector, ts: i64) -> Result<Vec<Selected>, PromqlError> {
        Evaluator::select_instant(self, sel, ts)
    }
}

impl Evaluator<'_> {
    fn resolve(&self, at: Option<At>, ts: i64) -> i64 {
        match at {
            None => ts,
            Some(At::Time(t)) => t,
            Some(At::Start) => self.start_ms,
            Some(At::End) => self.end_ms,
        }
    }

    /// Evaluates `e` at `ts`.
    pub fn eval(&self, e: &Expr, ts: i64) -> Result<Value, PromqlError> {
        Ok(match e {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Str(s) => Value::String(s.clone()),
            Expr::Instant(sel) => Value::Vector(
                self.select_instant(sel, ts)?
                    .into_iter()
                    .map(|s| VectorSample {
                        labels: s.labels,
                        value: s.value,
                    })
                    .collect(),
            ),
            Expr::Range(..) | Expr::Subquery { .. } => Value::Matrix(self.window(e, ts)?.series),
            Expr::Call(f, args) => {
                let v = functions::call(self, *f, args, ts)?;
                // Series of one metric stay distinct once the name is dropped;
                // only relabelling or mixed names can make two alike.
                let distinct = !matches!(f, Func::LabelReplace | Func::LabelJoin)
                    && args.iter().any(one_metric);
                if let (false, Value::Vector(v)) = (distinct, &v) {
                    check_unique(v)?;
                }
                v
            }
            Expr::Aggregate {
                op,
                grouping,
                param,
                expr,
            } => {
                let param = match param {
                    Some(p) => Some(self.eval(p, ts)?),
                    None => None,
                };
                let v = self.vector(expr, ts)?;
                Value::Vector(aggregate::aggregate(*op, grouping, param, v)?)
            }
            Expr::Neg(arg) => match self.eval(arg, ts)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => {
                    let out: Vec<VectorSample> = v
                        .into_iter()
                        .map(|s| VectorSample {
                            labels: s.labels.without_name(),
                            value: -s.value,
                        })
                        .collect();
                    check_unique(&out)?;
                    Value::Vector(out)
                }
                _ => return Err(PromqlError::Eval("unary minus on a non-number".into())),
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
                // Only a dropped name or `or` can make two series alike;
                // vector matching already refuses ambiguous matches.
                let may_collide = *op == BinOp::Or
                    || (matches!((&l, &r), (Value::Scalar(_), _) | (_, Value::Scalar(_)))
                        && (*return_bool || binary::drops_name(*op)));
                let v = binary::binary(*op, *return_bool, matching, l, r)?;
                if let (true, Value::Vector(v)) = (may_collide, &v) {
                    check_unique(v)?;
                }
                v
            }
        })
    }

    /// The latest sample of every selected series within the lookback (5 m,
    /// inclusive) before `ts` (`@` and offset applied); staleness ends a series.
    pub fn select_instant(&self, sel: &Selector, ts: i64) -> Result<Vec<Selected>, PromqlError> {
        let t_ref = self.resolve(sel.at, ts) - sel.offset_ms;
        let mut out = Vec::new();
        let mut charged = Ok(());
        self.samples
            .for_each_selected(&sel.matchers, |labels, samples| {
                if charged.is_err() {
                    return;
                }
                // Every series visited counts, found sample or not.
                charged = self.budget.take(1);
                let idx = samples.partition_point(|(t, _)| *t <= t_ref);
                if idx == 0 {
                    return;
                }
                let (t, v) = samples[idx - 1];
                if t < t_ref - LOOKBACK_MS || is_stale_nan(v) {
                    return;
                }
                out.push(Selected {
                    labels: labels.clone(),
                    t,
                    value: v,
                });
            });
        charged.map(|()| out)
    }

    /// A range selector or subquery evaluated at `ts`.
    pub fn window(&self, e: &Expr, ts: i64) -> Result<Window, PromqlError> {
        match e {
            Expr::Range(sel, range) => {
                let end = self.resolve(sel.at, ts) - sel.offset_ms;
                Ok(Window {
                    series: self.select_range(sel, end, *range)?,
                    end,
                    range: *range,
                })
            }
            Expr::Subquery {
                expr,
                range_ms,
                step_ms,
                offset_ms,
                at,
            } => {
                let end = self.resolve(*at, ts) - offset_ms;
                let step = step_ms.unwrap_or(self.default_step_ms).max(1);
                let start = end - range_ms;
                // The first multiple of the step at or after the window start.
                let mut t = start.div_euclid(step) * step;
                if t < start {
                    t += step;
                }
                let mut index: HashMap<Labels, usize> = HashMap::new();
                let mut series: Vec<SeriesData> = Vec::new();
                while t <= end {
                    self.budget.check_deadline()?;
                    let points = self.vector(expr, t)?;
                    self.budget.take(points.len() as u64)?;
                    for p in points {
                        let i = *index.entry(p.labels.clone()).or_insert_with(|| {
                            series.push(SeriesData {
                                labels: p.labels,
                                samples: Vec::new(),
                            });
                            series.len() - 1
                        });
                        series[i].samples.push((t, p.value));
                    }
                    t += step;
                }
                Ok(Window {
                    series,
                    end,
                    range: *range_ms,
                })
            }
            _ => Err(PromqlError::Eval("expected a range vector".into())),
        }
    }

    /// Samples of every selected series in `[end - range, end]`, staleness
    /// markers dropped; series without samples are left out.
    fn select_range(
        &self,
        sel: &Selector,
        end: i64,
        range: i64,
    ) -> Result<Vec<SeriesData>, PromqlError> {
        let start = end - range;
        let mut out = Vec::new();
        let mut charged = Ok(());
        self.samples
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
}

/// Whether `e` selects series of one metric name (an `=` matcher on `__name__`).
fn one_metric(e: &Expr) -> bool {
    match e {
        Expr::Instant(s) | Expr::Range(s, _) => s
            .matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && matches!(m.op, promql_parser::label::MatchOp::Equal)),
        _ => false,
    }
}

/// Prometheus refuses a result with two series of the same labels.
pub(crate) fn check_unique(v: &[VectorSample]) -> Result<(), PromqlError> {
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
