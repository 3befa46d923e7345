//! Conformance: the promtool unit-test files under `tests/rules/` run through our engine
//! (this file) and through `promtool test rules` (when installed). Both must pass on
//! the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use test_support::{require_peer, Promtool};

use monitoring_plugin::alerting::engine::{Engine, EngineConfig};
use monitoring_plugin::alerting::promql::{
    eval_instant_step, on_query_stack, parse_supported, Budget, Expr, QueryLimits, Value,
};
use monitoring_plugin::alerting::rules::{load_file, parse_duration};
use monitoring_plugin::alerting::samples::{
    stale_nan, Labels, SampleStore, SampleStoreConfig, METRIC_NAME,
};
use promql_parser::label::MatchOp;
use serde::Deserialize;

#[derive(Deserialize)]
struct TestFile {
    rule_files: Vec<String>,
    evaluation_interval: Option<String>,
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
struct TestGroup {
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTest>,
}

#[derive(Deserialize)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PromqlTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

fn test_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(rules_dir())
        .expect("tests/rules")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_test.yml"))
        .collect();
    v.sort();
    v
}

/// Parses `metric{a="b"}` (or `{a="b"}`) into labels.
fn parse_series(s: &str) -> Labels {
    if s.trim().is_empty() || s.trim() == "{}" {
        return Labels::default();
    }
    let Expr::Instant(sel) = parse_supported(s).unwrap_or_else(|e| panic!("series {s}: {e}"))
    else {
        panic!("series {s} is not a selector")
    };
    let mut pairs = Vec::new();
    for m in &sel.matchers {
        assert!(matches!(m.op, MatchOp::Equal), "series {s}: only = allowed");
        pairs.push((m.name.clone(), m.value.clone()));
    }
    Labels::new(pairs)
}

enum Item {
    Val(f64),
    Stale,
    Skip,
}

fn parse_num(s: &str) -> f64 {
    match s {
        "Inf" | "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s.parse().unwrap_or_else(|_| panic!("bad number {s:?}")),
    }
}

/// Expands promtool's series notation (`1 2 _ stale 0+10x3 1x2 _x2 5-1x2`).
fn expand(values: &str) -> Vec<Item> {
    let mut out = Vec::new();
    for tok in values.split_whitespace() {
        if tok == "_" {
            out.push(Item::Skip);
        } else if tok == "stale" {
            out.push(Item::Stale);
        } else if let Some((head, n)) = tok.rsplit_once('x') {
            let n: u64 = n.parse().unwrap_or_else(|_| panic!("bad count in {tok}"));
            if head == "_" {
                (0..n).for_each(|_| out.push(Item::Skip));
                continue;
            }
            // Find the sign that separates start and step (not a leading sign / exponent).
            let bytes = head.as_bytes();
            let split = (1..bytes.len())
                .rev()
                .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && bytes[i - 1] != b'e');
            let (start, step) = match split {
                Some(i) => (parse_num(&head[..i]), parse_num(&head[i..])),
                None => (parse_num(head), 0.0),
            };
            for j in 0..=n {
                out.push(Item::Val(start + step * j as f64));
            }
        } else {
            out.push(Item::Val(parse_num(tok)));
        }
    }
    out
}

fn dur(s: &str) -> i64 {
    parse_duration(s).unwrap_or_else(|e| panic!("{e}"))
}

