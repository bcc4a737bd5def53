//! Standby kernels: a kernel that has started evcxr and loaded the course crate before
//! anyone asked for one, handed to the next launch.
//!
//! Most of a new kernel's start is work that is the same in every kernel: evcxr builds and
//! runs its first cell, cargo checks the course crate, rust-analyzer reads the crate and
//! its dependencies (libc, nix, rayon, plotters) so that it can name the type of every
//! variable, and the first variable builds evcxr's variable store. None of it depends on
//! the notebook. So a kernel that is up starts one more, `conclab-kernel standby`, which
//! does all that at the lowest CPU priority and then waits on a Unix socket. The next
//! `conclab-kernel kernel` that Jupyter launches connects to it and hands over what makes
//! a kernel its own: the connection file, the working folder, the environment, and its
//! stdout and stderr (the kernel's log in Jupyter's terminal). The standby moves there,
//! restarts its cell process so that user code sees that folder and environment, binds
//! the connection file's ports and serves. The launcher stays the process Jupyter
//! started and watches: it passes on the signals it gets, and ends when the kernel ends
//! (and the kernel ends when the launcher is killed). Jupyter's own preheated kernels in
//! Voilà and Enterprise Gateway's kernel pools do the same on a larger scale.
//!
//! A launch takes a standby only when nothing about it can differ from a kernel started
//! cold. The socket's name is a digest of this program (path, size and time), the kernel's
//! evcxr configuration (`init.evcxr`, `prelude.rs`, `evcxr.toml`) and every variable that
//! changes how cargo, rustc, evcxr or the kernel build ([`keyed`]); an `evcxr.toml` in the
//! notebook's folder (evcxr reads it only at start) means a cold start. `CONCLAB_STANDBY=off`
//! turns standbys off; the grader's sandbox sets it, since a standby lives outside the
//! sandbox's cgroups. A standby nobody takes ends after `CONCLAB_STANDBY_IDLE` seconds
//! (1,200 by default), or as soon as this program is rebuilt.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Set to `off` (or `0`, `no`, `false`) to start every kernel cold and leave no standby.
pub const VARIABLE: &str = "CONCLAB_STANDBY";
/// Seconds a standby waits for a launch before it ends.
pub const IDLE_VARIABLE: &str = "CONCLAB_STANDBY_IDLE";
const DEFAULT_IDLE: Duration = Duration::from_secs(1200);
/// How long a launcher waits for the standby to answer before it starts cold.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);
/// How often an idle standby looks whether it is still wanted.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// The niceness of a standby's warm-up, so that it only takes CPU nobody else wants.
const WARM_UP_NICENESS: libc::c_int = 19;

/// Whether this kernel may take a standby or leave one.
pub fn enabled() -> bool {
    !matches!(
        std::env::var(VARIABLE)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("off" | "0" | "no" | "false")
    )
}

/// Whether a variable changes what a kernel builds or how, so that a standby started with
/// another value must not serve. Variables only user code reads (`TMPDIR`, `JPY_*`, cargo's
/// per-package `CARGO_PKG_*` of a test harness) are not keyed: the cell process gets the
/// launcher's values when the standby restarts it.
pub fn keyed(name: &str) -> bool {
    const EXACT: [&str; 6] = [
        "PATH",
        "HOME",
        "LD_LIBRARY_PATH",
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
    ];
    const PREFIXES: [&str; 11] = [
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_NET_",
        "CARGO_REGISTR",
        "CARGO_TARGET_",
        "CARGO_UNSTABLE_",
        "CARGO_ENCODED_",
        "CARGO_INCREMENTAL",
        "RUSTC",
        "RUSTUP_",
        "EVCXR_",
    ];
    let unkeyed_own = [
        VARIABLE,
        IDLE_VARIABLE,
        KEY_VARIABLE,
        "CONCLAB_KERNEL_TRACE",
    ];
    EXACT.contains(&name)
        || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        || (name.starts_with("CONCLAB_") && !unkeyed_own.contains(&name))
}

