//! Assemble: rebuild a submission from its source, so that only answer cells are the
//! student's, and name the student.

use super::assignment::{self, marking, Marking};
use nbformat::v4::{Cell, Notebook};
use std::collections::HashMap;
use std::path::Path;

/// The key that ties a submission's cell to the source's: the nbgrader id, else the
/// cell id.
pub(super) fn key(cell: &Cell) -> String {
    marking(cell)
        .and_then(|mark| mark.grade_id)
        .unwrap_or_else(|| cell.id().as_str().to_owned())
}

/// Rebuilds the notebook to run: the source's cells in the source's order, with each
/// answer cell taken from the submission, and cells the student added kept where they
/// stood. Returns it with notes on anything restored.
pub(crate) fn assemble(
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
pub(crate) fn student_name(submission: &Path, source: &Path) -> String {
    let stem = submission.file_stem().unwrap_or_default().to_string_lossy();
    if Some(stem.as_ref()) == source.file_stem().map(|s| s.to_string_lossy()).as_deref() {
        if let Some(dir) = submission.parent().and_then(Path::file_name) {
            return dir.to_string_lossy().into_owned();
        }
    }
    stem.into_owned()
}
