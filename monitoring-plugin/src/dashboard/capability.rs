//! The built-in dashboard: one self-contained page (HTML, CSS and JS
//! embedded in the library, no CDN, works offline) that charts the host
//! from the plugin's own APIs — health, the Prometheus-compatible query API
//! over the embedded sample store, alerts, error issues and traces.

use plugin_abi::{HttpRequest, HttpResponse};

use crate::capability::{Capability, Route};

/// The page.
pub const PAGE: &str = include_str!("../../assets/dashboard.html");

/// The dashboard capability.
pub struct Dashboard;

impl Capability for Dashboard {
    fn name(&self) -> &'static str {
        "dashboard"
    }

    fn routes(&self) -> Vec<Route> {
        vec![Route::new("GET", "/api/v1/monitoring/dashboard")]
    }

    fn handle_http(&self, request: &HttpRequest) -> Option<HttpResponse> {
        (request.path.as_str() == "/api/v1/monitoring/dashboard").then(|| {
            HttpResponse::new(200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec())
                .with_header("cache-control", "no-cache")
                .with_header("content-security-policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
        })
    }
}
