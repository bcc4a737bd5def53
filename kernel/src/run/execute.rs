//! Running a notebook's code cells in order in a real kernel, recording their outputs.

use crate::jupyter::kernelspec::InstalledKernel;
use crate::run::client::{ClientError, Execution, Kernel};
use crate::run::verdict::{judge, Failure};
use crate::sandbox::Sandbox;
use nbformat::v4::{Cell, Notebook, Output};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The Jupyter cell tag that marks a cell whose error is expected (nbclient's meaning).
pub const RAISES_EXCEPTION: &str = "raises-exception";

/// How to run notebooks.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub kernel: InstalledKernel,
    /// Time limit for one cell.
    pub cell_timeout: Duration,
    /// Time limit for the kernel to start (evcxr's `init.evcxr` may build the support
    /// crate then).
    pub startup_timeout: Duration,
    /// How long an interrupted cell may take to stop before the kernel is killed.
    pub interrupt_grace: Duration,
    /// Time limit for the whole notebook; cells after it are not run.
    pub notebook_timeout: Option<Duration>,
    /// Most bytes of output one cell may print before it is stopped.
    pub max_output_bytes: Option<usize>,
    /// After a failure that loses the kernel's state, run the cells that had passed
    /// again before going on, so later cells find what they depend on (grading).
    pub replay_after_state_loss: bool,
    /// Leave out each cell's hidden-test region (nbgrader's `BEGIN HIDDEN TESTS` ..
    /// `END HIDDEN TESTS`), so that an assignment source run in place is saved with the
    /// outputs a student's copy shows. Grading runs them.
    pub skip_hidden_tests: bool,
}

impl RunOptions {
    /// Options for running `kernel` with a per-cell `cell_timeout` and no other limit.
    pub fn new(kernel: InstalledKernel, cell_timeout: Duration, startup_timeout: Duration) -> Self {
        RunOptions {
            kernel,
            cell_timeout,
            startup_timeout,
            interrupt_grace: Duration::from_secs(5),
            notebook_timeout: None,
            max_output_bytes: None,
            replay_after_state_loss: false,
            skip_hidden_tests: false,
        }
    }
}

/// How one code cell ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellStatus {
    Passed,
    Failed(Failure),
    /// The cell failed and is tagged `raises-exception`: that is what it is for.
    ExpectedFailure(Failure),
}

/// What happened to one code cell.
#[derive(Debug, Clone)]
pub struct CellReport {
    /// Position of the cell in the notebook, counting from 0 as nbclient does.
    pub index: usize,
    pub elapsed: Duration,
    pub status: CellStatus,
    /// Set when an earlier cell lost the kernel's state: this cell ran without the
    /// variables of the cells before that one.
    pub state_lost_at: Option<usize>,
    /// How many earlier cells were run again, just before this one, to rebuild the
    /// state a failure had lost.
    pub replayed: usize,
}

impl CellReport {
    pub fn passed(&self) -> bool {
        !matches!(self.status, CellStatus::Failed(_))
    }
}

/// The kernel of a notebook run, started again when a failure took it away.
struct Session<'a> {
    kernel: Option<Kernel>,
    options: &'a RunOptions,
    cwd: &'a Path,
    sandbox: Option<&'a Sandbox>,
}

impl Session<'_> {
    fn start(&self) -> Result<Kernel, ClientError> {
        Kernel::start(
            &self.options.kernel,
            self.cwd,
            self.options.startup_timeout,
            self.sandbox,
        )
    }

    /// Runs `code`, again if evcxr's build machinery tripped over itself (see
    /// [`infrastructure_failure`]): such a cell compiled nothing, so nothing ran twice.
    fn run(&mut self, code: &str) -> Result<Execution, ClientError> {
        let mut execution = self.run_once(code)?;
        for _ in 0..2 {
            if !infrastructure_failure(&execution) {
                break;
            }
            execution = self.run_once(code)?;
        }
        Ok(execution)
    }

    /// Runs `code` once; on a timeout, output overflow or lost kernel, makes sure the
    /// next call gets a working kernel (interrupted, or killed and started anew).
    fn run_once(&mut self, code: &str) -> Result<Execution, ClientError> {
        if self.kernel.is_none() {
            self.kernel = Some(match self.start() {
                Ok(kernel) => kernel,
                // The same race can break the start-up build: one more try.
                Err(_) => self.start()?,
            });
        }
        let kernel = self.kernel.as_mut().expect("started above");
        let execution = kernel
            .execute(
                code,
                self.options.cell_timeout,
                self.options.max_output_bytes,
                |_| {},
            )
            .unwrap_or_else(|error| Execution {
                kernel_lost: Some(format!("lost contact with the kernel: {error}")),
                ..Execution::default()
            });
        let stuck = execution.timed_out || execution.output_overflow.is_some();
        let crashed = judge(&execution, self.options.cell_timeout).is_some_and(|f| f.loses_state());
        if let Some(sandbox) = self.sandbox.filter(|_| crashed) {
            // Whatever the cell started (a fork bomb's children, a process that outlived
            // its parent) goes with the kernel; the next cell gets a fresh one.
            sandbox.kill_all();
            self.kernel = None;
        } else if stuck || execution.kernel_lost.is_some() {
            let recovered = stuck
                && kernel
                    .interrupt(self.options.interrupt_grace)
                    .unwrap_or(false);
            if !recovered {
                // Dropping the kernel kills its whole process group.
                self.kernel = None;
            }
        }
        Ok(execution)
    }
}

