//! Issue store behaviour: grouping, status, retention, persistence.

use std::sync::Arc;

use monitoring_plugin::error_tracking::event::UserInfo;
use monitoring_plugin::error_tracking::{
    ErrorEvent, Frame, IgnoreUntil, IssueQuery, IssueSort, IssueStatus, IssueStore,
    IssueStoreConfig, Level, MemoryKvStore,
};
use monitoring_plugin::store::KvStore;

const T0: u64 = 1_700_000_000_000;
const MIN: u64 = 60_000;
const DAY: u64 = 86_400_000;

fn frame(function: &str, module: &str, line: u32) -> Frame {
    Frame {
        function: Some(function.into()),
        module: Some(module.into()),
        lineno: Some(line),
        in_app: Some(true),
        instruction_addr: Some(format!("0x{:x}", line * 4096)),
        ..Frame::default()
    }
}

fn bug(plugin: &str, line: u32, value: &str) -> ErrorEvent {
    ErrorEvent::exception(
        plugin,
        "std::io::Error",
        value,
        vec![
            frame("main", "app", 1),
            frame("poll_sensor", "weather::poll", line),
        ],
    )
}

fn open(kv: &Arc<MemoryKvStore>, config: IssueStoreConfig) -> IssueStore {
    IssueStore::open_at(kv.clone(), config, T0).unwrap()
}

#[test]
fn same_bug_twice_is_one_issue_two_bugs_two() {
    let kv = Arc::new(MemoryKvStore::new());
    let store = open(&kv, IssueStoreConfig::default());
    let a = store.record_at(bug("weather", 10, "timed out after 5023 ms"), T0);
    // Different line, address and number in the value: still the same bug.
    let b = store.record_at(bug("lights", 12, "timed out after 17 ms"), T0 + 1);
    assert!(a.new_issue && !b.new_issue);
    assert_eq!(a.issue_id, b.issue_id);
    assert_eq!(b.count, 2);
    let other = ErrorEvent::exception("weather", "ParseError", "x", vec![frame("parse", "w", 3)]);
    let c = store.record_at(other, T0 + 2);
    assert!(c.new_issue);
    assert_ne!(c.issue_id, a.issue_id);
    assert_eq!(store.len(), 2);
    let issue = store.get(&a.issue_id).unwrap().unwrap().issue;
    assert_eq!(issue.count, 2);
    assert_eq!(
        issue.plugins.iter().collect::<Vec<_>>(),
        ["lights", "weather"]
    );
    assert_eq!(issue.title, "std::io::Error: timed out after 5023 ms");
    assert_eq!(issue.culprit, "weather");
    assert_eq!((issue.first_seen, issue.last_seen), (T0, T0 + 1));
}

#[test]
fn messages_group_by_template() {
    let kv = Arc::new(MemoryKvStore::new());
    let store = open(&kv, IssueStoreConfig::default());
    let a = store.record_at(
        ErrorEvent::message("p", Level::Error, "timeout after 5023 ms on 0x7f3a9c..."),
        T0,
    );
    let b = store.record_at(
        ErrorEvent::message("p", Level::Error, "timeout after 17 ms on 0x55e1..."),
        T0,
    );
    let c = store.record_at(
        ErrorEvent::message("p", Level::Error, "disk full on /dev/sda1"),
        T0,
    );
    assert_eq!(a.issue_id, b.issue_id);
    assert_ne!(a.issue_id, c.issue_id);
}

