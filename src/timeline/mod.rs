//! A recorder of who did what when, drawn as a Gantt chart: one row per thread or process,
//! time across.
//!
//! | Python habit | conclab |
//! | --- | --- |
//! | `t0 = time.time(); work(); print(time.time() - t0)` around each task | [`Timeline::span`] |
//! | `threading.current_thread().name` in a log line | the row a span lands on |
//! | `multiprocessing.current_process().name` | `process <name>` rows, named by [`Timeline::name_process`] |
//! | a matplotlib `broken_barh` plot of the log | [`Timeline::svg`], shown inline by `evcxr_display` |
//!
//! std has [`std::time::Instant`] for the clock and names threads through
//! [`std::thread::Builder::name`]; parking_lot and crossbeam add nothing here. What a
//! timeline adds is a store that threads *and forked children* write into:
//!
//! * threads share it like any `Sync` value ([`Timeline`] is a cheap [`Clone`] of an
//!   `Arc`, or borrow it in [`std::thread::scope`]);
//! * a child made by `fork()` writes into the same memory, because the spans live in a
//!   `MAP_SHARED` anonymous mapping made with the timeline (see `shm.rs`): the parent sees
//!   the child's spans as soon as the child has recorded them, with no pipe and no
//!   message. The mapping has a fixed number of slots (65,536 by default, see
//!   [`Timeline::with_capacity`]); when they are all taken further spans are not stored,
//!   [`Timeline::dropped`] counts them and the picture says so. The work itself never
//!   fails because of the recorder.
//!
//! Nothing lives in a `static`: evcxr gives every notebook cell its own copy of this
//! crate's statics, so a global recorder would start empty in each cell. Keep the
//! `Timeline` in a variable and pass it around.
//!
//! ## Rows
//!
//! In the process that made the timeline a span lands on its thread's row: the thread's
//! name (`main`, or what `Builder::name` gave it) or `thread <tid>` for an unnamed one.
//! In a forked child it lands on `process <pid>`, or `process <name>` after
//! [`Timeline::name_process`]; a thread the child spawned gets
//! `process <pid> / <thread name>`. [`Timeline::record_on`] puts a span on a row you name.
//! Two threads with the same name get separate rows, told apart by their thread ids.
//!
//! ## Drawing
//!
//! The picture is drawn with plotters' SVG backend like the charts of [`crate::chart`]:
//! rows top to bottom in the order they first did something, time in milliseconds since
//! the first span started, each bar labelled when its label fits, and a legend. Bars are
//! coloured by label when there are at most ten different labels (so `download 2` has
//! the same colour in a sequential run and in a threaded one), and otherwise by label
//! group, the label without its trailing number (`download 17` is a `download`).
//!
//! ```
//! use conclab::timeline::Timeline;
//! use std::time::Duration;
//!
//! let timeline = Timeline::new("Three downloads on three threads")?;
//! std::thread::scope(|s| {
//!     for i in 1..=3 {
//!         let timeline = &timeline;
//!         std::thread::Builder::new()
//!             .name(format!("downloader-{i}"))
//!             .spawn_scoped(s, move || {
//!                 timeline.span(format!("download {i}"), || {
//!                     std::thread::sleep(Duration::from_millis(5))
//!                 })
//!             })
//!             .unwrap();
//!     }
//! });
//! assert_eq!(timeline.len(), 3);
//! assert_eq!(timeline.rows().len(), 3);
//! assert!(timeline.svg().contains("downloader-2"));
//! # Ok::<(), conclab::timeline::TimelineError>(())
//! ```

mod render;
mod shm;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm::{RawSpan, SpanStore};

use crate::display;

