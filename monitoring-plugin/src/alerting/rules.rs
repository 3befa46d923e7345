//! Loading of Prometheus rule files (`groups: [{name, interval, rules: [...]}]`).
//!
//! The plugin reads the very rule files a Prometheus server would, so alerting can move
//! to Prometheus unchanged. Rule files are untrusted input: every rule is checked on
//! its own (YAML shape, duration syntax, label names, PromQL, templates)
//! and a broken rule yields a [`RuleError`] naming the file, the group, the rule and
//! the problem, while every other rule still loads.
//!
//! Both alerting rules (`alert:`) and recording rules (`record:`) are accepted.

use std::path::{Path, PathBuf};

use plugin_abi::metric_names::{is_label_name, is_metric_name};
use serde_norway::Value as Yaml;

use super::promql::{parse_supported, Expr};
pub use super::syntax::parse_duration;
use super::template::Template;

/// A problem with one file, group or rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{}{message}",
    group.as_ref().map(|g| format!("group \"{g}\": ")).unwrap_or_default(),
    rule.as_ref().map(|r| format!("rule \"{r}\": ")).unwrap_or_default())]
pub struct RuleError {
    /// The rule file.
    pub file: String,
    /// The group name, when the problem is inside a group.
    pub group: Option<String>,
    /// The alert (or record) name, or `#N` (1-based) when it has none.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// A checked alerting rule.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    /// `alert:` name.
    pub name: String,
    /// `expr:` as written.
    pub expr_text: String,
    /// The checked expression.
    pub expr: Expr,
    /// `for:` in milliseconds.
    pub for_ms: i64,
    /// `keep_firing_for:` in milliseconds.
    pub keep_firing_for_ms: i64,
    /// `labels:` (templated values), in name order.
    pub labels: Vec<(String, Template)>,
    /// `annotations:` (templated values), in name order.
    pub annotations: Vec<(String, Template)>,
}

/// A checked recording rule.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// `record:` metric name.
    pub record: String,
    /// `expr:` as written.
    pub expr_text: String,
    /// The checked expression.
    pub expr: Expr,
    /// `labels:` (plain values), in name order.
    pub labels: Vec<(String, String)>,
}

/// A rule of either kind.
#[derive(Debug, Clone)]
pub enum Rule {
    /// `alert:`
    Alerting(AlertingRule),
    /// `record:`
    Recording(RecordingRule),
}

impl Rule {
    /// The alert or record name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Alerting(r) => &r.name,
            Rule::Recording(r) => &r.record,
        }
    }
}

/// A rule group.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    /// The file it came from.
    pub file: String,
    /// Group name.
    pub name: String,
    /// `interval:` in milliseconds, if set.
    pub interval_ms: Option<i64>,
    /// The rules that loaded.
    pub rules: Vec<Rule>,
}

/// Everything loaded, and every problem found.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Groups with their valid rules.
    pub groups: Vec<RuleGroup>,
    /// Problems (each naming file, group and rule).
    pub errors: Vec<RuleError>,
}

/// Loads every `*.yml` / `*.yaml` file of `dir` (not recursive), in name order.
pub fn load_dir(dir: &Path) -> LoadResult {
    let mut res = LoadResult::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            res.errors.push(RuleError {
                file: dir.display().to_string(),
                group: None,
                rule: None,
                message: format!("cannot read rule directory: {e}"),
            });
            return res;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yml") | Some("yaml")
                )
        })
        .collect();
    files.sort();
    for f in files {
        let r = load_file(&f);
        res.groups.extend(r.groups);
        res.errors.extend(r.errors);
    }
    res
}

/// Loads one rule file.
pub fn load_file(path: &Path) -> LoadResult {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_rule_file(&text, &file),
        Err(e) => LoadResult {
            groups: Vec::new(),
            errors: vec![RuleError {
                file,
                group: None,
                rule: None,
                message: format!("cannot read: {e}"),
            }],
        },
    }
}

