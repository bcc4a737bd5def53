//! The dispatcher: workers, chunks in flight, crash recovery, re-forking.
//!
//! There is no background thread (one would make every later `fork` in the notebook a
//! fork with threads). Work moves whenever a caller drives the pool: `map`, `get`,
//! `ready`, iterating `imap`. Each worker holds at most [`IN_FLIGHT`] chunks, so workers
//! keep busy between calls while the rest stays queued for whichever worker frees first.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::multiprocessing::codec;
use crate::multiprocessing::fork::{self, Exit, Pid};
use crate::multiprocessing::reload::CodeSnapshot;
use crate::multiprocessing::shm::Region;
use crate::multiprocessing::MpError;
use crate::os::fd::{self as os_fd, PollFd, PollFlags};
use crate::os::process::{self as os_process, PidFd, Signal};

use super::frame::{ResultFrame, TaskFrame, WorkerExit};
use super::task::JobDyn;
use super::worker::{worker_main, Init, Slot, WorkerSetup};

/// Chunks handed to one worker ahead of its results.
pub(crate) const IN_FLIGHT: usize = 2;

pub(crate) struct Chunk {
    pub(crate) id: u64,
    pub(crate) job: u64,
    pub(crate) idx: Vec<usize>,
}

struct Worker {
    pid: Pid,
    pidfd: PidFd,
    task: OwnedFd,
    result: OwnedFd,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    in_flight: VecDeque<Chunk>,
    sent: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PoolState {
    Running,
    Closed,
    Terminated,
}

pub(crate) struct Core {
    workers: Vec<Option<Worker>>,
    slots: Region,
    snapshot: CodeSnapshot,
    pub(crate) jobs: HashMap<u64, Box<dyn JobDyn>>,
    pending: VecDeque<Chunk>,
    next_job: u64,
    next_chunk: u64,
    pub(crate) state: PoolState,
    init: Option<Init>,
    max_tasks: Option<usize>,
    pub(crate) reforks: usize,
    pub(crate) replaced: usize,
    start_failures: usize,
    pub(crate) owner: u32,
}

impl Core {
    pub(crate) fn new(
        n: usize,
        init: Option<Init>,
        max_tasks: Option<usize>,
    ) -> Result<Core, MpError> {
        let slots = Region::new(n * std::mem::size_of::<Slot>())
            .map_err(|e| MpError::io("map the pool's shared memory", &e))?;
        let mut core = Core {
            workers: (0..n).map(|_| None).collect(),
            slots,
            snapshot: CodeSnapshot::take(),
            jobs: HashMap::new(),
            pending: VecDeque::new(),
            next_job: 0,
            next_chunk: 0,
            state: PoolState::Running,
            init,
            max_tasks: max_tasks.filter(|&m| m > 0),
            reforks: 0,
            replaced: 0,
            start_failures: 0,
            owner: std::process::id(),
        };
        core.spawn_all("Pool::new")?;
        Ok(core)
    }

    pub(crate) fn size(&self) -> usize {
        self.workers.len()
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        self.workers
            .iter()
            .flatten()
            .map(|w| w.pid.as_raw())
            .collect()
    }

    fn slot(&self, i: usize) -> &Slot {
        slot_in(&self.slots, i)
    }

    fn spawn_all(&mut self, what: &str) -> Result<(), MpError> {
        fork::warn_if_threads(what);
        self.snapshot = CodeSnapshot::take();
        for i in 0..self.workers.len() {
            if self.workers[i].is_none() {
                self.spawn(i)?;
            }
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<(), MpError> {
        let (task_parent, task_child) = codec::socketpair()?;
        let (result_read, result_write) = codec::pipe()?;
        let slot = self.slot(i);
        slot.chunk.store(0, Ordering::Relaxed);
        slot.index.store(0, Ordering::Relaxed);
        // SAFETY: the child branch runs worker_main, which never returns.
        let Some(pid) = (unsafe { fork::fork_raw(None)? }) else {
            // Keep only our own two ends: a copy of another worker's task socket here
            // would keep that worker from seeing end of file when the parent goes away.
            for worker in self.workers.iter_mut() {
                drop(worker.take());
            }
            drop(task_parent);
            drop(result_read);
            worker_main(WorkerSetup {
                index: i,
                task: task_child,
                result: result_write,
                slot: slot_in(&self.slots, i),
                init: self.init.as_ref(),
                max_tasks: self.max_tasks,
            });
        };
        drop(task_child);
        drop(result_write);
        let pidfd = match fork::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = os_process::kill(pid, Signal::SIGKILL);
                let _ = fork::reap(pid);
                return Err(e);
            }
        };
        codec::set_nonblocking(&result_read, true)?;
        codec::set_nonblocking(&task_parent, true)?;
        self.workers[i] = Some(Worker {
            pid,
            pidfd,
            task: task_parent,
            result: result_read,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            in_flight: VecDeque::new(),
            sent: 0,
        });
        Ok(())
    }

