//! Shared helpers of the plugin-abi integration tests.

pub mod provider;
