//! `Process`: a forked child running a closure, with its result coming back through serde.

use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec;
use super::fork::{self, Exit, Pid};
use super::MpError;
use crate::os::fd;
use crate::os::process::{self as os_process, PidFd, Signal};

/// How long dropping an unjoined [`Process`] waits before it kills the child.
pub const DEFAULT_DROP_GRACE: Duration = Duration::from_secs(10);

// The tag of the child's result frame. A file the child wrote nothing into reads as a 0.
const TAG_VALUE: u8 = 1;
const TAG_PANIC: u8 = 2;
const TAG_ENCODE_FAILED: u8 = 3;

/// A result frame starts with its tag byte and its body's length (u64, little-endian).
const HEADER: usize = 9;

/// Where the child's stdin reads and writes in its memory file, which is also its stdin
/// (see `fork_raw`): 1 TiB past the result frame at offset 0, so reads end at once and
/// whatever a child writes there never reaches the frame. The file is sparse, so the gap
/// costs nothing, and the frame carries its own length, so the file's size, which such a
/// write changes, is never needed.
const STDIN_AT: u64 = 1 << 40;

/// A child process running a closure: Python's `multiprocessing.Process` with the fork
/// start method, whose `join` also hands back the closure's return value.
///
/// The closure may borrow from the parent: `fork` copies the whole address space, so the
/// child sees its own copy of everything the closure refers to. Changes the child makes
/// stay in the child; share through [`Pipe`](super::Pipe), [`Queue`](super::Queue),
/// [`Value`](super::Value) or a [`Manager`](super::Manager).
///
/// Dropping a handle without joining waits for the child, and kills it with SIGKILL if it
/// is still running after [`DEFAULT_DROP_GRACE`] (set another grace with
/// [`ProcessBuilder::drop_grace`]), so no child is ever left as a zombie.
///
/// ```
/// use conclab::multiprocessing::Process;
///
/// let base = 40;
/// let p = Process::spawn(|| base + 2).unwrap();
/// assert!(p.pid() > 0);
/// assert_eq!(p.join().unwrap(), 42);
/// ```
pub struct Process<R> {
    pid: Pid,
    name: std::sync::OnceLock<String>,
    given_name: Option<String>,
    // Opened on first need (a timed wait, a drop): the plain spawn + join path stays as
    // short as a bare fork + waitpid. Signals go by pid, which is safe because only this
    // handle reaps the child, so its pid cannot be recycled before we are done with it.
    pidfd: std::sync::OnceLock<PidFd>,
    owner: u32,
    drop_grace: Duration,
    state: Mutex<State>,
    _result: PhantomData<fn() -> R>,
}

struct State {
    result_fd: Option<OwnedFd>,
    /// The result's tag byte, once read (`None`: the child wrote no result).
    tag: Option<u8>,
    body: Vec<u8>,
    status: Option<Exit>,
}

/// Options for a [`Process`] before it starts: its name and its drop grace period.
///
/// ```
/// use conclab::multiprocessing::ProcessBuilder;
/// use std::time::Duration;
///
/// let p = ProcessBuilder::new()
///     .name("worker-1")
///     .drop_grace(Duration::from_secs(1))
///     .spawn(|| std::process::id())
///     .unwrap();
/// assert_eq!(p.name(), "worker-1");
/// let child_pid = p.pid();
/// assert_eq!(p.join().unwrap() as i32, child_pid);
/// ```
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    name: Option<String>,
    drop_grace: Duration,
}

impl Default for ProcessBuilder {
    fn default() -> Self {
        ProcessBuilder::new()
    }
}

impl ProcessBuilder {
    /// Default options: the name `Process-<pid>`, a grace of [`DEFAULT_DROP_GRACE`].
    ///
    /// ```
    /// let p = conclab::multiprocessing::ProcessBuilder::new().spawn(|| ()).unwrap();
    /// assert_eq!(p.name(), format!("Process-{}", p.pid()));
    /// p.join().unwrap();
    /// ```
    pub fn new() -> ProcessBuilder {
        ProcessBuilder {
            name: None,
            drop_grace: DEFAULT_DROP_GRACE,
        }
    }

    /// The name shown in messages (Python's `name=`).
    ///
    /// ```
    /// let p = conclab::multiprocessing::ProcessBuilder::new().name("even").spawn(|| ()).unwrap();
    /// assert_eq!(p.name(), "even");
    /// p.join().unwrap();
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> ProcessBuilder {
        self.name = Some(name.into());
        self
    }

