//! Runs a closure under a controlled scheduler, to find the schedules in which it fails.
//!
//! A race condition or a deadlock shows only when the threads' steps happen to interleave
//! badly, and the operating system's scheduler picks the interleaving: a notebook's
//! racing counter loses updates on some runs only. `explore` takes the choice away from
//! it. The closure runs many times; in each run one thread runs at a time, and at every
//! synchronisation operation (and every read or write of a [`RacyCounter`]) the
//! scheduler picks which thread goes next. What it finds:
//!
//! - a panic, such as a failed `assert!`, in any thread;
//! - a deadlock: every thread waits, reported as the cycle of threads and locks;
//! - a lost update of a [`RacyCounter`]: a write that overwrote another thread's write.
//!
//! The first failing schedule comes back in the [`Report`]: its steps as a table, a
//! timeline with one row per thread, and a schedule string with which [`replay`] takes the
//! same steps again. When nothing fails the report counts the schedules and the closure's
//! distinct results.
//!
//! Three ways to choose, as in shuttle, loom and Coyote:
//!
//! | strategy | what it does |
//! | --- | --- |
//! | [`random`]`(n)` `.seed(s)` | `n` schedules, each choice uniformly random from a seeded generator |
//! | [`pct`]`(depth, n)` | probabilistic concurrency testing: random priorities, `depth - 1` priority changes; good at bugs that need a few steps in a certain order |
//! | [`exhaustive`]`()` | a depth-first search of every schedule, for small programs (bounded by `.max_schedules(n)`) |
//!
//! ```
//! use conclab::explore;
//! use conclab::prelude::*;
//! use std::sync::Arc;
//!
//! // Two threads increment a racing counter once each.
//! let racy = || {
//!     let counter = Arc::new(RacyCounter::new());
//!     let other = Arc::clone(&counter);
//!     let t = Thread::new(move || other.increment()).start().unwrap();
//!     counter.increment();
//!     t.join().unwrap();
//!     counter.get()
//! };
//! let report = explore::random(100).seed(1).run(racy);
//! let failed = report.first_failure().expect("a lost update");
//! assert!(failed.failure.as_ref().unwrap().to_string().starts_with("lost update"));
//!
//! // The schedule string takes exactly the same steps again.
//! let again = explore::replay(&failed.schedule, racy).unwrap();
//! assert_eq!(again.trace, failed.trace);
//! ```
//!
//! ## What the closure may use
//!
//! Inside a run, conclab's own types are controlled without any change to them:
//! [`Thread`](crate::threading::Thread) and its `JoinHandle`, [`Lock`](crate::threading::Lock),
//! [`RLock`](crate::threading::RLock), [`Condition`](crate::threading::Condition),
//! [`Semaphore`](crate::threading::Semaphore), [`Event`](crate::threading::Event),
//! [`Barrier`](crate::threading::Barrier), the [`queue`](crate::queue)s,
//! [`RacyCounter`] and [`LockedCounter`](crate::threading::LockedCounter). Outside a run
//! they cost one thread-local check more than before (`benches/threads.rs`).
//!
//! The closure must be deterministic apart from the scheduling: no clock, no randomness of
//! its own, no threads other than conclab's `Thread` (std's threads, a thread pool or a
//! process are not controlled, and a wait on one of them can hang the run). A
//! `std::thread::sleep` just sleeps while holding the run up: give explored code a pause of
//! zero. Any panic counts as a failure, even one the program catches. What the code
//! prints is dropped while schedules run (else it would print once per schedule;
//! [`Explorer::show_output`] keeps it) and shows in a [`replay`]. A timed wait
//! (`acquire_timeout`, `get_timeout`, ...) times out only when no other thread can run.
//!
//! ## How it works
//!
//! Every thread is a real OS thread, but only the holder of a baton runs (see
//! `sched.rs`); shuttle and loom instead run their own types as coroutines on one thread,
//! which conclab's types are not. Values made before the run, in this cell or an earlier
//! one, can be used in it; the closure runs once per schedule, so it makes what each run
//! must start fresh. The state of a run lives in values and in thread-locals set inside
//! the run, never in a static, since every notebook cell has its own statics.
//!
//! [`RacyCounter`]: crate::threading::RacyCounter

