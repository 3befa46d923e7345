//! Re-resolution across provider generations: a handle's cached object and
//! the rule that rebinds it when the host's slot moves to a new generation.
//!
//! The hot path is one acquire load of the slot's generation, one
//! [`ArcSwap`] load of the cached binding (lock-free: no mutex, no
//! reference-count write on the shared `Arc`) and a compare. Only when the
//! generations differ does the handle take the slot's read lock, ask the
//! new provider for a fresh object from the descriptor it keeps, and
//! publish it. While no provider is installed the binding holds no object
//! and every use returns at once.
//!
//! What a swap can lose: a thread that loaded the old binding just before
//! the host bumped the generation still makes its one call on the old
//! object, which the old provider, once closed, ignores. That is at most
//! one in-flight call per thread per swap; every call that starts after the
//! bump lands in the new provider.

use std::sync::Arc;

use abi_stable::std_types::RArc;
use arc_swap::ArcSwap;

use super::abi::{ProviderBox, TelemetrySlot};

/// How a handle makes its object on a provider (keeps the descriptor).
pub(crate) trait Resolve: Send + Sync {
    /// The provider-side object (instrument or the provider itself).
    type Object: Send + Sync;

    /// Creates the object on `provider`; `None` when the provider refuses
    /// (the handle then stays a no-op for that generation).
    fn resolve(&self, provider: &ProviderBox) -> Option<Self::Object>;
}

/// A generation and the object made for it.
pub(crate) struct Binding<O> {
    generation: u64,
    object: Option<O>,
}

/// A handle's connection to the current provider.
pub(crate) struct Bound<R: Resolve> {
    slot: Option<RArc<TelemetrySlot>>,
    binding: ArcSwap<Binding<R::Object>>,
    resolver: R,
}

impl<R: Resolve> Bound<R> {
    /// Binds to `slot` (`None`: no host slot, always a no-op) and resolves
    /// on the current provider right away.
    pub(crate) fn new(slot: Option<RArc<TelemetrySlot>>, resolver: R) -> Self {
        let bound = Bound {
            slot,
            binding: ArcSwap::from_pointee(Binding {
                generation: 0,
                object: None,
            }),
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
        let slot = self.slot.as_ref()?;
        let generation = slot.generation();
        {
            let cached = self.binding.load();
            if cached.generation == generation {
                return cached.object.as_ref().map(f);
            }
        }
        self.rebind(slot).object.as_ref().map(f)
    }

    /// The resolver (descriptor) this handle keeps.
    pub(crate) fn resolver(&self) -> &R {
        &self.resolver
    }

    #[cold]
    fn rebind(&self, slot: &TelemetrySlot) -> Arc<Binding<R::Object>> {
        let (generation, provider) = slot.current();
        let fresh = Arc::new(Binding {
            generation,
            object: provider.as_ref().and_then(|p| self.resolver.resolve(p)),
        });
        // Two threads may rebind at once; the newer generation wins and an
        // older one never overwrites it.
        let mut result = Arc::clone(&fresh);
        self.binding.rcu(|cur| {
            result = if cur.generation >= generation {
                Arc::clone(cur)
            } else {
                Arc::clone(&fresh)
            };
            Arc::clone(&result)
        });
        result
    }
}
