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
    /// TOML configuration file (default: `$HOMECONSOLE_CONFIG` when set).
    /// `HOMECONSOLE_…`, `OTEL_…`, `SENTRY_…` and `RUST_LOG` variables apply
    /// on top of it (see docs/MONITORING.md, "Configuration").
    #[arg(long, value_name = "FILE", env = "HOMECONSOLE_CONFIG")]
    config: Option<PathBuf>,
    /// Log level or per-target filters (`warn,plugin.monitoring=debug`).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Serve a non-loopback `--listen` address without an API token
    /// (same as `[host.access] allow_public_bind = true`).
    #[arg(long)]
    allow_public_bind: bool,
    /// Print the effective configuration (file, environment and flags
    /// merged; secrets redacted) as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host_harness::config::Loaded {
        mut config,
        mut table,
        applied,
    } = Config::load(args.config.as_deref(), std::env::vars())?;
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
    if args.print_config {
        print_config(&config, &mut table, &applied);
        return Ok(());
    }
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

/// Prints the merged configuration tree with the resolved top-level values
/// and the log filter, secrets redacted. Keys absent here take their
/// documented defaults.
fn print_config(config: &Config, table: &mut toml::Table, applied: &[(String, String)]) {
    table.insert("listen".into(), config.listen.to_string().into());
    table.insert(
        "plugins_dir".into(),
        config.plugins_dir.display().to_string().into(),
    );
    table.insert(
        "data_dir".into(),
        config.data_dir.display().to_string().into(),
    );
    if let Some(toml::Value::Table(host)) = table.get_mut("host") {
        host.insert("log_level".into(), config.host.log_level.clone().into());
    } else {
        let mut host = toml::Table::new();
        host.insert("log_level".into(), config.host.log_level.clone().into());
        table.insert("host".into(), host.into());
    }
    println!("# Effective configuration (secrets redacted; absent keys take their defaults).");
    for (var, key) in applied {
        println!("# {key} set by {var}");
    }
    let redacted = host_harness::env::redacted(table);
    print!("{}", toml::to_string(&redacted).unwrap_or_default());
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
