//! How a cell ended, as Jupyter error content (`ename`, `evalue`, `traceback`), and rich
//! results as Jupyter bundles.
//!
//! Each failure names what happened in the cell's own terms: compile errors and panics
//! point at lines of the cell (evcxr's generated `src/lib.rs` means nothing to a
//! student), a process that died says which variables went with it.

use super::transcript::{Ending, PanicReport};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

const RED: &str = "\u{1b}[0;31m";
const BOLD_RED: &str = "\u{1b}[1;31m";
const BLUE: &str = "\u{1b}[0;34m";
const RESET: &str = "\u{1b}[0m";

/// An error in Jupyter's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl CellError {
    /// The `error` output's content, which is also what the error reply carries.
    pub fn content(&self) -> Value {
        json!({
            "ename": self.ename,
            "evalue": self.evalue,
            "traceback": self.traceback,
        })
    }
}

/// The cell's source line `line` (1-based), shown with its number and a marker line.
fn quote(code: &str, line: usize, columns: Option<(usize, usize)>, label: &str) -> Vec<String> {
    let Some(text) = code.lines().nth(line.saturating_sub(1)) else {
        return Vec::new();
    };
    let gutter = line.to_string().len();
    let mut out = vec![format!("{BLUE}{:gutter$} |{RESET} {text}", line)];
    if let Some((start, end)) = columns {
        let width = end.saturating_sub(start).max(1);
        out.push(format!(
            "{BLUE}{:gutter$} |{RESET} {}{BOLD_RED}{}{RESET} {label}",
            "",
            " ".repeat(start.saturating_sub(1)),
            "^".repeat(width)
        ));
    }
    out
}

/// Compile errors: rustc's message and code, each at the lines of the cell it concerns.
pub fn compile_errors(errors: &[evcxr::CompilationError], code: &str) -> CellError {
    let mut traceback = Vec::new();
    let mut first = String::new();
    for error in errors {
        let heading = match error.code() {
            Some(code) => format!("error[{code}]: {}", error.message()),
            None => format!("error: {}", error.message()),
        };
        if first.is_empty() {
            first = heading.clone();
        }
        traceback.push(format!("{BOLD_RED}{heading}{RESET}"));
        for spanned in error.spanned_messages() {
            match &spanned.span {
                Some(span) => {
                    traceback.push(format!(
                        "{BLUE}  --> line {} of this cell{RESET}",
                        span.start_line
                    ));
                    let columns = (span.start_line == span.end_line)
                        .then_some((span.start_column, span.end_column));
                    traceback.extend(quote(code, span.start_line, columns, &spanned.label));
                }
                None if !spanned.label.is_empty() => {
                    traceback.push(format!("  = {}", spanned.label))
                }
                None => {}
            }
        }
        for help in error.help() {
            traceback.push(format!("  = help: {help}"));
        }
        if let Some(hint) = error.evcxr_extra_hint() {
            traceback.push(format!("  = note: {hint}"));
        }
        traceback.push(String::new());
    }
    if errors.is_empty() {
        first = "the cell did not compile, and the compiler gave no message".into();
        traceback.push(first.clone());
    }
    CellError {
        ename: "CompileError".into(),
        evalue: first,
        traceback,
    }
}

/// Finds the cell line that evcxr's generated line `location` (`src/lib.rs:L:C`) came
/// from, by its text: the generated crate copies the cell's lines as they are.
pub fn cell_line(location: &str, code: &str, generated: &str) -> Option<usize> {
    let rest = location.strip_prefix("src/lib.rs:")?;
    let line: usize = rest.split(':').next()?.parse().ok()?;
    let generated: Vec<&str> = generated.lines().collect();
    let wanted = generated.get(line.checked_sub(1)?)?.trim();
    if wanted.is_empty() {
        return None;
    }
    // The same text may occur more than once: take the occurrence with the same rank.
    let rank = generated[..line - 1]
        .iter()
        .filter(|l| l.trim() == wanted)
        .count();
    let matches: Vec<usize> = code
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == wanted)
        .map(|(i, _)| i + 1)
        .collect();
    matches.get(rank).or_else(|| matches.first()).copied()
}

