//! Who may use the host's HTTP API, and from where: the `[host.access]`
//! settings, the tokens they name, and the request guard in front of every
//! route.
//!
//! The guard checks, in order: the `Host` header names this host (against
//! DNS rebinding), an `Origin` header is this host's own (against cross-site
//! requests), and, when an API token is configured, a bearer token is sent
//! (every `/api/v1` path except the public ones). It then records the
//! caller's [`Level`] for the handlers: admin actions (other plugins' storage
//! namespaces, plugins' admin services) need [`Level::Admin`].
//!
//! Tokens are compared in constant time and never logged (their `Debug`
//! output is redacted).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http_error::ApiError;

/// A secret string: `Debug` never shows it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// Whether `given` equals the secret, in time independent of where they
    /// differ and of their lengths (fixed-size digests are compared).
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (Sha256::digest(self.0.as_bytes()), Sha256::digest(given));
        bool::from(a.as_slice().ct_eq(b.as_slice()))
    }

    fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[host.access]`: tokens and the trust rules of the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSettings {
    /// Bearer token every `/api/v1` request needs (except `public_paths`).
    /// Unset: no token is needed, which is only allowed on loopback unless
    /// `allow_public_bind` is set.
    pub api_token: Option<Secret>,
    /// File holding the API token (surrounding whitespace is ignored).
    pub api_token_file: Option<PathBuf>,
    /// Bearer token of admin actions: other namespaces' storage, plugins'
    /// admin services. Unset: admin actions answer 403. It is also accepted
    /// wherever the API token is.
    pub admin_token: Option<Secret>,
    /// File holding the admin token.
    pub admin_token_file: Option<PathBuf>,
    /// Serve a non-loopback address without an API token.
    pub allow_public_bind: bool,
    /// Host names (besides `localhost` and IP addresses of this host) that
    /// requests may name in their `Host` header.
    pub allowed_hosts: Vec<String>,
    /// Paths under `/api/v1` that need no API token (they keep their own
    /// token rules): liveness, readiness, the metrics scrape, and the
    /// dashboard page (static; the data it fetches needs the token).
    pub public_paths: Vec<String>,
    /// Topics only their owner may publish, by owner (a plugin name):
    /// `"x.*"` is a prefix, anything else an exact topic. `internal.*`
    /// always belongs to the host. Nothing reserved is ever published over
    /// HTTP.
    pub topic_owners: BTreeMap<String, Vec<String>>,
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            api_token: None,
            api_token_file: None,
            admin_token: None,
            admin_token_file: None,
            allow_public_bind: false,
            allowed_hosts: Vec::new(),
            public_paths: [
                "/api/v1/monitoring/health/live",
                "/api/v1/monitoring/health/ready",
                "/api/v1/monitoring/metrics",
                "/api/v1/monitoring/dashboard",
            ]
            .map(str::to_owned)
            .to_vec(),
            topic_owners: BTreeMap::from([(
                "monitoring".to_owned(),
                vec!["monitoring.*".to_owned()],
            )]),
        }
    }
}

/// Why the access settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A token file could not be read.
    #[error("cannot read [host.access] {key} {path}: {source}")]
    TokenFile {
        /// `api_token_file` or `admin_token_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Both a token and its file, or an empty token.
    #[error("invalid [host.access]: {0}")]
    Invalid(String),
    /// A public address without an API token.
    #[error(
        "refusing to listen on {addr} without an API token: anyone who can reach that address could call every service. \
         Set [host.access] api_token (or api_token_file) in the config file, or, to serve it without a token anyway, \
         pass --allow-public-bind or set [host.access] allow_public_bind = true"
    )]
    PublicBind {
        /// The listen address.
        addr: SocketAddr,
    },
}

/// The topic's owner when it is reserved: `host` for `internal.*`, else the
/// plugin `topic_owners` gives it to.
pub fn topic_owner<'a>(topic: &str, owners: &'a BTreeMap<String, Vec<String>>) -> Option<&'a str> {
    if topic.starts_with("internal.") {
        return Some("host");
    }
    owners.iter().find_map(|(owner, patterns)| {
        patterns
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => p == topic,
            })
            .then_some(owner.as_str())
    })
}

/// How much a request proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No host token.
    Anonymous,
    /// The API token.
    Api,
    /// The admin token.
    Admin,
}

impl Level {
    /// The value of [`plugin_abi::ACCESS_HEADER`].
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Anonymous => "anonymous",
            Level::Api => "api",
            Level::Admin => "admin",
        }
    }
}

/// The caller of one request, as the guard established it (a request
/// extension).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// What it proved.
    pub level: Level,
    /// Whether an admin token is configured at all.
    pub admin_configured: bool,
}

impl Caller {
    /// The caller name service calls carry: [`plugin_abi::HTTP_ADMIN_CALLER`]
    /// with the admin token, else [`plugin_abi::HTTP_CALLER`].
    pub fn service_caller(&self) -> crate::observer::Name {
        if self.level == Level::Admin {
            crate::observer::Name::Static(&plugin_abi::HTTP_ADMIN_CALLER)
        } else {
            crate::observer::Name::Static(&plugin_abi::HTTP_CALLER)
        }
    }

