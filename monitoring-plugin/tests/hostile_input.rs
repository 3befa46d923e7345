//! Hostile input: property tests over the untrusted parsers — the
//! record_metric validator, the Sentry envelope/ingest parser, the rule-file
//! loader, PromQL and Go templates, and the HTTP query-parameter parsing. Each runs
//! the committed seed corpus (`tests/corpus/`) as is and mutated, plus
//! arbitrary input; the property is "no panic, a clean result or a clean
//! error, and bounded output". Case counts: `PROPTEST_CASES` (256 per
//! property when unset).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use monitoring_plugin::alerting::promql::{
    eval_instant, eval_range_in, on_query_stack, parse_supported, Budget, PromqlError, QueryLimits,
};
use monitoring_plugin::alerting::rules::parse_rule_file;
use monitoring_plugin::alerting::samples::{Sample, SampleStore, SampleStoreConfig};
use monitoring_plugin::alerting::template::{Env, QueryRow, Template};
use monitoring_plugin::error_tracking::ingest::{parse_request, IngestConfig, IngestRequest};
use monitoring_plugin::http::query_param;
use monitoring_plugin::metrics::{MetricKind, MetricStore, RecordRequest};
use proptest::prelude::*;

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn lines(dir: &str) -> Vec<String> {
    corpus(dir)
        .iter()
        .flat_map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// A seed with a few random byte edits (replace, insert, delete, truncate).
fn mutate(seed: &[u8], edits: &[(u16, u8, u8)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(pos, byte, op) in edits {
        let at = if out.is_empty() {
            0
        } else {
            pos as usize % (out.len() + 1)
        };
        match op % 4 {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => out.truncate(at),
            _ => out.push(byte),
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(u16, u8, u8)>> {
    prop::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..8)
}

fn history() -> SampleStore {
    let h = SampleStore::new(SampleStoreConfig::default());
    for i in 0..20 {
        h.ingest(
            i * 15_000,
            &[
                Sample {
                    name: "x_total".into(),
                    labels: vec![("a".into(), "1".into())],
                    value: i as f64,
                },
                Sample {
                    name: "up".into(),
                    labels: vec![],
                    value: 1.0,
                },
            ],
        );
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn record_metric_never_panics_and_never_corrupts(
        name in "[a-zA-Z_:0-9\\-\\.é]{0,40}",
        labels in prop::collection::btree_map("[a-zA-Z_0-9\\-]{0,12}", ".{0,40}", 0..20),
        value in prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(0.5)],
        kind in 0u8..3,
        seed_index in any::<usize>(),
    ) {
        let store = MetricStore::new();
        store.record(&RecordRequest { name: "anchor_total".into(), value: 7.0, labels: BTreeMap::new(), kind: MetricKind::Counter, help: None }).unwrap();
        let before = store.encode_to_string();
        let kind = [MetricKind::Counter, MetricKind::Gauge, MetricKind::Histogram][kind as usize];
        let seeds = lines("metrics");
        let seed: serde_json::Value = serde_json::from_str(&seeds[seed_index % seeds.len()]).unwrap();
        for req in [
            RecordRequest { name: name.clone(), value, labels: labels.clone(), kind, help: None },
            RecordRequest {
                name: seed["name"].as_str().unwrap().to_owned(),
                value,
                labels: labels.clone(),
                kind,
                help: Some(name.clone()),
            },
        ] {
            if store.record(&req).is_err() {
                // A refusal changes nothing.
                prop_assert!(store.encode_to_string().contains("anchor_total 7"));
            }
        }
        let after = store.encode_to_string();
        prop_assert!(after.contains("anchor_total 7"), "anchor corrupted:\n{before}\n---\n{after}");
        prop_assert!(after.len() < 1 << 20);
    }

    #[test]
    fn sentry_ingest_never_panics(
        seed_index in any::<usize>(),
        edits in edits(),
        raw in prop::collection::vec(any::<u8>(), 0..512),
        encoding in prop_oneof![Just(""), Just("gzip"), Just("deflate"), Just("br"), Just("zstd")],
        use_raw in any::<bool>(),
        path in prop_oneof![Just("/api/1/envelope/"), Just("/api/1/store/"), Just("/api/x/envelope/"), Just("/api//store/")],
    ) {
        let seeds = corpus("envelopes");
        let body = if use_raw { raw } else { mutate(&seeds[seed_index % seeds.len()], &edits) };
        let mut headers = vec![("x-sentry-auth".to_owned(), "Sentry sentry_key=public, sentry_version=7".to_owned())];
        if !encoding.is_empty() {
            headers.push(("content-encoding".to_owned(), encoding.to_owned()));
        }
        let config = IngestConfig { public_keys: vec!["public".into()], max_decompressed_bytes: 1 << 20, ..IngestConfig::default() };
        let req = IngestRequest { method: "POST", path, headers: &headers, body: &body };
        match parse_request(&config, &req) {
            Ok(outcome) => prop_assert!(outcome.events.len() <= config.max_items),
            Err(e) => prop_assert!(matches!(e.status(), 400 | 401 | 404 | 405 | 413), "{e:?}"),
        }
    }

    #[test]
    fn rule_loader_never_panics(seed_index in any::<usize>(), edits in edits(), junk in ".{0,200}") {
        let seeds = corpus("rules");
        let text = String::from_utf8_lossy(&mutate(&seeds[seed_index % seeds.len()], &edits)).into_owned();
        let result = parse_rule_file(&text, "fuzz.yml");
        for e in &result.errors {
            prop_assert!(e.to_string().contains("fuzz.yml"), "{e}");
        }
        let _ = parse_rule_file(&junk, "junk.yml");
    }

    #[test]
    fn promql_subset_never_panics(seed_index in any::<usize>(), edits in edits(), junk in ".{0,80}") {
        let seeds = lines("promql");
        let text = String::from_utf8_lossy(&mutate(seeds[seed_index % seeds.len()].as_bytes(), &edits)).into_owned();
        let h = history();
        for q in [text.as_str(), junk.as_str()] {
            if let Ok(expr) = parse_supported(q) {
                let _ = eval_instant(&expr, 300_000, &h);
            }
        }
    }

    #[test]
    fn templates_never_panic(seed_index in any::<usize>(), edits in edits(), junk in ".{0,120}") {
        let seeds = [
            "{{ $labels }} {{ $value | humanize }}",
            "{{ if gt $value 1.0 }}a{{ else if eq $value 1.0 }}b{{ else }}c{{ end }}",
            "{{ range $k, $v := $labels }}{{ $k }}={{ printf \"%5.2f|%s|%d\" $value $v 3 }}{{ end }}",
            "{{ with query \"up\" }}{{ . | first | value | humanize1024 }}{{ end }}",
            "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance | toUpper }}{{- /* c */ -}}",
        ];
        let text = String::from_utf8_lossy(&mutate(seeds[seed_index % seeds.len()].as_bytes(), &edits)).into_owned();
        let labels: BTreeMap<String, String> = [("instance".to_string(), "h:1".to_string())].into_iter().collect();
        let q = |_: &str| -> Result<Vec<QueryRow>, String> { Ok(vec![(BTreeMap::new(), 1.0)]) };
        let env = Env { labels: &labels, value: 1.5, external_labels: &labels, external_url: "http://x", query: Some(&q) };
        for t in [text.as_str(), junk.as_str()] {
            if let Ok(t) = Template::parse(t) {
                prop_assert!(t.expand(&env).len() <= 2 << 20);
            }
        }
    }

    #[test]
    fn query_parameters_never_panic(query in ".{0,120}", name in "[a-z\\[\\]%]{0,8}", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = query_param(&query, &name);
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        let _ = query_param(&lossy, "query");
        let _ = query_param("%", "%");
        let _ = query_param("a=%e9%", "a");
    }
}

/// The hardening report's cases: deep and long PromQL is refused before
/// parsing (no stack overflow), everything under the limits evaluates, and a
/// large range query stops at the samples budget.
#[test]
fn deep_long_and_large_range_promql_is_bounded() {
    let h = history();
    let generated = [
        format!("{}1{}", "(".repeat(200_000), ")".repeat(200_000)),
        format!("1{}", "+1".repeat(200_000)),
        "-".repeat(200_000) + "1",
        format!("{}up{}", "[".repeat(50_000), "]".repeat(50_000)),
        format!("{}up{}", "{".repeat(50_000), "}".repeat(50_000)),
    ];
    for q in &generated {
        match parse_supported(q) {
            Err(PromqlError::Limit(m)) => assert!(m.contains("max_"), "{m}"),
            other => panic!("{}…: {other:?}", &q[..20]),
        }
    }
    let mut refused = 0;
    for q in lines("promql") {
        match parse_supported(&q) {
            Ok(expr) => {
                let _ = eval_instant(&expr, 300_000, &h);
            }
            Err(PromqlError::Limit(_)) => refused += 1,
            Err(_) => {}
        }
    }
    assert!(refused >= 4, "{refused} corpus lines refused by the limits");
    // 11,000 steps over every series, on a budget of 10,000 samples.
    let expr = parse_supported("{__name__=~\".+\"}").unwrap();
    let limits = QueryLimits {
        max_samples: 10_000,
        ..QueryLimits::default()
    };
    let r =
        on_query_stack(|| eval_range_in(&expr, 0, 11_000_000, 1_000, &h, &Budget::new(&limits)))
            .unwrap();
    assert_eq!(r.unwrap_err(), PromqlError::TooManySamples(10_000));
}

/// Every committed seed, unmutated, through its parser (the properties pick
/// seeds at random, so they may miss one): no panic, a clean result or a
/// clean error, and each corpus has seeds that are accepted. Checks that
/// it tried the whole corpus.
#[test]
fn every_corpus_seed_is_tried_as_is() {
    let mut tried = 0;

    let metric_seeds = lines("metrics");
    let mut accepted = 0;
    for line in &metric_seeds {
        let seed: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = match seed["kind"].as_str() {
            Some("counter") => MetricKind::Counter,
            Some("histogram") => MetricKind::Histogram,
            _ => MetricKind::Gauge,
        };
        let labels: BTreeMap<String, String> = seed["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let store = MetricStore::new();
        let anchor = RecordRequest {
            name: "anchor_total".into(),
            value: 7.0,
            labels: BTreeMap::new(),
            kind: MetricKind::Counter,
            help: None,
        };
        store.record(&anchor).unwrap();
        let request = RecordRequest {
            name: seed["name"].as_str().unwrap_or_default().to_owned(),
            value: seed["value"].as_f64().unwrap_or(f64::NAN),
            labels,
            kind,
            help: None,
        };
        accepted += usize::from(store.record(&request).is_ok());
        assert!(
            store.encode_to_string().contains("anchor_total 7"),
            "{line}"
        );
        tried += 1;
    }
    assert!(accepted > 0, "no metric seed is accepted");

    let envelopes = corpus("envelopes");
    let config = IngestConfig {
        public_keys: vec!["public".into()],
        max_decompressed_bytes: 1 << 20,
        ..IngestConfig::default()
    };
    let mut accepted = 0;
    for body in &envelopes {
        for encoding in ["", "gzip", "deflate", "br"] {
            let mut headers = vec![(
                "x-sentry-auth".to_owned(),
                "Sentry sentry_key=public, sentry_version=7".to_owned(),
            )];
            if !encoding.is_empty() {
                headers.push(("content-encoding".to_owned(), encoding.to_owned()));
            }
            let req = IngestRequest {
                method: "POST",
                path: "/api/1/envelope/",
                headers: &headers,
                body,
            };
            match parse_request(&config, &req) {
                Ok(outcome) => {
                    assert!(outcome.events.len() <= config.max_items);
                    accepted += 1;
                }
                Err(e) => assert!(matches!(e.status(), 400 | 401 | 404 | 405 | 413), "{e:?}"),
            }
        }
        tried += 1;
    }
    assert!(accepted > 0, "no envelope seed is accepted");

    let rule_files = corpus("rules");
    let mut clean = 0;
    for text in &rule_files {
        let result = parse_rule_file(&String::from_utf8_lossy(text), "seed.yml");
        for e in &result.errors {
            assert!(e.to_string().contains("seed.yml"), "{e}");
        }
        clean += usize::from(result.errors.is_empty());
        tried += 1;
    }
    assert!(clean > 0, "no rule seed loads cleanly");

    let queries = lines("promql");
    let h = history();
    let mut parsed = 0;
    for q in &queries {
        if let Ok(expr) = parse_supported(q) {
            let _ = eval_instant(&expr, 300_000, &h);
            parsed += 1;
        }
        tried += 1;
    }
    assert!(parsed > 0, "no PromQL seed parses");

    let corpus_size = metric_seeds.len() + envelopes.len() + rule_files.len() + queries.len();
    assert!(corpus_size >= 4, "the seed corpus is missing");
    assert_eq!(tried, corpus_size, "every seed tried");
    eprintln!("hostile inputs tried as is: {tried} corpus seeds");
}
