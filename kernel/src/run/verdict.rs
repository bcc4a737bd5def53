//! Deciding whether a cell failed, from everything the kernel said about it.
//!
//! The `conclab` kernel reports every failure as an `error` output whose `ename` names
//! its kind (`CompileError`, `Panic`, `Err`, `ProcessDied`, `Interrupted`). A stock evcxr
//! kernel (`run --kernel rust`) does not: a failed `assert!` replies `ok` and shows only
//! as panic text on stderr, a compile error replies `error` without `ename`/`evalue`, and
//! a crash shows as an `error` output saying the subprocess terminated. Both are judged
//! here; a timeout or a lost kernel fails a cell under either.

use crate::run::client::Execution;
use serde_json::Value;
use std::time::Duration;

/// What evcxr prints when the process running the cells died (exit, signal, abort).
const SUBPROCESS_TERMINATED: &str = "Subprocess terminated";
/// The threads whose panic fails the cell: evcxr runs a cell on an unnamed thread (other
/// kernels on `main`). Threads conclab starts carry names, and their panics come back
/// from `join` as values the cell handles, so they do not fail it; a panic in an unnamed
/// thread the user spawned does, since nothing says it was expected.
const CELL_THREADS: [&str; 2] = ["<unnamed>", "main"];

/// Why a cell failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The cell ran past its time limit.
    Timeout(Duration),
    /// The kernel process exited or stopped answering.
    KernelLost(String),
    /// The process running the cells terminated (exit, abort, signal): state is lost.
    Crashed(String),
    /// The cell did not compile.
    CompileError(String),
    /// The cell's thread panicked (a failed `assert!` is one).
    Panic(String),
    /// Any other error the kernel reported.
    Error(String),
    /// The cell printed more than the output limit; it was stopped.
    OutputLimit(usize),
    /// The cell was not run (the notebook's time limit was reached first).
    NotRun(String),
}

impl Failure {
    /// One line saying what went wrong, for reports.
    pub fn summary(&self) -> String {
        match self {
            Failure::Timeout(limit) => {
                format!("timeout: still running after {} s", limit.as_secs_f64())
            }
            Failure::KernelLost(why) => format!("kernel lost: {why}"),
            Failure::Crashed(why) => format!("crashed: {why}"),
            Failure::CompileError(why) => format!("compile error: {why}"),
            Failure::Panic(why) => format!("panic: {why}"),
            Failure::Error(why) => format!("error: {why}"),
            Failure::OutputLimit(bytes) => {
                format!(
                    "output limit: printed more than {} KiB and was stopped",
                    bytes / 1024
                )
            }
            Failure::NotRun(why) => format!("not run: {why}"),
        }
    }

    /// Whether the kernel's variables are gone after this failure.
    pub fn loses_state(&self) -> bool {
        matches!(
            self,
            Failure::Timeout(_)
                | Failure::KernelLost(_)
                | Failure::Crashed(_)
                | Failure::OutputLimit(_)
        )
    }
}

/// Judges one execution; `None` means the cell passed.
pub fn judge(execution: &Execution, timeout: Duration) -> Option<Failure> {
    if let Some(limit) = execution.output_overflow {
        return Some(Failure::OutputLimit(limit));
    }
    if execution.timed_out {
        return Some(Failure::Timeout(timeout));
    }
    if let Some(why) = &execution.kernel_lost {
        return Some(Failure::KernelLost(why.clone()));
    }
    let mut stderr = String::new();
    let mut error_output: Option<String> = None;
    for message in &execution.outputs {
        match message.msg_type() {
            "stream" if message.content["name"] == "stderr" => {
                stderr.push_str(message.content["text"].as_str().unwrap_or(""));
            }
            "error" => {
                if let Some(failure) = named_failure(&message.content) {
                    return Some(failure);
                }
                error_output.get_or_insert_with(|| error_text(&message.content));
            }
            _ => {}
        }
    }
    if let Some(text) = &error_output {
        if text.contains(SUBPROCESS_TERMINATED) {
            return Some(Failure::Crashed(first_line(text)));
        }
    }
    if let Some(panic) = main_thread_panic(&stderr) {
        return Some(Failure::Panic(panic));
    }
    let reply_failed = execution
        .reply
        .as_ref()
        .is_some_and(|reply| reply["status"] != "ok");
    match error_output {
        Some(text) => Some(Failure::CompileError(first_line(&text))),
        None if reply_failed => {
            let reply = execution.reply.as_ref().map(error_text).unwrap_or_default();
            Some(Failure::Error(if reply.is_empty() {
                "the kernel replied with an error and no message".into()
            } else {
                first_line(&reply)
            }))
        }
        None if execution.reply.is_none() => {
            Some(Failure::KernelLost("the kernel never replied".into()))
        }
        None => None,
    }
}

