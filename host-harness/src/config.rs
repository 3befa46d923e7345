//! Host configuration: command-line flags, an optional TOML file, defaults.
//!
//! Flags win over the file, the file wins over defaults. Each plugin's
//! section (`[plugins.<name>]`) is handed to it as JSON at construction.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// An environment variable cannot be applied.
    #[error("invalid environment: {0}")]
    Env(#[from] crate::env::EnvError),
}

/// Tunables of the host runtime, all with defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSettings {
    /// Deadline of a service call, milliseconds.
    pub service_timeout_ms: u64,
    /// Deadline of any other plugin callback (start, stop, HTTP, tick, health,
    /// constructor), milliseconds.
    pub callback_timeout_ms: u64,
    /// Interval of the periodic tick sent to plugins, milliseconds.
    pub tick_interval_ms: u64,
    /// Capacity of each subscriber's event queue.
    pub event_queue_capacity: usize,
    /// Bytes of events each subscriber's queue may hold (topic, payload and
    /// bookkeeping); an event that does not fit is dropped and counted.
    pub event_queue_bytes: usize,
    /// Reports each observer holds per reporting thread (each thread that
    /// reports gets its own ring of this capacity per observer).
    pub observer_queue_capacity: usize,
    /// Bytes of report messages (error texts, log lines) each observer's
    /// queue may hold; a report that does not fit is dropped and counted.
    pub observer_queue_bytes: usize,
    /// How often observer queues are drained, milliseconds.
    pub observer_flush_ms: u64,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// How long a plugin file must stay unchanged before it is loaded, ms.
    pub plugin_settle_ms: u64,
    /// How often the plugins directory is polled when file-system
    /// notifications are unavailable, ms; with notifications, a safety
    /// rescan runs 20 times less often.
    pub plugin_scan_ms: u64,
    /// A plugin callback busy longer than this is reported as stalled, ms.
    pub stall_threshold_ms: u64,
    /// Circuit breaker, bulkhead and call-depth limits (`[host.resilience]`).
    pub resilience: ResilienceSettings,
    /// Extra storage namespaces a plugin may use, by plugin name (see
    /// [`crate::storage::namespace_allowed`]); `"*"` grants every
    /// namespace, `"x*"` a prefix.
    pub storage_grants: std::collections::BTreeMap<String, Vec<String>>,
    /// Minimum log level, or per-target filters in `RUST_LOG` syntax:
    /// `warn,plugin.monitoring=debug,bus=error` (host lines have targets like
    /// `bus`, `api`, `plugin_manager`; a plugin's lines `plugin.<name>`).
    pub log_level: String,
    /// Fraction of new traces (roots: HTTP requests without a sampled
    /// `traceparent`, calls made outside any span) that are sampled, by
    /// trace id. Children follow their parent. Sampled-out operations still
    /// propagate their context; their reports carry flags `00`.
    pub trace_sample_ratio: f64,
    /// Who may use the HTTP API (`[host.access]`): tokens, allowed host
    /// names, reserved topics.
    pub access: crate::access::AccessSettings,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            service_timeout_ms: 5_000,
            callback_timeout_ms: 5_000,
            tick_interval_ms: 1_000,
            event_queue_capacity: 1_024,
            observer_queue_capacity: 8_192,
            event_queue_bytes: 16 << 20,
            observer_queue_bytes: 8 << 20,
            observer_flush_ms: 20,
            max_body_bytes: 1 << 20,
            plugin_settle_ms: 300,
            plugin_scan_ms: 500,
            stall_threshold_ms: 1_000,
            resilience: ResilienceSettings::default(),
            storage_grants: std::collections::BTreeMap::new(),
            log_level: "info".into(),
            trace_sample_ratio: 1.0,
            access: crate::access::AccessSettings::default(),
        }
    }
}

