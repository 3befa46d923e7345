//! The one FFI-safe error type that crosses the boundary in both directions.

use abi_stable::std_types::{ROption, RString};
use abi_stable::StableAbi;

/// What went wrong, as a small fixed set that is safe to use as a metric label.
///
/// Only append new kinds at the end: the discriminants are part of the ABI.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The operation failed for a reason described in the message.
    Failed,
    /// The callee panicked; the panic was caught at the boundary.
    Panicked,
    /// The callee did not answer within its deadline.
    Timeout,
    /// The named service, route, key, plugin or module does not exist.
    NotFound,
    /// The caller's input was invalid.
    BadRequest,
    /// The callee does not implement the operation.
    Unsupported,
    /// The operation conflicts with existing state (e.g. a duplicate name).
    Conflict,
    /// The caller is not allowed to do this.
    Unauthorized,
    /// A dependency (storage, network peer) is not available right now.
    Unavailable,
}

impl ErrorKind {
    /// A stable snake_case name, usable as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Panicked => "panicked",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NotFound => "not_found",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a plugin panicked: the source location the guest's panic hook
/// recorded, carried as a value so nobody parses it back out of a message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Hash)]
pub struct PanicLocation {
    /// Source file as the compiler names it (e.g. `src/lib.rs`).
    pub file: RString,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl std::fmt::Display for PanicLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// An error with its kind and a human-readable message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PluginError {
    /// The category of the error.
    pub kind: ErrorKind,
    /// What happened, for humans. Never contains secrets.
    pub message: RString,
    /// For [`ErrorKind::Panicked`]: where the plugin panicked, when the
    /// panic hook recorded it (`RNone` for every other error).
    pub panic: ROption<PanicLocation>,
}

impl PluginError {
    /// Builds an error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: RString::from(message.into()),
            panic: ROption::RNone,
        }
    }

    /// An [`ErrorKind::Panicked`] error with the panic's location.
    pub fn panicked(message: impl Into<String>, location: Option<PanicLocation>) -> Self {
        PluginError {
            panic: location.into(),
            ..Self::new(ErrorKind::Panicked, message)
        }
    }

    /// Shorthand for [`ErrorKind::Failed`].
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// Shorthand for [`ErrorKind::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorKind; 9] = [
        ErrorKind::Failed,
        ErrorKind::Panicked,
        ErrorKind::Timeout,
        ErrorKind::NotFound,
        ErrorKind::BadRequest,
        ErrorKind::Unsupported,
        ErrorKind::Conflict,
        ErrorKind::Unauthorized,
        ErrorKind::Unavailable,
    ];

    #[test]
    fn discriminants_are_the_abi_order() {
        let discriminants: Vec<u8> = ALL.iter().map(|k| *k as u8).collect();
        assert_eq!(discriminants, (0..9).collect::<Vec<u8>>());
    }

    #[test]
    fn kind_names_are_distinct_snake_case_labels() {
        let names: Vec<&str> = ALL.iter().map(|k| k.as_str()).collect();
        for name in &names {
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(ErrorKind::NotFound.to_string(), "not_found");
        assert_eq!(ErrorKind::BadRequest.to_string(), "bad_request");
    }

    #[test]
    fn shorthands_pick_their_kind_and_keep_the_message() {
        let cases = [
            (PluginError::failed("a"), ErrorKind::Failed),
            (PluginError::bad_request("a"), ErrorKind::BadRequest),
            (PluginError::not_found("a"), ErrorKind::NotFound),
            (PluginError::unsupported("a"), ErrorKind::Unsupported),
            (PluginError::conflict("a"), ErrorKind::Conflict),
            (PluginError::unavailable("a"), ErrorKind::Unavailable),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind, kind);
            assert_eq!(error.message.as_str(), "a");
        }
    }

    #[test]
    fn a_panic_carries_its_location_as_a_value() {
        let at = PanicLocation {
            file: "src/lib.rs".into(),
            line: 32,
            column: 9,
        };
        let e = PluginError::panicked("panicked in tick: boom", Some(at.clone()));
        assert_eq!(e.kind, ErrorKind::Panicked);
        assert_eq!(e.panic.as_ref().into_option(), Some(&at));
        assert_eq!(at.to_string(), "src/lib.rs:32:9");
        assert_eq!(e.to_string(), "panicked: panicked in tick: boom");
        assert!(PluginError::failed("x").panic.is_none());
    }

    #[test]
    fn display_is_kind_then_message() {
        let e = PluginError::new(ErrorKind::Timeout, String::from("no answer in 5s"));
        assert_eq!(e.to_string(), "timeout: no answer in 5s");
        let as_std: &dyn std::error::Error = &e;
        assert!(as_std.source().is_none());
        assert_eq!(e.clone(), e);
        assert_ne!(e, PluginError::new(ErrorKind::Failed, "no answer in 5s"));
    }
}