/// The failure an `error` output of the conclab kernel names by its `ename`.
fn named_failure(content: &Value) -> Option<Failure> {
    let evalue = content["evalue"].as_str().unwrap_or("");
    let first = first_line(evalue);
    Some(match content["ename"].as_str()? {
        "CompileError" => Failure::CompileError(first),
        "Panic" => Failure::Panic(first),
        "Err" => Failure::Error(format!("a `?` returned Err: {first}")),
        "ProcessDied" | "Interrupted" => Failure::Crashed(first),
        "KernelStartFailed" => Failure::KernelLost(first),
        _ => return None,
    })
}

/// The text of an `error` output or reply, most telling part first: evcxr's rendered
/// traceback (`[E0308] Error: mismatched types`), else `evalue`, else `ename`.
fn error_text(content: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(lines) = content["traceback"].as_array() {
        parts.extend(lines.iter().filter_map(Value::as_str).map(strip_ansi));
    }
    for key in ["evalue", "ename"] {
        if let Some(text) = content[key].as_str().filter(|text| !text.trim().is_empty()) {
            parts.push(text.to_owned());
        }
    }
    parts.join("\n")
}

/// The panic message of the cell's own thread, if its panic text is in `stderr`.
///
/// The hook writes `thread 'NAME' panicked at FILE:LINE:COL:` (Rust 1.95 adds the thread
/// id: `thread 'NAME' (1234) panicked at ...`), then the message on the next line.
pub fn main_thread_panic(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("thread '") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once('\'') else {
            continue;
        };
        let Some((_, location)) = rest.split_once("panicked at ") else {
            continue;
        };
        if !CELL_THREADS.contains(&name) {
            continue;
        }
        let location = location.trim_end_matches(':');
        let message = lines.next().unwrap_or("").trim();
        // `src/lib.rs` is evcxr's generated crate, whose line numbers mean nothing to
        // the notebook's author; other locations (a crate's file) do.
        let at = if location.starts_with("src/lib.rs:") {
            String::new()
        } else {
            format!(" (at {location})")
        };
        return Some(match message {
            "" => format!("panicked{at}"),
            message => format!("{message}{at}"),
        });
    }
    None
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("")
        .to_owned()
}

/// Removes ANSI colour sequences (evcxr colours its error tracebacks).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_and_location_are_extracted() {
        let stderr = "thread 'main' panicked at src/lib.rs:40:1:\nassertion `left == right` failed\n  left: 1\n right: 2\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            main_thread_panic(stderr).unwrap(),
            "assertion `left == right` failed"
        );
    }

    #[test]
    fn evcxr_cell_panic_with_thread_id_is_recognised() {
        let stderr = "\nthread '<unnamed>' (6477) panicked at src/lib.rs:97:1:\nassertion `left == right` failed: arithmetic is broken\n  left: 2\n";
        assert_eq!(
            main_thread_panic(stderr).unwrap(),
            "assertion `left == right` failed: arithmetic is broken"
        );
    }

    #[test]
    fn compile_errors_are_summarised_from_the_traceback() {
        let content = serde_json::json!({
            "ename": "Error", "evalue": "mismatched types",
            "traceback": ["\u{1b}[31m[E0308] Error:\u{1b}[0m mismatched types", "more"]
        });
        assert_eq!(
            first_line(&error_text(&content)),
            "[E0308] Error: mismatched types"
        );
        let bare = serde_json::json!({"ename": "Error", "evalue": "", "traceback": []});
        assert_eq!(first_line(&error_text(&bare)), "Error");
    }

    #[test]
    fn locations_outside_the_cell_are_kept() {
        let stderr =
            "thread '<unnamed>' (5) panicked at /root/.cargo/registry/src/x/lib.rs:9:5:\nboom\n";
        assert_eq!(
            main_thread_panic(stderr).unwrap(),
            "boom (at /root/.cargo/registry/src/x/lib.rs:9:5)"
        );
    }

    #[test]
    fn worker_thread_panics_are_not_the_cells() {
        let stderr = "thread 'worker-1' (77) panicked at src/lib.rs:3:9:\nboom\n";
        assert_eq!(main_thread_panic(stderr), None);
    }

    #[test]
    fn the_kernels_named_errors_are_taken_at_their_word() {
        let content = |ename: &str, evalue: &str| serde_json::json!({"ename": ename, "evalue": evalue, "traceback": []});
        assert_eq!(
            named_failure(&content("Panic", "assertion failed\n  left: 1")),
            Some(Failure::Panic("assertion failed".into()))
        );
        assert!(named_failure(&content("ProcessDied", "x"))
            .unwrap()
            .loses_state());
        assert_eq!(
            named_failure(&content("Err", "invalid digit")),
            Some(Failure::Error("a `?` returned Err: invalid digit".into()))
        );
        assert_eq!(named_failure(&content("Error", "x")), None);
    }

    #[test]
    fn ansi_codes_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[31merror\u{1b}[0m: x"), "error: x");
    }
}
