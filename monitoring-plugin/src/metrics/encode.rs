//! Prometheus text exposition format 0.0.4 writer, and its OpenMetrics 1.0
//! variant (histogram bucket exemplars, counter family names without
//! `_total`, `# EOF`) for scrapers that ask for it.
//!
//! Exists because the `prometheus` crate's `gather()` + `TextEncoder` is too slow
//! for our scrape budget (10,000 series in <= 5 ms): here series label strings
//! are pre-rendered at creation, numbers are formatted with `itoa`/`ryu`
//! straight into one reusable buffer, and locks are held only to clone `Arc`s.

use std::sync::atomic::Ordering::Relaxed;

use super::family::FamilyCore;
use super::store::{AnyFamily, MetricStore};
use super::text::push_float;
use super::value::{Cell, HistogramCell};

fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

fn push_header<C: Cell>(out: &mut String, f: &FamilyCore<C>) {
    out.push_str("# HELP ");
    out.push_str(&f.name);
    out.push(' ');
    out.push_str(&f.help);
    out.push_str("\n# TYPE ");
    out.push_str(&f.name);
    out.push(' ');
    out.push_str(f.kind.as_str());
    out.push('\n');
    if let Some(unit) = f.unit.get() {
        out.push_str("# UNIT ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(unit);
        out.push('\n');
    }
}

/// Writes `name{labels} ` (braces only when there are labels).
fn push_series_start(out: &mut String, name: &str, suffix: &str, labels: &str) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
}

fn encode_simple<C: Cell>(out: &mut String, f: &FamilyCore<C>, value: impl Fn(&C) -> f64) {
    let snap = f.snapshot();
    if snap.is_empty() {
        return;
    }
    push_header(out, f);
    for s in snap.iter() {
        push_series_start(out, &f.name, "", &s.labels);
        push_float(out, value(&s.cell));
        out.push('\n');
    }
}

fn push_exemplar(out: &mut String, e: &super::value::Exemplar) {
    out.push_str(" # {trace_id=\"");
    out.push_str(e.trace_id());
    out.push_str("\",span_id=\"");
    out.push_str(e.span_id());
    out.push_str("\"} ");
    push_float(out, e.value);
    out.push(' ');
    push_u64(out, e.timestamp_ms / 1000);
    out.push('.');
    let ms = e.timestamp_ms % 1000;
    out.push(char::from(b'0' + (ms / 100) as u8));
    out.push(char::from(b'0' + (ms / 10 % 10) as u8));
    out.push(char::from(b'0' + (ms % 10) as u8));
}

fn encode_histogram(out: &mut String, f: &FamilyCore<HistogramCell>, exemplars: bool) {
    let snap = f.snapshot();
    if snap.is_empty() {
        return;
    }
    push_header(out, f);
    // `le="0.005"} ` for every bound, rendered once per scrape.
    let mut les: Vec<String> = f
        .params
        .iter()
        .map(|&b| {
            let mut s = String::from("le=\"");
            push_float(&mut s, b);
            s.push_str("\"} ");
            s
        })
        .collect();
    les.push("le=\"+Inf\"} ".to_owned());
    for s in snap.iter() {
        let mut cumulative = 0u64;
        for (i, (count, le)) in s.cell.counts.iter().zip(&les).enumerate() {
            cumulative += count.load(Relaxed);
            out.push_str(&f.name);
            out.push_str("_bucket{");
            if !s.labels.is_empty() {
                out.push_str(&s.labels);
                out.push(',');
            }
            out.push_str(le);
            push_u64(out, cumulative);
            if exemplars {
                if let Some(e) = *s.cell.exemplars[i].lock() {
                    push_exemplar(out, &e);
                }
            }
            out.push('\n');
        }
        push_series_start(out, &f.name, "_sum", &s.labels);
        push_float(out, s.cell.sum.get());
        out.push('\n');
        push_series_start(out, &f.name, "_count", &s.labels);
        push_u64(out, cumulative);
        out.push('\n');
    }
}

impl MetricStore {
    /// Appends the text exposition (format 0.0.4) of every non-empty family to
    /// `out`: families sorted by name, series sorted by label values. Reuse `out`
    /// across scrapes (clear it first) to avoid reallocating.
    pub fn encode(&self, out: &mut String) {
        self.encode_with(out, false);
    }

    /// Like [`MetricStore::encode`], with each histogram bucket's latest
    /// exemplar appended OpenMetrics-style (` # {trace_id="…",span_id="…"} value timestamp`).
    /// The result becomes OpenMetrics through [`to_openmetrics`].
    pub fn encode_with_exemplars(&self, out: &mut String) {
        self.encode_with(out, true);
    }

