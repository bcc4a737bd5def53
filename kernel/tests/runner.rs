//! `conclab-kernel run` against the real evcxr kernel (installed by `conclab-kernel setup`,
//! which the README has you run first), and its handling of bad input.

#[path = "support/paths.rs"]
mod paths;

use paths::fixture;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// No run of a fixture may take longer than this: the runner must never hang.
const HANG_GUARD: Duration = Duration::from_secs(300);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The report line of cell `index`.
    fn cell(&self, index: usize) -> &str {
        let prefix = format!("cell {index:>3} ");
        self.stdout
            .lines()
            .find(|line| line.trim_start().starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for cell {index} in:\n{}", self.stdout))
    }
}

/// Kernels run one at a time: each one compiles, and on a 2-core machine parallel kernels
/// starve each other until a time limit lands in the middle of a build.
static ONE_KERNEL_AT_A_TIME: Mutex<()> = Mutex::new(());

fn conclab_kernel(args: &[&str]) -> Run {
    let _turn = ONE_KERNEL_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut child = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the conclab-kernel binary runs");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > HANG_GUARD {
            child.kill().unwrap();
            panic!("conclab-kernel {args:?} hung for {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    run
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conclab-runner-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_fixture(name: &str, timeout: &str) -> (Run, serde_json::Value) {
    let out = temp_dir(name).join("out.ipynb");
    let run = conclab_kernel(&[
        "run",
        "--timeout",
        timeout,
        "--output",
        out.to_str().unwrap(),
        fixture(name).to_str().unwrap(),
    ]);
    let written = std::fs::read_to_string(&out).unwrap_or_else(|_| {
        panic!(
            "no notebook written for {name}:\n{}\n{}",
            run.stdout, run.stderr
        )
    });
    let notebook = serde_json::from_str(&written).unwrap();
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
    (run, notebook)
}

/// All text outputs of cell `index`, joined.
fn cell_text(notebook: &serde_json::Value, index: usize) -> String {
    let mut text = String::new();
    for output in notebook["cells"][index]["outputs"].as_array().unwrap() {
        for field in [&output["text"], &output["data"]["text/plain"]] {
            match field {
                serde_json::Value::String(s) => text.push_str(s),
                serde_json::Value::Array(lines) => lines
                    .iter()
                    .for_each(|l| text.push_str(l.as_str().unwrap_or(""))),
                _ => {}
            }
        }
    }
    text
}

#[test]
fn passing_notebook_records_outputs_and_exits_0() {
    let (run, notebook) = run_fixture("passing.ipynb", "120");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("6 passed, 0 failed"), "{}", run.stdout);
    assert!(cell_text(&notebook, 3).contains("answer = 42"));
    assert_eq!(
        notebook["cells"][4]["outputs"][0]["output_type"],
        "execute_result"
    );
    assert!(cell_text(&notebook, 4).contains("42"));
    // stderr text alone, and a named worker's handled panic, do not fail a cell.
    assert!(cell_text(&notebook, 5).contains("a warning on stderr"));
    assert!(cell_text(&notebook, 6).contains("join gave an error: true"));
    assert!(notebook["cells"][2]["execution_count"].as_i64().unwrap() > 0);
}

#[test]
fn compile_error_fails_the_cell_with_rustc_words() {
    let (run, _) = run_fixture("compile_error.ipynb", "120");
    assert_eq!(run.code, 1, "{}", run.stdout);
    let line = run.cell(0);
    assert!(
        line.contains("FAILED") && line.contains("compile error: error[E0308]"),
        "{line}"
    );
    assert!(run.cell(1).contains(" ok"), "{}", run.stdout);
}

#[test]
fn top_level_panic_fails_the_cell_and_keeps_the_variables() {
    let (run, notebook) = run_fixture("panic.ipynb", "120");
    assert_eq!(run.code, 1, "{}", run.stdout);
    let line = run.cell(1);
    assert!(
        line.contains("FAILED  panic: assertion `left == right` failed: arithmetic is broken"),
        "{line}"
    );
    assert!(run.cell(2).contains(" ok"), "{}", run.stdout);
    assert!(cell_text(&notebook, 2).contains("kept = 5"));
}

#[test]
fn process_exit_is_a_crash_and_later_cells_run_without_state() {
    let (run, notebook) = run_fixture("exit.ipynb", "120");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.cell(1)
            .contains("crashed: The process running the cells exited with status 1"),
        "{}",
        run.stdout
    );
    let after = run.cell(2);
    assert!(
        after.contains(" ok") && after.contains("state lost at cell 1"),
        "{after}"
    );
    assert!(cell_text(&notebook, 2).contains("a fresh process runs this"));
}

