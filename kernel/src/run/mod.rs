//! The headless client: `conclab-kernel run` executes notebooks in a kernel started from
//! its kernelspec and reports cell by cell. `client` speaks to the kernel, `execute` runs
//! one notebook, `verdict` judges each cell from the kernel's replies.

pub(crate) mod client;
pub(crate) mod execute;
pub(crate) mod verdict;

use crate::jupyter::notebook;
use crate::Error;
use execute::{execute_notebook, CellReport, CellStatus, RunOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where executed notebooks go.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    /// Report only.
    Nowhere,
    /// Over each input notebook.
    InPlace,
    /// To this file (only with a single notebook).
    To(PathBuf),
}

/// Totals over every notebook of one command.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    notebooks: usize,
    passed: usize,
    failed: usize,
}

/// Runs every notebook named by `paths`; fails if any cell failed.
pub(crate) fn run(paths: &[PathBuf], options: &RunOptions, write: &Write) -> Result<(), Error> {
    let notebooks = notebook::collect(paths).map_err(Error::bad_input)?;
    if matches!(write, Write::To(_)) && notebooks.len() != 1 {
        return Err(Error::BadInput(format!(
            "--output takes one notebook, and {} were given; use --inplace to write each one back",
            notebooks.len()
        )));
    }
    // Parse everything first: a bad file stops the run before any kernel starts, and
    // nothing is written.
    let mut parsed = Vec::new();
    for path in &notebooks {
        parsed.push((path, notebook::load(path).map_err(Error::bad_input)?));
    }
    let mut totals = Totals::default();
    let mut unsaved = Vec::new();
    for (path, mut notebook) in parsed {
        let outcome = run_one(path, &mut notebook, options);
        totals.notebooks += 1;
        totals.passed += outcome.passed;
        totals.failed += outcome.failed;
        let target = match write {
            Write::Nowhere => None,
            Write::InPlace => Some(path.clone()),
            Write::To(target) => Some(target.clone()),
        };
        if let Some(target) = target {
            if let Err(error) = notebook::save(&target, &notebook) {
                eprintln!("error: {error}");
                unsaved.push(target.display().to_string());
            }
        }
    }
    println!(
        "summary: {} notebook{}, {} passed, {} failed",
        totals.notebooks,
        if totals.notebooks == 1 { "" } else { "s" },
        totals.passed,
        totals.failed
    );
    if !unsaved.is_empty() {
        return Err(Error::Failed(format!(
            "could not write {}",
            unsaved.join(", ")
        )));
    }
    if totals.failed > 0 {
        return Err(Error::Failed(format!(
            "{} cell{} failed",
            totals.failed,
            if totals.failed == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}

struct Outcome {
    passed: usize,
    failed: usize,
}

fn run_one(path: &Path, notebook: &mut nbformat::v4::Notebook, options: &RunOptions) -> Outcome {
    println!("{} (kernel {})", path.display(), options.kernel.name);
    let cwd = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let start = Instant::now();
    let result = execute_notebook(notebook, cwd, options, None, print_cell);
    match result {
        Ok(reports) => {
            let failed = reports.iter().filter(|report| !report.passed()).count();
            let passed = reports.len() - failed;
            println!(
                "  {passed} passed, {failed} failed in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            Outcome { passed, failed }
        }
        Err(error) => {
            println!("  FAILED: the kernel did not start: {error}");
            Outcome {
                passed: 0,
                failed: 1,
            }
        }
    }
}

fn print_cell(report: &CellReport) {
    let (word, detail) = match &report.status {
        CellStatus::Passed => ("ok", String::new()),
        CellStatus::ExpectedFailure(failure) => {
            ("ok", format!("expected error: {}", failure.summary()))
        }
        CellStatus::Failed(failure) => ("FAILED", failure.summary()),
    };
    let mut line = format!(
        "  cell {:>3}  {:>6.2} s  {word:<6}  {detail}",
        report.index,
        report.elapsed.as_secs_f64()
    );
    if let Some(lost) = report.state_lost_at {
        line.push_str(&format!("  (ran without the state lost at cell {lost})"));
    }
    println!("{}", line.trim_end());
}