    /// Queues a job in chunks of `chunksize` tasks.
    pub(crate) fn submit(
        &mut self,
        job: Box<dyn JobDyn>,
        n: usize,
        chunksize: usize,
    ) -> Result<u64, MpError> {
        match self.state {
            PoolState::Running => {}
            PoolState::Closed => return Err(MpError::PoolClosed),
            PoolState::Terminated => return Err(MpError::PoolTerminated),
        }
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(id, job);
        let chunksize = chunksize.max(1);
        let mut start = 0;
        while start < n {
            let end = (start + chunksize).min(n);
            let cid = self.next_chunk;
            self.next_chunk += 1;
            self.pending.push_back(Chunk {
                id: cid,
                job: id,
                idx: (start..end).collect(),
            });
            start = end;
        }
        self.dispatch();
        Ok(id)
    }

    /// Forgets a job nobody will read (its handle was dropped).
    pub(crate) fn abandon(&mut self, job: u64) {
        self.jobs.remove(&job);
        self.pending.retain(|c| c.job != job);
    }

    fn busy(&self) -> bool {
        self.workers
            .iter()
            .flatten()
            .any(|w| !w.in_flight.is_empty())
    }

    pub(crate) fn idle(&self) -> bool {
        self.pending.is_empty() && !self.busy()
    }

    /// Hands queued chunks to workers with room, re-forking first if a chunk's code was
    /// loaded after the workers were forked.
    fn dispatch(&mut self) {
        while let Some(chunk) = self.pending.front() {
            let Some(job) = self.jobs.get(&chunk.job) else {
                self.pending.pop_front();
                continue;
            };
            if self.snapshot.is_stale(job.words()) {
                if self.busy() {
                    return; // let the workers finish what they hold, then re-fork
                }
                if let Err(e) = self.refork() {
                    self.fail_pending(e);
                    return;
                }
                continue;
            }
            let max = self.max_tasks;
            let pick = self
                .workers
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.as_ref().map(|w| (i, w)))
                .filter(|(_, w)| w.in_flight.len() < IN_FLIGHT)
                .filter(|(_, w)| max.is_none_or(|m| w.sent < m))
                .min_by_key(|(_, w)| w.in_flight.len())
                .map(|(i, _)| i);
            let Some(i) = pick else {
                return;
            };
            let Some(chunk) = self.pending.pop_front() else {
                return;
            };
            let Some(job) = self.jobs.get(&chunk.job) else {
                continue;
            };
            let args = match job.encode(&chunk.idx) {
                Ok(a) => a,
                Err(e) => {
                    for &t in &chunk.idx {
                        job.results().fail(t, e.clone());
                    }
                    continue;
                }
            };
            let Some(Some(w)) = self.workers.get_mut(i) else {
                continue;
            };
            TaskFrame {
                chunk: chunk.id,
                tramp: job.tramp(),
                callable: job.fbytes(),
                args: &args,
            }
            .encode_into(&mut w.outbuf);
            w.sent += 1;
            w.in_flight.push_back(chunk);
            flush(w);
        }
    }

    fn refork(&mut self) -> Result<(), MpError> {
        for i in 0..self.workers.len() {
            if let Some(w) = self.workers[i].take() {
                // Closing the task socket is the worker's signal to exit cleanly.
                drop(w.task);
                let _ = fork::reap(w.pid);
            }
        }
        self.reforks += 1;
        self.spawn_all("Pool (re-forking after new code was loaded)")
    }

