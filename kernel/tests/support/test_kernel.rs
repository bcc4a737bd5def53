//! A kernel started as Jupyter starts one, and spoken to over the real protocol
//! (ZeroMQ, signed messages): the requests a test sends and what came back for each.
//! Shared (through `#[path]`) by the protocol and standby tests.
#![allow(dead_code)]

#[path = "paths.rs"]
mod paths;

use conclab_kernel::jupyter::wire::{Message, Session};
pub use paths::{free_ports, repo};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a kernel may take to start (it builds its first cells then).
pub const START_LIMIT: Duration = Duration::from_secs(180);
/// After `idle`, output of the same cell must not arrive for at least this long.
pub const AFTER_IDLE: Duration = Duration::from_millis(600);

pub struct TestKernel {
    pub child: Child,
    pub session: Session,
    pub shell: zmq::Socket,
    pub control: zmq::Socket,
    pub iopub: zmq::Socket,
    pub heartbeat: zmq::Socket,
    _context: zmq::Context,
    scratch: PathBuf,
    /// Messages that answered another request than the one being collected.
    stash: Vec<(bool, Message)>,
}

/// What one request produced: its reply, and its iopub messages up to `idle`, then any
/// that came after `idle` (which must be none).
pub struct Answer {
    pub reply: Value,
    pub before_idle: Vec<Message>,
    pub after_idle: Vec<Message>,
}