/// How many spans [`Timeline::new`] has room for.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// What can go wrong with a timeline.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The shared mapping for the spans could not be made.
    #[error("could not map shared memory for {capacity} spans: {source}; ask for fewer spans with Timeline::with_capacity")]
    Map {
        /// The capacity asked for.
        capacity: usize,
        /// What `mmap` said.
        source: std::io::Error,
    },
    /// The capacity asked for is 0 or larger than the limit.
    #[error("a timeline holds 1 to {max} spans, not {asked}; pick a capacity in that range")]
    Capacity {
        /// The capacity asked for.
        asked: usize,
        /// The largest capacity accepted.
        max: usize,
    },
    /// [`Timeline::name_process`] was called in the process that made the timeline.
    #[error("name_process names a forked child's row, but this is the process that made the timeline, whose rows are its threads: name the thread instead (std::thread::Builder::name)")]
    NotAChild,
    /// The table of process names is full.
    #[error("the timeline already holds {0} process names; the spans of this process stay on the row \"process <pid>\"")]
    NamesFull(usize),
    /// Drawing or saving the picture failed.
    #[error(transparent)]
    Picture(#[from] display::PictureError),
}

/// One recorded span, as [`Timeline::spans`] returns it.
///
/// ```
/// let timeline = conclab::timeline::Timeline::new("t")?;
/// timeline.span("work", || ());
/// let span = &timeline.spans()[0];
/// assert_eq!(span.label, "work");
/// assert_eq!(span.pid, std::process::id());
/// assert!(span.end >= span.start);
/// # Ok::<(), conclab::timeline::TimelineError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// What was done (at most 64 bytes are kept).
    pub label: String,
    /// The row it is drawn on (at most 40 bytes are kept: a longer name loses its middle).
    pub row: String,
    /// The process that recorded it.
    pub pid: u32,
    /// The thread that recorded it (its kernel thread id).
    pub tid: u32,
    /// When it started, since the timeline was made.
    pub start: Duration,
    /// When it ended, since the timeline was made.
    pub end: Duration,
    /// Whether the row was named by [`Timeline::record_on`] rather than found from the
    /// thread or process.
    pub named_row: bool,
}

impl Span {
    /// How long the span lasted.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// timeline.span("nap", || std::thread::sleep(std::time::Duration::from_millis(2)));
    /// assert!(timeline.spans()[0].duration() >= std::time::Duration::from_millis(2));
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

struct Shared {
    store: SpanStore,
    origin: Instant,
    recorder_pid: u32,
}

/// A recorder of spans of work, shared by threads and by forked children, and drawn as a
/// Gantt chart. See the [module documentation](self) for rows, colours and limits.
///
/// `Timeline` is `Send + Sync` and cloning it is cheap (the clones record into the same
/// store), so a thread can borrow it in a scope or take a clone.
///
/// ```
/// use conclab::timeline::Timeline;
///
/// let timeline = Timeline::new("Sequential")?;
/// for i in 1..=3 {
///     timeline.span(format!("download {i}"), || std::thread::sleep(std::time::Duration::from_millis(1)));
/// }
/// let spans = timeline.spans();
/// assert!(spans[0].end <= spans[1].start && spans[1].end <= spans[2].start);
/// # Ok::<(), conclab::timeline::TimelineError>(())
/// ```
#[derive(Clone)]
pub struct Timeline {
    shared: Arc<Shared>,
    title: String,
}

impl fmt::Debug for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeline")
            .field("title", &self.title)
            .field("spans", &self.len())
            .field("capacity", &self.capacity())
            .field("dropped", &self.dropped())
            .finish()
    }
}

fn current_tid() -> u32 {
    crate::os::process::thread_id()
}

fn since(origin: Instant, t: Instant) -> u64 {
    t.checked_duration_since(origin)
        .unwrap_or_default()
        .as_nanos()
        .min(u128::from(u64::MAX)) as u64
}

impl Timeline {
    /// A new, empty timeline with a title and room for [`DEFAULT_CAPACITY`] spans.
    ///
    /// The slots are reserved as address space; memory is only used as spans fill them.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("Downloads")?;
    /// assert!(timeline.is_empty());
    /// assert_eq!(timeline.title(), "Downloads");
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn new(title: impl Into<String>) -> Result<Timeline, TimelineError> {
        Timeline::with_capacity(title, DEFAULT_CAPACITY)
    }

