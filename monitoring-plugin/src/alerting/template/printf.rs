//! Go's `fmt.Sprintf` for template values: verbs `%v %s %d %f %F %e %E %g
//! %G %q %x %X %t %%`, flags `- + 0 #` and space, width and precision, and
//! Go's `%!verb(type=value)` / `%!verb(MISSING)` / `%!(EXTRA …)` markers.

use super::format::{go_e, go_g, go_special};
use super::value::V;

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(body: String, s: &Spec, numeric: bool) -> String {
    let w = s.width.unwrap_or(0);
    let len = body.chars().count();
    if len >= w {
        return body;
    }
    if s.minus {
        return format!("{body}{}", " ".repeat(w - len));
    }
    if s.zero && numeric {
        let (sign, digits) = match body.strip_prefix(['-', '+']) {
            Some(d) => (&body[..1], d),
            None => ("", body.as_str()),
        };
        return format!("{sign}{}{digits}", "0".repeat(w - len));
    }
    format!("{}{body}", " ".repeat(w - len))
}

fn float(verb: char, v: f64, s: &Spec) -> String {
    let body = match go_special(v) {
        Some(sp) => sp,
        None => match verb {
            'f' | 'F' => format!("{:.*}", s.prec.unwrap_or(6), v),
            'e' => go_e(v, s.prec.unwrap_or(6)),
            'E' => go_e(v, s.prec.unwrap_or(6)).to_uppercase(),
            'G' => go_g(v, s.prec.map(|p| p.max(1))).to_uppercase(),
            _ => go_g(v, s.prec.map(|p| p.max(1))),
        },
    };
    let body = if v.is_finite() && !v.is_sign_negative() {
        if s.plus {
            format!("+{body}")
        } else if s.space {
            format!(" {body}")
        } else {
            body
        }
    } else {
        body
    };
    pad(body, s, v.is_finite())
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%!verb(type=value)`; the value prints with `%v` and the verb's
/// flags (a precision truncates a string).
fn bad(verb: char, v: &V, s: &Spec) -> String {
    let t = match v {
        V::Nil => return format!("%!{verb}(<nil>)"),
        V::Bool(_) => "bool",
        V::Int(_) => "int",
        V::Float(_) => "float64",
        V::Str(_) => "string",
        V::Map(_) => "map[string]string",
        V::Args(_) => "map[string]interface {}",
        V::List(_) => "[]interface {}",
        V::Sample(..) => "template.sample",
    };
    let shown = match (v, s.prec) {
        (V::Str(x), Some(p)) => x.chars().take(p).collect(),
        (V::Float(f), _) => float('g', *f, s),
        _ => v.go_string(),
    };
    format!("%!{verb}({t}={shown})")
}

fn one(verb: char, v: &V, s: &Spec) -> String {
    match (verb, v) {
        ('v', V::Float(f)) => float('g', *f, s),
        ('v', other) => pad(other.go_string(), s, false),
        ('s', V::Str(x)) => pad(
            match s.prec {
                Some(p) => x.chars().take(p).collect(),
                None => x.clone(),
            },
            s,
            false,
        ),
        ('s', V::Map(_) | V::Args(_) | V::List(_) | V::Sample(..)) => pad(v.go_string(), s, false),
        ('q', V::Str(x)) => pad(quote(x), s, false),
        ('t', V::Bool(b)) => pad(b.to_string(), s, false),
        ('d', V::Int(i)) => {
            let body = i.to_string();
            let body = if *i >= 0 && s.plus {
                format!("+{body}")
            } else {
                body
            };
            pad(body, s, true)
        }
        ('x', V::Int(i)) => pad(format!("{i:x}"), s, true),
        ('X', V::Int(i)) => pad(format!("{i:X}"), s, true),
        ('x', V::Str(x)) => pad(x.bytes().map(|b| format!("{b:02x}")).collect(), s, false),
        ('X', V::Str(x)) => pad(x.bytes().map(|b| format!("{b:02X}")).collect(), s, false),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', V::Float(f)) => float(verb, *f, s),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', V::Int(i)) => format!("%!{verb}(int={i})"),
        (verb, v) => bad(verb, v, s),
    }
}

/// Go's `fmt.Sprintf(format, args...)`.
pub fn sprintf(format: &str, args: &[V]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut s = Spec {
            minus: false,
            plus: false,
            zero: false,
            space: false,
            width: None,
            prec: None,
        };
        while let Some(&f) = chars.peek() {
            match f {
                '-' => s.minus = true,
                '+' => s.plus = true,
                '0' => s.zero = true,
                ' ' => s.space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some((n.unwrap_or(0) * 10 + d as usize).min(1000));
                chars.next();
            }
            n
        };
        s.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            s.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => out.push_str(&one(verb, v, &s)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|v| match v {
                V::Str(x) => format!("string={x}"),
                V::Float(f) => format!("float64={}", go_g(*f, None)),
                V::Int(i) => format!("int={i}"),
                other => other.go_string(),
            })
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}
