//! An idle host sleeps: with nothing calling it, the host with the
//! monitoring plugin uses (far) less than 1 % of one core. The bound checked
//! here is generous (10 %), so a noisy machine cannot fail it, while a busy
//! loop in any background thread (the plugins-directory watcher once woke
//! itself with its own directory reads and burned 1.5 cores) fails it by far.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{TestHost, MONITORING};

/// CPU ticks (user + system) of `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat`.
fn ticks(stat_path: &str) -> u64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Ticks and name of each thread, by thread id.
fn threads(pid: u32) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.flatten() {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let ticks = ticks(&path.join("stat").display().to_string());
            out.insert(
                task.file_name().to_string_lossy().into_owned(),
                (ticks, name.trim().to_owned()),
            );
        }
    }
    out
}

fn assert_idle(host: &TestHost, what: &str) {
    // Let start-up work (loading, the first health round, first ticks) finish.
    std::thread::sleep(Duration::from_secs(2));
    let pid = host.pid();
    let stat = format!("/proc/{pid}/stat");
    let window = Duration::from_secs(5);
    let before = ticks(&stat);
    let threads_before = threads(pid);
    std::thread::sleep(window);
    let used = ticks(&stat) - before;
    let per_second = clock_ticks_per_second();
    let percent = used as f64 * 100.0 / per_second as f64 / window.as_secs_f64();
    let mut busy: Vec<(u64, String)> = threads(pid)
        .into_iter()
        .map(|(tid, (t, name))| {
            let earlier = threads_before.get(&tid).map_or(0, |(t0, _)| *t0);
            (t.saturating_sub(earlier), name)
        })
        .collect();
    busy.sort_by(|a, b| b.cmp(a));
    busy.truncate(5);
    assert!(
        percent <= 10.0,
        "idle host ({what}) used {percent:.1} % of a core over {window:?}; threads (ticks): {busy:?}"
    );
}

#[test]
fn an_idle_host_with_the_monitoring_plugin_sleeps() {
    let host = TestHost::builder().plugin(MONITORING).start();
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
    assert_idle(&host, "monitoring plugin loaded");
}

#[test]
fn an_idle_host_without_plugins_sleeps() {
    let host = TestHost::builder().start();
    assert_eq!(host.get("/api/v1/plugins").status, 200);
    assert_idle(&host, "no plugin");
}
