//! The loop a pool worker runs in its forked child.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::multiprocessing::codec;
use crate::multiprocessing::fork;

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
    pub(crate) task: i32,
    pub(crate) result: i32,
    pub(crate) slot: *const Slot,
    pub(crate) init: Option<&'a Init>,
    pub(crate) max_tasks: Option<usize>,
}

/// Runs in the child: initializer, then chunks until the task socket closes.
pub(crate) fn worker_main(setup: WorkerSetup<'_>) -> ! {
    let name = format!("ForkPoolWorker-{}", setup.index + 1);
    let info = fork::ChildInfo::new("pool worker", Some(name));
    // SAFETY: `info` lives in this frame, which only ends in `child_exit` below.
    unsafe { fork::child_enter(&info) };
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&setup)));
    fork::child_exit(code.unwrap_or(1))
}

fn run(setup: &WorkerSetup<'_>) -> i32 {
    // SAFETY: the parent's shared region outlives this process's use of it.
    let slot = unsafe { &*setup.slot };
    if let Some(init) = setup.init {
        // SAFETY: the trampoline and bytes were made in the parent before this fork.
        let f: InitTramp = unsafe { std::mem::transmute::<usize, InitTramp>(init.tramp) };
        // SAFETY: see above.
        if !unsafe { f(&init.fbytes, &init.args) } {
            return 3;
        }
    }
    let mut done = 0usize;
    let mut tasks = codec::FrameReader::default();
    loop {
        let Ok(frame) = tasks.next_frame(setup.task) else {
            return 0; // the pool closed our socket: a clean exit
        };
        if frame.len() < 20 {
            return 2;
        }
        let id = u64::from_le_bytes(frame[0..8].try_into().unwrap_or_default());
        let tramp = u64::from_le_bytes(frame[8..16].try_into().unwrap_or_default()) as usize;
        let flen = u32::from_le_bytes(frame[16..20].try_into().unwrap_or_default()) as usize;
        let Some(fbytes) = frame.get(20..20 + flen) else {
            return 2;
        };
        let args = &frame[20 + flen..];
        slot.index.store(0, Ordering::Relaxed);
        slot.chunk.store(id + 1, Ordering::Release);
        // SAFETY: the parent checked that the trampoline's code (and every word of the
        // callable) was mapped when this worker was forked.
        let f: Tramp = unsafe { std::mem::transmute::<usize, Tramp>(tramp) };
        // SAFETY: see above.
        let out = unsafe { f(fbytes, args, &slot.index) };
        let mut reply = Vec::with_capacity(12 + out.len());
        reply.extend_from_slice(&((8 + out.len()) as u32).to_le_bytes());
        reply.extend_from_slice(&id.to_le_bytes());
        reply.extend_from_slice(&out);
        if codec::write_all(setup.result, &reply, false).is_err() {
            return 0; // the parent is gone
        }
        slot.chunk.store(0, Ordering::Release);
        done += 1;
        if setup.max_tasks.is_some_and(|m| done >= m) {
            return 0;
        }
    }
}