/// Whether a cell failed in evcxr's build machinery rather than in its code: evcxr's
/// build cache rewrites a hit counter without a lock, and a kernel that reads it
/// half-written fails the whole build ("Failed to wrap rustc") with no compiler error.
fn infrastructure_failure(execution: &Execution) -> bool {
    execution.outputs.iter().any(|message| {
        message.msg_type() == "error"
            && message
                .content
                .to_string()
                .contains("no parsable errors were found")
    })
}

/// Runs every non-empty code cell of `notebook` in a fresh kernel started in `cwd`
/// (inside `sandbox` when given), replacing the cells' outputs and execution counts.
/// `on_cell` sees each report as soon as its cell ends. Fails only when the kernel
/// cannot be started at all.
pub fn execute_notebook(
    notebook: &mut Notebook,
    cwd: &Path,
    options: &RunOptions,
    sandbox: Option<&Sandbox>,
    mut on_cell: impl FnMut(&CellReport),
) -> Result<Vec<CellReport>, ClientError> {
    let started = Instant::now();
    let mut session = Session {
        kernel: None,
        options,
        cwd,
        sandbox,
    };
    session.kernel = Some(match session.start() {
        Ok(kernel) => kernel,
        Err(_) => session.start()?,
    });
    // As nbclient does: the notebook records what the kernel says of its language.
    if let Some(info) = session.kernel.as_ref().and_then(Kernel::language_info) {
        if let Ok(info) = serde_json::from_value(info.clone()) {
            notebook.metadata.language_info = Some(info);
        }
    }
    let mut state_lost_at: Option<usize> = None;
    let mut passed_code: Vec<String> = Vec::new();
    let mut reports = Vec::new();

    for (index, cell) in notebook.cells.iter_mut().enumerate() {
        let Cell::Code {
            source,
            outputs,
            execution_count,
            metadata,
            ..
        } = cell
        else {
            continue;
        };
        let mut code = source.concat();
        if options.skip_hidden_tests {
            code = crate::grading::assignment::without_hidden_tests(&code);
        }
        if code.trim().is_empty() {
            continue;
        }
        let cell_started = Instant::now();
        outputs.clear();
        *execution_count = None;
        if let Some(limit) = options
            .notebook_timeout
            .filter(|limit| started.elapsed() > *limit)
        {
            let report = CellReport {
                index,
                elapsed: Duration::ZERO,
                status: CellStatus::Failed(Failure::NotRun(format!(
                    "the notebook's time limit of {} s was reached",
                    limit.as_secs()
                ))),
                state_lost_at,
                replayed: 0,
            };
            on_cell(&report);
            reports.push(report);
            continue;
        }

        let mut replayed = 0;
        if state_lost_at.is_some() && options.replay_after_state_loss {
            for earlier in &passed_code {
                match session.run(earlier) {
                    Ok(execution) if judge(&execution, options.cell_timeout).is_none() => {
                        replayed += 1
                    }
                    _ => break,
                }
            }
            if replayed == passed_code.len() {
                state_lost_at = None;
            }
        }

        let (execution, failure) = match session.run(&code) {
            Ok(execution) => {
                let failure = judge(&execution, options.cell_timeout);
                (execution, failure)
            }
            Err(error) => (
                Execution::default(),
                Some(Failure::KernelLost(format!(
                    "cannot restart the kernel: {error}"
                ))),
            ),
        };
        *outputs = notebook_outputs(&execution.outputs);
        if let Some(limit) = execution.output_overflow {
            outputs.push(
                serde_json::from_value(json!({
                    "output_type": "stream",
                    "name": "stderr",
                    "text": format!("[output stopped here: the cell printed more than {} KiB]\n", limit / 1024),
                }))
                .expect("a stream output deserializes"),
            );
        }
        *execution_count = execution
            .reply
            .as_ref()
            .and_then(|reply| reply["execution_count"].as_i64())
            .map(|count| count as i32);
        let expected = metadata
            .tags
            .as_ref()
            .is_some_and(|tags| tags.iter().any(|tag| tag == RAISES_EXCEPTION));
        let status = match failure.clone() {
            None => CellStatus::Passed,
            Some(failure) if expected => CellStatus::ExpectedFailure(failure),
            Some(failure) => CellStatus::Failed(failure),
        };
        let report = CellReport {
            index,
            elapsed: cell_started.elapsed(),
            status,
            state_lost_at,
            replayed,
        };
        match &failure {
            None => passed_code.push(code),
            Some(failure) if failure.loses_state() => state_lost_at = Some(index),
            Some(_) => {}
        }
        on_cell(&report);
        reports.push(report);
    }
    if let Some(kernel) = session.kernel.take() {
        kernel.shutdown();
    }
    Ok(reports)
}

