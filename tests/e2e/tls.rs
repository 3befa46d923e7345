//! TLS on every outbound connection: a private CA made by the test
//! (`openssl`), a real Alertmanager serving HTTPS and requiring a client
//! certificate, an HTTPS Sentry sink and an HTTPS OTLP receiver. A host
//! that does not trust the CA keeps the TLS error in `/status` and the log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{wait_for, TestHost, DEMO, MONITORING};
use test_support::require_binary;
use test_support::{require_peer, Alertmanager, RecordingPeer};

/// Generous: the test machines are shared and often heavily loaded.
const WAIT: Duration = Duration::from_secs(60);

/// A private CA with a server certificate for 127.0.0.1 and a client
/// certificate, made with the `openssl` CLI.
pub struct Pki {
    _dir: tempfile::TempDir,
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Server certificate for `127.0.0.1` / `localhost`.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Client certificate (clientAuth).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// Makes the CA and both certificates; `Err` (for `require_peer!`)
    /// without `openssl`.
    pub fn new() -> Result<Pki, String> {
        let present = Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            return Err("openssl not installed".to_owned());
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=homeconsole-e2e-ca",
        ];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(d, &ca);
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
            let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
            let subj = format!("/CN=homeconsole-e2e-{name}");
            let mut req = vec!["req", "-subj", subj.as_str()];
            req.extend(ec);
            req.extend(["-keyout", key.as_str(), "-out", csr.as_str()]);
            openssl(d, &req);
            let (pem, ext) = (format!("{name}.pem"), format!("{name}.ext"));
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-days",
                    "2",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-extfile",
                    &ext,
                ],
            );
        }
        Ok(Pki {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            _dir: dir,
        })
    }

    /// The `[plugins.monitoring.tls]` section trusting the CA (and
    /// presenting the client certificate when `client`).
    pub fn plugin_toml(&self, client: bool) -> String {
        let mut s = format!("[plugins.monitoring.tls]\nca_file = {:?}\n", self.ca);
        if client {
            s += &format!(
                "client_cert_file = {:?}\nclient_key_file = {:?}\n",
                self.client_cert, self.client_key
            );
        }
        s
    }

    /// A rustls server config with the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.server_cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&self.server_key).unwrap();
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        )
    }

    /// A test-side client trusting only the CA, with the client certificate.
    pub fn agent(&self) -> ureq::Agent {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let read = |p: &Path| std::fs::read(p).unwrap();
        let ca = Certificate::from_pem(&read(&self.ca)).unwrap();
        let cert = Certificate::from_pem(&read(&self.client_cert)).unwrap();
        let key = PrivateKey::from_pem(&read(&self.client_key)).unwrap();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[ca]))
            .client_cert(Some(ClientCert::new_with_certs(&[cert], key)))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into()
    }
}

/// GET `url` with `agent`: `(status, body)`, or `None` when unreachable.
pub fn https_get(agent: &ureq::Agent, url: &str) -> Option<(u16, String)> {
    let mut resp = agent.get(url).call().ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.body_mut().read_to_string().ok()?))
}

/// One alert rule that fires at once.
const ALWAYS: &str = "groups:\n  - name: tls\n    interval: 1s\n    rules:\n      - alert: TlsAlwaysOn\n        expr: homeconsole_build_info > 0\n        labels:\n          severity: info\n";

fn alerting_host(rules: &Path, am_url: &str, extra: &str) -> TestHost {
    TestHost::builder()
        .plugin(MONITORING)
        .config(&format!(
            "[plugins.monitoring.alerting]\nsample_interval_secs = 1\nresend_interval_secs = 1\n\
             default_rules = false\nnotify_max_retries = 0\nrules_dir = {:?}\nalertmanager_url = \"{am_url}\"\n{extra}",
            rules.display().to_string()
        ))
        .start()
}

fn notifier_status(host: &TestHost) -> Value {
    host.get("/api/v1/monitoring/status").json()["capabilities"]["alerting"]["notifiers"][0].clone()
}

