//! The relay: the process evcxr takes for its cell process, standing between evcxr and
//! the real one.
//!
//! evcxr learns how a cell ended from marker lines on the cell process's stdout (a panic,
//! a `?` that returned `Err`, the end of the cell), and keeps that knowledge to itself;
//! the cell's stderr reaches it on another pipe, read by another thread, so it can arrive
//! after the cell is over. The relay reads both pipes of the real cell process (evcxr's
//! own runtime loop, started from this same binary), passes evcxr the protocol lines it
//! needs, and sends the kernel one ordered stream of [`Event`]s. Before it passes on a
//! marker it takes whatever is waiting on stderr, so a cell's own output always comes
//! before the marker that ends it.
//!
//! The cell process stays single-threaded (conclab's `fork()` relies on that); the relay
//! has the threads. It dies with evcxr's handle on it: the cell process has
//! `PR_SET_PDEATHSIG`, and when the cell process dies the relay dies the same way, so
//! evcxr reports the true status.

use super::events::{Event, MAX_PAYLOAD};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Set by the kernel on the relay's command: the descriptor of the events pipe.
pub const RELAY_FD_ENV: &str = "CONCLAB_RELAY_FD";
/// The descriptor the kernel puts the events pipe on, in the relay.
pub const RELAY_FD: RawFd = 3;

const EXECUTION_COMPLETE: &str = "EVCXR_EXECUTION_COMPLETE";
const PANIC_NOTIFICATION: &str = "EVCXR_PANIC_NOTIFICATION";
const USER_ERROR_OCCURRED: &str = "EVCXR_ERROR_OCCURRED";
const BEGIN_CONTENT: &str = "EVCXR_BEGIN_CONTENT";
const END_CONTENT: &str = "EVCXR_END_CONTENT";
/// Lines evcxr needs and the notebook must not see (variable bookkeeping, input).
const PROTOCOL_PREFIXES: [&str; 2] = ["EVCXR_VARIABLE_CHANGED_TYPE:", "EVCXR_INPUT_REQUEST"];

/// Whether this process was started as the relay.
pub fn is_relay() -> bool {
    std::env::var_os(RELAY_FD_ENV).is_some() && std::env::var_os("EVCXR_IS_RUNTIME").is_some()
}

/// Runs the relay until the cell process ends, then ends the same way.
pub fn run() -> ! {
    // SAFETY: RELAY_FD is the events pipe the kernel's pre_exec hook put there; nothing
    // else in this process owns it. Marking it close-on-exec keeps it out of the cell
    // process, whose descendants would otherwise hold the kernel's pipe open.
    let events = unsafe {
        libc::fcntl(RELAY_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        File::from_raw_fd(RELAY_FD)
    };
    // SAFETY: plain signal dispositions. The relay must outlive a Ctrl-C sent to the
    // whole process group (it reports the cell process's death) and must not die of a
    // write to a kernel that went away (it exits then instead).
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    match relay(events) {
        Ok(status) => mirror(status),
        Err(error) => {
            eprintln!("conclab relay: {error}");
            std::process::exit(98);
        }
    }
}

fn spawn_cell_process() -> io::Result<Child> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env_remove(RELAY_FD_ENV)
        // evcxr asks for backtraces; a notebook shows a panic's message, and symbolising
        // a backtrace takes seconds.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let relay = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of ours.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The relay may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != relay {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command.spawn()
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What the relay forwards and reports, kept apart from the descriptors so that it can be
/// tested on plain buffers.
pub struct Splitter<E: Write, F: Write> {
    events: E,
    evcxr: F,
    line: Vec<u8>,
    in_content: bool,
}

impl<E: Write, F: Write> Splitter<E, F> {
    pub fn new(events: E, evcxr: F) -> Self {
        Splitter {
            events,
            evcxr,
            line: Vec::new(),
            in_content: false,
        }
    }

    /// Takes bytes the cell process wrote to stderr.
    pub fn stderr(&mut self, bytes: &[u8]) -> io::Result<()> {
        for chunk in bytes.chunks(MAX_PAYLOAD) {
            Event::Stderr(chunk.to_vec()).write_to(&mut self.events)?;
        }
        Ok(())
    }

    /// Takes bytes the cell process wrote to stdout. `drain_stderr` is called before a
    /// marker is passed on, to take what is already waiting on stderr.
    pub fn stdout(
        &mut self,
        bytes: &[u8],
        drain_stderr: &mut dyn FnMut(&mut Self) -> io::Result<()>,
    ) -> io::Result<()> {
        self.line.extend_from_slice(bytes);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).collect();
            self.line_of_stdout(&line, drain_stderr)?;
        }
        Ok(())
    }

    fn line_of_stdout(
        &mut self,
        line: &[u8],
        drain_stderr: &mut dyn FnMut(&mut Self) -> io::Result<()>,
    ) -> io::Result<()> {
        let text = String::from_utf8_lossy(&line[..line.len() - 1]);
        let text = text.trim_end_matches('\r');
        if self.in_content {
            self.in_content = text != END_CONTENT;
            return self.evcxr.write_all(line);
        }
        if text.starts_with(BEGIN_CONTENT) {
            self.in_content = true;
            return self.evcxr.write_all(line);
        }
        let marker = [
            (EXECUTION_COMPLETE, Event::Complete),
            (PANIC_NOTIFICATION, Event::Panic),
            (USER_ERROR_OCCURRED, Event::UserError),
        ]
        .into_iter()
        .find(|(marker, _)| text.ends_with(marker));
        if let Some((marker, event)) = marker {
            // A `print!` without a newline glues onto the marker: it is the cell's text.
            let glued = &text[..text.len() - marker.len()];
            if !glued.is_empty() {
                Event::Stdout(glued.as_bytes().to_vec()).write_to(&mut self.events)?;
            }
            drain_stderr(self)?;
            event.write_to(&mut self.events)?;
            self.events.flush()?;
            writeln!(self.evcxr, "{marker}")?;
            return self.evcxr.flush();
        }
        if PROTOCOL_PREFIXES
            .iter()
            .any(|prefix| text.starts_with(prefix))
        {
            self.evcxr.write_all(line)?;
            return self.evcxr.flush();
        }
        for chunk in line.chunks(MAX_PAYLOAD) {
            Event::Stdout(chunk.to_vec()).write_to(&mut self.events)?;
        }
        Ok(())
    }

    /// At the end: text without a final newline still belongs to the notebook.
    pub fn finish(&mut self) -> io::Result<()> {
        if !self.line.is_empty() && !self.in_content {
            let rest = std::mem::take(&mut self.line);
            Event::Stdout(rest).write_to(&mut self.events)?;
        }
        Ok(())
    }

    pub fn report(&mut self, event: Event) -> io::Result<()> {
        event.write_to(&mut self.events)
    }
}

