//! The dispatcher: workers, chunks in flight, crash recovery, re-forking.
//!
//! There is no background thread (one would make every later `fork` in the notebook a
//! fork with threads). Work moves whenever a caller drives the pool: `map`, `get`,
//! `ready`, iterating `imap`. Each worker holds at most [`IN_FLIGHT`] chunks, so workers
//! keep busy between calls while the rest stays queued for whichever worker frees first.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::multiprocessing::codec;
use crate::multiprocessing::fork;
use crate::multiprocessing::reload::CodeSnapshot;
use crate::multiprocessing::shm::Region;
use crate::multiprocessing::MpError;

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
    pid: libc::pid_t,
    pidfd: OwnedFd,
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
    pub(crate) owner: libc::pid_t,
}

impl Core {
    pub(crate) fn new(
        n: usize,
        init: Option<Init>,
        max_tasks: Option<usize>,
    ) -> Result<Core, MpError> {
        let slots = Region::new(n * std::mem::size_of::<Slot>())?;
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
            // SAFETY: getpid has no preconditions.
            owner: unsafe { libc::getpid() },
        };
        core.spawn_all("Pool::new")?;
        Ok(core)
    }

    pub(crate) fn size(&self) -> usize {
        self.workers.len()
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        self.workers.iter().flatten().map(|w| w.pid).collect()
    }

    fn slot(&self, i: usize) -> &Slot {
        // SAFETY: the region holds one zero-initialised Slot per worker index.
        unsafe { &*self.slots.ptr().cast::<Slot>().add(i) }
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
        let slot = self.slot(i) as *const Slot;
        // SAFETY: slot points into our shared region.
        unsafe {
            (*slot).chunk.store(0, Ordering::Relaxed);
            (*slot).index.store(0, Ordering::Relaxed);
        }
        // SAFETY: the child branch runs worker_main, which never returns.
        let pid = unsafe { fork::fork_raw(None)? };
        if pid == 0 {
            // Keep only our own two ends: a copy of another worker's task socket here
            // would keep that worker from seeing end of file when the parent goes away.
            for w in self.workers.iter().flatten() {
                for fd in [&w.task, &w.result, &w.pidfd] {
                    // SAFETY: closing this child's copies of the parent's descriptors.
                    unsafe { libc::close(fd.as_raw_fd()) };
                }
            }
            // SAFETY: as above.
            unsafe {
                libc::close(task_parent.as_raw_fd());
                libc::close(result_read.as_raw_fd());
            }
            worker_main(WorkerSetup {
                index: i,
                task: task_child.as_raw_fd(),
                result: result_write.as_raw_fd(),
                slot,
                init: self.init.as_ref(),
                max_tasks: self.max_tasks,
            });
        }
        drop(task_child);
        drop(result_write);
        let pidfd = match fork::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = fork::reap(pid);
                return Err(e);
            }
        };
        codec::set_nonblocking(&result_read, true);
        codec::set_nonblocking(&task_parent, true);
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
            PoolState::Closed => return Err(MpError::PoolClosed("closed")),
            PoolState::Terminated => return Err(MpError::PoolClosed("terminated")),
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
            let Some(job) = self.jobs.get_mut(&chunk.job) else {
                continue;
            };
            let args = match job.encode(&chunk.idx) {
                Ok(a) => a,
                Err(e) => {
                    for &t in &chunk.idx {
                        job.fail(t, e.clone());
                    }
                    continue;
                }
            };
            let fbytes = job.fbytes();
            let body = 8 + 8 + 4 + fbytes.len() + args.len();
            let Some(Some(w)) = self.workers.get_mut(i) else {
                continue;
            };
            w.outbuf.reserve(4 + body);
            w.outbuf.extend_from_slice(&(body as u32).to_le_bytes());
            w.outbuf.extend_from_slice(&chunk.id.to_le_bytes());
            w.outbuf
                .extend_from_slice(&(job.tramp() as u64).to_le_bytes());
            w.outbuf
                .extend_from_slice(&(fbytes.len() as u32).to_le_bytes());
            w.outbuf.extend_from_slice(fbytes);
            w.outbuf.extend_from_slice(&args);
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
            if let Some(job) = self.jobs.get_mut(&chunk.job) {
                for &t in &chunk.idx {
                    job.fail(t, err.clone());
                }
            }
        }
    }

    /// One round: dispatch, wait for events until `deadline`, take results, handle deaths.
    pub(crate) fn pump(&mut self, deadline: Option<Instant>) -> Result<(), MpError> {
        self.dispatch();
        let mut fds = Vec::with_capacity(self.workers.len() * 3);
        let mut who = Vec::with_capacity(self.workers.len() * 3);
        for (i, w) in self.workers.iter().enumerate() {
            let Some(w) = w else { continue };
            fds.push(pollfd(w.result.as_raw_fd(), libc::POLLIN));
            who.push(i);
            fds.push(pollfd(w.pidfd.as_raw_fd(), libc::POLLIN));
            who.push(i);
            if !w.outbuf.is_empty() {
                fds.push(pollfd(w.task.as_raw_fd(), libc::POLLOUT));
                who.push(i);
            }
        }
        if fds.is_empty() {
            return Ok(());
        }
        let ms = codec::poll_ms(deadline);
        // SAFETY: fds is a valid array of pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                return Ok(());
            }
            return Err(MpError::io("poll the pool's workers", &err));
        }
        let mut dead = Vec::new();
        for (k, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            let i = who[k];
            let Some(w) = self.workers[i].as_mut() else {
                continue;
            };
            if p.fd == w.result.as_raw_fd() {
                let eof = codec::read_available(w.result.as_raw_fd(), &mut w.inbuf)?;
                self.take_results(i);
                if eof {
                    dead.push(i);
                }
            } else if p.fd == w.pidfd.as_raw_fd() {
                dead.push(i);
            } else {
                flush(w);
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
            if b - a < 8 {
                continue;
            }
            let mut id = [0u8; 8];
            id.copy_from_slice(&w.inbuf[a..a + 8]);
            let id = u64::from_le_bytes(id);
            let Some(pos) = w.in_flight.iter().position(|c| c.id == id) else {
                continue;
            };
            let Some(chunk) = w.in_flight.remove(pos) else {
                continue;
            };
            self.start_failures = 0;
            if let Some(job) = self.jobs.get_mut(&chunk.job) {
                job.deliver(&chunk.idx, &w.inbuf[a + 8..b]);
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
        let _ = codec::read_available(w.result.as_raw_fd(), &mut w.inbuf);
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
                if let Some(job) = self.jobs.get_mut(&chunk.job) {
                    job.fail(culprit, MpError::WorkerDied(fork::describe_status(status)));
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
        let clean_exit = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
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
                fork::describe_status(status)
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
                    let _ = fork::pidfd_signal(&w.pidfd, libc::SIGKILL);
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
                if let Some(job) = self.jobs.get_mut(&chunk.job) {
                    for &t in &chunk.idx {
                        job.fail(t, err.clone());
                    }
                }
            }
        }
    }
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Writes as much of a worker's pending output as its socket takes now.
fn flush(w: &mut Worker) {
    let mut sent = 0;
    while sent < w.outbuf.len() {
        let rest = &w.outbuf[sent..];
        // SAFETY: a valid buffer; MSG_NOSIGNAL so a dead worker gives EPIPE, not SIGPIPE.
        let n = unsafe {
            libc::send(
                w.task.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break; // full (try again when it polls writable) or dead (the pidfd tells)
        }
        sent += n as usize;
    }
    w.outbuf.drain(..sent);
}
