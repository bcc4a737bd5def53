//! What one cell printed and how it ended, built from the relay's events.
//!
//! Two kinds of stderr text are not the notebook's stream output but the cell's error:
//! the report of a panic in the cell's own thread, and the `Display` text evcxr prints for
//! a `?` that returned `Err`. Both arrive just before their marker, so the latest run of
//! stderr text is held back briefly; a marker takes it as the error, anything else (more
//! output, the end of the cell, a pause of [`HOLD`]) lets it out as a stream.

use super::events::Event;
use std::time::Duration;

/// How long the latest stderr text may wait for a marker before it is shown.
pub const HOLD: Duration = Duration::from_millis(20);

/// Threads whose panic is the cell's own: evcxr runs a cell on the cell process's main
/// thread, which each cell's copy of std names `<unnamed>` (or `main`).
const CELL_THREADS: [&str; 2] = ["<unnamed>", "main"];

/// Text for the notebook, on `stdout` or `stderr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub name: &'static str,
    pub text: String,
}

/// A panic of the cell's own code, as the panic hook reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PanicReport {
    /// `src/lib.rs:97:1`: a place in evcxr's generated crate, or in a dependency.
    pub location: String,
    /// The panic message, over as many lines as it has.
    pub message: String,
}

/// Everything the kernel needs to know about how the cell ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ending {
    pub panic: Option<PanicReport>,
    /// The cell's top-level `?` returned `Err`; this is the text evcxr printed for it.
    pub user_error: Option<String>,
    /// The cell process ended during the cell, and how.
    pub exited: Option<String>,
    /// The cell function returned to evcxr.
    pub completed: bool,
}

/// The events of one cell.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Stderr text not yet shown, waiting to see whether a marker claims it.
    held: String,
    /// All stderr text of the cell, for finding a report already shown.
    stderr: String,
    ending: Ending,
}

impl Transcript {
    pub fn new() -> Self {
        Transcript::default()
    }

    /// Takes one event; returns what to show now.
    pub fn take(&mut self, event: Event) -> Vec<Stream> {
        let mut shown = Vec::new();
        match event {
            Event::Stderr(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                self.stderr.push_str(&text);
                self.held.push_str(&text);
                return shown;
            }
            Event::Panic => {
                let held = std::mem::take(&mut self.held);
                let (before, report) = split_panic_report(&held);
                // The hook opens its report with an empty line.
                if !before.trim().is_empty() {
                    push(&mut shown, "stderr", before);
                }
                self.ending.panic = Some(
                    report
                        .or_else(|| split_panic_report(&self.stderr).1)
                        .unwrap_or_default(),
                );
            }
            Event::UserError => {
                let held = std::mem::take(&mut self.held);
                let text = held.trim_end_matches('\n');
                self.ending.user_error = Some(if text.trim().is_empty() {
                    last_line(&self.stderr)
                } else {
                    text.to_owned()
                });
            }
            other => {
                self.release(&mut shown);
                match other {
                    Event::Stdout(bytes) => {
                        push(&mut shown, "stdout", &String::from_utf8_lossy(&bytes))
                    }
                    Event::Complete => self.ending.completed = true,
                    Event::Exited(how) => self.ending.exited = Some(how),
                    _ => {}
                }
            }
        }
        shown
    }

    /// Shows the held stderr text (nothing claimed it in time).
    pub fn release(&mut self, shown: &mut Vec<Stream>) {
        let held = std::mem::take(&mut self.held);
        push(shown, "stderr", &held);
    }

    /// Whether held text should be shown if no event comes within [`HOLD`]. A panic
    /// report of the cell's thread is kept until the next event instead: unwinding
    /// before evcxr's panic marker can take longer than any pause worth waiting for
    /// (the first unwind in a new cell library loads its unwind tables).
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty() && split_panic_report(&self.held).1.is_none()
    }

    /// How the cell ended; what is still held is returned for showing.
    pub fn finish(mut self) -> (Ending, Vec<Stream>) {
        let mut shown = Vec::new();
        self.release(&mut shown);
        (self.ending, shown)
    }
}