fn run_file(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let tf: TestFile = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let eval_interval = tf.evaluation_interval.as_deref().map(dur).unwrap_or(60_000);
    let mut failures = Vec::new();
    let mut groups = Vec::new();
    for rf in &tf.rule_files {
        let r = load_file(&path.parent().unwrap().join(rf));
        assert!(r.errors.is_empty(), "{path:?}: rule errors: {:?}", r.errors);
        groups.extend(r.groups);
    }
    for (ti, tg) in tf.tests.iter().enumerate() {
        let history = SampleStore::new(SampleStoreConfig {
            retention_ms: i64::MAX / 4,
            max_series: 1_000_000,
            max_samples: 100_000_000,
        });
        let interval = tg.interval.as_deref().map(dur).unwrap_or(eval_interval);
        for s in &tg.input_series {
            let labels = parse_series(&s.series);
            for (i, item) in expand(&s.values).into_iter().enumerate() {
                let t = i as i64 * interval;
                match item {
                    Item::Val(v) => history.append(&labels, t, v),
                    Item::Stale => history.append(&labels, t, stale_nan()),
                    Item::Skip => {}
                }
            }
        }
        let mut engine = Engine::new(groups.clone(), EngineConfig::default());
        let mut alert_tests: Vec<(i64, &AlertTest)> = tg
            .alert_rule_test
            .iter()
            .map(|a| (dur(&a.eval_time), a))
            .collect();
        alert_tests.sort_by_key(|(t, _)| *t);
        let max_t = alert_tests
            .iter()
            .map(|(t, _)| *t)
            .chain(tg.promql_expr_test.iter().map(|p| dur(&p.eval_time)))
            .max()
            .unwrap_or(0);
        let mut ts = 0;
        while ts <= max_t {
            engine.eval_all(ts, &history);
            for (et, at) in &alert_tests {
                if ts <= *et && *et < ts + eval_interval {
                    let mut got: Vec<(BTreeMap<String, String>, BTreeMap<String, String>)> = engine
                        .firing_alerts(&at.alertname)
                        .into_iter()
                        .map(|a| {
                            (
                                a.labels.iter().map(|(k, v)| (k.into(), v.into())).collect(),
                                a.annotations.into_iter().collect(),
                            )
                        })
                        .collect();
                    let mut exp: Vec<(BTreeMap<String, String>, BTreeMap<String, String>)> = at
                        .exp_alerts
                        .iter()
                        .map(|e| {
                            let mut l = e.exp_labels.clone();
                            l.insert("alertname".into(), at.alertname.clone());
                            (l, e.exp_annotations.clone())
                        })
                        .collect();
                    got.sort();
                    exp.sort();
                    if got != exp {
                        failures.push(format!(
                            "{}: test #{ti}: alertname {} at {}: exp {exp:?} got {got:?}",
                            path.display(),
                            at.alertname,
                            at.eval_time
                        ));
                    }
                }
            }
            ts += eval_interval;
        }
        for pt in &tg.promql_expr_test {
            let expr = parse_supported(&pt.expr).unwrap_or_else(|e| panic!("{}: {e}", pt.expr));
            let limits = QueryLimits::default();
            let result = on_query_stack(|| {
                let budget = Budget::new(&limits);
                eval_instant_step(&expr, dur(&pt.eval_time), &history, &budget, eval_interval)
            })
            .and_then(|r| r);
            let got = match result {
                Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels, s.value)).collect(),
                Ok(Value::Scalar(v)) => vec![(Labels::default(), v)],
                Ok(Value::Matrix(_) | Value::String(_)) => vec![],
                Err(e) => {
                    failures.push(format!("{}: {}: {e}", path.display(), pt.expr));
                    continue;
                }
            };
            let mut got: Vec<(Labels, f64)> = got;
            let mut exp: Vec<(Labels, f64)> = pt
                .exp_samples
                .iter()
                .map(|s| (parse_series(&s.labels), s.value))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            exp.sort_by(|a, b| a.0.cmp(&b.0));
            let same = got.len() == exp.len()
                && got.iter().zip(&exp).all(|(g, e)| {
                    g.0 == e.0
                        && (g.1 == e.1
                            || (g.1.is_nan() && e.1.is_nan())
                            || (g.1 - e.1).abs() <= 1e-9 * e.1.abs().max(1.0))
                });
            if !same {
                failures.push(format!(
                    "{}: expr {} at {}: exp {exp:?} got {got:?}",
                    path.display(),
                    pt.expr,
                    pt.eval_time
                ));
            }
        }
    }
    let _ = METRIC_NAME;
    failures
}

#[test]
fn our_engine_passes_the_promtool_test_files() {
    let files = test_files();
    assert!(
        files.len() >= 15,
        "expected at least 15 test files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        failures.extend(run_file(f));
    }
    println!("conformance: {} files run through our engine", files.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn promtool_passes_the_same_files() {
    require_peer!(let Some(promtool) = Promtool::find(), "promtool not installed");
    let mut failed = Vec::new();
    let files = test_files();
    for f in &files {
        let out = promtool.test_rules(f, &rules_dir());
        if !out.success() {
            failed.push(format!("{}:\n{}", f.display(), out.report()));
        }
    }
    println!("promtool: {} files tested", files.len());
    assert!(failed.is_empty(), "promtool failed:\n{}", failed.join("\n"));
}

#[test]
fn shipped_rules_pass_promtool_check_and_load_in_our_subset() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus/rules/homeconsole.rules.yml");
    let r = load_file(&path);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.groups.iter().map(|g| g.rules.len()).sum::<usize>() >= 8);
    require_peer!(let Some(promtool) = Promtool::find(), "promtool not installed");
    let out = promtool.check_rules(&path);
    assert!(out.success(), "{}", out.report());
}

#[test]
fn a_collection_written_like_popular_ones_loads_with_zero_refused_rules() {
    let path = rules_dir().join("30_popular_collection.rules.yml");
    let r = load_file(&path);
    assert!(r.errors.is_empty(), "refused rules: {:?}", r.errors);
    let rules: usize = r.groups.iter().map(|g| g.rules.len()).sum();
    assert!(rules >= 30, "only {rules} rules");
    require_peer!(let Some(promtool) = Promtool::find(), "promtool not installed");
    let out = promtool.check_rules(&path);
    assert!(out.success(), "{}", out.report());
    assert!(
        out.stdout
            .contains(&format!("SUCCESS: {rules} rules found")),
        "{}",
        out.report()
    );
}
