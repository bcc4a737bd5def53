//! What the notebooks' prose may and may not say, checked without a kernel.
//!
//! - No run of eight or more words of a seed document: the prose is our own writing.
//!   Markdown cells and code comments count; where the seeds are not at hand
//!   (`../shared/seeds`, or `CONCLAB_SEEDS`), this check is skipped.
//! - No fact about one machine: the number of cores comes from `cpu_count()` when a cell
//!   runs, or the prose says that the saved outputs came from such a machine.
//! - One rule for what a pool task may be, worded the same everywhere.

use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The rule, as every notebook that uses a process pool states it (see
/// `src/multiprocessing/pool/task.rs`: tasks are `Copy + Send + 'static`).
const POOL_TASK_RULE: &str =
    "A pool task is a function, or a closure that captures only `Copy` values (no references).";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn notebooks() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in ["notebooks", "notebooks/assignments"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "ipynb") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn cells(path: &Path) -> Vec<Value> {
    let notebook: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    notebook["cells"].as_array().unwrap().clone()
}

fn source(cell: &Value) -> String {
    match &cell["source"] {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

/// The prose of a cell: all of a markdown cell, the comments of a code cell.
fn prose(cell: &Value) -> String {
    let text = source(cell);
    if cell["cell_type"] == "markdown" {
        return text;
    }
    text.lines()
        .filter_map(|line| line.split_once("//").map(|(_, comment)| comment))
        .collect::<Vec<_>>()
        .join("\n")
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn no_run_of_eight_words_of_a_seed_document() {
    let dir = std::env::var_os("CONCLAB_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/seeds"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("seed documents not found at {}: skipped", dir.display());
        return;
    };
    let mut runs: HashSet<Vec<String>> = HashSet::new();
    for entry in entries {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let w = words(&text);
        runs.extend(w.windows(8).map(<[String]>::to_vec));
    }
    let mut copied = Vec::new();
    for path in notebooks() {
        for cell in cells(&path) {
            let w = words(&prose(&cell));
            if let Some(run) = w.windows(8).find(|run| runs.contains(*run)) {
                copied.push(format!(
                    "{} {}: \"{}\"",
                    name(&path),
                    cell["id"],
                    run.join(" ")
                ));
            }
        }
    }
    assert!(
        copied.is_empty(),
        "seed wording in the notebooks:\n{}",
        copied.join("\n")
    );
}

#[test]
fn no_core_count_is_written_into_prose_or_titles() {
    let mut fixed = Vec::new();
    for path in notebooks() {
        for cell in cells(&path) {
            let text = source(&cell);
            for line in text.lines() {
                let lower = line.to_lowercase();
                let says_count = ["2 cores", "two cores", "2 cpu cores", "two cpu cores"]
                    .iter()
                    .any(|count| lower.contains(count));
                // Allowed: a sentence about where the saved outputs were measured, and
                // code that takes the count at run time.
                let about_saved = lower.contains("saved");
                let in_code = cell["cell_type"] == "code" && !lower.contains('"');
                if says_count && !about_saved && !in_code {
                    fixed.push(format!("{} {}: {line}", name(&path), cell["id"]));
                }
            }
        }
    }
    assert!(
        fixed.is_empty(),
        "a core count written in:\n{}",
        fixed.join("\n")
    );
}

#[test]
fn the_pool_task_rule_is_worded_the_same_everywhere() {
    let mut wrong = Vec::new();
    let mut stated = 0;
    for path in notebooks() {
        let all: String = cells(&path)
            .iter()
            .map(prose)
            .collect::<Vec<_>>()
            .join("\n");
        let flat = all.split_whitespace().collect::<Vec<_>>().join(" ");
        if flat.contains("captures nothing") || flat.contains("capture at most") {
            wrong.push(format!(
                "{}: another wording of the pool task rule",
                name(&path)
            ));
        }
        let uses_pool = cells(&path)
            .iter()
            .any(|cell| cell["cell_type"] == "code" && source(cell).contains(".map("));
        let uses_pool = uses_pool && all.contains("Pool");
        if flat.contains(POOL_TASK_RULE) {
            stated += 1;
        } else if uses_pool {
            wrong.push(format!(
                "{}: uses a Pool but does not state the rule",
                name(&path)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(stated >= 5, "the rule is stated in {stated} notebooks");
}