/// Passes the key from a kernel to the standby it starts: the kernel's own environment
/// may have changed since it was launched (it puts cargo on `PATH` when it is missing).
const KEY_VARIABLE: &str = "CONCLAB_STANDBY_KEY";

/// The files of the standbys for this program, configuration and environment.
struct Place {
    key: String,
    socket: PathBuf,
    lock: PathBuf,
    log: PathBuf,
}

fn folder() -> PathBuf {
    crate::setup::machine_dir().join("standby")
}

/// This process's place, worked out once, from the environment it was launched with.
fn place() -> io::Result<&'static Place> {
    static PLACE: std::sync::OnceLock<Option<Place>> = std::sync::OnceLock::new();
    PLACE
        .get_or_init(|| {
            let key = match std::env::var(KEY_VARIABLE) {
                Ok(key) => key,
                Err(_) => key().ok()?,
            };
            let dir = folder();
            Some(Place {
                socket: dir.join(format!("{key}.sock")),
                lock: dir.join(format!("{key}.lock")),
                log: dir.join(format!("{key}.log")),
                key,
            })
        })
        .as_ref()
        .ok_or_else(|| io::Error::other("this program cannot find its own file"))
}

/// Remembers the place before the kernel changes its environment.
pub fn remember_place() {
    let _ = place();
}

fn key() -> io::Result<String> {
    let exe = std::env::current_exe()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    identity(&exe)?.hash(&mut hasher);
    let config = evcxr::config_dir();
    for name in ["init.evcxr", "prelude.rs", "evcxr.toml"] {
        let content = config
            .as_ref()
            .and_then(|dir| std::fs::read(dir.join(name)).ok());
        (name, content).hash(&mut hasher);
    }
    let mut variables: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| name.to_str().is_some_and(keyed))
        .collect();
    variables.sort();
    variables.hash(&mut hasher);
    Ok(format!("{:016x}", hasher.finish()))
}

/// What tells one build of this program from another.
fn identity(exe: &Path) -> io::Result<(PathBuf, u64, i64, i64)> {
    let meta = std::fs::metadata(exe)?;
    Ok((exe.to_owned(), meta.len(), meta.mtime(), meta.mtime_nsec()))
}

fn make_folder() -> io::Result<PathBuf> {
    let dir = folder();
    std::fs::create_dir_all(&dir)?;
    // Only this user may connect: a launch hands over its environment and its output.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// What a launcher hands to the standby, on one line of JSON.
#[derive(Serialize, Deserialize)]
struct Request {
    connection_file: Vec<u8>,
    cwd: Vec<u8>,
    env: Vec<(Vec<u8>, Vec<u8>)>,
    launcher: i32,
}

// ---------------------------------------------------------------- the launcher's side

/// A launch a standby took: this process now only stands in for it.
pub struct Handover {
    stream: UnixStream,
    kernel: i32,
}

/// Hands this launch to a standby, if one is ready and may serve it. `None` means: start
/// cold (the reason is on stderr when a standby was there but refused).
pub fn hand_over(connection_file: &Path) -> Option<Handover> {
    remember_place();
    let cwd = std::env::current_dir().ok()?;
    if !enabled() || cwd.join("evcxr.toml").exists() {
        return None;
    }
    let place = place().ok()?;
    // No socket, or a standby that just ended: nothing to say, start cold.
    let mut stream = UnixStream::connect(&place.socket).ok()?;
    match offer(&mut stream, connection_file, &cwd) {
        Ok(kernel) => Some(Handover { stream, kernel }),
        Err(reason) => {
            eprintln!("conclab kernel: the standby kernel did not take this launch ({reason}); starting one now");
            None
        }
    }
}

fn offer(stream: &mut UnixStream, connection_file: &Path, cwd: &Path) -> Result<i32, String> {
    let absolute = if connection_file.is_absolute() {
        connection_file.to_owned()
    } else {
        cwd.join(connection_file)
    };
    let request = Request {
        connection_file: absolute.into_os_string().into_vec(),
        cwd: cwd.as_os_str().as_bytes().to_vec(),
        env: std::env::vars_os()
            .map(|(name, value)| (name.into_vec(), value.into_vec()))
            .collect(),
        launcher: std::process::id() as i32,
    };
    let mut line = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    send_with_fds(stream, &line, &[1, 2]).map_err(|e| format!("cannot send: {e}"))?;
    stream
        .set_read_timeout(Some(ANSWER_LIMIT))
        .map_err(|e| e.to_string())?;
    // Byte by byte: what follows the answer (`bye`) is the watcher's to read.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while answer.last() != Some(&b'\n') {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => answer.push(byte[0]),
            Err(error) => return Err(format!("no answer: {error}")),
        }
    }
    let _ = stream.set_read_timeout(None);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    match answer.trim_end().split_once(' ') {
        Some(("ok", pid)) => pid.parse().map_err(|_| format!("a bad answer: {answer}")),
        Some(("no", reason)) => Err(reason.to_owned()),
        _ if answer.is_empty() => Err("it ended before it answered".into()),
        _ => Err(format!("a bad answer: {answer}")),
    }
}

