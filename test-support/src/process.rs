//! Peer processes a test starts (Prometheus, Alertmanager…) must not
//! outlive it, even when an assertion fails half-way.

use std::process::Child;

/// A peer process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_kills_the_process() {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        drop(Killed(child));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        // Reaped: the pid is gone (or reused by an unrelated process).
        assert!(
            status.map_or(true, |s| !s.contains("Name:\tsleep")),
            "sleep {pid} still runs"
        );
    }
}
