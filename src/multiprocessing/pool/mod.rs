//! `Pool`: Python's `multiprocessing.Pool` over forked workers.

mod core;
mod frame;
mod results;
mod task;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::core::{Core, PoolState};
use self::results::{All, Each, One, Outcome, Results, Stream};
pub use self::task::StarCall;
use self::task::{callable_bytes, run_init, InitTramp, TypedJob};
use self::worker::Init;

use super::MpError;

/// How long one caller drives the pool before it lets another thread take a turn.
const SLICE: Duration = Duration::from_millis(50);

/// A pool of forked worker processes (Python's `multiprocessing.Pool`).
///
/// Tasks are `Copy + 'static` callables (`fn` items, closures without captures or with
/// `Copy` captures) with serde arguments and results. Results keep the input order in
/// `map`, `starmap` and `imap`.
///
/// * A task that panics gives [`MpError::TaskPanicked`]; the worker carries on.
/// * A worker killed mid-task gives that task [`MpError::WorkerDied`] naming the signal;
///   the pool starts a replacement, runs the dead worker's other tasks again elsewhere and
///   delivers every other result (CPython's `Pool` hangs there, gh-66587).
/// * Code loaded after the workers were forked (a function defined in a later notebook
///   cell) is detected before dispatch; the pool lets running work finish, then re-forks
///   its workers, so `let pool = Pool::new(4)` in one cell and `pool.map(square, ...)` in
///   a later one works.
/// * There is no background thread: queued work moves while you call into the pool or an
///   [`AsyncResult`]; each worker always holds a couple of chunks ahead, so it keeps
///   computing in between.
///
/// Dropping the pool terminates it (as leaving Python's `with Pool() as p:` does): workers
/// are killed and reaped, unfinished async results become errors. Call
/// [`close`](Pool::close) and [`join`](Pool::join) to finish queued work first.
///
/// ```
/// use conclab::multiprocessing::Pool;
///
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// let pool = Pool::new(3).unwrap();
/// assert_eq!(pool.map(square, 1..=5).unwrap(), vec![1, 4, 9, 16, 25]);
/// ```
pub struct Pool {
    core: Arc<Mutex<Core>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let core = self.core.lock();
        f.debug_struct("Pool")
            .field("processes", &core.size())
            .field("state", &core.state)
            .finish()
    }
}

/// Options for a [`Pool`]: Python's `processes`, `initializer`/`initargs` and
/// `maxtasksperchild`.
///
/// ```
/// use conclab::multiprocessing::PoolBuilder;
///
/// fn hello(tag: String) {
///     println!("worker {} ready ({tag})", std::process::id());
/// }
///
/// let pool = PoolBuilder::new()
///     .processes(2)
///     .initializer(hello, ("init".to_string(),))
///     .max_tasks_per_child(10)
///     .build()
///     .unwrap();
/// assert_eq!(pool.map(|x: i32| x + 1, [1, 2]).unwrap(), vec![2, 3]);
/// ```
#[derive(Default)]
pub struct PoolBuilder {
    processes: usize,
    init: Option<Init>,
    max_tasks: Option<usize>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.init.is_some())
            .field("max_tasks_per_child", &self.max_tasks)
            .finish()
    }
}