impl Handover {
    /// The pid of the kernel that serves this launch.
    pub fn kernel_pid(&self) -> i32 {
        self.kernel
    }

    /// Stands in for the kernel until it ends: passes on the signals this process gets
    /// and exits with 0 when the kernel shut down, 1 when it died.
    pub fn watch(self) -> ! {
        use nix::sys::signal::{SigSet, Signal};
        let mut signals = SigSet::empty();
        for signal in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            signals.add(signal);
        }
        // Blocked before the reader thread starts, so that only `wait` below takes them.
        let _ = signals.thread_block();
        let kernel = self.kernel;
        let stream = self.stream;
        let _ = std::thread::Builder::new()
            .name("kernel-watch".into())
            .spawn(move || {
                let mut said = String::new();
                let _ = BufReader::new(&stream).read_to_string(&mut said);
                if said.lines().any(|line| line == "bye") {
                    std::process::exit(0);
                }
                eprintln!("conclab kernel: the kernel (pid {kernel}) ended without shutting down");
                std::process::exit(1);
            });
        loop {
            if let Ok(signal) = signals.wait() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(kernel), signal);
            }
        }
    }
}

fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let control = [ControlMessage::ScmRights(fds)];
    let sent = sendmsg::<nix::sys::socket::UnixAddr>(
        stream.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &control,
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)?;
    // The descriptors went with the first byte; the rest is plain data.
    (&*stream).write_all(&bytes[sent..])
}

// ---------------------------------------------------------------- the standby's side

/// The right to be this configuration's standby: one at a time, held until a launch
/// takes it (then the next standby may start).
pub struct Claim {
    place: &'static Place,
    _lock: File,
}

/// Claims the standby's place, or `None` when another standby holds it.
pub fn claim() -> io::Result<Option<Claim>> {
    make_folder()?;
    let place = place()?;
    let lock = File::create(&place.lock)?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(None);
    }
    Ok(Some(Claim { place, _lock: lock }))
}

/// Runs `work` on a thread of lowest priority, with every process it starts (cargo,
/// rustc) at that priority too: a standby warms up only on CPU nobody else wants.
pub fn at_low_priority<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    std::thread::Builder::new()
        .name("standby-warm-up".into())
        .spawn(move || {
            // Linux keeps a niceness per thread; the shell thread that serves later stays
            // at its own. Raising one's own niceness needs no privilege.
            // SAFETY: setpriority on this thread's own id; no memory is passed.
            unsafe {
                libc::setpriority(
                    libc::PRIO_PROCESS,
                    libc::gettid() as libc::id_t,
                    WARM_UP_NICENESS,
                )
            };
            work()
        })?
        .join()
        .map_err(|_| io::Error::other("the warm-up thread panicked"))
}