    /// How long dropping an unjoined handle waits before it kills the child.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let p = conclab::multiprocessing::ProcessBuilder::new()
    ///     .drop_grace(Duration::from_millis(50))
    ///     .spawn(|| std::thread::sleep(Duration::from_secs(60)))
    ///     .unwrap();
    /// let start = Instant::now();
    /// drop(p); // waits 50 ms, then SIGKILL, then reaps
    /// assert!(start.elapsed() < Duration::from_secs(30));
    /// ```
    pub fn drop_grace(mut self, grace: Duration) -> ProcessBuilder {
        self.drop_grace = grace;
        self
    }

    /// Forks a child that runs `f`, sends its result back, and ends with `_exit`.
    ///
    /// ```
    /// let p = conclab::multiprocessing::ProcessBuilder::new().spawn(|| "hi".to_string()).unwrap();
    /// assert_eq!(p.join().unwrap(), "hi");
    /// ```
    pub fn spawn<F, R>(self, f: F) -> Result<Process<R>, MpError>
    where
        F: FnOnce() -> R,
        R: Serialize + DeserializeOwned,
    {
        let result_file = memfd()?;
        // SAFETY: the child branch ends in child_exit and never returns.
        let Some(pid) = (unsafe { fork::fork_raw(Some(result_file.as_fd()))? }) else {
            run_child(self.name, f, result_file);
        };
        // Counted after the fork, while the child already runs on another core: the
        // count is the same either way, and this keeps it off the start-up path.
        fork::warn_if_threads("Process::spawn");
        Ok(Process {
            pid,
            name: std::sync::OnceLock::new(),
            given_name: self.name,
            pidfd: std::sync::OnceLock::new(),
            owner: std::process::id(),
            drop_grace: self.drop_grace,
            state: Mutex::new(State {
                result_fd: Some(result_file),
                tag: None,
                body: Vec::new(),
                status: None,
            }),
            _result: PhantomData,
        })
    }
}

fn run_child<F, R>(name: Option<String>, f: F, out: OwnedFd) -> !
where
    F: FnOnce() -> R,
    R: Serialize,
{
    let info = fork::ChildInfo::new("process", name);
    // SAFETY: `info` lives in this frame, which only ends in `child_exit` below.
    unsafe { fork::child_enter(&info) };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let run = std::panic::catch_unwind(AssertUnwindSafe(f));
        let (tag, body) = match run {
            Ok(value) => match codec::encode(&value) {
                Ok(bytes) => (TAG_VALUE, bytes),
                Err(e) => (TAG_ENCODE_FAILED, e.to_string().into_bytes()),
            },
            Err(payload) => {
                let msg = info
                    .take_panic()
                    .unwrap_or_else(|| fork::payload_str(&*payload));
                // The payload's destructor is user code too: keep it from unwinding here.
                std::mem::forget(payload);
                (TAG_PANIC, msg.into_bytes())
            }
        };
        let _ = write_result(&out, tag, &body);
        if tag == TAG_VALUE {
            0
        } else {
            1
        }
    }));
    fork::child_exit(outcome.unwrap_or(1))
}

/// Writes the child's result frame at offset 0: tag byte, body length, body.
///
/// A value that encodes to nothing (`()`, the common "run for its side effects" child) is
/// not written at all: an empty file from a child that exited with status 0 is that value
/// (see `Process::outcome`), which spares the child a system call and a page fault.
fn write_result(out: &OwnedFd, tag: u8, body: &[u8]) -> Result<(), MpError> {
    if tag == TAG_VALUE && body.is_empty() {
        return Ok(());
    }
    let mut frame = Vec::with_capacity(HEADER + body.len());
    frame.push(tag);
    frame.extend_from_slice(&(body.len() as u64).to_le_bytes());
    frame.extend_from_slice(body);
    pwrite_all(out, &frame)
}