    fn fail_pending(&mut self, err: MpError) {
        for chunk in self.pending.drain(..) {
            if let Some(job) = self.jobs.get(&chunk.job) {
                for &t in &chunk.idx {
                    job.results().fail(t, err.clone());
                }
            }
        }
    }

    /// One round: dispatch, wait for events until `deadline`, take results, handle deaths.
    pub(crate) fn pump(&mut self, deadline: Option<Instant>) -> Result<(), MpError> {
        self.dispatch();
        // What each worker's descriptors reported, taken out of the poll set so that the
        // workers can be changed below.
        let mut events: Vec<(usize, Event)> = Vec::new();
        {
            let mut fds = Vec::with_capacity(self.workers.len() * 3);
            let mut who = Vec::with_capacity(self.workers.len() * 3);
            for (i, w) in self.workers.iter().enumerate() {
                let Some(w) = w else { continue };
                fds.push(PollFd::new(w.result.as_fd(), PollFlags::POLLIN));
                who.push((i, Event::Results));
                fds.push(PollFd::new(w.pidfd.as_fd(), PollFlags::POLLIN));
                who.push((i, Event::Ended));
                if !w.outbuf.is_empty() {
                    fds.push(PollFd::new(w.task.as_fd(), PollFlags::POLLOUT));
                    who.push((i, Event::Writable));
                }
            }
            if fds.is_empty() {
                return Ok(());
            }
            if os_fd::poll(&mut fds, deadline)
                .map_err(|e| MpError::io("poll the pool's workers", &e))?
                == 0
            {
                return Ok(());
            }
            for (fd, &event) in fds.iter().zip(&who) {
                if os_fd::has_events(fd) {
                    events.push(event);
                }
            }
        }
        let mut dead = Vec::new();
        for (i, event) in events {
            let Some(w) = self.workers[i].as_mut() else {
                continue;
            };
            match event {
                Event::Results => {
                    let eof = codec::read_available(w.result.as_fd(), &mut w.inbuf)?;
                    self.take_results(i);
                    if eof {
                        dead.push(i);
                    }
                }
                Event::Ended => dead.push(i),
                Event::Writable => flush(w),
            }
        }
        dead.sort_unstable();
        dead.dedup();
        for i in dead {
            self.worker_died(i)?;
        }
        self.dispatch();
        Ok(())
    }

    fn take_results(&mut self, i: usize) {
        let Some(w) = self.workers[i].as_mut() else {
            return;
        };
        let mut start = 0;
        let mut frames = Vec::new();
        while let Some((a, b)) = codec::take_frame(&w.inbuf, &mut start) {
            frames.push((a, b));
        }
        for &(a, b) in &frames {
            let Some(result) = ResultFrame::decode(&w.inbuf[a..b]) else {
                continue;
            };
            let Some(pos) = w.in_flight.iter().position(|c| c.id == result.chunk) else {
                continue;
            };
            let Some(chunk) = w.in_flight.remove(pos) else {
                continue;
            };
            self.start_failures = 0;
            if let Some(job) = self.jobs.get(&chunk.job) {
                job.results().deliver(&chunk.idx, result.outcome);
            }
        }
        w.inbuf.drain(..start);
    }

