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

//!
//! Inside an `explore` run the same acquire is a switch point, and a held lock makes the
//! thread wait in the scheduler (which sees a deadlock when every thread waits) rather
//! than on the futex.

use super::cycle::find_cycle;
use super::graph::{LockCore, ThreadNode};
use super::{DeadlockEdge, ThreadingError};
use crate::explore::sched::{self, Waiting, Woke};
use crate::sync::{fence, Arc};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl LockCore {
    /// Takes the lock, blocking, and reports a deadlock instead of hanging in one.
    #[inline]
    pub(crate) fn lock(this: &Arc<Self>, me: &'static ThreadNode) -> Result<(), ThreadingError> {
        if sched::active() {
            return Self::lock_explored(this, me, None).map(|_| ());
        }
        if this.raw.try_lock(me) {
            Ok(())
        } else {
            Self::lock_slow(this, me)
        }
    }

    /// Taking a non-re-entrant lock twice: the shortest cycle there is.
    fn held_twice(&self, me: &'static ThreadNode) -> ThreadingError {
        ThreadingError::Deadlock(vec![DeadlockEdge {
            thread: me.name.clone(),
            waits_for: self.name.clone(),
            held_by: me.name.clone(),
        }])
    }

    /// The acquire inside an `explore` run; with a `deadline`, a timed one whose
    /// `Ok(false)` means it timed out.
    #[cold]
    pub(crate) fn lock_explored(
        this: &Arc<Self>,
        me: &'static ThreadNode,
        deadline: Option<Instant>,
    ) -> Result<bool, ThreadingError> {
        let obj = this.explore_obj();
        sched::point("acquire", &obj);
        loop {
            if this.raw.try_lock(me) {
                sched::step("acquire", &obj, None);
                return Ok(true);
            }
            if this.owned_by(me) && deadline.is_none() {
                sched::step(
                    "acquire",
                    &obj,
                    Some("refused: this thread holds it".into()),
                );
                return Err(this.held_twice(me));
            }
            let waiting = Waiting {
                addr: obj.addr,
                lock: Some((this.name.clone(), this.owner().map(|o| o.name.clone()))),
                join: false,
                timed: deadline.is_some(),
                what: format!("waits for lock '{}'", this.name),
            };
            match sched::block(&obj, waiting) {
                Woke::Signalled => {}
                Woke::TimedOut => return Ok(false),
                // The run is over and this thread unwinds: take the lock for real.
                Woke::Abandoned => {
                    return match deadline {
                        None => Self::lock_slow(this, me).map(|()| true),
                        Some(deadline) => Ok(this.raw.lock_until(me, deadline)),
                    }
                }
            }
        }
    }

    #[cold]
    fn lock_slow(this: &Arc<Self>, me: &'static ThreadNode) -> Result<(), ThreadingError> {
        if this.owned_by(me) {
            return Err(this.held_twice(me));
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
