//! Notifier tests against a local HTTP sink and, when installed, a real Alertmanager.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use test_support::{closed_port, require_binary, wait_until, Alertmanager, RecordingPeer, Reply};

use monitoring_plugin::alerting::engine::Notification;
use monitoring_plugin::alerting::notify::{Notifier, NotifierConfig, Target};
use monitoring_plugin::alerting::samples::Labels;

/// A sink answering `statuses` in turn (then 200), recording every request.
fn sink(statuses: &[u16]) -> (String, RecordingPeer) {
    let peer = RecordingPeer::builder()
        .replies(statuses.iter().map(|s| Reply::status(*s)).collect())
        .start();
    (peer.url(""), peer)
}

/// Generous: the test machines are shared and often heavily loaded.
const WAIT: Duration = Duration::from_secs(10);

fn note(name: &str, resolved: bool, now_ms: i64) -> Notification {
    Notification {
        labels: Labels::new(vec![
            ("alertname".into(), name.into()),
            ("severity".into(), "warning".into()),
        ]),
        annotations: vec![("summary".into(), "it broke".into())],
        starts_at_ms: now_ms - 60_000,
        ends_at_ms: if resolved { now_ms } else { now_ms + 240_000 },
        resolved,
        state_changed: true,
        generator_url: "http://localhost/graph?g0.expr=up".into(),
    }
}

#[test]
fn alertmanager_push_retries_on_503() {
    let (url, peer) = sink(&[503, 429]);
    let mut cfg = NotifierConfig::new(Target::Alertmanager { url });
    cfg.initial_backoff = Duration::from_millis(20);
    let n = Notifier::start("am", cfg).unwrap();
    assert!(n.notify(vec![note("A", false, 1_700_000_000_000)]));
    wait_until("sent after two retries", WAIT, || n.stats().sent == 1);
    let seen = peer.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].path, "/api/v2/alerts");
    let v = seen[2].json();
    assert_eq!(v[0]["labels"]["alertname"], "A");
    assert_eq!(v[0]["startsAt"], "2023-11-14T22:12:20.000Z");
    assert_eq!(v[0]["generatorURL"], "http://localhost/graph?g0.expr=up");
    n.stop();
}

#[test]
fn webhook_payload_v4_and_failures_counted() {
    let (url, peer) = sink(&[200, 400]);
    let mut cfg = NotifierConfig::new(Target::Webhook {
        url: format!("{url}/hook"),
        receiver: "r".into(),
    });
    cfg.initial_backoff = Duration::from_millis(10);
    let n = Notifier::start("hook", cfg).unwrap();
    n.notify(vec![
        note("A", false, 1_000_000),
        note("B", true, 1_000_000),
    ]);
    wait_until("2 sent", WAIT, || n.stats().sent == 2);
    n.notify(vec![note("C", false, 1_000_000)]);
    wait_until("1 failed", WAIT, || n.stats().failed == 1);
    let v = peer.requests()[0].json();
    assert_eq!(v["version"], "4");
    assert_eq!(v["receiver"], "r");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["alerts"][1]["status"], "resolved");
    assert_eq!(v["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(v["commonLabels"]["severity"], "warning");
    assert!(v["commonLabels"].get("alertname").is_none());
    assert_eq!(v["commonAnnotations"]["summary"], "it broke");
    for k in ["groupLabels", "externalURL", "groupKey", "truncatedAlerts"] {
        assert!(v.get(k).is_some(), "{k}");
    }
}

#[test]
fn full_queue_drops_and_counts() {
    // An address nothing listens on, long backoff: the worker is stuck retrying.
    let url = format!("http://127.0.0.1:{}", closed_port());
    let mut cfg = NotifierConfig::new(Target::Alertmanager { url });
    cfg.queue_capacity = 1;
    cfg.initial_backoff = Duration::from_secs(5);
    let n = Notifier::start("full", cfg).unwrap();
    let start = Instant::now();
    let accepted = (0..10)
        .filter(|_| n.notify(vec![note("A", false, 0)]))
        .count();
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "notify must not block"
    );
    assert!(accepted <= 2);
    assert!(n.stats().dropped >= 8);
    n.stop(); // must return promptly despite the backoff
}

#[test]
fn real_alertmanager_receives_pushed_alert() {
    require_binary!("prometheus-alertmanager");
    let am = Alertmanager::start(
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        &[],
    );
    am.wait_ready(Duration::from_secs(60));
    let base = am.url();
    let agent = ureq::Agent::new_with_defaults();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let n = Notifier::start(
        "real",
        NotifierConfig::new(Target::Alertmanager { url: base.clone() }),
    )
    .unwrap();
    n.notify(vec![note("HomeConsoleTest", false, now)]);
    wait_until("alert pushed", WAIT, || n.stats().sent == 1);
    let body = agent
        .get(format!("{base}/api/v2/alerts"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let a = v
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "HomeConsoleTest");
    let a = a.expect("pushed alert listed");
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(a["annotations"]["summary"], "it broke");
    // Resolve it: endsAt in the past.
    n.notify(vec![note("HomeConsoleTest", true, now - 1000)]);
    wait_until("resolution pushed", WAIT, || n.stats().sent == 2);
    n.stop();
}