    /// A worker ended: blame the task it was running (if any), queue the rest again,
    /// and start a replacement.
    fn worker_died(&mut self, i: usize) -> Result<(), MpError> {
        let Some(mut w) = self.workers[i].take() else {
            return Ok(());
        };
        // Results it finished before dying still count.
        let _ = codec::read_available(w.result.as_fd(), &mut w.inbuf);
        self.workers[i] = Some(w);
        self.take_results(i);
        let Some(w) = self.workers[i].take() else {
            return Ok(());
        };
        let status = fork::reap(w.pid)?;
        let slot = self.slot(i);
        let running = slot.chunk.load(Ordering::Acquire);
        let index = slot.index.load(Ordering::Acquire) as usize;
        let mut requeue: Vec<Chunk> = Vec::new();
        let mut blamed = false;
        for chunk in w.in_flight {
            if !blamed && running == chunk.id + 1 && index < chunk.idx.len() {
                blamed = true;
                let culprit = chunk.idx[index];
                if let Some(job) = self.jobs.get(&chunk.job) {
                    let err = MpError::WorkerDied(describe(status));
                    job.results().fail(culprit, err);
                }
                // The tasks before it finished, but their results died with the worker:
                // they run again, with the tasks after it.
                let rest: Vec<usize> = chunk
                    .idx
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != index)
                    .map(|(_, &t)| t)
                    .collect();
                if !rest.is_empty() {
                    requeue.push(Chunk {
                        id: self.next_chunk,
                        job: chunk.job,
                        idx: rest,
                    });
                    self.next_chunk += 1;
                }
            } else {
                requeue.push(chunk);
            }
        }
        for chunk in requeue.into_iter().rev() {
            self.pending.push_front(chunk);
        }
        let clean_exit = status.is_clean();
        if !clean_exit && !blamed {
            self.start_failures += 1;
        }
        if self.state == PoolState::Terminated {
            return Ok(());
        }
        if self.start_failures > 3 * self.workers.len() {
            self.fail_pending(MpError::WorkerDied(format!(
                "workers keep dying before they run a task, the last one {}; check the \
                 pool's initializer",
                describe(status)
            )));
            return Ok(());
        }
        if !clean_exit {
            self.replaced += 1;
        }
        fork::warn_if_threads("Pool (replacing a worker)");
        self.spawn(i)
    }

    /// Waits until every queued and running chunk is done.
    pub(crate) fn drain(&mut self) -> Result<(), MpError> {
        while !self.idle() {
            if self.workers.iter().all(|w| w.is_none()) {
                break;
            }
            self.pump(None)?;
        }
        Ok(())
    }

    /// Stops the workers: cleanly (end of file on their task socket) or with SIGKILL.
    pub(crate) fn stop_workers(&mut self, kill: bool) {
        for w in self.workers.iter_mut() {
            if let Some(w) = w.take() {
                if kill {
                    let _ = w.pidfd.signal(Signal::SIGKILL);
                }
                drop(w.task);
                let _ = fork::reap(w.pid);
            }
        }
    }

    /// Fails everything outstanding with `err` (after a terminate).
    pub(crate) fn fail_all(&mut self, err: MpError) {
        self.fail_pending(err.clone());
        for w in self.workers.iter_mut().flatten() {
            for chunk in w.in_flight.drain(..) {
                if let Some(job) = self.jobs.get(&chunk.job) {
                    for &t in &chunk.idx {
                        job.results().fail(t, err.clone());
                    }
                }
            }
        }
    }
}

/// What `poll` reported for one of a worker's descriptors.
#[derive(Clone, Copy)]
enum Event {
    /// The result pipe has bytes or reached end of file.
    Results,
    /// The pidfd: the worker has ended.
    Ended,
    /// The task socket takes more of the pending output.
    Writable,
}

/// Worker `i`'s slot in the pool's shared region.
fn slot_in(slots: &Region, i: usize) -> &Slot {
    // SAFETY: the region was made with room for one `Slot` per worker index and is
    // zero-filled, which is a valid `Slot` (two atomics); it is page-aligned, so every
    // slot is aligned; and it lives as long as the borrow of `slots`. Slots are only
    // touched through atomics, by the parent and the worker that owns the index.
    unsafe { &*slots.ptr().cast::<Slot>().add(i) }
}

/// A dead worker's status in words; names the worker's own exit codes.
fn describe(status: Exit) -> String {
    match status.code().and_then(WorkerExit::from_code) {
        Some(WorkerExit::BadFrame) => {
            "exited with code 2: it could not read a task frame".to_string()
        }
        Some(WorkerExit::InitFailed) => {
            "exited with code 3: the pool's initializer panicked".to_string()
        }
        _ => status.describe(),
    }
}

/// Writes as much of a worker's pending output as its socket takes now.
fn flush(w: &mut Worker) {
    let mut sent = 0;
    while sent < w.outbuf.len() {
        match os_fd::send(w.task.as_fd(), &w.outbuf[sent..], false) {
            Ok(n) if n > 0 => sent += n,
            // Full (try again when it polls writable) or dead (the pidfd tells).
            _ => break,
        }
    }
    w.outbuf.drain(..sent);
}
