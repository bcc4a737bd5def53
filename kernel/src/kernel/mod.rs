//! `conclab-kernel kernel`: a Jupyter kernel (messaging protocol 5.3) over evcxr's library.
//!
//! Threads, each owning its sockets (ZeroMQ sockets are not shared between threads):
//! - **shell** (the calling thread): requests, one at a time; it owns evcxr's
//!   `CommandContext` and the stdin socket, since evcxr asks for input on it mid-cell;
//! - **control**: `interrupt_request`, `shutdown_request`, `kernel_info_request`, so that
//!   an interrupt reaches a busy kernel;
//! - **iopub**: the only writer of the iopub socket, fed through a channel, so that
//!   everything published keeps the order in which it was sent;
//! - **output**: reads the relay's [`events`](events::Event) and publishes the cell's
//!   stdout and stderr as it comes (see [`relay`] for why a relay stands between);
//! - **heartbeat**, and one that waits for SIGINT.
//!
//! evcxr starts in the background while the sockets already answer: heartbeat and
//! control at once, shell's `kernel_info` once evcxr has loaded `init.evcxr` (clients
//! take that reply to mean the kernel is ready for cells).

mod course_crate;
pub mod events;
mod outcome;
mod quick_display;
pub mod relay;
pub mod standby;
mod transcript;

use crate::jupyter::wire::{Message, Session, WireError};
use events::Event;
use serde_json::{json, Value};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use transcript::{Stream, Transcript};

/// The kernelspec's variable that names the course crate's folder.
pub use course_crate::CRATE_VARIABLE as COURSE_CRATE_VARIABLE;
/// The evcxr release the kernel is built on (pinned in Cargo.lock).
pub const EVCXR_VERSION: &str = "0.22.0";
const PROTOCOL_VERSION: &str = "5.3";
/// How long the shell waits for the relay's events of a finished cell.
const SYNC_LIMIT: Duration = Duration::from_secs(5);
/// How long an interrupted cell process has to end on SIGINT before it gets SIGKILL.
const INTERRUPT_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read the connection file {path}: {reason}; Jupyter writes it when it starts a kernel, so start the kernel from Jupyter (or `conclab-kernel run`)")]
    ConnectionFile { path: PathBuf, reason: String },
    #[error("cannot listen on {endpoint}: {source}; another process may hold the port, so start the kernel again")]
    Bind {
        endpoint: String,
        source: zmq::Error,
    },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a kernel's connection file says.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConnectionInfo {
    pub ip: String,
    pub transport: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    #[serde(default)]
    pub key: String,
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
}

fn default_scheme() -> String {
    "hmac-sha256".into()
}

impl ConnectionInfo {
    pub fn read(path: &Path) -> Result<ConnectionInfo, ServerError> {
        let fail = |reason: String| ServerError::ConnectionFile {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
        let info: ConnectionInfo =
            serde_json::from_str(&text).map_err(|error| fail(error.to_string()))?;
        if !info.key.is_empty() && info.signature_scheme != "hmac-sha256" {
            return Err(fail(format!(
                "signature scheme {} is not supported; use hmac-sha256",
                info.signature_scheme
            )));
        }
        Ok(info)
    }

    fn endpoint(&self, port: u16) -> String {
        match self.transport.as_str() {
            "ipc" => format!("ipc://{}-{port}", self.ip),
            _ => format!("{}://{}:{port}", self.transport, self.ip),
        }
    }
}

/// One message for the iopub thread.
struct Publication {
    parent: Option<Value>,
    msg_type: &'static str,
    content: Value,
}

/// Sends to the iopub thread; cloned by every thread that publishes.
#[derive(Clone)]
struct Iopub(mpsc::Sender<Publication>);

impl Iopub {
    fn send(&self, parent: Option<&Value>, msg_type: &'static str, content: Value) {
        let _ = self.0.send(Publication {
            parent: parent.cloned(),
            msg_type,
            content,
        });
    }

    fn status(&self, parent: Option<&Value>, state: &str) {
        self.send(parent, "status", json!({ "execution_state": state }));
    }

    fn stream(&self, parent: Option<&Value>, stream: &Stream) {
        self.send(
            parent,
            "stream",
            json!({ "name": stream.name, "text": stream.text }),
        );
    }
}

/// State the threads share.
struct Shared {
    iopub: Iopub,
    /// The cell whose output is arriving: the header of its request, and its transcript.
    cell: Mutex<(Option<Value>, Transcript)>,
    /// The latest `Sync` id the output thread has passed.
    synced: (Mutex<u64>, Condvar),
    next_sync: AtomicU64,
    /// The kernel's own write end of the events pipe, for `Sync` frames.
    events_write: Mutex<File>,
    /// The pid of the cell process now running (0 before the relay reports it).
    cell_pid: AtomicU32,
    /// Set by an interrupt, read when the cell's process turns out to have ended.
    interrupted: AtomicBool,
    /// evcxr's handle on its subprocess (the relay), once evcxr is up.
    relay: Mutex<Option<Arc<Mutex<std::process::Child>>>>,
    /// A standby's line to the launcher it serves, told `bye` when the kernel ends.
    launcher: Mutex<Option<std::os::unix::net::UnixStream>>,
    /// Whether this kernel started as a standby, and so leads a process group of its own.
    is_standby: bool,
    /// Whether this kernel has started the standby for the next launch yet.
    next_standby: Mutex<NextStandby>,
    /// evcxr's build folder and this kernel's lock on it.
    _build: (PathBuf, File),
}

impl Shared {
    /// Waits until the output thread has published every event the relay sent so far.
    fn sync(&self) {
        let id = self.next_sync.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut file) = self.events_write.lock() {
            let _ = Event::Sync(id).write_to(&mut *file);
        }
        let (lock, condvar) = &self.synced;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = condvar.wait_timeout_while(guard, SYNC_LIMIT, |seen| *seen < id);
    }

