//! Binary operators: arithmetic, comparisons (with or without `bool`),
//! `atan2`, the set operators, and vector matching one-to-one, many-to-one
//! (`group_left`) and one-to-many (`group_right`) with `on`/`ignoring`, as
//! Prometheus 2.42 computes them (which side's labels survive, when
//! `__name__` is dropped, and the errors on ambiguous matches).

use std::collections::{HashMap, HashSet};

use super::super::samples::{Labels, METRIC_NAME};
use super::ast::{BinOp, Card, Matching};
use super::{PromqlError, Value, VectorSample};

/// Applies an arithmetic or comparison operator; returns (value, keep).
pub(crate) fn elem(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (f64::NAN, false),
    }
}

/// Whether the result of `op` loses the metric name (`atan2` keeps it in 2.42).
pub(crate) fn drops_name(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow
    )
}

fn signature(labels: &Labels, m: &Matching) -> Labels {
    if m.on {
        labels.keep_only(&m.labels)
    } else {
        labels.drop_these(&m.labels).without_name()
    }
}

/// Evaluates `l op r`.
pub(crate) fn binary(
    op: BinOp,
    return_bool: bool,
    m: &Matching,
    l: Value,
    r: Value,
) -> Result<Value, PromqlError> {
    match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => {
            let (v, keep) = elem(op, a, b);
            Ok(Value::Scalar(if op.is_comparison() {
                if keep {
                    1.0
                } else {
                    0.0
                }
            } else {
                v
            }))
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            Ok(Value::Vector(vector_scalar(op, return_bool, v, s, false)))
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            Ok(Value::Vector(vector_scalar(op, return_bool, v, s, true)))
        }
        (Value::Vector(a), Value::Vector(b)) => Ok(Value::Vector(match op {
            BinOp::And => {
                if a.is_empty() || b.is_empty() {
                    Vec::new()
                } else {
                    let sigs: HashSet<Labels> = b.iter().map(|s| signature(&s.labels, m)).collect();
                    a.into_iter()
                        .filter(|s| sigs.contains(&signature(&s.labels, m)))
                        .collect()
                }
            }
            BinOp::Unless => {
                let sigs: HashSet<Labels> = b.iter().map(|s| signature(&s.labels, m)).collect();
                a.into_iter()
                    .filter(|s| !sigs.contains(&signature(&s.labels, m)))
                    .collect()
            }
            BinOp::Or => {
                let sigs: HashSet<Labels> = a.iter().map(|s| signature(&s.labels, m)).collect();
                let mut out = a;
                out.extend(
                    b.into_iter()
                        .filter(|s| !sigs.contains(&signature(&s.labels, m))),
                );
                out
            }
            _ => vector_vector(op, return_bool, m, a, b)?,
        })),
        _ => Err(PromqlError::Eval(
            "binary expression must contain only scalar and instant vector types".into(),
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
        let (mut value, mut keep) = elem(op, lv, rv);
        if op.is_comparison() && swap {
            value = rv;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            e.value = value;
            if drops_name(op) || return_bool {
                e.labels.remove(METRIC_NAME);
            }
            out.push(e);
        }
    }
    out
}

fn result_labels(l: &Labels, r: &Labels, op: BinOp, m: &Matching) -> Labels {
    let mut out = l.clone();
    if drops_name(op) {
        out.remove(METRIC_NAME);
    }
    match &m.card {
        Card::OneToOne => {
            out = if m.on {
                out.keep_only(&m.labels)
            } else {
                out.drop_these(&m.labels)
            };
        }
        Card::ManyToOne(include) | Card::OneToMany(include) => {
            for name in include {
                match r.get(name) {
                    Some(v) => out.set(name, v),
                    None => out.remove(name),
                }
            }
        }
        Card::ManyToMany => {}
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
    let one_to_many = matches!(m.card, Card::OneToMany(_));
    // The "one" side goes right; one-to-many swaps the sides.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut right: HashMap<Labels, VectorSample> = HashMap::with_capacity(one.len());
    for s in one {
        let sig = signature(&s.labels, m);
        if let Some(dup) = right.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            let matched = if m.on {
                s.labels.keep_only(&m.labels)
            } else {
                s.labels.drop_these(&m.labels).without_name()
            };
            return Err(PromqlError::Eval(format!(
                "found duplicate series for the match group {matched} on the {side} hand-side of \
                 the operation: [{}, {}];many-to-many matching not allowed: matching labels must \
                 be unique on one side",
                s.labels, dup.labels
            )));
        }
        right.insert(sig, s);
    }
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for s in many {
        let sig = signature(&s.labels, m);
        let Some(rs) = right.get(&sig) else { continue };
        let (vl, vr) = if one_to_many {
            (rs.value, s.value)
        } else {
            (s.value, rs.value)
        };
        let (mut value, keep) = elem(op, vl, vr);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels = result_labels(&s.labels, &rs.labels, op, m);
        if return_bool {
            labels.remove(METRIC_NAME);
        }
        match &m.card {
            Card::OneToOne => {
                if matched.contains_key(&sig) {
                    return Err(PromqlError::Eval(
                        "multiple matches for labels: many-to-one matching must be explicit \
                         (group_left/group_right)"
                            .into(),
                    ));
                }
                matched.insert(sig, HashSet::new());
            }
            _ => {
                let seen = matched.entry(sig).or_default();
                if !seen.insert(labels.clone()) {
                    return Err(PromqlError::Eval(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
            }
        }
        out.push(VectorSample { labels, value });
    }
    Ok(out)
}