    /// A new timeline with room for `capacity` spans (1 to 4,194,304; each takes 136
    /// bytes of shared memory once used).
    ///
    /// ```
    /// use conclab::timeline::{Timeline, TimelineError};
    ///
    /// let small = Timeline::with_capacity("small", 2)?;
    /// for _ in 0..3 {
    ///     small.span("x", || ());
    /// }
    /// assert_eq!((small.len(), small.dropped()), (2, 1));
    /// assert!(matches!(
    ///     Timeline::with_capacity("none", 0),
    ///     Err(TimelineError::Capacity { .. })
    /// ));
    /// # Ok::<(), TimelineError>(())
    /// ```
    pub fn with_capacity(
        title: impl Into<String>,
        capacity: usize,
    ) -> Result<Timeline, TimelineError> {
        if capacity == 0 || capacity > shm::MAX_CAPACITY {
            return Err(TimelineError::Capacity {
                asked: capacity,
                max: shm::MAX_CAPACITY,
            });
        }
        let store =
            SpanStore::new(capacity).map_err(|source| TimelineError::Map { capacity, source })?;
        Ok(Timeline {
            shared: Arc::new(Shared {
                store,
                origin: Instant::now(),
                recorder_pid: std::process::id(),
            }),
            title: title.into(),
        })
    }

    /// The title drawn above the picture.
    ///
    /// ```
    /// assert_eq!(conclab::timeline::Timeline::new("T")?.title(), "T");
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn title(&self) -> &str {
        &self.title
    }

    /// Changes the title of this handle (clones keep their own title, and share spans).
    ///
    /// ```
    /// let mut timeline = conclab::timeline::Timeline::new("before")?;
    /// timeline.set_title("after");
    /// assert!(timeline.svg().contains("after"));
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn set_title(&mut self, title: impl Into<String>) {
        self.title = title.into();
    }

    /// Runs `work`, records it as a span labelled `label` on the current thread's (or
    /// process's) row, and returns what `work` returned.
    ///
    /// If `work` panics the span is still recorded, ending at the panic, and the panic
    /// goes on.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// let sum: u64 = timeline.span("add up", || (1..=100).sum());
    /// assert_eq!(sum, 5050);
    /// assert_eq!(timeline.spans()[0].label, "add up");
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn span<T>(&self, label: impl Into<String>, work: impl FnOnce() -> T) -> T {
        let _guard = self.start(label);
        work()
    }

