//! The list of the plugin's capabilities, and the wiring between them. Only
//! the root module imports this file, so no capability depends on another
//! through it.

use std::sync::Arc;

use plugin_abi::{PluginError, Sampler};

use crate::alerting::capability::Alerting;
use crate::alerting::query_api::PromApi;
use crate::capability::{Capability, Ctx};
use crate::dashboard::capability::Dashboard;
use crate::error_tracking::capability::Errors;
use crate::health::capability::Health;
use crate::metrics::capability::Metrics;
use crate::metrics::remote_write::capability::RemoteWrite;
use crate::profiling::capability::Profiling;
use crate::telemetry_provider::capability::TelemetryCapability;
use crate::telemetry_provider::Provider;
use crate::tracing::capability::TracingCapability;

/// Builds every capability, in the order callbacks reach them (and the
/// reverse of the order they stop in: health first, so no round runs while
/// the others stop).
pub fn build_all(ctx: &Ctx) -> Result<Vec<Arc<dyn Capability>>, PluginError> {
    // The alert evaluator owns the embedded sample store; the query API (and
    // the dashboard through it) reads the same samples.
    let alerting = Arc::new(Alerting::new(ctx));
    let samples_of = alerting.clone();
    let health = Arc::new(Health::new(ctx));
    let errors = Arc::new(Errors::new(ctx)?);
    let tracing = Arc::new(TracingCapability::new(ctx)?);
    let telemetry = Arc::new(TelemetryCapability::new(
        ctx.host.clone(),
        provider(ctx, &errors, &tracing),
    ));
    let all: Vec<Arc<dyn Capability>> = vec![
        Arc::new(Metrics::new(ctx)),
        alerting,
        Arc::new(
            PromApi::new(Arc::new(move || samples_of.samples()))
                .with_limits(ctx.config.query.clone())
                .with_metrics(ctx.collector.internal_store())
                .with_access(ctx.config.access.clone()),
        ),
        Arc::new(Dashboard),
        errors,
        tracing,
        Arc::new(Profiling::new(ctx)),
        Arc::new(RemoteWrite::new(ctx)?),
        telemetry,
        health.clone(),
    ];
    health.notify_rounds_to(&all);
    Ok(all)
}

/// The telemetry provider over the plugin's stores: the metric store
/// `monitoring.record_metric` feeds, the tracing capability's span sink,
/// the error tracker; new root spans follow the host's
/// `trace_sample_ratio`.
fn provider(ctx: &Ctx, errors: &Arc<Errors>, tracing: &TracingCapability) -> Provider {
    let ratio = ctx.host.host_info().trace_sample_ratio();
    let errors = errors.clone();
    Provider::new(
        ctx.collector.store().clone(),
        tracing.span_sink(),
        Arc::new(move |event| errors.capture_event(event)),
        Sampler::new(ratio),
    )
}
