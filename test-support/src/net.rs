//! Loopback ports for tests: one to hand to a peer that cannot listen on
//! port 0, and one that nobody listens on.

use std::net::TcpListener;

/// A loopback port that was free a moment ago (for peers such as
/// Prometheus that cannot be told to listen on port 0).
#[track_caller]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A loopback port nobody listens on: bound, noted and closed again, so
/// connections to it are refused.
#[track_caller]
pub fn closed_port() -> u16 {
    free_port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_refuses_connections() {
        let port = closed_port();
        assert_ne!(port, 0);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