/// Parses rule-file text; `file` names it in errors.
pub fn parse_rule_file(text: &str, file: &str) -> LoadResult {
    let mut res = LoadResult::default();
    let err = |group: Option<&str>, rule: Option<&str>, message: String| RuleError {
        file: file.to_string(),
        group: group.map(str::to_string),
        rule: rule.map(str::to_string),
        message,
    };
    let doc: Yaml = match serde_norway::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            res.errors
                .push(err(None, None, format!("invalid YAML: {e}")));
            return res;
        }
    };
    let groups = match &doc {
        Yaml::Null => return res,
        Yaml::Mapping(m) => {
            for k in m.keys() {
                if k.as_str() != Some("groups") {
                    res.errors
                        .push(err(None, None, format!("unknown field {}", key_text(k))));
                }
            }
            match m.get("groups") {
                None | Some(Yaml::Null) => return res,
                Some(Yaml::Sequence(s)) => s,
                Some(_) => {
                    res.errors
                        .push(err(None, None, "\"groups\" must be a list".into()));
                    return res;
                }
            }
        }
        _ => {
            res.errors.push(err(
                None,
                None,
                "top level must be a mapping with \"groups\"".into(),
            ));
            return res;
        }
    };
    let mut seen_groups: Vec<String> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let Yaml::Mapping(gm) = g else {
            res.errors.push(err(
                None,
                None,
                format!("group #{} is not a mapping", gi + 1),
            ));
            continue;
        };
        let name = match gm.get("name").and_then(Yaml::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                res.errors
                    .push(err(None, None, format!("group #{} has no name", gi + 1)));
                continue;
            }
        };
        if seen_groups.contains(&name) {
            res.errors.push(err(
                Some(&name),
                None,
                "group name is repeated in the same file".into(),
            ));
            continue;
        }
        seen_groups.push(name.clone());
        let mut bad_group = false;
        for k in gm.keys() {
            match k.as_str() {
                Some("name" | "interval" | "rules" | "limit") => {}
                _ => {
                    res.errors.push(err(
                        Some(&name),
                        None,
                        format!("unknown field {}", key_text(k)),
                    ));
                    bad_group = true;
                }
            }
        }
        let interval_ms = match gm.get("interval") {
            None | Some(Yaml::Null) => None,
            Some(v) => match scalar_text(v).as_deref().map(parse_duration) {
                Some(Ok(ms)) if ms > 0 => Some(ms),
                Some(Ok(_)) => None,
                Some(Err(e)) => {
                    res.errors
                        .push(err(Some(&name), None, format!("bad interval: {e}")));
                    bad_group = true;
                    None
                }
                None => {
                    res.errors
                        .push(err(Some(&name), None, "bad interval".into()));
                    bad_group = true;
                    None
                }
            },
        };
        if bad_group {
            continue;
        }
        let mut group = RuleGroup {
            file: file.to_string(),
            name: name.clone(),
            interval_ms,
            rules: Vec::new(),
        };
        let rules = match gm.get("rules") {
            None | Some(Yaml::Null) => &Vec::new(),
            Some(Yaml::Sequence(s)) => s,
            Some(_) => {
                res.errors
                    .push(err(Some(&name), None, "\"rules\" must be a list".into()));
                continue;
            }
        };
        for (ri, r) in rules.iter().enumerate() {
            match parse_rule(r) {
                Ok(rule) => group.rules.push(rule),
                Err((rname, msg)) => {
                    let rname = rname.unwrap_or_else(|| format!("#{}", ri + 1));
                    res.errors.push(err(Some(&name), Some(&rname), msg));
                }
            }
        }
        res.groups.push(group);
    }
    res
}

fn key_text(k: &Yaml) -> String {
    scalar_text(k)
        .map(|s| format!("\"{s}\""))
        .unwrap_or_else(|| "(not a string)".into())
}

fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

type RuleErr = (Option<String>, String);