    /// Starts a span that is recorded when the returned guard is dropped (or
    /// [`SpanGuard::finish`]ed): the form for work that is not one closure.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// {
    ///     let _span = timeline.start("critical section");
    ///     // ... work ...
    /// }
    /// assert_eq!(timeline.len(), 1);
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn start(&self, label: impl Into<String>) -> SpanGuard<'_> {
        SpanGuard {
            timeline: self,
            label: label.into(),
            start: Instant::now(),
            done: false,
        }
    }

    /// Records a span measured elsewhere, on the current thread's (or process's) row.
    /// Returns `false` if the timeline was full and the span was dropped.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// let start = Instant::now();
    /// assert!(timeline.record("measured", start, start + Duration::from_millis(3)));
    /// assert_eq!(timeline.spans()[0].duration(), Duration::from_millis(3));
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn record(&self, label: &str, start: Instant, end: Instant) -> bool {
        let (row, pid, tid) = self.current_row();
        self.push(label, row, pid, tid, false, start, end)
    }

    /// Records a span on a row you name (a worker of a pool measured from outside, a lock,
    /// "the GIL"). Returns `false` if the timeline was full and the span was dropped.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// let now = Instant::now();
    /// timeline.record_on("the GIL", "held by thread 1", now, now + Duration::from_millis(1));
    /// assert_eq!(timeline.rows(), vec!["the GIL".to_string()]);
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn record_on(&self, row: &str, label: &str, start: Instant, end: Instant) -> bool {
        self.push(
            label,
            row.to_owned(),
            std::process::id(),
            current_tid(),
            true,
            start,
            end,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        label: &str,
        row: String,
        pid: u32,
        tid: u32,
        explicit_row: bool,
        start: Instant,
        end: Instant,
    ) -> bool {
        let origin = self.shared.origin;
        let start_ns = since(origin, start);
        let end_ns = since(origin, end).max(start_ns);
        self.shared.store.push(&RawSpan {
            pid,
            tid,
            explicit_row,
            start_ns,
            end_ns,
            label: label.to_owned(),
            row,
        })
    }

    /// The row a span recorded here and now lands on, with the pid and tid.
    fn current_row(&self) -> (String, u32, u32) {
        let pid = std::process::id();
        let tid = current_tid();
        let thread = std::thread::current();
        let thread_name = thread
            .name()
            .map_or_else(|| format!("thread {tid}"), str::to_owned);
        if pid == self.shared.recorder_pid {
            return (thread_name, pid, tid);
        }
        let process = match self.shared.store.name_of(pid) {
            // Python names its children "Process-1": no need to say "process" twice.
            Some(name) if name.to_lowercase().starts_with("process") => name,
            Some(name) => format!("process {name}"),
            None => format!("process {pid}"),
        };
        if tid == pid {
            (process, pid, tid)
        } else {
            (format!("{process} / {thread_name}"), pid, tid)
        }
    }

    /// Names the calling process's row `process <name>` instead of `process <pid>` (just
    /// `<name>` when it already starts with "process", as Python's `Process-1` does); call
    /// it in a forked child, before it records.
    ///
    /// The process that made the timeline has a row per thread, so there this returns
    /// [`TimelineError::NotAChild`]. Names are kept per pid (64 at most, 40 bytes each);
    /// a pid the system reuses for a later child takes the old name unless that child
    /// names itself too.
    ///
    /// ```
    /// use conclab::timeline::{Timeline, TimelineError};
    /// let timeline = Timeline::new("t")?;
    /// assert!(matches!(timeline.name_process("me"), Err(TimelineError::NotAChild)));
    /// # Ok::<(), TimelineError>(())
    /// ```
    pub fn name_process(&self, name: &str) -> Result<(), TimelineError> {
        let pid = std::process::id();
        if pid == self.shared.recorder_pid {
            return Err(TimelineError::NotAChild);
        }
        if self.shared.store.set_name(pid, name) {
            Ok(())
        } else {
            Err(TimelineError::NamesFull(shm::NAME_SLOTS))
        }
    }

    /// Every recorded span, from every thread and child, sorted by start time.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// timeline.span("a", || ());
    /// timeline.span("b", || ());
    /// let labels: Vec<_> = timeline.spans().into_iter().map(|s| s.label).collect();
    /// assert_eq!(labels, ["a", "b"]);
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn spans(&self) -> Vec<Span> {
        let mut spans: Vec<Span> = self
            .shared
            .store
            .read_all()
            .into_iter()
            .map(|raw| Span {
                label: raw.label,
                row: raw.row,
                pid: raw.pid,
                tid: raw.tid,
                start: Duration::from_nanos(raw.start_ns),
                end: Duration::from_nanos(raw.end_ns),
                named_row: raw.explicit_row,
            })
            .collect();
        spans.sort_by_key(|s| (s.start, s.end));
        spans
    }

    /// How many spans are recorded.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// timeline.span("a", || ());
    /// assert_eq!(timeline.len(), 1);
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shared.store.read_all().len()
    }

    /// Whether nothing is recorded yet.
    ///
    /// ```
    /// assert!(conclab::timeline::Timeline::new("t")?.is_empty());
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many spans the timeline has room for.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::with_capacity("t", 10)?;
    /// assert_eq!(timeline.capacity(), 10);
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.shared.store.capacity()
    }

    /// How many spans were not stored because the timeline was full.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::with_capacity("t", 1)?;
    /// timeline.span("kept", || ());
    /// timeline.span("dropped", || ());
    /// assert_eq!(timeline.dropped(), 1);
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn dropped(&self) -> u64 {
        self.shared.store.dropped()
    }

    /// The rows of the picture, top to bottom: in the order they first started a span.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// timeline.span("a", || ());
    /// std::thread::Builder::new()
    ///     .name("helper".into())
    ///     .spawn({
    ///         let timeline = timeline.clone();
    ///         move || timeline.span("b", || ())
    ///     })
    ///     .unwrap()
    ///     .join()
    ///     .unwrap();
    /// assert_eq!(timeline.rows(), ["main", "helper"]);
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn rows(&self) -> Vec<String> {
        render::Layout::new(&self.spans()).row_names
    }

    /// The timeline as an SVG Gantt chart.
    ///
    /// Drawing into memory does not fail in practice; if plotters ever refuses, the SVG
    /// shows its reason as text (and [`Timeline::save_svg`] returns it as an error).
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// timeline.span("a", || ());
    /// assert!(timeline.svg().starts_with("<svg"));
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn svg(&self) -> String {
        display::svg(self)
    }

    /// Writes the SVG to `path`.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("timeline-{}.svg", std::process::id()));
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// timeline.span("a", || ());
    /// timeline.save_svg(&path)?;
    /// assert!(std::fs::read_to_string(&path).unwrap().contains("<svg"));
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<(), TimelineError> {
        Ok(display::save_svg(self, path.as_ref())?)
    }

    /// Shows the picture in a notebook cell (evcxr calls this for a cell's last value),
    /// with the text summary as its `text/plain`. One picture per cell: a second SVG in the same cell replaces the first.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// timeline.evcxr_display();
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn evcxr_display(&self) {
        display::show(self);
    }
}

