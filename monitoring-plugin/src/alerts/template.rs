//! The subset of Prometheus alert templates (Go `text/template`) that we render exactly.
//!
//! Rule labels and annotations are templates. Instead of a Go template engine we accept
//! a fixed, documented set of actions, checked at LOAD time (anything else is refused
//! with an error), and render them byte-for-byte as Prometheus 2.x does:
//!
//! | action | renders |
//! |---|---|
//! | `{{ $labels.NAME }}` / `{{ .Labels.NAME }}` | the label value, `""` when missing |
//! | `{{ $value }}` / `{{ .Value }}` | the value as Go's `%v` (e.g. `0.5`, `1e+06`, `NaN`, `+Inf`) |
//! | `{{ $value \| humanize }}` / `{{ humanize $value }}` | SI prefixes, 4 significant digits |
//! | `{{ $value \| humanizePercentage }}` / `{{ humanizePercentage $value }}` | `v*100` with `%` |
//! | `{{ $value \| humanizeDuration }}` / `{{ humanizeDuration $value }}` | `1d 2h 3m 4s` form |
//! | `{{ printf "FMT" ARG... }}` / `{{ ARG \| printf "FMT" }}` | Go `printf` with verbs `%f %e %g %v %s %%`, flags `-`/`0`, width, precision |
//! | `{{/* comment */}}` | nothing |
//!
//! `ARG` is `$value`, `$labels.NAME` or a number literal; `{{-` and `-}}` trim adjacent white space as in
//! Go. `%s` takes a label, `%f %e %g` take `$value`, `%v` either.

/// Errors found while checking a template at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    #[error("unclosed action (missing \"}}}}\")")]
    Unclosed,
    /// An action outside the supported subset.
    #[error("unsupported template action {{{{{0}}}}}: supported are $labels.NAME, $value, humanize, humanizePercentage, humanizeDuration, printf")]
    Unsupported(String),
    /// A bad `printf` format.
    #[error("bad printf format {0:?}: {1}")]
    BadFormat(String, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Value,
    Label(String),
    Num(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Verb {
    Lit(String),
    Spec {
        verb: char,
        minus: bool,
        zero: bool,
        width: Option<usize>,
        prec: Option<usize>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Func {
    Humanize,
    HumanizePercentage,
    HumanizeDuration,
    Printf(Vec<Verb>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Option<Func>, Vec<Arg>),
}

/// A checked template, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut before = &rest[..open];
            if trim_next {
                before = before.trim_start();
            }
            let after_open = &rest[open + 2..];
            let close = after_open.find("}}").ok_or(TemplateError::Unclosed)?;
            let mut inner = &after_open[..close];
            if let Some(s) = inner.strip_prefix("- ") {
                before = before.trim_end();
                inner = s;
            } else if inner == "-" {
                before = before.trim_end();
                inner = "";
            }
            trim_next = false;
            if let Some(s) = inner.strip_suffix(" -") {
                trim_next = true;
                inner = s;
            }
            if !before.is_empty() {
                parts.push(Part::Text(before.to_string()));
            }
            let inner = inner.trim();
            if !(inner.starts_with("/*") && inner.ends_with("*/") && inner.len() >= 4) {
                parts.push(parse_action(inner)?);
            }
            rest = &after_open[close + 2..];
        }
        let tail = if trim_next { rest.trim_start() } else { rest };
        if !tail.is_empty() {
            parts.push(Part::Text(tail.to_string()));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// The template text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `label` looking up the alert sample's labels and `value` its value.
    pub fn render<'a>(&self, label: impl Fn(&str) -> Option<&'a str>, value: f64) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(func, args) => {
                    let get = |a: &Arg| match a {
                        Arg::Value => Val::F(value),
                        Arg::Label(n) => Val::S(label(n).unwrap_or("").to_string()),
                        Arg::Num(x) => Val::F(*x),
                    };
                    let num = match args.first() {
                        Some(Arg::Num(x)) => *x,
                        _ => value,
                    };
                    match func {
                        None => out.push_str(&get(&args[0]).to_go()),
                        Some(Func::Humanize) => out.push_str(&humanize(num)),
                        Some(Func::HumanizePercentage) => {
                            out.push_str(&format!("{}%", go_g(num * 100.0, Some(4))))
                        }
                        Some(Func::HumanizeDuration) => out.push_str(&humanize_duration(num)),
                        Some(Func::Printf(verbs)) => {
                            let vals: Vec<Val> = args.iter().map(get).collect();
                            out.push_str(&printf(verbs, &vals));
                        }
                    }
                }
            }
        }
        out
    }
}