    /// Stops the running cell: SIGINT to the cell process, SIGKILL if it lingers.
    fn interrupt(self: &Arc<Self>) {
        self.interrupted.store(true, Ordering::SeqCst);
        let pid = self.cell_pid.load(Ordering::SeqCst);
        if pid == 0 {
            return;
        }
        // SAFETY: kill(2) signals the cell process the relay reported; no memory is
        // involved. A pid reused in the meantime is not possible while the relay, its
        // parent, has not reaped it.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        let shared = Arc::clone(self);
        std::thread::spawn(move || {
            std::thread::sleep(INTERRUPT_GRACE);
            if shared.cell_pid.load(Ordering::SeqCst) == pid {
                // SAFETY: as above.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        });
    }

    /// Starts the standby for the next launch, once, if this kernel has been ready.
    fn start_standby_if_due(&self) {
        let mut next = self.next_standby.lock().unwrap_or_else(|p| p.into_inner());
        if let NextStandby::Due(_) = *next {
            standby::start_next();
            *next = NextStandby::Started;
        }
    }

    /// Ends the kernel: the cell process, then this process.
    fn exit(&self) -> ! {
        // A kernel that ended before it was ever idle leaves its standby now, when the
        // warm-up takes CPU from nobody.
        self.start_standby_if_due();
        if let Some(mut line) = self.launcher.lock().ok().and_then(|mut l| l.take()) {
            use std::io::Write;
            let _ = line.write_all(b"bye\n");
        }
        if let Some(relay) = self.relay.lock().ok().and_then(|r| r.clone()) {
            if let Ok(mut child) = relay.try_lock() {
                let _ = child.kill();
            }
        }
        let pid = self.cell_pid.load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: signals the cell process; see `interrupt`.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        if self.is_standby {
            // A standby leads its own process group, as Jupyter's launch would have: what
            // the cell processes forked ends with it, as Jupyter's kill of the group would
            // end it. This process is in the group too.
            // SAFETY: kill(2) of our own process group; no memory is involved.
            unsafe { libc::kill(0, libc::SIGKILL) };
        }
        std::process::exit(0);
    }
}

fn bind(
    context: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
) -> Result<zmq::Socket, ServerError> {
    let socket = context.socket(kind).map_err(|source| ServerError::Bind {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    socket.set_linger(1000).ok();
    socket.bind(endpoint).map_err(|source| ServerError::Bind {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    Ok(socket)
}

fn pipe() -> std::io::Result<(File, File)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe {
        Ok((
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        ))
    }
}

/// Runs the kernel until a client shuts it down.
///
/// A standby kernel takes the launch when one is ready ([`standby`]); this process then
/// only stands in for it. Otherwise the kernel starts here, with evcxr starting in the
/// background while the sockets already answer.
pub fn serve(connection_file: &Path) -> Result<(), ServerError> {
    let info = ConnectionInfo::read(connection_file)?;
    if let Some(handover) = standby::hand_over(connection_file) {
        eprintln!(
            "conclab kernel: served by a standby kernel (pid {}), started before this launch",
            handover.kernel_pid()
        );
        handover.watch();
    }
    // SIGINT is taken by a thread of its own; blocked before any thread starts, so every
    // thread inherits the mask. Children get a clean mask from std's spawn.
    let sigint = block_sigint();
    let sockets = Sockets::bind(&info)?;
    let core = Core::new(sigint, false)?;
    let (evcxr_tx, evcxr_rx) = mpsc::channel();
    {
        let (shared, events_write, build_dir) =
            (Arc::clone(&core.shared), core.events_write, core.build_dir);
        std::thread::Builder::new()
            .name("evcxr-start".into())
            .spawn(move || {
                let _ = evcxr_tx.send(start_evcxr(events_write, &build_dir, &shared));
            })?;
    }
    attach(
        sockets,
        &info.key,
        core.shared,
        core.publications,
        Pending::Starting(evcxr_rx),
    )
}

/// `conclab-kernel standby`: starts a kernel for the next launch and serves it once a
/// launcher hands it over (see [`standby`]). Returns at once when another standby is there.
pub fn standby() -> Result<(), ServerError> {
    let Some(claim) = standby::claim()? else {
        return Ok(());
    };
    let sigint = block_sigint();
    let core = Core::new(sigint, true)?;
    let warm_up = {
        let (shared, events_write, build_dir) =
            (Arc::clone(&core.shared), core.events_write, core.build_dir);
        standby::at_low_priority(move || start_evcxr(events_write, &build_dir, &shared))?
    };
    let mut context = match warm_up {
        Ok(context) => context,
        Err(error) => {
            eprintln!("conclab standby: {error}");
            core.shared.exit();
        }
    };
    let Some(launch) = claim.wait_for_launch()? else {
        eprintln!("conclab standby: not taken; ending");
        core.shared.exit();
    };
    let launched = launch.launcher();
    if let Err(error) = launch.adopt() {
        launch.refuse(&format!(
            "it could not move to the launch's folder: {error}"
        ));
        core.shared.exit();
    }
    ensure_cargo_on_path();
    // The cell process started in the standby's folder and environment: a new one
    // starts in the launch's. It holds no variables yet, so nothing is lost (evcxr's
    // `:restart` would keep the names of variables the old process held), and the crate
    // stays loaded (`:clear` would drop it).
    if let Err(error) = context.execute(":restart") {
        launch.refuse(&format!("its cell process did not restart: {error}"));
        core.shared.exit();
    }
    let info = match ConnectionInfo::read(&launch.connection_file()) {
        Ok(info) => info,
        Err(error) => {
            launch.refuse(&error.to_string());
            core.shared.exit();
        }
    };
    let sockets = match Sockets::bind(&info) {
        Ok(sockets) => sockets,
        Err(error) => {
            launch.refuse(&error.to_string());
            core.shared.exit();
        }
    };
    let line = launch.accept()?;
    eprintln!(
        "conclab kernel: a standby kernel (pid {}) serves the launch of pid {launched}",
        std::process::id()
    );
    {
        let shared = Arc::clone(&core.shared);
        let mut watched = line.try_clone()?;
        std::thread::Builder::new()
            .name("launcher-watch".into())
            .spawn(move || {
                // The launcher says nothing more: this read ends when it does.
                let _ = std::io::copy(&mut watched, &mut std::io::sink());
                shared.exit();
            })?;
    }
    *core
        .shared
        .launcher
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(line);
    standby::start_next();
    attach(
        sockets,
        &info.key,
        core.shared,
        core.publications,
        Pending::Ready(Box::new(context)),
    )
}

/// The five sockets of a connection file, bound.
struct Sockets {
    _context: zmq::Context,
    shell: zmq::Socket,
    control: zmq::Socket,
    stdin: zmq::Socket,
    iopub: zmq::Socket,
    heartbeat: zmq::Socket,
}

impl Sockets {
    fn bind(info: &ConnectionInfo) -> Result<Sockets, ServerError> {
        let context = zmq::Context::new();
        Ok(Sockets {
            shell: bind(&context, zmq::ROUTER, &info.endpoint(info.shell_port))?,
            control: bind(&context, zmq::ROUTER, &info.endpoint(info.control_port))?,
            stdin: bind(&context, zmq::ROUTER, &info.endpoint(info.stdin_port))?,
            iopub: bind(&context, zmq::PUB, &info.endpoint(info.iopub_port))?,
            heartbeat: bind(&context, zmq::REP, &info.endpoint(info.hb_port))?,
            _context: context,
        })
    }
}

/// What a kernel sets up before it has sockets: the shared state, the relay's events
/// and their reader, the build folder, and the thread that takes SIGINT.
struct Core {
    shared: Arc<Shared>,
    /// What the kernel publishes, queued until the iopub socket exists.
    publications: mpsc::Receiver<Publication>,
    events_write: File,
    build_dir: PathBuf,
}

impl Core {
    /// `is_standby`: this kernel is a standby, which leads a process group of its own.
    fn new(sigint: libc::sigset_t, is_standby: bool) -> Result<Core, ServerError> {
        let (iopub_tx, publications) = mpsc::channel::<Publication>();
        let (events_read, events_write) = pipe()?;
        let (build_dir, build_lock) = take_build_slot()?;
        let shared = Arc::new(Shared {
            iopub: Iopub(iopub_tx),
            cell: Mutex::new((None, Transcript::new())),
            synced: (Mutex::new(0), Condvar::new()),
            next_sync: AtomicU64::new(0),
            events_write: Mutex::new(events_write.try_clone()?),
            cell_pid: AtomicU32::new(0),
            interrupted: AtomicBool::new(false),
            relay: Mutex::new(None),
            launcher: Mutex::new(None),
            is_standby,
            next_standby: Mutex::new(NextStandby::NotYet),
            _build: (build_dir.clone(), build_lock),
        });
        {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("output".into())
                .spawn(move || output_loop(events_read, &shared))?;
        }
        {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sigint".into())
                .spawn(move || loop {
                    if wait_for_sigint(&sigint) {
                        shared.interrupt();
                    }
                })?;
        }
        Ok(Core {
            shared,
            publications,
            events_write,
            build_dir,
        })
    }
}

/// Serves the sockets: iopub, heartbeat and control on threads of their own, shell on
/// this one, until a client shuts the kernel down.
fn attach(
    sockets: Sockets,
    key: &str,
    shared: Arc<Shared>,
    publications: mpsc::Receiver<Publication>,
    evcxr: Pending,
) -> Result<(), ServerError> {
    let session = Arc::new(Session::new(key));
    let Sockets {
        shell,
        control,
        stdin,
        iopub,
        heartbeat,
        // Each socket keeps the context alive.
        _context: _,
    } = sockets;
    {
        let session = Arc::clone(&session);
        std::thread::Builder::new()
            .name("iopub".into())
            .spawn(move || {
                for publication in publications {
                    let _ = session.publish(
                        &iopub,
                        publication.parent.as_ref(),
                        publication.msg_type,
                        &publication.content,
                    );
                }
            })?;
    }
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            while let Ok(ping) = heartbeat.recv_bytes(0) {
                if heartbeat.send(ping, 0).is_err() {
                    break;
                }
            }
        })?;
    {
        let shared = Arc::clone(&shared);
        let session = Arc::clone(&session);
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control_loop(&control, &session, &shared))?;
    }
    let mut shell_state = ShellState {
        session,
        shared,
        shell,
        stdin,
        evcxr,
        execution_count: 0,
    };
    shell_state.run()
}

/// Where the kernels' build folders live: outside any repository (cargo would take a
/// build folder inside one for a workspace member) and outside the home folder that holds
/// `~/.rustup` (see `kernel/evcxr/README.md` on rpaths).
fn slots_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONCLAB_BUILD_SLOTS") {
        return PathBuf::from(dir);
    }
    crate::setup::machine_dir().join("build-slots")
}

/// Takes a build folder no other kernel is using, and keeps it for this kernel's life.
///
/// The folders outlive the kernels on purpose. A new kernel's first build is most of its
/// start, and in a folder an earlier kernel left, cargo finds the support crate and its
/// dependencies fresh and compiles only the cell. Each kernel holds an exclusive lock on
/// its folder, which the system releases however the kernel ends.
fn take_build_slot() -> std::io::Result<(PathBuf, File)> {
    let base = slots_dir();
    for slot in 0.. {
        let dir = base.join(slot.to_string());
        std::fs::create_dir_all(&dir)?;
        let lock = File::create(dir.join(".lock"))?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok((dir, lock));
        }
    }
    unreachable!("the slot numbers do not run out")
}

