//! [`Event`]: Python's `threading.Event`, a flag threads can wait for.
//!
//! A `Mutex<flag>` with a `Condvar`; std and parking_lot have the parts but no event.

use crate::explore::sched::{self, Obj};
use crate::sync::{Condvar, Mutex};
use std::fmt;
use std::time::{Duration, Instant};

struct State {
    flag: bool,
    /// Counts `set` calls, so a waiter woken by a `set` that a quick `clear` undid still
    /// returns `true`, as Python's `wait` does.
    sets: u64,
}

/// A boolean flag with a wait: `set` wakes everyone waiting, `clear` resets it (Python's
/// `threading.Event`).
///
/// ```
/// use conclab::threading::{Event, Thread};
/// use std::sync::Arc;
///
/// let ready = Arc::new(Event::new());
/// let waiter = {
///     let ready = Arc::clone(&ready);
///     Thread::new(move || ready.wait()).start().unwrap()
/// };
/// ready.set();
/// assert!(waiter.join().unwrap());
/// assert!(ready.is_set());
/// ```
pub struct Event {
    state: Mutex<State>,
    changed: Condvar,
}

impl Event {
    /// A new event, not set.
    ///
    /// ```
    /// assert!(!conclab::threading::Event::new().is_set());
    /// ```
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                flag: false,
                sets: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// Sets the flag and wakes every waiting thread.
    ///
    /// ```
    /// let e = conclab::threading::Event::new();
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    pub fn set(&self) {
        sched::point("set", &self.obj());
        sched::note("set", &self.obj(), String::new);
        let mut state = self.state.lock();
        state.flag = true;
        state.sets += 1;
        drop(state);
        self.changed.notify_all();
    }

    /// Resets the flag; later `wait`s block again.
    ///
    /// ```
    /// let e = conclab::threading::Event::new();
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// ```
    pub fn clear(&self) {
        sched::point("clear", &self.obj());
        sched::note("clear", &self.obj(), String::new);
        self.state.lock().flag = false;
    }

    /// Whether the flag is set now.
    ///
    /// ```
    /// assert!(!conclab::threading::Event::new().is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.state.lock().flag
    }

    /// Waits until the flag is set; returns `true` (kept for symmetry with Python).
    ///
    /// ```
    /// let e = conclab::threading::Event::new();
    /// e.set();
    /// assert!(e.wait()); // already set: returns at once
    /// ```
    pub fn wait(&self) -> bool {
        self.wait_inner(None)
    }

    /// Waits at most `timeout`; `true` if the flag was set (Python's `wait(timeout)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = conclab::threading::Event::new();
    /// assert!(!e.wait_timeout(Duration::from_millis(5)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_inner(Some(Instant::now() + timeout))
    }

    /// How `explore` names this event in its steps.
    fn obj(&self) -> Obj<'_> {
        Obj::new(self, "event", None)
    }

    fn wait_inner(&self, deadline: Option<Instant>) -> bool {
        sched::point("wait", &self.obj());
        let set = self.wait_flag(deadline);
        sched::note("wait", &self.obj(), || {
            if set { "set" } else { "timed out" }.to_owned()
        });
        set
    }

    fn wait_flag(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.state.lock();
        let seen = state.sets;
        while !state.flag && state.sets == seen {
            match deadline {
                None => self.changed.wait(&mut state),
                Some(deadline) => {
                    if self.changed.wait_until(&mut state, deadline).timed_out() {
                        return state.flag || state.sets != seen;
                    }
                }
            }
        }
        true
    }
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
