//! The course's graded assignments in `notebooks/assignments/`, released and graded with
//! the `conclab-kernel` binary: the student version keeps no solution and no hidden test;
//! the source itself graded as a submission gets full marks; and a submission with every
//! answer right but one loses exactly that question's points, with a reason that names
//! the failure. Needs the `conclab` kernel (`conclab-kernel setup`) and cgroup v1, as
//! grading itself does.

#[path = "support/command.rs"]
mod command;
#[path = "support/notebook_json.rs"]
mod notebook_json;

use notebook_json::{cells, flag, grade_id, nbgrader, read_json, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// No grading run may take longer than this: grading must never hang.
const HANG_GUARD: Duration = Duration::from_secs(900);

/// One grading run (two kernels, `--jobs 2`) at a time: on a 2-core machine more kernels
/// starve each other's compiles until a cell's time limit lands in the middle of one.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../notebooks/assignments")
        .join(format!("{name}.ipynb"))
}

fn run(args: &[&std::ffi::OsStr]) -> String {
    let (status, report) = command::run_with_guard(
        Command::new(env!("CARGO_BIN_EXE_conclab-kernel")).args(args),
        HANG_GUARD,
    );
    assert!(
        status.success(),
        "conclab-kernel {args:?} failed:\n{report}"
    );
    report
}

/// Releases `name` into `dir` and returns the student version.
fn release(name: &str, dir: &Path) -> Value {
    run(&[
        "release".as_ref(),
        source(name).as_os_str(),
        "-o".as_ref(),
        dir.as_os_str(),
    ]);
    read_json(&dir.join(format!("{name}.ipynb")))
}

/// A cell's lines outside and inside its `BEGIN HIDDEN TESTS` regions, trimmed.
fn split_hidden(text: &str) -> (Vec<&str>, Vec<&str>) {
    let (mut visible, mut hidden) = (Vec::new(), Vec::new());
    let mut inside = false;
    for line in text.lines() {
        if line.contains("BEGIN HIDDEN TESTS") {
            inside = true;
        } else if line.contains("END HIDDEN TESTS") {
            inside = false;
        } else if inside {
            hidden.push(line.trim());
        } else {
            visible.push(line.trim());
        }
    }
    (visible, hidden)
}

fn check_release(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source_nb = read_json(&source(name));
    let student = release(name, dir.path());
    let (source_cells, student_cells) = (cells(&source_nb), cells(&student));
    assert_eq!(
        source_cells.len(),
        student_cells.len(),
        "{name}: cells lost"
    );
    let mut answers = 0;
    let mut hidden = 0;
    for (original, released) in source_cells.iter().zip(student_cells) {
        let id = grade_id(original);
        assert!(!id.is_empty(), "{name}: a cell without nbgrader metadata");
        assert_eq!(grade_id(released), id, "{name}: cells out of order");
        assert_eq!(original["cell_type"], released["cell_type"]);
        let theirs = text(released);
        for marker in ["BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"] {
            assert!(
                !theirs.contains(marker),
                "{name}/{id}: `{marker}` left in:\n{theirs}"
            );
        }
        if released["cell_type"] == "code" {
            assert_eq!(
                released["outputs"],
                Value::Array(vec![]),
                "{name}/{id}: outputs"
            );
            assert!(released["execution_count"].is_null(), "{name}/{id}: count");
            // The source was saved with its outputs.
            assert!(
                original["execution_count"].is_number(),
                "{name}/{id}: source not run"
            );
        }
        if flag(original, "solution") {
            answers += 1;
            if released["cell_type"] == "code" {
                assert!(
                    theirs.contains("todo!()"),
                    "{name}/{id}: no stub:\n{theirs}"
                );
                // The signatures stay; the bodies go.
                assert!(theirs.contains("fn "), "{name}/{id}: signatures lost");
                for line in text(original).lines() {
                    let line = line.trim();
                    if line.starts_with("let ") {
                        assert!(
                            !theirs.contains(line),
                            "{name}/{id}: solution line left: {line}"
                        );
                    }
                }
            } else {
                assert_eq!(
                    theirs.trim(),
                    "YOUR ANSWER HERE",
                    "{name}/{id}: model answer left"
                );
            }
        } else {
            assert!(
                flag(original, "locked"),
                "{name}/{id}: neither answer nor locked"
            );
            assert_eq!(released["metadata"]["editable"], false, "{name}/{id}");
        }
        // nbgrader's MD5 checksum, in every marked cell: a locked cell's detects an edit,
        // an answer's an answer left as released.
        let sum = nbgrader(released)["checksum"].as_str().unwrap_or("");
        assert_eq!(sum.len(), 32, "{name}/{id}: no checksum");
        assert_eq!(released["metadata"]["deletable"], false, "{name}/{id}");
        if flag(original, "grade") && original["cell_type"] == "markdown" {
            assert!(flag(original, "solution"), "{name}/{id}: a graded text");
        }
        if flag(original, "grade") && original["cell_type"] == "code" {
            assert!(nbgrader(original)["points"].as_f64().unwrap_or(0.0) > 0.0);
            // The hidden lines that say something of their own (not a lone bracket, not
            // a line that also occurs among the visible ones) must all be gone.
            let whole = text(original);
            let (visible, hidden_text) = split_hidden(&whole);
            let secret: Vec<&str> = hidden_text
                .into_iter()
                .filter(|line| line.len() >= 12 && !visible.contains(line))
                .collect();
            assert!(
                !secret.is_empty(),
                "{name}/{id}: a test cell without hidden tests"
            );
            let student_lines: Vec<&str> = theirs.lines().map(str::trim).collect();
            hidden += 1;
            for line in &secret {
                assert!(
                    !student_lines.contains(line),
                    "{name}/{id}: hidden test left: {line}"
                );
            }
            // What the student sees of the test still runs something.
            assert!(
                theirs.contains("assert!"),
                "{name}/{id}: no visible test left"
            );
        }
    }
    assert!(
        answers >= 6 && hidden >= 5,
        "{name}: {answers} answers, {hidden} tests"
    );
}