type Evcxr = evcxr::CommandContext;

enum Pending {
    Starting(mpsc::Receiver<Result<Evcxr, String>>),
    Ready(Box<Evcxr>),
    Failed(String),
}

impl Pending {
    fn ready(&mut self) -> Result<&mut Evcxr, String> {
        if let Pending::Starting(receiver) = self {
            *self = match receiver.recv() {
                Ok(Ok(context)) => Pending::Ready(Box::new(context)),
                Ok(Err(error)) => Pending::Failed(error),
                Err(_) => Pending::Failed("evcxr's start-up thread died".into()),
            };
        }
        match self {
            Pending::Ready(context) => Ok(context),
            Pending::Failed(error) => Err(error.clone()),
            Pending::Starting(_) => unreachable!("resolved above"),
        }
    }
}

/// Starts evcxr with the relay as its subprocess and runs the kernel's `init.evcxr`.
fn start_evcxr(
    events_write: File,
    build_dir: &Path,
    shared: &Arc<Shared>,
) -> Result<Evcxr, String> {
    // evcxr finds cargo on PATH; a kernel started by a desktop launcher may lack
    // ~/.cargo/bin there.
    ensure_cargo_on_path();
    let clock = std::time::Instant::now();
    let trace = |what: &str| {
        if tracing() {
            eprintln!(
                "[conclab kernel {:>7.3} s] {what}",
                clock.elapsed().as_secs_f64()
            );
        }
    };
    // SAFETY: set before evcxr reads it, and no other thread reads the environment
    // concurrently: the other threads only do socket and pipe I/O.
    unsafe { std::env::set_var("EVCXR_TMPDIR", build_dir) };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut command = std::process::Command::new(exe);
    command.env(relay::RELAY_FD_ENV, relay::RELAY_FD.to_string());
    // Never closed: evcxr runs this hook again each time it restarts its subprocess.
    let fd = events_write.into_raw_fd();
    // SAFETY: dup2 is async-signal-safe, and `fd` stays open for the kernel's whole life.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(fd, relay::RELAY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (eval, outputs) = evcxr::EvalContext::with_subprocess_command(command)
        .map_err(|e| format!("evcxr did not start: {e}"))?;
    // The relay sends the cell's output through the events pipe; what evcxr still
    // forwards is the relay's own trouble, for the kernel's log.
    for (name, channel) in [("stdout", outputs.stdout), ("stderr", outputs.stderr)] {
        std::thread::Builder::new()
            .name(format!("evcxr-{name}"))
            .spawn(move || {
                for line in channel {
                    eprintln!("[evcxr {name}] {line}");
                }
            })
            .map_err(|e| e.to_string())?;
    }
    trace("evcxr's context is up (it built and ran `42`)");
    let mut context = evcxr::CommandContext::with_eval_context(eval);
    *shared.relay.lock().unwrap_or_else(|p| p.into_inner()) = Some(context.process_handle());
    context
        .execute(":load_config")
        .map_err(|e| format!("the kernel's init.evcxr failed: {e}"))?;
    trace("init.evcxr done");
    if let Err(error) = context.execute(quick_display::ITEM) {
        // Only speed is lost: evcxr's own way of showing values still works.
        eprintln!("conclab kernel: the quick display of plain values is off: {error}");
    }
    trace("quick display defined");
    // rust-analyzer infers the type of every variable a cell defines, and its first
    // inference costs seconds. A completion after a `let` makes it infer one, with
    // nothing compiled and no variable left behind.
    let warm_up = "let conclab_warm_up = 40;\nconclab_warm_up.";
    let _ = context.completions(warm_up, warm_up.len());
    trace("rust-analyzer has inferred a first variable's type");
    Ok(context)
}