impl display::Picture for Timeline {
    fn render(&self) -> Result<String, String> {
        render::svg(
            &self.title,
            &self.spans(),
            self.dropped(),
            self.capacity(),
            "milliseconds since the first span started",
        )
    }

    fn text(&self) -> String {
        self.to_string()
    }
}

/// The timeline picture of spans one unit long per step, for `explore`'s schedules.
pub(crate) fn svg_of_steps(title: &str, spans: &[Span]) -> String {
    struct Steps<'a>(&'a str, &'a [Span]);
    impl display::Picture for Steps<'_> {
        fn render(&self) -> Result<String, String> {
            render::svg(self.0, self.1, 0, self.1.len(), "step of the schedule")
        }
        fn text(&self) -> String {
            render::text(self.0, self.1, 0, self.1.len())
        }
    }
    display::svg(&Steps(title, spans))
}

/// A span in progress, recorded when dropped. Made by [`Timeline::start`].
///
/// ```
/// let timeline = conclab::timeline::Timeline::new("t")?;
/// let span = timeline.start("step 1");
/// span.finish();
/// assert_eq!(timeline.spans()[0].label, "step 1");
/// # Ok::<(), conclab::timeline::TimelineError>(())
/// ```
///
/// The guard borrows its timeline, so it cannot leave for a thread that may outlive it;
/// such a thread takes a clone of the timeline and starts its own span:
///
/// ```compile_fail
/// let timeline = conclab::timeline::Timeline::new("t").unwrap();
/// let span = timeline.start("escapes");
/// std::thread::spawn(move || drop(span)); // error: `timeline` does not live long enough
/// ```
#[must_use = "the span ends when this guard is dropped; bind it with `let _span = ...`"]
pub struct SpanGuard<'a> {
    timeline: &'a Timeline,
    label: String,
    start: Instant,
    done: bool,
}

impl SpanGuard<'_> {
    /// Ends the span now; returns `false` if the timeline was full and it was dropped.
    ///
    /// ```
    /// let timeline = conclab::timeline::Timeline::new("t")?;
    /// assert!(timeline.start("x").finish());
    /// # Ok::<(), conclab::timeline::TimelineError>(())
    /// ```
    pub fn finish(mut self) -> bool {
        self.done = true;
        self.timeline
            .record(&self.label, self.start, Instant::now())
    }
}

impl Drop for SpanGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.timeline
                .record(&self.label, self.start, Instant::now());
        }
    }
}

/// A text summary for a terminal: one line per row with a bar of where it was busy, then
/// (for up to 40 spans) every span with its times.
///
/// ```
/// let timeline = conclab::timeline::Timeline::new("Demo")?;
/// timeline.span("work", || std::thread::sleep(std::time::Duration::from_millis(1)));
/// let text = timeline.to_string();
/// assert!(text.starts_with("Demo: 1 span on 1 row"));
/// assert!(text.contains("main"));
/// # Ok::<(), conclab::timeline::TimelineError>(())
/// ```
impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render::text(
            &self.title,
            &self.spans(),
            self.dropped(),
            self.capacity(),
        ))
    }
}
