//! Every notebook in `notebooks/` runs top to bottom in the real `conclab` kernel with no
//! failed cell, each cell within 10 s, and prints what its prose promises.
//!
//! A cell states the output it promises in its metadata:
//! `"conclab": {"expect": ["Factorial of 10 is 3628800"]}`; each string must occur in the
//! cell's recorded text output (stdout, stderr or a plain-text result).
//!
//! The runner is this package's own `conclab-kernel` binary (cargo builds it for its
//! integration tests); the kernel itself is installed by `conclab-kernel setup` (see the
//! README).

#[path = "support/command.rs"]
mod command;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// A cell that takes longer fails: notebooks are written to run in seconds.
const CELL_LIMIT_SECONDS: &str = "10";

/// The runner interrupts a cell at its limit and kills a kernel that ignores that; a whole
/// notebook run taking longer than this means the runner itself hung.
const HANG_GUARD: Duration = Duration::from_secs(900);

static ONE_KERNEL_AT_A_TIME: Mutex<()> = Mutex::new(());

fn runner() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_conclab-kernel"))
}

fn notebooks() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../notebooks");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ipynb"))
        .collect();
    found.sort();
    found
}

fn text_of(cell: &Value) -> String {
    let mut text = String::new();
    let mut push = |field: &Value| match field {
        Value::String(s) => text.push_str(s),
        Value::Array(lines) => lines
            .iter()
            .for_each(|line| text.push_str(line.as_str().unwrap_or(""))),
        _ => {}
    };
    for output in cell["outputs"].as_array().into_iter().flatten() {
        push(&output["text"]);
        push(&output["data"]["text/plain"]);
    }
    text
}

/// Runs `notebook` into a temporary copy; returns the runner's report and the result.
fn execute(notebook: &Path) -> (String, Value) {
    let _turn = ONE_KERNEL_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = notebook.file_name().unwrap().to_string_lossy().into_owned();
    let out = std::env::temp_dir().join(format!("conclab-nbtest-{}-{name}", std::process::id()));
    let (status, report) = command::run_with_guard(
        Command::new(runner())
            .args(["run", "--timeout", CELL_LIMIT_SECONDS, "--output"])
            .arg(&out)
            .arg(notebook),
        HANG_GUARD,
    );
    assert!(status.success(), "{name} has failed cells:\n{report}");
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    std::fs::remove_file(&out).unwrap();
    (report, result)
}

#[test]
fn every_notebook_runs_clean_and_prints_what_it_promises() {
    let notebooks = notebooks();
    assert!(!notebooks.is_empty(), "no notebooks in notebooks/");
    let mut broken = Vec::new();
    let mut checked = 0;
    for notebook in &notebooks {
        let name = notebook.file_name().unwrap().to_string_lossy().into_owned();
        let (report, result) = execute(notebook);
        println!("{report}");
        for (index, cell) in result["cells"].as_array().unwrap().iter().enumerate() {
            let promised = cell["metadata"]["conclab"]["expect"].as_array();
            for expected in promised.into_iter().flatten() {
                let expected = expected.as_str().unwrap();
                checked += 1;
                if !text_of(cell).contains(expected) {
                    broken.push(format!(
                        "{name} cell {index}: expected {expected:?} in its output, got:\n{}",
                        text_of(cell)
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(
        checked >= notebooks.len(),
        "only {checked} promised outputs were checked"
    );
}

#[test]
fn notebooks_are_saved_with_outputs_for_the_conclab_kernel() {
    for notebook in notebooks() {
        let name = notebook.file_name().unwrap().to_string_lossy().into_owned();
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&notebook).unwrap())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(value["nbformat"], 4, "{name}");
        assert_eq!(value["metadata"]["kernelspec"]["name"], "conclab", "{name}");
        assert_eq!(value["metadata"]["language_info"]["name"], "Rust", "{name}");
        let cells = value["cells"].as_array().unwrap();
        let first_code = cells
            .iter()
            .find(|cell| cell["cell_type"] == "code")
            .unwrap_or_else(|| panic!("{name} has no code cell"));
        let source: String = first_code["source"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| line.as_str().unwrap())
            .collect();
        assert!(
            source.contains(":dep conclab = { path = \"..\" }")
                && source.contains("use conclab::prelude::*;"),
            "{name}: the first code cell must load the crate"
        );
        let unrun = cells
            .iter()
            .filter(|cell| cell["cell_type"] == "code")
            .filter(|cell| cell["execution_count"].is_null())
            .count();
        assert_eq!(unrun, 0, "{name}: {unrun} code cells saved without running");
    }
}
