//! The timeline against real threads and real `fork()`ed children, and its SVG read back
//! with an XML parser.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use conclab::timeline::{Timeline, TimelineError};

/// The trimmed text of every `<text>` element, with its x and y.
fn texts(svg: &str) -> Vec<(String, f64, f64)> {
    texts_anchored(svg)
        .into_iter()
        .map(|(t, x, y, _)| (t, x, y))
        .collect()
}

/// Like `texts`, with the `text-anchor` (bar labels are centred, legend entries start).
fn texts_anchored(svg: &str) -> Vec<(String, f64, f64, String)> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG must be well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            let num = |a: &str| n.attribute(a).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            (
                n.text().unwrap_or("").trim().to_owned(),
                num("x"),
                num("y"),
                n.attribute("text-anchor").unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn count_text(svg: &str, wanted: &str) -> usize {
    texts(svg).iter().filter(|(t, _, _)| t == wanted).count()
}

/// Forks a child that runs `body` and always leaves with `_exit` (also after a panic),
/// so it never runs the test harness's code after the fork.
fn fork_child(body: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child only runs `body` (which touches the timeline's shared mapping and
    // allocates, which glibc makes safe after fork) and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = catch_unwind(AssertUnwindSafe(body)).is_ok();
        // SAFETY: _exit ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 101 }) };
    }
    pid
}

/// Waits for `pid` and returns its exit status; a hang guard kills it after 60 s.
fn wait_child(pid: libc::pid_t) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut status = 0;
        // SAFETY: pid is our own child; status is a valid out pointer.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(got >= 0, "waitpid failed");
        if got == pid {
            assert!(libc::WIFEXITED(status), "child {pid} did not exit normally");
            return libc::WEXITSTATUS(status);
        }
        if Instant::now() > deadline {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} hung");
        }
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_timeline_is_shared_by_reference_or_by_clone() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Timeline>();
    let timeline = Timeline::new("clones").unwrap();
    let clone = timeline.clone();
    thread::spawn(move || clone.span("from a clone", || ()))
        .join()
        .unwrap();
    assert_eq!(timeline.len(), 1, "clones record into the same store");
}

#[test]
fn one_row_per_thread_and_each_row_is_labelled_once() {
    let timeline = Timeline::new("threads").unwrap();
    let names = ["alpha", "bravo", "charlie", "delta"];
    thread::scope(|s| {
        for name in names {
            let timeline = &timeline;
            thread::Builder::new()
                .name(name.to_owned())
                .spawn_scoped(s, move || {
                    for i in 0..3 {
                        timeline.span(format!("job {i}"), || {
                            thread::sleep(Duration::from_millis(1))
                        });
                    }
                })
                .unwrap();
        }
    });
    assert_eq!(timeline.len(), 12);
    let mut rows = timeline.rows();
    rows.sort();
    assert_eq!(rows, names);
    let svg = timeline.svg();
    for name in names {
        assert_eq!(
            count_text(&svg, name),
            1,
            "row {name} must be labelled once"
        );
    }
}

#[test]
fn bars_of_a_row_are_drawn_in_time_order() {
    let timeline = Timeline::new("order").unwrap();
    thread::Builder::new()
        .name("sequential".into())
        .spawn({
            let timeline = timeline.clone();
            move || {
                for label in ["first", "second", "third"] {
                    timeline.span(label, || thread::sleep(Duration::from_millis(10)));
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
    let spans = timeline.spans();
    assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));

    let texts = texts_anchored(&timeline.svg());
    // Each label shows twice: in the legend (anchored at its start) and on its bar
    // (centred); the bars are what this test is about.
    let on_bar = |label: &str| {
        let found: Vec<_> = texts
            .iter()
            .filter(|(t, _, _, anchor)| t == label && anchor == "middle")
            .collect();
        assert_eq!(found.len(), 1, "bar label {label} must appear once");
        (found[0].1, found[0].2)
    };
    let x_of = |label: &str| on_bar(label).0;
    let y_of = |label: &str| {
        if label == "sequential" {
            texts.iter().find(|(t, ..)| t == label).unwrap().2
        } else {
            on_bar(label).1
        }
    };
    assert!(x_of("first") < x_of("second") && x_of("second") < x_of("third"));
    assert_eq!(y_of("first"), y_of("third"), "one thread, one row");
    // The row's name sits at the height of its bars.
    assert_eq!(y_of("sequential"), y_of("first"));
}

#[test]
fn rows_are_ordered_by_their_first_span() {
    let timeline = Timeline::new("order of rows").unwrap();
    let run = |name: &str, delay: u64| {
        let timeline = timeline.clone();
        thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                thread::sleep(Duration::from_millis(delay));
                timeline.span("w", || ());
            })
            .unwrap()
    };
    let late = run("late", 40);
    let early = run("early", 0);
    early.join().unwrap();
    late.join().unwrap();
    assert_eq!(timeline.rows(), ["early", "late"]);
    let texts = texts(&timeline.svg());
    let y = |name: &str| texts.iter().find(|(t, _, _)| t == name).unwrap().2;
    assert!(y("early") < y("late"), "the first row is drawn on top");
}