mod report;
pub(crate) mod sched;
mod strategy;
mod trace;

pub use report::Report;
pub use trace::{Failure, Schedule, Step, Trace};

use std::fmt::Debug;
use std::panic::PanicHookInfo;
use std::sync::Arc;
use strategy::{Dfs, Pct, Random, Replay, Strategy};

/// How many switch points one schedule may pass before it is reported as too long.
pub const DEFAULT_MAX_STEPS: usize = 20_000;

/// How many schedules [`exhaustive`] tries at most before it gives up on being complete.
pub const DEFAULT_MAX_SCHEDULES: usize = 100_000;

/// What [`replay`] cannot do.
///
/// ```
/// let error = conclab::explore::replay("0.1", || ()).unwrap_err();
/// assert!(error.to_string().contains("not a schedule string"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExploreError {
    /// The text is not a schedule string.
    #[error("{0}")]
    BadSchedule(String),
    /// The program did not ask the questions the schedule answers.
    #[error("the program did not follow schedule '{0}': it made different choices than the run that printed it; replay a schedule with the same closure that found it")]
    Diverged(String),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Random,
    Pct { depth: usize },
    Exhaustive,
}

/// An exploration to run: a strategy and its settings. Made by [`random`], [`pct`] or
/// [`exhaustive`].
///
/// ```
/// let report = conclab::explore::pct(2, 50).seed(7).max_steps(1_000).run(|| ());
/// assert_eq!(report.schedules(), 50);
/// ```
#[derive(Clone, Debug)]
#[must_use = "an Explorer does nothing until run() is called"]
pub struct Explorer {
    kind: Kind,
    seed: u64,
    schedules: usize,
    max_steps: usize,
    keep_going: bool,
    show_output: bool,
}

/// `schedules` schedules, each choice uniformly random (seed 1 unless [`Explorer::seed`]).
///
/// ```
/// assert_eq!(conclab::explore::random(10).run(|| ()).schedules(), 10);
/// ```
pub fn random(schedules: usize) -> Explorer {
    Explorer::new(Kind::Random, schedules)
}

/// `schedules` schedules of probabilistic concurrency testing for bugs of depth `depth`:
/// bugs that need `depth` steps to happen in a certain order (a lost update has depth 2,
/// a two-lock deadlock depth 2 as well).
///
/// ```
/// assert_eq!(conclab::explore::pct(3, 10).run(|| ()).schedules(), 10);
/// ```
pub fn pct(depth: usize, schedules: usize) -> Explorer {
    Explorer::new(Kind::Pct { depth }, schedules)
}

/// Every schedule, in a depth-first search, up to [`DEFAULT_MAX_SCHEDULES`] (change it
/// with [`Explorer::max_schedules`]). [`Report::is_exhaustive`] says whether it got
/// through them all.
///
/// ```
/// let report = conclab::explore::exhaustive().run(|| ());
/// assert_eq!(report.schedules(), 1);
/// assert!(report.is_exhaustive());
/// ```
pub fn exhaustive() -> Explorer {
    Explorer::new(Kind::Exhaustive, DEFAULT_MAX_SCHEDULES)
}

impl Explorer {
    fn new(kind: Kind, schedules: usize) -> Self {
        Self {
            kind,
            seed: 1,
            schedules,
            max_steps: DEFAULT_MAX_STEPS,
            keep_going: false,
            show_output: false,
        }
    }

    /// The seed of the random choices (random and PCT); the same seed gives the same
    /// schedules.
    ///
    /// ```
    /// let explorer = conclab::explore::random(5).seed(42);
    /// assert_eq!(explorer.run(|| ()).schedules(), 5);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many schedules to try at most: the count of a random or PCT run, the bound of
    /// an exhaustive one.
    ///
    /// ```
    /// let report = conclab::explore::exhaustive().max_schedules(1).run(|| ());
    /// assert_eq!(report.schedules(), 1);
    /// ```
    pub fn max_schedules(mut self, schedules: usize) -> Self {
        self.schedules = schedules;
        self
    }

