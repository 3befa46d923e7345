//! Aggregation operators with `by`/`without`: `sum`, `avg`, `min`, `max`,
//! `count`, `group`, `stddev`, `stdvar`, `topk`, `bottomk`, `quantile` and
//! `count_values`, with Prometheus 2.42's arithmetic (incremental mean and
//! variance, the heap `topk`/`bottomk` keep) so results match to the bit.

use std::collections::HashMap;

use plugin_abi::metric_names::is_label_name;

use super::super::samples::Labels;
use super::ast::{AggOp, Grouping};
use super::numeric::{go_format_float, quantile};
use super::{PromqlError, Value, VectorSample};

struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    count: f64,
    /// Members kept by topk/bottomk (a Go-style binary heap) or quantile.
    heap: Vec<VectorSample>,
}

fn group_key(labels: &Labels, grouping: &Grouping) -> Labels {
    match grouping {
        Grouping::By(names) => labels.keep_only(names),
        Grouping::Without(names) => labels.drop_these(names).without_name(),
    }
}

/// Go's `Less` of the topk heap (lowest value on top, NaN lowest).
fn less_topk(a: f64, b: f64) -> bool {
    if a.is_nan() && !b.is_nan() {
        return true;
    }
    a < b
}

/// Go's `Less` of the bottomk heap (highest value on top, NaN highest).
fn less_bottomk(a: f64, b: f64) -> bool {
    if a.is_nan() && !b.is_nan() {
        return true;
    }
    a > b
}

fn heap_up(h: &mut [VectorSample], mut j: usize, less: fn(f64, f64) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if i == j || !less(h[j].value, h[i].value) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [VectorSample], i0: usize, n: usize, less: fn(f64, f64) -> bool) {
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(h[j2].value, h[j1].value) {
            j = j2;
        }
        if !less(h[j].value, h[i].value) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_push(h: &mut Vec<VectorSample>, s: VectorSample, less: fn(f64, f64) -> bool) {
    h.push(s);
    let n = h.len() - 1;
    heap_up(h, n, less);
}

fn heap_pop(h: &mut Vec<VectorSample>, less: fn(f64, f64) -> bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    heap_down(h, 0, n, less);
    h.pop();
}

/// Evaluates `op` over `v`; `param` is the evaluated parameter, if any.
pub(crate) fn aggregate(
    op: AggOp,
    grouping: &Grouping,
    param: Option<Value>,
    v: Vec<VectorSample>,
) -> Result<Vec<VectorSample>, PromqlError> {
    let mut k: usize = 0;
    let mut q = 0.0;
    let mut value_label = String::new();
    let mut grouping = grouping.clone();
    match (op, param) {
        (AggOp::Topk | AggOp::Bottomk, Some(Value::Scalar(f))) => {
            if !(f.is_finite() && f >= i64::MIN as f64 && f <= i64::MAX as f64) {
                return Err(PromqlError::Eval(format!(
                    "Scalar value {} overflows int64",
                    go_format_float(f)
                )));
            }
            let n = f as i64;
            if n < 1 {
                return Ok(Vec::new());
            }
            k = usize::try_from(n).unwrap_or(usize::MAX);
        }
        (AggOp::Quantile, Some(Value::Scalar(f))) => q = f,
        (AggOp::CountValues, Some(Value::String(s))) => {
            if !is_label_name(&s) {
                return Err(PromqlError::Eval(format!("invalid label name {s:?}")));
            }
            if let Grouping::By(names) = &mut grouping {
                names.push(s.clone());
            }
            value_label = s;
        }
        (AggOp::Topk | AggOp::Bottomk | AggOp::Quantile | AggOp::CountValues, _) => {
            return Err(PromqlError::Eval(
                "aggregation parameter of the wrong type".into(),
            ));
        }
        _ => {}
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for mut s in v {
        if op == AggOp::CountValues {
            s.labels.set(&value_label, &go_format_float(s.value));
        }
        let key = group_key(&s.labels, &grouping);
        let Some(&gi) = index.get(&key) else {
            index.insert(key.clone(), groups.len());
            let mut g = Group {
                labels: key,
                value: s.value,
                mean: s.value,
                count: 1.0,
                heap: Vec::new(),
            };
            match op {
                AggOp::Stddev | AggOp::Stdvar => g.value = 0.0,
                AggOp::Group => g.value = 1.0,
                AggOp::Topk | AggOp::Bottomk | AggOp::Quantile => g.heap.push(s),
                _ => {}
            }
            groups.push(g);
            continue;
        };
        let g = &mut groups[gi];
        match op {
            AggOp::Sum => g.value += s.value,
            AggOp::Avg => {
                g.count += 1.0;
                if g.mean.is_infinite() {
                    if s.value.is_infinite() && (g.mean > 0.0) == (s.value > 0.0) {
                        continue;
                    }
                    if !s.value.is_infinite() && !s.value.is_nan() {
                        continue;
                    }
                }
                g.mean += s.value / g.count - g.mean / g.count;
            }
            AggOp::Group => {}
            AggOp::Max => {
                if g.value < s.value || g.value.is_nan() {
                    g.value = s.value;
                }
            }
            AggOp::Min => {
                if g.value > s.value || g.value.is_nan() {
                    g.value = s.value;
                }
            }
            AggOp::Count | AggOp::CountValues => g.count += 1.0,
            AggOp::Stddev | AggOp::Stdvar => {
                g.count += 1.0;
                let delta = s.value - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (s.value - g.mean);
            }
            AggOp::Topk | AggOp::Bottomk => {
                let less = if op == AggOp::Topk {
                    less_topk
                } else {
                    less_bottomk
                };
                let top = g.heap[0].value;
                let better = if op == AggOp::Topk {
                    top < s.value
                } else {
                    top > s.value
                };
                if g.heap.len() < k || better || top.is_nan() {
                    if g.heap.len() == k {
                        if k == 1 {
                            g.heap[0] = s;
                            continue;
                        }
                        heap_pop(&mut g.heap, less);
                    }
                    heap_push(&mut g.heap, s, less);
                }
            }
            AggOp::Quantile => g.heap.push(s),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let value = match op {
            AggOp::Avg => g.mean,
            AggOp::Count | AggOp::CountValues => g.count,
            AggOp::Stdvar => g.value / g.count,
            AggOp::Stddev => (g.value / g.count).sqrt(),
            AggOp::Topk | AggOp::Bottomk => {
                let mut heap = g.heap;
                // Highest first for topk, lowest first for bottomk, NaN last.
                let less = if op == AggOp::Topk {
                    less_topk
                } else {
                    less_bottomk
                };
                heap.sort_by(|a, b| {
                    if less(b.value, a.value) {
                        std::cmp::Ordering::Less
                    } else if less(a.value, b.value) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                });
                out.extend(heap);
                continue;
            }
            AggOp::Quantile => {
                let values: Vec<f64> = g.heap.iter().map(|s| s.value).collect();
                quantile(q, values)
            }
            _ => g.value,
        };
        out.push(VectorSample {
            labels: g.labels,
            value,
        });
    }
    Ok(out)
}
