//! TLS for outbound connections (rustls): the system trust store plus an
//! optional extra CA file, and an optional client certificate for mutual
//! TLS. Every outbound agent of the plugin is built here so that `https://`
//! works the same for Sentry, OTLP, Alertmanager, webhooks and remote_write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// TLS settings of outbound connections (`[plugins.monitoring.tls]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of extra CA certificates trusted on top of the system roots
    /// (for a private CA).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to servers asking for a client
    /// certificate (mutual TLS); needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Ignore the system trust store: trust only `ca_file`.
    pub ca_file_only: bool,
}

/// Why a TLS setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read TLS file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("TLS file {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Only one of the client certificate and key is set.
    #[error("tls.client_cert_file and tls.client_key_file must be set together")]
    HalfClientCert,
    /// No root certificate at all could be found.
    #[error("no trusted root certificates: the system store is empty and no tls.ca_file is set")]
    NoRoots,
}

fn read_pem(path: &Path) -> Result<Vec<PemItem<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    ureq::tls::parse_pem(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

fn certs_in(path: &Path) -> Result<Vec<Certificate<'static>>, TlsError> {
    let certs: Vec<Certificate<'static>> = read_pem(path)?
        .into_iter()
        .filter_map(|item| match item {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn key_in(path: &Path) -> Result<PrivateKey<'static>, TlsError> {
    read_pem(path)?
        .into_iter()
        .find_map(|item| match item {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| TlsError::Pem {
            path: path.to_owned(),
            reason: "no PRIVATE KEY block".into(),
        })
}

/// Root certificates of the operating system's trust store (empty when it
/// has none; unreadable entries are skipped).
fn system_roots() -> Vec<Certificate<'static>> {
    rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

impl TlsSettings {
    /// The ureq TLS configuration: system roots plus `ca_file` (or only
    /// `ca_file`), and the client certificate when set.
    pub fn tls_config(&self) -> Result<TlsConfig, TlsError> {
        let mut roots = if self.ca_file_only {
            Vec::new()
        } else {
            system_roots()
        };
        if let Some(ca) = &self.ca_file {
            roots.extend(certs_in(ca)?);
        }
        let root_certs = if roots.is_empty() {
            if self.ca_file_only {
                return Err(TlsError::NoRoots);
            }
            // No system store on this machine: Mozilla's roots compiled in.
            RootCerts::WebPki
        } else {
            RootCerts::new_with_certs(&roots)
        };
        let client_cert = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                Some(ClientCert::new_with_certs(&certs_in(cert)?, key_in(key)?))
            }
            _ => return Err(TlsError::HalfClientCert),
        };
        Ok(TlsConfig::builder()
            .root_certs(root_certs)
            .client_cert(client_cert)
            .build())
    }
}

/// A blocking agent for one outbound destination: `https://` with `tls`,
/// every HTTP status returned as a response (callers decide what to retry),
/// and `timeout` per request.
pub fn agent(timeout: Duration, tls: &TlsSettings) -> Result<ureq::Agent, TlsError> {
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls.tls_config()?)
        .build()
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsSettings {
            ca_file: Some(dir.path().join("nope.pem")),
            ..Default::default()
        };
        let e = missing.tls_config().unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let e = TlsSettings {
            ca_file: Some(empty),
            ..Default::default()
        }
        .tls_config()
        .unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let half = TlsSettings {
            client_cert_file: Some(dir.path().join("c.pem")),
            ..Default::default()
        };
        assert_eq!(half.tls_config().unwrap_err(), TlsError::HalfClientCert);
        let only = TlsSettings {
            ca_file_only: true,
            ..Default::default()
        };
        assert_eq!(only.tls_config().unwrap_err(), TlsError::NoRoots);
        assert!(TlsSettings::default().tls_config().is_ok());
    }
}
