//! Tasks as plain function values: type erasure through monomorphised trampolines.
//!
//! A task is a `Copy + 'static` callable (a `fn` item, a `fn` pointer, a closure without
//! captures or with `Copy` captures). Workers are forks of the parent, so the callable's
//! bytes and the address of `run_chunk::<F, Args, R>` (instantiated in the parent) mean
//! the same in the worker. A chunk travels as: trampoline address, the callable's bytes,
//! and the bincode of `Vec<Args>`; the answer is the bincode of
//! `Result<Vec<Result<R, String>>, String>` (per task: value or panic message), which
//! the job's results (`results.rs`), made for the same `R`, decode in the parent.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::multiprocessing::fork;
use crate::multiprocessing::MpError;

use super::results::{Results, Sink};

/// A callable a [`Pool`](super::Pool) can run: `f(a)`, `f(a, b)`, ... for an argument
/// tuple. Implemented for every `Fn` that is `Copy + Send + 'static`: `fn` items, `fn`
/// pointers and closures that capture nothing or only `Copy` values. `Pool::map` wraps
/// each item in a one-element tuple; `Pool::starmap` passes tuples as they are.
///
/// A closure that captures a `String` is not `Copy`, so it cannot be sent:
///
/// ```compile_fail
/// use conclab::multiprocessing::Pool;
/// let pool = Pool::new(1).unwrap();
/// let greeting = String::from("hi");
/// let _ = pool.map(move |x: i32| format!("{greeting} {x}"), 0..3);
/// ```
///
/// A `Copy` capture is fine:
///
/// ```
/// use conclab::multiprocessing::{Pool, StarCall};
/// let k = 10;
/// let add_k = move |x: i32| x + k;
/// assert_eq!(add_k.star_call((1,)), 11);
/// let pool = Pool::new(1).unwrap();
/// assert_eq!(pool.map(add_k, 0..3).unwrap(), vec![10, 11, 12]);
/// ```
pub trait StarCall<Args, R>: Copy + Send + 'static {
    /// Calls with the arguments unpacked from the tuple.
    fn star_call(&self, args: Args) -> R;
}

impl<F, R> StarCall<(), R> for F
where
    F: Fn() -> R + Copy + Send + 'static,
{
    fn star_call(&self, _: ()) -> R {
        self()
    }
}

impl<F, A, R> StarCall<(A,), R> for F
where
    F: Fn(A) -> R + Copy + Send + 'static,
{
    fn star_call(&self, (a,): (A,)) -> R {
        self(a)
    }
}

impl<F, A, B, R> StarCall<(A, B), R> for F
where
    F: Fn(A, B) -> R + Copy + Send + 'static,
{
    fn star_call(&self, (a, b): (A, B)) -> R {
        self(a, b)
    }
}

impl<F, A, B, C, R> StarCall<(A, B, C), R> for F
where
    F: Fn(A, B, C) -> R + Copy + Send + 'static,
{
    fn star_call(&self, (a, b, c): (A, B, C)) -> R {
        self(a, b, c)
    }
}

impl<F, A, B, C, D, R> StarCall<(A, B, C, D), R> for F
where
    F: Fn(A, B, C, D) -> R + Copy + Send + 'static,
{
    fn star_call(&self, (a, b, c, d): (A, B, C, D)) -> R {
        self(a, b, c, d)
    }
}

/// The worker side of a chunk, type-erased.
pub(crate) type Tramp = unsafe fn(&[u8], &[u8], &AtomicU64) -> Vec<u8>;
/// The worker side of an initializer; `false` if it panicked.
pub(crate) type InitTramp = unsafe fn(&[u8], &[u8]) -> bool;

/// A chunk's outcome as a worker encodes it: each task's value or panic message, or why
/// the chunk could not run at all.
pub(super) type ChunkOut<R> = Result<Vec<Result<R, String>>, String>;

/// Runs a chunk in the worker. Each task runs under `catch_unwind`, so a panic becomes
/// that task's error and the worker carries on; `progress` tells the parent which task
/// was running if the worker dies.
///
/// # Safety
/// `fbytes` must be the bytes of an `F` made in the parent (before this worker forked,
/// or checked by the reload detector), and `F` must be the type this was instantiated for.
pub(crate) unsafe fn run_chunk<F, Args, R>(
    fbytes: &[u8],
    args: &[u8],
    progress: &AtomicU64,
) -> Vec<u8>
where
    F: StarCall<Args, R>,
    Args: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: the caller guarantees these are the bytes of a valid `F`.
    let f: F = unsafe { callable_from(fbytes) };
    let out: ChunkOut<R> = match bincode::deserialize::<Vec<Args>>(args) {
        Ok(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                progress.store(i as u64, Ordering::Relaxed);
                std::panic::catch_unwind(AssertUnwindSafe(|| f.star_call(a))).map_err(|p| {
                    let msg = fork::payload_str(&*p);
                    std::mem::forget(p);
                    msg
                })
            })
            .collect()),
        Err(e) => Err(e.to_string()),
    };
    match bincode::serialize(&out) {
        Ok(bytes) => bytes,
        Err(e) => bincode::serialize(&ChunkOut::<R>::Err(e.to_string())).unwrap_or_default(),
    }
}