    /// How many switch points one schedule may pass ([`DEFAULT_MAX_STEPS`]); a schedule
    /// that passes more fails with [`Failure::TooLong`].
    ///
    /// ```
    /// let report = conclab::explore::random(1).max_steps(10).run(|| ());
    /// assert!(report.is_ok());
    /// ```
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps;
        self
    }

    /// Runs every schedule even after one failed, so that the outcomes count them all
    /// (the report still keeps the first failure).
    ///
    /// ```
    /// let report = conclab::explore::random(3).keep_going().run(|| assert!(false));
    /// assert_eq!(report.failed(), 3);
    /// ```
    pub fn keep_going(mut self) -> Self {
        self.keep_going = true;
        self
    }

    /// Lets the explored code's standard output through. By default it goes to
    /// `/dev/null` while the schedules run: a `println!` in the code would otherwise print
    /// once per schedule. The redirection is of the process's descriptor 1, so a thread
    /// outside the run that prints meanwhile is not shown either. [`replay`] always shows
    /// the output.
    ///
    /// ```
    /// let report = conclab::explore::random(2).show_output().run(|| println!("twice"));
    /// assert_eq!(report.schedules(), 2);
    /// ```
    pub fn show_output(mut self) -> Self {
        self.show_output = true;
        self
    }

    fn strategy(&self) -> (Box<dyn Strategy>, String) {
        match self.kind {
            Kind::Random => (
                Box::new(Random::new(self.seed, self.schedules)),
                format!("random, seed {}", self.seed),
            ),
            Kind::Pct { depth } => (
                Box::new(Pct::new(self.seed, depth, self.schedules)),
                format!("PCT of depth {depth}, seed {}", self.seed),
            ),
            Kind::Exhaustive => (
                Box::new(Dfs::new(self.schedules)),
                "depth-first search".to_owned(),
            ),
        }
    }

    /// Runs `body` once per schedule and reports what happened. `body` makes the state
    /// each run starts from, starts conclab threads, and returns a result whose `Debug`
    /// text is counted as the schedule's outcome.
    ///
    /// ```
    /// use conclab::prelude::*;
    /// let report = conclab::explore::random(20).run(|| {
    ///     let q = std::sync::Arc::new(Queue::new());
    ///     let producer = Thread::new({
    ///         let q = q.clone();
    ///         move || q.put(1).unwrap()
    ///     }).start().unwrap();
    ///     let item = q.get().unwrap();
    ///     producer.join().unwrap();
    ///     item
    /// });
    /// assert!(report.is_ok());
    /// assert_eq!(report.outcomes(), &[("1".to_string(), 20)]);
    /// ```
    pub fn run<R: Debug, F: Fn() -> R + Sync>(&self, body: F) -> Report {
        let _quiet = QuietPanics::install();
        // Should /dev/null not open, the output just shows.
        let _silenced = (!self.show_output)
            .then(crate::os::fd::silence_stdout)
            .and_then(Result::ok);
        let (mut strategy, description) = self.strategy();
        let mut report = Report {
            strategy: description,
            schedules: 0,
            failed: 0,
            exhaustive: false,
            outcomes: Vec::new(),
            first_failure: None,
            first_failed_at: 0,
            last: Schedule {
                schedule: trace::encode(&[]),
                trace: Trace::default(),
                failure: None,
                outcome: None,
            },
        };
        while strategy.begin() {
            let (schedule, back) = run_one(&body, strategy, self.max_steps);
            strategy = back;
            report.schedules += 1;
            let outcome = match (&schedule.outcome, &schedule.failure) {
                (Some(outcome), _) => outcome.clone(),
                (None, Some(failure)) => format!("({})", failure_kind(failure)),
                (None, None) => "(no result)".to_owned(),
            };
            report::count(&mut report.outcomes, &outcome);
            let failed = schedule.failure.is_some();
            if failed {
                report.failed += 1;
                if report.first_failure.is_none() {
                    report.first_failure = Some(schedule.clone());
                    report.first_failed_at = report.schedules;
                }
            }
            report.last = schedule;
            if failed && !self.keep_going {
                break;
            }
        }
        report.exhaustive = strategy.exhausted();
        report::sort(&mut report.outcomes);
        report
    }
}

fn failure_kind(failure: &Failure) -> &'static str {
    match failure {
        Failure::Panic { .. } => "panic",
        Failure::Deadlock(_) => "deadlock",
        Failure::Stuck(_) => "stuck",
        Failure::LostUpdate { .. } => "lost update",
        Failure::TooLong { .. } => "too long",
    }
}

