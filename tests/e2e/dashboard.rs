//! The built-in dashboard in a real headless Chromium, and the
//! Prometheus-compatible query API it reads.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::{wait_for, TestHost, DEMO, MONITORING};
use test_support::{installed, require_peer};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| installed(b))
}

fn busy_host() -> TestHost {
    busy_host_with("", None)
}

/// A host with demo activity and some history; `extra` is appended to its
/// config, `token` is sent with the requests that wait for the history.
fn busy_host_with(extra: &str, token: Option<&str>) -> TestHost {
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config(
            "[host]\ntick_interval_ms = 200\n[plugins.demo-devices]\ninterval_ms = 100\nfail_ratio = 0.1\n\
             [plugins.monitoring.alerting]\nsample_interval_secs = 0.25",
        )
        .config(extra)
        .start();
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    // Enough history for rate() over a few samples.
    wait_for("history has rates", Duration::from_secs(30), || {
        let r = host.request("GET", "/api/v1/monitoring/prometheus/api/v1/query?query=sum(rate(homeconsole_events_total%5B1m%5D))", None, &headers);
        let v = r.json();
        (v["status"] == "success"
            && v["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty()))
        .then_some(())
    });
    host
}

#[test]
fn query_api_speaks_prometheus_json() {
    let host = busy_host();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let q = |path: &str| {
        host.get(&format!("/api/v1/monitoring/prometheus/api/v1/{path}"))
            .json()
    };
    let range = wait_for("two points of rate()", Duration::from_secs(30), || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let r = q(&format!(
            "query_range?query=sum%20by%20(status)%20(rate(homeconsole_service_calls_total%5B1m%5D))&start={}&end={now}&step=1",
            now - 60.0
        ));
        r["data"]["result"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|s| s["values"].as_array().is_some_and(|v| v.len() >= 2))
            })
            .then_some(r)
    });
    let _ = now;
    assert_eq!(range["status"], "success", "{range}");
    assert_eq!(range["data"]["resultType"], "matrix");
    let series = range["data"]["result"].as_array().unwrap();
    assert!(
        series.iter().any(|s| s["metric"]["status"] == "ok"),
        "{range}"
    );
    assert!(
        series
            .iter()
            .any(|s| s["values"].as_array().unwrap().len() >= 2),
        "{range}"
    );
    let labels = q("labels");
    assert!(
        labels["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "service_name"),
        "{labels}"
    );
    let values = q("label/plugin_name/values");
    assert!(
        values["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "demo-devices"),
        "{values}"
    );
    let series = q("series?match%5B%5D=homeconsole_plugin_state");
    assert!(series["data"].as_array().unwrap().len() >= 2, "{series}");
    let bad =
        host.get("/api/v1/monitoring/prometheus/api/v1/query?query=sort_by_label(up,%22a%22)");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]
        .as_str()
        .unwrap()
        .contains("sort_by_label"));
    // Grafana posts forms.
    let r = host.request(
        "POST",
        "/api/v1/monitoring/prometheus/api/v1/query",
        Some("query=homeconsole_plugins_loaded"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(r.json()["data"]["result"][0]["value"][1], "2", "{}", r.body);
}

#[test]
fn dashboard_renders_in_headless_chromium() {
    require_peer!(let Some(browser) = chromium(), "chromium not installed");
    let host = busy_host();
    host.call("demo.fail", &json!({}));
    // A little more history, so the charts draw lines rather than points.
    std::thread::sleep(Duration::from_secs(8));
    let page = host.get("/api/v1/monitoring/dashboard");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "no external assets"
    );
    let url = format!("http://{}/api/v1/monitoring/dashboard", host.addr);
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("dashboard.png");
    let html = assert_renders(browser, &url, profile.path());
    // A latency point links to its trace, and the link opens it.
    let link = html
        .split("class=\"exemplar\"")
        .next()
        .and_then(|before| before.rsplit("href=\"").next())
        .and_then(|rest| rest.split('"').next())
        .filter(|href| href.starts_with("/api/v1/monitoring/traces/"))
        .unwrap_or_else(|| panic!("no exemplar trace link in:\n{html}"))
        .to_owned();
    let trace = host.get(&link);
    assert_eq!(trace.status, 200, "{link}: {}", trace.body);

    let out = chromium_run(
        browser,
        &url,
        profile.path(),
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(
        out.status.success() || shot.exists(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot is {} bytes",
        png.len()
    );
    if let Some(dest) = std::env::var_os("DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, dest).unwrap();
    }
}

/// Runs headless Chromium on `url` with a profile under `profile`.
fn chromium_run(
    browser: &str,
    url: &str,
    profile: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.join("p").display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

/// Loads the dashboard at `url` and checks that every chart rendered data
/// and the page recorded no error.
fn assert_renders(browser: &str, url: &str, profile: &std::path::Path) -> String {
    let dom = chromium_run(browser, url, profile, &["--dump-dom"]);
    let html = String::from_utf8_lossy(&dom.stdout);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(
        html.contains("data-refreshed="),
        "page script did not finish a refresh:\n{html}"
    );
    for chart in [
        "chart-events",
        "chart-calls",
        "chart-latency",
        "chart-storage",
        "chart-plugins",
    ] {
        let tag = html
            .split(&format!("id=\"{chart}\""))
            .nth(1)
            .map(|rest| rest.split('>').next().unwrap_or(""))
            .unwrap_or("");
        assert!(
            tag.contains("data-state=\"rendered\""),
            "{chart} has no data: {tag}"
        );
    }
    let errors = html
        .split("id=\"console-errors\"")
        .nth(1)
        .and_then(|r| r.split_once('>'))
        .map(|(_, r)| r.split('<').next().unwrap_or(""))
        .unwrap_or("");
    assert!(errors.trim().is_empty(), "page errors: {errors}");
    assert!(!stderr.contains("Uncaught"), "console errors:\n{stderr}");
    assert!(
        html.contains("badge healthy")
            || html.contains("badge degraded")
            || html.contains("badge unhealthy")
    );
    html.into_owned()
}

/// With `[host.access] api_token`, the page is public (it holds no data)
/// and the data it fetches carries the token given in the URL fragment.
#[test]
fn dashboard_works_with_an_api_token() {
    require_peer!(let Some(browser) = chromium(), "chromium not installed");
    let token = "dash-7c1e9a";
    let host = busy_host_with(
        &format!("[host.access]\napi_token = \"{token}\""),
        Some(token),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(host.get("/api/v1/monitoring/dashboard").status, 200);
    assert_eq!(host.get("/api/v1/monitoring/health").status, 401);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/api/v1/monitoring/dashboard", host.addr);
    assert_renders(browser, &format!("{url}#token={token}"), profile.path());
    // Without the token the page loads but its data is refused.
    let other = tempfile::tempdir().unwrap();
    let dom = chromium_run(browser, &url, other.path(), &["--dump-dom"]);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(html.contains("answered 401"), "{html}");
}
