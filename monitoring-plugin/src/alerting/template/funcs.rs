//! Prometheus's template functions (2.42): `humanize`, `humanize1024`,
//! `humanizeDuration`, `humanizePercentage`, `humanizeTimestamp`, `title`,
//! `toUpper`, `toLower`, `match`, `reReplaceAll`, `label`, `value`,
//! `strvalue`, `first`, `sortByLabel`, `args`, `safeHtml`, `stripPort`,
//! `stripDomain`, `parseDuration`, `externalURL`, `pathPrefix`,
//! `graphLink`, `tableLink` and `query` (answered from the embedded sample store).

use std::collections::BTreeMap;

use super::format::{
    humanize, humanize1024, humanize_duration, humanize_percentage, humanize_timestamp,
};
use super::value::V;
use super::{Env, TemplateError};

fn fail<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Exec(msg.into()))
}

/// Prometheus's `convertToFloat`: numbers, and strings parsed as floats.
fn to_float(name: &str, v: &V) -> Result<f64, TemplateError> {
    match v {
        V::Int(i) => Ok(*i as f64),
        V::Float(f) => Ok(*f),
        V::Str(s) => {
            let t = s.trim();
            match t {
                "+Inf" | "Inf" | "inf" | "+inf" => Ok(f64::INFINITY),
                "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
                "NaN" | "nan" => Ok(f64::NAN),
                _ => t.parse().map_err(|_| {
                    TemplateError::Exec(format!(
                        "error calling {name}: strconv.ParseFloat: parsing {s:?}: invalid syntax"
                    ))
                }),
            }
        }
        other => fail(format!(
            "error calling {name}: can't convert {} to float",
            other.go_string()
        )),
    }
}

fn string_arg(name: &str, v: &V) -> Result<String, TemplateError> {
    match v {
        V::Str(s) => Ok(s.clone()),
        other => fail(format!(
            "error calling {name}: wrong type for value; expected string; got {}",
            other.go_string()
        )),
    }
}

fn regex(name: &str, pattern: &str) -> Result<regex::Regex, TemplateError> {
    regex::Regex::new(pattern)
        .map_err(|e| TemplateError::Exec(format!("error calling {name}: {e}")))
}

/// Go's deprecated `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        let letter = c.is_alphanumeric() || c == '_' || c == '\'';
        if letter && !prev_letter {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = letter;
    }
    out
}

/// Go's `net.SplitHostPort`, `None` when there is no port.
fn split_host_port(hp: &str) -> Option<(String, String)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host.to_owned(), port.to_owned()));
    }
    let (host, port) = hp.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host.to_owned(), port.to_owned()))
}

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn sample_of(name: &str, v: &V) -> Result<(BTreeMap<String, String>, f64), TemplateError> {
    match v {
        V::Sample(l, x) => Ok((l.clone(), *x)),
        other => fail(format!(
            "error calling {name}: expected a query result sample, got {}",
            other.go_string()
        )),
    }
}