/// Takes the steps of a schedule string again, exactly, and returns them. What the code
/// prints shows, in the order of the schedule.
///
/// `body` must be the closure whose exploration printed the string (the same program
/// makes the same choices); [`ExploreError::Diverged`] says when it was not.
///
/// ```
/// use conclab::prelude::*;
/// use std::sync::Arc;
/// let body = || {
///     let lock = Arc::new(Lock::named("L", 0));
///     let other = Arc::clone(&lock);
///     let t = Thread::new(move || *other.acquire().unwrap() += 1).start().unwrap();
///     *lock.acquire().unwrap() += 1;
///     t.join().unwrap();
/// };
/// let report = conclab::explore::random(1).seed(3).run(body);
/// let again = conclab::explore::replay(&report.trace_schedule(), body).unwrap();
/// assert_eq!(&again.trace, report.trace());
/// ```
pub fn replay<R: Debug, F: Fn() -> R + Sync>(
    schedule: &str,
    body: F,
) -> Result<Schedule, ExploreError> {
    let choices = trace::decode(schedule).map_err(ExploreError::BadSchedule)?;
    let _quiet = QuietPanics::install();
    let mut strategy: Box<dyn Strategy> = Box::new(Replay::new(choices));
    strategy.begin();
    let (run, strategy) = run_one(&body, strategy, DEFAULT_MAX_STEPS);
    if strategy.faithful() {
        Ok(run)
    } else {
        Err(ExploreError::Diverged(schedule.trim().to_owned()))
    }
}

impl Report {
    /// The schedule string of the first failing schedule, or else of the last one run.
    ///
    /// ```
    /// assert_eq!(conclab::explore::random(1).run(|| ()).trace_schedule(), "s1:");
    /// ```
    pub fn trace_schedule(&self) -> String {
        self.first_failure
            .as_ref()
            .unwrap_or(&self.last)
            .schedule
            .clone()
    }
}

/// One schedule: the closure on a thread named `main`, under a fresh scheduler.
fn run_one<R: Debug, F: Fn() -> R + Sync>(
    body: &F,
    strategy: Box<dyn Strategy>,
    max_steps: usize,
) -> (Schedule, Box<dyn Strategy>) {
    let sched = sched::Sched::new(strategy, max_steps);
    let seat = sched.main_seat();
    let outcome = std::thread::scope(|s| {
        let started = std::thread::Builder::new()
            .name("main".to_owned())
            .spawn_scoped(s, move || seat.run(|| format!("{:?}", body()), None));
        match started {
            Ok(handle) => handle.join().ok(),
            Err(error) => {
                sched.give_up(format!("could not start the run's main thread: {error}"));
                None
            }
        }
    });
    let finished = sched.finish();
    let schedule = Schedule {
        schedule: trace::encode(&finished.choices),
        trace: Trace {
            threads: finished.threads,
            steps: finished.steps,
        },
        outcome: if finished
            .failure
            .as_ref()
            .is_some_and(|f| !matches!(f, Failure::LostUpdate { .. }))
        {
            None
        } else {
            outcome
        },
        failure: finished.failure,
    };
    (schedule, finished.strategy)
}

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Keeps the panics of explored threads off standard error while a run lasts: they are
/// the failures the report shows, and a kernel takes panic text on stderr for a failed
/// cell. Panics of other threads go to the hook there was before.
struct QuietPanics {
    previous: Option<Arc<Hook>>,
}

impl QuietPanics {
    fn install() -> Self {
        let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
        let fallback = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            let message = crate::threading::thread::panic_message(info.payload());
            let message = match info.location() {
                Some(at) => format!("{message} (at {}:{})", at.file(), at.line()),
                None => message,
            };
            if !sched::record_panic(message) {
                fallback(info);
            }
        }));
        Self {
            previous: Some(previous),
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // set_hook may not be called while panicking; the quiet hook stays, and it
            // passes every panic outside a run on to the previous one.
            return;
        }
        drop(std::panic::take_hook());
        if let Some(previous) = self.previous.take() {
            match Arc::try_unwrap(previous) {
                Ok(hook) => std::panic::set_hook(hook),
                Err(shared) => std::panic::set_hook(Box::new(move |info| shared(info))),
            }
        }
    }
}