#[test]
fn custom_fingerprint_overrides_and_extends() {
    let kv = Arc::new(MemoryKvStore::new());
    let store = open(&kv, IssueStoreConfig::default());
    let mut a = bug("p", 1, "x");
    a.fingerprint = Some(vec!["database-down".into()]);
    let mut b = ErrorEvent::message("q", Level::Fatal, "totally different");
    b.fingerprint = Some(vec!["database-down".into()]);
    let ra = store.record_at(a, T0);
    let rb = store.record_at(b, T0);
    assert_eq!(ra.issue_id, rb.issue_id);
    let mut c = bug("p", 1, "x");
    c.fingerprint = Some(vec!["{{ default }}".into(), "tenant-a".into()]);
    let mut d = bug("p", 1, "x");
    d.fingerprint = Some(vec!["{{ default }}".into(), "tenant-b".into()]);
    let plain = store.record_at(bug("p", 1, "x"), T0);
    let rc = store.record_at(c, T0);
    let rd = store.record_at(d, T0);
    assert!(rc.new_issue && rd.new_issue);
    assert_ne!(rc.issue_id, rd.issue_id);
    assert_ne!(rc.issue_id, plain.issue_id);
}

#[test]
fn resolved_issue_regresses_on_new_event() {
    let kv = Arc::new(MemoryKvStore::new());
    let store = open(&kv, IssueStoreConfig::default());
    let id = store.record_at(bug("p", 1, "x"), T0).issue_id;
    assert!(store.resolve_at(&id, T0 + 1).unwrap());
    assert_eq!(
        store.get(&id).unwrap().unwrap().issue.status,
        IssueStatus::Resolved
    );
    let again = store.record_at(bug("p", 1, "x"), T0 + 2);
    assert!(again.regression && !again.new_issue);
    let issue = store.get(&id).unwrap().unwrap().issue;
    assert_eq!(issue.status, IssueStatus::Unresolved);
    assert!(issue.regression);
    assert_eq!(issue.count, 2);
    let third = store.record_at(bug("p", 1, "x"), T0 + 3);
    assert!(
        !third.regression,
        "only the first event after resolve is the regression"
    );
    assert!(!store.resolve("nope").unwrap());
}

#[test]
fn ignore_until_n_more_events_and_until_time() {
    let kv = Arc::new(MemoryKvStore::new());
    let store = open(&kv, IssueStoreConfig::default());
    let id = store.record_at(bug("p", 1, "x"), T0).issue_id;
    store
        .ignore(&id, IgnoreUntil::Events { remaining: 3 })
        .unwrap();
    for i in 1..=2 {
        let o = store.record_at(bug("p", 1, "x"), T0 + i);
        assert!(o.ignored && !o.unignored, "event {i} stays ignored");
    }
    let o = store.record_at(bug("p", 1, "x"), T0 + 3);
    assert!(o.unignored && !o.ignored);
    let issue = store.get(&id).unwrap().unwrap().issue;
    assert_eq!(
        (issue.status, issue.count, issue.ignore_until),
        (IssueStatus::Unresolved, 4, None)
    );

    store
        .ignore(&id, IgnoreUntil::Time { until_ms: T0 + MIN })
        .unwrap();
    assert!(store.record_at(bug("p", 1, "x"), T0 + 10).ignored);
    assert!(store.record_at(bug("p", 1, "x"), T0 + MIN).unignored);

    store.ignore(&id, IgnoreUntil::Forever).unwrap();
    for i in 0..5 {
        assert!(store.record_at(bug("p", 1, "x"), T0 + 2 * MIN + i).ignored);
    }
    assert!(store.unresolve(&id).unwrap());
    assert_eq!(
        store.get(&id).unwrap().unwrap().issue.status,
        IssueStatus::Unresolved
    );
}

