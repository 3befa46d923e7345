//! A minimal plugin, compiled only into the `fixture-wrong-abi-version` test
//! crate. That crate builds this crate's sources under version 0.2.0, so its
//! root module has exactly our layout but an incompatible version: the host
//! must refuse it naming both versions.

use crate::{Host, PluginError, PluginImpl};

struct Fixture;

impl PluginImpl for Fixture {
    const NAME: &'static str = "wrong-abi-version";
    const VERSION: &'static str = "0.2.0";

    fn new(_host: Host, _config: &str) -> Result<Self, PluginError> {
        Ok(Fixture)
    }
}

crate::export_plugin!(Fixture);
