//! Deadlock detection: the wait-for graph lives in the lock values themselves.
//!
//! Every lock's word names its owner (a pointer to a [`ThreadNode`], see `raw_lock.rs`)
//! and every thread's node records the lock it is blocked on. A thread about to block
//! publishes what it waits for, issues a `SeqCst` fence, then walks "lock -> owner -> lock
//! that owner waits for -> ..." from the lock it wants. Reaching itself again is a cycle: a
//! deadlock.
//!
//! Why this finds every cycle: the thread that closes a cycle is the last of its members
//! to publish its wait. Each member took its locks (the compare-and-swap that takes a lock
//! also writes its owner) and published its wait before its own fence, so the last fence
//! in the `SeqCst` order sees them all. The walk is repeated while the thread stays
//! blocked, every 20 ms at first and then less often, as a backstop.
//!
//! Why a reported cycle is real: each edge is read as "node N is in wait episode s, owns
//! lock L, and is still in episode s", and all episodes are checked again at the end. A
//! thread inside an acquire cannot release anything, so at the moment of the final checks
//! every member of the cycle owns its lock and waits for the next one, and the caller
//! itself is one of them: no one can ever move.
//!
//! Why no registry: nodes are created per thread on first use (a thread-local pointer
//! cache) and never freed, so a pointer in a lock stays valid even when the lock outlives
//! the thread or was made in another notebook cell. A node costs about 80 bytes per OS
//! thread that ever touched a conclab lock. The thread-local cache is per copy of the
//! crate (evcxr links one per cell): a single thread that holds a lock through one cell's
//! code while blocking through another's shows up as two nodes, and such a cycle is not
//! seen (the acquire then waits, as CPython would).

use super::raw_lock::RawLock;
use super::{DeadlockEdge, ThreadingError};
use crate::sync::{fence, Arc, Mutex};
use std::ptr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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

    fn begin_wait(&self, lock: &Arc<LockCore>) {
        let mut state = self.state.lock();
        state.seq += 1;
        state.waiting = Some(Arc::clone(lock));
    }

    fn end_wait(&self) {
        self.state.lock().waiting = None;
    }

    /// The lock waited for and the episode number, when the thread is waiting.
    fn snapshot(&self) -> Option<(Arc<LockCore>, u64)> {
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
    raw: RawLock,
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
        self.raw.try_lock(me)
    }

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

    /// Takes the lock before `deadline`; timed waits take no part in detection because
    /// they end by themselves. No spin first: it could outlast a short timeout.
    pub(crate) fn lock_until(&self, me: &'static ThreadNode, deadline: Instant) -> bool {
        self.raw.try_lock(me) || self.raw.lock_until(me, deadline)
    }

    /// Releases the lock; only the holder's guard calls this.
    #[inline]
    pub(crate) fn unlock(&self) {
        self.raw.unlock();
    }

    #[inline]
    pub(crate) fn owned_by(&self, node: &'static ThreadNode) -> bool {
        self.raw.owner().is_some_and(|owner| ptr::eq(owner, node))
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
}

/// The longest chain of threads a walk follows before it gives up.
const MAX_CYCLE: usize = 64;

struct Step {
    node: &'static ThreadNode,
    seq: u64,
    waits: Arc<LockCore>,
}

/// Walks the wait-for graph from `wanted`; returns the cycle through `me`, if there is one.
pub(crate) fn find_cycle(
    me: &'static ThreadNode,
    wanted: &Arc<LockCore>,
) -> Option<Vec<DeadlockEdge>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut current = Arc::clone(wanted);
    let mut closed = false;
    for _ in 0..MAX_CYCLE {
        let node = current.raw.owner()?;
        if ptr::eq(node, me) {
            closed = true;
            break;
        }
        let (waits, seq) = node.snapshot()?;
        // Still the owner while in that same wait episode: the edge held during it.
        if !current.owned_by(node) {
            return None;
        }
        match node.snapshot() {
            Some((_, again)) if again == seq => {}
            _ => return None,
        }
        if steps.iter().any(|step| ptr::eq(step.node, node)) {
            // A cycle that does not pass through us: its members report it themselves.
            return None;
        }
        steps.push(Step {
            node,
            seq,
            waits: Arc::clone(&waits),
        });
        current = waits;
    }
    if !closed {
        return None;
    }
    for step in &steps {
        match step.node.snapshot() {
            Some((_, seq)) if seq == step.seq => {}
            _ => return None,
        }
    }
    let mut edges = Vec::with_capacity(steps.len() + 1);
    let holder_of = |index: usize| {
        steps
            .get(index)
            .map_or_else(|| me.name.clone(), |step| step.node.name.clone())
    };
    edges.push(DeadlockEdge {
        thread: me.name.clone(),
        waits_for: wanted.name.clone(),
        held_by: holder_of(0),
    });
    for (index, step) in steps.iter().enumerate() {
        edges.push(DeadlockEdge {
            thread: step.node.name.clone(),
            waits_for: step.waits.name.clone(),
            held_by: holder_of(index + 1),
        });
    }
    Some(edges)
}
