//! Score: points per graded cell of an executed notebook, and the reason for each lost
//! point.

use super::assignment::{self, marking};
use super::QuestionResult;
use nbformat::v4::{Cell, Notebook};
use std::collections::HashMap;

/// Scores each graded cell of an executed notebook: its points when it ran and passed,
/// none with the reason otherwise. Failed cells that are not graded become notes, and
/// the latest of them is named beside a test that fails after it, since the test most
/// likely fails because of it. A graded written (markdown) answer scores nothing here:
/// it waits for a person, as nbgrader's manually graded answers do, unless it was left as
/// released, which scores 0 at once.
pub(super) fn score(
    graded: &Notebook,
    failures: &HashMap<usize, String>,
    kernel_started: bool,
    notes: &mut Vec<String>,
) -> Vec<QuestionResult> {
    let mut questions = Vec::new();
    // The latest failed cell that is not graded (an answer, a setup cell), as (name, why).
    let mut earlier_failure: Option<(String, String)> = None;
    for (index, cell) in graded.cells.iter().enumerate() {
        let mark = marking(cell);
        if !mark.as_ref().is_some_and(|mark| mark.grade) {
            if let Some(failure) = failures.get(&index) {
                let name = mark
                    .and_then(|mark| mark.grade_id)
                    .unwrap_or_else(|| format!("cell {index}"));
                notes.push(format!("{name} failed: {failure}"));
                earlier_failure = Some((name, failure.clone()));
            }
            continue;
        }
        let mark = mark.expect("graded cells have a marking");
        let (manual, unanswered, ran) = match cell {
            Cell::Code {
                execution_count, ..
            } => (false, false, execution_count.is_some()),
            // A stub left as released scores nothing without a person, as in nbgrader.
            _ => {
                let unanswered = assignment::is_unanswered(cell);
                (!unanswered, unanswered, false)
            }
        };
        let reason = if unanswered {
            Some("unanswered: the cell still holds the text it was released with".to_owned())
        } else if manual {
            Some(
                "a written answer: left for a person to grade, not scored automatically".to_owned(),
            )
        } else if !kernel_started {
            Some("not run: the kernel did not start".to_owned())
        } else if let Some(failure) = failures.get(&index) {
            Some(match &earlier_failure {
                Some(earlier) => because(failure, earlier),
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

/// A test's failure told through the failure it most likely follows from. A name the
/// test cannot find is the common case: it is missing because the answer that defines
/// it did not finish, and that is what the student must fix.
fn because(failure: &str, (name, why): &(String, String)) -> String {
    let missing = failure
        .contains("cannot find")
        .then(|| failure.split('`').nth(1))
        .flatten();
    match missing {
        Some(item) => format!("`{item}` is not defined, because {name} did not finish: {why}"),
        None => format!("{failure} ({name} failed first: {why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jupyter::notebook;
    use serde_json::json;
    use std::path::Path;

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
    fn a_written_answer_left_as_released_scores_nothing_without_a_person() {
        let mut source = executed(&[("code", "q1-tests", true, true)]);
        let essay = json!({
            "cell_type": "markdown", "id": "essay", "source": "Because.",
            "metadata": {"nbgrader": {"schema_version": 3, "grade": true, "solution": true,
                "locked": false, "grade_id": "q2-essay", "points": 1}},
        });
        source
            .cells
            .push(serde_json::from_value(essay).expect("a markdown cell"));
        let mut released = assignment::release(&source).unwrap();
        let questions = score(&released, &HashMap::new(), true, &mut Vec::new());
        assert!(!questions[1].manual);
        assert!(questions[1]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("unanswered"));

        assignment::set_source(&mut released.cells[1], "Because the lock is held.");
        let questions = score(&released, &HashMap::new(), true, &mut Vec::new());
        assert!(questions[1].manual, "{:?}", questions[1]);
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
            Some("`f` is not defined, because q2-answer did not finish: panic: todo")
        );
        assert_eq!(notes, ["q2-answer failed: panic: todo"]);
        let other = because(
            "panic: assertion failed",
            &(
                "q1-answer".into(),
                "timeout: still running after 20 s".into(),
            ),
        );
        assert_eq!(
            other,
            "panic: assertion failed (q1-answer failed first: timeout: still running after 20 s)"
        );
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