impl<R: Serialize + DeserializeOwned> Process<R> {
    /// Forks a child running `f` with default options (see [`ProcessBuilder`]).
    ///
    /// ```
    /// use conclab::multiprocessing::Process;
    /// let handles: Vec<_> = (0..4).map(|i| Process::spawn(move || i * 10).unwrap()).collect();
    /// let results: Vec<i32> = handles.into_iter().map(|p| p.join().unwrap()).collect();
    /// assert_eq!(results, vec![0, 10, 20, 30]);
    /// ```
    pub fn spawn<F: FnOnce() -> R>(f: F) -> Result<Process<R>, MpError> {
        ProcessBuilder::new().spawn(f)
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// The child's process id (Python's `pid`).
    ///
    /// ```
    /// let p = conclab::multiprocessing::Process::spawn(|| std::process::id()).unwrap();
    /// let pid = p.pid();
    /// assert_eq!(p.join().unwrap() as i32, pid);
    /// ```
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The child's name (Python's `name`).
    ///
    /// ```
    /// let p = conclab::multiprocessing::Process::spawn(|| ()).unwrap();
    /// assert!(p.name().starts_with("Process-"));
    /// p.join().unwrap();
    /// ```
    pub fn name(&self) -> &str {
        self.name.get_or_init(|| {
            self.given_name
                .clone()
                .unwrap_or_else(|| format!("Process-{}", self.pid))
        })
    }

