//! What one schedule did: its steps, what went wrong, and the schedule string.

use crate::display;
use crate::table::Table;
use crate::threading::DeadlockEdge;
use crate::timeline::Span;
use std::fmt;
use std::time::Duration;

/// One step of a schedule: a thread did an operation on an object.
///
/// ```
/// let step = conclab::explore::Step {
///     thread: "Thread-1".into(),
///     op: "read".into(),
///     object: "counter 1".into(),
///     value: Some("0".into()),
/// };
/// assert_eq!(step.to_string(), "Thread-1: read counter 1 -> 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The thread's name (`main` is the closure given to `explore`).
    pub thread: String,
    /// The operation: `read`, `write`, `acquire`, `release`, `waits for`, `put`, ...
    pub op: String,
    /// The object's name: a lock's name, or its kind and number (`counter 1`, `queue 1`).
    pub object: String,
    /// The value read or written, or what a wait is for, when there is one.
    pub value: Option<String>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} {}", self.thread, self.op, self.object)?;
        if let Some(value) = &self.value {
            write!(f, " -> {value}")?;
        }
        Ok(())
    }
}

/// What made a schedule fail.
///
/// ```
/// use conclab::explore::Failure;
/// let f = Failure::LostUpdate { thread: "B".into(), counter: "counter 1".into(), read: 0, found: 1 };
/// assert!(f.to_string().contains("lost update"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A thread panicked (a failed `assert!` is a panic).
    Panic {
        /// The thread's name.
        thread: String,
        /// The panic's message and where it happened.
        message: String,
    },
    /// Every thread waits, in a cycle of threads and locks.
    Deadlock(Vec<DeadlockEdge>),
    /// Every thread waits, but not for each other's locks (a `get` from a queue nobody
    /// fills, a `wait` nobody notifies).
    Stuck(Vec<String>),
    /// A racing counter's write overwrote another thread's write made since its read.
    LostUpdate {
        /// The thread whose write lost the other update.
        thread: String,
        /// The counter's name.
        counter: String,
        /// The value it had read.
        read: u64,
        /// The value the counter held when it wrote `read + 1`.
        found: u64,
    },
    /// The schedule took more switch points than allowed: a thread may be spinning.
    TooLong {
        /// The limit.
        steps: usize,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Panic { thread, message } => {
                write!(f, "thread '{thread}' panicked: {message}")
            }
            Failure::Deadlock(cycle) => {
                let edges: Vec<String> = cycle.iter().map(ToString::to_string).collect();
                write!(f, "deadlock: {}", edges.join("; "))
            }
            Failure::Stuck(waiting) => {
                write!(f, "every thread waits for ever: {}", waiting.join("; "))
            }
            Failure::LostUpdate {
                thread,
                counter,
                read,
                found,
            } => write!(
                f,
                "lost update: thread '{thread}' read {read} from {counter}, and by the time it \
                 wrote {} another thread had written {found}, which is overwritten",
                read + 1
            ),
            Failure::TooLong { steps } => write!(
                f,
                "the schedule passed {steps} switch points without ending: a thread may be \
                 spinning (waiting in a loop without a conclab wait); raise the limit with \
                 .max_steps(n) if the program is just long"
            ),
        }
    }
}

/// The steps of one schedule, with the threads that took part.
///
/// ```
/// let trace = conclab::explore::random(1).run(|| ()).trace().clone();
/// assert_eq!(trace.threads, vec!["main".to_string()]);
/// assert!(trace.steps.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The threads, in the order they started (`main` first).
    pub threads: Vec<String>,
    /// Every step, in the order it happened.
    pub steps: Vec<Step>,
}

/// A long trace shows its first and last steps only, with a line that says how many are
/// left out between them.
const SHOWN_STEPS: usize = 60;

/// Steps with their numbers (from 1).
type Numbered<'a> = Vec<(usize, &'a Step)>;

impl Trace {
    /// The numbered steps to show: all of a short trace, the first and last
    /// `SHOWN_STEPS / 2` of a long one, with how many were left out in between.
    fn shown(&self) -> (Numbered<'_>, usize, Numbered<'_>) {
        let numbered: Numbered<'_> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (i + 1, s))
            .collect();
        if numbered.len() <= SHOWN_STEPS {
            return (numbered, 0, Vec::new());
        }
        let half = SHOWN_STEPS / 2;
        let skipped = numbered.len() - 2 * half;
        let tail = numbered[numbered.len() - half..].to_vec();
        let mut head = numbered;
        head.truncate(half);
        (head, skipped, tail)
    }

    /// The steps as a table: step number, thread, operation, object, value. A long trace
    /// shows its first and last 30 steps, with a row that counts the ones between.
    ///
    /// ```
    /// let trace = conclab::explore::random(1).run(|| ()).trace().clone();
    /// assert_eq!(trace.table().len(), 0);
    /// ```
    pub fn table(&self) -> Table {
        let mut table = Table::new(["step", "thread", "operation", "object", "value"]);
        let (head, skipped, tail) = self.shown();
        let row = |table: &mut Table, (n, step): (usize, &Step)| {
            table.add_row((
                n.to_string(),
                step.thread.as_str(),
                step.op.as_str(),
                step.object.as_str(),
                step.value.as_deref().unwrap_or(""),
            ));
        };
        for numbered in head {
            row(&mut table, numbered);
        }
        if skipped > 0 {
            table.add_row(("…", format!("{skipped} more steps"), "", "", ""));
        }
        for numbered in tail {
            row(&mut table, numbered);
        }
        table
    }

