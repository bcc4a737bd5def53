//! The baton: one explored thread runs at a time, and at every switch point the
//! scheduler picks who runs next.
//!
//! Every explored thread is a real OS thread (so conclab's types run unchanged), but only
//! the holder of the baton runs; the others wait on the scheduler's condition variable.
//! A thread gives the baton up at a switch point ([`point`]), when it must wait
//! ([`block`]) and when it ends; the scheduler then picks the next holder, asking the
//! strategy only when there is a real choice.
//!
//! The hooks the primitives call start with [`active`], one read of a thread-local that
//! is null outside a run, so the plain path pays one cheap check and nothing else. The
//! state of a run lives in the [`Sched`] value and in thread-locals set inside the run,
//! never in a static: each notebook cell links its own copy of this crate
//! (ARCHITECTURE.md, "Every cell has its own statics").
//!
//! The scheduler sleeps on std's `Mutex`/`Condvar` directly, not on `crate::sync`'s,
//! whose `Condvar` is itself one of the hooks.
//!
//! Three rules keep the number of schedules down without losing any behaviour:
//! - a thread that is not at a switch point yet (just started, or just back from a
//!   `join`) runs on at once, without a choice: what it does before its next switch point
//!   is invisible to the others;
//! - a thread chosen at a switch point that finds it must wait (a held lock, an empty
//!   queue) changed nothing, so the same choice is made again among the others (a
//!   *retry* of the same decision, not a new one);
//! - a choice between one candidate is no choice, and is not recorded.

use super::strategy::{Pick, Strategy};
use super::trace::{Failure, Step};
use crate::threading::DeadlockEdge;
use std::cell::Cell;
use std::collections::HashMap;
use std::ptr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A thread of the run: 0 is the closure given to `explore`, then in order of `start`.
pub(crate) type TaskId = usize;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    /// Runnable, between switch points: runs on without a choice.
    Free,
    /// Runnable, parked at a switch point before a visible operation.
    AtPoint,
    /// Waiting for an object to be signalled.
    Blocked,
    /// Signalled while blocked: runnable, and will look again when chosen.
    Woken,
    Finished,
}

/// What a blocked thread waits for.
#[derive(Clone, Debug)]
pub(crate) struct Waiting {
    /// The object that wakes it (its address).
    pub(crate) addr: usize,
    /// For a lock: the lock's name and the name of the thread holding it.
    pub(crate) lock: Option<(String, Option<String>)>,
    /// A `join`: when woken the thread goes on at once (rule 1 above).
    pub(crate) join: bool,
    /// A timed wait: when every thread waits, the scheduler ends it instead of
    /// reporting a deadlock.
    pub(crate) timed: bool,
    /// What the wait is, for the trace and for a report of threads stuck for ever.
    pub(crate) what: String,
}

struct Task {
    name: String,
    status: Status,
    waiting: Option<Waiting>,
    timed_out: bool,
}

/// What a wait ended with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Woke {
    /// The object was signalled.
    Signalled,
    /// A timed wait ended because nothing else could run.
    TimedOut,
    /// The run is over (a failure elsewhere) and this thread is already unwinding: the
    /// caller falls back to the plain, unexplored operation.
    Abandoned,
}

/// The payload with which threads of an aborted run unwind; never shown.
pub(crate) struct Aborted;

struct State {
    tasks: Vec<Task>,
    running: Option<TaskId>,
    strategy: Option<Box<dyn Strategy>>,
    /// Set once a choice was made and the chosen thread has not done anything yet: if it
    /// now blocks, the choice is retried.
    open_choice: bool,
    choices: Vec<TaskId>,
    steps: Vec<Step>,
    points: usize,
    max_steps: usize,
    failure: Option<Failure>,
    abort: bool,
    /// OS threads that still run code of this run.
    live: usize,
    /// Display names of the objects seen, by address, numbered per kind in order of use.
    objects: HashMap<usize, String>,
    per_class: HashMap<&'static str, usize>,
    /// Per task: the last switch point's operation and object, which names the waits of
    /// internal condition variables ("waits for queue 1", not for its condvar).
    last_op: Vec<(String, String)>,
}

