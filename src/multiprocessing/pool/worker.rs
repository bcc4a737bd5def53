//! The loop a pool worker runs in its forked child.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::multiprocessing::codec;
use crate::multiprocessing::fork;

use super::frame::{ResultFrame, TaskFrame, WorkerExit};
use super::task::{InitTramp, Tramp};

/// Where a worker tells the parent what it is running, in shared memory: the chunk id
/// plus one (0 while idle) and the index of the task within that chunk. If the worker
/// dies, the parent reads it to know which task to blame.
#[repr(C)]
pub(crate) struct Slot {
    pub(crate) chunk: AtomicU64,
    pub(crate) index: AtomicU64,
}

/// An initializer: trampoline, callable bytes, encoded argument tuple.
pub(crate) struct Init {
    pub(crate) tramp: usize,
    pub(crate) fbytes: Vec<u8>,
    pub(crate) args: Vec<u8>,
}

pub(crate) struct WorkerSetup<'a> {
    pub(crate) index: usize,
    pub(crate) task: OwnedFd,
    pub(crate) result: OwnedFd,
    pub(crate) slot: &'a Slot,
    pub(crate) init: Option<&'a Init>,
    pub(crate) max_tasks: Option<usize>,
}

/// Runs in the child: initializer, then chunks until the task socket closes.
pub(crate) fn worker_main(setup: WorkerSetup<'_>) -> ! {
    let name = format!("ForkPoolWorker-{}", setup.index + 1);
    let info = fork::ChildInfo::new("pool worker", Some(name));
    // SAFETY: `info` lives in this frame, which only ends in `child_exit` below.
    unsafe { fork::child_enter(&info) };
    let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&setup)));
    fork::child_exit(exit.unwrap_or(WorkerExit::Panicked).code())
}

fn run(setup: &WorkerSetup<'_>) -> WorkerExit {
    let slot = setup.slot;
    if let Some(init) = setup.init {
        // SAFETY: `init.tramp` is `run_init::<F, Args>` as a `fn` address, taken in the
        // parent before this fork (PoolBuilder::initializer), so the code is mapped here at
        // the same address and has exactly the `InitTramp` signature.
        let f: InitTramp = unsafe { std::mem::transmute::<usize, InitTramp>(init.tramp) };
        // SAFETY: `fbytes` are the bytes of that same `F`, copied before the fork, which
        // is run_init's contract.
        if !unsafe { f(&init.fbytes, &init.args) } {
            return WorkerExit::InitFailed;
        }
    }
    let mut done = 0usize;
    let mut tasks = codec::FrameReader::default();
    let mut reply = Vec::new();
    loop {
        let Ok(body) = tasks.next_frame(setup.task.as_fd()) else {
            return WorkerExit::Done; // the pool closed our socket
        };
        let Some(task) = TaskFrame::decode(body) else {
            return WorkerExit::BadFrame;
        };
        slot.index.store(0, Ordering::Relaxed);
        slot.chunk.store(task.chunk + 1, Ordering::Release);
        // SAFETY: `task.tramp` is the address of a `run_chunk::<F, Args, R>`, a `Tramp`,
        // taken in the parent; before sending it the parent checked (reload.rs) that it
        // and every word of the callable lie in objects mapped when this worker was
        // forked, so the code is here at the same address.
        let f: Tramp = unsafe { std::mem::transmute::<usize, Tramp>(task.tramp) };
        // SAFETY: the callable bytes are those of the `F` this trampoline was instantiated
        // for (one job sends both), which is run_chunk's contract.
        let outcome = unsafe { f(task.callable, task.args, &slot.index) };
        reply.clear();
        ResultFrame {
            chunk: task.chunk,
            outcome: &outcome,
        }
        .encode_into(&mut reply);
        if codec::write_all(setup.result.as_fd(), &reply, false).is_err() {
            return WorkerExit::Done; // the parent is gone
        }
        slot.chunk.store(0, Ordering::Release);
        done += 1;
        if setup.max_tasks.is_some_and(|m| done >= m) {
            return WorkerExit::Done;
        }
    }
}
