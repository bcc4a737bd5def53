//! A running Jupyter kernel and the client side of its five channels.
//!
//! The kernel is started from its kernelspec with a connection file we write (random free
//! ports on 127.0.0.1, a random HMAC key), in a process group of its own so that it and
//! everything it forks can be killed together.

use crate::jupyter::kernelspec::InstalledKernel;
use crate::jupyter::wire::{Message, Session, WireError};
use crate::sandbox::Sandbox;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long to keep listening after a cell's `idle` for output that is still on its way
/// (stock evcxr forwards the subprocess's stderr on a thread, so a panic message can trail
/// the reply): the cell is done once iopub has been quiet this long... A conclab kernel
/// publishes all of a cell's output before its `idle`, so the runner does not wait.
const QUIET: Duration = Duration::from_millis(150);
/// ...or, for a cell whose threads keep printing, after this long at most.
const MAX_LINGER: Duration = Duration::from_secs(2);
/// A kernel that answers no heartbeat for this long is taken for dead.
const HEARTBEAT_LIMIT: Duration = Duration::from_secs(30);
const KERNEL_LOG_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot start kernel '{name}' ({program}) in {cwd}: {source}; check that the folder exists, or run `conclab-kernel setup` to reinstall the kernel")]
    Spawn {
        name: String,
        program: String,
        cwd: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel '{name}' exited during start-up ({status}); its last output:\n{log}")]
    DiedAtStart {
        name: String,
        status: String,
        log: String,
    },
    #[error(
        "kernel '{name}' did not answer kernel_info within {seconds} s; its last output:\n{log}"
    )]
    StartTimeout {
        name: String,
        seconds: u64,
        log: String,
    },
    #[error("cannot write {path}: {source}")]
    ConnectionFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find free ports on 127.0.0.1: {0}")]
    Ports(std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl From<zmq::Error> for ClientError {
    fn from(error: zmq::Error) -> Self {
        ClientError::Wire(error.into())
    }
}

/// What happened to one `execute_request`.
#[derive(Debug, Default)]
pub struct Execution {
    /// The `execute_reply` content, if one came.
    pub reply: Option<Value>,
    /// Every iopub message that answered the request, in arrival order.
    pub outputs: Vec<Message>,
    /// The cell ran past its time limit.
    pub timed_out: bool,
    /// The kernel process exited or stopped answering; it needs a restart.
    pub kernel_lost: Option<String>,
    /// The cell printed more than this many bytes; what came after was dropped.
    pub output_overflow: Option<usize>,
    pub elapsed: Duration,
}

/// How much of each kernel log line goes into an error message.
const LOG_LINE_CHARS: usize = 300;

/// The text of the kernel process's own stdout and stderr, newest last.
#[derive(Clone, Default)]
struct KernelLog(Arc<Mutex<VecDeque<u8>>>);

impl KernelLog {
    fn capture(&self, mut source: impl Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = source.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let mut log = log.0.lock().unwrap_or_else(|poison| poison.into_inner());
                log.extend(&buffer[..n]);
                while log.len() > KERNEL_LOG_BYTES {
                    log.pop_front();
                }
            }
        });
    }

    fn tail(&self, lines: usize) -> String {
        let log = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let bytes: Vec<u8> = log.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        // Cargo's JSON diagnostics come as single lines of many kilobytes; a reader
        // needs the start of each line, not all of it.
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|line| match line.char_indices().nth(LOG_LINE_CHARS) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None => (*line).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A kernel process and its sockets. Dropping it kills the kernel's process group.
pub struct Kernel {
    name: String,
    child: Child,
    session: Session,
    shell: zmq::Socket,
    iopub: zmq::Socket,
    control: zmq::Socket,
    heartbeat: zmq::Socket,
    /// When the heartbeat ping now in flight was sent.
    ping_sent: Option<Instant>,
    /// What the kernel said of its language in `kernel_info_reply`.
    language_info: Option<Value>,
    /// Whether the kernel is conclab's, which publishes every byte a cell printed before
    /// the cell's `idle` (its `kernel_info_reply` names the implementation `conclab`).
    output_before_idle: bool,
    connection_file: PathBuf,
    scratch: Option<PathBuf>,
    log: KernelLog,
    _context: zmq::Context,
}

impl Kernel {
    /// Starts `kernel` with `cwd` as its working directory and waits until it answers
    /// `kernel_info` and its iopub channel is live.
    pub fn start(
        kernel: &InstalledKernel,
        cwd: &Path,
        startup_timeout: Duration,
        sandbox: Option<&Sandbox>,
    ) -> Result<Kernel, ClientError> {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let ports = free_ports(5).map_err(ClientError::Ports)?;
        let connection = json!({
            "ip": "127.0.0.1",
            "transport": "tcp",
            "shell_port": ports[0],
            "iopub_port": ports[1],
            "stdin_port": ports[2],
            "control_port": ports[3],
            "hb_port": ports[4],
            "key": key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": kernel.name,
        });
        let connection_file =
            std::env::temp_dir().join(format!("conclab-kernel-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&connection_file, connection.to_string()).map_err(|source| {
            ClientError::ConnectionFile {
                path: connection_file.clone(),
                source,
            }
        })?;

        let argv: Vec<String> = kernel
            .spec
            .argv
            .iter()
            .map(|arg| arg.replace("{connection_file}", &connection_file.to_string_lossy()))
            .collect();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own session and process group, so that one signal reaches the kernel and
        // all it forked, and no terminal's signals reach it; in the sandbox's groups
        // before exec, so that nothing it forks escapes them.
        crate::sandbox::confine(&mut command, sandbox);
        if let Some(env) = &kernel.spec.env {
            command.envs(env);
        }
        // A scratch folder of its own below the kernelspec's TMPDIR (whose cargo config
        // it must see), removed with the kernel: a killed evcxr leaves its build folder.
        let scratch = kernel
            .spec
            .env
            .as_ref()
            .and_then(|env| env.get("TMPDIR"))
            .map(|tmp| PathBuf::from(tmp).join(format!("run-{}", uuid::Uuid::new_v4())));
        if let Some(scratch) = &scratch {
            std::fs::create_dir_all(scratch).map_err(|source| ClientError::ConnectionFile {
                path: scratch.clone(),
                source,
            })?;
            command.env("TMPDIR", scratch);
        }
        let mut child = command.spawn().map_err(|source| {
            let _ = std::fs::remove_file(&connection_file);
            ClientError::Spawn {
                name: kernel.name.clone(),
                program: argv[0].clone(),
                cwd: cwd.to_owned(),
                source,
            }
        })?;
        let log = KernelLog::default();
        if let Some(stdout) = child.stdout.take() {
            log.capture(stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            log.capture(stderr);
        }

        let context = zmq::Context::new();
        let url = |port: u16| format!("tcp://127.0.0.1:{port}");
        let socket = |kind: zmq::SocketType, port: u16| -> Result<zmq::Socket, zmq::Error> {
            let socket = context.socket(kind)?;
            socket.set_linger(0)?;
            socket.connect(&url(port))?;
            Ok(socket)
        };
        let shell = socket(zmq::DEALER, ports[0])?;
        let iopub = socket(zmq::SUB, ports[1])?;
        iopub.set_subscribe(b"")?;
        let control = socket(zmq::DEALER, ports[3])?;
        let heartbeat = socket(zmq::REQ, ports[4])?;

        let mut kernel = Kernel {
            name: kernel.name.clone(),
            child,
            session: Session::new(&key),
            shell,
            iopub,
            control,
            heartbeat,
            ping_sent: None,
            language_info: None,
            output_before_idle: false,
            connection_file,
            scratch,
            log,
            _context: context,
        };
        kernel.wait_ready(startup_timeout)?;
        Ok(kernel)
    }

    /// Sends `kernel_info_request`s until one is answered on shell *and* its status shows
    /// on iopub: only then will the first cell's outputs not be lost to a SUB socket that
    /// has not finished subscribing.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let start = Instant::now();
        let mut pending: Vec<String> = Vec::new();
        let mut last_sent: Option<Instant> = None;
        let mut replied = false;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(ClientError::DiedAtStart {
                    name: self.name.clone(),
                    status,
                    log: self.log.tail(40),
                });
            }
            if start.elapsed() > timeout {
                return Err(ClientError::StartTimeout {
                    name: self.name.clone(),
                    seconds: timeout.as_secs(),
                    log: self.log.tail(40),
                });
            }
            if last_sent.is_none_or(|at| at.elapsed() > Duration::from_millis(500)) {
                pending.push(
                    self.session
                        .send(&self.shell, "kernel_info_request", json!({}))?,
                );
                last_sent = Some(Instant::now());
            }
            self.poll(Duration::from_millis(100))?;
            while let Some(message) = self.session.try_recv(&self.shell)? {
                if message.msg_type() == "kernel_info_reply" {
                    replied = true;
                    self.language_info = Some(message.content["language_info"].clone());
                    self.output_before_idle = message.content["implementation"] == "conclab";
                }
            }
            while let Some(message) = self.session.try_recv(&self.iopub)? {
                let answers_ours = pending.iter().any(|id| message.is_child_of(id));
                if replied && answers_ours {
                    // Drain what is left of the start-up chatter, then we are ready.
                    std::thread::sleep(Duration::from_millis(50));
                    while self.session.try_recv(&self.shell)?.is_some() {}
                    while self.session.try_recv(&self.iopub)?.is_some() {}
                    return Ok(());
                }
            }
        }
    }

    /// Waits until shell or iopub has a message, or `timeout` passes.
    fn poll(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut items = [
            self.shell.as_poll_item(zmq::POLLIN),
            self.iopub.as_poll_item(zmq::POLLIN),
        ];
        zmq::poll(&mut items, timeout.as_millis() as i64)?;
        Ok(())
    }

    /// The kernel process's exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(error) => Some(format!("cannot be waited for: {error}")),
        }
    }

    /// Pings the heartbeat channel; returns false when a ping has gone unanswered for
    /// longer than [`HEARTBEAT_LIMIT`].
    fn heartbeat_ok(&mut self) -> bool {
        match self.ping_sent {
            Some(sent) => {
                if self.heartbeat.recv_bytes(zmq::DONTWAIT).is_ok() {
                    self.ping_sent = None;
                    true
                } else {
                    sent.elapsed() < HEARTBEAT_LIMIT
                }
            }
            None => {
                if self.heartbeat.send("ping", zmq::DONTWAIT).is_ok() {
                    self.ping_sent = Some(Instant::now());
                }
                true
            }
        }
    }

    /// Runs `code` and collects everything the kernel says about it, for at most `timeout`
    /// (start-up of the cell included). `on_output` sees each iopub message as it comes.
    pub fn execute(
        &mut self,
        code: &str,
        timeout: Duration,
        max_output: Option<usize>,
        mut on_output: impl FnMut(&Message),
    ) -> Result<Execution, ClientError> {
        let start = Instant::now();
        let msg_id = self.session.send(
            &self.shell,
            "execute_request",
            json!({
                "code": code,
                "silent": false,
                "store_history": true,
                "user_expressions": {},
                "allow_stdin": false,
                "stop_on_error": false,
            }),
        )?;
        let mut execution = Execution::default();
        let mut idle = false;
        let mut finished_at: Option<Instant> = None;
        let mut last_output = Instant::now();
        let mut output_bytes = 0usize;
        loop {
            self.poll(Duration::from_millis(50))?;
            while let Some(message) = self.session.try_recv(&self.shell)? {
                if message.is_child_of(&msg_id) && message.msg_type() == "execute_reply" {
                    execution.reply = Some(message.content);
                }
            }
            while let Some(message) = self.session.try_recv(&self.iopub)? {
                if !message.is_child_of(&msg_id) {
                    continue;
                }
                last_output = Instant::now();
                if message.msg_type() == "status" {
                    idle |= message.content["execution_state"] == "idle";
                    continue;
                }
                output_bytes += message.content.to_string().len();
                if max_output.is_some_and(|limit| output_bytes > limit) {
                    execution.output_overflow = max_output;
                    break;
                }
                on_output(&message);
                execution.outputs.push(message);
            }
            if execution.output_overflow.is_some() {
                break;
            }
            if idle && execution.reply.is_some() {
                let finished = *finished_at.get_or_insert_with(Instant::now);
                if self.output_before_idle
                    || last_output.elapsed() >= QUIET
                    || finished.elapsed() >= MAX_LINGER
                {
                    break;
                }
                continue;
            }
            if let Some(status) = self.exit_status() {
                execution.kernel_lost = Some(format!("the kernel process exited ({status})"));
                break;
            }
            if !self.heartbeat_ok() {
                execution.kernel_lost = Some(format!(
                    "the kernel stopped answering its heartbeat for {} s",
                    HEARTBEAT_LIMIT.as_secs()
                ));
                break;
            }
            if start.elapsed() >= timeout {
                execution.timed_out = true;
                break;
            }
        }
        // The cell's time ends with its reply and `idle`, not with the listening after.
        execution.elapsed = finished_at.unwrap_or_else(Instant::now) - start;
        Ok(execution)
    }

    /// Asks the kernel to interrupt the running cell (over control, as the kernelspec's
    /// `interrupt_mode: message` says) and waits up to `grace` for the cell to end.
    /// Returns false when the kernel did not come back: it must then be killed.
    pub fn interrupt(&mut self, grace: Duration) -> Result<bool, ClientError> {
        self.session
            .send(&self.control, "interrupt_request", json!({}))?;
        let start = Instant::now();
        let mut replied = false;
        let mut idle = false;
        while start.elapsed() < grace {
            if self.exit_status().is_some() {
                return Ok(false);
            }
            let mut items = [
                self.control.as_poll_item(zmq::POLLIN),
                self.shell.as_poll_item(zmq::POLLIN),
                self.iopub.as_poll_item(zmq::POLLIN),
            ];
            zmq::poll(&mut items, 50)?;
            while self.session.try_recv(&self.control)?.is_some() {}
            while let Some(message) = self.session.try_recv(&self.shell)? {
                replied |= message.msg_type() == "execute_reply";
            }
            while let Some(message) = self.session.try_recv(&self.iopub)? {
                idle |=
                    message.msg_type() == "status" && message.content["execution_state"] == "idle";
            }
            if replied && idle {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The `language_info` of the kernel's `kernel_info_reply`, which notebooks record.
    pub fn language_info(&self) -> Option<&Value> {
        self.language_info.as_ref()
    }

    /// The last lines the kernel process itself printed (for diagnostics).
    pub fn log_tail(&self, lines: usize) -> String {
        self.log.tail(lines)
    }

    /// Asks the kernel to shut down, then makes sure its whole process group is gone.
    pub fn shutdown(mut self) {
        if self.exit_status().is_none() {
            let _ = self
                .session
                .send(&self.control, "shutdown_request", json!({"restart": false}));
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) && self.exit_status().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Drop kills whatever is left of the group.
    }

    fn kill_group(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created for
        // the kernel; it touches no memory of ours.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.kill_group();
        let _ = std::fs::remove_file(&self.connection_file);
        if let Some(scratch) = &self.scratch {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// Asks the OS for `n` distinct free TCP ports on the loopback interface.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    // Hold all listeners until every port is chosen, so the OS cannot hand one out twice.
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(5).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 5);
    }

    #[test]
    fn kernel_log_lines_are_cut_to_a_readable_length() {
        let log = KernelLog::default();
        let long = "x".repeat(LOG_LINE_CHARS * 3);
        log.0
            .lock()
            .unwrap()
            .extend(format!("{long}\nshort\n").as_bytes());
        let tail = log.tail(2);
        let first = tail.lines().next().unwrap();
        assert_eq!(first.chars().count(), LOG_LINE_CHARS + 1, "{tail}");
        assert!(tail.ends_with("\nshort"));
    }

    #[test]
    fn kernel_log_keeps_the_tail() {
        let log = KernelLog::default();
        {
            let mut bytes = log.0.lock().unwrap();
            bytes.extend(b"one\ntwo\nthree\n");
        }
        assert_eq!(log.tail(2), "two\nthree");
    }
}
