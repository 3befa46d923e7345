//! The provider's place in the plugin's life cycle: installed through the
//! host when the plugin starts (the host's slot moves to a new generation
//! and every other plugin's handles rebind to this instance at their next
//! use), closed when it stops (the host also removes and closes it, unless
//! a replacement instance has installed its own already).

use std::sync::atomic::{AtomicBool, Ordering};

use plugin_abi::{Host, PluginError};
use serde_json::{json, Value};

use super::Provider;
use crate::capability::Capability;

/// Installs and closes the [`Provider`].
pub struct TelemetryCapability {
    host: Host,
    provider: Provider,
    installed: AtomicBool,
}

impl TelemetryCapability {
    /// The capability for `provider`.
    pub fn new(host: Host, provider: Provider) -> Self {
        TelemetryCapability {
            host,
            provider,
            installed: AtomicBool::new(false),
        }
    }
}

impl Capability for TelemetryCapability {
    fn name(&self) -> &'static str {
        "telemetry"
    }

    fn start(&self) -> Result<(), PluginError> {
        // Started again after a stop: the same stores, open again.
        self.provider.reopen();
        // A host that refuses (another plugin name, a host going away)
        // leaves the plugin working without being the provider.
        match self.host.install_telemetry_provider(self.provider.boxed()) {
            Ok(()) => self.installed.store(true, Ordering::Relaxed),
            Err(e) => self
                .host
                .warn(&format!("telemetry provider not installed: {e}")),
        }
        Ok(())
    }

    fn stop(&self) {
        use plugin_abi::telemetry::TelemetryProvider;
        self.provider.close();
        self.installed.store(false, Ordering::Relaxed);
    }

    fn status(&self) -> Value {
        json!({
            "installed": self.installed.load(Ordering::Relaxed),
            "closed": self.provider.is_closed(),
        })
    }
}
