//! Notifier tests against a local HTTP sink and, when installed, a real Alertmanager.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monitoring_plugin::alerting::engine::Notification;
use monitoring_plugin::alerting::notify::{Notifier, NotifierConfig, Target};
use monitoring_plugin::alerting::samples::Labels;

/// Serves `statuses` in turn (then 200), recording request bodies.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn sink(statuses: Vec<u16>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            seen2
                .lock()
                .unwrap()
                .push((path, String::from_utf8(body).unwrap()));
            let code = statuses.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (format!("http://{addr}"), seen)
}

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

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn alertmanager_push_retries_on_503() {
    let (url, seen) = sink(vec![503, 429]);
    let mut cfg = NotifierConfig::new(Target::Alertmanager { url });
    cfg.initial_backoff = Duration::from_millis(20);
    let n = Notifier::start("am", cfg).unwrap();
    assert!(n.notify(vec![note("A", false, 1_700_000_000_000)]));
    assert!(wait_for(|| n.stats().sent == 1), "{:?}", n.stats());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].0, "/api/v2/alerts");
    let v: serde_json::Value = serde_json::from_str(&seen[2].1).unwrap();
    assert_eq!(v[0]["labels"]["alertname"], "A");
    assert_eq!(v[0]["startsAt"], "2023-11-14T22:12:20.000Z");
    assert_eq!(v[0]["generatorURL"], "http://localhost/graph?g0.expr=up");
    n.stop();
}

#[test]
fn webhook_payload_v4_and_failures_counted() {
    let (url, seen) = sink(vec![200, 400]);
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
    assert!(wait_for(|| n.stats().sent == 2));
    n.notify(vec![note("C", false, 1_000_000)]);
    assert!(wait_for(|| n.stats().failed == 1), "{:?}", n.stats());
    let v: serde_json::Value = serde_json::from_str(&seen.lock().unwrap()[0].1).unwrap();
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
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
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

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn real_alertmanager_receives_pushed_alert() {
    if Command::new("prometheus-alertmanager")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus-alertmanager must be installed in CI"
        );
        println!("SKIPPED: prometheus-alertmanager is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _am = Kill(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let agent = ureq::Agent::new_with_defaults();
    assert!(
        wait_for(|| agent.get(format!("{base}/-/ready")).call().is_ok()),
        "alertmanager not ready"
    );
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
    assert!(wait_for(|| n.stats().sent == 1), "{:?}", n.stats());
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
    assert!(wait_for(|| n.stats().sent == 2));
    n.stop();
}
