//! Configuration from the environment, the way operators deploy (12-factor):
//! every key of the TOML file can be set or overridden by a `HOMECONSOLE_…`
//! variable, and the standard OpenTelemetry, Sentry and `RUST_LOG`
//! variables are honoured. The layer works on the parsed TOML tree before it
//! is deserialized, so keys added later (by the host or any plugin) are
//! covered without a line here.
//!
//! Mapping: strip `HOMECONSOLE_`, split the rest on `__` (double
//! underscore), lower-case each part: `HOMECONSOLE_HOST__SERVICE_TIMEOUT_MS`
//! is `host.service_timeout_ms`, `HOMECONSOLE_PLUGINS__MONITORING__TRACING__OTLP_ENDPOINT`
//! is `plugins.monitoring.tracing.otlp_endpoint`. A part matches an existing
//! key with `-` written as `_` (`PLUGINS__DEMO_DEVICES` is
//! `plugins.demo-devices` when the file has that section). Only variables
//! whose first part is a top-level key (`listen`, `plugins_dir`,
//! `data_dir`, `host`, `plugins`) are read, so `HOMECONSOLE_PYTHON` and the
//! like are left alone.
//!
//! Values: where the key already holds a string, the value is that string;
//! otherwise it is read as a TOML literal when it is one (`250`, `0.5`,
//! `true`, `["a", "b"]`, `{ a = "b" }`, `"quoted"`), else as a string.
//!
//! Precedence, lowest first: defaults, the file, the standard variables
//! (only where neither the file nor a `HOMECONSOLE_` variable sets the key),
//! `HOMECONSOLE_` variables, command-line flags.

use toml::{Table, Value};

/// The prefix of override variables.
pub const PREFIX: &str = "HOMECONSOLE_";

/// Top-level keys an override variable may start with.
const TOP_LEVEL: &[&str] = &["listen", "plugins_dir", "data_dir", "host", "plugins"];

/// Standard variables and the key each sets (see [`standard_value`] for
/// the ones whose value is transformed).
pub const STANDARD: &[(&str, &str)] = &[
    ("RUST_LOG", "host.log_level"),
    (
        "OTEL_SERVICE_NAME",
        "plugins.monitoring.tracing.service_name",
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "plugins.monitoring.tracing.resource_attributes",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "plugins.monitoring.tracing.otlp_endpoint",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "plugins.monitoring.tracing.otlp_endpoint",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "plugins.monitoring.tracing.otlp_headers",
    ),
    (
        "OTEL_EXPORTER_OTLP_HEADERS",
        "plugins.monitoring.tracing.otlp_headers",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "plugins.monitoring.tracing.otlp_timeout_ms",
    ),
    (
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "plugins.monitoring.tracing.otlp_timeout_ms",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "plugins.monitoring.tls.ca_file",
    ),
    (
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "plugins.monitoring.tls.ca_file",
    ),
    (
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "plugins.monitoring.tls.client_cert_file",
    ),
    (
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "plugins.monitoring.tls.client_key_file",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "plugins.monitoring.tracing.sample_ratio",
    ),
    ("OTEL_SDK_DISABLED", "plugins.monitoring.tracing.enabled"),
    ("SENTRY_DSN", "plugins.monitoring.errors.sentry_dsn"),
    (
        "SENTRY_ENVIRONMENT",
        "plugins.monitoring.errors.environment",
    ),
];

/// Why a variable cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The variable names a key under a value that is not a table.
    #[error("{var}: {path} is not a table in the configuration")]
    NotATable {
        /// The variable.
        var: String,
        /// The key path that is not a table.
        path: String,
    },
    /// A standard variable's value cannot be read.
    #[error("{var}: {reason}")]
    BadValue {
        /// The variable.
        var: String,
        /// What is wrong.
        reason: String,
    },
}

