//! nbgrader 0.9 itself on the course's two assignments, with the course configuration
//! `grading/nbgrader_config.py` and the `conclab` kernel, as a course on JupyterHub runs
//! it:
//!
//! - `generate_assignment` accepts both sources unchanged and writes the student version
//!   `conclab-kernel release` writes: the same sources, stubs and hidden tests removed,
//!   the same cells locked, the same checksums;
//! - `autograde` gives the reference every automatic point and leaves the written answers
//!   to a person; a wrong answer, an answer that does not compile and an answer that
//!   panics each lose exactly their own question's points, and nothing crashes.
//!
//! The submissions sit in nbgrader's `autograded/STUDENT/ASSIGNMENT/` folders, where the
//! notebooks' `:dep conclab = { path = "../.." }` names no crate: the kernel loads the
//! course crate it was set up with. nbgrader is installed with pip into the repository's
//! `.venv`; the kernel must be registered first (`conclab-kernel setup`).

#[path = "support/command.rs"]
mod command;
#[path = "support/notebook_json.rs"]
mod notebook_json;
#[path = "support/paths.rs"]
mod paths;
#[path = "support/python.rs"]
mod python;

use notebook_json::{cells, flag, grade_id, read_json, text, write_json};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// One nbgrader run at a time: two kernels compiling at once on 2 cores only slow each
/// other towards their cell timeouts.
static ONE_COURSE_AT_A_TIME: Mutex<()> = Mutex::new(());

const HANG_GUARD: Duration = Duration::from_secs(1200);

fn assignment_source(name: &str) -> PathBuf {
    paths::repo()
        .join("notebooks/assignments")
        .join(format!("{name}.ipynb"))
}

/// A course directory with the course's configuration and `name` as its one source.
struct Course {
    dir: tempfile::TempDir,
    name: &'static str,
}

