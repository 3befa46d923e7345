//! Sentry ingest: turns an HTTP request from a Sentry SDK into events.
//!
//! Why: any program with a Sentry SDK (Python scripts, other services) can
//! report into HomeConsole by setting its DSN to the monitoring plugin. This
//! module is pure (no server): the HTTP layer hands it method, path, headers
//! and body and maps the [`IngestError`] to a status with
//! [`IngestError::status`] and a stable [`IngestError::code`].
//!
//! Order of checks: method (405), path (404), authentication (401), project
//! (400), compressed size (413), decompression with a hard output limit
//! (413 — a gzip bomb stops at the limit, it is never inflated fully), then
//! framing and JSON (400).

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::Value;

use super::envelope::parse_envelope;
use super::event::ErrorEvent;
use super::protocol::from_sentry_event;

/// Limits and credentials for ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Accepted public keys (the user part of the DSN). Empty: every request is 401.
    pub public_keys: Vec<String>,
    /// Accepted numeric project ids. Empty: any numeric id.
    pub project_ids: Vec<String>,
    /// Largest body accepted as sent (default 1 MiB).
    pub max_compressed_bytes: usize,
    /// Largest body after decompression (default 10 MiB).
    pub max_decompressed_bytes: usize,
    /// Items per envelope (default 100).
    pub max_items: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            public_keys: Vec::new(),
            project_ids: Vec::new(),
            max_compressed_bytes: 1024 * 1024,
            max_decompressed_bytes: 10 * 1024 * 1024,
            max_items: 100,
        }
    }
}

/// An HTTP request as seen by the ingest endpoint.
#[derive(Debug, Clone, Copy)]
pub struct IngestRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path, possibly with a `?query`.
    pub path: &'a str,
    /// Headers (names case-insensitive).
    pub headers: &'a [(String, String)],
    /// Body as received.
    pub body: &'a [u8],
}

/// Which Sentry endpoint a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/api/{project}/envelope/`.
    Envelope,
    /// `/api/{project}/store/` (legacy: body is one event).
    Store,
}

/// What a request contained.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    /// Project id from the path.
    pub project_id: String,
    /// Endpoint used.
    pub endpoint: Endpoint,
    /// Error events (from `event` items).
    pub events: Vec<ErrorEvent>,
    /// Items accepted but not turned into events, by type
    /// (`transaction`, `session`, `client_report`, …).
    pub ignored_items: BTreeMap<String, u64>,
}

/// Why a request was refused. `status()` gives the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Not POST.
    #[error("method {0} not allowed; use POST")]
    MethodNotAllowed(String),
    /// Not a Sentry ingest path.
    #[error("unknown ingest path")]
    NotFound,
    /// No `sentry_key` in `X-Sentry-Auth`, `Authorization` or the query.
    #[error("missing sentry_key")]
    MissingKey,
    /// The key is not accepted.
    #[error("invalid sentry_key")]
    InvalidKey,
    /// The project id is not numeric or not configured.
    #[error("unknown project {0:?}")]
    UnknownProject(String),
    /// A `Content-Encoding` we do not decode.
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The compressed stream is corrupt.
    #[error("body could not be decompressed ({encoding}): {reason}")]
    BadCompression {
        /// Encoding named by the header.
        encoding: String,
        /// Decoder message.
        reason: String,
    },
    /// Envelope framing error.
    #[error("malformed envelope: {0}")]
    BadEnvelope(#[from] super::envelope::EnvelopeError),
    /// An event payload is not valid JSON (or not an object).
    #[error("invalid event JSON{}: {reason}", item.map(|i| format!(" in item {i}")).unwrap_or_default())]
    BadJson {
        /// Envelope item index, `None` for the store endpoint.
        item: Option<usize>,
        /// Parser message.
        reason: String,
    },
    /// Body larger than allowed.
    #[error("{what} body exceeds {limit} bytes")]
    TooLarge {
        /// `compressed` or `decompressed`.
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
}

impl IngestError {
    /// HTTP status for the response.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::MethodNotAllowed(_) => 405,
            IngestError::NotFound => 404,
            IngestError::MissingKey | IngestError::InvalidKey => 401,
            IngestError::TooLarge { .. } => 413,
            IngestError::UnknownProject(_)
            | IngestError::UnsupportedEncoding(_)
            | IngestError::BadCompression { .. }
            | IngestError::BadEnvelope(_)
            | IngestError::BadJson { .. } => 400,
        }
    }

    /// A stable machine-readable reason (a small fixed set, fit for a
    /// metric label or a JSON `error` field).
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::MethodNotAllowed(_) => "method_not_allowed",
            IngestError::NotFound => "not_found",
            IngestError::MissingKey => "missing_key",
            IngestError::InvalidKey => "invalid_key",
            IngestError::UnknownProject(_) => "unknown_project",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::BadCompression { .. } => "bad_compression",
            IngestError::BadEnvelope(_) => "bad_envelope",
            IngestError::BadJson { .. } => "bad_json",
            IngestError::TooLarge { .. } => "too_large",
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Parses `/api/{project}/envelope/` or `/api/{project}/store/` (trailing
/// slash optional, query ignored). Returns the raw project segment.
pub fn parse_path(path: &str) -> Option<(&str, Endpoint)> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let rest = path.strip_prefix("/api/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (project, endpoint) = rest.split_once('/')?;
    let endpoint = match endpoint {
        "envelope" => Endpoint::Envelope,
        "store" => Endpoint::Store,
        _ => return None,
    };
    (!project.is_empty()).then_some((project, endpoint))
}

/// Extracts `sentry_key` from a `Sentry k=v, k=v` auth value.
fn key_from_auth(value: &str) -> Option<String> {
    let value = value.trim();
    let rest = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sentry "))
        .map(|_| &value[7..])?;
    rest.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == "sentry_key").then(|| v.trim().to_string())
    })
}

