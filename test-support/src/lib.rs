//! Test helpers shared by the `host-harness` end-to-end tests and the
//! `monitoring-plugin` integration tests, so that each exists once:
//!
//! - [`RecordingPeer`]: a local HTTP(S) server on `127.0.0.1:0` that records
//!   every request and answers with scripted replies (429 + `Retry-After`,
//!   503, slow answers…), standing in for a collector, a Sentry, a webhook;
//! - [`wait_for`] / [`wait_until`]: polling with a named condition and a
//!   deadline, never a bare sleep as an assertion;
//! - [`require_peer!`]: a test that needs an external peer (promtool,
//!   Prometheus, a Python SDK…) fails under CI when the peer is missing and
//!   says `SKIPPED: <why>` otherwise;
//! - [`Promtool`]: `promtool check metrics`, `check rules` and `test rules`;
//! - [`Alertmanager`]: a real Alertmanager on a free port for one test;
//! - [`free_port`] / [`closed_port`] for peers that cannot take port 0 and
//!   for "nobody listens here" cases, and [`Killed`] so a peer process
//!   dies with its test;
//! - [`system_library`] / [`mapped_library`]: real shared objects that are
//!   not plugins, found in `/proc/self/maps`;
//! - [`bench::print_ratios`]: a bench's median beside its peer's, read back
//!   from criterion's estimates of the same run.

mod alertmanager;
pub mod bench;
mod net;
mod peer;
mod process;
mod promtool;
mod skip;
mod system;
mod wait;

pub use alertmanager::Alertmanager;
pub use net::{closed_port, free_port};
pub use peer::{PeerBuilder, RecordingPeer, Reply, Request};
pub use process::Killed;
pub use promtool::{Promtool, PromtoolOutput};
pub use skip::{in_ci, installed, peer_missing};
pub use system::{mapped_library, system_library};
pub use wait::{wait_for, wait_until};
