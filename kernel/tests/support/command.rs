//! Running a command from a test: its exit status and its stdout and stderr joined, with a
//! hang guard. Shared (through `#[path]`) by the kernel's test files that drive the
//! `conclab-kernel` binary and the tools around it; each uses a part.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` to the end, killing it (and failing the test) after `hang_guard`.
///
/// Both pipes are drained while the command runs, so a chatty command cannot block on a
/// full pipe and be taken for a hung one.
pub fn run_with_guard(command: &mut Command, hang_guard: Duration) -> (ExitStatus, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > hang_guard {
            child.kill().unwrap();
            panic!("{command:?} hung for {hang_guard:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = stdout.join().unwrap() + &stderr.join().unwrap();
    (status, report)
}

/// Runs `command` to the end with the test's own output, failing the test, with `what` it
/// was for, if it does not start or does not succeed.
pub fn run_ok(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{what}: {command:?} does not start: {e}"));
    assert!(status.success(), "{what}: {command:?} failed ({status})");
}
