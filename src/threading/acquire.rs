//! The blocking acquire of a [`LockCore`]: it reports a deadlock instead of hanging in one.
//!
//! A thread about to block publishes what it waits for in its node, issues a `SeqCst`
//! fence, then searches the wait-for graph from the lock it wants (`cycle.rs`).
//!
//! Why this finds every cycle: the thread that closes a cycle is the last of its members
//! to publish its wait. Each member took its locks (the compare-and-swap that takes a lock
//! also writes its owner) and published its wait before its own fence, so the last fence
//! in the `SeqCst` order sees them all. The search is repeated while the thread stays
//! blocked, every 20 ms at first and then less often, as a backstop.

use super::cycle::find_cycle;
use super::graph::{LockCore, ThreadNode};
use super::{DeadlockEdge, ThreadingError};
use crate::sync::{fence, Arc};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl LockCore {
    /// Takes the lock, blocking, and reports a deadlock instead of hanging in one.
    #[inline]
    pub(crate) fn lock(this: &Arc<Self>, me: &'static ThreadNode) -> Result<(), ThreadingError> {
        if this.raw.try_lock(me) {
            Ok(())
        } else {
            Self::lock_slow(this, me)
        }
    }

    #[cold]
    fn lock_slow(this: &Arc<Self>, me: &'static ThreadNode) -> Result<(), ThreadingError> {
        if this.owned_by(me) {
            // Taking a non-re-entrant lock twice: the shortest cycle there is.
            return Err(ThreadingError::Deadlock(vec![DeadlockEdge {
                thread: me.name.clone(),
                waits_for: this.name.clone(),
                held_by: me.name.clone(),
            }]));
        }
        // Most contended waits in a tight loop end within the spin, which keeps the
        // bookkeeping below off the common contended path.
        if this.raw.spin(me) {
            return Ok(());
        }
        me.begin_wait(this);
        fence(Ordering::SeqCst);
        let mut interval = Duration::from_millis(20);
        let outcome = loop {
            if let Some(cycle) = find_cycle(me, this) {
                break Err(ThreadingError::Deadlock(cycle));
            }
            if this.raw.lock_until(me, Instant::now() + interval) {
                break Ok(());
            }
            interval = (interval * 2).min(Duration::from_millis(500));
        };
        me.end_wait();
        outcome
    }
}
