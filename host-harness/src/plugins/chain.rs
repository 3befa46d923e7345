//! The chain of nested plugin callbacks a call is made from, and its depth
//! limit.
//!
//! A plugin that calls a service from inside one of its callbacks waits on
//! a blocking-pool thread while the callee runs on another; a chain that
//! loops (`a → a → …`, `a → b → a …`) would pin a thread per level until the
//! pool is exhausted or the outermost deadline fires. Each callback runs
//! with its chain as the thread's current chain (plugin callbacks run on
//! threads the host chose), so a nested call knows how deep it is and is
//! refused with the chain in the message once it would pass the limit.
//! Calls from a plugin's own threads start a new chain.

use std::cell::RefCell;
use std::sync::Arc;

/// One callback in a chain, linked to the callback that called it.
#[derive(Debug)]
struct Link {
    plugin: Arc<str>,
    depth: usize,
    parent: Option<Arc<Link>>,
}

/// A chain of nested plugin callbacks (empty for calls from HTTP or the
/// host itself). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CallChain(Option<Arc<Link>>);

thread_local! {
    static CURRENT: RefCell<CallChain> = const { RefCell::new(CallChain(None)) };
}

/// Why a call was refused by the depth limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("call depth limit {limit} reached calling {service}: {chain} (each nested call pins a thread; a plugin calling back into this chain loops)")]
pub struct TooDeep {
    /// The limit.
    pub limit: usize,
    /// The service that would have been called.
    pub service: String,
    /// The chain, abbreviated when long, ending with the callee.
    pub chain: String,
}

/// Links shown at each end of an abbreviated chain.
const SHOWN_AT_EACH_END: usize = 3;

impl CallChain {
    /// The chain of the callback running on this thread (empty outside one).
    pub fn current() -> CallChain {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Number of nested callbacks.
    pub fn depth(&self) -> usize {
        self.0.as_ref().map_or(0, |l| l.depth)
    }

    /// This chain extended by a callback of `plugin`.
    pub fn then(&self, plugin: &Arc<str>) -> CallChain {
        CallChain(Some(Arc::new(Link {
            plugin: plugin.clone(),
            depth: self.depth() + 1,
            parent: self.0.clone(),
        })))
    }

    /// Refuses a call to `callee` (serving `service`) that would make the
    /// chain longer than `limit`.
    pub fn check(&self, limit: usize, callee: &str, service: &str) -> Result<(), TooDeep> {
        if self.depth() < limit {
            return Ok(());
        }
        Err(TooDeep {
            limit,
            service: service.to_owned(),
            chain: self.describe(callee),
        })
    }

    /// `a → b → a → … (n more) … → b → a → callee`.
    pub fn describe(&self, callee: &str) -> String {
        let mut names: Vec<&str> = Vec::with_capacity(self.depth() + 1);
        let mut link = self.0.as_deref();
        while let Some(l) = link {
            names.push(&l.plugin);
            link = l.parent.as_deref();
        }
        names.reverse();
        names.push(callee);
        if names.len() <= 2 * SHOWN_AT_EACH_END + 1 {
            return names.join(" → ");
        }
        let hidden = names.len() - 2 * SHOWN_AT_EACH_END;
        format!(
            "{} → … ({hidden} more) … → {}",
            names[..SHOWN_AT_EACH_END].join(" → "),
            names[names.len() - SHOWN_AT_EACH_END..].join(" → ")
        )
    }

    /// Makes this the thread's current chain until the guard is dropped.
    pub fn enter(self) -> ChainGuard {
        let previous = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), self));
        ChainGuard { previous }
    }
}

/// Restores the previous current chain when dropped.
pub struct ChainGuard {
    previous: CallChain,
}

impl Drop for ChainGuard {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.previous);
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limit_names_the_chain() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let chain = CallChain::default().then(&a).then(&b);
        assert_eq!(chain.depth(), 2);
        assert!(chain.check(3, "a", "a.svc").is_ok());
        let err = chain.check(2, "a", "a.svc").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("call depth limit 2 reached calling a.svc: a → b → a ("),
            "{err}"
        );
        let mut long = CallChain::default();
        for _ in 0..16 {
            long = long.then(&a);
        }
        assert_eq!(long.describe("a"), "a → a → a → … (11 more) … → a → a → a");
    }

    #[test]
    fn the_current_chain_is_per_thread_and_restored() {
        let a: Arc<str> = Arc::from("a");
        assert_eq!(CallChain::current().depth(), 0);
        {
            let _outer = CallChain::default().then(&a).enter();
            assert_eq!(CallChain::current().depth(), 1);
            {
                let _inner = CallChain::current().then(&a).enter();
                assert_eq!(CallChain::current().depth(), 2);
                let other = std::thread::spawn(|| CallChain::current().depth());
                assert_eq!(other.join().unwrap(), 0);
            }
            assert_eq!(CallChain::current().depth(), 1);
        }
        assert_eq!(CallChain::current().depth(), 0);
    }
}
