//! The Prometheus name syntax, written once for both sides of the ABI.
//!
//! A plugin's telemetry descriptors are checked here before they cross the
//! boundary, and the monitoring plugin checks every name that reaches its
//! store (and every label name in rule files and PromQL) against the same
//! two predicates, so the guest never accepts a name the provider would
//! refuse for its syntax. Length limits, reserved names and promtool's lints
//! are the provider's own policy and stay there.

/// Whether `name` is a metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Whether `name` is a label name: `[a-zA-Z_][a-zA-Z0-9_]*` (names that
/// start with `__` match too; they are reserved for Prometheus, which the
/// caller decides how to treat).
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_prometheus_syntax() {
        for ok in ["a", "_a", ":a", "job:rate5m", "http_requests_total", "A9_:"] {
            assert!(is_metric_name(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a b", "é", "a.b", "a\n"] {
            assert!(!is_metric_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn label_names_follow_the_prometheus_syntax() {
        for ok in ["a", "_a1", "job", "__name__", "Le"] {
            assert!(is_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a:b", "é", " a"] {
            assert!(!is_label_name(bad), "{bad:?}");
        }
    }
}