#[test]
fn released_threads_and_processes_has_no_solution_or_hidden_test() {
    check_release("threads-and-processes");
}

#[test]
fn released_multiprocessing_has_no_solution_or_hidden_test() {
    check_release("multiprocessing");
}

/// A submission with one wrong answer: `answer` is the grade id of the answer cell,
/// changed by replacing `from` with `to` in the reference answer; `test` is the graded
/// cell that must then fail, with `reason` in its reason.
struct Wrong {
    student: &'static str,
    answer: &'static str,
    from: &'static str,
    to: &'static str,
    test: &'static str,
    reason: &'static str,
}

/// Writes the submissions into `dir`: the source itself as `reference.ipynb`, and for
/// each wrong answer the released student version with every answer filled in from the
/// source except that one.
fn write_submissions(name: &str, dir: &Path, wrong: &[Wrong]) -> Vec<PathBuf> {
    let source_nb = read_json(&source(name));
    let answers: std::collections::HashMap<&str, String> = cells(&source_nb)
        .iter()
        .filter(|cell| flag(cell, "solution"))
        .map(|cell| (grade_id(cell), text(cell)))
        .collect();
    let student = release(name, &dir.join("released"));
    let reference = dir.join("reference.ipynb");
    std::fs::copy(source(name), &reference).unwrap();
    let mut paths = vec![reference];
    for case in wrong {
        let mut submission = student.clone();
        let mut changed = false;
        for cell in submission["cells"].as_array_mut().unwrap() {
            if !flag(cell, "solution") {
                continue;
            }
            let id = grade_id(cell).to_owned();
            let mut answer = answers[id.as_str()].clone();
            if id == case.answer {
                assert!(
                    answer.contains(case.from),
                    "{name}/{id}: the reference answer no longer contains {:?}",
                    case.from
                );
                answer = answer.replacen(case.from, case.to, 1);
                changed = true;
            }
            cell["source"] = Value::String(answer);
        }
        assert!(changed, "{name}: no answer cell {}", case.answer);
        let path = dir.join(format!("{}.ipynb", case.student));
        std::fs::write(&path, serde_json::to_string_pretty(&submission).unwrap()).unwrap();
        paths.push(path);
    }
    paths
}

/// One grading run of `submissions` into `out`, two kernels at a time; the report.
fn grade(source_path: &Path, submissions: &[PathBuf], out: &Path) -> String {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "grade".as_ref(),
        "--source".as_ref(),
        source_path.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        "--jobs".as_ref(),
        "2".as_ref(),
        // Generous: a cell's compile waits for cargo's lock while other kernels build.
        "--timeout".as_ref(),
        "60".as_ref(),
    ];
    args.extend(submissions.iter().map(|path| path.as_os_str()));
    let _turn = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    run(&args)
}