impl PoolBuilder {
    /// Defaults: [`cpu_count`](super::cpu_count) workers, no initializer, no task limit.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::PoolBuilder::new().build().unwrap();
    /// assert_eq!(pool.processes(), conclab::multiprocessing::cpu_count());
    /// ```
    pub fn new() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of workers; 0 means [`cpu_count`](super::cpu_count).
    ///
    /// ```
    /// let pool = conclab::multiprocessing::PoolBuilder::new().processes(2).build().unwrap();
    /// assert_eq!(pool.processes(), 2);
    /// ```
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = n;
        self
    }

    /// A function every worker runs once when it starts (also replacement workers).
    /// If it panics, the worker exits and the pool, after several failed starts, fails
    /// the queued tasks instead of restarting workers forever.
    ///
    /// ```
    /// use conclab::multiprocessing::PoolBuilder;
    /// let pool = PoolBuilder::new().processes(1).initializer(|| println!("up"), ()).build().unwrap();
    /// assert_eq!(pool.apply(|| 5, ()).unwrap(), 5);
    /// ```
    pub fn initializer<F, Args>(mut self, f: F, args: Args) -> PoolBuilder
    where
        F: StarCall<Args, ()>,
        Args: Serialize + DeserializeOwned,
    {
        let tramp = run_init::<F, Args> as InitTramp as usize;
        self.init = Some(Init {
            tramp,
            fbytes: callable_bytes(&f),
            args: bincode::serialize(&args).unwrap_or_default(),
        });
        self
    }

    /// Each worker exits after this many chunks and is replaced (Python's
    /// `maxtasksperchild`, which also counts a chunk of `map` as one task). 0: no limit.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::PoolBuilder::new()
    ///     .processes(1)
    ///     .max_tasks_per_child(1)
    ///     .build()
    ///     .unwrap();
    /// let pids = pool.map_chunked(|_: u8| std::process::id(), [0, 1, 2], 1).unwrap();
    /// assert_ne!(pids[0], pids[1]); // a fresh worker for every chunk
    /// ```
    pub fn max_tasks_per_child(mut self, n: usize) -> PoolBuilder {
        self.max_tasks = Some(n);
        self
    }

    /// Forks the workers.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::PoolBuilder::new().processes(1).build().unwrap();
    /// assert_eq!(pool.processes(), 1);
    /// ```
    pub fn build(self) -> Result<Pool, MpError> {
        let n = if self.processes == 0 {
            super::cpu_count()
        } else {
            self.processes
        };
        Ok(Pool {
            core: Arc::new(Mutex::new(Core::new(n, self.init, self.max_tasks)?)),
        })
    }
}

/// CPython's default chunk size for `map`: about four chunks per worker.
fn default_chunksize(n: usize, workers: usize) -> usize {
    let per = workers.max(1) * 4;
    n / per + usize::from(n % per != 0)
}

impl Pool {
    /// A pool of `n` workers; 0 means [`cpu_count`](super::cpu_count) (Python's
    /// `Pool(processes=None)`).
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// assert_eq!(pool.processes(), 2);
    /// ```
    pub fn new(n: usize) -> Result<Pool, MpError> {
        PoolBuilder::new().processes(n).build()
    }

    /// The number of workers.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(3).unwrap();
    /// assert_eq!(pool.processes(), 3);
    /// ```
    pub fn processes(&self) -> usize {
        self.core.lock().size()
    }

    /// The workers' process ids right now.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// assert_eq!(pool.pids().len(), 2);
    /// ```
    pub fn pids(&self) -> Vec<i32> {
        self.core.lock().pids()
    }

    /// How often the pool re-forked its workers because code was loaded after their fork
    /// (a later notebook cell). 0 outside a notebook unless you `dlopen` libraries.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(1).unwrap();
    /// pool.map(|x: i32| x, [1]).unwrap();
    /// assert_eq!(pool.reforks(), 0);
    /// ```
    pub fn reforks(&self) -> usize {
        self.core.lock().reforks
    }

    /// How many workers died (signal, abort) and were replaced.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(1).unwrap();
    /// assert_eq!(pool.replaced_workers(), 0);
    /// ```
    pub fn replaced_workers(&self) -> usize {
        self.core.lock().replaced
    }