#[test]
fn endless_loop_times_out_and_the_kernel_recovers() {
    let start = Instant::now();
    let (run, _) = run_fixture("endless.ipynb", "20");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.cell(0).contains("timeout: still running after 20 s"),
        "{}",
        run.stdout
    );
    let after = run.cell(1);
    assert!(
        after.contains(" ok") && after.contains("state lost at cell 0"),
        "{after}"
    );
    assert!(start.elapsed() < Duration::from_secs(200));
}

#[test]
fn cell_tagged_raises_exception_may_fail() {
    let (run, _) = run_fixture("expected_error.ipynb", "120");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.cell(0).contains("expected error: compile error"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_input_is_refused_with_the_file_and_the_fix() {
    let cases: [(&str, &str); 4] = [
        ("not_a_notebook.txt", "not a notebook"),
        ("invalid_json.ipynb", "invalid JSON at line 3"),
        ("nbformat3.ipynb", "nbformat 3 is too old"),
        ("missing.ipynb", "no such file"),
    ];
    for (name, words) in cases {
        let path = fixture(name);
        let before = std::fs::read(&path).ok();
        let run = conclab_kernel(&["run", "--inplace", path.to_str().unwrap()]);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        let message = run.stderr.trim();
        assert_eq!(
            message.lines().count(),
            1,
            "{name}: one line, got {message}"
        );
        assert!(
            message.contains(name) && message.contains(words),
            "{name}: {message}"
        );
        assert_eq!(std::fs::read(&path).ok(), before, "{name} was modified");
    }
}

#[test]
fn missing_kernel_says_to_run_setup() {
    let run = conclab_kernel(&[
        "run",
        "--kernel",
        "no-such-kernel",
        fixture("passing.ipynb").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no-such-kernel") && run.stderr.contains("conclab-kernel setup"),
        "{}",
        run.stderr
    );
}

#[test]
fn setup_is_idempotent() {
    let kernel_json = |run: &Run| -> PathBuf {
        let line = run
            .stdout
            .lines()
            .find(|line| line.contains("kernel.json"))
            .unwrap_or_else(|| panic!("{}", run.stdout));
        PathBuf::from(
            line.split(" in ")
                .nth(1)
                .unwrap()
                .split(" (")
                .next()
                .unwrap(),
        )
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let args = ["setup", "--repo", repo.to_str().unwrap()];
    let first = conclab_kernel(&args);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let spec = kernel_json(&first);
    let init = repo.join("kernel/evcxr/init.evcxr");
    let stamps = |path: &Path| std::fs::metadata(path).unwrap().modified().unwrap();
    let before = (stamps(&spec), stamps(&init));

    let second = conclab_kernel(&args);
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert_eq!(
        second.stdout.matches("unchanged").count(),
        2,
        "{}",
        second.stdout
    );
    assert_eq!(
        (stamps(&spec), stamps(&init)),
        before,
        "setup rewrote its files"
    );
}

#[test]
fn release_writes_the_student_version() {
    let out = temp_dir("release");
    let run = conclab_kernel(&[
        "release",
        fixture("assignment.ipynb").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(out.join("assignment.ipynb")).unwrap();
    assert!(
        text.contains("todo!()") && text.contains("YOUR ANSWER HERE"),
        "{text}"
    );
    assert!(!text.contains("(1..=n).product()"), "the solution leaked");
    assert!(!text.contains("3_628_800"), "a hidden test leaked");
    assert!(text.contains("assert_eq!(factorial(5), 120);"));
    let student: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tests = &student["cells"][3]["metadata"]["nbgrader"];
    assert_eq!(tests["checksum"].as_str().unwrap().len(), 32);
    std::fs::remove_dir_all(&out).unwrap();

    let broken = conclab_kernel(&[
        "release",
        fixture("passing.ipynb").to_str().unwrap(),
        "-o",
        "/tmp",
    ]);
    assert_eq!(broken.code, 2);
    assert!(
        broken.stderr.contains("no graded cell"),
        "{}",
        broken.stderr
    );
}

/// Each evcxr cell links its own copy of conclab, so a thread asleep in one cell's code
/// must be woken by another cell's `put`, `set`, `notify_all`, `release` or unlock. Before
/// conclab slept on futexes, the waits went to sleep in parking_lot's static table, one per
/// cell, and this notebook hung in cell 2.
#[test]
fn threads_asleep_since_an_earlier_cell_wake_up() {
    let (run, notebook) = run_fixture("waits_across_cells.ipynb", "60");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(cell_text(&notebook, 1).contains("5 threads waiting"));
    let woke = cell_text(&notebook, 2);
    assert!(
        woke.contains("woke: queue, event, condition, semaphore, barrier, lock"),
        "{woke}"
    );
    let after = cell_text(&notebook, 3);
    assert!(after.contains("task saw the gate: Ok(true)"), "{after}");
    assert!(after.contains("lock count: 1"), "{after}");
}

#[test]
fn a_process_pool_runs_functions_defined_in_later_cells() {
    let (run, notebook) = run_fixture("pool_across_cells.ipynb", "120");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(cell_text(&notebook, 1).contains("workers: 2"));
    let squares = cell_text(&notebook, 3);
    assert!(
        squares.contains("squares: [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]"),
        "{squares}"
    );
    assert!(squares.contains("re-forked: true"), "{squares}");
    assert!(cell_text(&notebook, 4).contains("cubes: [1, 8, 27, 64, 125]"));
}

/// The `threads...: N` figures a cell printed, in order.
fn thread_counts(text: &str) -> Vec<usize> {
    text.lines()
        .filter(|line| line.starts_with("threads"))
        .filter_map(|line| line.rsplit(':').next()?.trim().parse().ok())
        .collect()
}

#[test]
fn ten_cells_of_rayon_pools_leave_the_kernel_thread_count_flat() {
    // Each cell links its own rayon: a cell that used rayon's global pool would leave one
    // more pool running. `RayonPool` values are joined when dropped, and the pool held
    // across cells replaces its threads in each new cell.
    let (run, notebook) = run_fixture("rayon_across_cells.ipynb", "120");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let at_start = thread_counts(&cell_text(&notebook, 1));
    assert_eq!(at_start.len(), 1, "{}", cell_text(&notebook, 1));
    let counts: Vec<usize> = (2..12)
        .flat_map(|cell| thread_counts(&cell_text(&notebook, cell)))
        .collect();
    assert_eq!(counts.len(), 10, "{counts:?}");
    for cell in 2..12 {
        let text = cell_text(&notebook, cell);
        assert!(
            text.contains("parallel iterators see the held pool: true"),
            "cell {cell}: {text}"
        );
    }
    assert!(
        counts.iter().all(|&n| n == at_start[0]),
        "thread counts after each of ten rayon cells: {counts:?}, {} with the held pool at the start",
        at_start[0]
    );
}

#[test]
fn values_made_in_one_cell_are_explored_in_a_later_one() {
    // A lock, a queue and a function from cell 1 are used under `explore` in cells 2 and
    // 3; the report made in cell 3 is shown by cell 4; panics of explored threads (cell 5)
    // are the report's findings, not a failed cell.
    let (run, notebook) = run_fixture("explore_across_cells.ipynb", "120");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(cell_text(&notebook, 1).contains("made in cell 1"));
    let locked = cell_text(&notebook, 2);
    assert!(
        locked.contains("lock from cell 1: ok true, exhaustive true, outcomes [(\"2\","),
        "{locked}"
    );
    let racy = cell_text(&notebook, 3);
    assert!(racy.contains("found: lost update"), "{racy}");
    assert!(racy.contains("replayed the same steps: true"), "{racy}");
    let shown = &notebook["cells"][4]["outputs"][0];
    assert_eq!(shown["output_type"], "execute_result", "{shown}");
    assert!(
        shown["data"]["text/html"].to_string().contains("<svg"),
        "{shown}"
    );
    assert!(cell_text(&notebook, 4).contains("lost update"));
    assert!(cell_text(&notebook, 5).contains("failed schedules: 10"));
}

#[test]
fn run_leaves_out_hidden_tests_so_a_saved_source_shows_what_students_see() {
    let (run, notebook) = run_fixture("hidden_tests.ipynb", "30");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let text = cell_text(&notebook, 0);
    assert!(text.contains("visible check"), "{text}");
    assert!(
        !text.contains("hidden check"),
        "the hidden test ran: {text}"
    );
    let source: String = notebook["cells"][0]["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    assert!(
        source.contains("BEGIN HIDDEN TESTS"),
        "the source keeps them"
    );
}
