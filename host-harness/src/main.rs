//! `host-harness`: runs a HomeConsole host with the plugins in a directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use host_harness::{App, Config};

/// A HomeConsole host that hot-loads plugins from a directory.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory watched for plugin libraries (.so).
    #[arg(long, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
    /// Directory for persistent state (storage, plugin cache).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Minimum log level: trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(d) = args.plugins_dir {
        config.plugins_dir = d;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = args.listen {
        config.listen = a;
    }
    if let Some(l) = args.log_level {
        config.host.log_level = l;
    }
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("host-worker")
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal().context("cannot register the shutdown signals")?;
        let app = App::build(config).await?;
        app.run(shutdown).await?;
        Ok(())
    })
}

/// Registers the shutdown signals now (before plugins load and the host says
/// "listening"), so a SIGTERM sent right after start is never lost to the
/// default action; the returned future completes on SIGINT or SIGTERM.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
