//! What an exploration found: the first failing schedule, or the outcomes of them all.

use super::trace::{Schedule, Trace};
use crate::chart::BarChart;
use crate::display;
use crate::table::Table;
use std::fmt;

/// The result of [`Explorer::run`](super::Explorer::run).
///
/// When a schedule failed, [`first_failure`](Report::first_failure) has it, with its
/// steps and its schedule string for [`replay`](super::replay). Otherwise the report
/// counts the schedules tried and the closure's distinct results. In a notebook the
/// report shows itself: the failing schedule's timeline and steps, or a chart of the
/// outcomes.
///
/// ```
/// use conclab::explore;
/// use conclab::prelude::*;
/// use std::sync::Arc;
///
/// let report = explore::exhaustive().run(|| {
///     let counter = Arc::new(LockedCounter::new());
///     let other = Arc::clone(&counter);
///     let t = Thread::new(move || other.increment()).start().unwrap();
///     counter.increment();
///     t.join().unwrap();
///     counter.get()
/// });
/// assert!(report.is_ok());
/// assert!(report.is_exhaustive());
/// assert_eq!(report.outcomes(), &[("2".to_string(), report.schedules())]);
/// ```
#[derive(Debug, Clone)]
pub struct Report {
    pub(crate) strategy: String,
    pub(crate) schedules: usize,
    pub(crate) failed: usize,
    pub(crate) exhaustive: bool,
    pub(crate) outcomes: Vec<(String, usize)>,
    pub(crate) first_failure: Option<Schedule>,
    /// The number (from 1) of the first failing schedule.
    pub(crate) first_failed_at: usize,
    pub(crate) last: Schedule,
}

impl Report {
    /// Whether no schedule failed.
    ///
    /// ```
    /// assert!(conclab::explore::random(3).run(|| ()).is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        self.first_failure.is_none()
    }

    /// How many schedules ran.
    ///
    /// ```
    /// assert_eq!(conclab::explore::random(3).run(|| ()).schedules(), 3);
    /// ```
    pub fn schedules(&self) -> usize {
        self.schedules
    }

    /// How many of them failed (more than one only with [`keep_going`](super::Explorer::keep_going)).
    ///
    /// ```
    /// assert_eq!(conclab::explore::random(3).run(|| ()).failed(), 0);
    /// ```
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Whether the search tried every schedule (only [`exhaustive`](super::exhaustive)
    /// can, within its bound).
    ///
    /// ```
    /// assert!(conclab::explore::exhaustive().run(|| ()).is_exhaustive());
    /// assert!(!conclab::explore::random(1).run(|| ()).is_exhaustive());
    /// ```
    pub fn is_exhaustive(&self) -> bool {
        self.exhaustive
    }

    /// The closure's distinct results (their `Debug` text) and how many schedules gave
    /// each, numbers in numeric order.
    ///
    /// ```
    /// let report = conclab::explore::random(4).run(|| 7);
    /// assert_eq!(report.outcomes(), &[("7".to_string(), 4)]);
    /// ```
    pub fn outcomes(&self) -> &[(String, usize)] {
        &self.outcomes
    }

    /// The first schedule that failed, with its steps and schedule string.
    ///
    /// ```
    /// let report = conclab::explore::random(2).run(|| assert_eq!(1 + 1, 3));
    /// let failed = report.first_failure().unwrap();
    /// assert!(failed.failure.as_ref().unwrap().to_string().contains("panicked"));
    /// ```
    pub fn first_failure(&self) -> Option<&Schedule> {
        self.first_failure.as_ref()
    }

    /// The trace of the first failing schedule, or else of the last schedule run.
    ///
    /// ```
    /// assert!(conclab::explore::random(1).run(|| ()).trace().steps.is_empty());
    /// ```
    pub fn trace(&self) -> &Trace {
        &self.first_failure.as_ref().unwrap_or(&self.last).trace
    }

    /// Panics unless every schedule passed; the message names the failure, its steps and
    /// the schedule string, so a grading test's feedback shows how to reproduce it.
    ///
    /// ```
    /// conclab::explore::random(5).run(|| ()).assert_ok();
    /// ```
    ///
    /// ```should_panic
    /// conclab::explore::random(5).run(|| assert!(false, "never")).assert_ok();
    /// ```
    #[track_caller]
    pub fn assert_ok(&self) {
        if let Some(failed) = &self.first_failure {
            panic!(
                "{}\nreplay it with conclab::explore::replay(\"{}\", ...)\n{}",
                self.summary(),
                failed.schedule,
                failed.trace
            );
        }
    }

    /// The outcomes as a table (outcome, schedules).
    ///
    /// ```
    /// assert_eq!(conclab::explore::random(2).run(|| 1).outcome_table().len(), 1);
    /// ```
    pub fn outcome_table(&self) -> Table {
        let mut table = Table::new(["outcome", "schedules"]);
        for (outcome, count) in &self.outcomes {
            table.add_row((outcome.as_str(), *count));
        }
        table
    }

    /// The outcomes as a bar chart, one bar per distinct result.
    ///
    /// ```
    /// assert_eq!(conclab::explore::random(2).run(|| 1).outcome_chart().len(), 1);
    /// ```
    pub fn outcome_chart(&self) -> BarChart {
        let mut chart = BarChart::new(format!(
            "Outcomes of {} schedules ({})",
            self.schedules, self.strategy
        ))
        .x_label("the closure's result")
        .y_label("schedules");
        for (outcome, count) in &self.outcomes {
            chart.add_bar(outcome, "schedules", *count as f64);
        }
        chart
    }

    fn summary(&self) -> String {
        let searched = if self.exhaustive {
            "the search was exhaustive".to_owned()
        } else {
            format!("{}, not exhaustive", self.strategy)
        };
        match &self.first_failure {
            Some(failed) => format!(
                "schedule {} of {} failed ({searched}): {}",
                self.first_failed_at,
                self.schedules,
                failed.headline()
            ),
            None => format!("no failure in {} schedules ({searched})", self.schedules),
        }
    }

    /// Shows the report in a notebook: the failing schedule (timeline and steps), or the
    /// outcomes (table and chart); always with a text version.
    ///
    /// ```
    /// conclab::explore::random(2).run(|| 1).evcxr_display();
    /// ```
    pub fn evcxr_display(&self) {
        let html = match &self.first_failure {
            Some(failed) => format!(
                "<p><b>{}</b></p>\n{}",
                display::escape(&self.summary()),
                failed.html_body()
            ),
            None => format!(
                "<p>{}</p>\n{}\n{}",
                display::escape(&self.summary()),
                self.outcome_table().html(),
                self.outcome_chart().svg()
            ),
        };
        display::print_blocks(&[
            (display::TEXT_MIME, &self.to_string()),
            (display::HTML_MIME, &html),
        ]);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary())?;
        match &self.first_failure {
            Some(failed) => write!(f, "{}", failed.text_body()),
            None => {
                for (outcome, count) in &self.outcomes {
                    writeln!(f, "  {outcome}: {count} schedules")?;
                }
                Ok(())
            }
        }
    }
}

/// Adds one schedule's outcome to the counts.
pub(crate) fn count(outcomes: &mut Vec<(String, usize)>, outcome: &str) {
    match outcomes.iter_mut().find(|(o, _)| o == outcome) {
        Some((_, n)) => *n += 1,
        None => outcomes.push((outcome.to_owned(), 1)),
    }
}

/// Numbers in numeric order, anything else after them in text order.
pub(crate) fn sort(outcomes: &mut [(String, usize)]) {
    outcomes.sort_by(
        |(a, _), (b, _)| match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => a.cmp(b),
        },
    );
}