    /// Queues `f` over `args`; returns the job's id and its results, which the caller's
    /// handle reads as `K` says.
    fn submit<F, Args, R, K>(
        &self,
        f: F,
        args: Vec<Args>,
        chunksize: Option<usize>,
    ) -> Result<(u64, Arc<Results<R, K>>), MpError>
    where
        F: StarCall<Args, R>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        K: 'static,
    {
        let n = args.len();
        let results = Results::new(n);
        let job = Box::new(TypedJob::new(f, args, &results));
        let mut core = self.core.lock();
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(n, core.size()));
        let id = core.submit(job, n, chunksize)?;
        Ok((id, results))
    }

    /// Applies `f` to every item, in parallel, and returns the results in order (Python's
    /// `map`, with its default chunk size). The first failed task's error, if any.
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Pool};
    /// let pool = Pool::new(2).unwrap();
    /// let r = pool.map(|x: i32| if x == 0 { panic!("Cannot process 0") } else { 10 / x }, [1, 2, 0, 4]);
    /// assert!(matches!(r, Err(MpError::TaskPanicked(m)) if m.contains("Cannot process 0")));
    /// ```
    pub fn map<F, A, R, I>(&self, f: F, items: I) -> Result<Vec<R>, MpError>
    where
        F: StarCall<(A,), R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items)?.get()
    }

    /// [`map`](Pool::map) with an explicit chunk size (tasks per message to a worker).
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// assert_eq!(pool.map_chunked(|x: u8| x * 2, 0..4, 1).unwrap(), vec![0, 2, 4, 6]);
    /// ```
    pub fn map_chunked<F, A, R, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<Vec<R>, MpError>
    where
        F: StarCall<(A,), R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let args: Vec<(A,)> = items.into_iter().map(|a| (a,)).collect();
        let (job, results) = self.submit::<_, _, _, All>(f, args, Some(chunksize))?;
        AsyncResult::new(self, job, results).get()
    }

    /// Like [`map`](Pool::map) for functions of several arguments: each item is a tuple
    /// (Python's `starmap`).
    ///
    /// ```
    /// fn calculate_power(base: u64, exponent: u32) -> u64 {
    ///     base.pow(exponent)
    /// }
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// let data = vec![(2, 2), (3, 3), (4, 2), (5, 3)];
    /// assert_eq!(pool.starmap(calculate_power, data).unwrap(), vec![4, 27, 16, 125]);
    /// ```
    pub fn starmap<F, Args, R, I>(&self, f: F, items: I) -> Result<Vec<R>, MpError>
    where
        F: StarCall<Args, R>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        let args: Vec<Args> = items.into_iter().collect();
        let (job, results) = self.submit::<_, _, _, All>(f, args, None)?;
        AsyncResult::new(self, job, results).get()
    }

    /// Starts a `map` and returns at once (Python's `map_async`).
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// let pending = pool.map_async(|x: u32| x + 1, 0..3).unwrap();
    /// println!("main program is still running");
    /// assert_eq!(pending.get().unwrap(), vec![1, 2, 3]);
    /// ```
    pub fn map_async<F, A, R, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>, MpError>
    where
        F: StarCall<(A,), R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let args: Vec<(A,)> = items.into_iter().map(|a| (a,)).collect();
        let (job, results) = self.submit::<_, _, _, All>(f, args, None)?;
        Ok(AsyncResult::new(self, job, results))
    }

    /// Runs one call in a worker and waits for it (Python's `apply(f, args)`).
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(1).unwrap();
    /// assert_eq!(pool.apply(|a: i32, b: i32| a * b, (6, 7)).unwrap(), 42);
    /// ```
    pub fn apply<F, Args, R>(&self, f: F, args: Args) -> Result<R, MpError>
    where
        F: StarCall<Args, R>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts one call and returns at once (Python's `apply_async(f, args=(...))`).
    ///
    /// ```
    /// fn calculate_square(n: u64) -> u64 { n * n }
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// let result = pool.apply_async(calculate_square, (10,)).unwrap();
    /// println!("Main program is still running...");
    /// assert_eq!(result.get().unwrap(), 100);
    /// ```
    pub fn apply_async<F, Args, R>(&self, f: F, args: Args) -> Result<AsyncResult<R>, MpError>
    where
        F: StarCall<Args, R>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let (job, results) = self.submit::<_, _, _, One>(f, vec![args], Some(1))?;
        Ok(AsyncResult::new(self, job, results))
    }

    /// An iterator over the results in input order, each as soon as it and those before
    /// it are done (Python's `imap`, chunk size 1). A failed task is an `Err` item; the
    /// others still come.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// let out: Vec<_> = pool.imap(|x: i32| 100 / x, [1, 0, 5]).unwrap().collect();
    /// assert_eq!(out[0], Ok(100));
    /// assert!(out[1].is_err());
    /// assert_eq!(out[2], Ok(20));
    /// ```
    pub fn imap<F, A, R, I>(&self, f: F, items: I) -> Result<Imap<R>, MpError>
    where
        F: StarCall<(A,), R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let args: Vec<(A,)> = items.into_iter().map(|a| (a,)).collect();
        let len = args.len();
        let (job, results) = self.submit::<_, _, _, Each>(f, args, Some(1))?;
        Ok(Imap {
            results: JobResults::new(self, job, results, len),
            next: 0,
        })
    }

    /// Like [`imap`](Pool::imap) but in completion order (Python's `imap_unordered`).
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// let mut out: Vec<i32> = pool
    ///     .imap_unordered(|x: i32| x * x, 1..=4)
    ///     .unwrap()
    ///     .map(|r| r.unwrap())
    ///     .collect();
    /// out.sort();
    /// assert_eq!(out, vec![1, 4, 9, 16]);
    /// ```
    pub fn imap_unordered<F, A, R, I>(&self, f: F, items: I) -> Result<ImapUnordered<R>, MpError>
    where
        F: StarCall<(A,), R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let args: Vec<(A,)> = items.into_iter().map(|a| (a,)).collect();
        let len = args.len();
        let (job, results) = self.submit::<_, _, _, Each>(f, args, Some(1))?;
        Ok(ImapUnordered {
            results: JobResults::new(self, job, results, len),
        })
    }

    /// Takes no new tasks; queued ones still run (Python's `close`).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Pool};
    /// let pool = Pool::new(1).unwrap();
    /// pool.close();
    /// assert_eq!(pool.apply(|| 1, ()), Err(MpError::PoolClosed));
    /// ```
    pub fn close(&self) {
        let mut core = self.core.lock();
        if core.state == PoolState::Running {
            core.state = PoolState::Closed;
        }
    }

    /// After [`close`](Pool::close): waits for all queued work, then lets the workers
    /// exit and reaps them (Python's `join`). Async results stay readable.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
    /// let r = pool.apply_async(|x: i32| x + 1, (1,)).unwrap();
    /// pool.close();
    /// pool.join().unwrap();
    /// assert!(r.ready());
    /// assert_eq!(r.get().unwrap(), 2);
    /// ```
    pub fn join(&self) -> Result<(), MpError> {
        let mut core = self.core.lock();
        if core.state == PoolState::Running {
            return Err(MpError::PoolStillOpen);
        }
        core.drain()?;
        core.stop_workers(false);
        Ok(())
    }

    /// Kills the workers now; unfinished tasks become errors (Python's `terminate`).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Pool};
    /// let pool = Pool::new(1).unwrap();
    /// let slow = pool.apply_async(|| std::thread::sleep(std::time::Duration::from_secs(30)), ()).unwrap();
    /// pool.terminate();
    /// assert_eq!(slow.get(), Err(MpError::PoolTerminated));
    /// ```
    pub fn terminate(&self) {
        self.core.lock().terminate();
    }
}