#[test]
fn sample_rate_limit_keeps_counts_exact() {
    let kv = Arc::new(MemoryKvStore::new());
    let config = IssueStoreConfig {
        samples_per_minute: 3,
        max_samples_per_issue: 5,
        ..IssueStoreConfig::default()
    };
    let store = open(&kv, config);
    let mut stored = 0;
    let mut last_id = String::new();
    for i in 0..100 {
        let mut e = bug("p", 1, "x");
        e.event_id = format!("{i:032x}");
        let o = store.record_at(e, T0 + i); // all inside one minute
        stored += usize::from(o.sample_stored);
        last_id = o.issue_id;
    }
    assert_eq!(stored, 3);
    let detail = store.get(&last_id).unwrap().unwrap();
    assert_eq!(detail.issue.count, 100);
    assert_eq!(detail.issue.samples_rate_limited, 97);
    assert_eq!(detail.samples.len(), 3);
    // Next minutes: more samples, capped at 5, keeping the first one.
    for i in 0..20u64 {
        let mut e = bug("p", 1, "x");
        e.event_id = format!("{:032x}", 1000 + i);
        store.record_at(e, T0 + MIN * (1 + i));
    }
    let detail = store.get(&last_id).unwrap().unwrap();
    assert_eq!(detail.issue.count, 120);
    let ids: Vec<&str> = detail.samples.iter().map(|s| s.event_id.as_str()).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[0], format!("{:032x}", 0));
    assert_eq!(ids[4], format!("{:032x}", 1019));
    assert_eq!(ids[1], format!("{:032x}", 1016));
}

#[test]
fn retention_evicts_lru_and_expires_old_issues() {
    let kv = Arc::new(MemoryKvStore::new());
    let config = IssueStoreConfig {
        max_issues: 3,
        max_age_days: 7,
        ..Default::default()
    };
    let store = open(&kv, config.clone());
    let mut ids = Vec::new();
    for i in 0..3u64 {
        let e = ErrorEvent::message(
            "p",
            Level::Error,
            format!("bug kind {}", ["a", "b", "c"][i as usize]),
        );
        ids.push(store.record_at(e, T0 + i).issue_id);
    }
    // Touch "a" so "b" is the least recently seen.
    store.record_at(
        ErrorEvent::message("p", Level::Error, "bug kind a"),
        T0 + 10,
    );
    let d = store.record_at(
        ErrorEvent::message("p", Level::Error, "bug kind d"),
        T0 + 11,
    );
    assert_eq!(d.evicted, vec![ids[1].clone()]);
    assert_eq!(store.len(), 3);
    assert!(store.get(&ids[1]).unwrap().is_none());
    assert_eq!(kv.get(&format!("issue/{}", ids[1])).unwrap(), None);
    assert_eq!(kv.get(&format!("samples/{}", ids[1])).unwrap(), None);
    assert_eq!(store.get(&ids[0]).unwrap().unwrap().issue.count, 2);

    // Keep "d" fresh; everything else ages out.
    store.record_at(
        ErrorEvent::message("p", Level::Error, "bug kind d"),
        T0 + 6 * DAY,
    );
    let expired = store.prune_at(T0 + 7 * DAY + 100);
    assert_eq!(expired.len(), 2);
    assert_eq!(store.len(), 1);
    assert_eq!(store.stats().expired, 2);
    assert_eq!(store.stats().evicted, 1);
    // Storage holds exactly one issue and one sample list.
    assert_eq!(kv.len(), 2);
}