/// One run of the closure under one schedule.
pub(crate) struct Sched {
    state: Mutex<State>,
    turn: Condvar,
}

/// What a finished run leaves behind.
pub(crate) struct Finished {
    pub(crate) steps: Vec<Step>,
    pub(crate) threads: Vec<String>,
    pub(crate) choices: Vec<TaskId>,
    pub(crate) failure: Option<Failure>,
    pub(crate) strategy: Box<dyn Strategy>,
}

/// How an operation names the object it works on.
pub(crate) struct Obj<'a> {
    pub(crate) addr: usize,
    /// The kind, used to number unnamed objects: "queue 1", "counter 2". Empty for the
    /// internal condition variables of the primitives, which are not shown.
    pub(crate) class: &'static str,
    pub(crate) name: Option<&'a str>,
}

impl<'a> Obj<'a> {
    pub(crate) fn new<T: ?Sized>(of: &T, class: &'static str, name: Option<&'a str>) -> Self {
        Self {
            addr: ptr::from_ref(of).cast::<()>().addr(),
            class,
            name,
        }
    }
}

thread_local! {
    // Null outside a run: the one check the plain path pays. Const-initialised and
    // without a destructor, so reading it is a single thread-local load.
    static SEAT: Cell<*const Seat> = const { Cell::new(ptr::null()) };
}

/// A thread's place in a run: the scheduler and its task number.
pub(crate) struct Seat {
    sched: Arc<Sched>,
    id: TaskId,
}

/// Whether the calling thread is a thread of an explore run.
#[inline]
pub(crate) fn active() -> bool {
    SEAT.with(|seat| !seat.get().is_null())
}

fn with_seat<R>(f: impl FnOnce(&Seat) -> R) -> Option<R> {
    let seat = SEAT.with(Cell::get);
    if seat.is_null() {
        return None;
    }
    // SAFETY: `SEAT` is only set by `Seat::run` to a seat that lives on this thread's own
    // stack for the whole time the pointer is set, and `SeatGuard` clears it before that
    // frame ends (also while unwinding); no other thread reads this thread-local.
    Some(f(unsafe { &*seat }))
}

/// Clears `SEAT` when the seat's frame ends, by return or by unwinding.
struct SeatGuard;

impl Drop for SeatGuard {
    fn drop(&mut self) {
        SEAT.with(|seat| seat.set(ptr::null()));
    }
}

impl Sched {
    pub(crate) fn new(strategy: Box<dyn Strategy>, max_steps: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                tasks: vec![Task {
                    name: "main".to_owned(),
                    status: Status::Free,
                    waiting: None,
                    timed_out: false,
                }],
                running: Some(0),
                strategy: Some(strategy),
                open_choice: false,
                choices: Vec::new(),
                steps: Vec::new(),
                points: 0,
                max_steps,
                failure: None,
                abort: false,
                live: 1,
                objects: HashMap::new(),
                per_class: HashMap::new(),
                last_op: vec![(String::new(), String::new())],
            }),
            turn: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the scheduler's own lock cannot leave it half-updated in a
        // way that matters more than the panic itself, which is reported.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every thread of the run has ended, then hands back what it recorded.
    pub(crate) fn finish(&self) -> Finished {
        let mut st = self.lock();
        while st.live > 0 {
            st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let threads = st.tasks.iter().map(|t| t.name.clone()).collect();
        Finished {
            steps: std::mem::take(&mut st.steps),
            threads,
            choices: std::mem::take(&mut st.choices),
            failure: st.failure.take(),
            strategy: st
                .strategy
                .take()
                .expect("the strategy is handed back once"),
        }
    }

    /// Ends a run whose main thread could not even start.
    pub(crate) fn give_up(&self, message: String) {
        let mut st = self.lock();
        fail(
            &mut st,
            Failure::Panic {
                thread: "main".to_owned(),
                message,
            },
        );
        st.live -= 1;
        self.turn.notify_all();
    }

    /// The seat of task 0, for the thread that runs the closure.
    pub(crate) fn main_seat(self: &Arc<Self>) -> Seat {
        Seat {
            sched: Arc::clone(self),
            id: 0,
        }
    }

    /// Parks the caller until it holds the baton again. On abort it unwinds (or, when it
    /// is unwinding already, returns `false`).
    fn park<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        me: TaskId,
    ) -> (MutexGuard<'a, State>, bool) {
        while st.running != Some(me) && !st.abort {
            st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.abort {
            if std::thread::panicking() {
                return (st, false);
            }
            drop(st);
            std::panic::resume_unwind(Box::new(Aborted));
        }
        (st, true)
    }

    /// Picks the next holder of the baton and hands it over.
    fn hand_over(&self, st: &mut State, current: Option<TaskId>) {
        let next = decide(st, current);
        st.running = next;
        self.turn.notify_all();
    }
}