/// Applies the environment to a parsed config file; returns the keys set,
/// as `(variable, key path)`, in the order applied.
pub fn apply(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    vars.sort();
    let mut applied = Vec::new();
    let mut overridden: Vec<Vec<String>> = Vec::new();
    for (var, raw) in &vars {
        let Some(rest) = var.strip_prefix(PREFIX) else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(String::is_empty) || !TOP_LEVEL.contains(&parts[0].as_str()) {
            continue;
        }
        let path = set_path(table, var, &parts, |existing| typed(raw, existing))?;
        applied.push((var.clone(), path.join(".")));
        overridden.push(path);
    }
    // Standard variables fill what the file and the overrides left unset;
    // the more specific one (listed first) wins.
    for (var, key) in STANDARD {
        let Some((_, raw)) = vars.iter().find(|(v, _)| v == var) else {
            continue;
        };
        let parts: Vec<String> = key.split('.').map(str::to_owned).collect();
        if get_path(table, &parts).is_some() || overridden.iter().any(|p| p == &parts) {
            continue;
        }
        let Some(value) = standard_value(var, raw, &vars)? else {
            continue;
        };
        let path = set_path(table, var, &parts, |_| value.clone())?;
        applied.push(((*var).to_owned(), path.join(".")));
    }
    Ok(applied)
}

fn get_path<'a>(table: &'a Table, parts: &[String]) -> Option<&'a Value> {
    let (last, parents) = parts.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(&matching_key(t, p))?.as_table()?;
    }
    t.get(&matching_key(t, last))
}

/// The existing key of `table` that `part` names (`-` written as `_`), or
/// `part` itself.
fn matching_key(table: &Table, part: &str) -> String {
    if table.contains_key(part) {
        return part.to_owned();
    }
    table
        .keys()
        .find(|k| k.replace('-', "_").eq_ignore_ascii_case(part))
        .cloned()
        .unwrap_or_else(|| part.to_owned())
}

fn set_path(
    table: &mut Table,
    var: &str,
    parts: &[String],
    value: impl FnOnce(Option<&Value>) -> Value,
) -> Result<Vec<String>, EnvError> {
    let mut path = Vec::with_capacity(parts.len());
    let mut t = table;
    let (last, parents) = parts.split_last().expect("at least one part");
    for p in parents {
        let key = matching_key(t, p);
        path.push(key.clone());
        let entry = t.entry(key).or_insert_with(|| Value::Table(Table::new()));
        t = entry.as_table_mut().ok_or_else(|| EnvError::NotATable {
            var: var.to_owned(),
            path: path.join("."),
        })?;
    }
    let key = matching_key(t, last);
    path.push(key.clone());
    let v = value(t.get(&key));
    t.insert(key, v);
    Ok(path)
}

