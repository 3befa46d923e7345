//! A parser for the Prometheus text exposition format (0.0.4), as the plugin writes it.
//!
//! Alert rules are evaluated over the plugin's own metrics, and the one complete,
//! consistent view of them is the scrape text ([`crate::metrics::collector::MetricsCollector`]
//! renders it, custom and process metrics included). This module turns that text
//! back into [`Sample`]s for [`super::samples::SampleStore::ingest`]: metric names, labels
//! (with `\\`, `\"` and `\n` escapes), values including `+Inf`, `-Inf` and `NaN`, an
//! optional timestamp (ignored). Comment lines (`# HELP`, `# TYPE`, others) and blank
//! lines are skipped. The input is treated as untrusted: a malformed line is skipped
//! and counted, never a panic.

use super::samples::Sample;

/// What a parse produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Samples, in text order.
    pub samples: Vec<Sample>,
    /// Lines that could not be parsed (skipped).
    pub malformed: usize,
}

/// Parses a whole exposition text.
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(s) => out.samples.push(s),
            None => out.malformed += 1,
        }
    }
    out
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses one sample line (`name{a="b"} value [timestamp]`); `None` if malformed.
pub fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(line.len(), |(i, _)| i);
    let name = &line[..name_end];
    if !name.chars().next().is_some_and(is_name_start) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    // Value, then an optional timestamp.
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="b",c="d"}` (after the opening brace); returns the labels and the text
/// after the closing brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let end = s.find(|c: char| !is_name_char(c))?;
        let name = &s[..end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || name.contains(':') {
            return None;
        }
        s = s[end..].trim_start().strip_prefix('=')?.trim_start();
        s = s.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let mut closed = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, '\\') => value.push('\\'),
                    (_, '"') => value.push('"'),
                    (_, other) => {
                        // Prometheus keeps unknown escapes verbatim.
                        value.push('\\');
                        value.push(other);
                    }
                },
                '"' => {
                    closed = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        s = &s[closed? + 1..];
        labels.push((name.to_owned(), value));
        s = s.trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// Parses a sample value: a float, `+Inf`, `-Inf`, `Inf` or `NaN`.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => {
            // Rust also accepts words such as "infinity"; Prometheus' own forms are above.
            if s.chars()
                .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
            {
                return None;
            }
            s.parse().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &Sample) -> Vec<(&str, &str)> {
        s.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn parses_our_exposition() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\n\
            x_total{a=\"1\",b=\"two\"} 3\n\
            up 1\n\
            h_bucket{le=\"+Inf\"} 7\n\
            h_sum 0.25\n\n\
            g{x=\"q\\\"uote\\\\back\\nnl\"} -2.5e-3\n\
            n NaN\n\
            p +Inf\n\
            m -Inf\n\
            t{a=\"b\"} 4 1700000000000\n";
        let p = parse(text);
        assert_eq!(p.malformed, 0);
        assert_eq!(p.samples.len(), 9);
        assert_eq!(p.samples[0].name, "x_total");
        assert_eq!(pairs(&p.samples[0]), vec![("a", "1"), ("b", "two")]);
        assert_eq!(p.samples[0].value, 3.0);
        assert_eq!(p.samples[1].labels.len(), 0);
        assert_eq!(pairs(&p.samples[2]), vec![("le", "+Inf")]);
        assert_eq!(pairs(&p.samples[4]), vec![("x", "q\"uote\\back\nnl")]);
        assert_eq!(p.samples[4].value, -0.0025);
        assert!(p.samples[5].value.is_nan());
        assert_eq!(p.samples[6].value, f64::INFINITY);
        assert_eq!(p.samples[7].value, f64::NEG_INFINITY);
        assert_eq!(p.samples[8].value, 4.0);
    }

    #[test]
    fn malformed_lines_are_skipped_not_fatal() {
        for bad in [
            "x{a=\"1\" 3",
            "x{a=1} 3",
            "x{a=\"1\"} ",
            "x{a=\"1\"} abc",
            "x 1 2 3",
            "9x 1",
            "x{9a=\"1\"} 1",
            "x{a=\"unterminated} 1",
            "x{a=\"1\"b=\"2\"} 1",
            "x infinity",
            "{a=\"1\"} 1",
            "x 1 notatime",
        ] {
            assert_eq!(parse_line(bad), None, "{bad}");
        }
        let p = parse("good 1\nbad{ 2\n# comment\nalso_good{a=\"\"} 3\n");
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.malformed, 1);
    }

    #[test]
    fn tolerates_spaces_and_trailing_comma() {
        let s = parse_line("x{ a = \"1\" , b=\"2\", }   5").unwrap();
        assert_eq!(pairs(&s), vec![("a", "1"), ("b", "2")]);
        assert_eq!(s.value, 5.0);
    }

    #[test]
    fn round_trips_the_collector() {
        let build = crate::metrics::collector::BuildInfo {
            host_version: "1.0 \"x\"".into(),
            abi_version: "a\\b".into(),
            plugin_version: "0.1.0".into(),
        };
        let c = crate::metrics::collector::MetricsCollector::new(100, 8, &build).unwrap();
        let p = parse(&c.render());
        assert_eq!(p.malformed, 0);
        let b = p
            .samples
            .iter()
            .find(|s| s.name == "homeconsole_build_info")
            .unwrap();
        assert!(b
            .labels
            .contains(&("host_version".into(), "1.0 \"x\"".into())));
        assert!(b.labels.contains(&("abi_version".into(), "a\\b".into())));
    }
}
