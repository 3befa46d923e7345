use super::*;

fn env_render(t: &str, v: f64) -> String {
    let labels: BTreeMap<String, String> = [("job", "api"), ("instance", "hub:9100")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ext = BTreeMap::new();
    let q = |q: &str| -> Result<Vec<QueryRow>, String> {
        Ok(vec![(
            [("instance".to_string(), q.to_string())]
                .into_iter()
                .collect(),
            2.5,
        )])
    };
    let env = Env {
        labels: &labels,
        value: v,
        external_labels: &ext,
        external_url: "http://host:8000/console",
        query: Some(&q),
    };
    Template::parse(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .render(&env)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
}

#[test]
fn prints_like_go() {
    assert_eq!(
        env_render("{{ $labels }}", 1.0),
        "map[instance:hub:9100 job:api]"
    );
    assert_eq!(
        env_render("{{ .Labels.job }}/{{ .Value }}", 1e6),
        "api/1e+06"
    );
    assert_eq!(env_render("{{ $value }}", 0.5), "0.5");
    assert_eq!(env_render("{{ $labels.missing }}x", 1.0), "x");
    assert_eq!(
        env_render("{{ 3 }} {{ 1.5 }} {{ true }} {{ \"s\" }}", 1.0),
        "3 1.5 true s"
    );
    assert_eq!(env_render("{{ print 1 2 \"a\" 3 }}", 1.0), "1 2a3");
}

#[test]
fn control_flow_and_variables() {
    assert_eq!(
        env_render(
            "{{ if gt $value 80.0 }}hot{{ else if gt $value 50.0 }}warm{{ else }}cold{{ end }}",
            60.0
        ),
        "warm"
    );
    assert_eq!(
        env_render(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            1.0
        ),
        "instance=hub:9100;job=api;"
    );
    assert_eq!(
        env_render("{{ with $labels.job }}{{ . }}{{ end }}", 1.0),
        "api"
    );
    assert_eq!(env_render("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", 1.0), "2");
    assert_eq!(env_render("a {{- $value -}} b{{/* c */}}", 1.0), "a1b");
    assert_eq!(
        env_render("{{ range $labels }}{{ . }}{{ break }}{{ end }}", 1.0),
        "hub:9100"
    );
    assert_eq!(
        env_render(
            "{{ if and (eq .Labels.job \"api\") (ne 1 2) }}y{{ end }}",
            1.0
        ),
        "y"
    );
}

#[test]
fn prometheus_functions() {
    assert_eq!(env_render("{{ $value | humanize }}", 2048.0), "2.048k");
    assert_eq!(env_render("{{ $value | humanize1024 }}", 2048.0), "2ki");
    assert_eq!(
        env_render("{{ humanizePercentage $value }}", 0.1234),
        "12.34%"
    );
    assert_eq!(
        env_render("{{ $value | humanizeDuration }}", 3725.0),
        "1h 2m 5s"
    );
    assert_eq!(
        env_render("{{ printf \"%.2f\" $value }}", 1.0 / 3.0),
        "0.33"
    );
    assert_eq!(
        env_render("{{ printf \"%s=%v %d%%\" $labels.job $value 5 }}", 2.0),
        "api=2 5%"
    );
    assert_eq!(
        env_render(
            "{{ $labels.job | toUpper }} {{ title \"hello world\" }}",
            1.0
        ),
        "API Hello World"
    );
    assert_eq!(
        env_render(
            "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
            1.0
        ),
        "hub"
    );
    assert_eq!(
        env_render(
            "{{ $labels.instance | stripPort }} {{ stripDomain \"a.b.c:80\" }}",
            1.0
        ),
        "hub a:80"
    );
    assert_eq!(env_render("{{ match \"^a\" \"abc\" }}", 1.0), "true");
    assert_eq!(env_render("{{ parseDuration \"1m30s\" }}", 1.0), "90");
    assert_eq!(
        env_render("{{ externalURL }} {{ pathPrefix }}", 1.0),
        "http://host:8000/console /console"
    );
    assert_eq!(env_render("{{ with query \"up\" }}{{ . | first | value }} {{ (first .).Labels.instance }}{{ end }}", 1.0), "2.5 up");
    assert_eq!(env_render("{{ (args 1 \"a\").arg1 }}", 1.0), "a");
    assert_eq!(
        env_render("{{ humanizeTimestamp 0 }}", 1.0),
        "1970-01-01 00:00:00 +0000 UTC"
    );
}

#[test]
fn refuses_what_go_refuses() {
    for t in [
        "{{ $value",
        "{{ if $value }}x",
        "{{ nosuchfunc $value }}",
        "{{ $undefined }}",
        "{{ end }}",
        "{{ define \"x\" }}{{ end }}",
    ] {
        assert!(Template::parse(t).is_err(), "{t}");
    }
}

#[test]
fn deep_or_huge_templates_are_refused_or_bounded() {
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(Template::parse(&deep).is_err());
    let deep_if = "{{ if 1 }}".repeat(5_000) + &"{{ end }}".repeat(5_000);
    assert!(Template::parse(&deep_if).is_err());
    let labels = BTreeMap::new();
    let env = Env {
        labels: &labels,
        value: 1.0,
        external_labels: &labels,
        external_url: "",
        query: None,
    };
    // 10^8 iterations would run for minutes: the step bound stops it.
    let t = Template::parse(
        "{{ range (args 1 2 3 4 5 6 7 8 9 10) }}{{ range (args 1 2 3 4 5 6 7 8 9 10) }}{{ range (args 1 2 3 4 5 6 7 8 9 10) }}{{ range (args 1 2 3 4 5 6 7 8 9 10) }}{{ range (args 1 2 3 4 5 6 7 8 9 10) }}{{ range (args 1 2 3 4 5 6 7 8 9 10) }}{{ range (args 1 2 3 4 5 6 7 8 9 10) }}{{ range (args 1 2 3 4 5 6 7 8 9 10) }}x{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}",
    )
    .unwrap();
    assert!(t.render(&env).is_err());
    assert!(t.expand(&env).starts_with("<error expanding template:"));
}