/// Turns iopub messages into notebook outputs the way Jupyter front ends do: consecutive
/// text on the same stream is merged, `clear_output` clears (at once, or before the next
/// output when `wait` is set).
pub fn notebook_outputs(messages: &[crate::jupyter::wire::Message]) -> Vec<Output> {
    let mut outputs: Vec<Value> = Vec::new();
    let mut clear_pending = false;
    for message in messages {
        let content = &message.content;
        let output = match message.msg_type() {
            "stream" => json!({
                "output_type": "stream",
                "name": content["name"],
                "text": content["text"],
            }),
            "execute_result" => json!({
                "output_type": "execute_result",
                "execution_count": content["execution_count"],
                "data": content["data"],
                "metadata": content.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
            "display_data" => json!({
                "output_type": "display_data",
                "data": content["data"],
                "metadata": content.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
            "error" => json!({
                "output_type": "error",
                "ename": content["ename"].as_str().unwrap_or(""),
                "evalue": content["evalue"].as_str().unwrap_or(""),
                "traceback": content.get("traceback").cloned().unwrap_or_else(|| json!([])),
            }),
            "clear_output" => {
                if content["wait"].as_bool().unwrap_or(false) {
                    clear_pending = true;
                } else {
                    outputs.clear();
                }
                continue;
            }
            _ => continue,
        };
        if std::mem::take(&mut clear_pending) {
            outputs.clear();
        }
        if let (Some(last), "stream") = (outputs.last_mut(), message.msg_type()) {
            if last["output_type"] == "stream" && last["name"] == output["name"] {
                let merged = format!(
                    "{}{}",
                    last["text"].as_str().unwrap_or(""),
                    output["text"].as_str().unwrap_or("")
                );
                last["text"] = Value::String(merged);
                continue;
            }
        }
        outputs.push(output);
    }
    outputs
        .into_iter()
        .filter_map(|output| serde_json::from_value(output).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jupyter::wire::Message;

    fn message(msg_type: &str, content: Value) -> Message {
        let header = json!({
            "msg_id": "m", "username": "u", "session": "s",
            "date": "2026-01-01T00:00:00Z", "msg_type": msg_type, "version": "5.3"
        });
        Message {
            header: serde_json::from_value(header.clone()).unwrap(),
            parent_msg_id: Some("p".into()),
            content,
            identities: Vec::new(),
            raw_header: header,
        }
    }

    fn as_json(outputs: &[Output]) -> Value {
        serde_json::to_value(outputs).unwrap()
    }

    #[test]
    fn consecutive_stream_text_is_merged_per_stream() {
        let outputs = notebook_outputs(&[
            message("stream", json!({"name": "stdout", "text": "a\n"})),
            message("stream", json!({"name": "stdout", "text": "b\n"})),
            message("stream", json!({"name": "stderr", "text": "c\n"})),
            message("stream", json!({"name": "stdout", "text": "d\n"})),
        ]);
        let json = as_json(&outputs);
        assert_eq!(json.as_array().unwrap().len(), 3);
        assert_eq!(json[0]["text"], json!(["a\n", "b\n"]));
        assert_eq!(json[1]["name"], "stderr");
    }

    #[test]
    fn rich_results_and_errors_are_kept() {
        let outputs = notebook_outputs(&[
            message(
                "execute_result",
                json!({"execution_count": 3, "data": {"text/plain": "42", "image/svg+xml": "<svg/>"}, "metadata": {}}),
            ),
            message(
                "error",
                json!({"ename": "Error", "evalue": "boom", "traceback": ["boom"]}),
            ),
        ]);
        let json = as_json(&outputs);
        // Jupyter stores SVG, like text, as a list of lines.
        assert_eq!(json[0]["data"]["image/svg+xml"], json!(["<svg/>"]));
        assert_eq!(json[0]["execution_count"], 3);
        assert_eq!(json[1]["evalue"], "boom");
    }

    #[test]
    fn clear_output_clears_now_or_before_the_next_output() {
        let now = notebook_outputs(&[
            message("stream", json!({"name": "stdout", "text": "old\n"})),
            message("clear_output", json!({"wait": false})),
            message("stream", json!({"name": "stdout", "text": "new\n"})),
        ]);
        assert_eq!(as_json(&now)[0]["text"], json!(["new\n"]));
        let waiting = notebook_outputs(&[
            message("stream", json!({"name": "stdout", "text": "old\n"})),
            message("clear_output", json!({"wait": true})),
        ]);
        assert_eq!(as_json(&waiting).as_array().unwrap().len(), 1);
    }
}
