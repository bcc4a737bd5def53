//! `conclab-kernel grade`: score submissions against their source assignment.
//!
//! Each submission is rebuilt from the source: the student's answer cells, and the
//! source's own locked cells and tests (hidden ones included), so a test cannot be
//! weakened. It then runs in a fresh kernel inside a [`Sandbox`], and every graded cell
//! earns its points if it passed, or none with the reason it failed.

use crate::assignment::{self, marking, Marking};
use crate::execute::{execute_notebook, CellStatus, RunOptions};
use crate::notebook;
use crate::sandbox::{Limits, Sandbox};
use nbformat::v4::{Cell, Notebook};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One graded cell's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuestionResult {
    pub grade_id: String,
    pub points: f64,
    pub max_points: f64,
    /// Why points were lost; `None` when all were earned.
    pub reason: Option<String>,
    /// A written (markdown) answer: it scores nothing here and waits for a person.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
}

/// One submission's result, written as `result.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubmissionResult {
    pub student: String,
    pub submission: PathBuf,
    pub score: f64,
    pub max_score: f64,
    pub questions: Vec<QuestionResult>,
    /// What the grader did or found beyond scores: restored cells, lost kernels.
    pub notes: Vec<String>,
    pub seconds: f64,
}

/// How to grade.
#[derive(Debug, Clone)]
pub struct GradeOptions {
    pub run: RunOptions,
    pub limits: Limits,
    /// Where `<student>/result.json` and `<student>/feedback.ipynb` go.
    pub output: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum GradeError {
    #[error(transparent)]
    Notebook(#[from] notebook::NotebookError),
    #[error("{0}: {1}")]
    Assignment(PathBuf, assignment::AssignmentError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The key that ties a submission's cell to the source's: the nbgrader id, else the
/// cell id.
fn key(cell: &Cell) -> String {
    marking(cell)
        .and_then(|mark| mark.grade_id)
        .unwrap_or_else(|| cell.id().as_str().to_owned())
}

/// Rebuilds the notebook to run: the source's cells in the source's order, with each
/// answer cell taken from the submission, and cells the student added kept where they
/// stood. Returns it with notes on anything restored.
pub fn assemble(
    source: &Notebook,
    submission: &Notebook,
) -> Result<(Notebook, Vec<String>), assignment::AssignmentError> {
    let released = assignment::release(source)?;
    let released_by_key: HashMap<String, &Cell> = released
        .cells
        .iter()
        .map(|cell| (key(cell), cell))
        .collect();
    let source_keys: std::collections::HashSet<String> = source.cells.iter().map(key).collect();
    let mut submitted: HashMap<String, &Cell> = HashMap::new();
    // Cells the student added, each after the last source cell that came before it.
    let mut added_after: HashMap<Option<String>, Vec<Cell>> = HashMap::new();
    let mut last_known: Option<String> = None;
    for cell in &submission.cells {
        let id = key(cell);
        if source_keys.contains(&id) {
            submitted.insert(id.clone(), cell);
            last_known = Some(id);
        } else {
            added_after
                .entry(last_known.clone())
                .or_default()
                .push(cell.clone());
        }
    }

    let mut notes = Vec::new();
    let mut cells = added_after.remove(&None).unwrap_or_default();
    for cell in &source.cells {
        let id = key(cell);
        let mark = marking(cell).unwrap_or_default();
        let placed = if mark.solution {
            match submitted.get(&id) {
                Some(answer) => (*answer).clone(),
                None => {
                    notes.push(format!(
                        "answer cell '{id}' is missing from the submission; graded as unanswered"
                    ));
                    released_by_key[&id].clone()
                }
            }
        } else {
            if let (
                Some(theirs),
                Some(Marking {
                    checksum: Some(sum),
                    ..
                }),
            ) = (
                submitted.get(&id),
                released_by_key.get(&id).and_then(|cell| marking(cell)),
            ) {
                // The source itself (hidden tests and all) is not an edit either.
                let theirs = assignment::checksum(theirs);
                if theirs != sum && theirs != assignment::checksum(cell) {
                    notes.push(format!("locked cell '{id}' was edited in the submission; the original was put back"));
                }
            }
            cell.clone()
        };
        cells.push(placed);
        cells.extend(added_after.remove(&Some(id)).unwrap_or_default());
    }
    let mut assembled = source.clone();
    assembled.cells = cells;
    for cell in &mut assembled.cells {
        if let Cell::Code {
            outputs,
            execution_count,
            ..
        } = cell
        {
            outputs.clear();
            *execution_count = None;
        }
    }
    Ok((assembled, notes))
}

/// The student's name: the file's stem, or its folder's name when the file is named
/// like the assignment (`alice/assignment.ipynb`).
pub fn student_name(submission: &Path, source: &Path) -> String {
    let stem = submission.file_stem().unwrap_or_default().to_string_lossy();
    if Some(stem.as_ref()) == source.file_stem().map(|s| s.to_string_lossy()).as_deref() {
        if let Some(dir) = submission.parent().and_then(Path::file_name) {
            return dir.to_string_lossy().into_owned();
        }
    }
    stem.into_owned()
}

/// Grades one submission; writes its `result.json` and `feedback.ipynb`.
pub fn grade_one(
    source_path: &Path,
    source: &Notebook,
    submission_path: &Path,
    options: &GradeOptions,
) -> Result<SubmissionResult, GradeError> {
    let started = Instant::now();
    let student = student_name(submission_path, source_path);
    let mut notes = Vec::new();
    let submission = match notebook::load(submission_path) {
        Ok(submission) => submission,
        Err(error) => {
            // An unreadable submission scores nothing but does not stop the batch.
            notes.push(format!("the submission could not be read: {error}"));
            let mut empty = source.clone();
            empty
                .cells
                .retain(|cell| !marking(cell).is_some_and(|mark| mark.solution));
            empty
        }
    };
    let (mut graded, assembled_notes) = assemble(source, &submission)
        .map_err(|error| GradeError::Assignment(source_path.to_owned(), error))?;
    notes.extend(assembled_notes);

    // The kernel runs where the source lives, so the source's `:dep` path resolves.
    let cwd = source_path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let sandbox = Sandbox::create(options.limits)?;
    // A test that stops at a `?` fails by itself: the kernel replies `Err` for it.
    let reports = execute_notebook(&mut graded, cwd, &options.run, Some(&sandbox), |_| {});
    if sandbox.task_limit_hit() {
        notes.push(format!(
            "the code tried to run more than {} tasks at once; forks beyond that were refused",
            options.limits.max_tasks
        ));
    }
    if sandbox.memory_limit_hit() {
        notes.push(format!(
            "the code reached the memory limit of {} MiB",
            options.limits.memory_bytes >> 20
        ));
    }
    let leftovers = sandbox.kill_all();
    if leftovers > 0 {
        notes.push(format!(
            "{leftovers} process(es) the code left running were killed"
        ));
    }
    drop(sandbox);

    for report in reports.iter().flatten() {
        if report.replayed > 0 {
            notes.push(format!(
                "the kernel lost its state before cell {}; {} earlier cell(s) were run again first",
                report.index, report.replayed
            ));
        }
    }
    let failures: HashMap<usize, String> = match &reports {
        Ok(reports) => reports
            .iter()
            .filter_map(|report| match &report.status {
                CellStatus::Failed(failure) => Some((report.index, failure.summary())),
                _ => None,
            })
            .collect(),
        Err(error) => {
            notes.push(format!("the kernel did not start: {error}"));
            HashMap::new()
        }
    };
    let questions = score(&graded, &failures, reports.is_ok(), &mut notes);
    let leftovers_note = notes.iter().position(|note| note.contains("left running"));
    if let Some(position) = leftovers_note {
        // Said last: it is about the end of the run.
        let note = notes.remove(position);
        notes.push(note);
    }
    let result = SubmissionResult {
        student: student.clone(),
        submission: submission_path.to_owned(),
        score: questions.iter().map(|q| q.points).sum(),
        max_score: questions.iter().map(|q| q.max_points).sum(),
        questions,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_outputs(&result, graded, &options.output.join(&student))?;
    Ok(result)
}

/// Scores each graded cell of an executed notebook: its points when it ran and passed,
/// none with the reason otherwise. Failed cells that are not graded become notes, and
/// the latest of them is named beside a test that fails after it, since the test most
/// likely fails because of it. A graded written (markdown) answer scores nothing here:
/// it waits for a person, as nbgrader's manually graded answers do.
fn score(
    graded: &Notebook,
    failures: &HashMap<usize, String>,
    kernel_started: bool,
    notes: &mut Vec<String>,
) -> Vec<QuestionResult> {
    let mut questions = Vec::new();
    let mut earlier_failure: Option<String> = None;
    for (index, cell) in graded.cells.iter().enumerate() {
        let mark = marking(cell);
        if !mark.as_ref().is_some_and(|mark| mark.grade) {
            if let Some(failure) = failures.get(&index) {
                let name = mark
                    .and_then(|mark| mark.grade_id)
                    .unwrap_or_else(|| format!("cell {index}"));
                notes.push(format!("{name} failed: {failure}"));
                earlier_failure = Some(format!("{name} failed first: {failure}"));
            }
            continue;
        }
        let mark = mark.expect("graded cells have a marking");
        let (manual, ran) = match cell {
            Cell::Code {
                execution_count, ..
            } => (false, execution_count.is_some()),
            _ => (true, false),
        };
        let reason = if manual {
            Some(
                "a written answer: left for a person to grade, not scored automatically".to_owned(),
            )
        } else if !kernel_started {
            Some("not run: the kernel did not start".to_owned())
        } else if let Some(failure) = failures.get(&index) {
            Some(match &earlier_failure {
                Some(earlier) => format!("{failure} ({earlier})"),
                None => failure.clone(),
            })
        } else if !ran {
            Some("not run".to_owned())
        } else {
            None
        };
        questions.push(QuestionResult {
            grade_id: mark.grade_id.clone().unwrap_or_default(),
            points: if reason.is_none() { mark.points } else { 0.0 },
            max_points: mark.points,
            reason,
            manual,
        });
    }
    questions
}

fn write_outputs(
    result: &SubmissionResult,
    mut feedback: Notebook,
    dir: &Path,
) -> Result<(), GradeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GradeError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_string_pretty(result).expect("results serialize") + "\n";
    let path = dir.join("result.json");
    std::fs::write(&path, json).map_err(io(&path))?;

    let mut summary = format!(
        "# Feedback for {}\n\n**Score: {} / {}**\n\n| question | points | why points were lost |\n| --- | --- | --- |\n",
        result.student, result.score, result.max_score
    );
    for question in &result.questions {
        summary.push_str(&format!(
            "| {} | {} / {} | {} |\n",
            question.grade_id,
            question.points,
            question.max_points,
            question.reason.as_deref().unwrap_or("").replace('|', "\\|")
        ));
    }
    for note in &result.notes {
        summary.push_str(&format!("\n- {note}"));
    }
    let mut cell: Cell = serde_json::from_value(serde_json::json!({
        "cell_type": "markdown",
        "id": "conclab-feedback",
        "metadata": {},
        "source": summary,
    }))
    .expect("a markdown cell deserializes");
    assignment::set_source(&mut cell, &summary);
    feedback.cells.insert(0, cell);
    notebook::save(&dir.join("feedback.ipynb"), &feedback)?;
    Ok(())
}

/// The gradebook: a row per student, a column per question.
pub fn gradebook(results: &[SubmissionResult]) -> String {
    let mut ids: Vec<String> = Vec::new();
    for result in results {
        for question in &result.questions {
            if !ids.contains(&question.grade_id) {
                ids.push(question.grade_id.clone());
            }
        }
    }
    let quote = |text: &str| {
        if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    };
    let mut csv = format!(
        "student,score,max_score,{},seconds\n",
        ids.iter().map(|id| quote(id)).collect::<Vec<_>>().join(",")
    );
    let mut sorted: Vec<&SubmissionResult> = results.iter().collect();
    sorted.sort_by(|a, b| a.student.cmp(&b.student));
    for result in sorted {
        let points: Vec<String> = ids
            .iter()
            .map(|id| {
                result
                    .questions
                    .iter()
                    .find(|q| &q.grade_id == id)
                    .map(|q| q.points.to_string())
                    .unwrap_or_default()
            })
            .collect();
        csv.push_str(&format!(
            "{},{},{},{},{:.1}\n",
            quote(&result.student),
            result.score,
            result.max_score,
            points.join(","),
            result.seconds
        ));
    }
    csv
}

/// Reads every `*/result.json` below `dirs`.
pub fn collect_results(dirs: &[PathBuf]) -> Result<Vec<SubmissionResult>, GradeError> {
    let mut results = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|source| GradeError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path().join("result.json");
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|source| GradeError::Io {
                    path: path.clone(),
                    source,
                })?;
                let result = serde_json::from_str(&text).map_err(|error| GradeError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
                })?;
                results.push(result);
            }
        }
    }
    Ok(results)
}

