//! Executes a parsed template the way Go's `text/template` does: Go's
//! printing of values (`map[a:b c:d]`, `1e+06`, `<no value>`), truthiness,
//! variable scopes, `range` over maps (sorted keys) and lists, and the
//! built-in functions (`and`, `or`, `not`, `len`, `index`, `print`,
//! `printf`, `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `html`, `js`,
//! `urlquery`), plus Prometheus's template functions ([`super::funcs`]).

use super::parse::{Arg, Ctl, Node, Pipeline};
pub use super::value::V;
use super::{funcs, Env, TemplateError};

fn fail<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Exec(msg.into()))
}

/// Control flow out of a `range` body.
pub(crate) enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) struct Exec<'e> {
    pub env: &'e Env<'e>,
    pub out: String,
    vars: Vec<(String, V)>,
    steps: usize,
}

/// Most nodes a render may execute (a `range` over a huge query result
/// cannot run away).
const MAX_STEPS: usize = 1_000_000;
/// Largest output of one render, bytes.
const MAX_OUTPUT: usize = 1 << 20;

impl<'e> Exec<'e> {
    pub fn new(env: &'e Env<'e>, data: V) -> Self {
        Exec {
            env,
            out: String::new(),
            vars: vec![("$".into(), data)],
            steps: 0,
        }
    }

    /// Declares a variable in the outermost scope.
    pub fn declare(&mut self, name: &str, v: V) {
        self.vars.push((name.to_owned(), v));
    }

    fn var(&self, name: &str) -> Result<V, TemplateError> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| TemplateError::Exec(format!("undefined variable: {name}")))
    }

    pub fn run(&mut self, nodes: &[Node], dot: &V) -> Result<Flow, TemplateError> {
        for n in nodes {
            self.steps += 1;
            if self.steps > MAX_STEPS || self.out.len() > MAX_OUTPUT {
                return fail("template output or work too large");
            }
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.vars.is_empty() {
                        self.out.push_str(&v.go_string());
                    }
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
                Node::Control {
                    kind,
                    pipe,
                    body,
                    els,
                } => {
                    let mark = self.vars.len();
                    let flow = self.control(*kind, pipe, body, els, dot);
                    self.vars.truncate(mark);
                    match flow? {
                        Flow::Normal => {}
                        other => return Ok(other),
                    }
                }
            }
        }
        Ok(Flow::Normal)
    }

    fn control(
        &mut self,
        kind: Ctl,
        pipe: &Pipeline,
        body: &[Node],
        els: &[Node],
        dot: &V,
    ) -> Result<Flow, TemplateError> {
        match kind {
            Ctl::If | Ctl::With => {
                let v = self.pipeline(pipe, dot)?;
                if v.truth() {
                    let d = if kind == Ctl::With { v } else { dot.clone() };
                    self.run(body, &d)
                } else {
                    self.run(els, dot)
                }
            }
            Ctl::Range => {
                let v = self.commands(&pipe.cmds, dot)?;
                let items: Vec<(V, V)> = match v {
                    V::Map(m) | V::Args(m) => m.into_iter().map(|(k, v)| (V::Str(k), v)).collect(),
                    V::List(l) => l
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (V::Int(i as i64), v))
                        .collect(),
                    V::Nil => Vec::new(),
                    other => {
                        return fail(format!("range can't iterate over {}", other.go_string()))
                    }
                };
                if items.is_empty() {
                    return self.run(els, dot);
                }
                for (k, v) in items {
                    let mark = self.vars.len();
                    match pipe.vars.as_slice() {
                        [] => {}
                        [e] => self.set_var(e, v.clone(), pipe.assign)?,
                        [kn, en, ..] => {
                            self.set_var(kn, k, pipe.assign)?;
                            self.set_var(en, v.clone(), pipe.assign)?;
                        }
                    }
                    let flow = self.run(body, &v);
                    self.vars.truncate(mark);
                    match flow? {
                        Flow::Break => break,
                        Flow::Continue | Flow::Normal => {}
                    }
                }
                Ok(Flow::Normal)
            }
        }
    }

    fn set_var(&mut self, name: &str, v: V, assign: bool) -> Result<(), TemplateError> {
        if assign {
            match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = v,
                None => return fail(format!("undefined variable: {name}")),
            }
        } else {
            self.vars.push((name.to_owned(), v));
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &V) -> Result<V, TemplateError> {
        let v = self.commands(&p.cmds, dot)?;
        for name in &p.vars {
            self.set_var(name, v.clone(), p.assign)?;
        }
        Ok(v)
    }

    fn commands(&mut self, cmds: &[Vec<Arg>], dot: &V) -> Result<V, TemplateError> {
        let mut prev: Option<V> = None;
        for cmd in cmds {
            prev = Some(self.command(cmd, dot, prev)?);
        }
        Ok(prev.unwrap_or(V::Nil))
    }

    fn command(&mut self, cmd: &[Arg], dot: &V, piped: Option<V>) -> Result<V, TemplateError> {
        match &cmd[0] {
            Arg::Ident(name) => {
                let mut args = Vec::with_capacity(cmd.len());
                if matches!(name.as_str(), "and" | "or") {
                    // Short-circuit: evaluate lazily.
                    let mut last = V::Nil;
                    let all: Vec<&Arg> = cmd[1..].iter().collect();
                    for a in all {
                        last = self.arg(a, dot)?;
                        if (name == "and") != last.truth() {
                            return Ok(last);
                        }
                    }
                    if let Some(p) = piped {
                        last = p;
                    }
                    return Ok(last);
                }
                for a in &cmd[1..] {
                    args.push(self.arg(a, dot)?);
                }
                if let Some(p) = piped {
                    args.push(p);
                }
                self.call(name, args)
            }
            first => {
                if cmd.len() > 1 || piped.is_some() {
                    return fail(format!("can't give argument to non-function {first:?}"));
                }
                self.arg(first, dot)
            }
        }
    }

    fn arg(&mut self, a: &Arg, dot: &V) -> Result<V, TemplateError> {
        match a {
            Arg::Dot(f) => field_path(dot.clone(), f),
            Arg::Var(name, f) => field_path(self.var(name)?, f),
            Arg::Ident(name) => self.call(name, Vec::new()),
            Arg::Str(s) => Ok(V::Str(s.clone())),
            Arg::Num(n) => parse_number(n),
            Arg::Bool(b) => Ok(V::Bool(*b)),
            Arg::Nil => fail("nil is not a command"),
            Arg::Pipe(p, f) => {
                let v = self.pipeline(p, dot)?;
                field_path(v, f)
            }
        }
    }

    fn call(&mut self, name: &str, args: Vec<V>) -> Result<V, TemplateError> {
        match builtin(name, &args)? {
            Some(v) => Ok(v),
            None => funcs::call(self.env, name, args),
        }
    }
}