/// The scheduler's choice; `None` when the run is over (done, or aborted).
fn decide(st: &mut State, current: Option<TaskId>) -> Option<TaskId> {
    if st.abort {
        return None;
    }
    if let Some(free) = st.tasks.iter().position(|t| t.status == Status::Free) {
        st.open_choice = false;
        return Some(free);
    }
    let candidates: Vec<TaskId> = (0..st.tasks.len())
        .filter(|&i| matches!(st.tasks[i].status, Status::AtPoint | Status::Woken))
        .collect();
    if candidates.is_empty() {
        if let Some(timed) = st.tasks.iter().position(|t| {
            t.status == Status::Blocked && t.waiting.as_ref().is_some_and(|w| w.timed)
        }) {
            st.tasks[timed].status = Status::Woken;
            st.tasks[timed].timed_out = true;
            st.open_choice = false;
            return Some(timed);
        }
        if st.tasks.iter().all(|t| t.status == Status::Finished) {
            return None;
        }
        let failure = stuck(st);
        fail(st, failure);
        return None;
    }
    let pick = if st.open_choice {
        Pick::Retry
    } else if candidates.len() >= 2 {
        Pick::Fresh
    } else {
        return Some(candidates[0]);
    };
    st.open_choice = true;
    let strategy = st.strategy.as_mut().expect("a strategy while running");
    let chosen = strategy.choose(&candidates, current, pick);
    st.choices.push(chosen);
    Some(chosen)
}

/// Every thread waits: a cycle through locks is a deadlock, anything else is stuck.
fn stuck(st: &State) -> Failure {
    let holder_of: HashMap<&str, (&str, Option<&str>)> = st
        .tasks
        .iter()
        .filter(|t| t.status == Status::Blocked)
        .filter_map(|t| {
            let (lock, holder) = t.waiting.as_ref()?.lock.as_ref()?;
            Some((t.name.as_str(), (lock.as_str(), holder.as_deref())))
        })
        .collect();
    for start in &st.tasks {
        let mut path: Vec<&str> = Vec::new();
        let mut at = start.name.as_str();
        while let Some(&(_, Some(holder))) = holder_of.get(at) {
            if let Some(from) = path.iter().position(|&p| p == at) {
                let cycle = &path[from..];
                return Failure::Deadlock(
                    cycle
                        .iter()
                        .map(|&thread| {
                            let (lock, holder) = holder_of[thread];
                            DeadlockEdge {
                                thread: thread.to_owned(),
                                waits_for: lock.to_owned(),
                                held_by: holder.unwrap_or("nobody").to_owned(),
                            }
                        })
                        .collect(),
                );
            }
            path.push(at);
            at = holder;
        }
    }
    Failure::Stuck(
        st.tasks
            .iter()
            .filter(|t| t.status == Status::Blocked)
            .map(|t| {
                let what = t.waiting.as_ref().map_or("?", |w| w.what.as_str());
                format!("thread '{}' {what}", t.name)
            })
            .collect(),
    )
}