    /// Passes admin callers; else 403 saying how to enable admin actions
    /// (no admin token configured) or 401 asking for the token.
    pub fn require_admin(&self, what: &str) -> Result<(), Refusal> {
        if self.level == Level::Admin {
            return Ok(());
        }
        Err(self.refusal(&format!("{what} needs the admin token")))
    }

    /// The answer to an admin action refused to this caller: 403 with how
    /// to enable admin actions when no admin token is configured, else 401.
    pub fn refusal(&self, reason: &str) -> Refusal {
        if self.admin_configured {
            unauthorized(&format!(
                "{reason}: send Authorization: Bearer <admin token>"
            ))
        } else {
            Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{reason}, and no admin token is configured: set [host.access] admin_token (or admin_token_file) in the host config and send Authorization: Bearer <admin token>"
                ),
            )
        }
    }
}

/// Why a request is refused; answered as a JSON error body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, kind: &'static str, message: String) -> Self {
        Refusal {
            status,
            kind,
            message,
        }
    }

    /// The HTTP status it answers.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A refusal is answered like every other host error; a 401 asks for the
/// bearer token.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let error = ApiError::new(r.status, r.kind, r.message);
        if r.status == StatusCode::UNAUTHORIZED {
            error.with_challenge()
        } else {
            error
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

fn unauthorized(message: &str) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned())
}

/// The resolved access rules of a running host.
#[derive(Debug)]
pub struct Access {
    api: Option<Secret>,
    admin: Option<Secret>,
    listen_ip: IpAddr,
    allowed_hosts: Vec<String>,
    public_paths: Vec<String>,
}

fn read_token(
    key: &'static str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, AccessError> {
    let token = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(AccessError::Invalid(format!(
                "set {key} or {key}_file, not both"
            )))
        }
        (Some(t), None) => t.clone(),
        (None, Some(path)) => read_file(key, path)?,
        (None, None) => return Ok(None),
    };
    if token.is_empty() {
        return Err(AccessError::Invalid(format!("{key} is empty")));
    }
    Ok(Some(Secret(token.0.trim().to_owned())))
}

fn read_file(key: &'static str, path: &Path) -> Result<Secret, AccessError> {
    std::fs::read_to_string(path)
        .map(Secret)
        .map_err(|source| AccessError::TokenFile {
            key: if key == "api_token" {
                "api_token_file"
            } else {
                "admin_token_file"
            },
            path: path.to_owned(),
            source,
        })
}

impl Access {
    /// Reads the tokens (from their files when so configured) and checks
    /// that `listen` may be served: a non-loopback address needs an API
    /// token or `allow_public_bind`.
    pub fn resolve(settings: &AccessSettings, listen: SocketAddr) -> Result<Access, AccessError> {
        let api = read_token("api_token", &settings.api_token, &settings.api_token_file)?;
        let admin = read_token(
            "admin_token",
            &settings.admin_token,
            &settings.admin_token_file,
        )?;
        if !listen.ip().is_loopback() && api.is_none() && !settings.allow_public_bind {
            return Err(AccessError::PublicBind { addr: listen });
        }
        Ok(Access {
            api,
            admin,
            listen_ip: listen.ip(),
            allowed_hosts: settings
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            public_paths: settings.public_paths.clone(),
        })
    }

    /// Whether an API token is configured.
    pub fn api_token_configured(&self) -> bool {
        self.api.is_some()
    }

    /// Whether the `Host` header's name may be served: `localhost` and IP
    /// addresses of this host (loopback, the listen address, any address
    /// when listening on all of them), or a configured name. A host name a
    /// DNS-rebinding page would send is none of these.
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let all = self.listen_ip.is_unspecified();
        if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.listen_ip || all;
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return self.listen_ip.is_loopback() || all;
        }
        self.allowed_hosts.contains(&name)
    }

    fn level(&self, headers: &HeaderMap) -> Option<Level> {
        let given = bearer(headers)?;
        // Both compared, whatever the first answers: no timing hint of which.
        let admin = self.admin.as_ref().is_some_and(|t| t.matches(given));
        let api = self.api.as_ref().is_some_and(|t| t.matches(given));
        if admin {
            Some(Level::Admin)
        } else if api {
            Some(Level::Api)
        } else {
            None
        }
    }

    /// Checks one request; the error is the answer.
    fn check(&self, request: &mut Request) -> Result<Caller, Refusal> {
        let headers = request.headers();
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        if let Some(host) = &host {
            if !self.host_allowed(host) {
                return Err(Refusal::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "misdirected_request",
                    format!(
                        "Host {host:?} does not name this host (listening on {}); requests must name localhost or one of its addresses, or a name listed in [host.access] allowed_hosts (this check blocks DNS rebinding)",
                        self.listen_ip
                    ),
                ));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            let same = match (authority, &host) {
                (Some(a), Some(h)) => a.eq_ignore_ascii_case(h),
                _ => false,
            };
            if !same {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "cross-origin request refused: Origin {origin:?} is not this host's own; the API serves only its own pages (this check blocks cross-site requests)"
                    ),
                ));
            }
        }
        let level = self.level(headers);
        let path = request.uri().path();
        let guarded = path.starts_with("/api/v1/") && !self.public_paths.iter().any(|p| p == path);
        if self.api.is_some() && guarded && level.is_none() {
            let message = if bearer(headers).is_some() {
                "wrong bearer token: send Authorization: Bearer <api token> (or the admin token)"
            } else {
                "this API needs a bearer token ([host.access] api_token): send Authorization: Bearer <api token>"
            };
            return Err(unauthorized(message));
        }
        let level = level.unwrap_or(Level::Anonymous);
        let headers = request.headers_mut();
        headers.insert(
            plugin_abi::ACCESS_HEADER,
            HeaderValue::from_static(level.as_str()),
        );
        Ok(Caller {
            level,
            admin_configured: self.admin.is_some(),
        })
    }
}

