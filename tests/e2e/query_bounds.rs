//! PromQL query costs are bounded: a hostile query through the real host gets
//! a clear 4xx/5xx answer from the monitoring plugin, and the host (with every
//! plugin in it) keeps serving.

use crate::support::{sample, wait_for, Resp, TestHost, DEMO, MONITORING};
use std::time::Duration;

const QUERY: &str = "/api/v1/monitoring/prometheus/api/v1/query";
const QUERY_RANGE: &str = "/api/v1/monitoring/prometheus/api/v1/query_range";

fn host_with(query_toml: &str) -> TestHost {
    TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(&format!(
            "[plugins.monitoring.alerting]\nsample_interval_secs = 0.25\ndefault_rules = false\n\
             [plugins.monitoring.query]\n{query_toml}"
        ))
        .start()
}

fn post_form(host: &TestHost, path: &str, body: &str) -> Resp {
    host.request(
        "POST",
        path,
        Some(body),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    )
}

/// Waits until the history holds the host's series, returns how many.
fn wait_for_history(host: &TestHost) -> usize {
    wait_for("sampled series", Duration::from_secs(30), || {
        let r = host.get(&format!(
            "{QUERY}?query=count(%7B__name__%3D~%22.%2B%22%7D)"
        ));
        let n = r.json()["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())?;
        (n >= 20.0).then_some(n as usize)
    })
}

fn assert_still_serving(host: &mut TestHost) {
    assert!(host.is_running(), "host died: {}", host.logs().join("\n"));
    let r = post_form(host, QUERY, "query=1%2B1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"]["result"][1], "2", "{}", r.body);
    assert_eq!(host.get("/api/v1/monitoring/health/live").status, 200);
    assert_eq!(host.plugin("demo-devices").unwrap()["state"], "started");
}

fn aborted(host: &TestHost, reason: &str) -> f64 {
    sample(
        &host.metrics(),
        "homeconsole_promql_queries_aborted_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[test]
fn deeply_nested_and_long_queries_get_a_clear_400_and_the_host_lives() {
    let mut host = host_with("");
    // The body of the hardening report: 200,000 '(' + '1' + 200,000 ')'.
    let deep = format!("query={}1{}", "(".repeat(200_000), ")".repeat(200_000));
    let r = post_form(&host, QUERY, &deep);
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(300)]);
    let v = r.json();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"].as_str().unwrap().contains("max_query_length"),
        "{v}"
    );
    assert_still_serving(&mut host);

    // Under the length limit but nested too deep (brackets, then operators).
    for q in [
        format!("{}1{}", "(".repeat(2_000), ")".repeat(2_000)),
        format!("1{}", "%2B1".repeat(2_000)),
        format!("{}1", "-".repeat(2_000)),
    ] {
        let r = post_form(&host, QUERY, &format!("query={q}"));
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("max_nesting_depth"), "{}", r.body);
    }
    // A long query (over 16 KiB) in a GET query string as well.
    let long = format!("{QUERY}?query=up{}", "%20".repeat(17_000));
    let r = host.get(&long);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("max_query_length"), "{}", r.body);
    // A nesting just under the limit is answered.
    let ok = format!("{}1{}", "(".repeat(250), ")".repeat(250));
    let r = post_form(&host, QUERY, &format!("query={ok}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(aborted(&host, "too_long"), 2.0);
    assert_eq!(aborted(&host, "too_deep"), 3.0);
    assert_still_serving(&mut host);
}

#[test]
fn a_large_query_range_is_refused_naming_the_samples_budget() {
    let mut host = host_with("max_samples = 100000");
    let series = wait_for_history(&host);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 11,000 steps x every series: far more points than 100,000.
    let body = format!(
        "query=%7B__name__%3D~%22.%2B%22%7D&start={}&end={now}&step=1",
        now - 10_999
    );
    let r = post_form(&host, QUERY_RANGE, &body);
    assert_eq!(r.status, 422, "{series} series: {}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "execution");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("query processing would load too many samples into memory in query execution")
            && msg.contains("max_samples = 100000"),
        "{msg}"
    );
    assert_eq!(aborted(&host, "too_many_samples"), 1.0);
    // A small range over the same series stays within the budget.
    let body = format!(
        "query=%7B__name__%3D~%22.%2B%22%7D&start={}&end={now}&step=15",
        now - 60
    );
    assert_eq!(post_form(&host, QUERY_RANGE, &body).status, 200);
    assert_still_serving(&mut host);
}

#[test]
fn a_slow_query_times_out_and_stops_computing() {
    let mut host = host_with("timeout_secs = 0.05\nmax_samples = 1000000000");
    wait_for_history(&host);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = format!(
        "query=count_over_time(%7B__name__%3D~%22.%2B%22%7D%5B1h%5D)&start={}&end={now}&step=1",
        now - 10_999
    );
    let started = std::time::Instant::now();
    let r = post_form(&host, QUERY_RANGE, &body);
    let took = started.elapsed();
    // The plugin answers itself (503 `timeout`, Prometheus's shape), not the
    // host's callback deadline (504 after 5 s).
    assert_eq!(r.status, 503, "{}", r.body);
    let v = r.json();
    assert_eq!(v["errorType"], "timeout", "{v}");
    assert_eq!(v["error"], "query timed out in expression evaluation");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The evaluation stopped: counted once, and the plugin answers at once.
    assert_eq!(aborted(&host, "timeout"), 1.0);
    assert_still_serving(&mut host);
}

#[test]
fn full_promql_is_answered_and_subqueries_are_bounded() {
    let mut host = host_with("max_samples = 200000");
    wait_for_history(&host);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // What a Grafana panel may ask: subquery, topk, label_replace, group_left, @.
    for q in [
        "max_over_time(homeconsole_plugins_loaded%5B1m%3A1s%5D)",
        "topk(1%2C%20homeconsole_plugin_state)",
        "label_replace(homeconsole_plugins_loaded%2C%20%22x%22%2C%20%22%241%22%2C%20%22__name__%22%2C%20%22(.*)_loaded%22)",
        "homeconsole_plugin_state%20*%20on()%20group_left%20homeconsole_plugins_loaded",
        "homeconsole_plugins_loaded%20%40%20end()",
    ] {
        // The history is seconds old: end after the newest sample.
        let body = format!("query={q}&start={}&end={}&step=1", now - 60, now + 2);
        let r = post_form(&host, QUERY_RANGE, &body);
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert!(
            !r.json()["data"]["result"].as_array().unwrap().is_empty(),
            "{q}: {}",
            r.body
        );
    }
    // A subquery at a 1 ms step over every series: far over the budget.
    let r = post_form(
        &host,
        QUERY,
        "query=count_over_time(%7B__name__%3D~%22.%2B%22%7D%5B10m%3A1ms%5D)",
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("max_samples = 200000"), "{}", r.body);
    assert_eq!(aborted(&host, "too_many_samples"), 1.0);
    assert_still_serving(&mut host);
}