impl Core {
    fn terminate(&mut self) {
        self.state = PoolState::Terminated;
        self.fail_all(MpError::PoolTerminated);
        self.stop_workers(true);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut core = self.core.lock();
        if core.owner != std::process::id() {
            return; // a copy inside a forked child: the workers are not its children
        }
        core.terminate();
    }
}

/// Drives the pool until `check` gives an answer or `deadline` passes (`None`: no
/// deadline). Always pumps at least once, so a zero timeout still makes progress.
fn drive<T>(
    core: &Mutex<Core>,
    deadline: Option<Instant>,
    mut check: impl FnMut(&mut Core) -> Option<T>,
) -> Result<Option<T>, MpError> {
    loop {
        let mut c = core.lock();
        if let Some(t) = check(&mut c) {
            return Ok(Some(t));
        }
        if c.idle() && c.pids().is_empty() {
            return Err(MpError::PoolWithoutWorkers);
        }
        let slice = Instant::now() + SLICE;
        c.pump(Some(deadline.map_or(slice, |d| d.min(slice))))?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(check(&mut c));
        }
    }
}

/// The pending result of [`Pool::apply_async`] or [`Pool::map_async`] (Python's
/// `AsyncResult`). Dropping it abandons the result; the pool forgets the task's output.
///
/// ```
/// let pool = conclab::multiprocessing::Pool::new(1).unwrap();
/// let r = pool.apply_async(|| "done".to_string(), ()).unwrap();
/// r.wait(None);
/// assert!(r.ready());
/// assert_eq!(r.successful(), Some(true));
/// assert_eq!(r.get().unwrap(), "done");
/// ```
pub struct AsyncResult<T> {
    core: Arc<Mutex<Core>>,
    job: u64,
    /// The job's results; `None` once taken.
    results: Option<Arc<dyn Outcome<T>>>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .finish()
    }
}