enum Val {
    F(f64),
    S(String),
}

impl Val {
    fn to_go(&self) -> String {
        match self {
            Val::F(v) => go_g(*v, None),
            Val::S(s) => s.clone(),
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut lit = String::from("\"");
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => lit.push('\n'),
                        Some('t') => lit.push('\t'),
                        Some('"') => lit.push('"'),
                        Some('\\') => lit.push('\\'),
                        _ => return Err(TemplateError::Unsupported(s.to_string())),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => lit.push(c),
                }
            }
            if !closed {
                return Err(TemplateError::Unsupported(s.to_string()));
            }
            out.push(lit);
        } else if c == '|' {
            chars.next();
            out.push("|".into());
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' || c == '"' {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn parse_arg(tok: &str) -> Option<Arg> {
    if tok == "$value" || tok == ".Value" {
        return Some(Arg::Value);
    }
    let numeric = tok
        .trim_start_matches(['-', '.'])
        .starts_with(|c: char| c.is_ascii_digit());
    if numeric {
        return tok
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Arg::Num);
    }
    let name = tok
        .strip_prefix("$labels.")
        .or_else(|| tok.strip_prefix(".Labels."))?;
    let valid = !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    valid.then(|| Arg::Label(name.to_string()))
}

fn parse_action(inner: &str) -> Result<Part, TemplateError> {
    let bad = || TemplateError::Unsupported(inner.to_string());
    let toks = tokenize(inner)?;
    // Rewrite "ARG | f x" into "f x ARG".
    let call: Vec<String> = match toks.iter().position(|t| t == "|") {
        Some(p) => {
            if p != 1 || toks[p + 1..].contains(&"|".to_string()) || toks.len() < 3 {
                return Err(bad());
            }
            let mut c: Vec<String> = toks[2..].to_vec();
            c.push(toks[0].clone());
            c
        }
        None => toks,
    };
    match call.as_slice() {
        [a] => Ok(Part::Action(None, vec![parse_arg(a).ok_or_else(bad)?])),
        [f, a] => {
            let func = match f.as_str() {
                "humanize" => Func::Humanize,
                "humanizePercentage" => Func::HumanizePercentage,
                "humanizeDuration" => Func::HumanizeDuration,
                _ => return Err(bad()),
            };
            match parse_arg(a) {
                Some(arg @ (Arg::Value | Arg::Num(_))) => Ok(Part::Action(Some(func), vec![arg])),
                _ => Err(bad()),
            }
        }
        [f, fmt, args @ ..] if f == "printf" && fmt.starts_with('"') => {
            let verbs = parse_format(&fmt[1..])?;
            let args: Vec<Arg> = args
                .iter()
                .map(|a| parse_arg(a).ok_or_else(bad))
                .collect::<Result<_, _>>()?;
            let specs: Vec<char> = verbs
                .iter()
                .filter_map(|v| match v {
                    Verb::Spec { verb, .. } => Some(*verb),
                    Verb::Lit(_) => None,
                })
                .collect();
            if specs.len() != args.len() {
                return Err(TemplateError::BadFormat(
                    fmt[1..].to_string(),
                    format!("{} verbs for {} arguments", specs.len(), args.len()),
                ));
            }
            for (v, a) in specs.iter().zip(&args) {
                let ok = matches!(
                    (v, a),
                    ('v', _) | ('s', Arg::Label(_)) | ('f' | 'e' | 'g', Arg::Value | Arg::Num(_))
                );
                if !ok {
                    return Err(TemplateError::BadFormat(
                        fmt[1..].to_string(),
                        format!("verb %{v} does not fit its argument"),
                    ));
                }
            }
            Ok(Part::Action(Some(Func::Printf(verbs)), args))
        }
        _ => Err(bad()),
    }
}