/// A panic of the cell's own code: its message and the cell line it came from.
pub fn panic(report: &PanicReport, code: &str, generated: Option<&str>) -> CellError {
    let line = generated.and_then(|source| cell_line(&report.location, code, source));
    let place = match line {
        Some(line) => format!("line {line} of this cell"),
        None if report.location.is_empty() || report.location.starts_with("src/lib.rs:") => {
            "this cell".to_owned()
        }
        None => report.location.clone(),
    };
    let message = if report.message.is_empty() {
        "the cell panicked".to_owned()
    } else {
        report.message.clone()
    };
    let mut traceback = vec![format!("{BOLD_RED}panicked at {place}:{RESET}")];
    if let Some(line) = line {
        traceback.extend(quote(code, line, None, ""));
    }
    traceback.extend(message.lines().map(|l| format!("{RED}{l}{RESET}")));
    traceback
        .push("Variables this cell defined are not kept; those of earlier cells are.".to_owned());
    CellError {
        ename: "Panic".into(),
        evalue: message,
        traceback,
    }
}

/// A top-level `?` that returned `Err`, with the text evcxr printed for the error.
pub fn question_mark(text: &str) -> CellError {
    let text = if text.trim().is_empty() {
        "(the error displays as an empty string)"
    } else {
        text
    };
    let mut traceback = vec![format!("{BOLD_RED}a `?` in this cell returned Err:{RESET}")];
    traceback.extend(text.lines().map(|l| format!("{RED}{l}{RESET}")));
    traceback.push(
        "The cell stopped there. Variables it defined are not kept; those of earlier cells are."
            .to_owned(),
    );
    CellError {
        ename: "Err".into(),
        evalue: text.to_owned(),
        traceback,
    }
}

/// The cell process ended during the cell: interrupted, exited, or killed.
pub fn process_ended(
    interrupted: bool,
    how: Option<&str>,
    lost: &[String],
    evcxr_says: &str,
) -> CellError {
    let (ename, what) = if interrupted {
        ("Interrupted", "The cell was interrupted.".to_owned())
    } else {
        let how = how.map(str::to_owned).unwrap_or_else(|| {
            evcxr_says
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("ended")
                .to_owned()
        });
        let oom = if how.contains("SIGKILL") {
            " (a SIGKILL nobody asked for is usually the out-of-memory killer)"
        } else {
            ""
        };
        (
            "ProcessDied",
            format!("The process running the cells {how}{oom}."),
        )
    };
    let lost_text = if lost.is_empty() {
        "No variables were lost.".to_owned()
    } else {
        let names: Vec<String> = lost.iter().map(|name| format!("`{name}`")).collect();
        format!("Variables lost: {}.", names.join(", "))
    };
    let traceback = vec![
        format!("{BOLD_RED}{what}{RESET}"),
        lost_text.clone(),
        "Later cells run in a fresh process: run the cells that define what they need again."
            .to_owned(),
    ];
    CellError {
        ename: ename.into(),
        evalue: format!("{what} {lost_text}"),
        traceback,
    }
}

/// Any other error evcxr reported (a bad `:dep`, a variable whose type changed, ...).
pub fn other(error: &evcxr::Error) -> CellError {
    let text = error.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("error")
        .to_owned();
    CellError {
        ename: "Error".into(),
        evalue: first,
        traceback: text.lines().map(|l| format!("{RED}{l}{RESET}")).collect(),
    }
}

/// The failure of a cell that evcxr ran to its end, judged from the relay's events.
pub fn after_run(ending: &Ending, code: &str, generated: Option<&str>) -> Option<CellError> {
    if let Some(report) = &ending.panic {
        return Some(panic(report, code, generated));
    }
    ending.user_error.as_deref().map(question_mark)
}

