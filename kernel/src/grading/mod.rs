//! The assignment tools: `release` writes student versions, `grade` scores submissions
//! against their source assignment, `merge` joins the gradebooks of sharded runs.
//!
//! Each submission is rebuilt from the source: the student's answer cells, and the
//! source's own locked cells and tests (hidden ones included), so a test cannot be
//! weakened. It then runs in a fresh kernel inside a [`Sandbox`] (unless the machine
//! already boxes each submission: `--no-sandbox`), and every graded cell earns its
//! points if it passed, or none with the reason it failed. The results go to
//! `result.json`, a feedback notebook, the gradebook and, for Gradescope, `results.json`.

mod assemble;
pub(crate) mod assignment;
mod gradescope;
mod report;
mod score;
mod shard;

use crate::jupyter::notebook;
use crate::run::execute::{execute_notebook, CellStatus, RunOptions};
use crate::sandbox::{Limits, Sandbox};
use crate::Error;
use assemble::{assemble, student_name};
use assignment::marking;
use nbformat::v4::Notebook;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub(crate) use gradescope::write_autograder;
pub(crate) use shard::Shard;

/// One graded cell's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct QuestionResult {
    pub(crate) grade_id: String,
    pub(crate) points: f64,
    pub(crate) max_points: f64,
    /// Why points were lost; `None` when all were earned.
    pub(crate) reason: Option<String>,
    /// A written (markdown) answer: it scores nothing here and waits for a person.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) manual: bool,
}

/// One submission's result, written as `result.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SubmissionResult {
    pub(crate) student: String,
    pub(crate) submission: PathBuf,
    pub(crate) score: f64,
    pub(crate) max_score: f64,
    pub(crate) questions: Vec<QuestionResult>,
    /// What the grader did or found beyond scores: restored cells, lost kernels.
    pub(crate) notes: Vec<String>,
    pub(crate) seconds: f64,
}

