//! `conclab-kernel grade` against submissions that misbehave in every way a class can:
//! each is graded with the right reason within its limits, and nothing of it is left
//! running afterwards. Needs the `conclab` kernel (`conclab-kernel setup`) and cgroup v1,
//! as grading itself does.

#[path = "support/paths.rs"]
mod paths;

use paths::{fixtures, repo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn grade(tag: &str, submissions: &[PathBuf], out: &Path, extra: &[&str]) -> String {
    grade_against("assignment.ipynb", tag, submissions, out, extra)
}

fn grade_against(
    source: &str,
    tag: &str,
    submissions: &[PathBuf],
    out: &Path,
    extra: &[&str],
) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"));
    command
        .args(["grade", "--source"])
        .arg(fixtures().join(source))
        .args(["--output"])
        .arg(out)
        .args([
            "--jobs",
            "2",
            "--timeout",
            "30",
            "--notebook-timeout",
            "240",
        ])
        .args(["--max-output", "256", "--max-tasks", "256"])
        .args(extra)
        .args(submissions)
        // Every process the grader starts inherits this, so leftovers can be found.
        .env("CONCLAB_TEST_TAG", tag);
    let output = command.output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "grade failed:\n{report}");
    report
}

fn result(out: &Path, student: &str) -> Value {
    let path = out.join(student).join("result.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn processes_tagged(tag: &str) -> Vec<String> {
    let needle = format!("CONCLAB_TEST_TAG={tag}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(environ) = std::fs::read(entry.path().join("environ")) {
            if environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_bytes())
            {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!(
                    "{name}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
    }
    found
}

#[test]
fn hostile_submissions_are_graded_with_reasons_and_leave_nothing_behind() {
    let tag = format!("hostile-{}", std::process::id());
    let out = std::env::temp_dir().join(format!("conclab-grading-{tag}"));
    let report = grade(&tag, &[fixtures().join("submissions")], &out, &[]);

    let expect = |student: &str, score: f64, words: &str| {
        let result = result(&out, student);
        assert_eq!(
            result["score"].as_f64(),
            Some(score),
            "{student}: {result:#}\n{report}"
        );
        let text = result.to_string();
        assert!(
            text.contains(words),
            "{student}: expected {words:?} in {result:#}"
        );
        assert!(
            out.join(student).join("feedback.ipynb").is_file(),
            "{student}: no feedback"
        );
    };
    expect("full_marks", 2.0, "\"notes\":[]");
    expect("wrong_answer", 0.0, "assertion `left == right` failed");
    expect(
        "loop_forever",
        0.0,
        "`factorial` is not defined, because q1-answer did not finish: timeout: still running after 30 s",
    );
    expect(
        "deadlock",
        0.0,
        "is not defined, because q1-answer did not finish: timeout",
    );
    expect("fork_bomb", 0.0, "more than 256 tasks at once");
    expect(
        "print_100mb",
        0.0,
        "output limit: printed more than 256 KiB",
    );
    expect("panic", 2.0, "q1-answer failed: panic: the student gave up");
    expect(
        "exit_early",
        0.0,
        "The process running the cells exited with status 0",
    );
    expect("segfault", 0.0, "SIGABRT");
    expect("leave_child", 2.0, "left running were killed");
    expect("edit_locked_test", 0.0, "locked cell 'q1-tests' was edited");

    let gradebook = std::fs::read_to_string(out.join("gradebook.csv")).unwrap();
    assert_eq!(gradebook.lines().count(), 12, "{gradebook}");
    assert!(gradebook.starts_with("student,score,max_score,q1-tests,seconds\n"));

    let left = processes_tagged(&tag);
    assert!(
        left.is_empty(),
        "processes left behind:\n{}",
        left.join("\n")
    );
    let groups: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/pids")
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("conclab-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(groups.is_empty(), "cgroups left behind: {groups:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn shards_grade_disjoint_parts_and_merge_into_one_gradebook() {
    let tag = format!("shards-{}", std::process::id());
    let base = std::env::temp_dir().join(format!("conclab-grading-{tag}"));
    let submissions = [
        fixtures().join("submissions/full_marks.ipynb"),
        fixtures().join("submissions/wrong_answer.ipynb"),
    ];
    for shard in ["0/2", "1/2"] {
        let out = base.join(shard.replace('/', "-of-"));
        grade(&tag, &submissions, &out, &["--shard", shard]);
    }
    let merged = base.join("gradebook.csv");
    let status = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"))
        .arg("merge")
        .arg(base.join("0-of-2"))
        .arg(base.join("1-of-2"))
        .arg("--output")
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success());
    let gradebook = std::fs::read_to_string(&merged).unwrap();
    let rows: Vec<&str> = gradebook.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{gradebook}");
    assert!(rows[0].starts_with("full_marks,2,2,2,"), "{gradebook}");
    assert!(rows[1].starts_with("wrong_answer,0,2,0,"), "{gradebook}");
    let bad = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"))
        .args(["grade", "--shard", "2/2", "--source"])
        .arg(fixtures().join("assignment.ipynb"))
        .args(&submissions)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--shard takes I/N"));
    std::fs::remove_dir_all(&base).unwrap();
}

/// A test cell that stopped at a `?` never reached its asserts and earns nothing; the
/// kernel replies `Err` for it, with the error the `?` returned.
#[test]
fn a_test_that_stops_at_a_question_mark_earns_nothing() {
    let tag = format!("qmark-{}", std::process::id());
    let out = std::env::temp_dir().join(format!("conclab-grading-{tag}"));
    let report = grade_against(
        "question_mark_assignment.ipynb",
        &tag,
        &[fixtures().join("question_mark")],
        &out,
        &[],
    );
    let right = result(&out, "right");
    assert_eq!(right["score"].as_f64(), Some(2.0), "{right:#}\n{report}");
    let wrong = result(&out, "returns_err");
    assert_eq!(wrong["score"].as_f64(), Some(0.0), "{wrong:#}\n{report}");
    let reason = wrong["questions"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("`?` returned Err") && reason.contains("invalid digit found in string"),
        "{reason}"
    );
    let feedback = std::fs::read_to_string(out.join("right").join("feedback.ipynb")).unwrap();
    assert!(feedback.contains("parsed [1, 2]"), "{feedback}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn an_unreadable_or_foreign_submission_loses_every_point_for_that_reason() {
    let tag = format!("unusable-{}", std::process::id());
    let out = std::env::temp_dir().join(format!("conclab-grading-{tag}"));
    let inbox = std::env::temp_dir().join(format!("conclab-inbox-{tag}"));
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::copy(
        fixtures().join("invalid_json.ipynb"),
        inbox.join("garbled.ipynb"),
    )
    .unwrap();
    // A notebook with no nbgrader cells at all: the wrong file handed in.
    std::fs::copy(
        fixtures().join("passing.ipynb"),
        inbox.join("foreign.ipynb"),
    )
    .unwrap();
    let report = grade(&tag, std::slice::from_ref(&inbox), &out, &[]);

    let garbled = result(&out, "garbled");
    let reason = garbled["questions"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.starts_with("not a readable notebook: ")
            && reason.contains("invalid JSON at line 3, column"),
        "{reason}\n{report}"
    );
    let foreign = result(&out, "foreign");
    let reason = foreign["questions"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        reason, "not a submission of assignment: none of its 1 graded cells are present",
        "{report}"
    );
    for student in ["garbled", "foreign"] {
        assert_eq!(result(&out, student)["score"].as_f64(), Some(0.0));
        assert!(out.join(student).join("feedback.ipynb").is_file());
    }
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&inbox).unwrap();
}

#[test]
fn gradescope_gets_its_results_json_and_an_autograder_that_builds_conclab() {
    let tag = format!("gradescope-{}", std::process::id());
    let out = std::env::temp_dir().join(format!("conclab-grading-{tag}"));
    let upload = std::env::temp_dir().join(format!("conclab-upload-{tag}"));
    std::fs::create_dir_all(&upload).unwrap();
    std::fs::copy(
        fixtures().join("submissions/wrong_answer.ipynb"),
        upload.join("assignment.ipynb"),
    )
    .unwrap();
    let results = out.join("results.json");
    let gradescope = results.to_str().unwrap().to_owned();
    let report = grade(
        &tag,
        std::slice::from_ref(&upload),
        &out,
        &["--gradescope", &gradescope],
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(json["score"].as_f64(), Some(0.0), "{json:#}\n{report}");
    let test = &json["tests"][0];
    assert_eq!(test["name"], "q1-tests", "{json:#}");
    assert_eq!(test["max_score"].as_f64(), Some(2.0));
    assert!(
        test["output"]
            .as_str()
            .unwrap()
            .contains("assertion `left == right` failed"),
        "{json:#}"
    );
    assert!(json["output"].is_string() && test["visibility"] == "visible");

    // More than one submission cannot go into one results.json.
    let two = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"))
        .args(["grade", "--gradescope", &gradescope, "--source"])
        .arg(fixtures().join("assignment.ipynb"))
        .arg(fixtures().join("submissions"))
        .output()
        .unwrap();
    assert_eq!(two.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&two.stderr).contains("--gradescope writes one submission"));

    let autograder = out.join("autograder");
    let source = repo().join("notebooks/assignments/threads-and-processes.ipynb");
    let made = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"))
        .arg("gradescope")
        .arg(&source)
        .arg("-o")
        .arg(&autograder)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for script in ["setup.sh", "run_autograder"] {
        let path = autograder.join(script);
        let syntax = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(syntax.success(), "{script} is not valid bash");
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o111, 0o111, "{script} is executable");
    }
    let run = std::fs::read_to_string(autograder.join("run_autograder")).unwrap();
    assert!(run.contains("--source \"notebooks/assignments/threads-and-processes.ipynb\""));
    let tree = autograder.join("conclab");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "kernel/src/main.rs",
        "notebooks/assignments/threads-and-processes.ipynb",
    ] {
        assert!(
            tree.join(file).is_file(),
            "{file} missing from the autograder"
        );
    }
    assert!(!tree.join("target").exists(), "build output is not shipped");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&upload).unwrap();
}
