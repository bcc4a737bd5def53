//! The standard Python client against the `conclab` kernel: nbclient (what nbconvert,
//! papermill and nbgrader run notebooks with) raises `CellExecutionError` on a failing
//! `assert_eq!`, a top-level `?` that returned `Err` and a compile error, naming the
//! cell, and runs a clean notebook through.
//!
//! The test installs nbclient with pip into the repository's `.venv` (git ignores it);
//! the kernel must be registered first (`conclab-kernel setup`, as the README says).

#[path = "support/command.rs"]
mod command;
#[path = "support/paths.rs"]
mod paths;
#[path = "support/python.rs"]
mod python;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn nbclient_raises_on_every_failure_and_passes_a_clean_notebook() {
    let python = python::python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/nbclient_check.py");
    let repo = paths::repo();
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(&repo).arg(repo.join("notebooks"));
    let (status, joined) = command::run_with_guard(&mut cmd, Duration::from_secs(900));
    let stdout = joined.as_str();
    let stderr = format!("exit status {status}");
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let find = |name: &str| {
        results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}:\n{stdout}\n{stderr}"))
    };
    assert_eq!(find("clean")["raised"], false, "{stdout}\n{stderr}");
    for (name, ename, evalue, cell) in [
        ("assert", "Panic", "x is two", 2),
        ("question_mark", "Err", "invalid digit found in string", 1),
        ("compile_error", "CompileError", "mismatched types", 1),
    ] {
        let result = find(name);
        assert_eq!(result["raised"], true, "{name}: {result}");
        assert_eq!(result["ename"], ename, "{name}: {result}");
        assert!(
            result["evalue"].as_str().unwrap_or("").contains(evalue),
            "{name}: {result}"
        );
        assert_eq!(result["cell"], cell, "{name}: {result}");
    }
}
