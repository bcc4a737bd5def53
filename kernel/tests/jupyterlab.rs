//! JupyterLab itself, in headless Chromium, against the `conclab` kernel: what a student
//! sees after Run → Run All Cells.
//!
//! - A failing `assert_eq!` stops Run All: its cell shows the panic as an error output,
//!   the cell after it never runs (no count, no output), the cell before it has its count.
//! - The lecture notebook runs through: every code cell gets a count, its charts render as
//!   SVG and its tables as HTML in as many cells as the saved notebook holds them, and
//!   errors show only where the saved notebook has them (cells tagged
//!   `raises-exception`, which JupyterLab runs without stopping Run All).
//! - A table a cell returns renders as an HTML table (the lecture has none).
//!
//! The test installs what it needs when it is missing: JupyterLab with pip into the
//! repository's `.venv` (git ignores it), `playwright-core` with npm into
//! `kernel/tests/browser/node_modules`, and Debian's Chromium with apt-get (as root). It
//! starts `jupyter lab` on a free localhost port with a token, drives it with
//! `kernel/tests/browser/lab_check.mjs`, and stops the server (and so its kernels) at the
//! end, also when an assertion fails. The kernel must be registered first
//! (`conclab-kernel setup`, as the README says); JupyterLab finds it where every Jupyter
//! client does (`JUPYTER_PATH`, `JUPYTER_DATA_DIR` or `~/.local/share/jupyter`).
//!
//! Screenshots go to `target/tmp/jupyterlab/`; the test prints their paths.

use serde_json::{json, Value};
use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One JupyterLab at a time: on a 2-core machine two kernels building cells at once
/// would only slow each other down past their timeouts.
static ONE_LAB: Mutex<()> = Mutex::new(());

#[path = "support/command.rs"]
mod command;
#[path = "support/paths.rs"]
mod paths;
#[path = "support/python.rs"]
mod python;

use command::run_ok;
use paths::{free_port, repo};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Debian's Chromium (Playwright's own browser downloads cannot work here).
fn chromium() -> PathBuf {
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !chromium.is_file() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "/usr/bin/chromium is missing: install it with `apt-get install -y chromium`"
        );
        run_ok(Command::new("apt-get").arg("update"), "apt-get update");
        run_ok(
            Command::new("apt-get")
                .args(["install", "-y", "chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get install chromium",
        );
    }
    chromium
}

/// The driver's folder, with playwright-core installed from its lockfile.
fn driver() -> PathBuf {
    let dir = browser_dir();
    if !dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        run_ok(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "npm ci in kernel/tests/browser (needs Node.js 20 and npm)",
        );
    }
    dir.join("lab_check.mjs")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jupyterlab");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// If the test is killed before `Drop` runs (a timeout in CI, Ctrl-C), the child gets