#[test]
fn alertmanager_over_tls_with_a_client_certificate() {
    require_binary!("prometheus-alertmanager");
    let pki = require_peer!(Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {:?}\n  key_file: {:?}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {:?}\n",
            pki.server_cert, pki.server_key, pki.ca
        ),
    )
    .unwrap();
    let am = Alertmanager::start(
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
        &[format!("--web.config.file={}", web_config.display())],
    );
    let port = am.port;
    let base = format!("https://127.0.0.1:{port}");
    let agent = pki.agent();
    wait_for("alertmanager ready over TLS", WAIT, || {
        https_get(&agent, &format!("{base}/-/ready")).filter(|(s, _)| *s == 200)
    });

    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("tls.yml"), ALWAYS).unwrap();

    // Without the CA: every attempt fails, and the cause is kept and logged.
    let untrusting = alerting_host(rules.path(), &base, "");
    let status = wait_for("the TLS failure in /status", WAIT, || {
        let n = notifier_status(&untrusting);
        (n["failed"].as_u64()? >= 1 && n["last_error"].is_string()).then_some(n)
    });
    let err = status["last_error"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        err.contains("certificate") || err.contains("unknownissuer"),
        "{status}"
    );
    // The log line may reach us a moment after /status shows the failure.
    wait_for("the TLS error logged", WAIT, || {
        untrusting
            .logs()
            .iter()
            .any(|l| {
                l.contains("notifier alertmanager")
                    && l.to_ascii_lowercase().contains("certificate")
            })
            .then_some(())
    });
    drop(untrusting);

    // With the CA and the client certificate: the alert arrives, with the
    // external labels that tell this host from others.
    let host = alerting_host(
        rules.path(),
        &base,
        &format!(
            "{}[plugins.monitoring.external_labels]\ninstance = \"e2e-tls-host\"\nsite = \"lab\"\n",
            pki.plugin_toml(true)
        ),
    );
    let alert = wait_for("TlsAlwaysOn in Alertmanager", WAIT, || {
        let (_, body) = https_get(&agent, &format!("{base}/api/v2/alerts"))?;
        let alerts: Vec<Value> = serde_json::from_str(&body).ok()?;
        alerts
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "TlsAlwaysOn")
    });
    assert_eq!(alert["labels"]["instance"], "e2e-tls-host", "{alert}");
    assert_eq!(alert["labels"]["site"], "lab", "{alert}");
    let n = notifier_status(&host);
    assert!(n["sent"].as_u64().unwrap_or(0) >= 1, "{n}");
}

#[test]
fn sentry_and_otlp_over_https() {
    let pki = require_peer!(Pki::new());
    let sentry_rx = RecordingPeer::builder().tls(pki.server_config()).start();
    let otlp_rx = RecordingPeer::builder().tls(pki.server_config()).start();
    let (sentry_port, otlp_port) = (sentry_rx.port(), otlp_rx.port());
    let host = TestHost::builder()
        .plugin(MONITORING)
        .plugin(DEMO)
        .config("[plugins.demo-devices]\ninterval_ms = 0\n")
        .config(&format!(
            "[plugins.monitoring.errors]\nsentry_dsn = \"https://tlskey@127.0.0.1:{sentry_port}/9\"\n\
             [plugins.monitoring.tracing]\notlp_endpoint = \"https://127.0.0.1:{otlp_port}/v1/traces\"\notlp_flush_ms = 100\n{}",
            pki.plugin_toml(false)
        ))
        .start();
    wait_for("demo started", WAIT, || {
        (host.plugin("demo-devices")?["state"] == "started").then_some(())
    });
    host.call("demo.fail", &json!({}));

    let event = wait_for("the event over HTTPS", WAIT, || {
        while let Some(r) = sentry_rx.next_request(Duration::from_millis(200)) {
            let text = r.text();
            if text.contains("demo.fail always fails") {
                return Some((r, text));
            }
        }
        None
    });
    assert_eq!(event.0.request_line(), "POST /api/9/envelope/ HTTP/1.1");
    assert!(event
        .0
        .header("x-sentry-auth")
        .unwrap_or("")
        .contains("sentry_key=tlskey"));

    let export = wait_for("spans over HTTPS", WAIT, || {
        otlp_rx.next_request(Duration::from_millis(200))
    });
    assert_eq!(export.request_line(), "POST /v1/traces HTTP/1.1");
    assert_eq!(
        export.header("content-type"),
        Some("application/x-protobuf")
    );
    assert!(
        export.body.windows(11).any(|w| w == b"homeconsole"),
        "the resource's service.name is in the protobuf body"
    );
    let status = host.get("/api/v1/monitoring/status").json();
    let caps = &status["capabilities"];
    wait_for("forwarder counts the event sent", WAIT, || {
        let s = host.get("/api/v1/monitoring/status").json();
        (s["capabilities"]["errors"]["forwarder"]["sent"].as_u64()? >= 1).then_some(())
    });
    assert!(caps["errors"]["forwarder_last_error"].is_null(), "{caps}");
}
