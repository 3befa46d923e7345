//! The plugin route table: the HTTP routes plugins register under `/api/v1/`.
//!
//! Routes use `matchit` syntax (`{param}`, final `{*rest}`). The router is
//! rebuilt on every change (rare) and swapped in, so lookups take a read lock
//! only.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Malformed or reserved path or method.
    #[error("invalid route {method} {path}: {reason}")]
    Invalid {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Taken by another plugin.
    #[error("route {method} {path} is already registered by plugin {owner:?}")]
    Duplicate {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// Its owner.
        owner: String,
    },
    /// Not owned by the caller.
    #[error("route {method} {path} is not registered by this plugin")]
    NotOwner {
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
}

/// Who answers a route.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteOwner {
    /// Plugin name.
    pub plugin: String,
    /// Plugin instance.
    #[serde(skip)]
    pub instance: u64,
    /// Handler deadline in ms (0 = the host's default).
    pub timeout_ms: u64,
}

/// A successful lookup.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The owner.
    pub owner: RouteOwner,
    /// The pattern that matched.
    pub route: String,
    /// `{param}` values.
    pub params: Vec<(String, String)>,
}

/// Paths the host answers itself; plugins cannot take them.
const RESERVED: &[&str] = &[
    "/api/v1/plugins",
    "/api/v1/modules",
    "/api/v1/services",
    "/api/v1/events",
    "/api/v1/storage",
    "/api/v1/host",
];

/// Longest handler deadline a route may ask for (10 minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];

type Table = BTreeMap<String, BTreeMap<String, RouteOwner>>;

struct Built {
    router: matchit::Router<String>,
}

/// The route table.
pub struct RouteTable {
    table: RwLock<Table>,
    built: RwLock<Arc<Built>>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            table: RwLock::new(BTreeMap::new()),
            built: RwLock::new(Arc::new(Built {
                router: matchit::Router::new(),
            })),
        }
    }
}

impl RouteTable {
    fn rebuild(&self, table: &Table) -> Result<(), String> {
        let mut router = matchit::Router::new();
        for path in table.keys() {
            router
                .insert(path.clone(), path.clone())
                .map_err(|e| e.to_string())?;
        }
        *self.built.write() = Arc::new(Built { router });
        Ok(())
    }

