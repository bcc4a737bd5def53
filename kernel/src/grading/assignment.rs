//! Assignments marked the way nbgrader marks them, and the student version of one.
//!
//! A cell's `nbgrader` metadata (schema 3: `grade`, `solution`, `locked`, `points`,
//! `grade_id`, `checksum`, `task`) says what it is: a solution the student writes, a test
//! worth points, or locked instructions. Inside code, `BEGIN SOLUTION`/`END SOLUTION` and
//! `BEGIN HIDDEN TESTS`/`END HIDDEN TESTS` (anywhere in a line, so `// BEGIN SOLUTION`
//! works) delimit regions. The same files work with nbgrader itself, and the student
//! version is the one nbgrader's `generate_assignment` writes: the same stubs, the same
//! locks and the same checksums, so either tool can grade what the other released.

use md5::{Digest, Md5};
use nbformat::v4::{Cell, CellMetadata, Notebook};
use serde_json::{json, Value};

const BEGIN_SOLUTION: &str = "BEGIN SOLUTION";
const END_SOLUTION: &str = "END SOLUTION";
const BEGIN_HIDDEN: &str = "BEGIN HIDDEN TESTS";
const END_HIDDEN: &str = "END HIDDEN TESTS";
/// What replaces a solution in the student version: it compiles wherever the solution
/// stood (`todo!()` has type `!`) and panics with a clear message if run unanswered.
/// `grading/nbgrader_config.py` gives nbgrader the same stub.
const CODE_STUB: &str = "// YOUR CODE HERE\ntodo!()";
/// nbgrader's own text stub for a written answer.
const MARKDOWN_STUB: &str = "YOUR ANSWER HERE";

#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    #[error("cell {index}: `{found}` without a matching `{missing}`; close the region in the source notebook")]
    Unbalanced {
        index: usize,
        found: &'static str,
        missing: &'static str,
    },
    #[error(
        "cell {index}: a graded cell needs a `grade_id` and `points` in its nbgrader metadata"
    )]
    IncompleteGrade { index: usize },
    #[error("cell {index}: grade_id `{id}` is used twice; grade ids must be unique")]
    DuplicateId { index: usize, id: String },
    #[error("the source notebook has no graded cell (nbgrader metadata with `grade: true`); mark the test cells")]
    NothingGraded,
}

/// A cell's nbgrader metadata, as far as grading needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Marking {
    pub grade: bool,
    pub solution: bool,
    pub locked: bool,
    pub points: f64,
    pub grade_id: Option<String>,
    pub checksum: Option<String>,
}

fn metadata_map(cell: &Cell) -> &std::collections::HashMap<String, Value> {
    match cell {
        Cell::Code { metadata, .. }
        | Cell::Markdown { metadata, .. }
        | Cell::Raw { metadata, .. } => &metadata.additional,
    }
}

fn metadata_map_mut(cell: &mut Cell) -> &mut std::collections::HashMap<String, Value> {
    match cell {
        Cell::Code { metadata, .. }
        | Cell::Markdown { metadata, .. }
        | Cell::Raw { metadata, .. } => &mut metadata.additional,
    }
}

/// The cell's nbgrader marking, if it has one.
pub fn marking(cell: &Cell) -> Option<Marking> {
    let meta = metadata_map(cell).get("nbgrader")?;
    let flag = |key: &str| meta[key].as_bool().unwrap_or(false);
    Some(Marking {
        grade: flag("grade"),
        solution: flag("solution"),
        locked: flag("locked"),
        points: meta["points"].as_f64().unwrap_or(0.0),
        grade_id: meta["grade_id"].as_str().map(str::to_owned),
        checksum: meta["checksum"].as_str().map(str::to_owned),
    })
}

pub fn source(cell: &Cell) -> String {
    match cell {
        Cell::Code { source, .. } | Cell::Markdown { source, .. } | Cell::Raw { source, .. } => {
            source.concat()
        }
    }
}

pub fn set_source(cell: &mut Cell, text: &str) {
    let lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    match cell {
        Cell::Code { source, .. } | Cell::Markdown { source, .. } | Cell::Raw { source, .. } => {
            *source = lines
        }
    }
}

pub(crate) fn is_code(cell: &Cell) -> bool {
    matches!(cell, Cell::Code { .. })
}

fn cell_type(cell: &Cell) -> &'static str {
    match cell {
        Cell::Code { .. } => "code",
        Cell::Markdown { .. } => "markdown",
        Cell::Raw { .. } => "raw",
    }
}

