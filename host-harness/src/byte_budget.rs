//! The byte budget of a bounded queue (the event bus's per-subscriber
//! queues and the observer queues): a counter of queued bytes that a
//! producer reserves from before queueing and the consumer gives back.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Reserves `bytes` from `queued` if the total stays within `max`; false
/// (nothing reserved) if it would not. The new total is computed only when
/// it fits, so a huge `bytes` cannot overflow.
pub fn try_reserve(queued: &AtomicUsize, bytes: usize, max: usize) -> bool {
    queued
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
            (q.saturating_add(bytes) <= max).then(|| q + bytes)
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_budget_and_no_further() {
        let queued = AtomicUsize::new(0);
        assert!(try_reserve(&queued, 6, 10));
        assert!(try_reserve(&queued, 4, 10));
        assert!(!try_reserve(&queued, 1, 10));
        assert_eq!(queued.load(Ordering::Relaxed), 10);
        queued.fetch_sub(4, Ordering::AcqRel);
        assert!(try_reserve(&queued, 3, 10));
        assert_eq!(queued.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn a_huge_reservation_does_not_overflow() {
        let queued = AtomicUsize::new(5);
        assert!(!try_reserve(&queued, usize::MAX, usize::MAX - 1));
        assert_eq!(queued.load(Ordering::Relaxed), 5);
    }
}