    /// Waits for the child and returns the closure's value, or why there is none: a panic
    /// ([`MpError::Panicked`]), a signal ([`MpError::Signaled`]) or an early exit
    /// ([`MpError::NoResult`]).
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Process};
    /// let p = Process::spawn(|| -> u8 { std::process::exit(3) }).unwrap();
    /// assert!(matches!(p.join(), Err(MpError::NoResult { code: 3, .. })));
    /// ```
    pub fn join(self) -> Result<R, MpError> {
        self.wait_until(None)?;
        self.outcome()
    }

    /// Waits at most `timeout`; `Ok(true)` if the child has ended (then [`join`](Self::join)
    /// returns at once), `Ok(false)` if it is still running (Python's `join(timeout)`
    /// followed by `is_alive()`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = conclab::multiprocessing::Process::spawn(|| std::thread::sleep(Duration::from_secs(30))).unwrap();
    /// assert!(!p.join_timeout(Duration::from_millis(20)).unwrap());
    /// p.terminate().unwrap();
    /// assert!(p.join_timeout(Duration::from_secs(30)).unwrap());
    /// assert_eq!(p.exitcode(), Some(-15)); // minus SIGTERM, as in Python
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, MpError> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Whether the child is still running (reaps it if it has just ended).
    ///
    /// ```
    /// let p = conclab::multiprocessing::Process::spawn(|| ()).unwrap();
    /// p.join_timeout(std::time::Duration::from_secs(30)).unwrap();
    /// assert!(!p.is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        !matches!(self.wait_until(Some(Instant::now())), Ok(true))
    }

    /// The exit code once the child has ended (`None` before): 0 after a normal return,
    /// 1 after a panic, minus the signal number after a signal (CPython's convention).
    ///
    /// ```
    /// let p = conclab::multiprocessing::Process::spawn(|| -> () { panic!("no") }).unwrap();
    /// p.join_timeout(std::time::Duration::from_secs(30)).unwrap();
    /// assert_eq!(p.exitcode(), Some(1));
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        let _ = self.wait_until(Some(Instant::now()));
        self.state.lock().status.map(Exit::exitcode)
    }

    /// Asks the child to stop with SIGTERM (Python's `terminate`). Join it afterwards.
    ///
    /// ```
    /// use conclab::multiprocessing::{MpError, Process};
    /// let p = Process::spawn(|| std::thread::sleep(std::time::Duration::from_secs(30))).unwrap();
    /// p.terminate().unwrap();
    /// assert!(matches!(p.join(), Err(MpError::Signaled { signal, .. }) if signal == "SIGTERM"));
    /// ```
    pub fn terminate(&self) -> Result<(), MpError> {
        self.signal(Signal::SIGTERM)
    }

    /// Kills the child with SIGKILL (Python's `kill`). Join it afterwards.
    ///
    /// ```
    /// let p = conclab::multiprocessing::Process::<()>::spawn(|| loop { std::hint::spin_loop() }).unwrap();
    /// p.kill().unwrap();
    /// assert_eq!(p.join().unwrap_err().to_string().contains("SIGKILL"), true);
    /// ```
    pub fn kill(&self) -> Result<(), MpError> {
        self.signal(Signal::SIGKILL)
    }

    fn signal(&self, signal: Signal) -> Result<(), MpError> {
        if self.state.lock().status.is_some() {
            return Ok(());
        }
        // Not reaped yet (checked above under the lock we hold no longer, but only this
        // handle reaps), so the pid is still ours, at worst a zombie.
        os_process::kill(self.pid, signal)
            .map_err(|e| MpError::io("send a signal to the child", &e))
    }

    /// Waits on the pidfd until the child has ended and reaps it, or until `deadline`.
    /// The result sits in a memory file, so the child never blocks on a full pipe and
    /// the parent wakes once, when the child exits.
    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, MpError> {
        let mut st = self.state.lock();
        if st.status.is_some() {
            return Ok(true);
        }
        // Without a deadline, waitpid alone does the waiting (as the raw floor does).
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if !codec::wait_readable(self.pidfd()?.as_fd(), Some(left))? {
                return Ok(false);
            }
        }
        let st = &mut *st;
        st.status = Some(fork::reap(self.pid)?);
        if let Some(fd) = st.result_fd.take() {
            (st.tag, st.body) = read_result(&fd)?;
        }
        Ok(true)
    }

    fn pidfd(&self) -> Result<&PidFd, MpError> {
        if let Some(fd) = self.pidfd.get() {
            return Ok(fd);
        }
        let fd = fork::pidfd_open(self.pid)?;
        Ok(self.pidfd.get_or_init(|| fd))
    }

    fn outcome(&self) -> Result<R, MpError> {
        let st = self.state.lock();
        let status = st.status.unwrap_or(Exit::CLEAN);
        let signaled = |signal: i32| MpError::Signaled {
            name: self.name().to_string(),
            pid: self.pid(),
            signal: os_process::signal_name(signal),
        };
        let body = st.body.as_slice();
        match st.tag {
            // A signal during a large write can leave the body cut short; bincode never
            // decodes a strict prefix of an encoding, so that shows up here.
            Some(TAG_VALUE) => {
                codec::decode(body).map_err(|error| status.signal().map_or(error, signaled))
            }
            Some(TAG_PANIC) => Err(MpError::Panicked {
                name: self.name().to_string(),
                pid: self.pid(),
                message: String::from_utf8_lossy(body).into_owned(),
            }),
            Some(TAG_ENCODE_FAILED) => {
                Err(MpError::Codec(String::from_utf8_lossy(body).into_owned()))
            }
            _ if status.signal().is_some() => Err(signaled(status.signal().unwrap_or_default())),
            // Nothing written and status 0: a value that encodes to nothing (see
            // `write_result`), or an early `exit(0)`, which for such a value is the same.
            None if status.is_clean() => codec::decode(&[]).map_err(|_| MpError::NoResult {
                name: self.name().to_string(),
                pid: self.pid(),
                code: 0,
            }),
            _ => Err(MpError::NoResult {
                name: self.name().to_string(),
                pid: self.pid(),
                code: status.code().unwrap_or(0),
            }),
        }
    }
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.state.lock().status;
        f.debug_struct("Process")
            .field("name", &self.given_name)
            .field("pid", &self.pid)
            .field("exitcode", &status.map(Exit::exitcode))
            .finish()
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            return; // a copy of the handle inside a forked child: not our child to reap
        }
        let mut st = self.state.lock();
        if st.status.is_some() {
            return;
        }
        let ended = match fork::pidfd_open(self.pid) {
            Ok(fd) => codec::wait_readable(fd.as_fd(), Some(self.drop_grace)),
            Err(e) => Err(e),
        };
        if !matches!(ended, Ok(true)) {
            eprintln!(
                "conclab: process '{}' (pid {}) was still running {:?} after its handle \
                 was dropped unjoined; killed it with SIGKILL",
                self.given_name.as_deref().unwrap_or("Process"),
                self.pid,
                self.drop_grace
            );
            // Our own unreaped child: its pid cannot have been recycled.
            let _ = os_process::kill(self.pid, Signal::SIGKILL);
        }
        st.result_fd = None;
        let _ = fork::reap(self.pid);
    }
}

/// The child's result goes into an anonymous memory file: unlike a pipe it never fills up,
/// so a child with a large result ends without waiting for the parent to read. The child
/// also gets it as stdin, positioned at [`STDIN_AT`], where reads find the end of the file.
fn memfd() -> Result<OwnedFd, MpError> {
    let file = fd::memfd(c"conclab-result")
        .map_err(|e| MpError::io("create a memory file for the child's result", &e))?;
    fd::seek_to(&file, STDIN_AT)
        .map_err(|e| MpError::io("prepare a memory file for the child's result", &e))?;
    Ok(file)
}