#[test]
fn list_filters_sorts_and_pages() {
    let kv = Arc::new(MemoryKvStore::new());
    let store = open(&kv, IssueStoreConfig::default());
    for i in 0..10u64 {
        let level = if i % 2 == 0 {
            Level::Error
        } else {
            Level::Warning
        };
        let plugin = if i < 5 { "a" } else { "b" };
        let msg = format!("failure class {}", (b'a' + i as u8) as char);
        for _ in 0..=i {
            store.record_at(
                ErrorEvent::message(plugin, level, msg.clone()),
                T0 + 100 - i,
            );
        }
    }
    let all = store.list(&IssueQuery {
        limit: 100,
        ..Default::default()
    });
    assert_eq!(all.total, 10);
    assert!(all
        .issues
        .windows(2)
        .all(|w| w[0].last_seen >= w[1].last_seen));
    let by_count = store.list(&IssueQuery {
        sort: IssueSort::Count,
        limit: 3,
        ..Default::default()
    });
    assert_eq!(
        by_count.issues.iter().map(|i| i.count).collect::<Vec<_>>(),
        [10, 9, 8]
    );
    let page2 = store.list(&IssueQuery {
        sort: IssueSort::Count,
        offset: 3,
        limit: 3,
        ..Default::default()
    });
    assert_eq!(
        page2.issues.iter().map(|i| i.count).collect::<Vec<_>>(),
        [7, 6, 5]
    );
    let b_warn = store.list(&IssueQuery {
        plugin: Some("b".into()),
        level: Some(Level::Warning),
        ..Default::default()
    });
    assert_eq!(b_warn.total, 3);
    let id = all.issues[0].id.clone();
    store.resolve(&id).unwrap();
    let resolved = store.list(&IssueQuery {
        status: Some(IssueStatus::Resolved),
        ..Default::default()
    });
    assert_eq!(resolved.total, 1);
    assert!(store.delete(&id).unwrap());
    assert!(!store.delete(&id).unwrap());
    assert_eq!(store.len(), 9);

    let counts = store.counts();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 55);
    assert!(counts.contains(&(("a".to_string(), Level::Error), 1 + 3 + 5)));
}

#[test]
fn persists_across_reopen_with_samples_and_breadcrumbs() {
    let kv = Arc::new(MemoryKvStore::new());
    let id;
    {
        let store = open(&kv, IssueStoreConfig::default());
        let mut e = bug("p", 1, "x");
        e.breadcrumbs
            .push(monitoring_plugin::error_tracking::Breadcrumb::log(
                Level::Info,
                "before",
            ));
        e.user = Some(UserInfo {
            id: Some("u1".into()),
            ..UserInfo::default()
        });
        id = store.record_at(e, T0).issue_id;
        let mut e2 = bug("p", 1, "x");
        e2.user = Some(UserInfo {
            id: Some("u2".into()),
            ..UserInfo::default()
        });
        store.record_at(e2, T0 + 1);
        store
            .ignore(&id, IgnoreUntil::Events { remaining: 5 })
            .unwrap();
    }
    let store = IssueStore::open_at(kv.clone(), IssueStoreConfig::default(), T0 + 2).unwrap();
    let detail = store.get(&id).unwrap().unwrap();
    assert_eq!(detail.issue.count, 2);
    assert_eq!(detail.issue.users_affected, 2);
    assert_eq!(detail.issue.status, IssueStatus::Ignored);
    assert_eq!(
        detail.issue.ignore_until,
        Some(IgnoreUntil::Events { remaining: 5 })
    );
    assert_eq!(detail.samples.len(), 2);
    assert_eq!(
        detail.samples[0].breadcrumbs[0].message.as_deref(),
        Some("before")
    );
    // Same user again does not count twice, after restart too.
    let mut e3 = bug("p", 1, "x");
    e3.user = Some(UserInfo {
        id: Some("u1".into()),
        ..UserInfo::default()
    });
    let o = store.record_at(e3, T0 + 3);
    assert_eq!(o.count, 3);
    assert_eq!(store.get(&id).unwrap().unwrap().issue.users_affected, 2);
}

#[test]
fn reopen_skips_corrupt_entries_and_orphans() {
    let kv = Arc::new(MemoryKvStore::new());
    kv.set("issue/garbage", "{not json").unwrap();
    kv.set("samples/orphan", "[]").unwrap();
    let store = open(&kv, IssueStoreConfig::default());
    assert_eq!(store.stats().load_errors, 1);
    assert!(store.is_empty());
    assert_eq!(kv.get("samples/orphan").unwrap(), None);
}