impl<T> AsyncResult<T> {
    fn new(pool: &Pool, job: u64, results: Arc<dyn Outcome<T>>) -> AsyncResult<T> {
        AsyncResult {
            core: Arc::clone(&pool.core),
            job,
            results: Some(results),
        }
    }

    fn done(&self) -> bool {
        self.results.as_ref().is_none_or(|r| r.done())
    }

    /// Waits for the result and takes it.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(1).unwrap();
    /// assert_eq!(pool.apply_async(|x: u8| x, (3,)).unwrap().get().unwrap(), 3);
    /// ```
    pub fn get(mut self) -> Result<T, MpError> {
        match self.get_until(None)? {
            Some(v) => Ok(v),
            None => Err(MpError::Timeout(Duration::MAX)),
        }
    }

    /// Waits at most `timeout`; [`MpError::Timeout`] leaves the result pending, so you
    /// can ask again (Python's `get(timeout)`).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Pool};
    /// use std::time::Duration;
    /// let pool = Pool::new(1).unwrap();
    /// let mut r = pool.apply_async(|| std::thread::sleep(Duration::from_millis(300)), ()).unwrap();
    /// assert!(matches!(r.get_timeout(Duration::from_millis(1)), Err(MpError::Timeout(_))));
    /// assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(()));
    /// ```
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T, MpError> {
        match self.get_until(Some(Instant::now() + timeout))? {
            Some(v) => Ok(v),
            None => Err(MpError::Timeout(timeout)),
        }
    }

    fn get_until(&mut self, deadline: Option<Instant>) -> Result<Option<T>, MpError> {
        let job = self.job;
        let results = &mut self.results;
        drive(&self.core, deadline, |core| {
            if !results.as_ref().is_none_or(|r| r.done()) {
                return None;
            }
            let taken = results.take().and_then(|r| r.take());
            core.jobs.remove(&job);
            Some(taken.unwrap_or(Err(MpError::ResultTaken)))
        })?
        .transpose()
    }

    /// Whether the result is there (drives the pool once without waiting).
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(1).unwrap();
    /// let r = pool.apply_async(|| 1, ()).unwrap();
    /// while !r.ready() {}
    /// assert_eq!(r.get().unwrap(), 1);
    /// ```
    pub fn ready(&self) -> bool {
        self.wait(Some(Duration::ZERO))
    }

