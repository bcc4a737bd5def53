//! `conclab-kernel kernel` spoken to over the real Jupyter protocol (ZeroMQ, signed
//! messages), as a Jupyter client would: every failure is an `error` reply with `ename`,
//! `evalue` and `traceback`, and everything a cell prints comes before its `idle`.
//!
//! Needs `conclab-kernel setup` first (it writes the `init.evcxr` the kernel loads).

#![allow(dead_code)]

#[path = "support/paths.rs"]
mod paths;

use conclab_kernel::jupyter::wire::{Message, Session};
use paths::{free_ports, repo};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a kernel may take to start (it builds its first cells then).
const START_LIMIT: Duration = Duration::from_secs(180);
/// After `idle`, output of the same cell must not arrive for at least this long.
const AFTER_IDLE: Duration = Duration::from_millis(600);

struct TestKernel {
    child: Child,
    session: Session,
    shell: zmq::Socket,
    control: zmq::Socket,
    iopub: zmq::Socket,
    heartbeat: zmq::Socket,
    _context: zmq::Context,
    scratch: PathBuf,
    /// Messages that answered another request than the one being collected.
    stash: Vec<(bool, Message)>,
}

/// What one request produced: its reply, and its iopub messages up to `idle`, then any
/// that came after `idle` (which must be none).
struct Answer {
    reply: Value,
    before_idle: Vec<Message>,
    after_idle: Vec<Message>,
}