/// Reads what is waiting on `fd` without blocking; `Ok(false)` once it is closed.
fn read_available(
    fd: &mut File,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match fd.read(&mut buffer) {
            Ok(0) => return Ok(false),
            Ok(n) => sink(&buffer[..n])?,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

fn relay(events: File) -> io::Result<ExitStatus> {
    let mut child = spawn_cell_process()?;
    let mut child_stdin = child.stdin.take().expect("piped above");
    let mut out = File::from(std::os::fd::OwnedFd::from(
        child.stdout.take().expect("piped"),
    ));
    let mut err = File::from(std::os::fd::OwnedFd::from(
        child.stderr.take().expect("piped"),
    ));
    set_nonblocking(out.as_raw_fd())?;
    set_nonblocking(err.as_raw_fd())?;

    // evcxr's commands (and answers to input requests) go straight through.
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut child_stdin);
    });
    // A pipe that becomes readable when the cell process has exited.
    let mut exit_pipe = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(exit_pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let pid = child.id();
    let (exit_read, exit_write) = (exit_pipe[0], exit_pipe[1]);
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        // SAFETY: closing our end of the pipe wakes the poll below; the fd is ours.
        unsafe { libc::close(exit_write) };
        status
    });

    let mut splitter = Splitter::new(io::BufWriter::new(events), io::stdout().lock());
    splitter.report(Event::Started(pid))?;
    splitter.report_flush()?;
    let mut out_open = true;
    let mut err_open = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: if out_open { out.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if err_open { err.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: exit_read,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of three pollfd structures.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        // Stdout first: a line the cell printed before its panic must not come after
        // the panic report that was waiting on stderr. Markers on stdout take what
        // waits on stderr themselves.
        if out_open && fds[0].revents != 0 {
            let mut pending: Vec<u8> = Vec::new();
            out_open = read_available(&mut out, |bytes| {
                pending.extend_from_slice(bytes);
                Ok(())
            })?;
            let err_ref = &mut err;
            splitter.stdout(&pending, &mut |splitter| {
                read_available(err_ref, |bytes| splitter.stderr(bytes)).map(|_| ())
            })?;
            splitter.report_flush()?;
        }
        if err_open && fds[1].revents != 0 {
            err_open = read_available(&mut err, |bytes| splitter.stderr(bytes))?;
        }
        if fds[2].revents != 0 {
            break;
        }
        splitter.report_flush()?;
    }
    // The cell process is gone. Its children may still hold the pipes open, so take what
    // is there now rather than waiting for the end of either.
    let status = waiter
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the waiting thread panicked")))?;
    let mut pending = Vec::new();
    read_available(&mut out, |bytes| {
        pending.extend_from_slice(bytes);
        Ok(())
    })?;
    read_available(&mut err, |bytes| splitter.stderr(bytes))?;
    splitter.stdout(&pending, &mut |_| Ok(()))?;
    splitter.finish()?;
    splitter.report(Event::Exited(describe(status)))?;
    splitter.report_flush()?;
    Ok(status)
}

