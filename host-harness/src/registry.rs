//! The service registry: which plugin instance owns which service name.
//!
//! Names are unique across the host; a second registration of a taken name
//! is refused with a message naming the owner. Calling a service (with its
//! deadline and observer report) is done by the host core, which looks the
//! owner up here.
//!
//! Every service call looks its name up, while services are registered and
//! unregistered only when plugins start and stop. So the table is an
//! immutable snapshot behind an [`ArcSwap`]: a lookup is a lock-free load
//! and one reference-count increment, never blocked by a writer; a change
//! copies the table (a few dozen entries) under a writers' mutex and swaps
//! the new snapshot in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The name is taken.
    #[error("service {name:?} is already registered by plugin {owner:?}")]
    Duplicate {
        /// The service name.
        name: String,
        /// Its current owner.
        owner: String,
    },
    /// The name is malformed.
    #[error("invalid service name {0:?}: use 1 to 128 characters from [a-z0-9_.-], starting with a letter")]
    InvalidName(String),
    /// The caller does not own this service.
    #[error("service {0:?} is not registered by this plugin")]
    NotOwner(String),
}

/// One registered service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceEntry {
    /// Service name (shared with observer reports).
    #[serde(serialize_with = "ser_arc")]
    pub name: Arc<str>,
    /// The name interned for observer reports (no reference count on the
    /// hot path).
    #[serde(skip)]
    pub key: crate::observer::Name,
    /// Owning plugin name.
    pub plugin: String,
    /// Owning plugin instance.
    #[serde(skip)]
    pub instance: u64,
    /// What it does.
    pub description: String,
    /// When it was registered (Unix epoch ms).
    pub registered_at_ms: u64,
}

fn ser_arc<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

/// Checks a service name.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_lowercase()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName(name.to_owned()))
    }
}

/// The registry.
#[derive(Default)]
pub struct ServiceRegistry {
    /// The current table: read without a lock.
    services: ArcSwap<HashMap<Arc<str>, Arc<ServiceEntry>>>,
    /// Serialises changes (copy, change, swap).
    writer: Mutex<()>,
}

impl ServiceRegistry {
    /// Registers `name` for a plugin instance.
    pub fn register(
        &self,
        name: &str,
        plugin: &str,
        instance: u64,
        description: &str,
    ) -> Result<(), RegistryError> {
        validate_name(name)?;
        self.change(|services| {
            if let Some(existing) = services.get(name) {
                return Err(RegistryError::Duplicate {
                    name: name.to_owned(),
                    owner: existing.plugin.clone(),
                });
            }
            let registered_at_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let name: Arc<str> = Arc::from(name);
            services.insert(
                name.clone(),
                Arc::new(ServiceEntry {
                    key: crate::observer::intern(&name),
                    name,
                    plugin: plugin.to_owned(),
                    instance,
                    description: description.to_owned(),
                    registered_at_ms,
                }),
            );
            Ok(())
        })
    }

    /// Removes a service owned by `instance`.
    pub fn unregister(&self, name: &str, instance: u64) -> Result<(), RegistryError> {
        self.change(|services| match services.get(name) {
            Some(e) if e.instance == instance => {
                services.remove(name);
                Ok(())
            }
            _ => Err(RegistryError::NotOwner(name.to_owned())),
        })
    }

    /// Removes every service of `instance`; returns their names.
    pub fn remove_instance(&self, instance: u64) -> Vec<String> {
        let mut names = Vec::new();
        let _ = self.change(|services| {
            services.retain(|name, e| {
                let theirs = e.instance == instance;
                if theirs {
                    names.push(name.to_string());
                }
                !theirs
            });
            Ok::<_, RegistryError>(())
        });
        names.sort();
        names
    }

    /// Applies `f` to a copy of the table and swaps the copy in if `f`
    /// succeeds; writers take turns, readers never wait.
    fn change<R>(
        &self,
        f: impl FnOnce(&mut HashMap<Arc<str>, Arc<ServiceEntry>>) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        let _writer = self.writer.lock();
        let mut next = HashMap::clone(&self.services.load());
        let r = f(&mut next)?;
        self.services.store(Arc::new(next));
        Ok(r)
    }

    /// Looks a service up: lock-free.
    pub fn get(&self, name: &str) -> Option<Arc<ServiceEntry>> {
        self.services.load().get(name).cloned()
    }

    /// All services, sorted by name.
    pub fn list(&self) -> Vec<ServiceEntry> {
        let mut all: Vec<ServiceEntry> = self
            .services
            .load()
            .values()
            .map(|e| ServiceEntry::clone(e))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.load().len()
    }

    /// Whether there are no services.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_ownership() {
        let r = ServiceRegistry::default();
        r.register("demo.toggle", "demo", 1, "").unwrap();
        let err = r.register("demo.toggle", "other", 2, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "service \"demo.toggle\" is already registered by plugin \"demo\""
        );
        assert!(matches!(
            r.register("Bad Name", "x", 2, ""),
            Err(RegistryError::InvalidName(_))
        ));
        assert!(r.unregister("demo.toggle", 2).is_err());
        r.register("demo.other", "demo", 1, "").unwrap();
        r.register("b.other", "other", 2, "").unwrap();
        let names: Vec<_> = r.list().into_iter().map(|e| e.name).collect();
        assert_eq!(
            names.iter().map(|n| &**n).collect::<Vec<_>>(),
            ["b.other", "demo.other", "demo.toggle"]
        );
        assert_eq!(r.get("demo.toggle").unwrap().plugin, "demo");
        r.unregister("b.other", 2).unwrap();
        assert!(r.get("b.other").is_none());
        assert_eq!(r.remove_instance(1).len(), 2);
        assert!(r.is_empty());
    }
}
