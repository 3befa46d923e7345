//! A Prometheus-compatible query API over the plugin's embedded samples, so
//! the built-in dashboard — and Grafana, with the host itself added as a
//! Prometheus data source — can chart the host's metrics with no Prometheus
//! server running. Paths and JSON shapes follow Prometheus' HTTP API:
//! `/query`, `/query_range`, `/series`, `/labels`, `/label/{name}/values`
//! and `/status/buildinfo` under `/api/v1/monitoring/prometheus/api/v1/`.
//! Queries use the alert evaluator's PromQL (docs/alerting.md), within the
//! cost limits of `[plugins.monitoring.query]`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use plugin_abi::{HttpRequest, HttpResponse};
use promql_parser::label::Matcher;
use serde_json::{json, Value};

use crate::alerting::promql::numeric::go_format_float;
use crate::alerting::promql::{
    check_text, eval_instant_in, eval_range_in, on_query_stack, parse_here, Budget, PromqlError,
    QueryLimits, Value as PromValue,
};
use crate::alerting::samples::{is_stale_nan, SampleStore, SeriesData};
use crate::capability::{Capability, Route};
use crate::config::AccessConfig;
use crate::http::{query_param, require_metrics_token};
use crate::metrics::names;
use crate::metrics::{CounterFamily, MetricStore};
use crate::time::now_ms_signed;

/// Prefix of every route of this API.
pub const PREFIX: &str = "/api/v1/monitoring/prometheus/api/v1/";

/// Every path under the query API, where the metrics token rule applies.
const QUERY_API: &str = "/api/v1/monitoring/prometheus/";

/// Most points a range query may return per series (as Prometheus: 11,000).
const MAX_POINTS: i64 = 11_000;

/// Where the API reads the samples from (the alert evaluator owns it).
pub type HistorySource = Arc<dyn Fn() -> Arc<SampleStore> + Send + Sync>;

/// The query API capability.
pub struct PromApi {
    source: HistorySource,
    limits: QueryLimits,
    aborted: Option<CounterFamily>,
    access: AccessConfig,
}

impl PromApi {
    /// An API over the samples `source` returns, with the default query limits.
    pub fn new(source: HistorySource) -> Self {
        PromApi {
            source,
            limits: QueryLimits::default(),
            aborted: None,
            access: AccessConfig::default(),
        }
    }

    /// Applies `limits` to every query.
    pub fn with_limits(mut self, limits: QueryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Answers under `access`: the query API reads the same data as the
    /// metrics endpoint, so it follows the same token rule.
    pub fn with_access(mut self, access: AccessConfig) -> Self {
        self.access = access;
        self
    }

    /// Counts refused and stopped queries in `store`
    /// (`homeconsole_promql_queries_aborted_total{reason}`).
    pub fn with_metrics(mut self, store: &MetricStore) -> Self {
        self.aborted = store
            .register_counter(
                names::PROMQL_QUERIES_ABORTED_TOTAL,
                "Queries refused or stopped by a cost limit, by reason (too_long, too_deep, too_many_samples, timeout).",
                &["reason"],
            )
            .ok();
        self
    }

    /// The error answer for `e`, counted when a cost limit caused it.
    fn failed(&self, e: &PromqlError) -> HttpResponse {
        let reason = match e {
            PromqlError::Limit(m) if m.contains("max_query_length") => Some("too_long"),
            PromqlError::Limit(_) => Some("too_deep"),
            PromqlError::TooManySamples(_) => Some("too_many_samples"),
            PromqlError::Timeout => Some("timeout"),
            _ => None,
        };
        if let (Some(reason), Some(f)) = (reason, &self.aborted) {
            if let Ok(c) = f.with_labels(&[reason]) {
                c.inc();
            }
        }
        match e {
            PromqlError::Parse(_) | PromqlError::Limit(_) => bad(400, "bad_data", &e.to_string()),
            PromqlError::Timeout => bad(503, "timeout", &e.to_string()),
            PromqlError::TooManySamples(_) | PromqlError::Eval(_) => {
                bad(422, "execution", &e.to_string())
            }
        }
    }

    /// Checks, parses and runs `run` on the query thread within the limits.
    fn run<R: Send>(
        &self,
        query: &str,
        run: impl FnOnce(&crate::alerting::promql::Expr, &SampleStore, &Budget) -> Result<R, PromqlError>
            + Send,
    ) -> Result<R, PromqlError> {
        check_text(query, &self.limits)?;
        let samples = (self.source)();
        let limits = &self.limits;
        on_query_stack(|| {
            let budget = Budget::new(limits);
            let expr = parse_here(query, limits)?;
            run(&expr, &samples, &budget)
        })?
    }
}

fn ok(data: Value) -> HttpResponse {
    HttpResponse::json(200, &json!({"status": "success", "data": data}))
}

fn bad(status: u16, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"status": "error", "errorType": kind, "error": message}),
    )
}