fn cell_metadata_mut(cell: &mut Cell) -> &mut CellMetadata {
    match cell {
        Cell::Code { metadata, .. }
        | Cell::Markdown { metadata, .. }
        | Cell::Raw { metadata, .. } => metadata,
    }
}

impl Marking {
    /// Whether a student may not change the cell's source, as nbgrader decides it: an
    /// answer never is; a test always is.
    pub fn is_locked(&self) -> bool {
        !self.solution && (self.grade || self.locked)
    }

    /// Whether the cell carries a checksum in the student version.
    fn is_checksummed(&self) -> bool {
        self.grade || self.solution || self.is_locked()
    }
}

/// Replaces each `begin`..`end` region (marker lines included) with `stub` (indented like
/// the begin marker), or drops it when `stub` is `None`.
fn replace_regions(
    index: usize,
    text: &str,
    begin: &'static str,
    end: &'static str,
    stub: Option<&str>,
) -> Result<(String, bool), AssignmentError> {
    let mut out = String::new();
    let mut inside = false;
    let mut found = false;
    for line in text.split_inclusive('\n') {
        if line.contains(begin) {
            if inside {
                return Err(AssignmentError::Unbalanced {
                    index,
                    found: begin,
                    missing: end,
                });
            }
            inside = true;
            found = true;
            if let Some(stub) = stub {
                let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
                for stub_line in stub.lines() {
                    out.push_str(&indent);
                    out.push_str(stub_line);
                    out.push('\n');
                }
            }
        } else if line.contains(end) {
            if !inside {
                return Err(AssignmentError::Unbalanced {
                    index,
                    found: end,
                    missing: begin,
                });
            }
            inside = false;
        } else if !inside {
            out.push_str(line);
        }
    }
    if inside {
        return Err(AssignmentError::Unbalanced {
            index,
            found: begin,
            missing: end,
        });
    }
    // Keep Jupyter's convention: no trailing newline after the last line.
    if !text.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    Ok((out, found))
}

/// `text` without its hidden-test regions (markers included): the code a student's copy
/// of the cell runs. Text whose markers do not pair is returned whole; `validate` reports
/// it.
pub fn without_hidden_tests(text: &str) -> String {
    match replace_regions(0, text, BEGIN_HIDDEN, END_HIDDEN, None) {
        Ok((stripped, _)) => stripped,
        Err(_) => text.to_owned(),
    }
}

/// A fingerprint of a cell's source and marking, computed as nbgrader computes it (MD5
/// over the source, the cell type, the three flags as Python prints them, the id and the
/// points), so that the checksums of either tool's student version agree. A locked cell
/// whose checksum no longer matches was edited; an answer whose checksum still matches
/// was left as released.
pub fn checksum(cell: &Cell) -> String {
    let mark = marking(cell).unwrap_or_default();
    let python_bool = |flag: bool| if flag { "True" } else { "False" };
    let mut hasher = Md5::new();
    hasher.update(source(cell));
    hasher.update(cell_type(cell));
    hasher.update(python_bool(mark.grade));
    hasher.update(python_bool(mark.solution));
    hasher.update(python_bool(mark.is_locked()));
    hasher.update(mark.grade_id.as_deref().unwrap_or(""));
    if mark.grade {
        hasher.update(python_float(mark.points));
    }
    hex::encode(hasher.finalize())
}

/// `str(float(points))` in Python: `2.0`, `0.5`.
fn python_float(points: f64) -> String {
    if points.fract() == 0.0 && points.abs() < 1e16 {
        format!("{points:.1}")
    } else {
        format!("{points}")
    }
}

/// Whether a written or coded answer is still the stub it was released with: its
/// checksum, recorded at release, still matches.
pub fn is_unanswered(cell: &Cell) -> bool {
    marking(cell).is_some_and(|mark| {
        mark.solution && mark.checksum.as_deref() == Some(checksum(cell).as_str())
    })
}

/// Checks that the source notebook is a well-formed assignment.
pub fn validate(source: &Notebook) -> Result<(), AssignmentError> {
    let mut ids = std::collections::HashSet::new();
    let mut graded = 0;
    for (index, cell) in source.cells.iter().enumerate() {
        let text = self::source(cell);
        replace_regions(index, &text, BEGIN_SOLUTION, END_SOLUTION, Some(""))?;
        replace_regions(index, &text, BEGIN_HIDDEN, END_HIDDEN, None)?;
        let Some(mark) = marking(cell) else { continue };
        if mark.grade {
            graded += 1;
            if mark.grade_id.is_none() || mark.points <= 0.0 {
                return Err(AssignmentError::IncompleteGrade { index });
            }
        }
        if let Some(id) = mark.grade_id {
            if !ids.insert(id.clone()) {
                return Err(AssignmentError::DuplicateId { index, id });
            }
        }
    }
    if graded == 0 {
        return Err(AssignmentError::NothingGraded);
    }
    Ok(())
}