/// SIGTERM: JupyterLab then shuts its kernels down, and the driver's Chromium goes with it.
fn stop_with_this_test(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe, as a pre_exec closure must be.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// A `jupyter lab` serving a temporary folder; dropping it stops the server and its
/// kernels.
struct Lab {
    server: Child,
    url: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Starts JupyterLab on a temporary folder holding `notebooks` (name, content).
    fn start(notebooks: &[(&str, &Value)]) -> Lab {
        let python = python::python();
        let dir = tempfile::Builder::new()
            .prefix("conclab-jupyterlab-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        for (name, notebook) in notebooks {
            let text = serde_json::to_string_pretty(notebook).unwrap();
            std::fs::write(root.join(name), text).unwrap();
        }
        // A configuration folder of its own, so that no earlier workspace or user setting
        // changes what the page shows, with two settings: every cell stays in the page
        // (JupyterLab leaves cells out of view out of the DOM otherwise), and no news
        // prompt covers the notebook.
        let settings = dir.path().join("config/lab/user-settings/@jupyterlab");
        for (file, content) in [
            (
                "notebook-extension/tracker.jupyterlab-settings",
                r#"{"windowingMode": "none"}"#,
            ),
            (
                "apputils-extension/notification.jupyterlab-settings",
                r#"{"fetchNews": "false"}"#,
            ),
        ] {
            let path = settings.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let env = [
            ("JUPYTER_CONFIG_DIR", dir.path().join("config")),
            ("JUPYTER_RUNTIME_DIR", dir.path().join("runtime")),
        ];

        // The kernelspec, found the way JupyterLab will look for it.
        let specs = Command::new(&python)
            .args(["-m", "jupyter", "kernelspec", "list", "--json"])
            .envs(env.clone())
            .output()
            .unwrap();
        let specs: Value = serde_json::from_slice(&specs.stdout).unwrap_or_else(|e| {
            panic!(
                "jupyter kernelspec list: {e}\n{}",
                String::from_utf8_lossy(&specs.stderr)
            )
        });
        assert!(
            specs["kernelspecs"]["conclab"].is_object(),
            "JupyterLab finds no `conclab` kernel; run `conclab-kernel setup` first. \
             Kernels found: {}",
            specs["kernelspecs"]
        );

        let port = free_port();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let log = File::create(dir.path().join("server.log")).unwrap();
        let mut command = Command::new(python);
        command
            .args([
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
            ])
            .arg(format!("--ServerApp.port={port}"))
            .arg("--ServerApp.port_retries=0")
            .arg(format!("--IdentityProvider.token={token}"))
            .arg(format!("--ServerApp.root_dir={}", root.display()))
            // The driver reads JupyterLab's kernel state from `window.jupyterapp`.
            .arg("--LabApp.expose_app_in_browser=True")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // A process group of its own, to stop it whole.
            .process_group(0);
        stop_with_this_test(&mut command);
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // JupyterLab refuses to start as root unless told; containers and CI run as root.
            command.arg("--allow-root");
        }
        let server = command.spawn().unwrap();
        let mut lab = Lab {
            server,
            url: format!("http://127.0.0.1:{port}"),
            token,
            dir,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = lab.server.try_wait().unwrap() {
                panic!(
                    "jupyter lab exited ({status}) before it served:\n{}",
                    lab.log_tail(40)
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "jupyter lab did not listen on port {port} in 120 s:\n{}",
                lab.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "JupyterLab at {} in {:.1} s, serving {}",
            lab.url,
            started.elapsed().as_secs_f64(),
            root.display()
        );
        lab
    }

    fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.path().join("server.log"), lines)
    }

    /// Opens `notebook`, runs all its cells and returns the driver's report.
    fn run_all(&self, notebook: &str, name: &str, run_timeout: u64) -> Run {
        let kernel_timeout = 300;
        let config = json!({
            "url": self.url,
            "token": self.token,
            "notebook": notebook,
            "name": name,
            "screenshots": screenshots(),
            "chromium": chromium(),
            "kernelTimeout": kernel_timeout,
            "runTimeout": run_timeout,
            "chart": true,
        });
        let script = driver();
        let out = self.dir.path().join(format!("{name}.driver.out"));
        let err = self.dir.path().join(format!("{name}.driver.err"));
        let mut command = Command::new("node");
        stop_with_this_test(&mut command);
        let mut driver = command
            .arg(&script)
            .arg(config.to_string())
            .current_dir(browser_dir())
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("node does not start (install Node.js 20): {e}"));
        let guard = Duration::from_secs(kernel_timeout + run_timeout + 180);
        let started = Instant::now();
        while driver.try_wait().unwrap().is_none() {
            if started.elapsed() > guard {
                let _ = driver.kill();
                let _ = driver.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let report = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Value>(line).ok())
            .unwrap_or_else(|| json!({"ok": false, "error": "the driver printed no report"}));
        let run = Run {
            name: name.to_owned(),
            report,
            driver_log: std::fs::read_to_string(&err).unwrap_or_default(),
            server_log: self.log_tail(60),
        };
        println!("{}", run.driver_log);
        assert!(
            run.report["ok"] == true,
            "{name}: the page check failed: {}\n{}",
            run.report["error"],
            run.context()
        );
        println!("{name}: {}", run.report["seconds"]);
        for shot in run.report["screenshots"].as_array().into_iter().flatten() {
            println!("{name}: screenshot {}", shot.as_str().unwrap_or(""));
        }
        run
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // SIGTERM first: the server then shuts its kernels down (they run in sessions of
        // their own, outside its process group); SIGKILL if it does not end.
        let group = -(self.server.id() as i32);
        // SAFETY: kill has no memory preconditions; the group is the server's own.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let started = Instant::now();
        while self.server.try_wait().ok().flatten().is_none()
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.server.wait();
        // A kernel the server could not stop: its connection file is in this runtime
        // folder, which names it as ours.
        let runtime = self.dir.path().join("runtime");
        let runtime = runtime.to_string_lossy();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(runtime.as_ref()) {
                // SAFETY: as above; the kernel leads its own process group.
                unsafe {
                    if libc::getpgid(pid) == pid {
                        libc::kill(-pid, libc::SIGKILL);
                    } else {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

/// What the driver saw after one Run All.
struct Run {
    name: String,
    report: Value,
    driver_log: String,
    server_log: String,
}

impl Run {
    fn cells(&self) -> &[Value] {
        self.report["cells"].as_array().map_or(&[], Vec::as_slice)
    }

    fn cell(&self, index: usize) -> &Value {
        self.cells()
            .get(index)
            .unwrap_or_else(|| panic!("{}: no cell {index}\n{}", self.name, self.context()))
    }

    /// What the page showed, the driver's log and the server's: for failure messages.
    fn context(&self) -> String {
        let cells: Vec<String> = self
            .cells()
            .iter()
            .map(|cell| {
                let outputs: Vec<String> = cell["outputs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| {
                        format!(
                            "{} {} {:?}",
                            o["outputType"],
                            o["mime"],
                            o["text"]
                                .as_str()
                                .unwrap_or("")
                                .chars()
                                .take(160)
                                .collect::<String>()
                        )
                    })
                    .collect();
                format!(
                    "  cell {} {} {} {:?}: {}",
                    cell["index"],
                    cell["type"],
                    cell["prompt"],
                    cell["source"]
                        .as_str()
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or(""),
                    outputs.join("; ")
                )
            })
            .collect();
        format!(
            "--- the page's cells:\n{}\n--- page text: {}\n--- driver log:\n{}\n--- JupyterLab server log (tail):\n{}",
            cells.join("\n"),
            self.report["pageText"].as_str().unwrap_or("(not taken)"),
            self.driver_log,
            self.server_log
        )
    }
}

fn outputs(cell: &Value) -> &[Value] {
    cell["outputs"].as_array().map_or(&[], Vec::as_slice)
}

fn has_count(cell: &Value) -> bool {
    cell["count"].is_u64()
        && cell["prompt"]
            .as_str()
            .is_some_and(|p| p.chars().any(|c| c.is_ascii_digit()))
}

fn code_cell(index: usize, source: &str) -> Value {
    json!({
        "cell_type": "code",
        "id": format!("cell-{index}"),
        "metadata": {},
        "execution_count": null,
        "outputs": [],
        "source": source,
    })
}

fn notebook(cells: &[&str]) -> Value {
    json!({
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "conclab", "display_name": "Rust (conclab)", "language": "rust"},
            "language_info": {"name": "Rust"},
        },
        "cells": cells.iter().enumerate().map(|(i, s)| code_cell(i, s)).collect::<Vec<_>>(),
    })
}

/// A copy of a saved notebook as a student gets it: no outputs, no counts (so that all
/// the page shows comes from this run). It sits in a temporary folder (so the run never
/// writes into `notebooks/`), where its `:dep conclab = { path = ".." }` names no crate:
/// the kernel then loads the course crate it was set up with, as on a JupyterHub.
fn fresh_copy(saved: &Value) -> Value {
    let mut copy = saved.clone();
    for cell in copy["cells"].as_array_mut().unwrap() {
        if cell["cell_type"] == "code" {
            cell["outputs"] = json!([]);
            cell["execution_count"] = Value::Null;
        }
    }
    copy
}

/// What a saved notebook's outputs hold, cell by cell: SVG outputs, HTML tables, errors.
#[derive(Debug, Default, PartialEq)]
struct Shown {
    svg: Vec<(usize, usize)>,
    tables: Vec<(usize, usize)>,
    errors: Vec<usize>,
}

fn saved_outputs(saved: &Value) -> Shown {
    let mut shown = Shown::default();
    for (index, cell) in saved["cells"].as_array().unwrap().iter().enumerate() {
        let outputs = cell["outputs"].as_array().map_or(&[][..], Vec::as_slice);
        let svg = outputs
            .iter()
            .filter(|o| {
                o["data"]["image/svg+xml"].is_string() || o["data"]["image/svg+xml"].is_array()
            })
            .count();
        let tables: usize = outputs
            .iter()
            .map(|o| {
                let html = match &o["data"]["text/html"] {
                    Value::String(text) => text.clone(),
                    Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
                    _ => String::new(),
                };
                html.matches("<table").count()
            })
            .sum();
        if svg > 0 {
            shown.svg.push((index, svg));
        }
        if tables > 0 {
            shown.tables.push((index, tables));
        }
        if outputs.iter().any(|o| o["output_type"] == "error") {
            shown.errors.push(index);
        }
    }
    shown
}

/// The same, as the page rendered it: an SVG output counts only if it is in the page as
/// an `<svg>` or as an image that decoded.
fn rendered_outputs(run: &Run) -> Shown {
    let mut shown = Shown::default();
    for (index, cell) in run.cells().iter().enumerate() {
        let outputs = outputs(cell);
        let svg = outputs
            .iter()
            .filter(|o| {
                o["svg"].as_u64().unwrap_or(0) + o["svgImages"].as_u64().unwrap_or(0) > 0
                    && o["brokenImages"] == 0
            })
            .count();
        let tables: u64 = outputs
            .iter()
            .map(|o| o["tables"].as_u64().unwrap_or(0))
            .sum();
        if svg > 0 {
            shown.svg.push((index, svg));
        }
        if tables > 0 {
            shown.tables.push((index, tables as usize));
        }
        if outputs.iter().any(|o| o["outputType"] == "error") {
            shown.errors.push(index);
        }
    }
    shown
}

const STDERR: &str = "application/vnd.jupyter.stderr";

#[test]
fn run_all_stops_at_a_failing_cell() {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let nb = notebook(&[
        "let x = 1;",
        r#"assert_eq!(x, 2, "x should be two");"#,
        r#"println!("after {x}");"#,
    ]);
    let lab = Lab::start(&[("run-all-stops.ipynb", &nb)]);
    let run = lab.run_all("run-all-stops.ipynb", "run-all-stops", 180);
    let context = run.context();

    let first = run.cell(0);
    assert_eq!(first["count"], 1, "cell 1 has its count\n{context}");
    assert_eq!(first["prompt"], "[1]:", "{context}");

    let failing = run.cell(1);
    assert!(has_count(failing), "cell 2 ran\n{context}");
    let errors: Vec<&Value> = outputs(failing)
        .iter()
        .filter(|o| o["outputType"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "cell 2 shows one error output\n{context}");
    let error = errors[0];
    // JupyterLab renders an `error` output as stderr text (with the error class below).
    assert_eq!(error["mime"], STDERR, "{context}");
    assert!(
        error["classes"]
            .as_str()
            .unwrap_or("")
            .contains("jp-RenderedText"),
        "{context}"
    );
    let text = error["text"].as_str().unwrap_or("");
    assert!(text.contains("x should be two"), "the message\n{context}");
    assert!(
        text.contains(r#"assert_eq!(x, 2, "x should be two");"#),
        "the cell's line\n{context}"
    );

    let after = run.cell(2);
    assert!(
        after["count"].is_null(),
        "cell 3 did not run, so it has no count\n{context}"
    );
    assert!(
        !after["prompt"]
            .as_str()
            .unwrap_or("")
            .chars()
            .any(|c| c.is_ascii_digit()),
        "cell 3's prompt shows no count\n{context}"
    );
    assert!(
        outputs(after).is_empty(),
        "cell 3 shows no output\n{context}"
    );
}

#[test]
fn the_lecture_runs_all_and_renders_its_charts() {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let path = repo().join("notebooks/00-lecture.ipynb");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let expected = saved_outputs(&saved);
    assert!(
        !expected.svg.is_empty(),
        "the saved lecture holds SVG outputs"
    );
    // Errors the saved lecture shows are the ones it means to show.
    for &index in &expected.errors {
        let tags = &saved["cells"][index]["metadata"]["tags"];
        assert!(
            tags.as_array()
                .is_some_and(|t| t.contains(&json!("raises-exception"))),
            "saved lecture cell {index} has an error but no raises-exception tag"
        );
    }

    let lab = Lab::start(&[("00-lecture.ipynb", &fresh_copy(&saved))]);
    let run = lab.run_all("00-lecture.ipynb", "lecture", 600);
    let context = run.context();

    for (index, cell) in run.cells().iter().enumerate() {
        if cell["type"] == "code" {
            assert!(has_count(cell), "code cell {index} ran\n{context}");
        }
    }
    let shown = rendered_outputs(&run);
    assert_eq!(
        shown.errors, expected.errors,
        "error outputs only where the saved lecture has them\n{context}"
    );
    for &index in &shown.errors {
        for o in outputs(run.cell(index)) {
            if o["outputType"] == "error" {
                assert_eq!(o["mime"], STDERR, "{context}");
                assert!(!o["text"].as_str().unwrap_or("").is_empty(), "{context}");
            }
        }
    }
    assert_eq!(
        shown.svg, expected.svg,
        "(cell, SVG outputs) rendered as in the saved lecture\n{context}"
    );
    assert_eq!(
        shown.tables, expected.tables,
        "(cell, HTML tables) rendered as in the saved lecture\n{context}"
    );
    println!(
        "lecture: {} SVG outputs in {} cells, {} tables, errors in cells {:?}",
        shown.svg.iter().map(|(_, n)| n).sum::<usize>(),
        shown.svg.len(),
        shown.tables.len(),
        shown.errors
    );
}

#[test]
fn a_table_renders_as_html() {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let nb = notebook(&[
        "use conclab::prelude::*;",
        "Table::new([\"thread\", \"items\"])\n    .title(\"Rendered by JupyterLab\")\n    .row((\"a\", 1))\n    .row((\"b\", 2))",
    ]);
    let lab = Lab::start(&[("table.ipynb", &nb)]);
    let run = lab.run_all("table.ipynb", "table", 180);
    let context = run.context();
    let cell = run.cell(1);
    assert!(has_count(cell), "{context}");
    let table = outputs(cell)
        .iter()
        .find(|o| o["tables"] == 1)
        .unwrap_or_else(|| panic!("the table cell shows one HTML table\n{context}"));
    assert_eq!(table["mime"], "text/html", "{context}");
    let text = table["text"].as_str().unwrap_or("");
    for word in ["Rendered by JupyterLab", "thread", "items", "a", "b"] {
        assert!(text.contains(word), "{word} in the table\n{context}");
    }
    assert_eq!(
        rendered_outputs(&run).errors,
        Vec::<usize>::new(),
        "{context}"
    );
}
