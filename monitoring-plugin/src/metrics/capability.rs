//! The metrics capability: the one place the metrics touch the host. It
//! owns `monitoring.record_metric`, the scrape route `/metrics` (Prometheus
//! text or OpenMetrics, gzip when asked), `/exemplars`, and feeds the
//! [`MetricsCollector`](super::collector::MetricsCollector) from the
//! observer stream and the plugin life-cycle events.

use std::collections::BTreeMap;

use plugin_abi::{Event, HttpRequest, HttpResponse, Observation, PluginError, ServiceCall};
use serde::Deserialize;
use serde_json::{json, Value};

use super::names;
use super::{MetricKind, RecordRequest, PLUGIN_LABEL};
use crate::capability::{Capability, Ctx, Route};
use crate::http::{error, query_param, require_metrics_token, OPENMETRICS_TEXT, PROMETHEUS_TEXT};

const ROUTE_METRICS: &str = "/api/v1/monitoring/metrics";
const ROUTE_EXEMPLARS: &str = "/api/v1/monitoring/exemplars";

/// The kind of a `monitoring.record_metric` request without one (the
/// seed's `{name, value, labels}`): a gauge, set to the value.
const DEFAULT_KIND: &str = "gauge";

/// Histograms whose buckets carry exemplars.
const EXEMPLAR_METRICS: &[&str] = &[names::SERVICE_CALL_DURATION, names::HTTP_REQUEST_DURATION];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordInput {
    name: String,
    value: f64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// `counter`, `gauge` or `histogram`; the seed's shape `{name, value,
    /// labels}` has none and means "set to value": a gauge.
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    help: Option<String>,
}

/// Reads a `monitoring.record_metric` request: `{name, value, labels?,
/// kind?, help?}`, the kind [`DEFAULT_KIND`] when absent; the label
/// `plugin` is the caller's and may not be set.
fn parse_record(call: &ServiceCall<'_>) -> Result<RecordRequest, PluginError> {
    let input: RecordInput = serde_json::from_str(call.input)
        .map_err(|e| PluginError::bad_request(format!("invalid input for {}: {e}", call.name)))?;
    let kind = match input.kind.as_deref().unwrap_or(DEFAULT_KIND) {
        "counter" => MetricKind::Counter,
        "gauge" => MetricKind::Gauge,
        "histogram" => MetricKind::Histogram,
        other => {
            return Err(PluginError::bad_request(format!(
                "unknown metric kind {other:?}: use counter, gauge or histogram"
            )))
        }
    };
    if input.labels.contains_key(PLUGIN_LABEL) {
        return Err(PluginError::bad_request(
            "label \"plugin\" is reserved: it is set to the calling plugin's name",
        ));
    }
    let mut labels = input.labels;
    labels.insert(PLUGIN_LABEL.to_owned(), call.caller.to_owned());
    Ok(RecordRequest {
        name: input.name,
        value: input.value,
        labels,
        kind,
        help: input.help,
    })
}

/// The metrics capability.
pub struct Metrics {
    ctx: Ctx,
}

impl Metrics {
    /// The capability over the collector in `ctx`.
    pub fn new(ctx: &Ctx) -> Self {
        Metrics { ctx: ctx.clone() }
    }

    /// Refreshes gauges that mirror host state (plugins, observer drops).
    fn refresh_host_gauges(&self) {
        let host = &self.ctx.host;
        self.ctx.collector.update_plugins(&host.list_plugins());
        self.ctx
            .collector
            .sync_host_drops(host.host_counters().observer_dropped_total);
    }

    fn record_metric(&self, call: &ServiceCall<'_>) -> Result<Value, PluginError> {
        let request = parse_record(call)?;
        self.ctx
            .collector
            .store()
            .record(&request)
            .map_err(|e| PluginError::bad_request(format!("{} ({})", e, e.reason())))?;
        Ok(json!({"recorded": request.name}))
    }