fn key_from_query(path: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "sentry_key").then(|| v.to_string())
    })
}

/// The `sentry_key` a request carries: `X-Sentry-Auth`, then `Authorization`,
/// then the `sentry_key` query parameter.
pub fn request_key(req: &IngestRequest<'_>) -> Option<String> {
    header(req.headers, "x-sentry-auth")
        .and_then(key_from_auth)
        .or_else(|| header(req.headers, "authorization").and_then(key_from_auth))
        .or_else(|| key_from_query(req.path))
        .filter(|k| !k.is_empty())
}

/// Reads at most `limit` bytes from `reader`; more is [`IngestError::TooLarge`].
fn read_limited(reader: impl Read, limit: usize, encoding: &str) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::BadCompression {
            encoding: encoding.to_string(),
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(IngestError::TooLarge {
            what: "decompressed",
            limit,
        });
    }
    Ok(out)
}

/// Decodes the body per `Content-Encoding`, never producing more than
/// `limit` bytes. Supports identity, gzip/x-gzip, deflate (zlib, or raw
/// deflate as some clients send) and br.
pub fn decode_body(
    encoding: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, IngestError> {
    let enc = encoding.unwrap_or("").trim().to_ascii_lowercase();
    match enc.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err(IngestError::TooLarge {
                    what: "decompressed",
                    limit,
                });
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(body), limit, &enc),
        "deflate" => {
            // RFC 9110 says zlib-wrapped; tolerate raw deflate too.
            let zlib_header = body.len() >= 2
                && body[0] & 0x0f == 8
                && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
            if zlib_header {
                read_limited(flate2::read::ZlibDecoder::new(body), limit, &enc)
            } else {
                read_limited(flate2::read::DeflateDecoder::new(body), limit, &enc)
            }
        }
        "br" => read_limited(
            brotli_decompressor::Decompressor::new(body, 4096),
            limit,
            &enc,
        ),
        _ => Err(IngestError::UnsupportedEncoding(enc)),
    }
}

fn parse_event(
    payload: &[u8],
    item: Option<usize>,
    project: &str,
) -> Result<ErrorEvent, IngestError> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| IngestError::BadJson {
        item,
        reason: e.to_string(),
    })?;
    from_sentry_event(&value, project).map_err(|reason| IngestError::BadJson { item, reason })
}

/// Parses one ingest request into events plus counts of ignored items.
pub fn parse_request(
    config: &IngestConfig,
    req: &IngestRequest<'_>,
) -> Result<IngestOutcome, IngestError> {
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(IngestError::MethodNotAllowed(
            req.method.chars().take(16).collect(),
        ));
    }
    let (project, endpoint) = parse_path(req.path).ok_or(IngestError::NotFound)?;
    let key = request_key(req).ok_or(IngestError::MissingKey)?;
    if !config.public_keys.contains(&key) {
        return Err(IngestError::InvalidKey);
    }
    let numeric = project.len() <= 20 && project.bytes().all(|b| b.is_ascii_digit());
    if !numeric
        || !(config.project_ids.is_empty() || config.project_ids.iter().any(|p| p == project))
    {
        return Err(IngestError::UnknownProject(
            project.chars().take(32).collect(),
        ));
    }
    if req.body.len() > config.max_compressed_bytes {
        return Err(IngestError::TooLarge {
            what: "compressed",
            limit: config.max_compressed_bytes,
        });
    }
    let body = decode_body(
        header(req.headers, "content-encoding"),
        req.body,
        config.max_decompressed_bytes,
    )?;
    let mut outcome = IngestOutcome {
        project_id: project.to_string(),
        endpoint,
        events: Vec::new(),
        ignored_items: BTreeMap::new(),
    };
    match endpoint {
        Endpoint::Store => outcome.events.push(parse_event(&body, None, project)?),
        Endpoint::Envelope => {
            let envelope = parse_envelope(&body, config.max_items)?;
            for (i, item) in envelope.items.iter().enumerate() {
                if item.item_type == "event" {
                    outcome
                        .events
                        .push(parse_event(&item.payload, Some(i), project)?);
                } else {
                    let ty: String = item.item_type.chars().take(32).collect();
                    *outcome.ignored_items.entry(ty).or_insert(0) += 1;
                }
            }
        }
    }
    Ok(outcome)
}

/// Convenience: only the events of [`parse_request`].
pub fn parse_events(
    config: &IngestConfig,
    req: &IngestRequest<'_>,
) -> Result<Vec<ErrorEvent>, IngestError> {
    parse_request(config, req).map(|o| o.events)
}