/// Which part of a class this machine grades (`--shard I/N`, I from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("--shard takes I/N with 0 <= I < N (as Slurm's $SLURM_ARRAY_TASK_ID/N), not `{text}`")
        };
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Grades `submissions` (files or folders of notebooks) against `source_path`, `jobs`
/// at a time; prints progress and a table; writes the gradebook. Returns the exit code.
pub fn grade_all(
    source_path: &Path,
    submissions: &[PathBuf],
    options: &GradeOptions,
    jobs: usize,
    shard: Option<Shard>,
) -> i32 {
    let source = match notebook::load(source_path) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("error: {error}");
            return crate::run::EXIT_BAD_INPUT;
        }
    };
    if let Err(error) = assignment::validate(&source) {
        eprintln!("error: {}: {error}", source_path.display());
        return crate::run::EXIT_BAD_INPUT;
    }
    let mut paths = match notebook::collect(submissions) {
        Ok(paths) => paths,
        Err(error) => {
            eprintln!("error: {error}");
            return crate::run::EXIT_BAD_INPUT;
        }
    };
    let source_canonical = source_path.canonicalize().ok();
    paths.retain(|path| path.canonicalize().ok() != source_canonical);
    paths.sort();
    if let Some(shard) = shard {
        paths = paths
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % shard.count == shard.index)
            .map(|(_, path)| path)
            .collect();
    }
    // Probe the sandbox once, so a machine that cannot contain code says so up front.
    if let Err(error) = Sandbox::create(options.limits) {
        eprintln!("error: {error}");
        return crate::run::EXIT_BAD_INPUT;
    }
    let total = paths.len();
    println!(
        "grading {total} submission(s) of {} with {jobs} kernel(s) at a time",
        source_path.display()
    );
    let queue = std::sync::Mutex::new(paths.into_iter());
    let done = std::sync::Mutex::new(Vec::<SubmissionResult>::new());
    let mut failed = false;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                scope.spawn(|| -> bool {
                    let mut ok = true;
                    loop {
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                        let Some(path) = next else { return ok };
                        match grade_one(source_path, &source, &path, options) {
                            Ok(result) => {
                                let mut done = done.lock().unwrap_or_else(|p| p.into_inner());
                                done.push(result.clone());
                                println!("{}", progress_line(done.len(), total, &result));
                            }
                            Err(error) => {
                                eprintln!("error grading {}: {error}", path.display());
                                ok = false;
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            failed |= !worker.join().unwrap_or(false);
        }
    });
    let results = done.into_inner().unwrap_or_else(|p| p.into_inner());
    print!("{}", table(&results));
    let name = match shard {
        Some(shard) => format!("gradebook-shard-{}-of-{}.csv", shard.index, shard.count),
        None => "gradebook.csv".to_owned(),
    };
    let path = options.output.join(name);
    if let Err(error) = std::fs::create_dir_all(&options.output)
        .and_then(|_| std::fs::write(&path, gradebook(&results)))
    {
        eprintln!("error: cannot write {}: {error}", path.display());
        return crate::run::EXIT_CELL_FAILED;
    }
    println!("gradebook: {}", path.display());
    if failed {
        crate::run::EXIT_CELL_FAILED
    } else {
        crate::run::EXIT_OK
    }
}

fn progress_line(done: usize, total: usize, result: &SubmissionResult) -> String {
    const WIDTH: usize = 20;
    let filled = done * WIDTH / total.max(1);
    format!(
        "[{}{}] {done}/{total}  {}: {} / {} ({:.1} s)",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        result.student,
        result.score,
        result.max_score,
        result.seconds
    )
}

/// The results as an aligned text table, with the reason for each lost point.
pub fn table(results: &[SubmissionResult]) -> String {
    let mut sorted: Vec<&SubmissionResult> = results.iter().collect();
    sorted.sort_by(|a, b| a.student.cmp(&b.student));
    let width = sorted
        .iter()
        .map(|r| r.student.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!("{:<width$}  {:>7}  lost points\n", "student", "score");
    for result in sorted {
        let score = format!("{}/{}", result.score, result.max_score);
        let lost: Vec<String> = result
            .questions
            .iter()
            .filter_map(|q| {
                q.reason
                    .as_ref()
                    .map(|why| format!("{} ({} pts): {why}", q.grade_id, q.max_points - q.points))
            })
            .collect();
        out.push_str(&format!(
            "{:<width$}  {:>7}  {}\n",
            result.student,
            score,
            lost.first().map(String::as_str).unwrap_or("-")
        ));
        for more in lost.iter().skip(1) {
            out.push_str(&format!("{:<width$}  {:>7}  {more}\n", "", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A notebook as the grader sees it after the run: `(kind, grade_id, graded, ran)`.
    fn executed(cells: &[(&str, &str, bool, bool)]) -> Notebook {
        let cells: Vec<_> = cells
            .iter()
            .enumerate()
            .map(|(index, (kind, id, graded, ran))| {
                let mut cell = json!({
                    "cell_type": kind,
                    "id": format!("cell-{index}"),
                    "metadata": {"nbgrader": {
                        "schema_version": 3, "grade": graded, "solution": !graded,
                        "locked": graded, "grade_id": id, "points": 2
                    }},
                    "source": "",
                });
                if *kind == "code" {
                    cell["outputs"] = json!([]);
                    cell["execution_count"] = if *ran { json!(index + 1) } else { json!(null) };
                }
                cell
            })
            .collect();
        let text =
            json!({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).to_string();
        notebook::parse(Path::new("graded.ipynb"), &text).unwrap()
    }

    #[test]
    fn passed_tests_earn_their_points_and_failed_ones_name_the_answer_that_failed_first() {
        let graded = executed(&[
            ("code", "q1-answer", false, true),
            ("code", "q1-tests", true, true),
            ("code", "q2-answer", false, true),
            ("code", "q2-tests", true, true),
        ]);
        let failures = HashMap::from([
            (2, "panic: todo".to_owned()),
            (3, "compile error: cannot find `f`".to_owned()),
        ]);
        let mut notes = Vec::new();
        let questions = score(&graded, &failures, true, &mut notes);
        assert_eq!(questions[0].points, 2.0);
        assert_eq!(questions[0].reason, None);
        assert_eq!(questions[1].points, 0.0);
        assert_eq!(
            questions[1].reason.as_deref(),
            Some("compile error: cannot find `f` (q2-answer failed first: panic: todo)")
        );
        assert_eq!(notes, ["q2-answer failed: panic: todo"]);
    }

    #[test]
    fn written_answers_wait_for_a_person_and_unrun_tests_score_nothing() {
        let graded = executed(&[
            ("markdown", "q1-essay", true, false),
            ("code", "q2-tests", true, false),
        ]);
        let questions = score(&graded, &HashMap::new(), true, &mut Vec::new());
        assert!(questions[0].manual);
        assert_eq!(questions[0].points, 0.0);
        assert!(questions[0].reason.as_deref().unwrap().contains("person"));
        assert!(!questions[1].manual);
        assert_eq!(questions[1].reason.as_deref(), Some("not run"));

        let unstarted = score(&graded, &HashMap::new(), false, &mut Vec::new());
        assert_eq!(
            unstarted[1].reason.as_deref(),
            Some("not run: the kernel did not start")
        );
    }
}
