//! The facade: breadcrumbs attach to captures of their plugin.

use std::sync::Arc;

use monitoring_plugin::error_tracking::{
    Breadcrumb, ErrorEvent, ErrorTracker, IssueStore, Level, MemoryKvStore,
};

#[test]
fn capture_attaches_plugin_breadcrumbs_and_defaults() {
    let kv = Arc::new(MemoryKvStore::new());
    let tracker = ErrorTracker::new(
        IssueStore::open(kv, Default::default()).unwrap(),
        Some("1.4.0".into()),
        Some("prod".into()),
    );
    tracker
        .breadcrumbs()
        .record("weather", Breadcrumb::log(Level::Info, "polling"));
    tracker.breadcrumbs().record(
        "weather",
        Breadcrumb::service_call("http.get", "error", 12.5),
    );
    tracker
        .breadcrumbs()
        .record("lights", Breadcrumb::event("lights.on"));
    let out = tracker.capture(ErrorEvent::message("weather", Level::Error, "poll failed"));
    assert!(out.new_issue);
    let detail = tracker.issues().get(&out.issue_id).unwrap().unwrap();
    let sample = &detail.samples[0];
    assert_eq!(sample.breadcrumbs.len(), 2);
    assert_eq!(sample.breadcrumbs[1].category, "service_call");
    assert_eq!(sample.host_version.as_deref(), Some("1.4.0"));
    assert_eq!(sample.environment.as_deref(), Some("prod"));
    assert_eq!(tracker.forwarder_stats(), None);
    tracker.stop();
}
