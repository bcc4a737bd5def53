//! Everything a notebook needs, in one `use conclab::prelude::*;`.
//!
//! The thread side is exported under Python's names. The process side shares some of
//! them (`Queue`), so it is also reachable as `mp::...`, as in Python's
//! `import multiprocessing as mp`.
//!
//! ```
//! use conclab::prelude::*;
//! ```

// --- thread side: threading, queue, concurrent.futures, the simulated GIL ---
pub use crate::futures::{
    as_completed, wait, Future, ReturnWhen, TaskError, ThreadPoolExecutor, ALL_COMPLETED,
    FIRST_COMPLETED, FIRST_EXCEPTION,
};
pub use crate::gil::{cpu_work, Gil};
pub use crate::queue::{LifoQueue, PriorityQueue, Queue, QueueError};
pub use crate::threading::{
    current_thread, get_ident, Barrier, BoundedSemaphore, Condition, Event, JoinHandle, Lock,
    LockedCounter, RLock, RacyCounter, Runnable, Semaphore, Thread, ThreadLocal, ThreadingError,
};

// --- Exploring schedules: `explore::random(n).run(|| ...)`, `explore::replay(...)`. ---
pub use crate::explore;

// --- Pictures: timelines, charts and tables of timings. ---
pub use crate::chart::{BarChart, ChartError, LineChart};
pub use crate::table::{format_duration, Cell, Table};
pub use crate::timeline::{SpanGuard, Timeline, TimelineError};

// --- process side: `mp::Queue` because `Queue` is the thread side's name ---
pub use crate::multiprocessing as mp;
pub use crate::multiprocessing::{
    cpu_count, Array, AsyncResult, Connection, DictProxy, JoinableQueue, ListProxy, Manager,
    MpError, Pipe, Pool, Process, ProcessBuilder, ProcessPoolExecutor, Value,
};

// --- data parallelism on threads (issue 15): rayon's traits, and a pool to hold ---
pub use crate::parallel::{os_thread_count, RayonPool};
pub use rayon::prelude::*;