/// Whether the kernel writes timings to its log (`CONCLAB_KERNEL_TRACE` set).
fn tracing() -> bool {
    std::env::var_os("CONCLAB_KERNEL_TRACE").is_some()
}

fn ensure_cargo_on_path() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join("cargo").is_file()) {
        return;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(bin) = home.map(|h| h.join("bin")) {
        let mut dirs: Vec<PathBuf> = vec![bin];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            // SAFETY: see `start_evcxr`: called there before evcxr reads the environment.
            unsafe { std::env::set_var("PATH", joined) };
        }
    }
}

fn output_loop(mut events: File, shared: &Shared) {
    loop {
        let holding = shared
            .cell
            .lock()
            .map(|cell| cell.1.is_holding())
            .unwrap_or(false);
        if holding && !readable_within(&events, transcript::HOLD) {
            let mut cell = shared.cell.lock().unwrap_or_else(|p| p.into_inner());
            let mut shown = Vec::new();
            cell.1.release(&mut shown);
            publish_streams(shared, cell.0.as_ref(), &shown);
            continue;
        }
        let event = match Event::read_from(&mut events) {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(error) => {
                eprintln!("conclab kernel: the relay's output is unreadable ({error}); output of later cells is lost");
                return;
            }
        };
        match event {
            Event::Sync(id) => {
                let (lock, condvar) = &shared.synced;
                *lock.lock().unwrap_or_else(|p| p.into_inner()) = id;
                condvar.notify_all();
            }
            Event::Started(pid) => shared.cell_pid.store(pid, Ordering::SeqCst),
            event => {
                if matches!(event, Event::Exited(_)) {
                    shared.cell_pid.store(0, Ordering::SeqCst);
                }
                let mut cell = shared.cell.lock().unwrap_or_else(|p| p.into_inner());
                let shown = cell.1.take(event);
                publish_streams(shared, cell.0.as_ref(), &shown);
            }
        }
    }
}

