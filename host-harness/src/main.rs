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
    /// Serve a non-loopback `--listen` address without an API token
    /// (same as `[host.access] allow_public_bind = true`).
    #[arg(long)]
    allow_public_bind: bool,
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
    if args.allow_public_bind {
        config.host.access.allow_public_bind = true;
    }
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("host-worker")
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        // Install the signal handlers before anything else, so a SIGTERM
        // that arrives while plugins load still means "shut down cleanly".
        let shutdown = shutdown_signal()?;
        let app = App::build(config).await?;
        app.run(shutdown).await?;
        Ok(())
    })
}

/// Registers SIGINT and SIGTERM handlers now and returns a future that
/// completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