/// Parses a Prometheus timestamp: Unix seconds (fractions allowed) or RFC 3339
/// is not supported here (Grafana and the dashboard send seconds).
fn parse_time(text: &str) -> Result<i64, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("cannot parse {text:?} to a valid timestamp"))?;
    if !secs.is_finite() || secs.abs() > 1e11 {
        return Err(format!("cannot parse {text:?} to a valid timestamp"));
    }
    Ok((secs * 1000.0).round() as i64)
}

/// Parses a step: seconds (`15`, `0.5`) or a duration (`15s`, `1m`).
fn parse_step(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs > 0.0 {
            return Ok(((secs * 1000.0).round() as i64).max(1));
        }
    }
    crate::alerting::syntax::parse_duration(t)
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("cannot parse {text:?} to a valid duration"))
}

fn labels_json(labels: &crate::alerting::samples::Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
    )
}

fn matrix_json(series: &[SeriesData]) -> Value {
    Value::Array(
        series
            .iter()
            .filter_map(|s| {
                let values: Vec<Value> = s
                    .samples
                    .iter()
                    .filter(|(_, v)| !is_stale_nan(*v))
                    .map(|(t, v)| json!([ms_f(*t), go_format_float(*v)]))
                    .collect();
                (!values.is_empty())
                    .then(|| json!({"metric": labels_json(&s.labels), "values": values}))
            })
            .collect(),
    )
}

fn ms_f(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// All request parameters: query string plus a form-encoded body (Grafana
/// sends POST forms), repeated keys kept.
fn params(request: &HttpRequest) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let body = std::str::from_utf8(&request.body).unwrap_or("");
    for source in [request.query.as_str(), body] {
        for pair in source.split('&').filter(|p| !p.is_empty()) {
            let (k, _) = pair.split_once('=').unwrap_or((pair, ""));
            let key = query_param(pair, &decode_key(k)).map(|v| (decode_key(k), v));
            if let Some(kv) = key {
                out.push(kv);
            }
        }
    }
    out
}