fn publish_streams(shared: &Shared, parent: Option<&Value>, shown: &[Stream]) {
    for stream in shown {
        match parent {
            Some(parent) => shared.iopub.stream(Some(parent), stream),
            // Before the first cell: evcxr's start-up and init.evcxr. Kept for the log.
            None => eprint!("{}", stream.text),
        }
    }
}

/// Whether `source` has something to read within `timeout`.
fn readable_within(source: &impl AsRawFd, timeout: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: source.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) > 0 }
}

fn block_sigint() -> libc::sigset_t {
    // SAFETY: sigset operations on a local set, then the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_sigint(set: &libc::sigset_t) -> bool {
    let mut signal = 0;
    // SAFETY: sigwait on a set that holds only SIGINT, blocked in every thread.
    unsafe { libc::sigwait(set, &mut signal) == 0 && signal == libc::SIGINT }
}

fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "conclab",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "Rust",
            "version": rustc_version(),
            "mimetype": "text/rust",
            "file_extension": ".rs",
            "pygments_lexer": "rust",
            "codemirror_mode": "rust",
        },
        "banner": format!(
            "conclab {} on evcxr {EVCXR_VERSION}: Rust cells, every failure an error in its own cell",
            env!("CARGO_PKG_VERSION")
        ),
        "evcxr_version": EVCXR_VERSION,
        "help_links": [
            {"text": "Rust standard library", "url": "https://doc.rust-lang.org/std/"},
            {"text": "evcxr", "url": "https://github.com/evcxr/evcxr"},
        ],
    })
}

fn rustc_version() -> String {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            std::process::Command::new("rustc")
                .arg("--version")
                .output()
                .ok()
                .and_then(|out| String::from_utf8(out.stdout).ok())
                .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
                .unwrap_or_default()
        })
        .clone()
}

fn control_loop(control: &zmq::Socket, session: &Session, shared: &Arc<Shared>) {
    loop {
        let request = match session.recv(control) {
            Ok(request) => request,
            Err(WireError::Zmq(_)) => return,
            Err(error) => {
                eprintln!("conclab kernel: control message dropped: {error}");
                continue;
            }
        };
        let parent = Some(&request.raw_header);
        match request.msg_type() {
            "interrupt_request" => {
                shared.interrupt();
                let _ = session.reply(
                    control,
                    &request,
                    "interrupt_reply",
                    &json!({"status": "ok"}),
                );
            }
            "shutdown_request" => {
                let restart = request.content["restart"].as_bool().unwrap_or(false);
                let _ = session.reply(
                    control,
                    &request,
                    "shutdown_reply",
                    &json!({"status": "ok", "restart": restart}),
                );
                shared.iopub.status(parent, "dead");
                std::thread::sleep(Duration::from_millis(100));
                shared.exit();
            }
            "kernel_info_request" => {
                shared.iopub.status(parent, "busy");
                let _ = session.reply(control, &request, "kernel_info_reply", &kernel_info());
                shared.iopub.status(parent, "idle");
            }
            other => {
                let reply = other.replace("_request", "_reply");
                let _ = session.reply(
                    control,
                    &request,
                    &reply,
                    &json!({"status": "error", "ename": "NotSupported", "evalue": format!("{other} is not handled on the control channel"), "traceback": []}),
                );
            }
        }
    }
}

struct ShellState {
    session: Arc<Session>,
    shared: Arc<Shared>,
    shell: zmq::Socket,
    stdin: zmq::Socket,
    evcxr: Pending,
    execution_count: u64,
}

/// When this kernel starts the standby for the next launch: once it is ready and idle,
/// so that the standby's warm-up does not compete with the cells a user is waiting for.
#[derive(Clone, Copy)]
enum NextStandby {
    NotYet,
    /// Ready since then; started at the first idle pause, or after a while regardless.
    Due(std::time::Instant),
    Started,
}

/// The pause in requests after which the next standby starts.
const STANDBY_AFTER_IDLE: Duration = Duration::from_secs(2);
/// A kernel busy for this long starts it anyway (a runner sends cell after cell).
const STANDBY_AFTER_BUSY: Duration = Duration::from_secs(20);