#[test]
fn spans_recorded_by_forked_children_reach_the_parent() {
    let timeline = Timeline::new("processes").unwrap();
    timeline.span("parent work", || thread::sleep(Duration::from_millis(1)));
    let named = fork_child(|| {
        timeline.name_process("worker-a").unwrap();
        for i in 0..3 {
            timeline.span(format!("chunk {i}"), || {
                thread::sleep(Duration::from_millis(2))
            });
        }
    });
    let unnamed = fork_child(|| {
        timeline.span("anonymous", || thread::sleep(Duration::from_millis(2)));
    });
    assert_eq!(wait_child(named), 0);
    assert_eq!(wait_child(unnamed), 0);

    let spans = timeline.spans();
    assert_eq!(spans.len(), 5);
    let from = |pid: libc::pid_t| spans.iter().filter(|s| s.pid == pid as u32).count();
    assert_eq!((from(named), from(unnamed)), (3, 1));
    let rows = timeline.rows();
    let named_row = "process worker-a".to_owned();
    let unnamed_row = format!("process {unnamed}");
    assert!(rows.contains(&named_row), "{rows:?}");
    assert!(rows.contains(&unnamed_row), "{rows:?}");
    assert_eq!(
        rows.len(),
        3,
        "the parent's thread and two children: {rows:?}"
    );

    let svg = timeline.svg();
    assert_eq!(count_text(&svg, &named_row), 1);
    assert_eq!(count_text(&svg, &unnamed_row), 1);
}

#[test]
fn a_thread_inside_a_child_gets_its_own_row() {
    let timeline = Timeline::new("child threads").unwrap();
    let pid = fork_child(|| {
        timeline.span("child main", || ());
        thread::Builder::new()
            .name("inner".into())
            .spawn({
                let timeline = timeline.clone();
                move || timeline.span("child thread", || ())
            })
            .unwrap()
            .join()
            .unwrap();
    });
    assert_eq!(wait_child(pid), 0);
    let rows = timeline.rows();
    assert_eq!(
        rows,
        [format!("process {pid}"), format!("process {pid} / inner")]
    );
}

#[test]
fn a_full_timeline_drops_spans_from_every_process_and_says_so() {
    let timeline = Timeline::with_capacity("tiny", 10).unwrap();
    let pid = fork_child(|| {
        for _ in 0..15 {
            timeline.span("child", || ());
        }
    });
    assert_eq!(wait_child(pid), 0);
    let kept = timeline.span("parent", || 42);
    assert_eq!(
        kept, 42,
        "the work still runs when the span cannot be stored"
    );
    assert_eq!(timeline.len(), 10);
    assert_eq!(timeline.dropped(), 6);
    let svg = timeline.svg();
    assert!(
        texts(&svg)
            .iter()
            .any(|(t, _, _)| t.starts_with("6 more spans were not recorded")),
        "the picture must say that spans are missing"
    );
    assert!(timeline
        .to_string()
        .contains("6 more spans were not recorded"));
}

#[test]
fn many_threads_record_without_losing_a_span() {
    let timeline = Timeline::new("stress").unwrap();
    thread::scope(|s| {
        for t in 0..8 {
            let timeline = &timeline;
            thread::Builder::new()
                .name(format!("t{t}"))
                .spawn_scoped(s, move || {
                    for i in 0..500 {
                        timeline.span(format!("{t}/{i}"), || ());
                    }
                })
                .unwrap();
        }
    });
    let spans = timeline.spans();
    assert_eq!(spans.len(), 4000);
    let mut labels: Vec<&str> = spans.iter().map(|s| s.label.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), 4000);
    assert_eq!(timeline.rows().len(), 8);
}

