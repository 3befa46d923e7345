//! Everything the plugin's outbound HTTP clients (OTLP exporter, Sentry
//! forwarder, Alertmanager/webhook notifiers, remote_write) share: one way to
//! build a TLS-capable agent, one retry/backoff rule with one `Retry-After`
//! parser, and one place where the last delivery error is kept and logged.
//! Each client keeps its own queue and counters; only these rules are common.

pub mod errors;
pub mod retry;
pub mod tls;

pub use errors::LastError;
pub use retry::{parse_retry_after, Backoff};
pub use tls::{agent, TlsError, TlsSettings};