impl ShellState {
    fn run(&mut self) -> Result<(), ServerError> {
        loop {
            self.start_standby_when_due();
            let request = match self.session.recv(&self.shell) {
                Ok(request) => request,
                Err(WireError::Zmq(error)) => return Err(WireError::Zmq(error).into()),
                Err(error) => {
                    eprintln!("conclab kernel: shell message dropped: {error}");
                    continue;
                }
            };
            let failed = self.handle(&request);
            let stop_on_error = request.content["stop_on_error"].as_bool().unwrap_or(true);
            if failed && stop_on_error {
                self.abort_queued();
            }
        }
    }

    /// The evcxr context, waiting for it to finish starting if need be.
    fn evcxr(&mut self) -> Result<&mut Evcxr, String> {
        let context = self.evcxr.ready()?;
        let mut next = self
            .shared
            .next_standby
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let NextStandby::NotYet = *next {
            *next = NextStandby::Due(std::time::Instant::now());
        }
        Ok(context)
    }

    fn start_standby_when_due(&mut self) {
        let due = *self
            .shared
            .next_standby
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let NextStandby::Due(since) = due else {
            return;
        };
        let idle_for = if since.elapsed() >= STANDBY_AFTER_BUSY {
            Duration::ZERO
        } else {
            STANDBY_AFTER_IDLE
        };
        let idle = self
            .shell
            .poll(zmq::POLLIN, idle_for.as_millis() as i64)
            .is_ok_and(|ready| ready == 0);
        if idle || since.elapsed() >= STANDBY_AFTER_BUSY {
            self.shared.start_standby_if_due();
        }
    }

    fn reply(&self, request: &Message, content: Value) {
        let msg_type = request.msg_type().replace("_request", "_reply");
        let _ = self
            .session
            .reply(&self.shell, request, &msg_type, &content);
    }

    /// Handles one request between `busy` and `idle`; returns whether an execution failed.
    fn handle(&mut self, request: &Message) -> bool {
        let parent = request.raw_header.clone();
        self.shared.iopub.status(Some(&parent), "busy");
        let mut failed = false;
        match request.msg_type() {
            "kernel_info_request" => {
                // Clients take this reply on shell to mean "ready for cells" and time
                // their start-up timeout, not a cell's, against it: so it waits for
                // evcxr (the control channel answers at once).
                let _ = self.evcxr();
                self.reply(request, kernel_info())
            }
            "execute_request" => failed = self.execute(request),
            "complete_request" => {
                let content = self.complete(request);
                self.reply(request, content);
            }
            "inspect_request" => {
                let content = self.inspect(request);
                self.reply(request, content);
            }
            "is_complete_request" => {
                let code = request.content["code"].as_str().unwrap_or("");
                self.reply(request, is_complete(code));
            }
            "comm_info_request" => self.reply(request, json!({"status": "ok", "comms": {}})),
            "history_request" => self.reply(request, json!({"status": "ok", "history": []})),
            "comm_open" => {
                // No comm targets: close it, as the protocol asks.
                let comm_id = request.content["comm_id"].clone();
                self.shared.iopub.send(
                    Some(&parent),
                    "comm_close",
                    json!({"comm_id": comm_id, "data": {}}),
                );
            }
            "comm_msg" | "comm_close" => {}
            "shutdown_request" => {
                let restart = request.content["restart"].as_bool().unwrap_or(false);
                self.reply(request, json!({"status": "ok", "restart": restart}));
                self.shared.iopub.status(Some(&parent), "dead");
                std::thread::sleep(Duration::from_millis(100));
                self.shared.exit();
            }
            other => eprintln!("conclab kernel: unknown shell message {other}"),
        }
        self.shared.iopub.status(Some(&parent), "idle");
        failed
    }

    /// After a failed cell, answers every execution already queued with `aborted`, as
    /// Jupyter kernels do: Run All stops at the failing cell.
    fn abort_queued(&mut self) {
        while self.shell.poll(zmq::POLLIN, 20).unwrap_or(0) > 0 {
            let Ok(request) = self.session.recv(&self.shell) else {
                continue;
            };
            if request.msg_type() == "execute_request" {
                let parent = request.raw_header.clone();
                self.shared.iopub.status(Some(&parent), "busy");
                // No execution count, as ipykernel sends none: JupyterLab shows the
                // reply's count in the cell's prompt, and an aborted cell never ran.
                self.reply(&request, json!({"status": "aborted"}));
                self.shared.iopub.status(Some(&parent), "idle");
            } else {
                self.handle(&request);
            }
        }
    }

    fn execute(&mut self, request: &Message) -> bool {
        let parent = request.raw_header.clone();
        let code = request.content["code"].as_str().unwrap_or("").to_owned();
        let silent = request.content["silent"].as_bool().unwrap_or(false);
        let store_history = request.content["store_history"]
            .as_bool()
            .unwrap_or(!silent);
        if store_history && !silent {
            self.execution_count += 1;
        }
        let count = self.execution_count;
        if !silent {
            self.shared.iopub.send(
                Some(&parent),
                "execute_input",
                json!({"code": code, "execution_count": count}),
            );
        }
        let allow_stdin = request.content["allow_stdin"].as_bool().unwrap_or(false);
        let error = self.run_cell(request, &code, allow_stdin, count, silent);
        match error {
            None => {
                self.reply(
                    request,
                    json!({"status": "ok", "execution_count": count, "user_expressions": {}, "payload": []}),
                );
                false
            }
            Some(error) => {
                self.shared
                    .iopub
                    .send(Some(&parent), "error", error.content());
                let mut content = error.content();
                content["status"] = json!("error");
                content["execution_count"] = json!(count);
                self.reply(request, content);
                true
            }
        }
    }