/// How the host protects itself from slow, hung or runaway plugins
/// (`[host.resilience]`): a circuit breaker and a bulkhead per plugin
/// instance, and a depth limit on nested plugin → plugin calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResilienceSettings {
    /// Consecutive timed-out calls that open a plugin's circuit (a call
    /// still hung past its deadline opens it at once).
    pub breaker_timeouts: u32,
    /// First cooldown of an open circuit, ms: counted from the moment its
    /// last hung call returned; doubles after each failed trial.
    pub cooldown_ms: u64,
    /// Largest cooldown, ms.
    pub cooldown_max_ms: u64,
    /// Calls in flight to one plugin (services and HTTP routes) before
    /// further calls are refused: the blocking-pool threads one hung plugin
    /// can pin.
    pub max_in_flight: usize,
    /// Longest chain of nested plugin callbacks (`a → b → a …`) a call may
    /// start from.
    pub max_call_depth: usize,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        ResilienceSettings {
            breaker_timeouts: 3,
            cooldown_ms: 5_000,
            cooldown_max_ms: 300_000,
            max_in_flight: 32,
            max_call_depth: 16,
        }
    }
}

impl ResilienceSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("breaker_timeouts", self.breaker_timeouts as u64),
            ("cooldown_ms", self.cooldown_ms),
            ("max_in_flight", self.max_in_flight as u64),
            ("max_call_depth", self.max_call_depth as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "host.resilience.{name} must be greater than 0"
                )));
            }
        }
        if self.cooldown_max_ms < self.cooldown_ms {
            return Err(ConfigError::Invalid(format!(
                "host.resilience.cooldown_max_ms ({}) must not be below cooldown_ms ({})",
                self.cooldown_max_ms, self.cooldown_ms
            )));
        }
        Ok(())
    }
}

/// The config file's shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Directory watched for plugin libraries.
    pub plugins_dir: Option<PathBuf>,
    /// Directory of persistent state.
    pub data_dir: Option<PathBuf>,
    /// Runtime tunables.
    pub host: HostSettings,
    /// Per-plugin configuration, keyed by plugin name.
    pub plugins: toml::Table,
}

/// What [`Config::load`] read.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The checked configuration.
    pub config: Config,
    /// The file's tree with the environment applied.
    pub table: toml::Table,
    /// Variables applied, with the key each set.
    pub applied: Vec<(String, String)>,
}