impl<E: Write, F: Write> Splitter<E, F> {
    fn report_flush(&mut self) -> io::Result<()> {
        self.events.flush()
    }
}

/// Says how a process ended, as a person would: `exited with status 3`, `killed by
/// signal 11 (SIGSEGV: segmentation fault)`.
pub fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => format!("killed by signal {signal} ({})", signal_name(signal)),
        None => status.to_string(),
    }
}

/// The name and meaning of the signals a cell process dies of.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV: segmentation fault",
        libc::SIGABRT => "SIGABRT: aborted",
        libc::SIGKILL => "SIGKILL: killed",
        libc::SIGBUS => "SIGBUS: bus error",
        libc::SIGILL => "SIGILL: illegal instruction",
        libc::SIGFPE => "SIGFPE: arithmetic error",
        libc::SIGTERM => "SIGTERM: terminated",
        libc::SIGINT => "SIGINT: interrupted",
        libc::SIGXCPU => "SIGXCPU: CPU time limit",
        libc::SIGXFSZ => "SIGXFSZ: file size limit",
        _ => "signal",
    }
}

/// Ends the relay the way the cell process ended, so evcxr reports the true status.
fn mirror(status: ExitStatus) -> ! {
    let _ = io::stdout().flush();
    if let Some(signal) = status.signal() {
        // SAFETY: restoring the default action and raising the signal at ourselves; if
        // the signal does not end the process, the exit below does.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
    std::process::exit(status.code().unwrap_or(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(stdout: &[&[u8]], stderr_before_markers: &[u8]) -> (Vec<Event>, String) {
        let mut events = Vec::new();
        let mut evcxr = Vec::new();
        {
            let mut splitter = Splitter::new(&mut events, &mut evcxr);
            for chunk in stdout {
                let mut pending = Some(stderr_before_markers.to_vec());
                splitter
                    .stdout(chunk, &mut |s| match pending.take() {
                        Some(bytes) if !bytes.is_empty() => s.stderr(&bytes),
                        _ => Ok(()),
                    })
                    .unwrap();
            }
            splitter.finish().unwrap();
        }
        let mut reader = events.as_slice();
        let mut out = Vec::new();
        while let Some(event) = Event::read_from(&mut reader).unwrap() {
            out.push(event);
        }
        (out, String::from_utf8(evcxr).unwrap())
    }

    #[test]
    fn user_lines_go_to_the_kernel_and_markers_to_both() {
        let (events, evcxr) = split(&[b"hello\nEVCXR_EXECUTION_COMPLETE\n"], b"");
        assert_eq!(
            events,
            vec![Event::Stdout(b"hello\n".to_vec()), Event::Complete]
        );
        assert_eq!(evcxr, "EVCXR_EXECUTION_COMPLETE\n");
    }

    #[test]
    fn stderr_waiting_at_a_marker_comes_before_it() {
        let (events, _) = split(
            &[b"EVCXR_PANIC_NOTIFICATION\n"],
            b"thread '<unnamed>' panicked at src/lib.rs:3:1:\nboom\n",
        );
        assert!(matches!(events[0], Event::Stderr(_)));
        assert_eq!(events[1], Event::Panic);
    }

    #[test]
    fn text_glued_to_a_marker_is_the_cells_output() {
        let (events, evcxr) = split(&[b"no newline", b"EVCXR_EXECUTION_COMPLETE\n"], b"");
        assert_eq!(
            events,
            vec![Event::Stdout(b"no newline".to_vec()), Event::Complete]
        );
        assert_eq!(evcxr, "EVCXR_EXECUTION_COMPLETE\n");
    }

    #[test]
    fn rich_content_and_protocol_lines_go_to_evcxr_only() {
        let (events, evcxr) = split(
            &[b"EVCXR_BEGIN_CONTENT text/html\n<b>x</b>\nEVCXR_END_CONTENT\nEVCXR_VARIABLE_CHANGED_TYPE:x\nEVCXR_ERROR_OCCURRED\n"],
            b"",
        );
        assert_eq!(events, vec![Event::UserError]);
        assert_eq!(
            evcxr,
            "EVCXR_BEGIN_CONTENT text/html\n<b>x</b>\nEVCXR_END_CONTENT\nEVCXR_VARIABLE_CHANGED_TYPE:x\nEVCXR_ERROR_OCCURRED\n"
        );
    }

    #[test]
    fn a_last_line_without_newline_is_kept() {
        let (events, _) = split(&[b"tail"], b"");
        assert_eq!(events, vec![Event::Stdout(b"tail".to_vec())]);
    }

    #[test]
    fn deaths_are_described_with_the_signal_meaning() {
        let status = ExitStatus::from_raw(libc::SIGSEGV);
        assert_eq!(
            describe(status),
            "killed by signal 11 (SIGSEGV: segmentation fault)"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
    }
}