    /// The steps as a timeline picture (SVG): one row per thread, one bar per step (the
    /// last 120 steps of a longer trace, where a failure shows).
    ///
    /// ```
    /// let trace = conclab::explore::random(1).run(|| ()).trace().clone();
    /// assert!(trace.svg("nothing happened").starts_with("<svg"));
    /// ```
    pub fn svg(&self, title: &str) -> String {
        let first = self.steps.len().saturating_sub(2 * SHOWN_STEPS);
        let spans: Vec<Span> = self
            .steps
            .iter()
            .enumerate()
            .skip(first)
            .map(|(i, step)| Span {
                label: match &step.value {
                    Some(value) if step.op == "read" || step.op == "write" => {
                        format!("{} {value}", step.op)
                    }
                    _ => format!("{} {}", step.op, step.object),
                },
                row: step.thread.clone(),
                pid: 0,
                tid: 0,
                start: Duration::from_millis(i as u64),
                end: Duration::from_millis(i as u64 + 1),
                named_row: true,
            })
            .collect();
        crate::timeline::svg_of_steps(title, &spans)
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, skipped, tail) = self.shown();
        for (n, step) in head {
            writeln!(f, "{n:>5}. {step}")?;
        }
        if skipped > 0 {
            writeln!(f, "      … {skipped} more steps …")?;
        }
        for (n, step) in tail {
            writeln!(f, "{n:>5}. {step}")?;
        }
        Ok(())
    }
}

/// The version tag in front of every schedule string.
const SCHEDULE_TAG: &str = "s1:";

/// The schedule string of a list of choices: `s1:` and the chosen threads' numbers.
pub(crate) fn encode(choices: &[usize]) -> String {
    let numbers: Vec<String> = choices.iter().map(ToString::to_string).collect();
    format!("{SCHEDULE_TAG}{}", numbers.join("."))
}

/// The choices of a schedule string, or why it is not one.
pub(crate) fn decode(schedule: &str) -> Result<Vec<usize>, String> {
    let body = schedule.trim().strip_prefix(SCHEDULE_TAG).ok_or_else(|| {
        format!(
            "'{schedule}' is not a schedule string: they start with '{SCHEDULE_TAG}'; copy the \
             whole string a report printed"
        )
    })?;
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split('.')
        .map(|n| {
            n.parse()
                .map_err(|_| format!("'{n}' in the schedule string is not a thread number"))
        })
        .collect()
}

/// A schedule, the steps it took, and how it ended: what [`replay`](super::replay) returns
/// and [`Report::first_failure`](super::Report::first_failure) holds.
///
/// ```
/// let run = conclab::explore::replay("s1:", || 5).unwrap();
/// assert_eq!(run.outcome.as_deref(), Some("5"));
/// assert!(run.failure.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Pass it to [`replay`](super::replay) to take the same steps again.
    pub schedule: String,
    /// What happened.
    pub trace: Trace,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
    /// The closure's result (its `Debug` text) when it returned.
    pub outcome: Option<String>,
}

impl Schedule {
    /// A title for the picture and the text.
    pub(crate) fn headline(&self) -> String {
        match &self.failure {
            Some(failure) => format!("{failure}"),
            None => match &self.outcome {
                Some(outcome) => format!("no failure; the closure returned {outcome}"),
                None => "no failure".to_owned(),
            },
        }
    }

    /// The steps as a table (see [`Trace::table`]).
    ///
    /// ```
    /// let run = conclab::explore::replay("s1:", || ()).unwrap();
    /// assert_eq!(run.table().len(), 0);
    /// ```
    pub fn table(&self) -> Table {
        self.trace.table()
    }

    /// Shows the schedule in a notebook: the failure, the timeline and the steps (HTML),
    /// with the same as text.
    ///
    /// ```
    /// conclab::explore::replay("s1:", || ()).unwrap().evcxr_display();
    /// ```
    pub fn evcxr_display(&self) {
        display::print_blocks(&[
            (display::TEXT_MIME, &self.to_string()),
            (display::HTML_MIME, &self.html()),
        ]);
    }

    pub(crate) fn html(&self) -> String {
        format!(
            "<p><b>{}</b></p>\n{}",
            display::escape(&self.headline()),
            self.html_body()
        )
    }

    /// The schedule string, the timeline and the table, without the headline.
    pub(crate) fn html_body(&self) -> String {
        format!(
            "<p>schedule: <code>{}</code></p>\n{}\n{}",
            display::escape(&self.schedule),
            self.trace.svg(&self.headline()),
            self.trace.table().html()
        )
    }

    /// The schedule string and the steps as text, without the headline.
    pub(crate) fn text_body(&self) -> String {
        format!("schedule: {}\n{}", self.schedule, self.trace)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        write!(f, "{}", self.text_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_strings_round_trip() {
        let choices = vec![0, 2, 1, 1];
        assert_eq!(encode(&choices), "s1:0.2.1.1");
        assert_eq!(decode(&encode(&choices)), Ok(choices));
        assert_eq!(decode("s1:"), Ok(vec![]));
        assert!(decode("0.1").unwrap_err().contains("start with 's1:'"));
        assert!(decode("s1:0.x").is_err());
    }
}