fn pwrite_all(file: &OwnedFd, buf: &[u8]) -> Result<(), MpError> {
    fd::pwrite_all(file.as_fd(), buf, 0).map_err(|e| MpError::io("write the child's result", &e))
}

/// Reads the child's result frame: its tag (`None` when the child wrote nothing) and body.
///
/// The first read goes into a small buffer on the stack, so a small result needs one read
/// and no heap allocation but its body's: the fork write-protected every page of the
/// parent, so the first write to each one afterwards (a heap page, say) takes a fault, and
/// this runs on every join. A longer body is read in steps of at most 16 MiB, so a length
/// the file does not back (a child killed mid-write) allocates no more than is there.
fn read_result(fd: &OwnedFd) -> Result<(Option<u8>, Vec<u8>), MpError> {
    let mut head = [0u8; 64];
    let n = pread_full(fd, &mut head, 0)?;
    if n == 0 || head[0] == 0 {
        return Ok((None, Vec::new()));
    }
    let tag = Some(head[0]);
    if n < HEADER {
        return Ok((tag, Vec::new())); // cut short: decoding reports it
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&head[1..HEADER]);
    let len = usize::try_from(u64::from_le_bytes(length)).unwrap_or(usize::MAX);
    let mut body = head[HEADER..n].to_vec();
    body.truncate(len);
    while body.len() < len {
        let start = body.len();
        let want = (len - start).min(1 << 24);
        body.resize(start + want, 0);
        let got = pread_full(fd, &mut body[start..], HEADER + start)?;
        body.truncate(start + got);
        if got < want {
            break;
        }
    }
    Ok((tag, body))
}

/// Reads at `offset` until `buf` is full or the file ends; returns the bytes read.
fn pread_full(file: &OwnedFd, buf: &mut [u8], offset: usize) -> Result<usize, MpError> {
    let mut at = 0usize;
    while at < buf.len() {
        let n = fd::pread(file.as_fd(), &mut buf[at..], (offset + at) as u64)
            .map_err(|e| MpError::io("read the child's result", &e))?;
        if n == 0 {
            break;
        }
        at += n;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> OwnedFd {
        let file = memfd().unwrap();
        if !bytes.is_empty() {
            pwrite_all(&file, bytes).unwrap();
        }
        file
    }

    #[test]
    fn a_frame_reads_back_whole() {
        let file = memfd().unwrap();
        write_result(&file, TAG_PANIC, b"boom").unwrap();
        assert_eq!(
            read_result(&file).unwrap(),
            (Some(TAG_PANIC), b"boom".to_vec())
        );
        // A value that encodes to nothing is not written at all.
        let file = memfd().unwrap();
        write_result(&file, TAG_VALUE, b"").unwrap();
        assert_eq!(read_result(&file).unwrap(), (None, Vec::new()));
    }

    #[test]
    fn writes_to_the_childs_stdin_never_reach_the_frame() {
        let file = memfd().unwrap();
        // What the child would do through descriptor 0, which shares this position.
        let junk = [0xffu8; 100];
        assert_eq!(fd::write(file.as_fd(), &junk).unwrap(), 100);
        assert_eq!(read_result(&file).unwrap(), (None, Vec::new()));
        write_result(&file, TAG_VALUE, b"kept").unwrap();
        assert_eq!(
            read_result(&file).unwrap(),
            (Some(TAG_VALUE), b"kept".to_vec())
        );
    }

    #[test]
    fn a_frame_cut_short_reads_as_what_is_there() {
        // A length far beyond the file, as a child killed mid-write leaves it: what is
        // there comes back, and nothing near the claimed length is allocated.
        let mut frame = vec![TAG_VALUE];
        frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
        frame.extend_from_slice(&[7; 100]);
        assert_eq!(
            read_result(&file_with(&frame)).unwrap(),
            (Some(TAG_VALUE), vec![7; 100])
        );
        // A header cut short.
        assert_eq!(
            read_result(&file_with(&[TAG_VALUE, 3])).unwrap(),
            (Some(TAG_VALUE), Vec::new())
        );
    }
}