fn grade_and_check(name: &str, wrong: &[Wrong]) {
    let dir = tempfile::tempdir().unwrap();
    let submissions = dir.path().join("submissions");
    std::fs::create_dir_all(&submissions).unwrap();
    let paths = write_submissions(name, &submissions, wrong);
    let out = dir.path().join("graded");
    let source_path = source(name);
    let started = Instant::now();
    let report = grade(&source_path, &paths, &out);
    eprintln!(
        "{name}: graded {} submissions in {:.1} s\n{report}",
        paths.len(),
        started.elapsed().as_secs_f64()
    );
    let source_nb = read_json(&source_path);
    let points: Vec<(String, f64)> = cells(&source_nb)
        .iter()
        .filter(|cell| flag(cell, "grade"))
        .map(|cell| {
            let points = nbgrader(cell)["points"].as_f64().unwrap();
            (grade_id(cell).to_owned(), points)
        })
        .collect();
    let max_score: f64 = points.iter().map(|(_, p)| p).sum();
    // Written answers wait for a person: the tests' points are all a run can earn.
    let total: f64 = cells(&source_nb)
        .iter()
        .filter(|cell| flag(cell, "grade") && cell["cell_type"] == "code")
        .map(|cell| nbgrader(cell)["points"].as_f64().unwrap())
        .sum();
    assert!(total < max_score, "{name}: no written answer is graded");
    let is_manual = |question: &Value| question["manual"] == true;
    let result = |student: &str| {
        let path = out.join(student).join("result.json");
        assert!(
            out.join(student).join("feedback.ipynb").is_file(),
            "{student}: feedback"
        );
        read_json(&path)
    };

    let reference = result("reference");
    assert_eq!(
        reference["score"].as_f64(),
        Some(total),
        "{name}: reference {reference:#}\n{report}"
    );
    assert_eq!(reference["max_score"].as_f64(), Some(max_score));
    // The source's own test cells (hidden tests included) count as unedited.
    assert_eq!(
        reference["notes"],
        serde_json::json!([]),
        "{name}: reference notes"
    );
    for question in reference["questions"].as_array().unwrap() {
        assert!(
            question["reason"].is_null() || is_manual(question),
            "{name}: reference lost points: {question}"
        );
    }

    for case in wrong {
        let graded = result(case.student);
        let lost = points
            .iter()
            .find(|(id, _)| id == case.test)
            .expect("a graded cell")
            .1;
        assert_eq!(
            graded["score"].as_f64(),
            Some(total - lost),
            "{name}/{}: expected to lose exactly the {lost} points of {}: {graded:#}",
            case.student,
            case.test
        );
        // Built from the released version, nothing locked was changed.
        assert!(
            !graded["notes"].to_string().contains("was edited"),
            "{name}/{}: {graded:#}",
            case.student
        );
        for question in graded["questions"].as_array().unwrap() {
            let reason = question["reason"].as_str();
            if question["grade_id"] == case.test {
                assert_eq!(question["points"].as_f64(), Some(0.0));
                let reason = reason.unwrap_or_else(|| panic!("{}: no reason", case.student));
                assert!(
                    reason.contains(case.reason),
                    "{name}/{}: expected {:?} in the reason {reason:?}",
                    case.student,
                    case.reason
                );
            } else {
                assert!(
                    reason.is_none() || is_manual(question),
                    "{name}/{}: also lost {question}",
                    case.student
                );
            }
        }
    }
    let gradebook = std::fs::read_to_string(out.join("gradebook.csv")).unwrap();
    assert_eq!(gradebook.lines().count(), paths.len() + 1, "{gradebook}");
}

#[test]
fn threads_and_processes_grades_the_reference_full_and_one_wrong_answer_down() {
    grade_and_check(
        "threads-and-processes",
        &[
            Wrong {
                // An off-by-one adder: 0 to 9 instead of 1 to 10.
                student: "wrong-q4",
                answer: "q4-answer",
                from: "for number in 1..=count",
                to: "for number in 0..count",
                test: "q4-tests",
                reason:
                    "the remover should take 1 to 10 in the order they were added, it took [0, 1,",
            },
            Wrong {
                // A factorial that does not compile: the error stays in its own question.
                student: "wrong-q7",
                answer: "q7-answer",
                from: "(1..=n).product()",
                to: "(1..=n).product::<u32>()",
                test: "q7-tests",
                reason: "`factorials_in_pool` is not defined, because q7-answer did not finish: compile error",
            },
        ],
    );
}

#[test]
fn multiprocessing_grades_the_reference_full_and_one_wrong_answer_down() {
    grade_and_check(
        "multiprocessing",
        &[
            Wrong {
                // Each process joined as soon as it is started: they run one after another.
                student: "wrong-q6",
                answer: "q6-answer",
                from: ".map(|&number| Process::spawn(move || work(number)))\n        .collect::<Result<Vec<_>, _>>()?;\n    children.into_iter().map(|child| child.join()).collect()",
                to: ".map(|&number| Process::spawn(move || work(number))?.join())\n        .collect();\n    children",
                test: "q6-tests",
                reason: "the four processes should run at the same time",
            },
            Wrong {
                // Doubles instead of squares.
                student: "wrong-q5",
                answer: "q5-answer",
                from: "x * x",
                to: "x + x",
                test: "q5-tests",
                reason: "expected the squares of [3, 4, 5, 6, 6, 7, 87, 8, 8] in that order, got [6, 8, 10,",
            },
        ],
    );
}