fn decode_key(k: &str) -> String {
    // query_param decodes values; decode the key the same way.
    query_param(&format!("k={k}"), "k").unwrap_or_default()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn selector_matchers(selector: &str) -> Result<Vec<Matcher>, String> {
    match promql_parser::parser::parse(selector) {
        Ok(promql_parser::parser::Expr::VectorSelector(vs)) => {
            let mut m = vs.matchers.matchers.clone();
            if let Some(name) = vs.name {
                m.push(Matcher::new(
                    promql_parser::label::MatchOp::Equal,
                    "__name__",
                    &name,
                ));
            }
            Ok(m)
        }
        Ok(_) => Err(format!(
            "match[] must be a series selector, got {selector:?}"
        )),
        Err(e) => Err(format!("invalid match[] {selector:?}: {e}")),
    }
}

impl PromApi {
    fn instant(&self, p: &[(String, String)]) -> HttpResponse {
        let Some(q) = param(p, "query") else {
            return bad(400, "bad_data", "missing query parameter");
        };
        let ts = match param(p, "time").map(parse_time).transpose() {
            Ok(t) => t.unwrap_or_else(now_ms_signed),
            Err(e) => return bad(400, "bad_data", &e),
        };
        match self.run(q, |expr, h, budget| eval_instant_in(expr, ts, h, budget)) {
            Ok(PromValue::Scalar(v)) => {
                ok(json!({"resultType": "scalar", "result": [ms_f(ts), go_format_float(v)]}))
            }
            Ok(PromValue::Vector(samples)) => ok(json!({
                "resultType": "vector",
                "result": samples.iter().map(|s| json!({"metric": labels_json(&s.labels), "value": [ms_f(ts), go_format_float(s.value)]})).collect::<Vec<_>>(),
            })),
            Ok(PromValue::Matrix(series)) => {
                ok(json!({"resultType": "matrix", "result": matrix_json(&series)}))
            }
            Ok(PromValue::String(v)) => {
                ok(json!({"resultType": "string", "result": [ms_f(ts), v]}))
            }
            Err(e) => self.failed(&e),
        }
    }

    fn range(&self, p: &[(String, String)]) -> HttpResponse {
        let Some(q) = param(p, "query") else {
            return bad(400, "bad_data", "missing query parameter");
        };
        let (start, end, step) = match (
            param(p, "start").map(parse_time),
            param(p, "end").map(parse_time),
            param(p, "step").map(parse_step),
        ) {
            (Some(Ok(s)), Some(Ok(e)), Some(Ok(st))) => (s, e, st),
            (Some(Err(e)), _, _) | (_, Some(Err(e)), _) | (_, _, Some(Err(e))) => {
                return bad(400, "bad_data", &e)
            }
            _ => return bad(400, "bad_data", "query_range needs start, end and step"),
        };
        if end < start {
            return bad(
                400,
                "bad_data",
                "end timestamp must not be before start time",
            );
        }
        if (end - start) / step > MAX_POINTS {
            return bad(400, "bad_data", "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
        }
        match self.run(q, |expr, h, budget| {
            eval_range_in(expr, start, end, step, h, budget)
        }) {
            Ok(series) => ok(json!({"resultType": "matrix", "result": matrix_json(&series)})),
            Err(e) => self.failed(&e),
        }
    }

    fn window(p: &[(String, String)]) -> Result<(i64, i64), String> {
        let end = param(p, "end")
            .map(parse_time)
            .transpose()?
            .unwrap_or_else(now_ms_signed);
        let start = param(p, "start")
            .map(parse_time)
            .transpose()?
            .unwrap_or(i64::MIN / 2);
        Ok((start, end))
    }

    fn selected(&self, p: &[(String, String)]) -> Result<Vec<SeriesData>, String> {
        let (start, end) = Self::window(p)?;
        let selectors: Vec<&str> = p
            .iter()
            .filter(|(k, _)| k == "match[]")
            .map(|(_, v)| v.as_str())
            .collect();
        let selectors = if selectors.is_empty() {
            vec!["{__name__=~\".+\"}"]
        } else {
            selectors
        };
        let mut seen = BTreeMap::new();
        for sel in selectors {
            for s in (self.source)().select(&selector_matchers(sel)?, start, end) {
                if s.samples.iter().any(|(_, v)| !is_stale_nan(*v)) {
                    seen.insert(format!("{:?}", s.labels.pairs()), s);
                }
            }
        }
        Ok(seen.into_values().collect())
    }

    fn series(&self, p: &[(String, String)]) -> HttpResponse {
        if !p.iter().any(|(k, _)| k == "match[]") {
            return bad(400, "bad_data", "no match[] parameter provided");
        }
        match self.selected(p) {
            Ok(series) => ok(Value::Array(
                series.iter().map(|s| labels_json(&s.labels)).collect(),
            )),
            Err(e) => bad(400, "bad_data", &e),
        }
    }

    fn labels(&self, p: &[(String, String)]) -> HttpResponse {
        match self.selected(p) {
            Ok(series) => {
                let names: BTreeSet<&str> = series
                    .iter()
                    .flat_map(|s| s.labels.iter().map(|(k, _)| k))
                    .collect();
                ok(json!(names))
            }
            Err(e) => bad(400, "bad_data", &e),
        }
    }

    fn label_values(&self, name: &str, p: &[(String, String)]) -> HttpResponse {
        match self.selected(p) {
            Ok(series) => {
                let values: BTreeSet<&str> =
                    series.iter().filter_map(|s| s.labels.get(name)).collect();
                ok(json!(values))
            }
            Err(e) => bad(400, "bad_data", &e),
        }
    }
}

impl Capability for PromApi {
    fn name(&self) -> &'static str {
        "prometheus_api"
    }

    fn routes(&self) -> Vec<Route> {
        vec![
            Route::new("GET", "/api/v1/monitoring/prometheus/api/v1/{*rest}"),
            Route::new("POST", "/api/v1/monitoring/prometheus/api/v1/{*rest}"),
        ]
    }

    fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
        if request.path.starts_with(QUERY_API) {
            if let Err(refused) =
                require_metrics_token(&self.access, request, "this metrics endpoint")
            {
                return Some(refused);
            }
        }
        let rest = request.path.as_str().strip_prefix(PREFIX)?;
        let p = params(request);
        Some(match rest {
            "query" => self.instant(&p),
            "query_range" => self.range(&p),
            "series" => self.series(&p),
            "labels" => self.labels(&p),
            "status/buildinfo" => ok(
                json!({"version": "2.42.0", "revision": "homeconsole-monitoring", "branch": "embedded",
                                            "buildUser": "", "buildDate": "", "goVersion": "n/a"}),
            ),
            other => match other
                .strip_prefix("label/")
                .and_then(|r| r.strip_suffix("/values"))
            {
                Some(name) => self.label_values(name, &p),
                None => bad(
                    404,
                    "not_found",
                    &format!("unknown Prometheus API endpoint {other:?}"),
                ),
            },
        })
    }

    fn status(&self) -> Value {
        let s = (self.source)().stats();
        json!({"history_series": s.series, "history_samples": s.samples})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::samples::{Sample, SampleStoreConfig};

    fn api() -> PromApi {
        let h = Arc::new(SampleStore::new(SampleStoreConfig::default()));
        for i in 0..5 {
            h.ingest(
                i * 15_000,
                &[Sample {
                    name: "x_total".into(),
                    labels: vec![("job".into(), "a".into())],
                    value: (i * 10) as f64,
                }],
            );
        }
        PromApi::new(Arc::new(move || h.clone()))
    }

    fn req(path: &str, query: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: format!("{PREFIX}{path}").into(),
            query: query.into(),
            ..Default::default()
        }
    }

    fn body(r: &HttpResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn instant_range_series_labels() {
        let a = api();
        let r = a
            .handle_http(&req("query", "query=rate(x_total%5B1m%5D)&time=60"))
            .unwrap();
        let v = body(&r);
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["data"]["resultType"], "vector");
        assert_eq!(v["data"]["result"][0]["metric"]["job"], "a");
        let r = a
            .handle_http(&req("query_range", "query=x_total&start=0&end=60&step=15"))
            .unwrap();
        let v = body(&r);
        assert_eq!(
            v["data"]["result"][0]["values"].as_array().unwrap().len(),
            5,
            "{v}"
        );
        assert_eq!(v["data"]["result"][0]["values"][4][1], "40");
        let v = body(
            &a.handle_http(&req("series", "match[]=x_total&start=0&end=60"))
                .unwrap(),
        );
        assert_eq!(v["data"][0]["__name__"], "x_total");
        let v = body(&a.handle_http(&req("labels", "start=0&end=60")).unwrap());
        assert_eq!(v["data"], json!(["__name__", "job"]));
        let v = body(
            &a.handle_http(&req("label/job/values", "start=0&end=60"))
                .unwrap(),
        );
        assert_eq!(v["data"], json!(["a"]));
        let v = body(&a.handle_http(&req("query", "query=1%2B1")).unwrap());
        assert_eq!(v["data"]["resultType"], "scalar");
    }

    #[test]
    fn subqueries_and_modifiers_in_range_queries() {
        let a = api();
        for q in [
            "max_over_time(x_total%5B1m%3A1s%5D)",
            "x_total%20%40%20end()",
            "topk(1%2C%20x_total)",
        ] {
            let v = body(
                &a.handle_http(&req(
                    "query_range",
                    &format!("query={q}&start=0&end=60&step=15"),
                ))
                .unwrap(),
            );
            assert!(
                !v["data"]["result"].as_array().unwrap().is_empty(),
                "{q}: {v}"
            );
        }
    }

    #[test]
    fn errors_are_prometheus_shaped() {
        let a = api();
        let r = a
            .handle_http(&req("query", "query=sort_by_label(x_total,%22a%22)"))
            .unwrap();
        assert_eq!(r.status, 400);
        let v = body(&r);
        assert_eq!(v["status"], "error");
        assert!(
            v["error"].as_str().unwrap().contains("sort_by_label"),
            "{v}"
        );
        assert_eq!(
            a.handle_http(&req("query_range", "query=x_total&start=0&end=60"))
                .unwrap()
                .status,
            400
        );
        assert_eq!(
            a.handle_http(&req(
                "query_range",
                "query=x_total&start=0&end=100000000&step=1"
            ))
            .unwrap()
            .status,
            400
        );
        assert_eq!(a.handle_http(&req("series", "")).unwrap().status, 400);
        assert_eq!(a.handle_http(&req("nope", "")).unwrap().status, 404);
        assert_eq!(
            a.handle_http(&req("query", "time=abc&query=1"))
                .unwrap()
                .status,
            400
        );
    }
}