/// Records the run's first failure; a fatal one ends the run.
fn fail(st: &mut State, failure: Failure) {
    let fatal = !matches!(failure, Failure::LostUpdate { .. });
    if st.failure.is_none() {
        st.failure = Some(failure);
    }
    if fatal {
        st.abort = true;
    }
}

impl State {
    fn object_name(&mut self, obj: &Obj<'_>) -> String {
        if let Some(name) = obj.name {
            return name.to_owned();
        }
        if let Some(name) = self.objects.get(&obj.addr) {
            return name.clone();
        }
        let n = self.per_class.entry(obj.class).or_insert(0);
        *n += 1;
        let name = format!("{} {n}", obj.class);
        self.objects.insert(obj.addr, name.clone());
        name
    }

    fn push_step(&mut self, me: TaskId, op: &str, object: String, value: Option<String>) {
        let thread = self.tasks[me].name.clone();
        self.steps.push(Step {
            thread,
            op: op.to_owned(),
            object,
            value,
        });
    }
}

impl Seat {
    /// Runs `body` as this seat's task: waits for the first turn, runs, ends the task
    /// (waking the threads that wait at `finished_addr` to join it). A panic of the body,
    /// already recorded by the hook, or the unwinding of an aborted run goes on after the
    /// task has ended.
    pub(crate) fn run<R>(self, body: impl FnOnce() -> R, finished_addr: Option<usize>) -> R {
        SEAT.with(|seat| seat.set(&self));
        let _clear = SeatGuard;
        let sched = &*self.sched;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let st = sched.lock();
            drop(sched.park(st, self.id));
            body()
        }));
        let mut st = sched.lock();
        if let Err(payload) = &outcome {
            // The hook records panics with their place; this catches one it missed (when
            // another hook replaced it meanwhile).
            if !payload.is::<Aborted>() && st.failure.is_none() {
                let thread = st.tasks[self.id].name.clone();
                let message = crate::threading::thread::panic_message(payload.as_ref());
                fail(&mut st, Failure::Panic { thread, message });
            }
        }
        st.tasks[self.id].status = Status::Finished;
        if let Some(addr) = finished_addr {
            wake_locked(&mut st, addr);
        }
        if st.running == Some(self.id) {
            st.open_choice = false;
            sched.hand_over(&mut st, None);
        }
        st.live -= 1;
        sched.turn.notify_all();
        drop(st);
        match outcome {
            Ok(value) => value,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

fn wake_locked(st: &mut State, addr: usize) {
    for task in &mut st.tasks {
        if task.status == Status::Blocked && task.waiting.as_ref().is_some_and(|w| w.addr == addr) {
            let join = task.waiting.as_ref().is_some_and(|w| w.join);
            task.status = if join { Status::Free } else { Status::Woken };
        }
    }
}

// --- The hooks the primitives call, each after `active()` said yes. ---

/// A switch point before a visible operation `op` on `obj`: the scheduler may run other
/// threads first. Returns when this thread holds the baton again.
pub(crate) fn point(op: &str, obj: &Obj<'_>) {
    with_seat(|seat| {
        let sched = &*seat.sched;
        let mut st = sched.lock();
        if st.abort || std::thread::panicking() {
            return;
        }
        let name = st.object_name(obj);
        st.last_op[seat.id] = (op.to_owned(), name);
        st.points += 1;
        if st.points > st.max_steps {
            let steps = st.max_steps;
            fail(&mut st, Failure::TooLong { steps });
            sched.turn.notify_all();
            drop(st);
            std::panic::resume_unwind(Box::new(Aborted));
        }
        st.tasks[seat.id].status = Status::AtPoint;
        st.open_choice = false;
        sched.hand_over(&mut st, Some(seat.id));
        let (mut st, _) = sched.park(st, seat.id);
        st.tasks[seat.id].status = Status::Free;
    });
}

/// Records that this thread did `op` on `obj` (with the value read or written).
pub(crate) fn step(op: &str, obj: &Obj<'_>, value: Option<String>) {
    with_seat(|seat| {
        let mut st = seat.sched.lock();
        if st.abort {
            return;
        }
        let name = st.object_name(obj);
        st.push_step(seat.id, op, name, value);
        st.open_choice = false;
    });
}

/// [`step`] with a value that is only worked out inside a run.
#[inline]
pub(crate) fn note(op: &str, obj: &Obj<'_>, value: impl FnOnce() -> String) {
    if active() {
        let value = value();
        step(op, obj, (!value.is_empty()).then_some(value));
    }
}

/// Records a lost update of a racing counter: the schedule fails, and runs to its end.
pub(crate) fn lost_update(obj: &Obj<'_>, read: u64, found: u64) {
    with_seat(|seat| {
        let mut st = seat.sched.lock();
        let counter = st.object_name(obj);
        let thread = st.tasks[seat.id].name.clone();
        fail(
            &mut st,
            Failure::LostUpdate {
                thread,
                counter,
                read,
                found,
            },
        );
    });
}

/// Waits until `waiting.addr` is signalled with [`wake`], running other threads meanwhile.
pub(crate) fn block(obj: &Obj<'_>, mut waiting: Waiting) -> Woke {
    with_seat(|seat| {
        let sched = &*seat.sched;
        let mut st = sched.lock();
        if st.abort || std::thread::panicking() {
            return Woke::Abandoned;
        }
        let name = if obj.class.is_empty() {
            st.last_op[seat.id].1.clone()
        } else {
            st.object_name(obj)
        };
        if waiting.what.is_empty() {
            let (op, object) = &st.last_op[seat.id];
            waiting.what = format!("waits in {op} on {object}");
        }
        let value = waiting
            .lock
            .as_ref()
            .and_then(|(_, holder)| holder.as_ref().map(|h| format!("held by {h}")));
        st.push_step(seat.id, "waits for", name, value);
        let task = &mut st.tasks[seat.id];
        task.status = Status::Blocked;
        task.waiting = Some(waiting);
        task.timed_out = false;
        sched.hand_over(&mut st, Some(seat.id));
        let (mut st, running) = sched.park(st, seat.id);
        if !running {
            return Woke::Abandoned;
        }
        let task = &mut st.tasks[seat.id];
        task.status = Status::Free;
        task.waiting = None;
        if task.timed_out {
            Woke::TimedOut
        } else {
            Woke::Signalled
        }
    })
    .unwrap_or(Woke::Abandoned)
}

/// Signals `addr`: every thread blocked on it becomes runnable.
pub(crate) fn wake(addr: usize) {
    with_seat(|seat| wake_locked(&mut seat.sched.lock(), addr));
}

/// Registers a thread about to be started; its OS thread runs [`Seat::run`].
pub(crate) fn spawn(name: Option<&str>) -> Option<Seat> {
    with_seat(|seat| {
        let mut st = seat.sched.lock();
        let id = st.tasks.len();
        let name = name.map_or_else(|| format!("Thread-{id}"), str::to_owned);
        st.tasks.push(Task {
            name: name.clone(),
            status: Status::Free,
            waiting: None,
            timed_out: false,
        });
        st.last_op.push((String::new(), String::new()));
        st.live += 1;
        let object = name.clone();
        st.push_step(seat.id, "start", object, None);
        Seat {
            sched: Arc::clone(&seat.sched),
            id,
        }
    })
}

impl Seat {
    /// The name this seat's thread gets.
    pub(crate) fn name(&self) -> String {
        self.sched.lock().tasks[self.id].name.clone()
    }
}

/// Records a panic of the calling thread as the run's failure; `false` when the caller
/// is not a thread of a run (the panic hook then prints it as usual).
pub(crate) fn record_panic(message: String) -> bool {
    with_seat(|seat| {
        let mut st = seat.sched.lock();
        if st.abort {
            // The run is already over; this is a thread unwinding after it.
            return;
        }
        let thread = st.tasks[seat.id].name.clone();
        fail(&mut st, Failure::Panic { thread, message });
        seat.sched.turn.notify_all();
    })
    .is_some()
}
