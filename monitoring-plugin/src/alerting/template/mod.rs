//! Go's `text/template` for alert labels and annotations, as Prometheus runs
//! it: any action Go accepts (printing any value, `if`/`else`/`range`/`with`,
//! variables, pipelines, `printf`, comparisons) and Prometheus's template
//! functions, with Prometheus's data (`$labels`, `$value`,
//! `$externalLabels`, `$externalURL`, `.Labels`, `.Value`, …).
//!
//! No crate fit: `gtmpl` (0.7) prints maps as Rust debug output
//! (`{"job": String("api")}` instead of Go's `map[job:api]`) and has no
//! `printf "%v"`, so this module is a small interpreter of its own:
//! [`parse`] (lexer and parser), [`exec`] (Go's evaluation and printing),
//! [`printf`] (Go's `Sprintf`), [`format`] (Go's float formatting and the
//! `humanize*` functions) and [`funcs`] (Prometheus's functions). Templates
//! are parsed at load time (a template Prometheus refuses is refused);
//! rendering errors give Prometheus's `<error expanding template: …>`.

use std::collections::BTreeMap;

pub mod exec;
pub mod format;
pub mod funcs;
pub mod parse;
pub mod printf;
pub mod value;

pub use format::{go_g, humanize, humanize1024, humanize_duration};

use exec::V;
use parse::{Arg, Node, Pipeline};

/// Errors of a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The text is not a valid template.
    #[error("template parse error: {0}")]
    Parse(String),
    /// Rendering failed.
    #[error("error executing template: {0}")]
    Exec(String),
}

/// One query result row: labels (with `__name__`) and value.
pub type QueryRow = (BTreeMap<String, String>, f64);

/// The `query` template function's engine.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QueryRow>, String>;

/// What a template renders with.
pub struct Env<'a> {
    /// The alert sample's labels (`$labels`, `.Labels`).
    pub labels: &'a BTreeMap<String, String>,
    /// The alert sample's value (`$value`, `.Value`).
    pub value: f64,
    /// `$externalLabels`.
    pub external_labels: &'a BTreeMap<String, String>,
    /// `$externalURL`, `externalURL`, `pathPrefix`.
    pub external_url: &'a str,
    /// Answers `query "…"` (none: the function fails).
    pub query: Option<QueryFn<'a>>,
}

/// Functions a template may call (Go's built-ins and Prometheus's).
const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "title",
    "toUpper",
    "toLower",
    "match",
    "reReplaceAll",
    "label",
    "value",
    "strvalue",
    "first",
    "sortByLabel",
    "args",
    "safeHtml",
    "stripPort",
    "stripDomain",
    "parseDuration",
    "externalURL",
    "pathPrefix",
    "graphLink",
    "tableLink",
    "query",
];

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

fn check_pipeline(p: &Pipeline, vars: &mut Vec<String>) -> Result<(), TemplateError> {
    for cmd in &p.cmds {
        for a in cmd {
            check_arg(a, vars)?;
        }
    }
    vars.extend(p.vars.iter().cloned());
    Ok(())
}

fn check_arg(a: &Arg, vars: &mut Vec<String>) -> Result<(), TemplateError> {
    match a {
        Arg::Ident(name) if !FUNCTIONS.contains(&name.as_str()) => Err(TemplateError::Parse(
            format!("function {name:?} not defined"),
        )),
        Arg::Var(name, _) if !vars.contains(name) => {
            Err(TemplateError::Parse(format!("undefined variable {name:?}")))
        }
        Arg::Pipe(p, _) => check_pipeline(p, vars),
        _ => Ok(()),
    }
}

fn check_nodes(nodes: &[Node], vars: &mut Vec<String>) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Action(p) => check_pipeline(p, vars)?,
            Node::Control {
                pipe, body, els, ..
            } => {
                let mark = vars.len();
                check_pipeline(pipe, vars)?;
                check_nodes(body, vars)?;
                check_nodes(els, vars)?;
                vars.truncate(mark);
            }
            _ => {}
        }
    }
    Ok(())
}

impl Template {
    /// Parses `text` and checks its functions and variables, as Prometheus
    /// does when it loads a rule.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let nodes = parse::parse(text)?;
        let mut vars: Vec<String> = ["$", "$labels", "$externalLabels", "$externalURL", "$value"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        check_nodes(&nodes, &mut vars)?;
        Ok(Template {
            source: text.to_owned(),
            nodes,
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `env`.
    pub fn render(&self, env: &Env<'_>) -> Result<String, TemplateError> {
        let str_map = |m: &BTreeMap<String, String>| {
            V::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), V::Str(v.clone())))
                    .collect(),
            )
        };
        let data: BTreeMap<String, V> = [
            ("Labels".to_string(), str_map(env.labels)),
            ("ExternalLabels".to_string(), str_map(env.external_labels)),
            (
                "ExternalURL".to_string(),
                V::Str(env.external_url.to_owned()),
            ),
            ("Value".to_string(), V::Float(env.value)),
        ]
        .into_iter()
        .collect();
        let data = V::Map(data);
        let mut ex = exec::Exec::new(env, data.clone());
        ex.declare("$labels", str_map(env.labels));
        ex.declare("$externalLabels", str_map(env.external_labels));
        ex.declare("$externalURL", V::Str(env.external_url.to_owned()));
        ex.declare("$value", V::Float(env.value));
        ex.run(&self.nodes, &data)?;
        Ok(ex.out)
    }

    /// Renders as Prometheus does for alerts: an error becomes the text
    /// `<error expanding template: …>`.
    pub fn expand(&self, env: &Env<'_>) -> String {
        self.render(env)
            .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
    }
}

#[cfg(test)]
mod tests;
