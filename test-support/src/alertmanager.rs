//! A real Alertmanager for one test: the notifier tests of the plugin and
//! the end-to-end alerting and TLS tests push alerts to it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net::free_port;
use crate::process::Killed;
use crate::wait::wait_for;

/// A `prometheus-alertmanager` on a free loopback port, with its config and
/// data in a directory of its own; killed (and the directory removed) when
/// dropped.
pub struct Alertmanager {
    process: Option<Killed>,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Alertmanager {
    /// Starts `prometheus-alertmanager` with the YAML `config` and extra
    /// `flags` (e.g. `--web.config.file=…`); does not wait (see
    /// [`Alertmanager::wait_ready`]). Needs the binary: check with
    /// [`require_binary!`](crate::require_binary) first.
    #[track_caller]
    pub fn start(config: &str, flags: &[String]) -> Alertmanager {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "test-support-alertmanager-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("alertmanager dir");
        let config_file = dir.join("alertmanager.yml");
        std::fs::write(&config_file, config).expect("write alertmanager.yml");
        let process = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager");
        Alertmanager {
            process: Some(Killed(process)),
            dir,
            port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its working directory (for extra files such as a web config).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits (at most `max`) until `GET /-/ready` answers 200 over plain HTTP.
    #[track_caller]
    pub fn wait_ready(&self, max: Duration) {
        let addr = format!("127.0.0.1:{}", self.port);
        wait_for("alertmanager ready", max, || {
            let mut s = TcpStream::connect(&addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            write!(
                s,
                "GET /-/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).ok()?;
            answer.starts_with("HTTP/1.1 200").then_some(())
        });
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        drop(self.process.take()); // killed before its directory goes
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_becomes_ready() {
        crate::require_binary!("prometheus-alertmanager");
        let am = Alertmanager::start(
            "route:\n  receiver: none\nreceivers:\n  - name: none\n",
            &[],
        );
        am.wait_ready(Duration::from_secs(60));
        assert!(am.dir().join("alertmanager.yml").exists());
        assert_eq!(am.url(), format!("http://127.0.0.1:{}", am.port));
    }
}
