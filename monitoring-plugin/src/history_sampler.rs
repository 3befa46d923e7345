//! Feeds the embedded history: every `history.sample_interval_secs` it takes
//! the plugin's own exposition (the same text Prometheus would scrape),
//! parses it into samples and ingests them with the current time. The alert
//! evaluator, the Prometheus-compatible query API and the dashboard read
//! that history, so the three agree with what a Prometheus server would
//! store.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::alerts::history::{History, Sample};
use crate::capability::{Capability, Ctx};
use crate::collector::MetricsCollector;

/// Parses Prometheus text exposition (0.0.4) into samples. Comments and
/// malformed lines are skipped; label values are unescaped.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` and returns the labels and what follows `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_owned();
        s = s[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((name, value));
        s = &s[end + 1..];
    }
}

/// The sampler capability.
pub struct HistorySampler {
    collector: Arc<MetricsCollector>,
    history: Arc<History>,
    interval_ms: i64,
    last_ms: AtomicI64,
    snapshots: AtomicU64,
}

impl HistorySampler {
    /// A sampler over the context's collector and history.
    pub fn new(ctx: &Ctx) -> Self {
        HistorySampler {
            collector: ctx.collector.clone(),
            history: ctx.history.clone(),
            interval_ms: (ctx.config.history.sample_interval_secs * 1000.0) as i64,
            last_ms: AtomicI64::new(i64::MIN),
            snapshots: AtomicU64::new(0),
        }
    }

    /// Takes one snapshot now.
    pub fn sample(&self, now_ms: i64) {
        let samples = parse_exposition(&self.collector.render());
        self.history.ingest(now_ms, &samples);
        self.snapshots.fetch_add(1, Ordering::Relaxed);
    }
}

impl Capability for HistorySampler {
    fn name(&self) -> &'static str {
        "history"
    }

    fn start(&self) -> Result<(), plugin_abi::PluginError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.last_ms.store(now, Ordering::Relaxed);
        self.sample(now);
        Ok(())
    }

    fn tick(&self, now_unix_ms: u64) {
        let now = now_unix_ms as i64;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.interval_ms {
            self.last_ms.store(now, Ordering::Relaxed);
            self.sample(now);
        }
    }

    fn status(&self) -> Value {
        let s = self.history.stats();
        json!({"snapshots": self.snapshots.load(Ordering::Relaxed), "series": s.series, "samples": s.samples,
               "samples_evicted": s.samples_evicted, "series_evicted": s.series_evicted})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_our_exposition() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\n\\\\\"} 3\nb 4.5\nc_bucket{le=\"+Inf\"} 7\nd NaN\nbroken{ 1\n";
        let s = parse_exposition(text);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "a_total");
        assert_eq!(
            s[0].labels,
            vec![("x".into(), "1".into()), ("y".into(), "q\"\n\\".into())]
        );
        assert_eq!(s[0].value, 3.0);
        assert_eq!((s[1].name.as_str(), s[1].value), ("b", 4.5));
        assert_eq!(s[2].labels, vec![("le".into(), "+Inf".into())]);
        assert!(s[3].value.is_nan());
    }
}