fn parse_rule(r: &Yaml) -> Result<Rule, RuleErr> {
    let Yaml::Mapping(m) = r else {
        return Err((None, "rule is not a mapping".into()));
    };
    let alert = m.get("alert").map(|v| scalar_text(v).unwrap_or_default());
    let record = m.get("record").map(|v| scalar_text(v).unwrap_or_default());
    let rname = alert
        .clone()
        .or_else(|| record.clone())
        .filter(|s| !s.is_empty());
    let fail = |msg: String| -> Result<Rule, RuleErr> { Err((rname.clone(), msg)) };
    for k in m.keys() {
        match k.as_str() {
            Some(
                "alert" | "record" | "expr" | "for" | "keep_firing_for" | "labels" | "annotations",
            ) => {}
            _ => return fail(format!("unknown field {}", key_text(k))),
        }
    }
    let expr_text = match m.get("expr").and_then(scalar_text) {
        Some(e) if !e.trim().is_empty() => e,
        _ => return fail("field \"expr\" must be set".into()),
    };
    let expr = match parse_supported(&expr_text) {
        Ok(e) => e,
        Err(e) => return fail(format!("expr {expr_text:?}: {e}")),
    };
    let label_map = |field: &str| -> Result<Vec<(String, String)>, String> {
        match m.get(field) {
            None | Some(Yaml::Null) => Ok(Vec::new()),
            Some(Yaml::Mapping(lm)) => {
                let mut out = Vec::new();
                for (k, v) in lm {
                    let k = k
                        .as_str()
                        .ok_or_else(|| format!("{field}: non-string name"))?;
                    let v = scalar_text(v)
                        .ok_or_else(|| format!("{field}: value of {k:?} is not a scalar"))?;
                    out.push((k.to_string(), v));
                }
                out.sort();
                Ok(out)
            }
            Some(_) => Err(format!("\"{field}\" must be a mapping")),
        }
    };
    let labels = match label_map("labels") {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    for (k, _) in &labels {
        if !is_label_name(k) {
            return fail(format!("invalid label name {k:?}"));
        }
        if k == "__name__" {
            return fail("label \"__name__\" cannot be set by a rule".into());
        }
    }
    match (alert, record) {
        (Some(_), Some(_)) => fail("only one of \"record\" and \"alert\" must be set".into()),
        (None, None) => fail("one of \"record\" or \"alert\" must be set".into()),
        (None, Some(record)) => {
            if !is_metric_name(&record) {
                return fail(format!("invalid recording rule name {record:?}"));
            }
            for f in ["for", "keep_firing_for", "annotations"] {
                if m.contains_key(f) {
                    return fail(format!("invalid field {f:?} in recording rule"));
                }
            }
            for (_, v) in &labels {
                if v.contains("{{") {
                    return fail("templates are not allowed in recording rule labels".into());
                }
            }
            Ok(Rule::Recording(RecordingRule {
                record,
                expr_text,
                expr,
                labels,
            }))
        }
        (Some(name), None) => {
            if name.is_empty() {
                return fail("field \"alert\" must not be empty".into());
            }
            let dur = |f: &str| -> Result<i64, String> {
                match m.get(f) {
                    None | Some(Yaml::Null) => Ok(0),
                    Some(v) => {
                        let t = scalar_text(v).ok_or_else(|| format!("{f}: not a duration"))?;
                        parse_duration(&t).map_err(|e| format!("{f}: {e}"))
                    }
                }
            };
            let for_ms = match dur("for") {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            let keep_firing_for_ms = match dur("keep_firing_for") {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            let annotations = match label_map("annotations") {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            let tmpl = |kind: &str,
                        pairs: Vec<(String, String)>|
             -> Result<Vec<(String, Template)>, String> {
                pairs
                    .into_iter()
                    .map(|(k, v)| {
                        Template::parse(&v)
                            .map(|t| (k.clone(), t))
                            .map_err(|e| format!("{kind} {k:?}: {e}"))
                    })
                    .collect()
            };
            let labels = match tmpl("label", labels) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            let annotations = match tmpl("annotation", annotations) {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            Ok(Rule::Alerting(AlertingRule {
                name,
                expr_text,
                expr,
                for_ms,
                keep_firing_for_ms,
                labels,
                annotations,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_rule_does_not_hide_others() {
        let text = r#"
groups:
  - name: g
    rules:
      - alert: Good
        expr: up == 0
        for: 5m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.job }} down"}
      - alert: Bad
        expr: rate(up)
      - alert: BadTemplate
        expr: up
        annotations: {x: "{{ if 1 }}"}
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: BadFor
        expr: up
        for: 5 minutes
"#;
        let r = parse_rule_file(text, "f.yml");
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].rules.len(), 2);
        assert_eq!(r.errors.len(), 3);
        let e = r.errors[0].to_string();
        assert!(
            e.contains("f.yml") && e.contains("group \"g\"") && e.contains("rule \"Bad\""),
            "{e}"
        );
        assert!(e.contains("expected type matrix"), "{e}");
        assert!(parse_rule_file("groups: [", "x.yml").errors[0]
            .to_string()
            .contains("x.yml"));
    }

    #[test]
    fn recording_rule_names_and_rule_label_names_are_checked() {
        let text = r#"
groups:
  - name: g
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - record: "job-up"
        expr: up
      - record: "1up"
        expr: up
      - alert: BadLabel
        expr: up
        labels: {"sev-erity": page}
      - alert: ColonLabel
        expr: up
        labels: {"a:b": page}
"#;
        let r = parse_rule_file(text, "f.yml");
        assert_eq!(r.groups[0].rules.len(), 1, "only job:up:sum loads");
        let errors: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].contains("invalid recording rule name \"job-up\""),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("invalid recording rule name \"1up\""),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("invalid label name \"sev-erity\""),
            "{errors:?}"
        );
        assert!(
            errors[3].contains("invalid label name \"a:b\""),
            "{errors:?}"
        );
    }
}