    /// Runs one cell; publishes its output and result; returns its error, if any.
    fn run_cell(
        &mut self,
        request: &Message,
        code: &str,
        allow_stdin: bool,
        count: u64,
        silent: bool,
    ) -> Option<outcome::CellError> {
        let parent = request.raw_header.clone();
        {
            let mut cell = self.shared.cell.lock().unwrap_or_else(|p| p.into_inner());
            *cell = (Some(parent.clone()), Transcript::new());
        }
        self.shared.interrupted.store(false, Ordering::SeqCst);
        let session = Arc::clone(&self.session);
        let stdin = &self.stdin;
        let shared = Arc::clone(&self.shared);
        let context = match self.evcxr.ready() {
            Ok(context) => context,
            Err(error) => {
                return Some(outcome::CellError {
                    ename: "KernelStartFailed".into(),
                    evalue: error.clone(),
                    traceback: vec![
                        error,
                        "Restart the kernel after fixing the cause (run `conclab-kernel setup`)."
                            .into(),
                    ],
                })
            }
        };
        let variables: Vec<String> = context
            .variables_and_types()
            .map(|(name, _)| name.to_owned())
            // The kernel's own, from init.evcxr.
            .filter(|name| !name.starts_with("_conclab"))
            .collect();
        let (code_to_run, replaced) = course_crate::point_at_course_crate(
            code,
            &std::env::current_dir().unwrap_or_default(),
            course_crate::from_environment().as_deref(),
        );
        for path in replaced {
            // To the kernel's log (the Jupyter server's terminal), not the notebook.
            eprintln!("conclab-kernel: `:dep conclab` path {path:?} holds no crate here; loading the course crate from ${COURSE_CRATE_VARIABLE}");
        }
        let clock = std::time::Instant::now();
        let result = context.execute_with_callbacks(
            &with_flush(&code_to_run),
            &mut evcxr::EvalCallbacks {
                input_reader: &|input| {
                    if !allow_stdin {
                        return String::new();
                    }
                    ask_for_input(&session, stdin, request, &input.prompt, input.is_password)
                        .unwrap_or_default()
                },
            },
        );
        if tracing() {
            let phases: Vec<String> = match &result {
                Ok(outputs) => outputs
                    .phases
                    .iter()
                    .map(|phase| format!("{} {:.3} s", phase.name, phase.duration.as_secs_f64()))
                    .collect(),
                Err(_) => vec!["failed".into()],
            };
            eprintln!(
                "[conclab kernel] cell {count}: evcxr took {:.3} s ({})",
                clock.elapsed().as_secs_f64(),
                phases.join(", ")
            );
        }
        shared.sync();
        let (ending, rest) = {
            let mut cell = shared.cell.lock().unwrap_or_else(|p| p.into_inner());
            // Later output (a thread still printing) stays with this cell.
            std::mem::take(&mut cell.1).finish()
        };
        publish_streams(&shared, Some(&parent), &rest);
        let interrupted = shared.interrupted.swap(false, Ordering::SeqCst);
        let error = match result {
            Ok(outputs) => {
                if !silent && !outputs.content_by_mime_type.is_empty() {
                    shared.iopub.send(
                        Some(&parent),
                        "execute_result",
                        json!({
                            "execution_count": count,
                            "data": outcome::bundle(outputs.content_by_mime_type),
                            "metadata": {},
                        }),
                    );
                }
                let generated = context.last_source().ok();
                outcome::after_run(&ending, code, generated.as_deref())
            }
            Err(evcxr::Error::CompilationErrors(errors)) => {
                Some(outcome::compile_errors(&errors, code))
            }
            Err(evcxr::Error::SubprocessTerminated(message)) => Some(outcome::process_ended(
                interrupted,
                ending.exited.as_deref(),
                &variables,
                &message,
            )),
            Err(other) => Some(outcome::other(&other)),
        };
        if quick_display::changes_format(&code_to_run) {
            // Showing values is evcxr's alone again, in the format the cell chose.
            if let Err(error) = context.execute(quick_display::OFF) {
                eprintln!("conclab kernel: the quick display did not turn off: {error}");
            }
        }
        error
    }

    fn complete(&mut self, request: &Message) -> Value {
        let code = request.content["code"].as_str().unwrap_or("").to_owned();
        let cursor = request.content["cursor_pos"].as_u64().unwrap_or(0) as usize;
        let offset = char_to_byte(&code, cursor);
        let context = match self.evcxr() {
            Ok(context) => context,
            Err(error) => {
                return json!({"status": "error", "ename": "KernelStartFailed", "evalue": error, "traceback": []})
            }
        };
        match context.completions(&code, offset) {
            Ok(completions) => {
                let start = byte_to_char(&code, completions.start_offset);
                let end = byte_to_char(&code, completions.end_offset);
                let matches: Vec<&str> = completions
                    .completions
                    .iter()
                    .map(|c| c.code.as_str())
                    .collect();
                let types: Vec<Value> = completions
                    .completions
                    .iter()
                    .map(|c| json!({"text": c.code, "type": c.kind, "start": start, "end": end, "signature": c.label}))
                    .collect();
                json!({
                    "status": "ok",
                    "matches": matches,
                    "cursor_start": start,
                    "cursor_end": end,
                    "metadata": {"_jupyter_types_experimental": types},
                })
            }
            Err(error) => {
                json!({"status": "error", "ename": "CompletionFailed", "evalue": error.to_string(), "traceback": []})
            }
        }
    }