    /// Waits until the result is ready or `timeout` passes; `None` waits forever.
    /// Returns whether it is ready.
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(1).unwrap();
    /// let r = pool.apply_async(|| 1, ()).unwrap();
    /// assert!(r.wait(Some(std::time::Duration::from_secs(30))));
    /// ```
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        matches!(
            drive(&self.core, deadline, |_| self.done().then_some(())),
            Ok(Some(())) | Err(_)
        )
    }

    /// `None` while running; then whether every task succeeded (Python's `successful`,
    /// which raises instead of returning `None`).
    ///
    /// ```
    /// let pool = conclab::multiprocessing::Pool::new(1).unwrap();
    /// let r = pool.apply_async(|| -> i32 { panic!("no") }, ()).unwrap();
    /// r.wait(None);
    /// assert_eq!(r.successful(), Some(false));
    /// ```
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        self.results.as_ref().map(|r| !r.failed())
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        self.core.lock().abandon(self.job);
    }
}

/// What [`Imap`] and [`ImapUnordered`] share: the job, its results, how many are still
/// to come, and the drop that abandons the job.
struct JobResults<R> {
    core: Arc<Mutex<Core>>,
    job: u64,
    results: Arc<dyn Stream<R>>,
    left: usize,
}

impl<R> JobResults<R> {
    fn new(pool: &Pool, job: u64, results: Arc<dyn Stream<R>>, len: usize) -> JobResults<R> {
        JobResults {
            core: Arc::clone(&pool.core),
            job,
            results,
            left: len,
        }
    }

    /// Drives the pool until `take` gives a result; `None` once every result was taken.
    fn next_by(
        &mut self,
        mut take: impl FnMut(&dyn Stream<R>) -> Option<Result<R, MpError>>,
    ) -> Option<Result<R, MpError>> {
        if self.left == 0 {
            return None;
        }
        let results = &*self.results;
        let got = drive(&self.core, None, |_| take(results));
        self.left -= 1;
        match got {
            Ok(Some(r)) => Some(r),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl<R> Drop for JobResults<R> {
    fn drop(&mut self) {
        self.core.lock().abandon(self.job);
    }
}

/// The iterator of [`Pool::imap`]: results in input order.
///
/// ```
/// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
/// let mut it = pool.imap(|x: u8| x + 1, [1, 2]).unwrap();
/// assert_eq!(it.len(), 2);
/// assert_eq!(it.next(), Some(Ok(2)));
/// ```
pub struct Imap<R> {
    results: JobResults<R>,
    next: usize,
}

impl<R> std::fmt::Debug for Imap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("next", &self.next)
            .field("len", &(self.next + self.results.left))
            .finish()
    }
}

impl<R: 'static> Iterator for Imap<R> {
    type Item = Result<R, MpError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.results.left == 0 {
            return None;
        }
        let i = self.next;
        self.next += 1;
        self.results.next_by(|results| results.take(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.results.left, Some(self.results.left))
    }
}

impl<R: 'static> ExactSizeIterator for Imap<R> {}

/// The iterator of [`Pool::imap_unordered`]: results in the order they finish.
///
/// ```
/// let pool = conclab::multiprocessing::Pool::new(2).unwrap();
/// let it = pool.imap_unordered(|x: u8| x, [7]).unwrap();
/// assert_eq!(it.collect::<Vec<_>>(), vec![Ok(7)]);
/// ```
pub struct ImapUnordered<R> {
    results: JobResults<R>,
}

impl<R> std::fmt::Debug for ImapUnordered<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("left", &self.results.left)
            .finish()
    }
}

impl<R: 'static> Iterator for ImapUnordered<R> {
    type Item = Result<R, MpError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.results.next_by(|results| results.take_next_finished())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.results.left, Some(self.results.left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{RefUnwindSafe, UnwindSafe};
    use std::rc::Rc;

    /// The handles hold their results behind trait objects; the bounds on those keep the
    /// handles what they were when they held only a job id, whatever the result type
    /// (the process executor moves an `AsyncResult` into its driver thread).
    #[test]
    fn handles_keep_their_auto_traits() {
        fn check<T: Send + Sync + Unpin + UnwindSafe + RefUnwindSafe>() {}
        check::<Pool>();
        check::<AsyncResult<Rc<u8>>>();
        check::<Imap<Rc<u8>>>();
        check::<ImapUnordered<Rc<u8>>>();
    }
}