impl Course {
    fn new(name: &'static str) -> Course {
        let dir = tempfile::Builder::new()
            .prefix("conclab-nbgrader-")
            .tempdir()
            .unwrap();
        std::fs::copy(
            paths::repo().join("grading/nbgrader_config.py"),
            dir.path().join("nbgrader_config.py"),
        )
        .unwrap();
        let source = dir.path().join("source").join(name);
        std::fs::create_dir_all(&source).unwrap();
        std::fs::copy(
            assignment_source(name),
            source.join(format!("{name}.ipynb")),
        )
        .unwrap();
        Course { dir, name }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Runs `nbgrader ARGS` in the course directory; returns its output.
    fn nbgrader(&self, args: &[&str]) -> String {
        let bin = python::venv_bin();
        // nbgrader runs `alembic` (its database migrations) from PATH.
        let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .unwrap();
        let mut command = Command::new(bin.join("nbgrader"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("PATH", path);
        let (status, output) = command::run_with_guard(&mut command, HANG_GUARD);
        assert!(
            status.success(),
            "nbgrader {args:?} failed ({status}):\n{output}"
        );
        output
    }

    /// `generate_assignment`; returns the student version nbgrader wrote.
    fn generate(&self) -> Value {
        self.nbgrader(&["generate_assignment", self.name, "--force"]);
        read_json(&self.path(&format!("release/{0}/{0}.ipynb", self.name)))
    }

    fn submit(&self, student: &str, notebook: &Value) {
        let path = self.path(&format!("submitted/{student}/{0}/{0}.ipynb", self.name));
        write_json(&path, notebook);
    }

    /// `autograde` of every submission; returns each student's automatic score per
    /// graded cell (`None`: left to a person).
    fn autograde(&self) -> (BTreeMap<String, BTreeMap<String, Option<f64>>>, String) {
        let log = self.nbgrader(&["autograde", self.name, "--force"]);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/nbgrader_scores.py");
        let output = Command::new(python::python())
            .arg(script)
            .arg(self.dir.path())
            .args([self.name, self.name])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "reading the gradebook failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let scores = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
        (scores, log)
    }
}

/// What a student may see and nbgrader checks of one cell of a student version.
fn released_view(cell: &Value) -> Value {
    let mut nbgrader = cell["metadata"]["nbgrader"].clone();
    if let Some(points) = nbgrader.get("points").and_then(Value::as_f64) {
        // nbgrader writes `1.0` where the source says `1`.
        nbgrader["points"] = points.into();
    }
    serde_json::json!({
        "cell_type": cell["cell_type"],
        "source": text(cell),
        "nbgrader": nbgrader,
        "editable": cell["metadata"]["editable"],
        "deletable": cell["metadata"]["deletable"],
        "outputs": cell.get("outputs"),
        "execution_count": cell.get("execution_count"),
    })
}

fn check_release_matches_nbgrader(name: &'static str) {
    let course = Course::new(name);
    let theirs = {
        let _turn = ONE_COURSE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        course.generate()
    };
    let out = course.path("conclab-release");
    let mut release = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"));
    release
        .arg("release")
        .arg(assignment_source(name))
        .arg("-o")
        .arg(&out);
    let (status, output) = command::run_with_guard(&mut release, HANG_GUARD);
    assert!(status.success(), "release failed:\n{output}");
    let ours = read_json(&out.join(format!("{name}.ipynb")));
    assert_eq!(cells(&ours).len(), cells(&theirs).len(), "{name}: cells");
    for (mine, nbgrader) in cells(&ours).iter().zip(cells(&theirs)) {
        assert_eq!(
            released_view(mine),
            released_view(nbgrader),
            "{name}/{}: conclab-kernel release (left) and nbgrader generate_assignment (right) differ",
            grade_id(nbgrader)
        );
    }
    assert_eq!(
        ours["metadata"]["kernelspec"], theirs["metadata"]["kernelspec"],
        "{name}: kernelspec"
    );
}

#[test]
fn generate_assignment_writes_what_release_writes_for_threads_and_processes() {
    check_release_matches_nbgrader("threads-and-processes");
}

#[test]
fn generate_assignment_writes_what_release_writes_for_multiprocessing() {
    check_release_matches_nbgrader("multiprocessing");
}

/// A submission with every answer of the source filled into nbgrader's student version,
/// the answer `answer` changed by replacing `from` with `to`.
fn submission(source: &Value, released: &Value, change: Option<(&str, &str, &str)>) -> Value {
    let answers: BTreeMap<&str, String> = cells(source)
        .iter()
        .filter(|cell| flag(cell, "solution"))
        .map(|cell| (grade_id(cell), text(cell)))
        .collect();
    let mut notebook = released.clone();
    let mut changed = change.is_none();
    for cell in notebook["cells"].as_array_mut().unwrap() {
        if !flag(cell, "solution") {
            continue;
        }
        let id = grade_id(cell).to_owned();
        let mut answer = answers[id.as_str()].clone();
        if let Some((which, from, to)) = change.filter(|(which, ..)| *which == id) {
            assert!(answer.contains(from), "{which}: {from:?} not in the answer");
            answer = answer.replace(from, to);
            changed = true;
        }
        cell["source"] = Value::String(answer);
    }
    assert!(changed, "{change:?}: no such answer");
    notebook
}

/// A broken answer: the student, the answer cell, the text replaced, its replacement,
/// and the graded cell that must then lose its points.
type Broken = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn check_autograde(name: &'static str, broken: &[Broken]) {
    let _turn = ONE_COURSE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let course = Course::new(name);
    let released = course.generate();
    let source = read_json(&assignment_source(name));
    // The reference is the source itself, model answers and all.
    course.submit("reference", &source);
    for (student, answer, from, to, _) in broken {
        course.submit(
            student,
            &submission(&source, &released, Some((answer, from, to))),
        );
    }
    let (scores, log) = course.autograde();
    let graded: Vec<&Value> = cells(&source)
        .iter()
        .filter(|cell| flag(cell, "grade"))
        .collect();
    let reference = &scores["reference"];
    for cell in &graded {
        let id = grade_id(cell);
        let points = cell["metadata"]["nbgrader"]["points"].as_f64().unwrap();
        let expected = (cell["cell_type"] == "code").then_some(points);
        assert_eq!(
            reference[id], expected,
            "{name}/reference/{id}: automatic score (a written answer: none)\n{log}"
        );
    }
    for (student, _, _, _, loses) in broken {
        let theirs = scores
            .get(*student)
            .unwrap_or_else(|| panic!("{name}/{student}: not graded\n{log}"));
        for cell in &graded {
            let id = grade_id(cell);
            let expected = if id == *loses {
                Some(0.0)
            } else {
                reference[id]
            };
            assert_eq!(
                theirs[id], expected,
                "{name}/{student}/{id}: only {loses} should lose its points\n{log}"
            );
        }
    }
}

#[test]
fn autograde_threads_and_processes_scores_each_broken_answer_down_alone() {
    check_autograde(
        "threads-and-processes",
        &[
            // A wrong answer: the adder puts 0 to 9 on the list instead of 1 to 10.
            (
                "wrong-answer",
                "q4-answer",
                "for number in 1..=count",
                "for number in 0..count",
                "q4-tests",
            ),
            // An answer that does not compile.
            (
                "compile-error",
                "q7-answer",
                "(1..=n).product()",
                "(1..=n).product::<u32>()",
                "q7-tests",
            ),
        ],
    );
}

#[test]
fn autograde_multiprocessing_scores_a_panicking_answer_down_alone() {
    check_autograde(
        "multiprocessing",
        &[(
            "panicking-answer",
            "q3-answer",
            "    let evens = Process::spawn(",
            "    assert!(n > 100, \"only large numbers are done: {n}\");\n    let evens = Process::spawn(",
            "q3-tests",
        )],
    );
}
