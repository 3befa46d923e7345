//! The list of the plugin's capabilities, and the wiring between them. Only
//! the root module imports this file, so no capability depends on another
//! through it.

use std::sync::Arc;

use plugin_abi::PluginError;

use crate::alerting::capability::Alerting;
use crate::alerting::query_api::PromApi;
use crate::capability::{Capability, Ctx};
use crate::dashboard::capability::Dashboard;
use crate::error_tracking::capability::Errors;
use crate::health::capability::Health;
use crate::metrics::capability::Metrics;
use crate::metrics::remote_write::capability::RemoteWrite;
use crate::profiling::capability::Profiling;
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
        Arc::new(Errors::new(ctx)?),
        Arc::new(TracingCapability::new(ctx)?),
        Arc::new(Profiling::new(ctx)),
        Arc::new(RemoteWrite::new(ctx)?),
        health.clone(),
    ];
    health.notify_rounds_to(&all);
    Ok(all)
}