    /// Registers `method path` for a plugin instance.
    pub fn register(
        &self,
        method: &str,
        path: &str,
        plugin: &str,
        instance: u64,
        timeout_ms: u64,
    ) -> Result<(), RouteError> {
        let method = method.to_ascii_uppercase();
        let invalid = |reason: &str| RouteError::Invalid {
            method: method.clone(),
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if !METHODS.contains(&method.as_str()) {
            return Err(invalid(
                "method must be one of GET, POST, PUT, DELETE, PATCH, HEAD",
            ));
        }
        if !path.starts_with("/api/") || path.len() > 512 || path.contains("//") {
            return Err(invalid(
                "path must start with /api/ and have no empty segment",
            ));
        }
        if timeout_ms > MAX_TIMEOUT_MS {
            return Err(invalid(&format!(
                "timeout_ms must be at most {MAX_TIMEOUT_MS}"
            )));
        }
        if RESERVED
            .iter()
            .any(|r| path == *r || path.starts_with(&format!("{r}/")))
        {
            return Err(invalid("path is reserved by the host"));
        }
        let mut table = self.table.write();
        if let Some(owner) = table.get(path).and_then(|m| m.get(&method)) {
            return Err(RouteError::Duplicate {
                method,
                path: path.to_owned(),
                owner: owner.plugin.clone(),
            });
        }
        let mut next = table.clone();
        next.entry(path.to_owned()).or_default().insert(
            method.clone(),
            RouteOwner {
                plugin: plugin.to_owned(),
                instance,
                timeout_ms,
            },
        );
        self.rebuild(&next).map_err(|e| invalid(&e))?;
        *table = next;
        Ok(())
    }

    /// Removes a route owned by `instance`.
    pub fn unregister(&self, method: &str, path: &str, instance: u64) -> Result<(), RouteError> {
        let method = method.to_ascii_uppercase();
        let mut table = self.table.write();
        let owned = table
            .get(path)
            .and_then(|m| m.get(&method))
            .is_some_and(|o| o.instance == instance);
        if !owned {
            return Err(RouteError::NotOwner {
                method,
                path: path.to_owned(),
            });
        }
        let mut next = table.clone();
        if let Some(methods) = next.get_mut(path) {
            methods.remove(&method);
            if methods.is_empty() {
                next.remove(path);
            }
        }
        let _ = self.rebuild(&next);
        *table = next;
        Ok(())
    }

    /// Removes every route of `instance`; returns how many.
    pub fn remove_instance(&self, instance: u64) -> usize {
        let mut table = self.table.write();
        let mut next = table.clone();
        let mut removed = 0;
        for methods in next.values_mut() {
            let before = methods.len();
            methods.retain(|_, o| o.instance != instance);
            removed += before - methods.len();
        }
        next.retain(|_, m| !m.is_empty());
        let _ = self.rebuild(&next);
        *table = next;
        removed
    }

    /// Finds who answers `method path`. `Err(true)` means the path exists
    /// with other methods (405), `Err(false)` that it does not exist (404).
    pub fn lookup(&self, method: &str, path: &str) -> Result<RouteMatch, bool> {
        let built = self.built.read().clone();
        let Ok(m) = built.router.at(path) else {
            return Err(false);
        };
        let route = m.value.clone();
        let params = m
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let table = self.table.read();
        let methods = table.get(&route).ok_or(false)?;
        let method = method.to_ascii_uppercase();
        let owner = methods
            .get(&method)
            .or_else(|| {
                if method == "HEAD" {
                    methods.get("GET")
                } else {
                    None
                }
            })
            .ok_or(true)?;
        Ok(RouteMatch {
            owner: owner.clone(),
            route,
            params,
        })
    }

    /// `(method, path, plugin)` of every route.
    pub fn list(&self) -> Vec<(String, String, String)> {
        let table = self.table.read();
        let mut out = Vec::new();
        for (path, methods) in table.iter() {
            for (method, owner) in methods {
                out.push((method.clone(), path.clone(), owner.plugin.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_lookup_revoke() {
        let t = RouteTable::default();
        t.register("get", "/api/v1/monitoring/metrics", "monitoring", 1, 0)
            .unwrap();
        t.register("GET", "/api/v1/monitoring/traces/{id}", "monitoring", 1, 0)
            .unwrap();
        let m = t.lookup("GET", "/api/v1/monitoring/traces/abc").unwrap();
        assert_eq!(m.params, vec![("id".to_owned(), "abc".to_owned())]);
        assert_eq!(m.owner.plugin, "monitoring");
        assert!(matches!(
            t.lookup("POST", "/api/v1/monitoring/metrics"),
            Err(true)
        ));
        assert!(matches!(t.lookup("GET", "/api/v1/nothing"), Err(false)));
        assert!(matches!(
            t.register("GET", "/api/v1/monitoring/metrics", "x", 2, 0),
            Err(RouteError::Duplicate { .. })
        ));
        assert!(t.register("GET", "/other", "x", 2, 0).is_err());
        assert!(t.register("GET", "/api/v1/plugins/x", "x", 2, 0).is_err());
        assert_eq!(t.remove_instance(1), 2);
        assert!(t.lookup("GET", "/api/v1/monitoring/metrics").is_err());
        t.register("GET", "/api/v1/monitoring/metrics", "monitoring", 3, 0)
            .unwrap();
    }

    /// The Sentry ingest paths (`/api/{project_id}/envelope/`, with and
    /// without the trailing slash) live outside `/api/v1/` next to static
    /// `/api/v1/...` routes; both must keep resolving.
    #[test]
    fn sentry_ingest_paths_beside_v1_routes() {
        let t = RouteTable::default();
        t.register("GET", "/api/v1/monitoring/errors", "monitoring", 1, 0)
            .unwrap();
        for p in [
            "/api/{project_id}/envelope/",
            "/api/{project_id}/envelope",
            "/api/{project_id}/store/",
            "/api/{project_id}/store",
        ] {
            t.register("POST", p, "monitoring", 1, 0).unwrap();
        }
        let m = t.lookup("POST", "/api/42/envelope/").unwrap();
        assert_eq!(m.route, "/api/{project_id}/envelope/");
        assert_eq!(m.params, vec![("project_id".to_owned(), "42".to_owned())]);
        assert_eq!(
            t.lookup("POST", "/api/42/store").unwrap().route,
            "/api/{project_id}/store"
        );
        assert_eq!(
            t.lookup("GET", "/api/v1/monitoring/errors").unwrap().route,
            "/api/v1/monitoring/errors"
        );
        assert!(t
            .register("POST", "/api/v1/plugins/x/envelope/", "x", 2, 0)
            .is_err());
    }
}