fn parse_number(n: &str) -> Result<V, TemplateError> {
    let clean = n.replace('_', "");
    if let Ok(i) = clean.parse::<i64>() {
        return Ok(V::Int(i));
    }
    for (p, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = clean.strip_prefix(p) {
            if let Ok(i) = i64::from_str_radix(rest, radix) {
                return Ok(V::Int(i));
            }
        }
    }
    clean
        .parse::<f64>()
        .map(V::Float)
        .map_err(|_| TemplateError::Exec(format!("illegal number syntax: {n:?}")))
}

fn field_path(mut v: V, fields: &[String]) -> Result<V, TemplateError> {
    for f in fields {
        v = match v {
            // Prometheus runs templates with missingkey=zero.
            V::Map(mut m) => m.remove(f).unwrap_or(V::Str(String::new())),
            V::Args(mut m) => m.remove(f).unwrap_or(V::Nil),
            V::Sample(labels, value) => match f.as_str() {
                "Labels" => V::Map(labels.into_iter().map(|(k, v)| (k, V::Str(v))).collect()),
                "Value" => V::Float(value),
                _ => return fail(format!("can't evaluate field {f} in type sample")),
            },
            V::Nil => return fail(format!("nil pointer evaluating interface {{}}.{f}")),
            other => {
                return fail(format!(
                    "can't evaluate field {f} in type {}",
                    other.type_name()
                ))
            }
        };
    }
    Ok(v)
}

/// Go's `eq` of two basic values.
fn basic_eq(a: &V, b: &V) -> Result<bool, TemplateError> {
    Ok(match (a, b) {
        (V::Int(x), V::Int(y)) => x == y,
        (V::Float(x), V::Float(y)) => x == y,
        (V::Str(x), V::Str(y)) => x == y,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Nil, V::Nil) => true,
        _ => return fail("incompatible types for comparison"),
    })
}

