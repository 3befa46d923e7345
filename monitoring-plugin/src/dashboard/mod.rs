//! The built-in dashboard: one self-contained page served by its
//! [`capability`], charting the host from the plugin's own APIs.

pub mod capability;
