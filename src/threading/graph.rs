//! The wait-for graph, kept in the lock values themselves: a thread's [`ThreadNode`] (its
//! name and the lock it is blocked on) and a lock's [`LockCore`] (its name and a raw lock
//! whose word points at the owner's node).
//!
//! Why no registry: nodes are created per thread on first use (a thread-local pointer
//! cache) and never freed, so a pointer in a lock stays valid even when the lock outlives
//! the thread or was made in another notebook cell. A node costs about 80 bytes per OS
//! thread that ever touched a conclab lock. The thread-local cache is per copy of the
//! crate (each notebook cell links its own: ARCHITECTURE.md, "Every cell has its own
//! statics"): a single thread that holds a lock through one cell's code while blocking
//! through another's shows up as two nodes, and such a cycle is not seen (the acquire
//! then waits, as CPython would).
//!
//! The blocking acquire that searches this graph is in `acquire.rs`, the search itself
//! in `cycle.rs`.

use super::raw_lock::RawLock;
use crate::explore::sched;
use crate::sync::{Arc, Mutex};
use std::ptr;
use std::time::Instant;

/// What other threads can learn about one thread: its name and what it is blocked on.
pub(crate) struct ThreadNode {
    pub(crate) name: String,
    state: Mutex<WaitState>,
}

struct WaitState {
    /// The lock this thread is blocked on in an untimed acquire, if any.
    waiting: Option<Arc<LockCore>>,
    /// Bumped at the start of every wait episode, so a reader can tell "still the same
    /// wait" from "left and came back".
    seq: u64,
}

impl ThreadNode {
    fn new(name: String) -> Self {
        Self {
            name,
            state: Mutex::new(WaitState {
                waiting: None,
                seq: 0,
            }),
        }
    }

    pub(crate) fn begin_wait(&self, lock: &Arc<LockCore>) {
        let mut state = self.state.lock();
        state.seq += 1;
        state.waiting = Some(Arc::clone(lock));
    }

    pub(crate) fn end_wait(&self) {
        self.state.lock().waiting = None;
    }

    /// The lock waited for and the episode number, when the thread is waiting.
    pub(crate) fn snapshot(&self) -> Option<(Arc<LockCore>, u64)> {
        let state = self.state.lock();
        state
            .waiting
            .as_ref()
            .map(|lock| (Arc::clone(lock), state.seq))
    }
}

#[cfg(not(loom))]
std::thread_local! {
    // A raw pointer cache: const-initialised, no destructor, so reading it costs one TLS
    // access on the uncontended path.
    static NODE: std::cell::Cell<*const ThreadNode> = const { std::cell::Cell::new(ptr::null()) };
}

#[cfg(loom)]
loom::thread_local! {
    static NODE: std::cell::Cell<*const ThreadNode> = std::cell::Cell::new(ptr::null());
}

/// The calling thread's node, created on first use and never freed (see the module docs).
#[inline]
pub(crate) fn current_node() -> &'static ThreadNode {
    NODE.with(|cell| {
        let cached = cell.get();
        if cached.is_null() {
            let node: &'static ThreadNode =
                Box::leak(Box::new(ThreadNode::new(super::thread::current_name())));
            cell.set(node);
            node
        } else {
            // SAFETY: the pointer came from `Box::leak` above and nodes are never freed.
            unsafe { &*cached }
        }
    })
}

/// The shared part of a `Lock` or `RLock`: reachable from a blocked thread's node.
pub(crate) struct LockCore {
    pub(crate) raw: RawLock<ThreadNode>,
    pub(crate) name: String,
}

impl LockCore {
    pub(crate) fn new(name: String) -> Arc<Self> {
        Arc::new(Self {
            raw: RawLock::new(),
            name,
        })
    }

    /// Takes the lock if it is free right now.
    #[inline]
    pub(crate) fn try_lock(&self, me: &'static ThreadNode) -> bool {
        if sched::active() {
            return self.try_lock_explored(me);
        }
        self.raw.try_lock(me)
    }

    #[cold]
    fn try_lock_explored(&self, me: &'static ThreadNode) -> bool {
        let obj = self.explore_obj();
        sched::point("try acquire", &obj);
        let got = self.raw.try_lock(me);
        let value = if got { "got it" } else { "busy" };
        sched::step("try acquire", &obj, Some(value.to_owned()));
        got
    }

    /// Takes the lock before `deadline`; timed waits take no part in detection because
    /// they end by themselves. No spin first: it could outlast a short timeout.
    pub(crate) fn lock_until(this: &Arc<Self>, me: &'static ThreadNode, deadline: Instant) -> bool {
        if sched::active() {
            return Self::lock_explored(this, me, Some(deadline)).unwrap_or(false);
        }
        this.raw.try_lock(me) || this.raw.lock_until(me, deadline)
    }

    /// Releases the lock; only the holder's guard calls this.
    #[inline]
    pub(crate) fn unlock(&self) {
        if sched::active() {
            return self.unlock_explored();
        }
        self.raw.unlock();
    }

    /// A release inside an `explore` run: a switch point, and a wake-up for the threads
    /// the scheduler keeps waiting for this lock.
    #[cold]
    fn unlock_explored(&self) {
        let obj = self.explore_obj();
        sched::point("release", &obj);
        self.raw.unlock();
        sched::step("release", &obj, None);
        sched::wake(obj.addr);
    }

    /// How `explore` names this lock in its steps.
    pub(crate) fn explore_obj(&self) -> sched::Obj<'_> {
        sched::Obj::new(self, "lock", Some(&self.name))
    }

    #[inline]
    pub(crate) fn owned_by(&self, node: &'static ThreadNode) -> bool {
        self.raw.owner().is_some_and(|owner| ptr::eq(owner, node))
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The node of the thread that holds the lock, if any.
    #[inline]
    pub(crate) fn owner(&self) -> Option<&'static ThreadNode> {
        self.raw.owner()
    }
}