fn basic_lt(a: &V, b: &V) -> Result<bool, TemplateError> {
    Ok(match (a, b) {
        (V::Str(x), V::Str(y)) => x < y,
        (V::Int(x), V::Int(y)) => x < y,
        (V::Float(x), V::Float(y)) => x < y,
        _ => return fail("incompatible types for comparison"),
    })
}

pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `fmt.Sprint` of several operands (spaces between non-strings).
pub(crate) fn go_sprint(args: &[V]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, V::Str(_)) && !matches!(args[i - 1], V::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.go_nested_top());
    }
    out
}

impl V {
    fn go_nested_top(&self) -> String {
        match self {
            V::Nil => "<nil>".into(),
            other => other.go_string(),
        }
    }
}

/// The built-in functions of `text/template`; `None` when `name` is not one.
fn builtin(name: &str, args: &[V]) -> Result<Option<V>, TemplateError> {
    let r = builtin_inner(name, args);
    match r {
        Err(TemplateError::Exec(m)) if m == "incompatible types for comparison" => {
            fail(format!("error calling {name}: {m}"))
        }
        other => other,
    }
}

fn builtin_inner(name: &str, args: &[V]) -> Result<Option<V>, TemplateError> {
    let want = |n: usize| -> Result<(), TemplateError> {
        if args.len() != n {
            return fail(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ));
        }
        Ok(())
    };
    Ok(Some(match name {
        "not" => {
            want(1)?;
            V::Bool(!args[0].truth())
        }
        "len" => {
            want(1)?;
            V::Int(match &args[0] {
                V::Str(s) => s.len(),
                V::Map(m) | V::Args(m) => m.len(),
                V::List(l) => l.len(),
                other => return fail(format!("len of type {}", other.type_name())),
            } as i64)
        }
        "index" => {
            let Some(mut v) = args.first().cloned() else {
                return fail("wrong number of args for index: want at least 1 got 0");
            };
            for k in &args[1..] {
                v = match (v, k) {
                    (V::Map(mut m), V::Str(s)) => m.remove(s).unwrap_or(V::Str(String::new())),
                    (V::Args(mut m), V::Str(s)) => m.remove(s).unwrap_or(V::Nil),
                    (V::List(l), V::Int(i)) => {
                        match usize::try_from(*i).ok().and_then(|i| l.get(i)) {
                            Some(x) => x.clone(),
                            None => {
                                return fail(format!(
                                    "error calling index: index out of range: {i}"
                                ))
                            }
                        }
                    }
                    (V::Sample(l, _), V::Str(s)) => V::Str(l.get(s).cloned().unwrap_or_default()),
                    (other, _) => {
                        return fail(format!("can't index item of type {}", other.type_name()))
                    }
                };
            }
            v
        }
        "print" => V::Str(go_sprint(args)),
        "println" => {
            let parts: Vec<String> = args.iter().map(V::go_nested_top).collect();
            V::Str(format!("{}\n", parts.join(" ")))
        }
        "printf" => {
            let Some(V::Str(f)) = args.first() else {
                return fail("printf needs a format string");
            };
            V::Str(super::printf::sprintf(f, &args[1..]))
        }
        "eq" => {
            if args.len() < 2 {
                return fail("missing argument for comparison");
            }
            let mut any = false;
            for b in &args[1..] {
                if basic_eq(&args[0], b)? {
                    any = true;
                }
            }
            V::Bool(any)
        }
        "ne" => {
            want(2)?;
            V::Bool(!basic_eq(&args[0], &args[1])?)
        }
        "lt" => {
            want(2)?;
            V::Bool(basic_lt(&args[0], &args[1])?)
        }
        "le" => {
            want(2)?;
            V::Bool(basic_lt(&args[0], &args[1])? || basic_eq(&args[0], &args[1])?)
        }
        "gt" => {
            want(2)?;
            V::Bool(!(basic_lt(&args[0], &args[1])? || basic_eq(&args[0], &args[1])?))
        }
        "ge" => {
            want(2)?;
            V::Bool(!basic_lt(&args[0], &args[1])?)
        }
        "html" => V::Str(html_escape(&go_sprint(args))),
        "urlquery" => V::Str(super::format::query_escape(&go_sprint(args))),
        "js" => V::Str(
            go_sprint(args)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('"', "\\\"")
                .replace('<', "\\u003C")
                .replace('>', "\\u003E"),
        ),
        _ => return Ok(None),
    }))
}