    fn metrics(&self, request: &HttpRequest) -> HttpResponse {
        if let Err(refused) =
            require_metrics_token(&self.ctx.config.access, request, "this metrics endpoint")
        {
            return refused;
        }
        self.refresh_host_gauges();
        let collector = &self.ctx.collector;
        let accept = request.header("accept").unwrap_or("");
        let (content_type, body) = if accept.contains("application/openmetrics-text") {
            (OPENMETRICS_TEXT, collector.render_openmetrics())
        } else {
            (PROMETHEUS_TEXT, collector.render())
        };
        let gzip = request
            .header("accept-encoding")
            .unwrap_or("")
            .split(',')
            .any(|e| e.split(';').next().unwrap_or("").trim() == "gzip");
        if gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            if enc.write_all(body.as_bytes()).is_ok() {
                if let Ok(zipped) = enc.finish() {
                    return HttpResponse::new(200, content_type, zipped)
                        .with_header("content-encoding", "gzip")
                        .with_header("vary", "accept, accept-encoding");
                }
            }
        }
        HttpResponse::new(200, content_type, body.into_bytes())
            .with_header("vary", "accept, accept-encoding")
    }

    /// The latest exemplar of every bucket of a latency histogram
    /// (`?metric=`, default the service-call one), newest first: each links
    /// a latency to its trace (`/api/v1/monitoring/traces/{trace_id}`).
    /// Same access as `/metrics`.
    fn exemplars(&self, request: &HttpRequest) -> HttpResponse {
        if let Err(refused) =
            require_metrics_token(&self.ctx.config.access, request, "the exemplars endpoint")
        {
            return refused;
        }
        let metric = query_param(request.query.as_str(), "metric")
            .unwrap_or_else(|| names::SERVICE_CALL_DURATION.to_owned());
        if !EXEMPLAR_METRICS.contains(&metric.as_str()) {
            return error(
                400,
                "bad_request",
                &format!("metric must be one of {}", EXEMPLAR_METRICS.join(", ")),
            );
        }
        let list: Vec<Value> = self
            .ctx
            .collector
            .internal()
            .exemplars(&metric)
            .into_iter()
            .map(|(labels, le, e)| {
                json!({
                    "series": labels,
                    "le": if le.is_finite() { json!(le) } else { json!("+Inf") },
                    "value": e.value,
                    "timestamp_ms": e.timestamp_ms,
                    "trace_id": e.trace_id(),
                    "span_id": e.span_id(),
                })
            })
            .collect();
        HttpResponse::json(200, &json!({"metric": metric, "exemplars": list}))
    }
}

impl Capability for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn services(&self) -> Vec<(&'static str, &'static str)> {
        vec![(
            "monitoring.record_metric",
            "record a custom metric: {name, value, labels?, kind? (default gauge), help?}",
        )]
    }

    fn routes(&self) -> Vec<Route> {
        vec![
            Route::new("GET", ROUTE_METRICS),
            Route::new("GET", ROUTE_EXEMPLARS),
        ]
    }

    fn start(&self) -> Result<(), PluginError> {
        self.refresh_host_gauges();
        Ok(())
    }

    fn handle_service(&self, call: &ServiceCall<'_>) -> Option<Result<Value, PluginError>> {
        (call.name == "monitoring.record_metric").then(|| self.record_metric(call))
    }

    fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
        match request.path.as_str() {
            ROUTE_METRICS => Some(self.metrics(request)),
            ROUTE_EXEMPLARS => Some(self.exemplars(request)),
            _ => None,
        }
    }

    fn on_event(&self, event: &Event) {
        let topic = event.topic.as_str();
        if !topic.starts_with("internal.plugin.") {
            return;
        }
        if topic == "internal.plugin.stopped" {
            let payload: Value =
                serde_json::from_str(event.payload.as_str()).unwrap_or(Value::Null);
            if let Some(name) = payload["name"].as_str() {
                if name != crate::capability::PLUGIN_NAME {
                    self.ctx.collector.forget_plugin(name);
                }
            }
        }
        self.ctx
            .collector
            .update_plugins(&self.ctx.host.list_plugins());
    }

    fn on_observations(&self, batch: &[Observation]) {
        self.ctx.collector.observe(batch);
    }

    fn status_fields(&self) -> serde_json::Map<String, Value> {
        let mut fields = serde_json::Map::new();
        fields.insert(
            "series".into(),
            json!(self.ctx.collector.store().series_count()),
        );
        fields.insert(
            "metric_families".into(),
            json!(self.ctx.collector.host_family_names()),
        );
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<RecordRequest, PluginError> {
        parse_record(&ServiceCall {
            name: "monitoring.record_metric",
            input,
            caller: "demo",
            trace_context: None,
        })
    }

    #[test]
    fn the_seeds_shape_without_a_kind_records_a_gauge() {
        let r =
            parse(r#"{"name":"room_temperature_celsius","value":21.5,"labels":{"room":"hall"}}"#)
                .unwrap();
        assert_eq!(r.kind, MetricKind::Gauge);
        assert_eq!(r.value, 21.5);
        let labels: Vec<_> = r
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("plugin", "demo"), ("room", "hall")]);
        // Labels may be left out too.
        let r = parse(r#"{"name":"queue_depth","value":3}"#).unwrap();
        assert_eq!(r.kind, MetricKind::Gauge);
    }

    #[test]
    fn an_explicit_kind_is_kept_and_an_unknown_one_refused() {
        for (kind, want) in [
            ("counter", MetricKind::Counter),
            ("gauge", MetricKind::Gauge),
            ("histogram", MetricKind::Histogram),
        ] {
            let input = format!(r#"{{"name":"x_total","value":1,"kind":"{kind}"}}"#);
            assert_eq!(parse(&input).unwrap().kind, want, "{kind}");
        }
        let e = parse(r#"{"name":"x","value":1,"kind":"summary"}"#).unwrap_err();
        assert_eq!(
            e.message.as_str(),
            "unknown metric kind \"summary\": use counter, gauge or histogram"
        );
        let e = parse(r#"{"name":"x","value":1,"labels":{"plugin":"other"}}"#).unwrap_err();
        assert!(e.message.contains("\"plugin\" is reserved"), "{e}");
    }
}
