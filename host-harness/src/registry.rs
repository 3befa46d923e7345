//! The service registry: which plugin instance owns which service name.
//!
//! Names are unique across the host; a second registration of a taken name
//! is refused with a message naming the owner. Calling a service (with its
//! deadline and observer report) is done by the host core, which looks the
//! owner up here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;

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
    services: RwLock<BTreeMap<String, ServiceEntry>>,
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
        let mut services = self.services.write();
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
        services.insert(
            name.to_owned(),
            ServiceEntry {
                name: Arc::from(name),
                key: crate::observer::intern(name),
                plugin: plugin.to_owned(),
                instance,
                description: description.to_owned(),
                registered_at_ms,
            },
        );
        Ok(())
    }

    /// Removes a service owned by `instance`.
    pub fn unregister(&self, name: &str, instance: u64) -> Result<(), RegistryError> {
        let mut services = self.services.write();
        match services.get(name) {
            Some(e) if e.instance == instance => {
                services.remove(name);
                Ok(())
            }
            _ => Err(RegistryError::NotOwner(name.to_owned())),
        }
    }

    /// Removes every service of `instance`; returns their names.
    pub fn remove_instance(&self, instance: u64) -> Vec<String> {
        let mut services = self.services.write();
        let names: Vec<String> = services
            .values()
            .filter(|e| e.instance == instance)
            .map(|e| e.name.to_string())
            .collect();
        for n in &names {
            services.remove(n);
        }
        names
    }

    /// Looks a service up.
    pub fn get(&self, name: &str) -> Option<ServiceEntry> {
        self.services.read().get(name).cloned()
    }

    /// All services, sorted by name.
    pub fn list(&self) -> Vec<ServiceEntry> {
        self.services.read().values().cloned().collect()
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.read().len()
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
        assert_eq!(r.remove_instance(1).len(), 2);
        assert!(r.is_empty());
    }
}