/// The student version: solutions replaced by stubs, hidden tests removed, outputs
/// cleared, locked cells made read-only, and a checksum recorded in every marked cell.
pub fn release(source: &Notebook) -> Result<Notebook, AssignmentError> {
    validate(source)?;
    let mut student = source.clone();
    for (index, cell) in student.cells.iter_mut().enumerate() {
        let mark = marking(cell);
        let mut text = self::source(cell);
        let stub = if is_code(cell) {
            CODE_STUB
        } else {
            MARKDOWN_STUB
        };
        let (replaced, had_region) =
            replace_regions(index, &text, BEGIN_SOLUTION, END_SOLUTION, Some(stub))?;
        text = replaced;
        if !had_region && mark.as_ref().is_some_and(|mark| mark.solution) {
            // A solution cell without markers is all solution.
            text = stub.to_owned();
        }
        text = replace_regions(index, &text, BEGIN_HIDDEN, END_HIDDEN, None)?.0;
        set_source(cell, &text);
        if let Cell::Code {
            outputs,
            execution_count,
            ..
        } = cell
        {
            outputs.clear();
            *execution_count = None;
        }
        if let Some(mark) = mark {
            lock(cell, &mark);
            if mark.is_checksummed() {
                let sum = checksum(cell);
                let kind = cell_type(cell);
                if let Some(Value::Object(meta)) = metadata_map_mut(cell).get_mut("nbgrader") {
                    meta.insert("checksum".into(), json!(sum));
                    meta.insert("cell_type".into(), json!(kind));
                }
            }
        }
    }
    Ok(student)
}

/// Jupyter's own cell flags, set as nbgrader sets them by default: no answer or locked
/// cell may be deleted, and a locked one may not be edited either.
fn lock(cell: &mut Cell, mark: &Marking) {
    let metadata = cell_metadata_mut(cell);
    if mark.solution {
        metadata.deletable = Some(false);
    } else if mark.is_locked() {
        metadata.deletable = Some(false);
        metadata.editable = Some(false);
    }
}