/// An override's value: a string where the key holds a string, else a TOML
/// literal when it parses as one, else a string.
fn typed(raw: &str, existing: Option<&Value>) -> Value {
    let literal = || {
        toml::from_str::<Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match existing {
        Some(Value::String(_)) if !raw.trim_start().starts_with('"') => {
            Value::String(raw.to_owned())
        }
        _ => literal().unwrap_or_else(|| Value::String(raw.to_owned())),
    }
}

/// `k1=v1,k2=v2` (OpenTelemetry's list format, values percent-decoded).
fn key_values(var: &str, raw: &str) -> Result<Table, EnvError> {
    let mut t = Table::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| EnvError::BadValue {
            var: var.to_owned(),
            reason: format!("{pair:?} is not key=value"),
        })?;
        t.insert(
            percent_decode(k.trim()),
            Value::String(percent_decode(v.trim())),
        );
    }
    Ok(t)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value a standard variable sets (`None`: it sets nothing here, e.g. a
/// sampler argument for a sampler that is not ratio-based).
pub fn standard_value(
    var: &str,
    raw: &str,
    vars: &[(String, String)],
) -> Result<Option<Value>, EnvError> {
    let bad = |reason: String| EnvError::BadValue {
        var: var.to_owned(),
        reason,
    };
    Ok(Some(match var {
        "OTEL_RESOURCE_ATTRIBUTES"
        | "OTEL_EXPORTER_OTLP_HEADERS"
        | "OTEL_EXPORTER_OTLP_TRACES_HEADERS" => Value::Table(key_values(var, raw)?),
        // The generic endpoint is a base URL: the signal path is appended.
        "OTEL_EXPORTER_OTLP_ENDPOINT" => {
            Value::String(format!("{}/v1/traces", raw.trim().trim_end_matches('/')))
        }
        "OTEL_EXPORTER_OTLP_TIMEOUT" | "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT" => {
            let ms: i64 = raw
                .trim()
                .parse()
                .map_err(|_| bad(format!("{raw:?} is not a number of milliseconds")))?;
            Value::Integer(ms)
        }
        "OTEL_TRACES_SAMPLER_ARG" => {
            let sampler = vars
                .iter()
                .find(|(v, _)| v == "OTEL_TRACES_SAMPLER")
                .map(|(_, s)| s.trim().to_ascii_lowercase());
            if !matches!(
                sampler.as_deref(),
                Some("traceidratio" | "parentbased_traceidratio")
            ) {
                return Ok(None);
            }
            let ratio: f64 = raw
                .trim()
                .parse()
                .map_err(|_| bad(format!("{raw:?} is not a ratio")))?;
            Value::Float(ratio)
        }
        "OTEL_SDK_DISABLED" => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Boolean(false),
            _ => return Ok(None),
        },
        _ => Value::String(raw.to_owned()),
    }))
}

/// Key names whose values are secrets (matched case-insensitively as
/// substrings); paths (`…_file`) are not secrets.
const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "secret",
    "dsn",
    "authorization",
    "api_key",
    "apikey",
];

/// Tables whose every value is a secret (request headers carry API keys).
const SECRET_TABLES: &[&str] = &["otlp_headers", "headers"];