fn parse_format(f: &str) -> Result<Vec<Verb>, TemplateError> {
    let bad = |m: &str| TemplateError::BadFormat(f.to_string(), m.to_string());
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            lit.push('%');
            continue;
        }
        if !lit.is_empty() {
            out.push(Verb::Lit(std::mem::take(&mut lit)));
        }
        let (mut minus, mut zero) = (false, false);
        while let Some(&c) = chars.peek() {
            match c {
                '-' => minus = true,
                '0' => zero = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(
                    n.unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(d as usize)
                        .min(100),
                );
                chars.next();
            }
            n
        };
        let width = num(&mut chars);
        let prec = if chars.peek() == Some(&'.') {
            chars.next();
            Some(num(&mut chars).unwrap_or(0))
        } else {
            None
        };
        match chars.next() {
            Some(verb @ ('f' | 'e' | 'g' | 'v' | 's')) => out.push(Verb::Spec {
                verb,
                minus,
                zero,
                width,
                prec,
            }),
            Some(other) => return Err(bad(&format!("unsupported verb %{other}"))),
            None => return Err(bad("format ends with %")),
        }
    }
    if !lit.is_empty() {
        out.push(Verb::Lit(lit));
    }
    Ok(out)
}

fn printf(verbs: &[Verb], vals: &[Val]) -> String {
    let mut out = String::new();
    let mut args = vals.iter();
    for v in verbs {
        match v {
            Verb::Lit(s) => out.push_str(s),
            Verb::Spec {
                verb,
                minus,
                zero,
                width,
                prec,
            } => {
                let Some(arg) = args.next() else { break };
                let body = match (verb, arg) {
                    ('s' | 'v', Val::S(s)) => match prec {
                        Some(p) => s.chars().take(*p).collect(),
                        None => s.clone(),
                    },
                    ('f', Val::F(x)) => {
                        go_special(*x).unwrap_or_else(|| format!("{:.*}", prec.unwrap_or(6), x))
                    }
                    ('e', Val::F(x)) => {
                        go_special(*x).unwrap_or_else(|| go_e(*x, prec.unwrap_or(6)))
                    }
                    ('g' | 'v', Val::F(x)) => go_g(*x, prec.map(|p| p.max(1))),
                    (_, v) => v.to_go(),
                };
                let w = width.unwrap_or(0);
                let len = body.chars().count();
                if len >= w {
                    out.push_str(&body);
                } else if *minus {
                    out.push_str(&body);
                    out.push_str(&" ".repeat(w - len));
                } else if *zero && matches!(arg, Val::F(x) if x.is_finite()) {
                    let (sign, digits) = match body.strip_prefix('-') {
                        Some(d) => ("-", d),
                        None => ("", body.as_str()),
                    };
                    out.push_str(sign);
                    out.push_str(&"0".repeat(w - len));
                    out.push_str(digits);
                } else {
                    out.push_str(&" ".repeat(w - len));
                    out.push_str(&body);
                }
            }
        }
    }
    out
}

fn go_special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v == f64::INFINITY {
        Some("+Inf".into())
    } else if v == f64::NEG_INFINITY {
        Some("-Inf".into())
    } else {
        None
    }
}