#[cfg(test)]
fn nbgrader_metadata(
    grade: bool,
    solution: bool,
    locked: bool,
    grade_id: &str,
    points: f64,
) -> Value {
    let mut meta = serde_json::Map::new();
    meta.insert("schema_version".into(), json!(3));
    meta.insert("grade".into(), json!(grade));
    meta.insert("solution".into(), json!(solution));
    meta.insert("locked".into(), json!(locked));
    meta.insert("grade_id".into(), json!(grade_id));
    if grade {
        meta.insert("points".into(), json!(points));
    }
    Value::Object(meta)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hidden_tests_are_cut_out_with_their_markers() {
        let text = "check(1);\n// BEGIN HIDDEN TESTS\ncheck(2);\n// END HIDDEN TESTS\ndone();";
        assert_eq!(super::without_hidden_tests(text), "check(1);\ndone();");
        let unpaired = "a();\n// BEGIN HIDDEN TESTS\nb();";
        assert_eq!(super::without_hidden_tests(unpaired), unpaired);
    }

    use super::*;
    use std::path::Path;

    fn cell(kind: &str, text: &str, nbgrader: Option<Value>) -> Value {
        let mut cell = json!({"cell_type": kind, "id": format!("c{}", text.len()), "metadata": {}, "source": text});
        if kind == "code" {
            cell["outputs"] = json!([{"output_type": "stream", "name": "stdout", "text": "old\n"}]);
            cell["execution_count"] = json!(4);
        }
        if let Some(meta) = nbgrader {
            cell["metadata"]["nbgrader"] = meta;
        }
        cell
    }

    fn notebook(cells: Vec<Value>) -> Notebook {
        let mut ids = 0;
        let cells: Vec<Value> = cells
            .into_iter()
            .map(|mut cell| {
                ids += 1;
                cell["id"] = json!(format!("cell-{ids}"));
                cell
            })
            .collect();
        let text =
            json!({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).to_string();
        crate::jupyter::notebook::parse(Path::new("source.ipynb"), &text).unwrap()
    }

    fn sample() -> Notebook {
        notebook(vec![
            cell("markdown", "# Question 1", Some(nbgrader_metadata(false, false, true, "intro", 0.0))),
            cell(
                "code",
                "fn factorial(n: u64) -> u64 {\n    // BEGIN SOLUTION\n    (1..=n).product()\n    // END SOLUTION\n}",
                Some(nbgrader_metadata(false, true, false, "q1-answer", 0.0)),
            ),
            cell(
                "code",
                "assert_eq!(factorial(5), 120);\n// BEGIN HIDDEN TESTS\nassert_eq!(factorial(10), 3628800);\n// END HIDDEN TESTS",
                Some(nbgrader_metadata(true, false, true, "q1-tests", 2.0)),
            ),
            cell("code", "let whole = 42;", Some(nbgrader_metadata(false, true, false, "q2-answer", 0.0))),
            cell("markdown", "Explain why.", Some(nbgrader_metadata(false, true, false, "q3-answer", 0.0))),
        ])
    }

    #[test]
    fn solution_regions_become_an_indented_stub() {
        let student = release(&sample()).unwrap();
        assert_eq!(
            source(&student.cells[1]),
            "fn factorial(n: u64) -> u64 {\n    // YOUR CODE HERE\n    todo!()\n}"
        );
        assert_eq!(source(&student.cells[3]), CODE_STUB);
        assert_eq!(source(&student.cells[4]), MARKDOWN_STUB);
    }

    #[test]
    fn hidden_tests_are_removed_and_outputs_cleared() {
        let student = release(&sample()).unwrap();
        assert_eq!(source(&student.cells[2]), "assert_eq!(factorial(5), 120);");
        for cell in &student.cells {
            if let Cell::Code {
                outputs,
                execution_count,
                ..
            } = cell
            {
                assert!(outputs.is_empty());
                assert!(execution_count.is_none());
            }
        }
    }

    #[test]
    fn marked_cells_carry_nbgraders_checksum_and_locks() {
        let student = release(&sample()).unwrap();
        for cell in &student.cells {
            let mark = marking(cell).unwrap();
            assert_eq!(mark.checksum.as_deref(), Some(checksum(cell).as_str()));
        }
        // The values nbgrader's `compute_checksum` gives these cells.
        assert_eq!(
            checksum(&student.cells[2]),
            "37a767da884c69277deceeba4527e1e3"
        );
        assert_eq!(
            checksum(&student.cells[4]),
            "0f2f74f78feabcbb2cf25f3801349333"
        );
        let flags = |index: usize| {
            let metadata = match &student.cells[index] {
                Cell::Code { metadata, .. } | Cell::Markdown { metadata, .. } => metadata,
                Cell::Raw { metadata, .. } => metadata,
            };
            (metadata.editable, metadata.deletable)
        };
        assert_eq!(flags(0), (Some(false), Some(false)), "locked text");
        assert_eq!(flags(2), (Some(false), Some(false)), "a test");
        assert_eq!(flags(1), (None, Some(false)), "an answer");
        let mut edited = student.cells[2].clone();
        set_source(&mut edited, "assert!(true);");
        assert_ne!(
            checksum(&edited),
            marking(&student.cells[2]).unwrap().checksum.unwrap()
        );
        assert!(is_unanswered(&student.cells[4]));
        let mut answered = student.cells[4].clone();
        set_source(&mut answered, "Because the lock is held.");
        assert!(!is_unanswered(&answered));
    }

    #[test]
    fn malformed_assignments_are_refused_with_the_cell() {
        let open = notebook(vec![
            cell("code", "// BEGIN SOLUTION\nlet x = 1;", None),
            cell(
                "code",
                "assert!(true);",
                Some(nbgrader_metadata(true, false, true, "t", 1.0)),
            ),
        ]);
        let error = release(&open).unwrap_err().to_string();
        assert!(
            error.starts_with("cell 0: `BEGIN SOLUTION` without a matching `END SOLUTION`"),
            "{error}"
        );
        let twice = notebook(vec![
            cell(
                "code",
                "assert!(true);",
                Some(nbgrader_metadata(true, false, true, "t", 1.0)),
            ),
            cell(
                "code",
                "assert!(true);",
                Some(nbgrader_metadata(true, false, true, "t", 1.0)),
            ),
        ]);
        assert!(release(&twice)
            .unwrap_err()
            .to_string()
            .contains("grade_id `t` is used twice"));
        let nothing = notebook(vec![cell("code", "let x = 1;", None)]);
        assert!(matches!(
            release(&nothing),
            Err(AssignmentError::NothingGraded)
        ));
    }
}
