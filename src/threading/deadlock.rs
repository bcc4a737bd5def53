//! Deadlock detection: the wait-for graph lives in the lock values themselves.
//!
//! Every lock's shared core records its owner (a pointer to a [`ThreadNode`]) and every
//! thread's node records the lock it is blocked on. A thread about to block publishes what
//! it waits for, issues a `SeqCst` fence, then walks "lock -> owner -> lock that owner waits
//! for -> ..." from the lock it wants. Reaching itself again is a cycle: a deadlock.
//!
//! Why this finds every cycle: the thread that closes a cycle is the last of its members
//! to publish its wait. Each member stored its ownerships before its own fence and its
//! wait before that fence too, so the last fence in the `SeqCst` order sees them all. A
//! walk that misses a cycle because of a half-finished acquire (owner not yet written) is
//! repeated while the thread stays blocked, every 20 ms at first and then less often.
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

use super::sync::{fence, Arc, AtomicPtr, Mutex};
use super::{DeadlockEdge, ThreadingError};
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

/// The mutual-exclusion word of a lock.
///
/// parking_lot's raw mutex normally (spins, then parks; timed waits), a `Mutex<bool>` and a
/// `Condvar` under loom.
pub(crate) struct RawLock {
    #[cfg(not(loom))]
    raw: parking_lot::RawMutex,
    #[cfg(loom)]
    locked: Mutex<bool>,
    #[cfg(loom)]
    freed: super::sync::Condvar,
}

#[cfg(not(loom))]
impl RawLock {
    fn new() -> Self {
        use parking_lot::lock_api::RawMutex as _;
        Self {
            raw: parking_lot::RawMutex::INIT,
        }
    }
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        use parking_lot::lock_api::RawMutex as _;
        self.raw.try_lock()
    }
    fn lock_until(&self, deadline: Instant) -> bool {
        use parking_lot::lock_api::RawMutexTimed as _;
        self.raw.try_lock_until(deadline)
    }
    /// Only the holder calls this (the guards ensure it).
    #[inline]
    pub(crate) fn unlock(&self) {
        use parking_lot::lock_api::RawMutex as _;
        // SAFETY: called only by a guard's drop, i.e. by the thread holding the lock.
        unsafe { self.raw.unlock() }
    }
    pub(crate) fn is_locked(&self) -> bool {
        use parking_lot::lock_api::RawMutex as _;
        self.raw.is_locked()
    }
}

#[cfg(loom)]
impl RawLock {
    fn new() -> Self {
        Self {
            locked: Mutex::new(false),
            freed: super::sync::Condvar::new(),
        }
    }
    pub(crate) fn try_lock(&self) -> bool {
        let mut locked = self.locked.lock();
        !std::mem::replace(&mut *locked, true)
    }
    fn lock_until(&self, deadline: Instant) -> bool {
        let mut locked = self.locked.lock();
        while *locked {
            if self.freed.wait_until(&mut locked, deadline).timed_out() {
                return false;
            }
        }
        *locked = true;
        true
    }
    pub(crate) fn unlock(&self) {
        *self.locked.lock() = false;
        self.freed.notify_one();
    }
    pub(crate) fn is_locked(&self) -> bool {
        *self.locked.lock()
    }
}

/// The shared part of a `Lock` or `RLock`: reachable from a blocked thread's node.
pub(crate) struct LockCore {
    pub(crate) raw: RawLock,
    owner: AtomicPtr<ThreadNode>,
    pub(crate) name: String,
}

impl LockCore {
    pub(crate) fn new(name: String) -> Arc<Self> {
        Arc::new(Self {
            raw: RawLock::new(),
            owner: AtomicPtr::new(ptr::null_mut()),
            name,
        })
    }

    #[inline]
    pub(crate) fn set_owner(&self, node: &'static ThreadNode) {
        self.owner.store(
            node as *const ThreadNode as *mut ThreadNode,
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub(crate) fn clear_owner(&self) {
        self.owner.store(ptr::null_mut(), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn owned_by(&self, node: &'static ThreadNode) -> bool {
        ptr::eq(self.owner.load(Ordering::Relaxed), node)
    }

    /// Takes the raw lock, blocking, and reports a deadlock instead of hanging in one.
    ///
    /// Only called after the fast `try_lock` failed; the caller sets the owner afterwards.
    #[cold]
    pub(crate) fn lock_slow(
        this: &Arc<Self>,
        me: &'static ThreadNode,
    ) -> Result<(), ThreadingError> {
        if this.owned_by(me) {
            // Taking a non-re-entrant lock twice: the shortest cycle there is.
            return Err(ThreadingError::Deadlock(vec![DeadlockEdge {
                thread: me.name.clone(),
                waits_for: this.name.clone(),
                held_by: me.name.clone(),
            }]));
        }
        // A short spin first: most contended waits in a tight loop end within it, and it
        // keeps the bookkeeping below off the common contended path.
        #[cfg(not(loom))]
        for round in 0..SPIN_ROUNDS {
            for _ in 0..(1u32 << round) {
                std::hint::spin_loop();
            }
            if this.raw.try_lock() {
                return Ok(());
            }
        }
        me.begin_wait(this);
        fence(Ordering::SeqCst);
        let mut interval = Duration::from_millis(20);
        let outcome = loop {
            if let Some(cycle) = find_cycle(me, this) {
                break Err(ThreadingError::Deadlock(cycle));
            }
            if this.raw.lock_until(Instant::now() + interval) {
                break Ok(());
            }
            interval = (interval * 2).min(Duration::from_millis(500));
        };
        me.end_wait();
        outcome
    }

    /// Takes the raw lock before `deadline`; timed waits take no part in detection
    /// because they end by themselves.
    pub(crate) fn lock_until(&self, deadline: Instant) -> bool {
        self.raw.lock_until(deadline)
    }
}

/// Rounds of exponential spinning before a blocked acquire does its bookkeeping and
/// parks: about 2^15 `spin_loop` hints in all (well under a millisecond). Shorter spins
/// made the two-thread contended bench park and lose to `std::sync::Mutex`.
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 14;

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
        let owner = current.owner.load(Ordering::Acquire);
        if owner.is_null() {
            return None;
        }
        if ptr::eq(owner, me) {
            closed = true;
            break;
        }
        // SAFETY: owners are nodes from `current_node`, which are never freed.
        let node: &'static ThreadNode = unsafe { &*owner };
        let (waits, seq) = node.snapshot()?;
        // Still the owner while in that same wait episode: the edge held during it.
        if current.owner.load(Ordering::Acquire) != owner {
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
