//! Name, label and help-text validation.
//!
//! Exists so that whatever reaches the store (host registrations and untrusted
//! `record_metric` requests alike) keeps the exposition valid for the text format
//! 0.0.4 *and* lint-clean under `promtool check metrics`: besides the syntax rules
//! it mirrors promtool's lint rules (counter `_total` suffix, reserved histogram
//! suffixes and labels, camelCase, `:`, type names, non-base and abbreviated units).

use plugin_abi::metric_names::{is_label_name, is_metric_name};

use super::error::{clip, MetricError, MetricKind};

/// Longest accepted metric name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Longest accepted label name, in bytes.
pub const MAX_LABEL_NAME_LEN: usize = 200;
/// Longest accepted help text, in bytes (longer help is truncated).
pub const MAX_HELP_LEN: usize = 1024;

const NAME_RULE: &str = "must match [a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL_RULE: &str = "must match [a-zA-Z_][a-zA-Z0-9_]*";

fn invalid_name(name: &str, why: impl Into<String>) -> MetricError {
    MetricError::InvalidName {
        name: clip(name),
        why: why.into(),
    }
}

/// Checks the metric name syntax, length and (if `lint`) promtool's naming lints.
pub(super) fn check_metric_name(name: &str, lint: bool) -> Result<(), MetricError> {
    if name.is_empty() {
        return Err(invalid_name(name, format!("empty, {NAME_RULE}")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid_name(
            name,
            format!("{} bytes long, at most {MAX_NAME_LEN} allowed", name.len()),
        ));
    }
    if !is_metric_name(name) {
        return Err(invalid_name(name, NAME_RULE));
    }
    if lint {
        lint_metric_name(name)?;
    }
    Ok(())
}

/// promtool lints that apply to every metric name.
fn lint_metric_name(name: &str) -> Result<(), MetricError> {
    if name.contains(':') {
        return Err(invalid_name(
            name,
            "':' is reserved for recording rules (promtool lint)",
        ));
    }
    if is_camel_case(name) {
        return Err(invalid_name(
            name,
            "must be snake_case, not camelCase (promtool lint)",
        ));
    }
    for (i, part) in name.split('_').enumerate() {
        for t in ["counter", "gauge", "histogram", "summary", "gaugehistogram"] {
            if i > 0 && part.eq_ignore_ascii_case(t) {
                return Err(invalid_name(
                    name,
                    format!("must not include the type name '{t}' (promtool lint)"),
                ));
            }
        }
        for a in UNIT_ABBREVIATIONS {
            if i > 0 && part.eq_ignore_ascii_case(a) {
                return Err(invalid_name(
                    name,
                    format!("must not use the abbreviated unit '{a}' (promtool lint)"),
                ));
            }
        }
        if let Some(base) = non_base_unit(part) {
            return Err(invalid_name(
                name,
                format!("use the base unit '{base}' instead of '{part}' (promtool lint)"),
            ));
        }
    }
    Ok(())
}

const UNIT_ABBREVIATIONS: [&str; 14] = [
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
];

const UNITS: [(&str, &str); 24] = [
    ("amperes", "amperes"),
    ("bytes", "bytes"),
    ("celsius", "celsius"),
    ("grams", "grams"),
    ("joules", "joules"),
    ("kelvin", "kelvin"),
    ("meters", "meters"),
    ("metres", "metres"),
    ("seconds", "seconds"),
    ("volts", "volts"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
    ("kelvins", "kelvin"),
    ("fahrenheit", "celsius"),
    ("rankine", "celsius"),
    ("inches", "meters"),
    ("yards", "meters"),
    ("miles", "meters"),
    ("bits", "bytes"),
    ("calories", "joules"),
    ("pounds", "grams"),
    ("ounces", "grams"),
];

const UNIT_PREFIXES: [&str; 19] = [
    "", "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega",
    "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
];

/// If `part` (one `_`-separated word) is a known unit that is not a base unit,
/// returns the base unit promtool asks for.
fn non_base_unit(part: &str) -> Option<&'static str> {
    for p in UNIT_PREFIXES {
        if let Some(rest) = part.strip_prefix(p) {
            for (unit, base) in UNITS {
                if rest == unit && (!p.is_empty() || unit != base) {
                    return Some(base);
                }
            }
        }
    }
    None
}

/// promtool's `[a-z][A-Z]` camelCase detector.
fn is_camel_case(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
}

/// Checks the kind-specific suffix rules: counters end in `_total`; gauges and
/// histograms must not end in `_total`, `_bucket`, `_count` or `_sum`.
pub(super) fn check_kind_suffix(name: &str, kind: MetricKind) -> Result<(), MetricError> {
    match kind {
        MetricKind::Counter => {
            if !name.ends_with("_total") {
                return Err(invalid_name(name, "a counter name must end in \"_total\""));
            }
        }
        MetricKind::Gauge | MetricKind::Histogram => {
            for s in ["_total", "_bucket", "_count", "_sum"] {
                if name.ends_with(s) {
                    return Err(invalid_name(
                        name,
                        format!("a {kind} name must not end in \"{s}\""),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks a unit (`seconds`, `bytes`, ...: lower-case letters, digits and
/// `_`) and that the name ends in `_<unit>`, or `_<unit>_total` for a
/// counter, as OpenMetrics requires of a family with a `# UNIT`.
pub(super) fn check_unit(name: &str, kind: MetricKind, unit: &str) -> Result<(), MetricError> {
    let ok = unit
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && unit.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if !ok {
        return Err(invalid_name(
            name,
            format!("unit {:?} must match [a-z][a-z0-9_]*", clip(unit)),
        ));
    }
    let stem = match kind {
        MetricKind::Counter => name.strip_suffix("_total").unwrap_or(name),
        MetricKind::Gauge | MetricKind::Histogram => name,
    };
    let suffixed = stem
        .strip_suffix(unit)
        .is_some_and(|rest| rest.ends_with('_'));
    if !suffixed {
        let want = match kind {
            MetricKind::Counter => format!("_{unit}_total"),
            _ => format!("_{unit}"),
        };
        return Err(invalid_name(
            name,
            format!("a metric with unit {unit:?} must end in \"{want}\""),
        ));
    }
    Ok(())
}

/// Checks one label name for `metric`.
pub(super) fn check_label_name(metric: &str, label: &str, lint: bool) -> Result<(), MetricError> {
    let bad = |why: String| MetricError::InvalidLabel {
        metric: clip(metric),
        label: clip(label),
        why,
    };
    if label.is_empty() {
        return Err(bad(format!("empty, {LABEL_RULE}")));
    }
    if label.len() > MAX_LABEL_NAME_LEN {
        return Err(bad(format!(
            "name is {} bytes long, at most {MAX_LABEL_NAME_LEN} allowed",
            label.len()
        )));
    }
    if !is_label_name(label) {
        return Err(bad(LABEL_RULE.to_owned()));
    }
    if label.starts_with("__") {
        return Err(bad("names starting with \"__\" are reserved".to_owned()));
    }
    if label == "le" {
        return Err(bad("\"le\" is reserved for histogram buckets".to_owned()));
    }
    if lint {
        if label == "quantile" {
            return Err(bad(
                "\"quantile\" is reserved for summaries (promtool lint)".to_owned(),
            ));
        }
        if is_camel_case(label) {
            return Err(bad(
                "must be snake_case, not camelCase (promtool lint)".to_owned()
            ));
        }
    }
    Ok(())
}

/// Checks a label value's length.
pub(super) fn check_label_value(
    metric: &str,
    label: &str,
    value: &str,
    max_len: usize,
) -> Result<(), MetricError> {
    if value.len() > max_len {
        return Err(MetricError::InvalidLabel {
            metric: clip(metric),
            label: clip(label),
            why: format!(
                "value is {} bytes long, at most {max_len} allowed",
                value.len()
            ),
        });
    }
    Ok(())
}

/// Checks that bucket bounds are finite and strictly increasing; a trailing
/// `+Inf` is accepted and dropped (the `+Inf` bucket is always emitted).
pub(super) fn check_buckets(metric: &str, buckets: &[f64]) -> Result<Vec<f64>, MetricError> {
    let mut b = buckets.to_vec();
    if b.last() == Some(&f64::INFINITY) {
        b.pop();
    }
    let bad = |why: &str| MetricError::InvalidBuckets {
        metric: clip(metric),
        why: why.to_owned(),
    };
    if b.iter().any(|v| !v.is_finite()) {
        return Err(bad("bounds must be finite (+Inf is implicit)"));
    }
    if b.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("bounds must be strictly increasing"));
    }
    Ok(b)
}

/// Turns help text into its escaped exposition form: one line, `\` and newline
/// escaped per the text format, other control characters replaced by spaces,
/// truncated to [`MAX_HELP_LEN`]. Returns `None` if nothing printable remains.
pub(super) fn sanitize_help(help: &str) -> Option<String> {
    let mut src = help.trim();
    if src.len() > MAX_HELP_LEN {
        let mut end = MAX_HELP_LEN;
        while !src.is_char_boundary(end) {
            end -= 1;
        }
        src = src[..end].trim_end();
    }
    if src.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(src.len());
    for c in src.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_metric_name("http_requests_total", true).is_ok());
        assert!(check_metric_name("_x", true).is_ok());
        assert!(check_metric_name("a:b", false).is_ok());
        for bad in ["", "9abc", "a-b", "a b", "é"] {
            assert!(check_metric_name(bad, false).is_err(), "{bad}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(check_metric_name(&long, false).is_err());
        for lint_bad in [
            "a:b",
            "fooBar",
            "x_gauge",
            "x_counter_total",
            "latency_ms",
            "x_milliseconds",
            "x_kilobytes",
            "req_sec",
            "x_hours",
        ] {
            assert!(check_metric_name(lint_bad, false).is_ok(), "{lint_bad}");
            assert!(check_metric_name(lint_bad, true).is_err(), "{lint_bad}");
        }
        for ok in ["x_bytes", "x_seconds", "foo_total_x", "x_info", "x__y"] {
            assert!(check_metric_name(ok, true).is_ok(), "{ok}");
        }
    }

    #[test]
    fn message() {
        let e = check_metric_name("9abc", true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metric name \"9abc\" is invalid: must match [a-zA-Z_:][a-zA-Z0-9_:]*"
        );
    }

    #[test]
    fn help() {
        assert_eq!(sanitize_help("a\\b\nc\rd").unwrap(), "a\\\\b\\nc d");
        assert_eq!(sanitize_help("  \n "), None);
    }
}
