//! Assembles and runs a host: core, HTTP server, plugin watcher, tick loop
//! and watchdog. Tests run it in-process through [`App`]; `main.rs` is a
//! thin CLI around it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plugin_abi::{ErrorKind, HealthStatus, PluginState};
use serde_json::json;
use tokio::net::TcpListener;

use crate::access::Access;
use crate::config::Config;
use crate::core::HostCore;
use crate::logger;
use crate::plugins::invoke::{admit_inline, run_admitted};
use crate::plugins::{watcher, PluginInstance};

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Storage could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The access settings are unusable, or the address may not be served.
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    /// The server failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// A built host, ready to run.
pub struct App {
    core: Arc<HostCore>,
    access: Arc<Access>,
    listener: TcpListener,
}

impl App {
    /// Opens storage and binds the listen address. Must run inside a tokio
    /// runtime.
    pub async fn build(config: Config) -> Result<App, AppError> {
        if let Ok(filter) = logger::LogFilter::parse(&config.host.log_level) {
            logger::set_filter(filter);
        }
        let addr = config.listen;
        // Before anything is opened: a public address without a token is
        // refused outright.
        let access = Arc::new(Access::resolve(&config.host.access, addr)?);
        let core = HostCore::new(config, tokio::runtime::Handle::current())?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind { addr, source })?;
        Ok(App {
            core,
            access,
            listener,
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The core, for in-process tests and benches.
    pub fn core(&self) -> &Arc<HostCore> {
        &self.core
    }

    /// Loads plugins, serves until `shutdown` completes, then stops plugins
    /// in reverse load order.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let App {
            core,
            access,
            listener,
        } = self;
        let addr = listener.local_addr().map_err(AppError::Serve)?;
        let c = core.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // One startup trace: a root for this start, a child per plugin.
            let root = c.begin_startup();
            {
                let _current = crate::tracecontext::enter(Some(root));
                watcher::initial_scan(&c);
            }
            c.end_startup();
        })
        .await;

        let stop = Arc::new(AtomicBool::new(false));
        let watcher_thread = watcher::spawn(core.clone(), stop.clone()).ok();
        let watchdog_thread = spawn_watchdog(core.clone(), stop.clone()).ok();
        let ticker = tokio::spawn(tick_loop(core.clone()));

        logger::info(
            "api",
            "listening",
            json!({"addr": addr.to_string(), "api_token": access.api_token_configured(), "plugins_dir": core.config.plugins_dir.display().to_string(),
                   "data_dir": core.config.data_dir.display().to_string()}),
        );
        let served = axum::serve(listener, crate::api::router(core.clone(), access))
            .with_graceful_shutdown(shutdown)
            .await;

        logger::info("host", "shutting down", json!({}));
        ticker.abort();
        stop.store(true, Ordering::Release);
        if let Some(t) = watcher_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let c = core.clone();
        let _ = tokio::task::spawn_blocking(move || c.plugins.stop_all(&c)).await;
        if let Some(t) = watchdog_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        logger::info("host", "stopped", json!({}));
        served.map_err(AppError::Serve)
    }
}

/// Sends the periodic tick (and asks for the plugin's health) to every
/// running plugin; a plugin still busy with its previous tick is skipped.
async fn tick_loop(core: Arc<HostCore>) {
    let mut interval =
        tokio::time::interval(Duration::from_millis(core.config.host.tick_interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        for instance in core.plugins.live_instances() {
            if instance.state() == PluginState::Loaded {
                continue;
            }
            if instance.ticking.swap(true, Ordering::AcqRel) {
                continue;
            }
            let core = core.clone();
            tokio::task::spawn_blocking(move || tick_one(&core, &instance));
        }
    }
}

fn tick_one(core: &Arc<HostCore>, instance: &Arc<PluginInstance>) {
    let now = crate::time::now_unix_ms();
    let limit = core.config.callback_timeout();
    // An open circuit skips the tick and the health call; a half-open one
    // takes the tick as its trial call.
    if let Ok(admission) = admit_inline(instance) {
        let _guard = core.inflight.enter(instance, "tick", "", limit, None);
        let result = run_admitted(instance, admission, limit, |inst| inst.plugin.tick(now));
        if let Err(e) = result {
            logger::warn(
                "host",
                "plugin tick failed",
                json!({"plugin": &*instance.name, "error": e.to_string()}),
            );
            core.report_plugin_error(
                "tick",
                &instance.name,
                &e.to_string(),
                e.panic.as_ref().into_option(),
            );
            if e.kind == ErrorKind::Panicked
                && instance.set_state(PluginState::Error, Some(e.message.to_string()))
            {
                core.plugin_state_changed(instance, "error");
            }
        }
    }
    if let Ok(admission) = admit_inline(instance) {
        let _guard = core.inflight.enter(instance, "health", "", limit, None);
        match run_admitted(instance, admission, limit, |inst| inst.plugin.health()) {
            Ok(report) => instance.set_health(report.status, report.message.into_string()),
            Err(e) => {
                instance.set_health(HealthStatus::Unhealthy, e.to_string());
                if e.kind == ErrorKind::Panicked
                    && instance.set_state(PluginState::Error, Some(e.message.to_string()))
                {
                    core.report_plugin_error(
                        "health",
                        &instance.name,
                        &e.to_string(),
                        e.panic.as_ref().into_option(),
                    );
                    core.plugin_state_changed(instance, "error");
                }
            }
        }
    }
    instance.ticking.store(false, Ordering::Release);
}

/// Watches callbacks in flight: one busy longer than the stall threshold
/// is reported; one busy past its deadline is reported as hung and opens
/// its plugin's circuit until it returns. Publishes circuit state changes.
fn spawn_watchdog(
    core: Arc<HostCore>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let stall = Duration::from_millis(core.config.host.stall_threshold_ms);
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                core.watchdog_pass(stall);
                core.publish_circuit_changes();
            }
        })
}
