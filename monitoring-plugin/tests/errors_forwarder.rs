//! Forwarder against a local HTTP sink (std TcpListener on 127.0.0.1:0).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monitoring_plugin::error_tracking::envelope::parse_envelope;
use monitoring_plugin::error_tracking::protocol::from_sentry_event;
use monitoring_plugin::error_tracking::{
    Dsn, ErrorEvent, Forwarder, ForwarderConfig, Frame, Level,
};

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Scripted responses: (status, extra headers, delay). When the script is
/// empty the sink answers 200.
type Script = VecDeque<(u16, Vec<(&'static str, String)>, Duration)>;

struct Sink {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(script: Script) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(Mutex::new(script));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, script) = (r.clone(), script.clone());
                        std::thread::spawn(move || serve(conn, &r, &script));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Sink {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn dsn(&self) -> Dsn {
        format!("http://testkey@127.0.0.1:{}/42", self.port)
            .parse()
            .unwrap()
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, received: &Mutex<Vec<Received>>, script: &Mutex<Script>) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received.lock().unwrap().push(Received {
            path,
            headers,
            body,
        });
        let (status, extra, delay) =
            script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((200, Vec::new(), Duration::ZERO));
        std::thread::sleep(delay);
        let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n");
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
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

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

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

fn decode(r: &Received) -> ErrorEvent {
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut body)
        .unwrap();
    let env = parse_envelope(&body, 10).unwrap();
    assert_eq!(env.items.len(), 1);
    assert_eq!(env.items[0].item_type, "event");
    assert!(env.header["sent_at"].is_string());
    let payload: serde_json::Value = serde_json::from_slice(&env.items[0].payload).unwrap();
    from_sentry_event(&payload, "42").unwrap()
}

#[test]
fn sends_gzipped_envelope_with_auth() {
    let sink = Sink::start(Script::new());
    let mut fwd = Forwarder::start(config(sink.dsn())).unwrap();
    let original = event("disk gone");
    assert!(fwd.send(original.clone()));
    wait_for("sent", || fwd.stats().sent == 1);
    fwd.stop();
    let got = sink.received();
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
    let sink = Sink::start(Script::from([(
        429,
        vec![("Retry-After", "1".to_string())],
        Duration::ZERO,
    )]));
    let mut fwd = Forwarder::start(config(sink.dsn())).unwrap();
    fwd.send(event("a"));
    wait_for("429", || fwd.stats().rate_limited == 1);
    for _ in 0..3 {
        fwd.send(event("during pause"));
    }
    wait_for("paused drops", || fwd.stats().rate_limited == 4);
    assert_eq!(sink.received().len(), 1, "no request while paused");
    std::thread::sleep(Duration::from_millis(1100));
    fwd.send(event("after pause"));
    wait_for("sent after pause", || fwd.stats().sent == 1);
    fwd.stop();
    let s = fwd.stats();
    assert_eq!((s.sent, s.rate_limited, s.failed, s.retries), (1, 4, 0, 0));
    assert_eq!(sink.received().len(), 2);
}

#[test]
fn honours_sentry_rate_limit_categories() {
    let sink = Sink::start(Script::from([
        (
            200,
            vec![(
                "X-Sentry-Rate-Limits",
                "60:transaction:organization".to_string(),
            )],
            Duration::ZERO,
        ),
        (
            429,
            vec![(
                "X-Sentry-Rate-Limits",
                "60:error:organization, 2700:default:organization".to_string(),
            )],
            Duration::ZERO,
        ),
    ]));
    let mut fwd = Forwarder::start(config(sink.dsn())).unwrap();
    fwd.send(event("1"));
    wait_for("first", || fwd.stats().sent == 1);
    fwd.send(event("2")); // transaction limit does not pause errors
    wait_for("second", || fwd.stats().rate_limited == 1);
    fwd.send(event("3"));
    wait_for("third dropped", || fwd.stats().rate_limited == 2);
    fwd.stop();
    assert_eq!(sink.received().len(), 2);
}

#[test]
fn retries_5xx_with_backoff() {
    let sink = Sink::start(Script::from([
        (503, vec![], Duration::ZERO),
        (502, vec![], Duration::ZERO),
    ]));
    let mut fwd = Forwarder::start(config(sink.dsn())).unwrap();
    fwd.send(event("flaky"));
    wait_for("sent", || fwd.stats().sent == 1);
    fwd.stop();
    assert_eq!(fwd.stats().retries, 2);
    assert_eq!(sink.received().len(), 3);
    let ids: Vec<String> = sink.received().iter().map(|r| decode(r).event_id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "retries resend the same event"
    );
}

#[test]
fn client_errors_fail_without_retry_and_network_errors_give_up() {
    let sink = Sink::start(Script::from([(400, vec![], Duration::ZERO)]));
    let mut fwd = Forwarder::start(config(sink.dsn())).unwrap();
    fwd.send(event("bad"));
    wait_for("failed", || fwd.stats().failed == 1);
    fwd.stop();
    assert_eq!(fwd.stats().retries, 0);

    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dsn: Dsn = format!("http://k@127.0.0.1:{port}/1").parse().unwrap();
    let mut fwd = Forwarder::start(ForwarderConfig {
        max_retries: 2,
        ..config(dsn)
    })
    .unwrap();
    fwd.send(event("nowhere"));
    wait_for("gave up", || fwd.stats().failed == 1);
    fwd.stop();
    assert_eq!(fwd.stats().retries, 2);
}

#[test]
fn full_queue_drops_without_blocking_and_stop_joins() {
    let slow = Duration::from_millis(500);
    let sink = Sink::start(Script::from([(200, vec![], slow), (200, vec![], slow)]));
    let mut fwd = Forwarder::start(ForwarderConfig {
        queue_capacity: 2,
        shutdown_timeout: Duration::from_millis(100),
        ..config(sink.dsn())
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
