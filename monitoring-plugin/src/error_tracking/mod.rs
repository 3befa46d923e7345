//! Error tracking: Sentry-like grouped issues that speak the Sentry protocol.
//!
//! Why this exists: plugins fail in ways that logs alone do not make visible.
//! This module turns errors — reported by plugins through the host, or sent
//! by any program with a Sentry SDK — into *issues*: one per bug, with exact
//! counts, first/last seen, affected plugins and users, triage state, and a
//! few sample events with the breadcrumbs that led to them. Everything works
//! embedded (issues persist in host storage through [`crate::store::KvStore`]);
//! with a DSN configured, events are also forwarded to Sentry or GlitchTip.
//!
//! Pieces, one job each:
//! * [`event`] — the [`ErrorEvent`] model shared by every path;
//! * [`grouping`] — fingerprints and issue ids (algorithm documented there);
//! * [`issues`] — the persisted, bounded [`IssueStore`];
//! * [`breadcrumbs`] — per-plugin rings of recent activity;
//! * [`envelope`], [`protocol`], [`ingest`] — the Sentry wire format in;
//! * [`forwarder`] — the Sentry wire format out, from a background thread;
//! * [`memory_store`] — an in-memory `KvStore` for tests and storage-less runs;
//! * [`capability`] — the one part that touches the host: the `/errors` and
//!   Sentry ingest routes, the services, and the intake of error observations.
//!
//! [`ErrorTracker`] ties the engine together for the capability; timestamps
//! come from [`crate::time`].
//!
//! The folder is `error_tracking`, not `errors`: by Rust convention an
//! `errors` module holds a crate's error types, and this one holds a
//! capability (issues built from errors), so the name says what it does.

pub mod breadcrumbs;
pub mod capability;
pub mod envelope;
pub mod event;
pub mod forwarder;
pub mod grouping;
pub mod ingest;
pub mod issues;
pub mod memory_store;
pub mod protocol;

use parking_lot::Mutex;

pub use self::breadcrumbs::BreadcrumbRing;
pub use self::event::{Breadcrumb, ErrorEvent, EventSource, ExceptionInfo, Frame, Level};
pub use self::forwarder::{Dsn, Forwarder, ForwarderConfig, ForwarderStats};
pub use self::ingest::{IngestConfig, IngestError, IngestOutcome, IngestRequest};
pub use self::issues::{
    IgnoreUntil, Issue, IssueDetail, IssueError, IssueQuery, IssueSort, IssueStatus, IssueStore,
    IssueStoreConfig, RecordOutcome,
};
pub use self::memory_store::MemoryKvStore;

/// Bus topic to publish when [`RecordOutcome::new_issue`] is set.
pub const TOPIC_NEW_ISSUE: &str = "monitoring.error.new_issue";
/// Bus topic to publish when [`RecordOutcome::regression`] is set.
pub const TOPIC_REGRESSION: &str = "monitoring.error.regression";
/// Metric name for [`IssueStore::counts`].
pub const METRIC_ERRORS_TOTAL: &str = "homeconsole_errors_total";

/// Facade used by the plugin: captures, ingests, breadcrumbs and forwarding.
#[derive(Debug)]
pub struct ErrorTracker {
    issues: IssueStore,
    breadcrumbs: BreadcrumbRing,
    forwarder: Mutex<Option<Forwarder>>,
    host_version: Option<String>,
    environment: Option<String>,
    forward_ingested: bool,
}

impl ErrorTracker {
    /// A tracker over `issues`; `host_version` and `environment` fill events
    /// that lack them.
    pub fn new(
        issues: IssueStore,
        host_version: Option<String>,
        environment: Option<String>,
    ) -> Self {
        ErrorTracker {
            issues,
            breadcrumbs: BreadcrumbRing::default(),
            forwarder: Mutex::new(None),
            host_version,
            environment,
            forward_ingested: false,
        }
    }

    /// Keeps `capacity` breadcrumbs per plugin (default 50).
    pub fn with_breadcrumb_capacity(mut self, capacity: usize) -> Self {
        self.breadcrumbs = BreadcrumbRing::new(capacity);
        self
    }

    /// Also forward events received from Sentry SDKs (default: only
    /// captured ones, to avoid loops when both sides point at each other).
    pub fn set_forward_ingested(&mut self, forward: bool) {
        self.forward_ingested = forward;
    }

    /// Installs (or, with `None`, removes and stops) the forwarder.
    pub fn set_forwarder(&self, forwarder: Option<Forwarder>) {
        let old = std::mem::replace(&mut *self.forwarder.lock(), forwarder);
        if let Some(mut f) = old {
            f.stop();
        }
    }

    /// The issue store.
    pub fn issues(&self) -> &IssueStore {
        &self.issues
    }

    /// The breadcrumb rings.
    pub fn breadcrumbs(&self) -> &BreadcrumbRing {
        &self.breadcrumbs
    }

    /// Forwarder counters, when one is installed.
    pub fn forwarder_stats(&self) -> Option<ForwarderStats> {
        self.forwarder.lock().as_ref().map(Forwarder::stats)
    }

    /// Records one event: fills defaults (breadcrumbs of its plugin when it
    /// has none, host version, environment), stores it and forwards it.
    pub fn capture(&self, mut event: ErrorEvent) -> RecordOutcome {
        if event.breadcrumbs.is_empty() && event.source == EventSource::Captured {
            event.breadcrumbs = self.breadcrumbs.snapshot(&event.plugin);
        }
        if event.host_version.is_none() {
            event.host_version.clone_from(&self.host_version);
        }
        if event.environment.is_none() {
            event.environment.clone_from(&self.environment);
        }
        let forward = event.source == EventSource::Captured || self.forward_ingested;
        if forward {
            if let Some(f) = self.forwarder.lock().as_ref() {
                f.send(event.clone());
            }
        }
        self.issues.record(event)
    }

    /// Parses a Sentry ingest request and captures its events.
    pub fn ingest(
        &self,
        config: &IngestConfig,
        request: &IngestRequest<'_>,
    ) -> Result<Vec<RecordOutcome>, IngestError> {
        let outcome = ingest::parse_request(config, request)?;
        Ok(outcome
            .events
            .into_iter()
            .map(|e| self.capture(e))
            .collect())
    }

    /// Stops the forwarder thread, if any (call from the plugin's `stop`).
    pub fn stop(&self) {
        self.set_forwarder(None);
    }
}