/// A result bundle as Jupyter expects it: every bundle has `text/plain`, JSON types are
/// JSON, not strings.
pub fn bundle(content: HashMap<String, String>) -> Map<String, Value> {
    let mut data = Map::new();
    for (mime, text) in &content {
        let value = if mime.contains("json") {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
        } else {
            Value::String(text.clone())
        };
        data.insert(mime.clone(), value);
    }
    if !data.contains_key("text/plain") {
        let plain = if let Some(html) = content.get("text/html") {
            html_to_text(html)
        } else if content.contains_key("image/svg+xml") || content.contains_key("image/png") {
            "[a picture: open the notebook in Jupyter to see it]".to_owned()
        } else {
            let mut kinds: Vec<&str> = content.keys().map(String::as_str).collect();
            kinds.sort_unstable();
            format!("[{}]", kinds.join(", "))
        };
        data.insert("text/plain".into(), Value::String(plain));
    }
    data
}

/// Readable text from an HTML fragment: tags dropped, table cells and rows kept apart,
/// entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let closing = tag.starts_with('/');
        match (name.as_str(), closing) {
            ("tr" | "p" | "div" | "br" | "caption" | "li" | "h1" | "h2" | "h3", true)
            | ("br", false) => out.push('\n'),
            ("td" | "th", true) => out.push_str("  "),
            _ => {}
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    let lines: Vec<&str> = decoded
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_line_is_traced_back_to_the_cell() {
        let code = "let x = 1;\nassert_eq!(x, 2);\n";
        let generated = "fn a() {\nlet x = 1;\nassert_eq!(x, 2);\n}\n";
        assert_eq!(cell_line("src/lib.rs:3:1", code, generated), Some(2));
        assert_eq!(cell_line("/dep/src/lib.rs:3:1", code, generated), None);
    }

    #[test]
    fn repeated_lines_are_matched_by_rank() {
        let code = "f();\nf();\n";
        let generated = "x\nf();\nf();\n";
        assert_eq!(cell_line("src/lib.rs:3:1", code, generated), Some(2));
    }

    #[test]
    fn a_panic_names_the_cell_line_and_keeps_the_message() {
        let report = PanicReport {
            location: "src/lib.rs:3:1".into(),
            message: "assertion `left == right` failed\n  left: 1\n right: 2".into(),
        };
        let error = panic(
            &report,
            "let x = 1;\nassert_eq!(x, 2);",
            Some("\nlet x = 1;\nassert_eq!(x, 2);"),
        );
        assert_eq!(error.ename, "Panic");
        assert!(error.evalue.starts_with("assertion"));
        assert!(
            error.traceback[0].contains("line 2 of this cell"),
            "{:?}",
            error.traceback
        );
        assert!(error.traceback[1].contains("assert_eq!(x, 2);"));
    }

    #[test]
    fn a_death_lists_the_lost_variables() {
        let error = process_ended(
            false,
            Some("killed by signal 11 (SIGSEGV: segmentation fault)"),
            &["a".into(), "b".into()],
            "",
        );
        assert_eq!(error.ename, "ProcessDied");
        assert!(error.evalue.contains("SIGSEGV"));
        assert!(error.evalue.contains("`a`, `b`"));
        let interrupted = process_ended(true, None, &[], "");
        assert_eq!(interrupted.ename, "Interrupted");
    }

    #[test]
    fn every_bundle_has_text_plain() {
        let mut content = HashMap::new();
        content.insert(
            "text/html".to_owned(),
            "<table><tr><th>n</th><th>n²</th></tr><tr><td>3</td><td>9 &amp; more</td></tr></table>"
                .to_owned(),
        );
        let data = bundle(content);
        assert_eq!(data["text/plain"], "n  n²\n3  9 & more");
        let mut svg = HashMap::new();
        svg.insert("image/svg+xml".to_owned(), "<svg/>".to_owned());
        assert!(bundle(svg)["text/plain"]
            .as_str()
            .unwrap()
            .contains("picture"));
    }
}