/// The resolved configuration of a host.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Directory watched for plugin libraries.
    pub plugins_dir: PathBuf,
    /// Directory of persistent state (storage, plugin cache).
    pub data_dir: PathBuf,
    /// Runtime tunables.
    pub host: HostSettings,
    /// Per-plugin configuration as JSON objects, keyed by plugin name.
    pub plugins: serde_json::Map<String, serde_json::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            plugins_dir: PathBuf::from("plugins"),
            data_dir: PathBuf::from("data"),
            host: HostSettings::default(),
            plugins: serde_json::Map::new(),
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// The configuration as `main` builds it: the file (when given) with the
    /// environment applied on top (see [`crate::env`]), then checked.
    /// Also returns the merged tree (for `--print-config`) and the
    /// variables applied with the key each set.
    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let (text, shown) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
                p.to_owned(),
            ),
            None => (String::new(), PathBuf::from("(environment)")),
        };
        let parse_err = |message: String| ConfigError::Parse {
            path: shown.clone(),
            message,
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| parse_err(e.to_string()))?;
        let applied = crate::env::apply(&mut table, vars)?;
        let config = if applied.is_empty() {
            // Untouched by the environment: parse the text for line numbers.
            Self::from_toml(&text).map_err(|e| match e {
                ConfigError::Parse { message, .. } => parse_err(message),
                other => other,
            })?
        } else {
            let text = toml::to_string(&table).map_err(|e| parse_err(e.to_string()))?;
            Self::from_toml(&text).map_err(|e| match e {
                ConfigError::Parse { message, .. } => {
                    parse_err(format!("{message} (after applying the environment)"))
                }
                other => other,
            })?
        };
        Ok(Loaded {
            config,
            table,
            applied,
        })
    }

    /// Parses TOML config text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        let defaults = Config::default();
        let plugins = match serde_json::to_value(&file.plugins) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let config = Config {
            listen: file.listen.unwrap_or(defaults.listen),
            plugins_dir: file.plugins_dir.unwrap_or(defaults.plugins_dir),
            data_dir: file.data_dir.unwrap_or(defaults.data_dir),
            host: file.host,
            plugins,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.host;
        let positive = [
            ("host.service_timeout_ms", h.service_timeout_ms),
            ("host.callback_timeout_ms", h.callback_timeout_ms),
            ("host.tick_interval_ms", h.tick_interval_ms),
            ("host.observer_flush_ms", h.observer_flush_ms),
            ("host.plugin_scan_ms", h.plugin_scan_ms),
            ("host.stall_threshold_ms", h.stall_threshold_ms),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be greater than 0"
                )));
            }
        }
        if h.event_queue_capacity == 0 || h.observer_queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "queue capacities must be greater than 0".into(),
            ));
        }
        if h.event_queue_bytes < 4_096 || h.observer_queue_bytes < 4_096 {
            return Err(ConfigError::Invalid(
                "host.event_queue_bytes and host.observer_queue_bytes must be at least 4096".into(),
            ));
        }
        if !(0.0..=1.0).contains(&h.trace_sample_ratio) {
            return Err(ConfigError::Invalid(format!(
                "host.trace_sample_ratio must be between 0 and 1, got {}",
                h.trace_sample_ratio
            )));
        }
        h.resilience.validate()?;
        if let Err(e) = crate::logger::LogFilter::parse(&h.log_level) {
            return Err(ConfigError::Invalid(format!("host.log_level: {e}")));
        }
        Ok(())
    }

    /// The JSON config of one plugin (`{}` when none).
    pub fn plugin_config(&self, name: &str) -> String {
        self.plugins
            .get(name)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "{}".into())
    }

    /// Service call deadline.
    pub fn service_timeout(&self) -> Duration {
        Duration::from_millis(self.host.service_timeout_ms)
    }

    /// Deadline of other plugin callbacks.
    pub fn callback_timeout(&self) -> Duration {
        Duration::from_millis(self.host.callback_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_file() {
        let c = Config::from_toml(
            r#"
            listen = "127.0.0.1:9000"
            [host]
            tick_interval_ms = 250
            [plugins.demo-devices]
            fail_ratio = 0.5
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.host.tick_interval_ms, 250);
        assert_eq!(c.host.service_timeout_ms, 5_000);
        assert_eq!(c.plugin_config("demo-devices"), r#"{"fail_ratio":0.5}"#);
        assert_eq!(c.plugin_config("other"), "{}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let err = Config::from_toml("[host]\ntick_interval = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = Config::from_toml("[host]\ntick_interval_ms = 0").unwrap_err();
        assert!(
            err.to_string()
                .contains("tick_interval_ms must be greater than 0"),
            "{err}"
        );
        let err = Config::from_toml("[host]\ntrace_sample_ratio = 1.5").unwrap_err();
        assert!(err.to_string().contains("trace_sample_ratio"), "{err}");
        let err = Config::from_toml("[host]\nlog_level = \"loud\"").unwrap_err();
        assert!(err.to_string().contains("log_level"), "{err}");
        let err = Config::from_toml("[host.resilience]\nmax_in_flight = 0").unwrap_err();
        assert!(err.to_string().contains("max_in_flight"), "{err}");
        let err =
            Config::from_toml("[host.resilience]\ncooldown_ms = 10000\ncooldown_max_ms = 5000")
                .unwrap_err();
        assert!(err.to_string().contains("cooldown_max_ms"), "{err}");
        let c = Config::from_toml("[host.resilience]\nmax_call_depth = 4").unwrap();
        assert_eq!(c.host.resilience.max_call_depth, 4);
        assert_eq!(c.host.resilience.max_in_flight, 32);
    }
}