impl Answer {
    pub fn text(&self, stream: &str) -> String {
        self.before_idle
            .iter()
            .filter(|m| m.msg_type() == "stream" && m.content["name"] == stream)
            .map(|m| m.content["text"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// The data bundle of the `execute_result` published before idle.
    pub fn result(&self) -> Option<&Value> {
        self.before_idle
            .iter()
            .find(|m| m.msg_type() == "execute_result")
            .map(|m| &m.content["data"])
    }

    pub fn error_output(&self) -> Option<&Value> {
        self.before_idle
            .iter()
            .find(|m| m.msg_type() == "error")
            .map(|m| &m.content)
    }

    /// The reply is an error of kind `ename`, and the same error was published before idle.
    pub fn assert_error(&self, ename: &str) -> String {
        assert_eq!(self.reply["status"], "error", "{}", self.reply);
        assert_eq!(self.reply["ename"], ename, "{}", self.reply);
        assert!(self.reply["traceback"]
            .as_array()
            .is_some_and(|t| !t.is_empty()));
        let output = self
            .error_output()
            .unwrap_or_else(|| panic!("no error output before idle: {}", self.reply));
        assert_eq!(output["ename"], ename);
        assert!(
            self.after_idle.is_empty(),
            "output after idle: {:?}",
            self.after_idle
                .iter()
                .map(|m| &m.content)
                .collect::<Vec<_>>()
        );
        let traceback: Vec<&str> = self.reply["traceback"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        format!(
            "{}\n{}",
            self.reply["evalue"].as_str().unwrap(),
            traceback.join("\n")
        )
    }

    pub fn assert_ok(&self) {
        assert_eq!(self.reply["status"], "ok", "{}", self.reply);
        assert!(self.error_output().is_none());
        assert!(self.after_idle.is_empty());
    }
}

impl TestKernel {
    /// A kernel in `notebooks/`, with the test's own environment.
    pub fn start() -> TestKernel {
        TestKernel::start_in(&repo().join("notebooks"), &[])
    }

    /// A kernel in `cwd`, with `env` set over the test's own environment.
    pub fn start_in(cwd: &std::path::Path, env: &[(&str, &str)]) -> TestKernel {
        let config = repo().join("kernel/evcxr");
        assert!(
            config.join("init.evcxr").is_file(),
            "run `cargo run --release -p conclab-kernel -- setup` first (it writes kernel/evcxr/init.evcxr)"
        );
        let scratch =
            std::env::temp_dir().join(format!("conclab-protocol-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&scratch).unwrap();
        let ports = free_ports(5);
        let key = uuid::Uuid::new_v4().simple().to_string();
        let connection = scratch.join("connection.json");
        std::fs::write(
            &connection,
            json!({
                "ip": "127.0.0.1", "transport": "tcp",
                "shell_port": ports[0], "iopub_port": ports[1], "stdin_port": ports[2],
                "control_port": ports[3], "hb_port": ports[4],
                "key": key, "signature_scheme": "hmac-sha256",
            })
            .to_string(),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"))
            .args(["kernel", "--connection-file"])
            .arg(&connection)
            .current_dir(cwd)
            .envs(env.iter().copied())
            .env("EVCXR_CONFIG_DIR", &config)
            .env("TMPDIR", &scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let context = zmq::Context::new();
        let connect = |kind, port: u16| {
            let socket = context.socket(kind).unwrap();
            socket.set_linger(0).unwrap();
            socket.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
            socket
        };
        let shell = connect(zmq::DEALER, ports[0]);
        let iopub = connect(zmq::SUB, ports[1]);
        iopub.set_subscribe(b"").unwrap();
        let control = connect(zmq::DEALER, ports[3]);
        let heartbeat = connect(zmq::REQ, ports[4]);
        let mut kernel = TestKernel {
            child,
            session: Session::new(&key),
            shell,
            control,
            iopub,
            heartbeat,
            _context: context,
            scratch,
            stash: Vec::new(),
        };
        // Ready once kernel_info is answered on shell and its idle seen on iopub.
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < START_LIMIT, "the kernel did not start");
            let answer =
                kernel.request_on_shell("kernel_info_request", json!({}), Duration::from_secs(30));
            if let Some(answer) = answer {
                assert_eq!(answer.reply["language_info"]["name"], "Rust");
                break;
            }
        }
        kernel
    }

    pub fn request_on_shell(
        &mut self,
        msg_type: &str,
        content: Value,
        limit: Duration,
    ) -> Option<Answer> {
        let id = self.session.send(&self.shell, msg_type, content).unwrap();
        self.collect(&id, limit, false)
    }

    pub fn execute(&mut self, code: &str) -> Answer {
        self.execute_within(code, Duration::from_secs(120))
    }

    pub fn execute_within(&mut self, code: &str, limit: Duration) -> Answer {
        let content = json!({"code": code, "silent": false, "store_history": true,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true});
        self.request_on_shell("execute_request", content, limit)
            .unwrap_or_else(|| panic!("no reply to {code:?} within {limit:?}"))
    }

    /// Collects the reply (on shell, or control) and iopub messages of request `id`.
    pub fn collect(&mut self, id: &str, limit: Duration, on_control: bool) -> Option<Answer> {
        let start = Instant::now();
        let mut reply: Option<Value> = None;
        let mut before_idle = Vec::new();
        let mut idle_at: Option<Instant> = None;
        let mut after_idle = Vec::new();
        loop {
            // Control replies come without busy/idle.
            if on_control && reply.is_some() && idle_at.is_none() {
                idle_at = Some(Instant::now());
            }
            if let (Some(at), Some(content)) = (idle_at, &reply) {
                if at.elapsed() >= AFTER_IDLE {
                    return Some(Answer {
                        reply: content.clone(),
                        before_idle,
                        after_idle,
                    });
                }
            }
            if start.elapsed() > limit {
                return None;
            }
            let mut arrived: Vec<(bool, Message)> = std::mem::take(&mut self.stash);
            let replies = if on_control {
                &self.control
            } else {
                &self.shell
            };
            let mut items = [
                replies.as_poll_item(zmq::POLLIN),
                self.iopub.as_poll_item(zmq::POLLIN),
            ];
            zmq::poll(&mut items, 50).unwrap();
            while let Some(message) = self.session.try_recv(replies).unwrap() {
                arrived.push((false, message));
            }
            while let Some(message) = self.session.try_recv(&self.iopub).unwrap() {
                arrived.push((true, message));
            }
            for (on_iopub, message) in arrived {
                if !message.is_child_of(id) {
                    self.stash.push((on_iopub, message));
                    continue;
                }
                if !on_iopub {
                    reply = Some(message.content);
                    continue;
                }
                if message.msg_type() == "status" {
                    if message.content["execution_state"] == "idle" {
                        idle_at = Some(Instant::now());
                    }
                } else if idle_at.is_some() {
                    after_idle.push(message);
                } else {
                    before_idle.push(message);
                }
            }
        }
    }
}

impl Drop for TestKernel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}
