//! Metrics end to end.
