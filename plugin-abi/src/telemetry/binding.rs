//! Re-resolution across provider generations: a handle's cached object and
//! the rule that rebinds it when the host's slot moves to a new generation.
//!
//! The hot path is one acquire load of the slot's generation, one load of
//! the handle's current index and one lock-free lookup in an append-only
//! list, then a compare: no lock, no reference-count write, no FFI call
//! until the instrument itself is called. Only when the generations differ
//! does the handle take its own rebind mutex and the slot's read lock, ask
//! the new provider for a fresh object from the descriptor it keeps, append
//! it and make it current. While no provider is installed the current
//! binding holds no object and every use returns at once.
//!
//! The list keeps every binding the handle made until the handle is
//! dropped (one small entry per provider generation the handle saw): that
//! is what lets a reader use an entry without a lock or a reference count,
//! since an entry is never freed while `&self` lives. Providers change when
//! an operator reloads the monitoring plugin, so the list stays short.
//!
//! What a swap can lose: a thread that read the old binding just before the
//! host bumped the generation still makes its one call on the old object,
//! which the old provider, once closed, ignores. That is at most one
//! in-flight call per thread per swap; every call that starts after the
//! bump lands in the new provider.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use abi_stable::std_types::{RArc, RStr};

use super::abi::{ProviderBox, TelemetrySlot};
use crate::error::PluginError;

/// The plugin a handle belongs to, when known: the handle resolves on the
/// provider's view of that plugin ([`TelemetryProvider::scoped`]).
///
/// [`TelemetryProvider::scoped`]: super::abi::TelemetryProvider::scoped
#[derive(Clone, Default, Debug)]
pub(crate) struct Scope(pub(crate) Option<Arc<str>>);

impl Scope {
    /// Runs `f` on the provider as this plugin sees it (one extra call on
    /// the re-resolve path only).
    pub(crate) fn apply<T>(&self, provider: &ProviderBox, f: impl FnOnce(&ProviderBox) -> T) -> T {
        match &self.0 {
            Some(plugin) => f(&provider.scoped(RStr::from_str(plugin))),
            None => f(provider),
        }
    }
}

/// How a handle makes its object on a provider (keeps the descriptor).
pub(crate) trait Resolve: Send + Sync {
    /// The provider-side object (instrument or the provider itself).
    type Object: Send + Sync;

    /// Creates the object on `provider`; an error when the provider
    /// refuses (the handle then stays a no-op for that generation and
    /// keeps the error to show).
    fn resolve(&self, provider: &ProviderBox) -> Result<Self::Object, PluginError>;
}

/// A generation and the object made for it.
pub(crate) struct Binding<O> {
    generation: u64,
    object: Option<O>,
    refusal: Option<PluginError>,
}

/// A handle's connection to the current provider.
pub(crate) struct Bound<R: Resolve> {
    slot: Option<RArc<TelemetrySlot>>,
    /// Every binding made, oldest first; never shrinks while `self` lives.
    bindings: boxcar::Vec<Binding<R::Object>>,
    /// Index of the current binding in `bindings`.
    current: AtomicUsize,
    /// Taken only to rebind, so one thread asks the provider per generation.
    rebinding: Mutex<()>,
    resolver: R,
}

impl<R: Resolve> Bound<R> {
    /// Binds to `slot` (`None`: no host slot, always a no-op) and resolves
    /// on the current provider right away.
    pub(crate) fn new(slot: Option<RArc<TelemetrySlot>>, resolver: R) -> Self {
        let bindings = boxcar::Vec::new();
        let first = bindings.push(Binding {
            generation: 0,
            object: None,
            refusal: None,
        });
        let bound = Bound {
            slot,
            bindings,
            current: AtomicUsize::new(first),
            rebinding: Mutex::new(()),
            resolver,
        };
        if let Some(slot) = &bound.slot {
            if slot.generation() != 0 {
                bound.rebind(slot);
            }
        }
        bound
    }

    /// Runs `f` on the object of the current generation, rebinding first
    /// when the provider changed; does nothing when there is none.
    #[inline]
    pub(crate) fn with<T>(&self, f: impl FnOnce(&R::Object) -> T) -> Option<T> {
        self.binding()?.object.as_ref().map(f)
    }

    /// Whether the current provider gave this handle an object.
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        self.with(|_| ()).is_some()
    }

    /// Why the current provider refused this handle's object, if it did
    /// (rebinding first when the provider changed).
    pub(crate) fn refusal(&self) -> Option<PluginError> {
        self.binding()?.refusal.clone()
    }

    /// The binding of the slot's current generation, rebinding first when
    /// the provider changed; `None` without a host slot.
    #[inline]
    fn binding(&self) -> Option<&Binding<R::Object>> {
        let slot = self.slot.as_ref()?;
        let generation = slot.generation();
        let cached = self.current_binding()?;
        if cached.generation == generation {
            return Some(cached);
        }
        self.rebind(slot)
    }

    /// The resolver (descriptor) this handle keeps.
    pub(crate) fn resolver(&self) -> &R {
        &self.resolver
    }

    #[inline]
    fn current_binding(&self) -> Option<&Binding<R::Object>> {
        // Always present: `current` only ever holds an index `push` returned.
        self.bindings.get(self.current.load(Ordering::Acquire))
    }

    #[cold]
    fn rebind(&self, slot: &TelemetrySlot) -> Option<&Binding<R::Object>> {
        // A poisoned lock only means another rebind panicked in a provider;
        // the list is still consistent.
        let _only_one = self.rebinding.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, provider) = slot.current();
        if let Some(cached) = self.current_binding() {
            if cached.generation == generation {
                return Some(cached); // another thread rebound while we waited
            }
        }
        let (object, refusal) = match provider.as_ref().map(|p| self.resolver.resolve(p)) {
            None => (None, None),
            Some(Ok(object)) => (Some(object), None),
            Some(Err(e)) => (None, Some(e)),
        };
        let index = self.bindings.push(Binding {
            generation,
            object,
            refusal,
        });
        self.current.store(index, Ordering::Release);
        self.bindings.get(index)
    }
}