fn push(shown: &mut Vec<Stream>, name: &'static str, text: &str) {
    if !text.is_empty() {
        shown.push(Stream {
            name,
            text: text.to_owned(),
        });
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
        .to_owned()
}

/// Parses `thread 'NAME' (ID) panicked at LOCATION:` and returns the name and location.
fn panic_header(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix("thread '")?;
    let (name, rest) = rest.split_once('\'')?;
    let (_, location) = rest.split_once("panicked at ")?;
    Some((name, location.trim_end().trim_end_matches(':')))
}

/// Splits stderr text at the last panic report of a cell thread: the text before it, and
/// the report (its message without the hook's `note: run with RUST_BACKTRACE` line).
pub fn split_panic_report(text: &str) -> (&str, Option<PanicReport>) {
    let mut start = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((name, _)) = panic_header(line) {
            if CELL_THREADS.contains(&name) {
                start = Some(offset);
            }
        }
        offset += line.len();
    }
    let Some(start) = start else {
        return (text, None);
    };
    let report = &text[start..];
    let mut lines = report.lines();
    let header = lines.next().unwrap_or("");
    let location = panic_header(header).map(|(_, at)| at).unwrap_or("");
    let message: Vec<&str> = lines
        .take_while(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    (
        &text[..start],
        Some(PanicReport {
            location: location.to_owned(),
            message: message.join("\n").trim_end().to_owned(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr(text: &str) -> Event {
        Event::Stderr(text.as_bytes().to_vec())
    }

    #[test]
    fn a_cell_panic_becomes_the_ending_not_stream_text() {
        let mut transcript = Transcript::new();
        assert!(transcript.take(stderr("before\n")).is_empty());
        transcript.take(stderr(
            "thread '<unnamed>' (77) panicked at src/lib.rs:97:1:\nassertion `left == right` failed\n  left: 1\n right: 2\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        ));
        let shown = transcript.take(Event::Panic);
        assert_eq!(
            shown,
            vec![Stream {
                name: "stderr",
                text: "before\n".into()
            }]
        );
        transcript.take(Event::Complete);
        let (ending, rest) = transcript.finish();
        assert!(rest.is_empty());
        let panic = ending.panic.unwrap();
        assert_eq!(panic.location, "src/lib.rs:97:1");
        assert_eq!(
            panic.message,
            "assertion `left == right` failed\n  left: 1\n right: 2"
        );
        assert!(ending.completed);
    }

    #[test]
    fn a_question_mark_error_takes_the_text_printed_for_it() {
        let mut transcript = Transcript::new();
        transcript.take(stderr("invalid digit found in string\n"));
        assert!(transcript.take(Event::UserError).is_empty());
        let (ending, shown) = transcript.finish();
        assert_eq!(
            ending.user_error.as_deref(),
            Some("invalid digit found in string")
        );
        assert!(shown.is_empty());
    }

    #[test]
    fn ordinary_stderr_is_shown_once_something_else_happens() {
        let mut transcript = Transcript::new();
        transcript.take(stderr("warning\n"));
        assert!(transcript.is_holding());
        let shown = transcript.take(Event::Stdout(b"out\n".to_vec()));
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[0].name, "stderr");
        assert_eq!(shown[1].text, "out\n");
    }

    #[test]
    fn a_cell_panic_report_is_held_until_its_marker() {
        let mut transcript = Transcript::new();
        transcript.take(stderr(
            "thread '<unnamed>' panicked at src/lib.rs:4:1:\nboom\n",
        ));
        assert!(
            !transcript.is_holding(),
            "no pause lets a cell's panic report out"
        );
        let mut plain = Transcript::new();
        plain.take(stderr("just text\n"));
        assert!(plain.is_holding());
    }

    #[test]
    fn a_named_threads_panic_is_only_output() {
        let mut transcript = Transcript::new();
        transcript.take(stderr(
            "thread 'worker-1' (5) panicked at src/lib.rs:3:9:\nboom\n",
        ));
        transcript.take(Event::Complete);
        let (ending, _) = transcript.finish();
        assert_eq!(ending.panic, None);
    }

    #[test]
    fn a_report_already_shown_is_still_found() {
        let mut transcript = Transcript::new();
        transcript.take(stderr(
            "thread '<unnamed>' panicked at src/lib.rs:4:1:\nslow unwinding\n",
        ));
        let mut shown = Vec::new();
        transcript.release(&mut shown);
        assert_eq!(shown.len(), 1);
        transcript.take(Event::Panic);
        let (ending, _) = transcript.finish();
        assert_eq!(ending.panic.unwrap().message, "slow unwinding");
    }

    #[test]
    fn the_death_of_the_process_is_recorded() {
        let mut transcript = Transcript::new();
        transcript.take(Event::Exited("killed by signal 11 (SIGSEGV)".into()));
        let (ending, _) = transcript.finish();
        assert_eq!(
            ending.exited.as_deref(),
            Some("killed by signal 11 (SIGSEGV)")
        );
    }
}