#[test]
fn the_guard_records_a_span_even_when_the_work_panics() {
    let timeline = Timeline::new("panics").unwrap();
    let result = thread::Builder::new()
        .name("doomed".into())
        .spawn({
            let timeline = timeline.clone();
            move || {
                let _span = timeline.start("about to fail");
                // A quiet failure: resume_unwind skips the panic hook, so the test log
                // shows no panic message for a panic that is expected here.
                std::panic::resume_unwind(Box::new("expected"));
            }
        })
        .unwrap()
        .join();
    assert!(result.is_err());
    let spans = timeline.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].label.as_str(), spans[0].row.as_str()),
        ("about to fail", "doomed")
    );
}

#[test]
fn pictures_of_2_8_and_32_rows_keep_every_row_name() {
    let mut heights = Vec::new();
    for rows in [2usize, 8, 32] {
        let timeline = Timeline::new(format!("{rows} rows")).unwrap();
        let start = Instant::now();
        for r in 0..rows {
            let a = start + Duration::from_millis(r as u64);
            timeline.record_on(&format!("row {r}"), "w", a, a + Duration::from_millis(5));
        }
        let svg = timeline.svg();
        for r in 0..rows {
            assert_eq!(count_text(&svg, &format!("row {r}")), 1);
        }
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let height: f64 = doc
            .root_element()
            .attribute("height")
            .unwrap()
            .parse()
            .unwrap();
        heights.push(height);
    }
    assert!(
        heights[0] < heights[1] && heights[1] < heights[2],
        "{heights:?}"
    );
    assert!(
        heights[2] <= 1000.0,
        "32 rows should still fit a screen: {heights:?}"
    );
}

#[test]
fn a_long_row_name_keeps_its_distinguishing_end() {
    let timeline = Timeline::new("long names").unwrap();
    let now = Instant::now();
    for i in [1, 2] {
        let row = format!("a-worker-thread-with-a-really-quite-long-name-{i}");
        timeline.record_on(&row, "w", now, now + Duration::from_millis(1));
    }
    let texts = texts(&timeline.svg());
    assert!(
        texts
            .iter()
            .any(|(t, _, _)| t.contains('…') && t.ends_with("-1")),
        "{texts:?}"
    );
    assert!(texts
        .iter()
        .any(|(t, _, _)| t.contains('…') && t.ends_with("-2")));
}

#[test]
fn an_empty_timeline_still_draws_and_says_why_it_is_empty() {
    let timeline = Timeline::new("nothing yet").unwrap();
    let svg = timeline.svg();
    assert!(texts(&svg)
        .iter()
        .any(|(t, _, _)| t.starts_with("no spans yet")));
    assert!(timeline
        .to_string()
        .starts_with("nothing yet: 0 spans on 0 rows"));
}

#[test]
fn labels_are_escaped_in_the_svg() {
    let timeline = Timeline::new("<script>&").unwrap();
    timeline.span("a < b & c", || thread::sleep(Duration::from_millis(2)));
    let svg = timeline.svg();
    assert_eq!(count_text(&svg, "<script>&"), 1);
}

#[test]
fn the_text_summary_has_one_bar_line_per_row() {
    let timeline = Timeline::new("summary").unwrap();
    thread::scope(|s| {
        for name in ["x", "y"] {
            let timeline = &timeline;
            thread::Builder::new()
                .name(name.into())
                .spawn_scoped(s, move || {
                    timeline.span("w", || thread::sleep(Duration::from_millis(2)))
                })
                .unwrap();
        }
    });
    let text = timeline.to_string();
    let bars: Vec<&str> = text.lines().filter(|l| l.contains('|')).collect();
    assert_eq!(bars.len(), 2, "{text}");
    let bar_start: Vec<usize> = bars.iter().map(|l| l.find('|').unwrap()).collect();
    assert_eq!(bar_start[0], bar_start[1], "bars line up:\n{text}");
}

#[test]
fn name_process_is_refused_in_the_recording_process() {
    let timeline = Timeline::new("t").unwrap();
    let error = timeline.name_process("x").unwrap_err();
    assert!(matches!(error, TimelineError::NotAChild));
    assert!(error.to_string().contains("std::thread::Builder::name"));
}

#[test]
fn save_svg_reports_a_missing_folder() {
    let timeline = Timeline::new("t").unwrap();
    let error = timeline
        .save_svg("/nonexistent-folder-for-conclab/t.svg")
        .unwrap_err();
    assert!(matches!(
        error,
        TimelineError::Picture(conclab::display::PictureError::Io { .. })
    ));
    assert!(error.to_string().contains("folder exists"));
}