    /// The current exemplars of histogram `name`: (rendered labels of the
    /// series, bucket upper bound, exemplar), newest first.
    pub fn exemplars(&self, name: &str) -> Vec<(String, f64, super::value::Exemplar)> {
        let family = match self.families.read().get(name) {
            Some(AnyFamily::Histogram(f)) => f.clone(),
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        for s in family.snapshot().iter() {
            for (i, slot) in s.cell.exemplars.iter().enumerate() {
                if let Some(e) = *slot.lock() {
                    let le = family.params.get(i).copied().unwrap_or(f64::INFINITY);
                    out.push((s.labels.to_string(), le, e));
                }
            }
        }
        out.sort_by_key(|x| std::cmp::Reverse(x.2.timestamp_ms));
        out
    }

    fn encode_with(&self, out: &mut String, exemplars: bool) {
        let families: Vec<AnyFamily> = self.families.read().values().cloned().collect();
        for f in &families {
            match f {
                AnyFamily::Counter(f) => encode_simple(out, f, |c| c.get()),
                AnyFamily::Gauge(f) => encode_simple(out, f, |c| c.0.get()),
                AnyFamily::Histogram(f) => encode_histogram(out, f, exemplars),
            }
        }
    }

    /// Convenience: the exposition as a new `String`.
    pub fn encode_to_string(&self) -> String {
        let mut s = String::new();
        self.encode(&mut s);
        s
    }
}

/// Turns a 0.0.4 text exposition (possibly with exemplars) into OpenMetrics
/// 1.0: a counter family is named without its `_total` suffix in `HELP` and
/// `TYPE` (its samples keep it); a counter whose name lacks `_total` is
/// typed `unknown`, as OpenMetrics requires the suffix on counter samples;
/// `# EOF` ends the text.
pub fn to_openmetrics(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut help: Option<&str> = None;
    // The family name the last `# TYPE` line gave (a counter's without
    // `_total`), for the `# UNIT` line that may follow it.
    let mut family_of: Option<(&str, &str)> = None;
    let flush = |out: &mut String, help: &mut Option<&str>| {
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
    };
    for line in text.lines() {
        if line.starts_with("# HELP ") {
            flush(&mut out, &mut help);
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let (family, kind) = match (kind, name.strip_suffix("_total")) {
                ("counter", Some(base)) => (base, "counter"),
                ("counter", None) => (name, "unknown"),
                _ => (name, kind),
            };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.strip_prefix(name))
                    .unwrap_or("");
                out.push_str("# HELP ");
                out.push_str(family);
                out.push_str(text);
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(family);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            family_of = Some((name, family));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest.split_once(' ').unwrap_or((rest, ""));
            let family = match family_of {
                Some((typed, family)) if typed == name => family,
                _ => name,
            };
            out.push_str("# UNIT ");
            out.push_str(family);
            out.push(' ');
            out.push_str(unit);
            out.push('\n');
            continue;
        }
        flush(&mut out, &mut help);
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    flush(&mut out, &mut help);
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_conversion() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n\
                    # HELP b B.\n# TYPE b counter\nb 1\n\
                    # HELP g G.\n# TYPE g gauge\ng 3\n";
        assert_eq!(
            to_openmetrics(text),
            "# HELP a A.\n# TYPE a counter\na_total{x=\"1\"} 2\n\
             # HELP b B.\n# TYPE b unknown\nb 1\n\
             # HELP g G.\n# TYPE g gauge\ng 3\n# EOF\n"
        );
    }

    #[test]
    fn exemplars_on_buckets() {
        let store = MetricStore::new();
        let h = store
            .register_histogram("lat_seconds", "Latency.", &["op"], &[0.1, 1.0])
            .unwrap()
            .with_labels(&["x"])
            .unwrap();
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let ctx = |t: &str| plugin_abi::TraceContext::parse(t).unwrap();
        h.observe_traced(0.5, Some(&ctx(tp)));
        h.observe_traced(
            0.05,
            Some(&ctx(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            )),
        );
        h.observe_traced(5.0, None);
        let mut out = String::new();
        store.encode_with_exemplars(&mut out);
        let line = out
            .lines()
            .find(|l| l.starts_with("lat_seconds_bucket{op=\"x\",le=\"1\"}"))
            .unwrap();
        assert!(
            line.starts_with("lat_seconds_bucket{op=\"x\",le=\"1\"} 2 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\",span_id=\"b7ad6b7169203331\"} 0.5 "),
            "{line}"
        );
        assert!(
            !out.contains("le=\"0.1\"} 1 #"),
            "unsampled traces give no exemplar: {out}"
        );
        assert!(
            !store.encode_to_string().contains('#')
                || !store.encode_to_string().contains("trace_id")
        );
    }
}
