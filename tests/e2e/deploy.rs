//! The Grafana dashboards' queries against the real thing: every PromQL
//! expression in a panel (deploy/check/dashboard_queries.txt, kept equal to
//! the dashboards by deploy/check/check-dashboards.sh) parses, and every
//! metric it names is exposed by a real scrape of the harness.

use std::collections::BTreeSet;
use std::time::Duration;

use promql_parser::parser::{self, Expr};
use serde_json::json;

use crate::support::{wait_for, TestHost, DEMO, FAULTY, MONITORING};

fn names_in(expr: &Expr, out: &mut BTreeSet<String>) {
    match expr {
        Expr::VectorSelector(vs) => {
            if let Some(n) = &vs.name {
                out.insert(n.clone());
            }
            for m in &vs.matchers.matchers {
                if m.name == "__name__" {
                    out.insert(m.value.clone());
                }
            }
        }
        Expr::MatrixSelector(ms) => names_in(&Expr::VectorSelector(ms.vs.clone()), out),
        Expr::Aggregate(a) => {
            names_in(&a.expr, out);
            if let Some(p) = &a.param {
                names_in(p, out);
            }
        }
        Expr::Unary(u) => names_in(&u.expr, out),
        Expr::Binary(b) => {
            names_in(&b.lhs, out);
            names_in(&b.rhs, out);
        }
        Expr::Paren(p) => names_in(&p.expr, out),
        Expr::Subquery(s) => names_in(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| names_in(a, out)),
        _ => {}
    }
}

fn substitute(q: &str) -> String {
    q.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$instance", "127.0.0.1:8000")
        .replace("$plugin", "demo-devices")
        .replace("$service", ".*")
}

/// Family names of a scrape: `# TYPE` lines, plus the histogram series names.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    out
}

#[test]
fn every_dashboard_query_parses_and_names_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = tempfile::tempdir().unwrap();
    // One rule that fires at once, so homeconsole_alerts has series.
    std::fs::write(
        rules.path().join("always.yml"),
        "groups:\n  - name: always\n    interval: 1s\n    rules:\n      - alert: DashboardProbe\n        expr: homeconsole_plugins_loaded > 0\n",
    )
    .unwrap();
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .plugin(FAULTY)
        .config(&format!(
            "[host]\ntick_interval_ms = 200\nevent_queue_capacity = 2\n[plugins.demo-devices]\ninterval_ms = 50\nfail_ratio = 0.2\n\
             [plugins.faulty]\nhang_in = [\"on_event\"]\n\
             [plugins.monitoring.alerting]\nsample_interval_secs = 0.5\nrules_dir = \"{}\"",
            rules.path().display()
        ))
        .start();
    // Activity for the families that only exist once something happens.
    for i in 0..20 {
        host.post(&format!("/api/v1/events/faulty.e{i}"), "{}");
        host.post(
            "/api/v1/events/device.light1.command",
            r#"{"action":"toggle"}"#,
        );
    }
    host.call("demo.fail", &json!({}));
    host.get("/api/v1/monitoring/health?refresh=true");
    let text = wait_for(
        "alert firing, service calls and drops exported",
        Duration::from_secs(30),
        || {
            let t = host.metrics();
            (t.contains("homeconsole_alerts{")
                && t.contains("homeconsole_service_calls_total{")
                && t.contains("homeconsole_service_call_duration_seconds_bucket{")
                && t.contains("homeconsole_errors_total{")
                && t.contains("homeconsole_event_deliveries_dropped_total{"))
            .then_some(t)
        },
    );
    let exposed = exposed(&text);

    let queries = std::fs::read_to_string(root.join("deploy/check/dashboard_queries.txt")).unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    for q in queries
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let expr = parser::parse(&substitute(q))
            .unwrap_or_else(|e| panic!("dashboard query does not parse: {q}\n{e}"));
        let mut names = BTreeSet::new();
        names_in(&expr, &mut names);
        assert!(!names.is_empty(), "query names no metric: {q}");
        for n in names {
            if !exposed.contains(&n) {
                missing.push(format!("{n} (in {q})"));
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} queries");
    assert!(
        missing.is_empty(),
        "dashboard queries name metrics the harness does not expose:\n{}",
        missing.join("\n")
    );
}
