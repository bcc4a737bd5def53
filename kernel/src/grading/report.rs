//! Reports: each submission's `result.json` and feedback notebook, the gradebook, the
//! terminal table, and reading results back for `merge`.

use super::assignment;
use super::{GradeError, QuestionResult, SubmissionResult};
use crate::jupyter::notebook;
use nbformat::v4::{Cell, Notebook};
use std::path::{Path, PathBuf};

pub(super) fn write_outputs(
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
pub(super) fn gradebook(results: &[SubmissionResult]) -> String {
    let mut ids: Vec<&str> = Vec::new();
    for result in results {
        for question in &result.questions {
            if !ids.contains(&question.grade_id.as_str()) {
                ids.push(&question.grade_id);
            }
        }
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["student", "score", "max_score"];
    header.extend(&ids);
    header.push("seconds");
    let mut sorted: Vec<&SubmissionResult> = results.iter().collect();
    sorted.sort_by(|a, b| a.student.cmp(&b.student));
    let rows = sorted.into_iter().map(|result| {
        let mut row = vec![
            result.student.clone(),
            result.score.to_string(),
            result.max_score.to_string(),
        ];
        row.extend(ids.iter().map(|id| {
            result
                .questions
                .iter()
                .find(|q| q.grade_id == *id)
                .map(|q| q.points.to_string())
                .unwrap_or_default()
        }));
        row.push(format!("{:.1}", result.seconds));
        row
    });
    // Writing into a Vec fails only on a row of the wrong length, which cannot happen:
    // every row has the header's columns.
    csv.write_record(&header).expect("csv into memory");
    for row in rows {
        csv.write_record(&row).expect("csv into memory");
    }
    String::from_utf8(csv.into_inner().expect("csv into memory")).expect("csv of UTF-8 is UTF-8")
}

/// Reads every `*/result.json` below `dirs`.
pub(super) fn collect_results(dirs: &[PathBuf]) -> Result<Vec<SubmissionResult>, GradeError> {
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

pub(super) fn progress_line(done: usize, total: usize, result: &SubmissionResult) -> String {
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
pub(super) fn table(results: &[SubmissionResult]) -> String {
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
        // Written answers are not lost points: they come last, as one line, so the first
        // line shown is the first real failure.
        let mut lost: Vec<String> = result
            .questions
            .iter()
            .filter(|q| !q.manual)
            .filter_map(|q| {
                q.reason
                    .as_ref()
                    .map(|why| format!("{} ({} pts): {why}", q.grade_id, q.max_points - q.points))
            })
            .collect();
        let waiting: Vec<&QuestionResult> = result.questions.iter().filter(|q| q.manual).collect();
        if !waiting.is_empty() {
            let points: f64 = waiting.iter().map(|q| q.max_points).sum();
            let ids: Vec<&str> = waiting.iter().map(|q| q.grade_id.as_str()).collect();
            lost.push(format!(
                "{} ({points} pts): written, for a person to grade",
                ids.join(", ")
            ));
        }
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
    #[test]
    fn the_table_shows_the_first_real_failure_first_and_written_answers_last() {
        let table = super::table(&[crate::grading::sample::alice()]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with("alice") && lines[1].contains("2/6  q2-tests (2 pts): panic"),
            "{table}"
        );
        assert!(
            lines[2]
                .trim_start()
                .starts_with("q3-essay (2 pts): written, for a person to grade"),
            "{table}"
        );
        assert_eq!(lines.len(), 3, "{table}");
    }
}