#[test]
fn storage_failures_keep_counts_and_report() {
    let kv = Arc::new(MemoryKvStore::new());
    let store = open(&kv, IssueStoreConfig::default());
    let id = store.record_at(bug("p", 1, "x"), T0).issue_id;
    kv.set_fail_writes(true);
    let o = store.record_at(bug("p", 1, "x"), T0 + 1);
    assert!(o.persist_error.is_some());
    assert_eq!(o.count, 2);
    assert!(store.resolve(&id).is_err());
    assert_eq!(
        store.get(&id).unwrap().unwrap().issue.status,
        IssueStatus::Unresolved
    );
    kv.set_fail_writes(false);
    kv.set_fail_reads(true);
    assert!(IssueStore::open(kv.clone(), IssueStoreConfig::default()).is_err());
}

#[test]
fn memory_stays_bounded_under_hostile_input() {
    let kv = Arc::new(MemoryKvStore::new());
    let config = IssueStoreConfig {
        max_issues: 50,
        max_metric_plugins: 5,
        ..Default::default()
    };
    let store = open(&kv, config);
    for i in 0..500u64 {
        let mut e = ErrorEvent::message(format!("plugin-{i}"), Level::Error, format!("k{i}"));
        e.fingerprint = Some(vec![format!("fp-{i}"), "x".repeat(100_000)]);
        e.extra
            .insert("blob".into(), serde_json::Value::from("y".repeat(100_000)));
        store.record_at(e, T0 + i);
    }
    assert_eq!(store.len(), 50);
    assert!(kv.total_bytes() < 50 * 40_000, "{}", kv.total_bytes());
    let counts = store.counts();
    assert_eq!(counts.len(), 6); // 5 plugins + "other"
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 500);
}

/// A store whose writes block until released, to stand for a slow disk.
struct BlockingKv {
    inner: MemoryKvStore,
    entered: std::sync::mpsc::SyncSender<()>,
    release: parking_lot::Mutex<std::sync::mpsc::Receiver<()>>,
    blocking: std::sync::atomic::AtomicBool,
}

impl KvStore for BlockingKv {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value_json: &str) -> Result<(), String> {
        if self
            .blocking
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let _ = self.entered.send(());
            let _ = self
                .release
                .lock()
                .recv_timeout(std::time::Duration::from_secs(30));
        }
        self.inner.set(key, value_json)
    }
    fn delete(&self, key: &str) -> Result<bool, String> {
        self.inner.delete(key)
    }
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        self.inner.list_keys(prefix)
    }
}

#[test]
fn readers_do_not_wait_for_a_slow_storage_write() {
    let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
    let (release_tx, release_rx) = std::sync::mpsc::sync_channel(1);
    let kv = Arc::new(BlockingKv {
        inner: MemoryKvStore::new(),
        entered: entered_tx,
        release: parking_lot::Mutex::new(release_rx),
        blocking: std::sync::atomic::AtomicBool::new(false),
    });
    let store = Arc::new(IssueStore::open_at(kv.clone(), IssueStoreConfig::default(), T0).unwrap());
    store.record_at(bug("weather", 10, "first"), T0);
    kv.blocking.store(true, std::sync::atomic::Ordering::SeqCst);
    let writer = {
        let store = store.clone();
        let other =
            ErrorEvent::exception("lights", "Timeout", "x", vec![frame("switch", "lights", 3)]);
        std::thread::spawn(move || store.record_at(other, T0 + 1))
    };
    entered_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the writer reached storage");
    // The writer is inside a storage write now: readers must not wait for it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let store = store.clone();
        std::thread::spawn(move || {
            let page = store.list(&IssueQuery::default());
            let _ = done_tx.send((page.total, store.len()));
        });
    }
    let read = done_rx.recv_timeout(std::time::Duration::from_secs(10));
    let _ = release_tx.send(());
    let outcome = writer.join().unwrap();
    let (total, len) = read.expect("a reader waited for the storage write");
    assert_eq!(total, 2, "the new issue is visible before its write lands");
    assert_eq!(len, 2);
    assert!(outcome.new_issue && outcome.persist_error.is_none());
    // Both issues were persisted.
    let reopened = IssueStore::open_at(kv.clone(), IssueStoreConfig::default(), T0).unwrap();
    assert_eq!(reopened.len(), 2);
}
