//! Prometheus remote_write (1.0: protobuf + snappy) of the plugin's own
//! samples: the push path for a host Prometheus cannot scrape (behind NAT).
//!
//! One std thread samples the exposition every `interval_secs` (the same
//! text a scrape gets, parsed by the alerting module's parser), turns it into
//! one `WriteRequest` with the external labels added, and queues it. The
//! queue is bounded (the oldest batch is dropped when full); the head batch
//! is POSTed, retried with the shared backoff and `Retry-After` rule on 5xx,
//! 429 and transport errors, and given up after `max_retries`. Samples are
//! counted `sent`, `failed` or `dropped` in
//! `homeconsole_remote_write_samples_total{result}`.
//!
//! This file turns exposition text into a `WriteRequest` ([`proto`] encodes
//! it); [`capability`] owns the thread, the queue and the host.

pub mod capability;
pub mod proto;

use std::collections::BTreeMap;

use self::proto::{Label, Sample, TimeSeries, WriteRequest};

/// The samples of one exposition text as a `WriteRequest` at `timestamp_ms`,
/// with `external` labels added where a series lacks them.
pub fn write_request(
    text: &str,
    timestamp_ms: i64,
    external: &BTreeMap<String, String>,
) -> (WriteRequest, u64) {
    let parsed = crate::alerting::exposition::parse(text);
    let mut timeseries = Vec::with_capacity(parsed.samples.len());
    for s in parsed.samples {
        let mut labels: Vec<Label> = Vec::with_capacity(s.labels.len() + external.len() + 1);
        labels.push(Label {
            name: "__name__".into(),
            value: s.name,
        });
        for (name, value) in s.labels {
            labels.push(Label { name, value });
        }
        for (k, v) in external {
            if !labels.iter().any(|l| &l.name == k) {
                labels.push(Label {
                    name: k.clone(),
                    value: v.clone(),
                });
            }
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        timeseries.push(TimeSeries {
            labels,
            samples: vec![Sample {
                value: s.value,
                timestamp: timestamp_ms,
            }],
        });
    }
    let n = timeseries.len() as u64;
    (WriteRequest { timeseries }, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_becomes_sorted_series_with_external_labels() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{zone=\"b\",instance=\"own\"} 3\nup 1\n";
        let external: BTreeMap<String, String> = [("instance", "ext"), ("site", "lab")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let (req, n) = write_request(text, 42, &external);
        assert_eq!(n, 2);
        let names = |ts: &TimeSeries| -> Vec<(String, String)> {
            ts.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        };
        assert_eq!(
            names(&req.timeseries[0]),
            vec![
                ("__name__".into(), "a_total".into()),
                ("instance".into(), "own".into()),
                ("site".into(), "lab".into()),
                ("zone".into(), "b".into()),
            ]
        );
        assert_eq!(
            req.timeseries[1].samples,
            vec![Sample {
                value: 1.0,
                timestamp: 42
            }]
        );
    }
}
