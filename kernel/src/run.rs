//! `conclab-kernel run`: execute notebooks headless and report cell by cell.

use crate::execute::{execute_notebook, CellReport, CellStatus, RunOptions};
use crate::notebook;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Exit codes, as the README documents them.
pub const EXIT_OK: i32 = 0;
pub const EXIT_CELL_FAILED: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;

/// Where executed notebooks go.
#[derive(Debug, Clone)]
pub enum Write {
    /// Report only.
    Nowhere,
    /// Over each input notebook.
    InPlace,
    /// To this file (only with a single notebook).
    To(PathBuf),
}

/// Totals over every notebook of one command.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub notebooks: usize,
    pub passed: usize,
    pub failed: usize,
}

/// Runs every notebook named by `paths`; returns the process exit code.
pub fn run(paths: &[PathBuf], options: &RunOptions, write: &Write) -> i32 {
    let notebooks = match notebook::collect(paths) {
        Ok(notebooks) => notebooks,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_BAD_INPUT;
        }
    };
    if matches!(write, Write::To(_)) && notebooks.len() != 1 {
        eprintln!(
            "error: --output takes one notebook, and {} were given; use --inplace to write each one back",
            notebooks.len()
        );
        return EXIT_BAD_INPUT;
    }
    // Parse everything first: a bad file stops the run before any kernel starts, and
    // nothing is written.
    let mut parsed = Vec::new();
    for path in &notebooks {
        match notebook::load(path) {
            Ok(notebook) => parsed.push((path, notebook)),
            Err(error) => {
                eprintln!("error: {error}");
                return EXIT_BAD_INPUT;
            }
        }
    }
    let mut totals = Totals::default();
    let mut code = EXIT_OK;
    for (path, mut notebook) in parsed {
        let outcome = run_one(path, &mut notebook, options);
        totals.notebooks += 1;
        totals.passed += outcome.passed;
        totals.failed += outcome.failed;
        if outcome.failed > 0 {
            code = EXIT_CELL_FAILED;
        }
        let target = match write {
            Write::Nowhere => None,
            Write::InPlace => Some(path.clone()),
            Write::To(target) => Some(target.clone()),
        };
        if let Some(target) = target {
            if let Err(error) = notebook::save(&target, &notebook) {
                eprintln!("error: {error}");
                code = EXIT_CELL_FAILED;
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
    code
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
