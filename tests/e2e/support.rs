//! Test support: runs the real `host-harness` binary with a temp plugins
//! dir, a temp data dir and a free port, and talks to it over real HTTP.
//! Helpers the plugin's tests need too (the recording peer, `wait_for`,
//! `require_peer!`, promtool) live in the `test-support` crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
pub use test_support::{free_port, wait_for, Killed};

/// The repository's root (the docs, layout and guide tests read its files).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the repository, by its path from the root.
pub fn read_repo_file(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Directory holding the built binary and plugin libraries.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_host-harness"))
        .parent()
        .expect("binary has a parent dir")
        .to_owned()
}

/// Path of a built plugin library, e.g. `plugin_lib("demo_devices")`.
pub fn plugin_lib(crate_name: &str) -> PathBuf {
    let p = target_dir().join(format!("lib{crate_name}.so"));
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`), or run ./scripts/test",
        p.display()
    );
    p
}

/// The monitoring plugin library.
pub const MONITORING: &str = "monitoring_plugin";
/// The demo plugin library.
pub const DEMO: &str = "demo_devices";
/// The faulty fixture.
pub const FAULTY: &str = "fixture_faulty";
/// The out-of-tree telemetry fixture (`example-plugins/fixtures/out-of-tree`).
pub const OUT_OF_TREE: &str = "out_of_tree_telemetry";

/// The host admin token [`HostBuilder::admin`] configures.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// How to start a host.
pub struct HostBuilder {
    plugins: Vec<String>,
    config: String,
    data_dir: Option<PathBuf>,
    listen: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    prefix: Vec<String>,
}

impl HostBuilder {
    /// Adds a plugin library (crate name with underscores).
    pub fn plugin(mut self, crate_name: &str) -> Self {
        self.plugins.push(crate_name.to_owned());
        self
    }

    /// Appends TOML to the config file.
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    /// Configures the host's admin token ([`ADMIN_TOKEN`]) for tests that
    /// use admin actions over HTTP (see [`TestHost::admin_call`]).
    pub fn admin(self) -> Self {
        self.config(&format!("[host.access]\nadmin_token = \"{ADMIN_TOKEN}\""))
    }

    /// Listens on `addr` instead of `127.0.0.1:0`.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_owned();
        self
    }

    /// Adds a command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Sets an environment variable of the host process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Reuses a data dir (restart tests).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Runs the host in its own user and mount namespaces (no root needed)
    /// with a fresh tmpfs of `size_mb` MiB mounted on `mount_point`, which
    /// only the host sees: reach it through [`TestHost::host_path`]. See
    /// [`user_namespaces`] for whether this machine allows it.
    pub fn tmpfs(mut self, mount_point: &Path, size_mb: u64) -> Self {
        self.prefix = [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            &format!("mount -t tmpfs -o size={size_mb}m tmpfs \"$0\" && exec \"$@\""),
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([mount_point.display().to_string()])
        .collect();
        self
    }

    /// Starts the host and waits until it listens.
    pub fn start(self) -> TestHost {
        let root = tempfile::tempdir().expect("tempdir");
        let plugins_dir = root.path().join("plugins");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| root.path().join("data"));
        std::fs::create_dir_all(&plugins_dir).unwrap();
        for p in &self.plugins {
            std::fs::copy(plugin_lib(p), plugins_dir.join(format!("lib{p}.so"))).unwrap();
        }
        let config_path = root.path().join("host.toml");
        let config = if self.config.contains("[host]") {
            self.config.clone()
        } else {
            format!("[host]\ntick_interval_ms = 200\n{}", self.config)
        };
        std::fs::write(&config_path, config).unwrap();
        TestHost::spawn(
            root,
            plugins_dir,
            data_dir,
            config_path,
            Launch {
                listen: self.listen,
                args: self.args,
                prefix: self.prefix,
            },
            self.env,
        )
    }
}

/// Whether the host reads variable `name` as configuration: such variables
/// from the test's own environment are not passed on, so that a
/// developer's `RUST_LOG` or `SENTRY_DSN` cannot change a test.
pub fn is_config_var(name: &str) -> bool {
    name == "RUST_LOG"
        || name.starts_with("OTEL_")
        || name.starts_with("SENTRY_")
        || (name.starts_with("HOMECONSOLE_") && name != "HOMECONSOLE_PYTHON")
}

/// A running host process.
pub struct TestHost {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    /// Its plugins dir.
    pub plugins_dir: PathBuf,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its config file.
    pub config_path: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// How it was started.
    launch: Launch,
    env: Vec<(String, String)>,
    _root: tempfile::TempDir,
}

/// How a host process is started, kept for [`TestHost::restart`].
#[derive(Clone)]
struct Launch {
    /// `--listen` address.
    listen: String,
    /// Extra command-line arguments.
    args: Vec<String>,
    /// Command the binary runs under (empty: none), see [`HostBuilder::tmpfs`].
    prefix: Vec<String>,
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Resp {
    /// Body as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl TestHost {
    /// A builder with no plugins.
    pub fn builder() -> HostBuilder {
        HostBuilder {
            plugins: Vec::new(),
            config: String::new(),
            data_dir: None,
            listen: "127.0.0.1:0".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            prefix: Vec::new(),
        }
    }

    fn spawn(
        root: tempfile::TempDir,
        plugins_dir: PathBuf,
        data_dir: PathBuf,
        config_path: PathBuf,
        launch: Launch,
        env: Vec<(String, String)>,
    ) -> TestHost {
        let binary = env!("CARGO_BIN_EXE_host-harness");
        let mut command = match launch.prefix.split_first() {
            None => Command::new(binary),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(binary);
                c
            }
        };
        for (name, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
            if is_config_var(&name) {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .arg("--plugins-dir")
            .arg(&plugins_dir)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(&launch.listen)
            .arg("--config")
            .arg(&config_path)
            .args(&launch.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn host-harness");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let stdout = child.stdout.take().unwrap();
        let l = logs.clone();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "listening" {
                        if let Some(a) = v["fields"]["addr"].as_str().and_then(|a| a.parse().ok()) {
                            let _ = tx.send(a);
                        }
                    }
                }
                l.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let l = logs.clone();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().unwrap().push(format!("STDERR {line}"));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "host did not start; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        TestHost {
            child: Some(child),
            addr,
            plugins_dir,
            data_dir,
            config_path,
            logs,
            readers: vec![out_reader, err_reader],
            launch,
            env,
            _root: root,
        }
    }

    /// Restarts a stopped host on the same dirs (new port).
    pub fn restart(mut self) -> TestHost {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let root = std::mem::replace(&mut self._root, tempfile::tempdir().unwrap());
        TestHost::spawn(
            root,
            self.plugins_dir.clone(),
            self.data_dir.clone(),
            self.config_path.clone(),
            self.launch.clone(),
            std::mem::take(&mut self.env),
        )
    }

    /// All log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Log lines parsed as JSON.
    pub fn json_logs(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Sends a raw HTTP/1.1 request and reads the whole response.
    pub fn raw(&self, request: &[u8]) -> Resp {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(request).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        parse_response(&buf)
    }

    /// Sends a request with optional body and headers.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = body.unwrap_or("");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.raw(req.as_bytes())
    }

    /// GET.
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[])
    }

    /// POST with a JSON body.
    pub fn post(&self, path: &str, body: &str) -> Resp {
        self.request("POST", path, Some(body), &[])
    }

    /// Calls a service over HTTP.
    pub fn call(&self, service: &str, input: &Value) -> Resp {
        self.post(&format!("/api/v1/services/{service}"), &input.to_string())
    }

    /// Calls a service over HTTP with the admin token of
    /// [`HostBuilder::admin`] (the plugin sees the caller `http:admin`).
    pub fn admin_call(&self, service: &str, input: &Value) -> Resp {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.request(
            "POST",
            &format!("/api/v1/services/{service}"),
            Some(&input.to_string()),
            &[("Authorization", &auth)],
        )
    }

    /// The plugin entry named `name` from `/api/v1/plugins`.
    pub fn plugin(&self, name: &str) -> Option<Value> {
        let list = self.get("/api/v1/plugins").json();
        list["plugins"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    }

    /// Fetches the metrics text.
    pub fn metrics(&self) -> String {
        let r = self.get("/api/v1/monitoring/metrics");
        assert_eq!(r.status, 200, "metrics: {}", r.body);
        r.body
    }

    /// Sends SIGTERM and waits for exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = wait_exit(&mut child, Duration::from_secs(30));
        // Every line the host wrote is in `logs` once the readers hit EOF.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `path` as the host process sees it: through its own root, so a
    /// file system mounted in its namespace ([`HostBuilder::tmpfs`]) is
    /// reachable from the test.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(relative)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

fn wait_exit(child: &mut Child, max: Duration) -> ExitStatus {
    let until = Instant::now() + max;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("host did not exit within {max:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP response with a binary body (a gzip profile, protobuf).
#[derive(Debug, Clone)]
pub struct BinResp {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

impl BinResp {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses a raw HTTP/1.1 response, keeping the body as bytes.
pub fn parse_binary_response(buf: &[u8]) -> BinResp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut body = buf[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    BinResp {
        status,
        headers,
        body,
    }
}

/// Parses a raw HTTP/1.1 response.
pub fn parse_response(buf: &[u8]) -> Resp {
    let r = parse_binary_response(buf);
    Resp {
        body: r.text(),
        status: r.status,
        headers: r.headers,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..pos]);
        let size = usize::from_str_radix(size_text.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// The value of one sample in a metrics text, e.g.
/// `sample(text, "homeconsole_service_calls_total", &[("service_name", "x"), ("status", "ok")])`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let parsed = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| parsed.iter().any(|(pk, pv)| pk == k && pv == v))
        {
            return value.parse().ok();
        }
    }
    None
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches(',').to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name, value));
        rest = &rest[end.min(rest.len())..];
    }
    out
}

/// `Ok` when this machine lets a process mount a tmpfs in its own user
/// and mount namespaces without root (see [`HostBuilder::tmpfs`]), else
/// why not.
pub fn user_namespaces() -> Result<(), String> {
    let probe = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1m tmpfs \"$0\"")
        .arg(probe.path())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot mount a tmpfs in a user namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A bodiless request to a peer: `(status, body)`, or `None` when it does
/// not answer.
pub fn peer_http(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// A real Prometheus started for one test, on a free loopback port; killed
/// (and its data dir removed) when dropped.
pub struct Prometheus {
    _process: Killed,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

/// Starts `prometheus` with the YAML `config` and extra `flags`
/// (e.g. `--enable-feature=exemplar-storage`) and waits until it is ready.
#[track_caller]
pub fn start_prometheus(config: &str, flags: &[&str]) -> Prometheus {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, config).expect("write prometheus.yml");
    let addr = format!("127.0.0.1:{}", free_port());
    let process = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let process = Killed(process);
    wait_for("prometheus ready", Duration::from_secs(60), || {
        peer_http(&addr, "GET", "/-/ready").filter(|(status, _)| *status == 200)
    });
    Prometheus {
        _process: process,
        _dir: dir,
        addr,
    }
}
