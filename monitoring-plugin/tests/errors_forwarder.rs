//! Forwarder against a local HTTP sink (`test_support::RecordingPeer` on 127.0.0.1:0).

use std::time::{Duration, Instant};

use test_support::{closed_port, wait_until, RecordingPeer, Reply, Request};

use monitoring_plugin::error_tracking::envelope::parse_envelope;
use monitoring_plugin::error_tracking::protocol::from_sentry_event;
use monitoring_plugin::error_tracking::{
    Dsn, ErrorEvent, Forwarder, ForwarderConfig, Frame, Level,
};

/// A Sentry stand-in answering `replies` in turn, then 200.
fn sink(replies: Vec<Reply>) -> RecordingPeer {
    RecordingPeer::builder().replies(replies).start()
}

/// The DSN of project 42 on `sink`.
fn dsn(sink: &RecordingPeer) -> Dsn {
    format!("http://testkey@127.0.0.1:{}/42", sink.port())
        .parse()
        .unwrap()
}

fn config(dsn: Dsn) -> ForwarderConfig {
    ForwarderConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(3),
        client_version: "9.9.9".into(),
        ..ForwarderConfig::new(dsn)
    }
}

/// Generous: the test machines are shared and often heavily loaded.
const WAIT: Duration = Duration::from_secs(10);

fn event(msg: &str) -> ErrorEvent {
    let mut e = ErrorEvent::exception(
        "weather",
        "IoError",
        msg,
        vec![Frame {
            function: Some("poll".into()),
            in_app: Some(true),
            ..Frame::default()
        }],
    );
    e.level = Level::Fatal;
    e.tags.insert("room".into(), "kitchen".into());
    e
}

fn decode(r: &Request) -> ErrorEvent {
    let body = r.decoded_body();
    let env = parse_envelope(&body, 10).unwrap();
    assert_eq!(env.items.len(), 1);
    assert_eq!(env.items[0].item_type, "event");
    assert!(env.header["sent_at"].is_string());
    let payload: serde_json::Value = serde_json::from_slice(&env.items[0].payload).unwrap();
    from_sentry_event(&payload, "42").unwrap()
}

#[test]
fn sends_gzipped_envelope_with_auth() {
    let sink = sink(vec![]);
    let mut fwd = Forwarder::start(config(dsn(&sink))).unwrap();
    let original = event("disk gone");
    assert!(fwd.send(original.clone()));
    wait_until("sent", WAIT, || fwd.stats().sent == 1);
    fwd.stop();
    let got = sink.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/api/42/envelope/");
    assert_eq!(
        r.header("x-sentry-auth"),
        Some("Sentry sentry_key=testkey, sentry_version=7, sentry_client=homeconsole-monitoring/9.9.9")
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/x-sentry-envelope")
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let back = decode(r);
    assert_eq!(back.event_id, original.event_id);
    assert_eq!(back.exception, original.exception);
    assert_eq!(back.level, Level::Fatal);
    assert_eq!(back.plugin, "weather");
    assert_eq!(back.tags["room"], "kitchen");
    assert_eq!(back.timestamp, original.timestamp);
}

#[test]
fn honours_429_retry_after() {
    let sink = sink(vec![Reply::status(429).header("Retry-After", "1")]);
    let mut fwd = Forwarder::start(config(dsn(&sink))).unwrap();
    fwd.send(event("a"));
    wait_until("429", WAIT, || fwd.stats().rate_limited == 1);
    for _ in 0..3 {
        fwd.send(event("during pause"));
    }
    wait_until("paused drops", WAIT, || fwd.stats().rate_limited == 4);
    assert_eq!(sink.requests().len(), 1, "no request while paused");
    std::thread::sleep(Duration::from_millis(1100));
    fwd.send(event("after pause"));
    wait_until("sent after pause", WAIT, || fwd.stats().sent == 1);
    fwd.stop();
    let s = fwd.stats();
    assert_eq!((s.sent, s.rate_limited, s.failed, s.retries), (1, 4, 0, 0));
    assert_eq!(sink.requests().len(), 2);
}

#[test]
fn honours_sentry_rate_limit_categories() {
    let sink = sink(vec![
        Reply::ok().header("X-Sentry-Rate-Limits", "60:transaction:organization"),
        Reply::status(429).header(
            "X-Sentry-Rate-Limits",
            "60:error:organization, 2700:default:organization",
        ),
    ]);
    let mut fwd = Forwarder::start(config(dsn(&sink))).unwrap();
    fwd.send(event("1"));
    wait_until("first", WAIT, || fwd.stats().sent == 1);
    fwd.send(event("2")); // transaction limit does not pause errors
    wait_until("second", WAIT, || fwd.stats().rate_limited == 1);
    fwd.send(event("3"));
    wait_until("third dropped", WAIT, || fwd.stats().rate_limited == 2);
    fwd.stop();
    assert_eq!(sink.requests().len(), 2);
}

#[test]
fn retries_5xx_with_backoff() {
    let sink = sink(vec![Reply::status(503), Reply::status(502)]);
    let mut fwd = Forwarder::start(config(dsn(&sink))).unwrap();
    fwd.send(event("flaky"));
    wait_until("sent", WAIT, || fwd.stats().sent == 1);
    fwd.stop();
    assert_eq!(fwd.stats().retries, 2);
    assert_eq!(sink.requests().len(), 3);
    let ids: Vec<String> = sink.requests().iter().map(|r| decode(r).event_id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "retries resend the same event"
    );
}

#[test]
fn client_errors_fail_without_retry_and_network_errors_give_up() {
    let sink = sink(vec![Reply::status(400)]);
    let mut fwd = Forwarder::start(config(dsn(&sink))).unwrap();
    fwd.send(event("bad"));
    wait_until("failed", WAIT, || fwd.stats().failed == 1);
    fwd.stop();
    assert_eq!(fwd.stats().retries, 0);

    // A port nobody listens on.
    let port = closed_port();
    let dsn: Dsn = format!("http://k@127.0.0.1:{port}/1").parse().unwrap();
    let mut fwd = Forwarder::start(ForwarderConfig {
        max_retries: 2,
        ..config(dsn)
    })
    .unwrap();
    fwd.send(event("nowhere"));
    wait_until("gave up", WAIT, || fwd.stats().failed == 1);
    fwd.stop();
    assert_eq!(fwd.stats().retries, 2);
}

#[test]
fn full_queue_drops_without_blocking_and_stop_joins() {
    let slow = Duration::from_millis(500);
    let sink = sink(vec![Reply::ok().after(slow), Reply::ok().after(slow)]);
    let mut fwd = Forwarder::start(ForwarderConfig {
        queue_capacity: 2,
        shutdown_timeout: Duration::from_millis(100),
        ..config(dsn(&sink))
    })
    .unwrap();
    let started = Instant::now();
    let accepted = (0..50)
        .filter(|i| fwd.send(event(&format!("e{i}"))))
        .count();
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "send never blocks"
    );
    assert!(accepted <= 3, "accepted {accepted}");
    assert_eq!(fwd.stats().dropped, 50 - accepted as u64);
    let stopping = Instant::now();
    fwd.stop();
    assert!(stopping.elapsed() < Duration::from_secs(4));
    fwd.stop(); // idempotent
    assert!(!fwd.send(event("after stop")));
    let s = fwd.stats();
    assert_eq!(s.sent + s.dropped + s.failed, 51, "{s:?}");
}
