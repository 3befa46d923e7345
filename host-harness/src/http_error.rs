//! The JSON error body of every HTTP answer the host gives itself
//! (`{"error": {"kind": …, "message": …}}`, plus `panic_location: {file,
//! line, column}` for a plugin panic whose location the plugin recorded;
//! see `PluginError::panic` in plugin-abi): the API handlers and the access
//! guard both answer with an [`ApiError`], so the body shape and the
//! plugin-error → status mapping exist once.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use plugin_abi::{ErrorKind, PanicLocation, PluginError};
use serde_json::json;

/// An HTTP error answer: status, machine-readable kind and a clear message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    status: StatusCode,
    kind: Cow<'static, str>,
    message: String,
    /// Whether the answer asks for a bearer token (`WWW-Authenticate`).
    challenge: bool,
    /// Where the plugin behind the error panicked, if it did.
    panic: Option<PanicLocation>,
}

/// The HTTP status a plugin error kind answers with.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        // Failed, Panicked, and any kind added later.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// An error with its status, kind and message.
    pub fn new(
        status: StatusCode,
        kind: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind: kind.into(),
            message: message.into(),
            challenge: false,
            panic: None,
        }
    }

    /// The same error, asking for a bearer token (`WWW-Authenticate:
    /// Bearer`): the access guard's 401 answers.
    pub fn with_challenge(mut self) -> ApiError {
        self.challenge = true;
        self
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }

    /// The status it answers.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its kind (`bad_request`, `timeout`, …).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A plugin's (or the core's) error: the status of its kind, its kind and
/// message unchanged.
impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> ApiError {
        let kind = e.kind();
        ApiError {
            panic: e.panic.into_option(),
            ..ApiError::new(status_of(kind), kind.as_str(), e.message.into_string())
        }
    }
}

/// The JSON body, and `WWW-Authenticate: Bearer` when it asks for a token.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let challenge = self.challenge;
        let mut error = json!({"kind": self.kind, "message": self.message});
        if let Some(at) = &self.panic {
            error["panic_location"] =
                json!({"file": at.file.as_str(), "line": at.line, "column": at.column});
        }
        let mut r = (self.status, Json(json!({ "error": error }))).into_response();
        if challenge {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(r: Response) -> (StatusCode, Option<String>, serde_json::Value) {
        let status = r.status();
        let challenge = r
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(r.into_body(), usize::MAX))
            .unwrap();
        (status, challenge, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn every_plugin_error_kind_maps_to_its_status_with_kind_and_message() {
        let cases = [
            (ErrorKind::BadRequest, 400, "bad_request"),
            (ErrorKind::NotFound, 404, "not_found"),
            (ErrorKind::Unauthorized, 401, "unauthorized"),
            (ErrorKind::Conflict, 409, "conflict"),
            (ErrorKind::Timeout, 504, "timeout"),
            (ErrorKind::Unavailable, 503, "unavailable"),
            (ErrorKind::Unsupported, 501, "unsupported"),
            (ErrorKind::Failed, 500, "failed"),
            (ErrorKind::Panicked, 500, "panicked"),
        ];
        for (kind, status, name) in cases {
            let e = ApiError::from(PluginError::new(kind, "why"));
            assert_eq!(e.status().as_u16(), status, "{kind:?}");
            assert_eq!(e.kind(), kind.as_str());
            let (s, challenge, body) = body_of(e.into_response());
            assert_eq!(s.as_u16(), status);
            assert_eq!(challenge, None, "only the access guard asks for a token");
            assert_eq!(
                body,
                json!({"error": {"kind": name, "message": "why"}}),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_plugin_panic_answers_with_its_location_as_fields() {
        let at = PanicLocation {
            file: "src/lib.rs".into(),
            line: 32,
            column: 9,
        };
        let e = ApiError::from(PluginError::panicked("panicked in tick: boom", Some(at)));
        let (s, _, body) = body_of(e.into_response());
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            json!({"error": {"kind": "panicked", "message": "panicked in tick: boom",
                "panic_location": {"file": "src/lib.rs", "line": 32, "column": 9}}})
        );
    }

    #[test]
    fn a_challenge_adds_www_authenticate_and_keeps_the_body() {
        let e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send the token")
            .with_challenge();
        let (s, challenge, body) = body_of(e.into_response());
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some("Bearer"));
        assert_eq!(
            body,
            json!({"error": {"kind": "unauthorized", "message": "send the token"}})
        );
    }

    #[test]
    fn the_helpers_name_their_status_and_kind() {
        for (e, status, kind) in [
            (ApiError::bad_request("x"), 400, "bad_request"),
            (ApiError::not_found("x"), 404, "not_found"),
            (ApiError::method_not_allowed("x"), 405, "method_not_allowed"),
        ] {
            assert_eq!(
                (e.status().as_u16(), e.kind(), e.message()),
                (status, kind, "x")
            );
        }
    }
}