/// `host[:port]` → `host` (`[v6]:port` → `[v6]`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Whether a request with a body declares it as JSON
/// (`Content-Type: application/json`, parameters allowed). Requests without
/// a body pass.
pub fn json_body_declared(headers: &HeaderMap, body_len: usize) -> Result<(), Refusal> {
    if body_len == 0 {
        return Ok(());
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = declared.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "request body must be JSON sent as Content-Type: application/json, got {:?} (with curl: -H 'content-type: application/json')",
            if declared.is_empty() { "none" } else { declared }
        ),
    ))
}

/// The guard middleware: refuses what [`Access`] refuses, else records the
/// [`Caller`] as a request extension and runs the handler.
pub async fn guard(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    match access.check(&mut request) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(response) => response.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(listen: &str, settings: AccessSettings) -> Access {
        Access::resolve(&settings, listen.parse().unwrap()).unwrap()
    }

    #[test]
    fn host_names() {
        let a = access("127.0.0.1:8000", AccessSettings::default());
        assert!(a.host_allowed("127.0.0.1:8000"));
        assert!(a.host_allowed("localhost:8000"));
        assert!(a.host_allowed("LOCALHOST"));
        assert!(a.host_allowed("[::1]:8000"));
        assert!(!a.host_allowed("evil.example:8000"));
        assert!(!a.host_allowed("192.168.1.10:8000"));
        let settings = AccessSettings {
            allowed_hosts: vec!["Hub.Lan".into()],
            api_token: Some(Secret::new("t")),
            ..AccessSettings::default()
        };
        let a = access("0.0.0.0:8000", settings);
        assert!(a.host_allowed("192.168.1.10:8000"));
        assert!(a.host_allowed("hub.lan:8000"));
        assert!(!a.host_allowed("evil.example"));
    }

    #[test]
    fn public_bind_needs_a_token_or_the_flag() {
        let err =
            Access::resolve(&AccessSettings::default(), "0.0.0.0:0".parse().unwrap()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--allow-public-bind") && msg.contains("api_token"),
            "{msg}"
        );
        let allowed = AccessSettings {
            allow_public_bind: true,
            ..AccessSettings::default()
        };
        assert!(Access::resolve(&allowed, "0.0.0.0:0".parse().unwrap()).is_ok());
        assert!(Access::resolve(&AccessSettings::default(), "[::1]:0".parse().unwrap()).is_ok());
    }

    #[test]
    fn tokens_are_redacted_and_compared_exactly() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let settings = AccessSettings {
            admin_token: Some(s.clone()),
            ..AccessSettings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter"));
        assert!(!s.matches("hunter22"));
        assert!(!s.matches(""));
    }

    #[test]
    fn json_bodies_and_bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(json_body_declared(&h, 0).is_ok(), "no body, no type needed");
        let e = json_body_declared(&h, 2).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("application/jsonx", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(json_body_declared(&h, 2).is_ok(), ok, "{ct}");
        }
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  t0k "),
        );
        assert_eq!(bearer(&h), Some("t0k"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpw"),
        );
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn admin_refusals_say_what_to_do() {
        let unconfigured = Caller {
            level: Level::Api,
            admin_configured: false,
        };
        let r = unconfigured.require_admin("x").unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.to_string().contains("admin_token"), "{r}");
        let configured = Caller {
            admin_configured: true,
            ..unconfigured
        };
        assert_eq!(
            configured.require_admin("x").unwrap_err().status(),
            StatusCode::UNAUTHORIZED
        );
        let admin = Caller {
            level: Level::Admin,
            ..configured
        };
        assert!(admin.require_admin("x").is_ok());
        assert_eq!(&*admin.service_caller(), plugin_abi::HTTP_ADMIN_CALLER);
        assert_eq!(&*configured.service_caller(), plugin_abi::HTTP_CALLER);
    }

    #[test]
    fn reserved_topics() {
        let owners = AccessSettings::default().topic_owners;
        assert_eq!(
            topic_owner("internal.plugin.stopped", &owners),
            Some("host")
        );
        assert_eq!(
            topic_owner("monitoring.alert.firing", &owners),
            Some("monitoring")
        );
        assert_eq!(topic_owner("device.light1.command", &owners), None);
        assert_eq!(topic_owner("internals", &owners), None);
    }
}
