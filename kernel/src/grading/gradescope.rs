//! Gradescope: a submission's result in the autograder's `results.json` format, and the
//! `setup.sh` and `run_autograder` that build and run conclab in Gradescope's image.
//!
//! Gradescope runs `run_autograder` once per submission, in a fresh container, with the
//! student's files in `/autograder/submission/`, and reads
//! `/autograder/results/results.json`: a top-level `score` and `output`, and one entry
//! in `tests` per question (`name`, `score`, `max_score`, `output`, `visibility`).

use super::SubmissionResult;
use crate::Error;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The result in Gradescope's `results.json` format. Written answers, which a person
/// grades, are left out of `tests` (Gradescope grades them in its own manual questions)
/// and named in the output.
pub(super) fn results_json(result: &SubmissionResult) -> Value {
    let mut manual = Vec::new();
    let tests: Vec<Value> = result
        .questions
        .iter()
        .filter(|question| {
            if question.manual {
                manual.push(question.grade_id.as_str());
            }
            !question.manual
        })
        .map(|question| {
            let passed = question.reason.is_none();
            json!({
                "name": question.grade_id,
                "score": question.points,
                "max_score": question.max_points,
                "status": if passed { "passed" } else { "failed" },
                "output": question.reason.as_deref().unwrap_or("passed"),
                "visibility": "visible",
            })
        })
        .collect();
    let mut output: Vec<String> = result.notes.clone();
    if !manual.is_empty() {
        output.push(format!(
            "graded by a person, not here: {}",
            manual.join(", ")
        ));
    }
    json!({
        "score": tests.iter().filter_map(|t| t["score"].as_f64()).sum::<f64>(),
        "execution_time": result.seconds.round() as u64,
        "output": output.join("\n"),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    })
}

/// Writes the autograder for `source` into `out`: `setup.sh`, `run_autograder`, and the
/// repository's tracked files under `conclab/` (the kernel and the support crate are built
/// from them in the image, and the source keeps its place in the tree, so that its
/// `:dep conclab = { path = ... }` line resolves).
pub(crate) fn write_autograder(source: &Path, out: &Path) -> Result<(), Error> {
    let source = source
        .canonicalize()
        .map_err(|error| Error::BadInput(format!("{}: {error}", source.display())))?;
    let layout = crate::setup::Layout::find(&source).map_err(Error::bad_input)?;
    let relative = source
        .strip_prefix(&layout.root)
        .map_err(|_| {
            Error::BadInput(format!(
                "{} is not inside the conclab repository {}; put the assignment in it",
                source.display(),
                layout.root.display()
            ))
        })?
        .to_owned();
    let mut files = tracked_files(&layout.root)?;
    if !files.contains(&relative) {
        files.push(relative.clone());
    }
    let tree = out.join("conclab");
    for file in &files {
        let target = tree.join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
        }
        std::fs::copy(layout.root.join(file), &target).map_err(|e| write_error(&target, e))?;
    }
    write_script(&out.join("setup.sh"), SETUP)?;
    let run = RUN.replace("@SOURCE@", &relative.to_string_lossy());
    write_script(&out.join("run_autograder"), &run)?;
    println!(
        "autograder for {} in {} ({} files): zip setup.sh, run_autograder and conclab/ and upload it to Gradescope",
        relative.display(),
        out.display(),
        files.len() + 2
    );
    Ok(())
}

fn write_error(path: &Path, error: std::io::Error) -> Error {
    Error::Failed(format!("cannot write {}: {error}", path.display()))
}

fn write_script(path: &Path, text: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| write_error(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| write_error(path, e))
}

/// The repository's tracked files: what a clone has, without build output or `.venv`.
fn tracked_files(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z", "--cached"])
        .output()
        .map_err(|error| {
            Error::BadInput(format!(
                "cannot run git to list the repository's files: {error}"
            ))
        })?;
    if !output.status.success() {
        return Err(Error::BadInput(format!(
            "{} is not a git checkout, so its files cannot be listed: clone the repository and run this there",
            root.display()
        )));
    }
    Ok(output
        .stdout
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .filter(|path| root.join(path).is_file())
        .collect())
}

const SETUP: &str = r#"#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu).
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y build-essential curl git pkg-config
curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
. "$HOME/.cargo/env"
cd /autograder/source/conclab
# The kernel (evcxr's library included) takes about 10 minutes on 2 cores.
cargo build --release --workspace
# Registers the kernel and builds the support crate once into a kernel build folder.
./target/release/conclab-kernel setup
"#;

const RUN: &str = r#"#!/usr/bin/env bash
# Gradescope runs this for each submission, in a fresh container: grade the notebook the
# student uploaded and write /autograder/results/results.json.
set -uo pipefail
. "$HOME/.cargo/env"
cd /autograder/source/conclab
mkdir -p /autograder/results
# The container is the submission's box: Gradescope gives it no cgroups to make.
./target/release/conclab-kernel grade --no-sandbox \
    --source "@SOURCE@" \
    --output /autograder/results/graded \
    --gradescope /autograder/results/results.json \
    /autograder/submission
status=$?
if [ ! -s /autograder/results/results.json ]; then
    # Never leave Gradescope without a result: say what went wrong.
    printf '{"score": 0, "output": "the grader stopped with status %s before it wrote a result; see the autograder log", "tests": []}\n' "$status" \
        > /autograder/results/results.json
fi
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_have_the_fields_of_gradescopes_spec() {
        let result = crate::grading::sample::alice();
        let json = results_json(&result);
        // The top level: score (a number), output (text), tests (a list).
        assert_eq!(json["score"], 2.0);
        assert_eq!(json["execution_time"], 12);
        let output = json["output"].as_str().unwrap();
        assert!(output.contains("q2-answer failed") && output.contains("q3-essay"));
        for key in ["visibility", "stdout_visibility"] {
            assert!(
                ["hidden", "after_due_date", "after_published", "visible"]
                    .contains(&json[key].as_str().unwrap()),
                "{key}"
            );
        }
        let tests = json["tests"].as_array().unwrap();
        assert_eq!(tests.len(), 2, "the written answer is graded by a person");
        assert_eq!(tests[0]["name"], "q1-tests");
        assert_eq!(tests[0]["score"], 2.0);
        assert_eq!(tests[0]["max_score"], 2.0);
        assert_eq!(tests[0]["status"], "passed");
        assert_eq!(tests[1]["output"], "panic: not yet implemented");
        assert_eq!(tests[1]["status"], "failed");
        for test in tests {
            let fields: Vec<&str> = test
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            for field in ["name", "score", "max_score", "output", "visibility"] {
                assert!(fields.contains(&field), "{field} missing from {test}");
            }
        }
    }
}