/// Decimal digits (no trailing zeros) and exponent of `v`, shortest or rounded to
/// `prec` significant digits.
fn digits_exp(v: f64, prec: Option<usize>) -> (bool, String, i32) {
    let s = match prec {
        None => format!("{:e}", v.abs()),
        Some(p) => format!("{:.*e}", p.saturating_sub(1), v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (v.is_sign_negative(), digits, exp)
}

fn exp_suffix(exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("e{sign}{:02}", exp.abs())
}

/// Go `%e` with `prec` digits after the point.
fn go_e(v: f64, prec: usize) -> String {
    let s = format!("{:.*e}", prec, v);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    format!("{mant}{}", exp_suffix(exp.parse().unwrap_or(0)))
}

/// Go `%g` (`prec` None = shortest, as `%v` prints a float64).
pub fn go_g(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = go_special(v) {
        return s;
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (neg, digits, exp) = digits_exp(v, prec);
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p as i32;
            if p > nd && nd >= dp {
                nd
            } else {
                p
            }
        }
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&exp_suffix(exp));
    } else if dp <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-dp) as usize));
        out.push_str(&digits);
    } else {
        let dpu = dp as usize;
        if digits.len() <= dpu {
            out.push_str(&digits);
            out.push_str(&"0".repeat(dpu - digits.len()));
        } else {
            out.push_str(&digits[..dpu]);
            out.push('.');
            out.push_str(&digits[dpu..]);
        }
    }
    out
}

/// Prometheus' `humanize`.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

/// Prometheus' `humanizeDuration` (seconds in).
pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", go_g(v, Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, Some(4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: &str, v: f64) -> String {
        Template::parse(t)
            .unwrap()
            .render(|n| (n == "job").then_some("api"), v)
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_g(0.1, None), "0.1");
        assert_eq!(go_g(100.0, None), "100");
        assert_eq!(go_g(1234567.0, None), "1.234567e+06");
        assert_eq!(go_g(123456.0, None), "123456");
        assert_eq!(go_g(0.00001, None), "1e-05");
        assert_eq!(go_g(12345.0, Some(4)), "1.234e+04");
        assert_eq!(go_g(1.5, Some(4)), "1.5");
        assert_eq!(go_g(1234.0, Some(4)), "1234");
        assert_eq!(go_g(0.0001234, Some(4)), "0.0001234");
        assert_eq!(go_g(f64::INFINITY, None), "+Inf");
        assert_eq!(humanize(1234.0), "1.234k");
        assert_eq!(humanize(0.012), "12m");
        assert_eq!(humanize(1_500_000.0), "1.5M");
        assert_eq!(humanize_duration(3725.0), "1h 2m 5s");
        assert_eq!(humanize_duration(0.25), "250ms");
        assert_eq!(go_e(1234.5678, 2), "1.23e+03");
    }

    #[test]
    fn render_forms() {
        assert_eq!(
            r("job {{ $labels.job }} is {{ $value }}", 0.5),
            "job api is 0.5"
        );
        assert_eq!(r("{{ $labels.missing }}x", 1.0), "x");
        assert_eq!(r("{{ $value | humanize }}", 2048.0), "2.048k");
        assert_eq!(r("{{ humanizePercentage $value }}", 0.1234), "12.34%");
        assert_eq!(r("{{ printf \"%.2f\" $value }}", 1.0 / 3.0), "0.33");
        assert_eq!(r("{{ $value | printf \"%.1f%%\" }}", 12.34), "12.3%");
        assert_eq!(r("{{ printf \"%s=%v\" $labels.job $value }}", 2.0), "api=2");
        assert_eq!(r("a {{- $value -}} b{{/* c */}}", 1.0), "a1b");
        assert_eq!(r("{{ .Labels.job }}/{{ .Value }}", 3.0), "api/3");
    }

    #[test]
    fn refuses() {
        for t in [
            "{{ $labels.job | toUpper }}",
            "{{ if $value }}x{{ end }}",
            "{{ $externalLabels.a }}",
            "{{ printf \"%d\" $value }}",
            "{{ printf \"%s\" $value }}",
            "{{ $value",
            "{{ range $labels }}{{ end }}",
        ] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
    }
}