impl Answer {
    fn text(&self, stream: &str) -> String {
        self.before_idle
            .iter()
            .filter(|m| m.msg_type() == "stream" && m.content["name"] == stream)
            .map(|m| m.content["text"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn error_output(&self) -> Option<&Value> {
        self.before_idle
            .iter()
            .find(|m| m.msg_type() == "error")
            .map(|m| &m.content)
    }

    /// The reply is an error of kind `ename`, and the same error was published before idle.
    fn assert_error(&self, ename: &str) -> String {
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

    fn assert_ok(&self) {
        assert_eq!(self.reply["status"], "ok", "{}", self.reply);
        assert!(self.error_output().is_none());
        assert!(self.after_idle.is_empty());
    }
}

impl TestKernel {
    fn start() -> TestKernel {
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
            .current_dir(repo().join("notebooks"))
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

    fn request_on_shell(
        &mut self,
        msg_type: &str,
        content: Value,
        limit: Duration,
    ) -> Option<Answer> {
        let id = self.session.send(&self.shell, msg_type, content).unwrap();
        self.collect(&id, limit, false)
    }

    fn execute(&mut self, code: &str) -> Answer {
        self.execute_within(code, Duration::from_secs(120))
    }

    fn execute_within(&mut self, code: &str, limit: Duration) -> Answer {
        let content = json!({"code": code, "silent": false, "store_history": true,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true});
        self.request_on_shell("execute_request", content, limit)
            .unwrap_or_else(|| panic!("no reply to {code:?} within {limit:?}"))
    }

    /// Collects the reply (on shell, or control) and iopub messages of request `id`.
    fn collect(&mut self, id: &str, limit: Duration, on_control: bool) -> Option<Answer> {
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

/// One kernel for the whole session of cells, as a notebook would use it: each failure
/// kind in turn, with the variables evcxr keeps checked in between.
#[test]
fn every_failure_is_an_error_in_its_own_cell_and_state_survives_where_evcxr_keeps_it() {
    let mut kernel = TestKernel::start();

    // Heartbeat answers while the kernel is idle.
    kernel.heartbeat.send("ping", 0).unwrap();
    kernel.heartbeat.set_rcvtimeo(5000).unwrap();
    assert_eq!(kernel.heartbeat.recv_bytes(0).unwrap(), b"ping");

    kernel.execute("let kept = 41;").assert_ok();

    let answer =
        kernel.execute("println!(\"before\");\nassert_eq!(kept + 1, 43, \"arithmetic is off\");");
    let text = answer.assert_error("Panic");
    assert!(text.contains("arithmetic is off"), "{text}");
    assert!(text.contains("line 2 of this cell"), "{text}");
    assert!(!text.contains("src/lib.rs"), "{text}");
    assert_eq!(answer.text("stdout"), "before\n");
    assert!(
        !answer.text("stderr").contains("panicked"),
        "the panic is the error, not stream text: {:?}",
        answer.text("stderr")
    );

    // evcxr keeps the variables of earlier cells after a panic.
    let answer = kernel.execute("println!(\"{}\", kept + 1);");
    answer.assert_ok();
    assert_eq!(answer.text("stdout"), "42\n");

    let answer = kernel.execute("let n: i32 = \"4x\".parse()?;\nprintln!(\"never {n}\");");
    let text = answer.assert_error("Err");
    assert!(text.contains("invalid digit found in string"), "{text}");
    assert!(answer.text("stdout").is_empty());

    let answer = kernel.execute("let x: i32 = \"text\";");
    let text = answer.assert_error("CompileError");
    assert!(text.contains("mismatched types"), "{text}");
    assert!(text.contains("line 1 of this cell"), "{text}");

    let answer = kernel.execute("eprintln!(\"to stderr\");\nprintln!(\"to stdout\");");
    answer.assert_ok();
    assert_eq!(answer.text("stderr"), "to stderr\n");
    assert_eq!(answer.text("stdout"), "to stdout\n");

    // A rich result carries text/plain beside its HTML.
    let answer = kernel.execute(
        "struct T;\nimpl T { fn evcxr_display(&self) { println!(\"EVCXR_BEGIN_CONTENT text/html\\n<b>bold</b>\\nEVCXR_END_CONTENT\"); } }\nT",
    );
    answer.assert_ok();
    let result = answer
        .before_idle
        .iter()
        .find(|m| m.msg_type() == "execute_result")
        .expect("an execute_result");
    assert_eq!(result.content["data"]["text/html"], "<b>bold</b>");
    assert_eq!(result.content["data"]["text/plain"], "bold");

    // Completion comes from evcxr's rust-analyzer.
    let completion = kernel
        .request_on_shell(
            "complete_request",
            json!({"code": "kep", "cursor_pos": 3}),
            Duration::from_secs(60),
        )
        .expect("a complete_reply");
    let matches: Vec<&str> = completion.reply["matches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(matches.contains(&"kept"), "{matches:?}");
    assert_eq!(completion.reply["cursor_start"], 0);

    let is_complete = kernel
        .request_on_shell(
            "is_complete_request",
            json!({"code": "fn f() {"}),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(is_complete.reply["status"], "incomplete");

    // An endless cell stops within 2 s of the interrupt; its variables are gone.
    let id = kernel
        .session
        .send(&kernel.shell, "execute_request", json!({"code": "loop { std::thread::sleep(std::time::Duration::from_millis(10)); }", "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": false}))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let interrupt = kernel
        .session
        .send(&kernel.control, "interrupt_request", json!({}))
        .unwrap();
    let interrupted_at = Instant::now();
    let answer = kernel
        .collect(&id, Duration::from_secs(2) + AFTER_IDLE, false)
        .expect("the cell ended after the interrupt");
    assert!(interrupted_at.elapsed() < Duration::from_secs(2) + AFTER_IDLE);
    let text = answer.assert_error("Interrupted");
    assert!(
        text.contains("`kept`"),
        "the lost variables are named: {text}"
    );
    let _ = interrupt;

    // Later cells run in a fresh process.
    kernel.execute("let again = 1;").assert_ok();

    let answer = kernel.execute("std::process::exit(3);");
    let text = answer.assert_error("ProcessDied");
    assert!(text.contains("exited with status 3"), "{text}");
    assert!(text.contains("`again`"), "{text}");

    // Run All: after a failure, cells already queued are aborted, not run.
    let failing = kernel.session.send(&kernel.shell, "execute_request", json!({"code": "panic!(\"stop here\");", "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true})).unwrap();
    let queued = kernel.session.send(&kernel.shell, "execute_request", json!({"code": "println!(\"must not run\");", "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true})).unwrap();
    kernel
        .collect(&failing, Duration::from_secs(60), false)
        .unwrap()
        .assert_error("Panic");
    let aborted = kernel
        .collect(&queued, Duration::from_secs(10), false)
        .unwrap();
    assert_eq!(aborted.reply["status"], "aborted");
    // JupyterLab would show a count in the aborted cell's prompt, as if it had run.
    assert!(
        aborted.reply.get("execution_count").is_none(),
        "{}",
        aborted.reply
    );
    assert!(aborted.text("stdout").is_empty());

    // Shutdown with restart: the kernel answers, then its process ends.
    let id = kernel
        .session
        .send(
            &kernel.control,
            "shutdown_request",
            json!({"restart": true}),
        )
        .unwrap();
    let answer = kernel
        .collect(&id, Duration::from_secs(10), true)
        .expect("a shutdown_reply");
    assert_eq!(answer.reply["restart"], true);
    let start = Instant::now();
    while kernel.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the kernel did not exit after shutdown"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