/// How to grade.
#[derive(Debug, Clone)]
pub(crate) struct GradeOptions {
    pub(crate) run: RunOptions,
    pub(crate) limits: Limits,
    /// Where `<student>/result.json` and `<student>/feedback.ipynb` go.
    pub(crate) output: PathBuf,
    /// Whether each kernel runs in cgroups of its own; off where the machine already
    /// boxes each submission (a Gradescope container, a Kubernetes pod).
    pub(crate) sandbox: bool,
    /// Also write the (single) submission's result here, in Gradescope's format.
    pub(crate) gradescope: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GradeError {
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

/// Why `submission` is no submission of `source` at all (the lecture handed in instead
/// of the assignment, say): it holds none of the source's answer and test cells.
fn not_this_assignment(
    source_path: &Path,
    source: &Notebook,
    submission: &Notebook,
) -> Option<String> {
    let marked: Vec<String> = source
        .cells
        .iter()
        .filter(|cell| marking(cell).is_some_and(|mark| mark.grade || mark.solution))
        .map(assemble::key)
        .collect();
    let submitted: std::collections::HashSet<String> =
        submission.cells.iter().map(assemble::key).collect();
    if marked.is_empty() || marked.iter().any(|key| submitted.contains(key)) {
        return None;
    }
    let graded = source
        .cells
        .iter()
        .filter(|cell| marking(cell).is_some_and(|mark| mark.grade))
        .count();
    let name = source_path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy();
    Some(format!(
        "not a submission of {name}: none of its {graded} graded cells are present"
    ))
}

/// The result of a submission that could not be graded at all: every question loses its
/// points for `reason`. The feedback notebook is the student version with the summary.
fn ungraded(
    source: &Notebook,
    student: &str,
    submission_path: &Path,
    reason: String,
    started: Instant,
    options: &GradeOptions,
) -> Result<SubmissionResult, GradeError> {
    let questions: Vec<QuestionResult> = source
        .cells
        .iter()
        .filter_map(|cell| {
            let mark = marking(cell).filter(|mark| mark.grade)?;
            Some(QuestionResult {
                grade_id: mark.grade_id.clone().unwrap_or_default(),
                points: 0.0,
                max_points: mark.points,
                reason: Some(reason.clone()),
                manual: !assignment::is_code(cell),
            })
        })
        .collect();
    let result = SubmissionResult {
        student: student.to_owned(),
        submission: submission_path.to_owned(),
        score: 0.0,
        max_score: questions.iter().map(|q| q.max_points).sum(),
        questions,
        notes: vec![reason],
        seconds: started.elapsed().as_secs_f64(),
    };
    let feedback = assignment::release(source).unwrap_or_else(|_| source.clone());
    report::write_outputs(&result, feedback, &options.output.join(student))?;
    Ok(result)
}

/// Grades one submission; writes its `result.json` and `feedback.ipynb`.
fn grade_one(
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
        // An unusable submission scores nothing, with the reason at every question, and
        // does not stop the batch; no kernel runs for it.
        Err(error) => {
            let reason = format!("not a readable notebook: {error}");
            return ungraded(source, &student, submission_path, reason, started, options);
        }
    };
    if let Some(reason) = not_this_assignment(source_path, source, &submission) {
        return ungraded(source, &student, submission_path, reason, started, options);
    }
    let (mut graded, assembled_notes) = assemble(source, &submission)
        .map_err(|error| GradeError::Assignment(source_path.to_owned(), error))?;
    notes.extend(assembled_notes);

    // The kernel runs where the source lives, so the source's `:dep` path resolves.
    let cwd = source_path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let sandbox = match options.sandbox {
        true => Some(Sandbox::create(options.limits)?),
        false => None,
    };
    // A test that stops at a `?` fails by itself: the kernel replies `Err` for it.
    let reports = execute_notebook(&mut graded, cwd, &options.run, sandbox.as_ref(), |_| {});
    if let Some(sandbox) = sandbox {
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
    }

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
    let questions = score::score(&graded, &failures, reports.is_ok(), &mut notes);
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
    report::write_outputs(&result, graded, &options.output.join(&student))?;
    Ok(result)
}

/// Grades `submissions` (files or folders of notebooks) against `source_path`, `jobs`
/// at a time; prints progress and a table; writes the gradebook.
pub(crate) fn grade_all(
    source_path: &Path,
    submissions: &[PathBuf],
    options: &GradeOptions,
    jobs: usize,
    shard: Option<Shard>,
) -> Result<(), Error> {
    let source = notebook::load(source_path).map_err(Error::bad_input)?;
    assignment::validate(&source)
        .map_err(|error| Error::BadInput(format!("{}: {error}", source_path.display())))?;
    let mut paths = notebook::collect(submissions).map_err(Error::bad_input)?;
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
    if options.gradescope.is_some() && paths.len() != 1 {
        return Err(Error::BadInput(format!(
            "--gradescope writes one submission's result, and {} submissions were found; give the folder of one student's upload",
            paths.len()
        )));
    }
    // Probe the sandbox once, so a machine that cannot contain code says so up front.
    if options.sandbox {
        Sandbox::create(options.limits).map_err(|error| {
            Error::BadInput(format!(
                "{error}; on a machine that already isolates each submission, pass --no-sandbox"
            ))
        })?;
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
                                println!("{}", report::progress_line(done.len(), total, &result));
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
    if let (Some(path), Some(result)) = (&options.gradescope, results.first()) {
        let json = serde_json::to_string_pretty(&gradescope::results_json(result))
            .expect("results serialize");
        std::fs::write(path, json + "\n")
            .map_err(|error| Error::Failed(format!("cannot write {}: {error}", path.display())))?;
        println!("gradescope results: {}", path.display());
    }
    print!("{}", report::table(&results));
    let name = match shard {
        Some(shard) => format!("gradebook-shard-{}-of-{}.csv", shard.index, shard.count),
        None => "gradebook.csv".to_owned(),
    };
    let path = options.output.join(name);
    std::fs::create_dir_all(&options.output)
        .and_then(|_| std::fs::write(&path, report::gradebook(&results)))
        .map_err(|error| Error::Failed(format!("cannot write {}: {error}", path.display())))?;
    println!("gradebook: {}", path.display());
    if failed {
        return Err(Error::Failed(
            "some submissions could not be graded (see above)".into(),
        ));
    }
    Ok(())
}

/// `merge`: joins the results of sharded `grade` runs into one gradebook.
pub(crate) fn merge(dirs: &[PathBuf], output: &Path) -> Result<(), Error> {
    let results = report::collect_results(dirs).map_err(Error::bad_input)?;
    print!("{}", report::table(&results));
    std::fs::write(output, report::gradebook(&results))
        .map_err(|error| Error::Failed(format!("cannot write {}: {error}", output.display())))?;
    println!(
        "gradebook: {} ({} students)",
        output.display(),
        results.len()
    );
    Ok(())
}

/// `release`: writes the student version of each source notebook into `output`. Every
/// source is checked before anything is written.
pub(crate) fn release_all(sources: &[PathBuf], output: &Path) -> Result<(), Error> {
    let notebooks = notebook::collect(sources).map_err(Error::bad_input)?;
    // Check every source before writing anything.
    let mut released = Vec::new();
    for path in &notebooks {
        let student = notebook::load(path)
            .map_err(|error| error.to_string())
            .and_then(|source| {
                assignment::release(&source).map_err(|error| format!("{}: {error}", path.display()))
            });
        released.push((path, student.map_err(Error::BadInput)?));
    }
    std::fs::create_dir_all(output)
        .map_err(|error| Error::BadInput(format!("cannot create {}: {error}", output.display())))?;
    for (path, student) in released {
        let target = output.join(path.file_name().unwrap_or_default());
        if target.canonicalize().ok() == path.canonicalize().ok() {
            return Err(Error::BadInput(format!(
                "{} would overwrite its source; choose another --output",
                target.display()
            )));
        }
        notebook::save(&target, &student).map_err(|error| Error::Failed(error.to_string()))?;
        println!("released {} -> {}", path.display(), target.display());
    }
    Ok(())
}

/// Results to test the writers with.
#[cfg(test)]
pub(crate) mod sample {
    use super::{QuestionResult, SubmissionResult};

    fn question(id: &str, points: f64, reason: Option<&str>, manual: bool) -> QuestionResult {
        QuestionResult {
            grade_id: id.into(),
            points,
            max_points: 2.0,
            reason: reason.map(str::to_owned),
            manual,
        }
    }

    /// A test passed, a test failed, and a written answer waiting for a person.
    pub(crate) fn alice() -> SubmissionResult {
        SubmissionResult {
            student: "alice".into(),
            submission: "alice.ipynb".into(),
            score: 2.0,
            max_score: 6.0,
            questions: vec![
                question("q1-tests", 2.0, None, false),
                question("q2-tests", 0.0, Some("panic: not yet implemented"), false),
                question("q3-essay", 0.0, Some("a written answer"), true),
            ],
            notes: vec!["q2-answer failed: panic: not yet implemented".into()],
            seconds: 12.4,
        }
    }
}