    fn inspect(&mut self, request: &Message) -> Value {
        let code = request.content["code"].as_str().unwrap_or("").to_owned();
        let cursor = request.content["cursor_pos"].as_u64().unwrap_or(0) as usize;
        let offset = char_to_byte(&code, cursor);
        let not_found = json!({"status": "ok", "found": false, "data": {}, "metadata": {}});
        let Ok(context) = self.evcxr() else {
            return not_found;
        };
        match context.hover_at(&code, offset) {
            Ok((plain, _)) if plain == "No documentation found" => not_found,
            Ok((plain, html)) => json!({
                "status": "ok",
                "found": true,
                "data": {"text/plain": plain, "text/html": html},
                "metadata": {},
            }),
            Err(_) => not_found,
        }
    }
}

/// Asks the client for a line of input on the stdin channel.
fn ask_for_input(
    session: &Session,
    stdin: &zmq::Socket,
    request: &Message,
    prompt: &str,
    password: bool,
) -> Option<String> {
    session
        .reply(
            stdin,
            request,
            "input_request",
            &json!({"prompt": prompt, "password": password}),
        )
        .ok()?;
    loop {
        let answer = session.recv(stdin).ok()?;
        if answer.msg_type() == "input_reply" {
            return answer.content["value"].as_str().map(str::to_owned);
        }
    }
}

/// The cell with a flush of its stdout appended, when that changes nothing else.
///
/// Each cell links its own copy of std, whose stdout keeps a `print!` without a newline
/// in its buffer, and no later cell can flush that copy: the text would never show. A
/// cell that ends in a statement gets the flush as one more statement on a line of its
/// own (its other lines keep their numbers). A cell ending in an expression, whose value
/// evcxr displays, or in a command, is left as it is.
fn with_flush(code: &str) -> String {
    let trimmed = code.trim_end();
    let last_line = trimmed.lines().last().unwrap_or("").trim_start();
    if trimmed.ends_with(';') && !last_line.starts_with(':') && !last_line.starts_with("//") {
        format!("{trimmed}\n::std::io::Write::flush(&mut ::std::io::stdout()).ok();")
    } else {
        code.to_owned()
    }
}

/// Jupyter counts cursor positions in Unicode code points.
fn char_to_byte(code: &str, chars: usize) -> usize {
    code.char_indices()
        .nth(chars)
        .map(|(byte, _)| byte)
        .unwrap_or(code.len())
}

fn byte_to_char(code: &str, byte: usize) -> usize {
    code[..byte.min(code.len())].chars().count()
}

/// Whether `code` is a whole cell or wants more lines (an open bracket, string or
/// block comment): what a console asks before it runs what was typed.
fn is_complete(code: &str) -> Value {
    let mut depth: i64 = 0;
    let mut chars = code.chars().peekable();
    let mut in_string = false;
    let mut block_comments = 0;
    while let Some(c) = chars.next() {
        if block_comments > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block_comments -= 1;
            }
            continue;
        }
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                block_comments += 1;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    if depth < 0 {
        json!({"status": "invalid"})
    } else if depth > 0 || in_string || block_comments > 0 {
        json!({"status": "incomplete", "indent": "    ".repeat(depth.max(0) as usize)})
    } else {
        json!({"status": "complete"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_brackets_ask_for_more_lines() {
        assert_eq!(is_complete("let x = 1;")["status"], "complete");
        assert_eq!(is_complete("fn f() {")["status"], "incomplete");
        assert_eq!(is_complete("let s = \"{\";")["status"], "complete");
        assert_eq!(is_complete("// {\nlet x = 1;")["status"], "complete");
        assert_eq!(is_complete("}")["status"], "invalid");
    }

    #[test]
    fn statements_get_a_flush_and_expressions_keep_their_value() {
        assert_eq!(
            with_flush("print!(\"x\");"),
            "print!(\"x\");\n::std::io::Write::flush(&mut ::std::io::stdout()).ok();"
        );
        assert_eq!(with_flush("1 + 1"), "1 + 1");
        assert_eq!(with_flush(":dep x = \"1\";"), ":dep x = \"1\";");
        assert_eq!(with_flush("fn f() {}"), "fn f() {}");
    }

    #[test]
    fn cursor_positions_are_code_points() {
        let code = "let é = 1;";
        assert_eq!(char_to_byte(code, 5), 6);
        assert_eq!(byte_to_char(code, 6), 5);
        assert_eq!(char_to_byte(code, 100), code.len());
    }

    #[test]
    fn connection_files_are_read_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel.json");
        std::fs::write(&path, r#"{"ip": "127.0.0.1", "transport": "tcp", "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": "k", "signature_scheme": "hmac-sha256"}"#).unwrap();
        let info = ConnectionInfo::read(&path).unwrap();
        assert_eq!(info.endpoint(info.shell_port), "tcp://127.0.0.1:1");
        let missing = ConnectionInfo::read(&dir.path().join("nope.json")).unwrap_err();
        assert!(missing.to_string().contains("nope.json"), "{missing}");
    }
}
