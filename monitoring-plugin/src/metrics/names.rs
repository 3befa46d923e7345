//! Every metric name the plugin exports, in one place (the documentation
//! test `tests/e2e/docs.rs` checks each is described in `docs/MONITORING.md`).

/// Events published on the bus, by topic.
pub const EVENTS_TOTAL: &str = "homeconsole_events_total";
/// Service calls by service and status.
pub const SERVICE_CALLS_TOTAL: &str = "homeconsole_service_calls_total";
/// Service call latency.
pub const SERVICE_CALL_DURATION: &str = "homeconsole_service_call_duration_seconds";
/// Storage operations by operation and namespace.
pub const STORAGE_OPERATIONS_TOTAL: &str = "homeconsole_storage_operations_total";
/// Storage operation latency.
pub const STORAGE_OPERATION_DURATION: &str = "homeconsole_storage_operation_duration_seconds";
/// Number of plugins loaded (loaded or started).
pub const PLUGINS_LOADED: &str = "homeconsole_plugins_loaded";
/// Plugin state: 1 started, 0 stopped or loaded, -1 error.
pub const PLUGIN_STATE: &str = "homeconsole_plugin_state";
/// Build information.
pub const BUILD_INFO: &str = "homeconsole_build_info";
/// Health per component: 1 healthy, 0.5 degraded, 0 unhealthy.
pub const HEALTH_STATUS: &str = "homeconsole_health_status";
/// Duration of the last health check per component.
pub const HEALTH_CHECK_DURATION: &str = "homeconsole_health_check_duration_seconds";
/// Event deliveries dropped because a subscriber's queue was full.
pub const EVENT_DELIVERIES_DROPPED_TOTAL: &str = "homeconsole_event_deliveries_dropped_total";
/// Event delivery latency (queue wait + handler) per subscriber.
pub const EVENT_DELIVERY_DURATION: &str = "homeconsole_event_delivery_duration_seconds";
/// Errors by plugin and level.
pub const ERRORS_TOTAL: &str = "homeconsole_errors_total";
/// Latency of the host's HTTP API, by route and method.
pub const HTTP_REQUEST_DURATION: &str = "homeconsole_http_request_duration_seconds";
/// Samples pushed with Prometheus remote_write, by result.
pub const REMOTE_WRITE_SAMPLES_TOTAL: &str = "homeconsole_remote_write_samples_total";
/// Observer reports processed by the monitoring plugin.
pub const OBSERVATIONS_TOTAL: &str = "homeconsole_monitoring_observations_total";
/// Observer reports dropped by the host because the queue was full.
pub const OBSERVATIONS_DROPPED_TOTAL: &str = "homeconsole_monitoring_observations_dropped_total";
/// record_metric refusals by reason.
pub const RECORD_REFUSALS_TOTAL: &str = "homeconsole_monitoring_record_refusals_total";
/// Duration of the previous scrape.
pub const SCRAPE_DURATION: &str = "homeconsole_monitoring_scrape_duration_seconds";
/// Series exported by the plugin's own store.
pub const SERIES: &str = "homeconsole_monitoring_series";
/// Pending and firing alerts (one series per alert, value 1; labels vary per alert).
pub const ALERTS: &str = "homeconsole_alerts";
/// Alert notifications by notifier and result (sent, failed, dropped).
pub const ALERT_NOTIFICATIONS_TOTAL: &str = "homeconsole_alert_notifications_total";
/// Duration of the latest alert evaluation tick.
pub const ALERT_EVALUATION_DURATION: &str = "homeconsole_alert_evaluation_duration_seconds";
/// Alert and recording rules by health of their latest evaluation.
pub const ALERT_RULES: &str = "homeconsole_alert_rules";
/// Rule-file problems found at the latest (re)load.
pub const ALERT_RULE_LOAD_ERRORS: &str = "homeconsole_alert_rule_load_errors";
/// Series held in the alerting sample history.
pub const ALERT_HISTORY_SERIES: &str = "homeconsole_alert_history_series";
/// Spans kept in the in-memory trace store.
pub const TRACE_SPANS_STORED_TOTAL: &str = "homeconsole_trace_spans_stored_total";
/// Spans not kept, by reason (`evicted`, `rejected`, `sampled_out`).
pub const TRACE_SPANS_DROPPED_TOTAL: &str = "homeconsole_trace_spans_dropped_total";
/// Spans handed to the OTLP exporter, by result (`exported`, `dropped`, `failed`).
pub const TRACE_EXPORT_SPANS_TOTAL: &str = "homeconsole_trace_export_spans_total";
/// Manual spans closed because they were not ended in time.
pub const TRACE_SPANS_TIMED_OUT_TOTAL: &str = "homeconsole_trace_spans_timed_out_total";

/// Seconds the host spent inside each plugin callback (from the host's own accounting).
pub const PLUGIN_CALLBACK_SECONDS_TOTAL: &str = "homeconsole_plugin_callback_seconds_total";
/// Plugin callbacks reported busy longer than the host's stall threshold.
pub const PLUGIN_STALLS_TOTAL: &str = "homeconsole_plugin_stalls_total";
/// A plugin's circuit breaker: 0 closed, 1 half-open, 2 open.
pub const PLUGIN_CIRCUIT_STATE: &str = "homeconsole_plugin_circuit_state";
/// Calls the host refused before they reached a plugin, by reason
/// (`circuit_open`, `bulkhead`, `call_depth`).
pub const PLUGIN_CALLS_REFUSED_TOTAL: &str = "homeconsole_plugin_calls_refused_total";
/// Service calls slower than `profiling.slow_call_ms`, by service.
pub const SLOW_SERVICE_CALLS_TOTAL: &str = "homeconsole_slow_service_calls_total";
/// PromQL queries refused or stopped by a cost limit, by reason.
pub const PROMQL_QUERIES_ABORTED_TOTAL: &str = "homeconsole_promql_queries_aborted_total";

/// Every `homeconsole_*` family name (docs and tests check against it).
pub const ALL: &[&str] = &[
    EVENTS_TOTAL,
    SERVICE_CALLS_TOTAL,
    SERVICE_CALL_DURATION,
    STORAGE_OPERATIONS_TOTAL,
    STORAGE_OPERATION_DURATION,
    PLUGINS_LOADED,
    PLUGIN_STATE,
    BUILD_INFO,
    HEALTH_STATUS,
    HEALTH_CHECK_DURATION,
    EVENT_DELIVERIES_DROPPED_TOTAL,
    EVENT_DELIVERY_DURATION,
    ERRORS_TOTAL,
    OBSERVATIONS_TOTAL,
    OBSERVATIONS_DROPPED_TOTAL,
    RECORD_REFUSALS_TOTAL,
    SCRAPE_DURATION,
    SERIES,
    ALERTS,
    ALERT_NOTIFICATIONS_TOTAL,
    ALERT_EVALUATION_DURATION,
    ALERT_RULES,
    ALERT_RULE_LOAD_ERRORS,
    ALERT_HISTORY_SERIES,
    TRACE_SPANS_STORED_TOTAL,
    TRACE_SPANS_DROPPED_TOTAL,
    TRACE_EXPORT_SPANS_TOTAL,
    TRACE_SPANS_TIMED_OUT_TOTAL,
    PLUGIN_CALLBACK_SECONDS_TOTAL,
    PLUGIN_STALLS_TOTAL,
    PLUGIN_CIRCUIT_STATE,
    PLUGIN_CALLS_REFUSED_TOTAL,
    SLOW_SERVICE_CALLS_TOTAL,
    PROMQL_QUERIES_ABORTED_TOTAL,
];