/// A launch a standby accepted to serve.
pub struct Launch {
    stream: UnixStream,
    request: Request,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl Claim {
    /// Opens the socket (the standby is ready from now on) and waits for a launch. `None`
    /// when none came within the idle time, or this program was rebuilt meanwhile.
    pub fn wait_for_launch(self) -> io::Result<Option<Launch>> {
        let exe = std::env::current_exe()?;
        let built = identity(&exe)?;
        let idle = std::env::var(IDLE_VARIABLE)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_IDLE);
        // Bound under another name, then renamed: a launcher never meets a socket that
        // is not listening yet.
        let fresh = self
            .place
            .socket
            .with_extension(format!("{}.new", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        let listener = UnixListener::bind(&fresh)?;
        std::fs::rename(&fresh, &self.place.socket)?;
        let listening = Instant::now();
        let result = loop {
            let wanted = identity(&exe).is_ok_and(|now| now == built) && listening.elapsed() < idle;
            if !wanted {
                break Ok(None);
            }
            if !super::readable_within(&listener, CHECK_EVERY) {
                continue;
            }
            let (stream, _) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => break Err(error),
            };
            match receive(stream) {
                Ok(launch) => break Ok(Some(launch)),
                // A probe of `wait_until_ready`, which only looks whether anyone listens.
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(error) => eprintln!("conclab standby: a launch could not be read: {error}"),
            }
        };
        // Taken or ending: no later launcher may find this socket.
        let _ = std::fs::remove_file(&self.place.socket);
        result
    }
}

fn receive(stream: UnixStream) -> io::Result<Launch> {
    use nix::sys::socket::{
        getsockopt, recvmsg, sockopt::PeerCredentials, ControlMessageOwned, MsgFlags,
    };
    let peer = getsockopt(&stream, PeerCredentials).map_err(io::Error::from)?;
    // SAFETY: getuid has no preconditions.
    if peer.uid() != unsafe { libc::getuid() } {
        return Err(io::Error::other(format!(
            "a launcher of uid {} is not this user's",
            peer.uid()
        )));
    }
    stream.set_read_timeout(Some(ANSWER_LIMIT))?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let (received, fds) = {
        let mut slices = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<nix::sys::socket::UnixAddr>(
            stream.as_raw_fd(),
            &mut slices,
            Some(&mut space[..]),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for control in message.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(received) = control {
                // SAFETY: the kernel just created these descriptors for this process.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (message.bytes, fds)
    };
    if received == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut line = buffer[..received].to_vec();
    if !line.ends_with(b"\n") {
        let mut reader = BufReader::new(&stream);
        reader.read_until(b'\n', &mut line)?;
    }
    let request: Request = serde_json::from_slice(&line)
        .map_err(|e| io::Error::other(format!("the request is not ours: {e}")))?;
    let mut fds = fds.into_iter();
    let (Some(stdout), Some(stderr)) = (fds.next(), fds.next()) else {
        return Err(io::Error::other("the launcher sent no stdout and stderr"));
    };
    stream.set_read_timeout(None)?;
    Ok(Launch {
        stream,
        request,
        stdout,
        stderr,
    })
}

impl Launch {
    /// The connection file the launcher was started with.
    pub fn connection_file(&self) -> PathBuf {
        PathBuf::from(OsString::from_vec(self.request.connection_file.clone()))
    }

    /// Makes this process the launcher's: its folder, its environment, its stdout and
    /// stderr. The cell process picks them up when it is restarted next.
    pub fn adopt(&self) -> io::Result<()> {
        std::env::set_current_dir(OsString::from_vec(self.request.cwd.clone()))?;
        let wanted: Vec<(OsString, OsString)> = self
            .request
            .env
            .iter()
            .map(|(name, value)| {
                (
                    OsString::from_vec(name.clone()),
                    OsString::from_vec(value.clone()),
                )
            })
            .collect();
        // Kept: where this kernel builds, which it chose itself at start.
        let own = ["EVCXR_TMPDIR"];
        // SAFETY: the environment changes while the kernel's other threads only do socket
        // and pipe I/O and evcxr is idle: no thread reads it concurrently (as at start).
        unsafe {
            for (name, _) in std::env::vars_os() {
                let own_name = name.to_str().is_some_and(|n| own.contains(&n));
                if !own_name && !wanted.iter().any(|(w, _)| *w == name) {
                    std::env::remove_var(&name);
                }
            }
            for (name, value) in &wanted {
                if !name.to_str().is_some_and(|n| own.contains(&n)) {
                    std::env::set_var(name, value);
                }
            }
        }
        for (from, to) in [(&self.stdout, 1), (&self.stderr, 2)] {
            // SAFETY: dup2 onto the standard descriptors, from descriptors we own.
            if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Tells the launcher why this standby cannot serve it (it then starts cold).
    pub fn refuse(mut self, reason: &str) {
        let _ = writeln!(self.stream, "no {reason}");
    }

    /// Tells the launcher that this process serves it now. Returns the line to it: the
    /// kernel says `bye` on it when it shuts down, and ends when it closes.
    pub fn accept(mut self) -> io::Result<UnixStream> {
        writeln!(self.stream, "ok {}", std::process::id())?;
        Ok(self.stream)
    }

    /// The launcher's pid.
    pub fn launcher(&self) -> i32 {
        self.request.launcher
    }
}

/// Starts the next standby in the background, unless standbys are off. It ends at once
/// when another standby holds the place.
pub fn start_next() {
    if !enabled() {
        return;
    }
    if let Err(error) = spawn() {
        eprintln!("conclab kernel: no standby kernel for the next launch: {error}");
    }
}

fn spawn() -> io::Result<()> {
    let dir = make_folder()?;
    let place = place()?;
    let log = File::create(&place.log)?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg("standby")
        .env(KEY_VARIABLE, &place.key)
        // A folder without an evcxr.toml, which evcxr would read at start.
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe: the standby leaves the kernel's session and
    // process group, which Jupyter kills when this kernel ends.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    // Reaped here if it ends while this kernel lives (at once, when another standby is
    // there); adopted by init otherwise.
    std::thread::Builder::new()
        .name("standby-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}

/// Waits until a standby for this program, configuration and environment is ready;
/// returns its pid, or `None` when none became ready within `limit`.
pub fn wait_until_ready(limit: Duration) -> Option<i32> {
    let place = place().ok()?;
    let started = Instant::now();
    while started.elapsed() < limit {
        // A probe that sends nothing: the standby reads an empty request and goes on
        // waiting.
        if UnixStream::connect(&place.socket).is_ok() {
            if let Some(pid) = holder_of(&place.lock) {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Ends every standby of this user on this machine; returns how many there were.
pub fn stop_all() -> usize {
    let Ok(entries) = std::fs::read_dir(folder()) else {
        return 0;
    };
    let mut stopped = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "lock") {
            if let Some(pid) = holder_of(&path) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                stopped += 1;
            }
            let _ = std::fs::remove_file(path.with_extension("sock"));
        }
    }
    stopped
}

/// The pid of the standby holding `lock`, read from /proc/locks.
fn holder_of(lock: &Path) -> Option<i32> {
    let inode = std::fs::metadata(lock).ok()?.ino();
    let mut locks = String::new();
    File::open("/proc/locks")
        .ok()?
        .read_to_string(&mut locks)
        .ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": pid, then major:minor:inode.
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (pid, device_inode) = (fields.get(4)?, fields.get(5)?);
        let found: u64 = device_inode.rsplit(':').next()?.parse().ok()?;
        (fields.get(1) == Some(&"FLOCK") && found == inode).then(|| pid.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_variables_are_keyed_and_session_variables_are_not() {
        for name in [
            "PATH",
            "CARGO_HOME",
            "RUSTUP_TOOLCHAIN",
            "EVCXR_CONFIG_DIR",
            "CONCLAB_CRATE",
            "RUSTFLAGS",
        ] {
            assert!(keyed(name), "{name}");
        }
        for name in [
            "TMPDIR",
            "JPY_SESSION_NAME",
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            VARIABLE,
            IDLE_VARIABLE,
            "RUST_BACKTRACE",
        ] {
            assert!(!keyed(name), "{name}");
        }
    }
}