/// Runs an initializer in a fresh worker.
///
/// # Safety
/// As for [`run_chunk`].
pub(crate) unsafe fn run_init<F, Args>(fbytes: &[u8], args: &[u8]) -> bool
where
    F: StarCall<Args, ()>,
    Args: DeserializeOwned,
{
    // SAFETY: the caller guarantees these are the bytes of a valid `F`.
    let f: F = unsafe { callable_from(fbytes) };
    let Ok(args) = bincode::deserialize::<Args>(args) else {
        return false;
    };
    std::panic::catch_unwind(AssertUnwindSafe(|| f.star_call(args))).is_ok()
}

/// # Safety
/// `bytes` holds a valid `F` (`F: Copy`, so a bitwise copy is a real value).
unsafe fn callable_from<F: Copy>(bytes: &[u8]) -> F {
    assert_eq!(
        bytes.len(),
        std::mem::size_of::<F>(),
        "callable size mismatch"
    );
    // SAFETY: the length matches and the caller vouches for the contents.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<F>()) }
}

/// The bytes of a callable, to send to a worker.
pub(crate) fn callable_bytes<F: Copy>(f: &F) -> Vec<u8> {
    let mut out = vec![0u8; std::mem::size_of::<F>()];
    // SAFETY: copies size_of::<F>() bytes out of a live `F` into a buffer of that size.
    // Padding bytes may be uninitialised; they are only carried, never interpreted.
    unsafe {
        std::ptr::copy_nonoverlapping((f as *const F).cast::<u8>(), out.as_mut_ptr(), out.len())
    };
    out
}

/// Every word of a callable plus its trampoline: what the reload detector checks.
pub(crate) fn code_words(tramp: usize, fbytes: &[u8]) -> Vec<usize> {
    let mut words = vec![tramp];
    let w = std::mem::size_of::<usize>();
    for start in 0..fbytes.len().saturating_sub(w - 1) {
        if start % w == 0 {
            let mut b = [0u8; std::mem::size_of::<usize>()];
            b.copy_from_slice(&fbytes[start..start + w]);
            words.push(usize::from_ne_bytes(b));
        }
    }
    words
}

/// A job as the dispatcher sees it, whatever its types.
pub(crate) trait JobDyn: Send {
    fn tramp(&self) -> usize;
    fn fbytes(&self) -> &[u8];
    fn words(&self) -> &[usize];
    fn encode(&self, idx: &[usize]) -> Result<Vec<u8>, MpError>;
    /// Where the chunks' outcomes go: the job's results, typed, which its handle shares.
    fn results(&self) -> &dyn Sink;
}

pub(crate) struct TypedJob<Args> {
    tramp: usize,
    fbytes: Vec<u8>,
    words: Vec<usize>,
    args: Vec<Args>,
    results: Arc<dyn Sink>,
}

impl<Args> TypedJob<Args>
where
    Args: Serialize + DeserializeOwned + Send + 'static,
{
    /// A job of `f` over `args` that delivers into `results`. The one `R` ties the two:
    /// the trampoline encodes `R` in the worker, and `results` decode `R` in the parent.
    pub(crate) fn new<F, R, K>(f: F, args: Vec<Args>, results: &Arc<Results<R, K>>) -> Self
    where
        F: StarCall<Args, R>,
        R: Serialize + DeserializeOwned + Send + 'static,
        K: 'static,
    {
        let tramp = run_chunk::<F, Args, R> as Tramp as usize;
        let fbytes = callable_bytes(&f);
        TypedJob {
            tramp,
            words: code_words(tramp, &fbytes),
            fbytes,
            args,
            results: Arc::clone(results) as Arc<dyn Sink>,
        }
    }
}

impl<Args> JobDyn for TypedJob<Args>
where
    Args: Serialize + DeserializeOwned + Send + 'static,
{
    fn tramp(&self) -> usize {
        self.tramp
    }
    fn fbytes(&self) -> &[u8] {
        &self.fbytes
    }
    fn words(&self) -> &[usize] {
        &self.words
    }
    fn encode(&self, idx: &[usize]) -> Result<Vec<u8>, MpError> {
        // A Vec<&Args> encodes exactly like a Vec<Args>: no clone of the arguments.
        let refs: Vec<&Args> = idx.iter().map(|&i| &self.args[i]).collect();
        Ok(bincode::serialize(&refs)?)
    }
    fn results(&self) -> &dyn Sink {
        &*self.results
    }
}
