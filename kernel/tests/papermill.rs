//! papermill against the `conclab` kernel: it runs a clean notebook through and writes
//! its outputs, and on a failing `assert_eq!` it stops, exits with an error that names
//! the cell and the panic, and marks that cell in the notebook it writes.
//!
//! papermill is installed with pip into the repository's `.venv`; the kernel must be
//! registered first (`conclab-kernel setup`).

#[path = "support/command.rs"]
mod command;
#[path = "support/notebook_json.rs"]
mod notebook_json;
#[path = "support/paths.rs"]
mod paths;
#[path = "support/python.rs"]
mod python;

use notebook_json::read_json;
use paths::fixture;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs papermill on `input`, writing `output`; returns whether it succeeded and its log.
fn papermill(input: &Path, output: &Path) -> (bool, String) {
    let mut command = Command::new(python::venv_bin().join("papermill"));
    command
        .arg(input)
        .arg(output)
        .args(["--kernel", "conclab", "--execution-timeout", "120"])
        .args(["--start-timeout", "180"])
        // The kernel runs where the fixture lives, so its `:dep` path resolves.
        .arg("--cwd")
        .arg(input.parent().unwrap());
    let (status, log) = command::run_with_guard(&mut command, Duration::from_secs(900));
    (status.success(), log)
}

#[test]
fn papermill_runs_a_clean_notebook_and_stops_at_a_panic_naming_the_cell() {
    let dir = tempfile::tempdir().unwrap();

    let out = dir.path().join("passing.ipynb");
    let (ok, log) = papermill(&fixture("passing.ipynb"), &out);
    assert!(ok, "papermill failed on a clean notebook:\n{log}");
    let ran = read_json(&out);
    let printed = ran["cells"][3]["outputs"].to_string();
    assert!(printed.contains("answer = 42"), "{printed}\n{log}");

    let out = dir.path().join("panic.ipynb");
    let (ok, log) = papermill(&fixture("panic.ipynb"), &out);
    assert!(!ok, "papermill passed a failing assert_eq!:\n{log}");
    assert!(log.contains("PapermillExecutionError"), "{log}");
    // papermill names the cell by its prompt: the failing one is the second to run.
    assert!(log.contains("Exception encountered at \"In [2]\""), "{log}");
    assert!(log.contains("arithmetic is broken"), "{log}");
    // papermill adds banner cells around the failure: find the code cells by their code.
    let ran = read_json(&out);
    let code_cells: Vec<&Value> = ran["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|cell| cell["cell_type"] == "code")
        .collect();
    let failed = code_cells[1];
    assert!(
        failed["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|output| output["output_type"] == "error" && output["ename"] == "Panic"),
        "{failed:#}"
    );
    // The cell after it never ran.
    assert!(
        code_cells[2]["execution_count"].is_null(),
        "{:#}",
        code_cells[2]
    );
}