/// Calls the Prometheus template function `name`.
pub(crate) fn call(env: &Env<'_>, name: &str, args: Vec<V>) -> Result<V, TemplateError> {
    let want = |n: usize| -> Result<(), TemplateError> {
        if args.len() != n {
            return fail(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ));
        }
        Ok(())
    };
    Ok(match name {
        "humanize" => {
            want(1)?;
            V::Str(humanize(to_float(name, &args[0])?))
        }
        "humanize1024" => {
            want(1)?;
            V::Str(humanize1024(to_float(name, &args[0])?))
        }
        "humanizeDuration" => {
            want(1)?;
            V::Str(humanize_duration(to_float(name, &args[0])?))
        }
        "humanizePercentage" => {
            want(1)?;
            V::Str(humanize_percentage(to_float(name, &args[0])?))
        }
        "humanizeTimestamp" => {
            want(1)?;
            V::Str(humanize_timestamp(to_float(name, &args[0])?))
        }
        "title" => {
            want(1)?;
            V::Str(title(&string_arg(name, &args[0])?))
        }
        "toUpper" => {
            want(1)?;
            V::Str(string_arg(name, &args[0])?.to_uppercase())
        }
        "toLower" => {
            want(1)?;
            V::Str(string_arg(name, &args[0])?.to_lowercase())
        }
        "match" => {
            want(2)?;
            let re = regex(name, &string_arg(name, &args[0])?)?;
            V::Bool(re.is_match(&string_arg(name, &args[1])?))
        }
        "reReplaceAll" => {
            want(3)?;
            let re = regex(name, &string_arg(name, &args[0])?)?;
            let repl = string_arg(name, &args[1])?;
            let text = string_arg(name, &args[2])?;
            V::Str(re.replace_all(&text, repl.as_str()).into_owned())
        }
        "safeHtml" => {
            want(1)?;
            V::Str(string_arg(name, &args[0])?)
        }
        "label" => {
            want(2)?;
            let l = string_arg(name, &args[0])?;
            let (labels, _) = sample_of(name, &args[1])?;
            V::Str(labels.get(&l).cloned().unwrap_or_default())
        }
        "value" => {
            want(1)?;
            V::Float(sample_of(name, &args[0])?.1)
        }
        "strvalue" => {
            want(1)?;
            let (labels, _) = sample_of(name, &args[0])?;
            V::Str(labels.get("__value__").cloned().unwrap_or_default())
        }
        "first" => {
            want(1)?;
            match &args[0] {
                V::List(l) => match l.first() {
                    Some(s) => s.clone(),
                    None => {
                        return fail(
                            "error calling first: first() called on vector with no elements",
                        )
                    }
                },
                other => {
                    return fail(format!(
                        "error calling first: expected a query result, got {}",
                        other.go_string()
                    ))
                }
            }
        }
        "sortByLabel" => {
            want(2)?;
            let l = string_arg(name, &args[0])?;
            match &args[1] {
                V::List(items) => {
                    let mut items = items.clone();
                    items.sort_by(|a, b| {
                        let key = |v: &V| match v {
                            V::Sample(ls, _) => ls.get(&l).cloned().unwrap_or_default(),
                            _ => String::new(),
                        };
                        key(a).cmp(&key(b))
                    });
                    V::List(items)
                }
                other => {
                    return fail(format!(
                        "error calling sortByLabel: expected a query result, got {}",
                        other.go_string()
                    ))
                }
            }
        }
        "args" => V::Args(
            args.into_iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v))
                .collect(),
        ),
        "stripPort" => {
            want(1)?;
            let hp = string_arg(name, &args[0])?;
            V::Str(split_host_port(&hp).map(|(h, _)| h).unwrap_or(hp))
        }
        "stripDomain" => {
            want(1)?;
            let hp = string_arg(name, &args[0])?;
            let (host, port) = split_host_port(&hp).unwrap_or((hp.clone(), String::new()));
            if host.parse::<std::net::IpAddr>().is_ok() {
                V::Str(hp)
            } else {
                let short = host.split('.').next().unwrap_or("").to_owned();
                V::Str(if port.is_empty() {
                    short
                } else {
                    join_host_port(&short, &port)
                })
            }
        }
        "parseDuration" => {
            want(1)?;
            let d = string_arg(name, &args[0])?;
            let ms = crate::alerting::syntax::parse_duration(&d)
                .map_err(|e| TemplateError::Exec(format!("error calling parseDuration: {e}")))?;
            V::Float(ms as f64 / 1000.0)
        }
        "externalURL" => {
            want(0)?;
            V::Str(env.external_url.to_owned())
        }
        "pathPrefix" => {
            want(0)?;
            let u = env.external_url;
            let after_scheme = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
            V::Str(
                after_scheme
                    .find('/')
                    .map(|i| after_scheme[i..].to_owned())
                    .unwrap_or_default(),
            )
        }
        "graphLink" | "tableLink" => {
            want(1)?;
            let e = string_arg(name, &args[0])?;
            let tab = if name == "graphLink" { 0 } else { 1 };
            V::Str(format!(
                "/graph?g0.expr={}&g0.tab={tab}",
                super::format::query_escape(&e)
            ))
        }
        "query" => {
            want(1)?;
            let q = string_arg(name, &args[0])?;
            let Some(run) = env.query else {
                return fail("error calling query: no query engine here");
            };
            let rows =
                run(&q).map_err(|e| TemplateError::Exec(format!("error calling query: {e}")))?;
            V::List(rows.into_iter().map(|(l, v)| V::Sample(l, v)).collect())
        }
        _ => return fail(format!("function {name:?} not defined")),
    })
}