/// A copy of `table` with every secret value replaced by `"<redacted>"`.
pub fn redacted(table: &Table) -> Table {
    fn walk(t: &Table, all: bool) -> Table {
        t.iter()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = all
                    || (!lower.ends_with("_file")
                        && SECRET_WORDS.iter().any(|w| lower.contains(w)));
                let v = match v {
                    Value::Table(inner) => {
                        Value::Table(walk(inner, all || SECRET_TABLES.contains(&lower.as_str())))
                    }
                    _ if secret => Value::String("<redacted>".into()),
                    other => other.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    }
    walk(table, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn overrides_any_key_typed_by_literal_or_existing_value() {
        let mut t: Table = toml::from_str(
            "[host]\ntick_interval_ms = 1000\n[plugins.demo-devices]\nname = \"x\"\n",
        )
        .unwrap();
        let applied = apply(
            &mut t,
            vars(&[
                ("HOMECONSOLE_HOST__TICK_INTERVAL_MS", "250"),
                ("HOMECONSOLE_HOST__TRACE_SAMPLE_RATIO", "0.5"),
                ("HOMECONSOLE_PLUGINS__DEMO_DEVICES__NAME", "12345"),
                (
                    "HOMECONSOLE_PLUGINS__MONITORING__ALERTING__WEBHOOK_URLS",
                    "[\"http://a\"]",
                ),
                (
                    "HOMECONSOLE_PLUGINS__MONITORING__ACCESS__ADMIN_TOKEN",
                    "\"007\"",
                ),
                (
                    "HOMECONSOLE_PLUGINS__MONITORING__ERRORS__SENTRY_DSN",
                    "https://k@h/1",
                ),
                ("HOMECONSOLE_PYTHON", "/usr/bin/python3"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(t["host"]["tick_interval_ms"].as_integer(), Some(250));
        assert_eq!(t["host"]["trace_sample_ratio"].as_float(), Some(0.5));
        assert_eq!(t["plugins"]["demo-devices"]["name"].as_str(), Some("12345"));
        let m = &t["plugins"]["monitoring"];
        assert_eq!(m["alerting"]["webhook_urls"][0].as_str(), Some("http://a"));
        assert_eq!(m["access"]["admin_token"].as_str(), Some("007"));
        assert_eq!(m["errors"]["sentry_dsn"].as_str(), Some("https://k@h/1"));
        assert!(t.get("python").is_none());
        assert_eq!(applied.len(), 6, "{applied:?}");
        assert!(applied.contains(&(
            "HOMECONSOLE_PLUGINS__DEMO_DEVICES__NAME".into(),
            "plugins.demo-devices.name".into()
        )));
    }

    #[test]
    fn standard_variables_fill_only_what_is_unset() {
        let mut t: Table =
            toml::from_str("[plugins.monitoring.errors]\nenvironment = \"from-file\"\n").unwrap();
        apply(
            &mut t,
            vars(&[
                ("OTEL_SERVICE_NAME", "svc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel:4318/"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret,x=y"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,host.name=a",
                ),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("SENTRY_DSN", "https://key@sentry.example/3"),
                ("SENTRY_ENVIRONMENT", "from-env"),
                ("RUST_LOG", "warn,plugin.monitoring=debug"),
                (
                    "HOMECONSOLE_PLUGINS__MONITORING__TRACING__SERVICE_NAME",
                    "override",
                ),
            ]),
        )
        .unwrap();
        let tr = &t["plugins"]["monitoring"]["tracing"];
        assert_eq!(tr["service_name"].as_str(), Some("override"));
        assert_eq!(
            tr["otlp_endpoint"].as_str(),
            Some("https://otel:4318/v1/traces")
        );
        assert_eq!(tr["otlp_headers"]["api-key"].as_str(), Some("s=cret"));
        assert_eq!(tr["resource_attributes"]["host.name"].as_str(), Some("a"));
        assert_eq!(tr["sample_ratio"].as_float(), Some(0.25));
        let e = &t["plugins"]["monitoring"]["errors"];
        assert_eq!(
            e["sentry_dsn"].as_str(),
            Some("https://key@sentry.example/3")
        );
        assert_eq!(e["environment"].as_str(), Some("from-file"));
        assert_eq!(
            t["host"]["log_level"].as_str(),
            Some("warn,plugin.monitoring=debug")
        );

        let mut t = Table::new();
        apply(
            &mut t,
            vars(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a/v1/traces"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]),
        )
        .unwrap();
        let tr = &t["plugins"]["monitoring"]["tracing"];
        assert_eq!(tr["otlp_endpoint"].as_str(), Some("http://a/v1/traces"));
        assert!(tr.get("sample_ratio").is_none(), "no ratio sampler named");
        let err = apply(
            &mut Table::new(),
            vars(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_HEADERS"),
            "{err}"
        );
    }

    #[test]
    fn an_override_below_a_scalar_is_an_error() {
        let mut t: Table = toml::from_str("listen = \"127.0.0.1:1\"").unwrap();
        let err = apply(&mut t, vars(&[("HOMECONSOLE_LISTEN__X", "1")])).unwrap_err();
        assert!(err.to_string().contains("listen is not a table"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let t: Table = toml::from_str(
            "[plugins.monitoring.access]\nadmin_token = \"a\"\nadmin_token_file = \"/run/s\"\n\
             [plugins.monitoring.errors]\nsentry_dsn = \"https://k@h/1\"\nenvironment = \"p\"\n\
             [plugins.monitoring.tracing.otlp_headers]\nx-honeycomb-team = \"k\"\n",
        )
        .unwrap();
        let r = redacted(&t);
        let text = toml::to_string(&r).unwrap();
        assert!(
            !text.contains("\"a\"") && !text.contains("k@h") && !text.contains("\"k\""),
            "{text}"
        );
        assert!(
            text.contains("/run/s") && text.contains("environment = \"p\""),
            "{text}"
        );
    }
}
