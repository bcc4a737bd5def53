//! Kernel start and warm cells: the `conclab` kernel against stock evcxr_jupyter 0.22.0,
//! both measured in the same run. Run with `cargo bench -p conclab-kernel --bench start`
//! (see `kernel/benches/README.md`).
//!
//! Every figure comes from `conclab-kernel run`, the headless runner, as a user would run a
//! notebook: the wall clock from spawning it to each `cell N` line it prints (stdout is
//! line-buffered, so a line arrives when its cell ends), its per-cell times, its own total,
//! and the wall clock around the whole process. The two kernels alternate round by round,
//! and which one goes first alternates too, so load on a shared machine hits both alike.
//!
//! Scenarios, each in a fresh kernel:
//! 1. start to three results: `println!("hello");`, `let x = 40;`, `x + 2`;
//! 2. warm trivial cell: `1 + 1` run 12 times, the first 2 a warm-up; and (2b) warm
//!    statement cell: `println!("{}", 1 + 1);` the same way (a cell that ends in a
//!    statement shows no value, so evcxr compiles it once in any kernel);
//! 3. (with `--dep`) the first cell that uses the crate: `:dep conclab = { path = REPO }`
//!    and `use conclab::prelude::*;`.
//!
//! The targets are conclab / stock ratios ≤ 1.0. The bench prints whether each is met; it
//! never fails because of one. It fails only when it cannot measure at all.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

/// The version of evcxr the conclab kernel is built on, and so the fair baseline.
const STOCK_VERSION: &str = "0.22.0";
/// The name the stock kernel is registered under, in a Jupyter folder of the bench's own.
const STOCK_KERNEL: &str = "evcxr-stock";
const CONCLAB_KERNEL: &str = "conclab";
/// The conclab kernel with standby kernels off (`CONCLAB_STANDBY=off`): every start cold.
const COLD_KERNEL: &str = "conclab-cold";
const DEFAULT_ROUNDS: usize = 3;
const WARM_UP: usize = 2;
const TRIVIAL: usize = 10;
/// Generous: under load, and with `--dep` in a stock kernel that builds the crate and all
/// its dependencies from nothing, cells and starts take minutes.
const CELL_TIMEOUT_S: u32 = 900;
const STARTUP_TIMEOUT_S: u32 = 900;

const THREE_CELLS: [&str; 3] = ["println!(\"hello\");", "let x = 40;", "x + 2"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Three,
    Warm,
    Statement,
    Dep,
}

impl Scenario {
    fn title(self) -> &'static str {
        match self {
            Scenario::Three => "1. start to three results (println!, let, x + 2)",
            Scenario::Warm => "2. warm trivial cell (1 + 1)",
            Scenario::Statement => "2b. warm statement cell (println!)",
            Scenario::Dep => "3. first cell using the crate (:dep conclab + use prelude)",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Scenario::Three => "three.ipynb",
            Scenario::Warm => "warm.ipynb",
            Scenario::Statement => "statement.ipynb",
            Scenario::Dep => "dep.ipynb",
        }
    }
}

/// One `cell N  T s  ok` line of `run`.
#[derive(Debug, Clone)]
struct CellLine {
    index: usize,
    /// The cell's own time, as `run` measured it.
    seconds: f64,
    ok: bool,
    /// Wall clock from spawning `run` to this line.
    at: f64,
    text: String,
}

/// What one `conclab-kernel run` of one notebook gave.
#[derive(Debug)]
struct RunOutcome {
    cells: Vec<CellLine>,
    /// `N passed, M failed in T s`: kernel start, the cells and shutdown.
    reported_total: Option<f64>,
    wall: f64,
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl RunOutcome {
    fn all_ok(&self, expected_cells: usize) -> bool {
        self.status.is_some_and(|status| status.success())
            && self.cells.len() == expected_cells
            && self.cells.iter().all(|cell| cell.ok)
    }

    /// From spawning `run` to the moment the first cell started: the runner's own start,
    /// the kernel's start, and the `kernel_info` handshake.
    fn ready(&self) -> Option<f64> {
        self.cells.first().map(|cell| cell.at - cell.seconds)
    }

    fn cell_at(&self, index: usize) -> Option<f64> {
        self.cells.get(index).map(|cell| cell.at)
    }

    fn why_failed(&self) -> String {
        let mut lines: Vec<&str> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|line| !line.trim().is_empty())
            .collect();
        let keep = lines.len().saturating_sub(12);
        lines.drain(..keep);
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "not started".into(),
        };
        format!(
            "run {status}; its last output:\n    {}",
            lines.join("\n    ")
        )
    }
}

fn parse_cell_line(line: &str, at: f64) -> Option<CellLine> {
    let mut words = line.split_whitespace();
    if words.next()? != "cell" {
        return None;
    }
    let index = words.next()?.parse().ok()?;
    let seconds = words.next()?.parse().ok()?;
    if words.next()? != "s" {
        return None;
    }
    let ok = words.next()? == "ok";
    Some(CellLine {
        index,
        seconds,
        ok,
        at,
        text: line.trim().to_owned(),
    })
}

/// `3 passed, 0 failed in 17.4 s`
fn parse_total_line(line: &str) -> Option<f64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [_, "passed,", _, "failed", "in", seconds, "s"] => seconds.parse().ok(),
        _ => None,
    }
}

struct Bench {
    runner: PathBuf,
    /// `JUPYTER_PATH` for `run`: the bench's own folder (the stock kernel) first.
    jupyter_path: std::ffi::OsString,
}

impl Bench {
    fn run(&self, kernel: &str, notebook: &Path) -> RunOutcome {
        let started = Instant::now();
        let child = Command::new(&self.runner)
            .arg("run")
            .arg(notebook)
            .args(["--kernel", kernel])
            .args(["--timeout", &CELL_TIMEOUT_S.to_string()])
            .args(["--startup-timeout", &STARTUP_TIMEOUT_S.to_string()])
            .env("JUPYTER_PATH", &self.jupyter_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                return RunOutcome {
                    cells: Vec::new(),
                    reported_total: None,
                    wall: 0.0,
                    status: None,
                    stdout: String::new(),
                    stderr: format!("cannot start {}: {error}", self.runner.display()),
                }
            }
        };
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let mut cells = Vec::new();
        let mut reported_total = None;
        let mut stdout = String::new();
        let reader = BufReader::new(child.stdout.take().expect("stdout is piped"));
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let at = started.elapsed().as_secs_f64();
            if let Some(cell) = parse_cell_line(&line, at) {
                cells.push(cell);
            } else if let Some(total) = parse_total_line(&line) {
                reported_total = Some(total);
            }
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let status = child.wait().ok();
        let wall = started.elapsed().as_secs_f64();
        RunOutcome {
            cells,
            reported_total,
            wall,
            status,
            stdout,
            stderr: stderr_reader.join().unwrap_or_default(),
        }
    }
}

fn notebook(cells: &[String]) -> Value {
    let cells: Vec<Value> = cells
        .iter()
        .enumerate()
        .map(|(index, source)| {
            json!({
                "cell_type": "code",
                "execution_count": null,
                "id": format!("cell-{index}"),
                "metadata": {},
                "outputs": [],
                "source": source,
            })
        })
        .collect();
    json!({
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "rust", "display_name": "Rust", "language": "rust"},
            "language_info": {"name": "rust"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    })
}

fn scenario_cells(scenario: Scenario, repo: &Path) -> Vec<String> {
    match scenario {
        Scenario::Three => THREE_CELLS.iter().map(|cell| (*cell).to_owned()).collect(),
        Scenario::Warm => vec!["1 + 1".to_owned(); WARM_UP + TRIVIAL],
        Scenario::Statement => vec!["println!(\"{}\", 1 + 1);".to_owned(); WARM_UP + TRIVIAL],
        Scenario::Dep => vec![format!(
            ":dep conclab = {{ path = {:?} }}\nuse conclab::prelude::*;",
            repo.display().to_string()
        )],
    }
}

/// The cargo target folder: `CARGO_TARGET_DIR`, else the folder above this bench's own
/// executable that cargo marked with `CACHEDIR.TAG`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        {
            return dir.to_owned();
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// Stock evcxr_jupyter: `CONCLAB_STOCK_EVCXR`, else installed (once) into
/// `<target>/bench-tools`.
fn stock_evcxr() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CONCLAB_STOCK_EVCXR").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "CONCLAB_STOCK_EVCXR={} is not a file",
                path.display()
            ))
        };
    }
    let root = target_dir().join("bench-tools");
    let exe = root.join("bin/evcxr_jupyter");
    if exe.is_file() {
        return Ok(exe);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!(
        "installing evcxr_jupyter {STOCK_VERSION} into {} (once; about 10 minutes)...",
        root.display()
    );
    let status = Command::new(&cargo)
        .args(["install", "--locked"])
        .arg(format!("evcxr_jupyter@{STOCK_VERSION}"))
        .arg("--root")
        .arg(&root)
        .status()
        .map_err(|error| format!("cannot run cargo install: {error}"))?;
    if status.success() && exe.is_file() {
        Ok(exe)
    } else {
        Err(format!(
            "cargo install evcxr_jupyter@{STOCK_VERSION} failed ({status})"
        ))
    }
}

/// Registers the stock kernel as `kernels/evcxr-stock/kernel.json` under `jupyter_dir`,
/// with an empty evcxr config folder of its own, so it loads no `init.evcxr` or prelude.
fn register_stock(jupyter_dir: &Path, evcxr: &Path, config_dir: &Path) -> std::io::Result<()> {
    let dir = jupyter_dir.join("kernels").join(STOCK_KERNEL);
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(config_dir)?;
    let spec = json!({
        "argv": [evcxr.display().to_string(), "--control_file", "{connection_file}"],
        "display_name": format!("Rust (stock evcxr {STOCK_VERSION})"),
        "language": "rust",
        "interrupt_mode": "message",
        "env": {"EVCXR_CONFIG_DIR": config_dir.display().to_string()},
    });
    let text = serde_json::to_string_pretty(&spec).expect("a kernelspec serializes");
    std::fs::write(dir.join("kernel.json"), text)
}

/// Where the registered `conclab` kernelspec says its repository is, searched as
/// `kernel/src/kernelspec.rs` does (`JUPYTER_PATH`, the user data folder, the system ones).
fn conclab_spec() -> Option<(PathBuf, Value, Option<PathBuf>)> {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let mut dirs: Vec<PathBuf> = var("JUPYTER_PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    if let Some(dir) = var("JUPYTER_DATA_DIR") {
        dirs.push(dir.into());
    } else if let Some(dir) = var("XDG_DATA_HOME") {
        dirs.push(PathBuf::from(dir).join("jupyter"));
    } else if let Some(home) = var("HOME") {
        dirs.push(PathBuf::from(home).join(".local/share/jupyter"));
    }
    dirs.push("/usr/local/share/jupyter".into());
    dirs.push("/usr/share/jupyter".into());
    let file = dirs
        .into_iter()
        .map(|dir| dir.join("kernels").join(CONCLAB_KERNEL).join("kernel.json"))
        .find(|file| file.is_file())?;
    let spec: Value = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())?;
    let repo = spec["metadata"]["conclab"]["repository"]
        .as_str()
        .map(PathBuf::from);
    Some((file, spec, repo))
}

/// Registers the conclab kernelspec again as `conclab-cold`, with standby kernels off.
fn register_cold(jupyter_dir: &Path, spec: &Value) -> std::io::Result<()> {
    let dir = jupyter_dir.join("kernels").join(COLD_KERNEL);
    std::fs::create_dir_all(&dir)?;
    let mut spec = spec.clone();
    spec["env"]["CONCLAB_STANDBY"] = json!("off");
    spec["display_name"] = json!("Rust (conclab, standby off)");
    let text = serde_json::to_string_pretty(&spec).expect("a kernelspec serializes");
    std::fs::write(dir.join("kernel.json"), text)
}

/// Waits until the conclab kernel's standby is ready (its warm-up is over), with the
/// kernelspec's program and environment, as the kernel itself looks for it. Returns its
/// pid, or why none became ready.
fn wait_for_standby(spec: &Value) -> Result<u32, String> {
    let program = spec["argv"][0]
        .as_str()
        .ok_or("the kernelspec has no argv")?;
    let mut command = Command::new(program);
    command.args(["standby", "wait", "--timeout", "600"]);
    if let Some(env) = spec["env"].as_object() {
        for (name, value) in env {
            command.env(name, value.as_str().unwrap_or_default());
        }
    }
    let output = command
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        // "a standby kernel is ready (pid N)"
        let said = String::from_utf8_lossy(&output.stdout);
        said.rsplit("pid ")
            .next()
            .and_then(|rest| rest.trim().trim_end_matches(')').parse().ok())
            .ok_or_else(|| format!("an answer without a pid: {said}"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    // The middle value, or the mean of the two middle ones.
    let n = values.len();
    Some((values[(n - 1) / 2] + values[n / 2]) / 2.0)
}

fn secs(value: Option<f64>) -> String {
    match value {
        Some(value) => format!("{value:.2}"),
        None => "-".into(),
    }
}

/// The samples of one kernel in one scenario, pooled over rounds.
#[derive(Default)]
struct Samples {
    ready: Vec<f64>,
    /// Launch to the last result of the notebook (scenario 1: the third).
    to_result: Vec<f64>,
    /// The measured cells' own times (scenario 2: the trivial cells after the warm-up;
    /// scenario 3: the `:dep` cell).
    cell: Vec<f64>,
    reported_total: Vec<f64>,
    wall: Vec<f64>,
    failures: usize,
}

struct Metric {
    name: &'static str,
    /// conclab (taken from a standby), conclab cold, stock.
    medians: [Option<f64>; 3],
    /// Whether this metric has a ≤ 1.0 target (the others are context).
    target: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_dep =
        args.iter().any(|arg| arg == "--dep") || std::env::var_os("CONCLAB_BENCH_DEP").is_some();
    let rounds = args
        .iter()
        .position(|arg| arg == "--rounds")
        .and_then(|at| args.get(at + 1))
        .cloned()
        .or_else(|| std::env::var("CONCLAB_BENCH_ROUNDS").ok())
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(DEFAULT_ROUNDS)
        .max(1);
    if rounds < DEFAULT_ROUNDS {
        println!("note: {rounds} round(s), fewer than the {DEFAULT_ROUNDS} a comparison needs");
    }

    let runner = std::env::var_os("CONCLAB_KERNEL_BIN")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_conclab-kernel")));
    let evcxr = match stock_evcxr() {
        Ok(path) => path,
        Err(error) => {
            eprintln!("error: no stock evcxr_jupyter to compare with: {error}");
            std::process::exit(1);
        }
    };
    // Scenario 3 loads the crate from where the conclab kernel loads it at start, as a
    // notebook in that repository does; the stock kernel gets the same path.
    let this_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let this_repo = this_repo.canonicalize().unwrap_or(this_repo);
    let (spec, repo) = match conclab_spec() {
        None => {
            eprintln!(
                "error: no '{CONCLAB_KERNEL}' kernelspec is registered; run `conclab-kernel setup` first"
            );
            std::process::exit(1);
        }
        Some((file, spec, registered)) => {
            println!("conclab kernel: {}", file.display());
            let registered = registered.and_then(|repo| repo.canonicalize().ok());
            match registered {
                Some(repo) if repo != this_repo => {
                    println!(
                        "note: it loads the crate from {}, not from this repository ({})",
                        repo.display(),
                        this_repo.display()
                    );
                    (spec, repo)
                }
                Some(repo) => (spec, repo),
                None => (spec, this_repo),
            }
        }
    };

    let scratch = tempfile::Builder::new()
        .prefix("conclab-bench-start-")
        .tempdir()
        .expect("a temporary folder");
    let jupyter_dir = scratch.path().join("jupyter");
    let notebooks = scratch.path().join("notebooks");
    if let Err(error) = register_stock(&jupyter_dir, &evcxr, &scratch.path().join("evcxr-config"))
        .and_then(|()| register_cold(&jupyter_dir, &spec))
    {
        eprintln!("error: cannot register the stock and cold kernels: {error}");
        std::process::exit(1);
    }
    let mut scenarios = vec![Scenario::Three, Scenario::Warm, Scenario::Statement];
    if with_dep {
        scenarios.push(Scenario::Dep);
    }
    std::fs::create_dir_all(&notebooks).expect("a notebooks folder");
    for scenario in &scenarios {
        let text = serde_json::to_string_pretty(&notebook(&scenario_cells(*scenario, &repo)))
            .expect("a notebook serializes");
        std::fs::write(notebooks.join(scenario.file()), text).expect("a notebook is written");
    }
    let mut jupyter_path = vec![jupyter_dir.clone()];
    if let Some(existing) = std::env::var_os("JUPYTER_PATH") {
        jupyter_path.extend(std::env::split_paths(&existing));
    }
    let bench = Bench {
        runner,
        jupyter_path: std::env::join_paths(jupyter_path).expect("paths without ':'"),
    };
    println!("runner: {}", bench.runner.display());
    println!(
        "stock:  {} (evcxr_jupyter {STOCK_VERSION})",
        evcxr.display()
    );
    println!(
        "{rounds} rounds, kernels alternating; {} scenario(s); load average at start: {}",
        scenarios.len(),
        load_average()
    );
    println!();

    let kernels = [CONCLAB_KERNEL, COLD_KERNEL, STOCK_KERNEL];
    // One unmeasured run leaves the first standby kernel, as a user's first kernel does.
    let priming = bench.run(CONCLAB_KERNEL, &notebooks.join(Scenario::Three.file()));
    if !priming.all_ok(THREE_CELLS.len()) {
        eprintln!(
            "error: the conclab kernel failed its first run: {}",
            priming.why_failed()
        );
        std::process::exit(1);
    }
    println!(
        "priming: one conclab run ({:.1} s, not measured) to leave a standby kernel",
        priming.wall
    );
    // samples[scenario][kernel]
    let mut samples: Vec<[Samples; 3]> = scenarios.iter().map(|_| Default::default()).collect();
    println!(
        "{:<5} {:<12} {:<9} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "round", "kernel", "scenario", "ready s", "result s", "cell s", "total s", "wall s"
    );
    for round in 1..=rounds {
        // Each kernel goes first, second and last in turn.
        let order: Vec<usize> = (0..3).map(|i| (i + round - 1) % 3).collect();
        for (s, scenario) in scenarios.iter().enumerate() {
            for &k in &order {
                // No measurement shares the machine with a standby's warm-up: each waits
                // until the standby the last conclab run left is ready.
                let standby = match wait_for_standby(&spec) {
                    Ok(pid) => Some(pid),
                    Err(error) => {
                        println!("      no standby kernel became ready: {error}");
                        None
                    }
                };
                let path = notebooks.join(scenario.file());
                let expected = scenario_cells(*scenario, &repo).len();
                let outcome = bench.run(kernels[k], &path);
                let sample = &mut samples[s][k];
                let label = match scenario {
                    Scenario::Three => "three",
                    Scenario::Warm => "warm",
                    Scenario::Statement => "statement",
                    Scenario::Dep => "dep",
                };
                if !outcome.all_ok(expected) {
                    sample.failures += 1;
                    println!(
                        "{round:<5} {:<12} {label:<9} FAILED: {}",
                        kernels[k],
                        outcome.why_failed()
                    );
                    for cell in outcome.cells.iter().filter(|cell| !cell.ok) {
                        println!("    {}", cell.text);
                    }
                    continue;
                }
                // The standby that takes a launch ends with that kernel; one still there
                // was not taken, and the run started cold.
                if let (0, Some(pid)) = (k, standby) {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    // A process that ended (a zombie too) has an empty command line.
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if !cmdline.is_empty() {
                        println!("      (this conclab run started cold: standby pid {pid} did not take it)");
                    }
                }
                let ready = outcome.ready();
                let result = outcome.cell_at(expected - 1);
                let cell = match scenario {
                    Scenario::Three => None,
                    Scenario::Warm | Scenario::Statement => {
                        let warm: Vec<f64> = outcome.cells[WARM_UP..]
                            .iter()
                            .map(|cell| cell.seconds)
                            .collect();
                        sample.cell.extend(&warm);
                        median(warm)
                    }
                    Scenario::Dep => {
                        let first = outcome.cells[0].seconds;
                        sample.cell.push(first);
                        Some(first)
                    }
                };
                sample.ready.extend(ready);
                sample.to_result.extend(result);
                sample.reported_total.extend(outcome.reported_total);
                sample.wall.push(outcome.wall);
                println!(
                    "{round:<5} {:<12} {label:<9} {:>8} {:>9} {:>8} {:>8} {:>8.2}",
                    kernels[k],
                    secs(ready),
                    secs(result),
                    secs(cell),
                    secs(outcome.reported_total),
                    outcome.wall
                );
                // One slow cell (a rebuild, a retried build) moves a mean, not the median:
                // name it, so an outlier is seen rather than guessed at.
                let skip = if matches!(scenario, Scenario::Warm | Scenario::Statement) {
                    WARM_UP
                } else {
                    0
                };
                let slowest = outcome
                    .cells
                    .iter()
                    .skip(skip)
                    .max_by(|a, b| a.seconds.total_cmp(&b.seconds));
                if let (Some(slowest), Some(cell)) = (slowest, cell) {
                    if slowest.seconds > 3.0 * cell {
                        println!(
                            "      slowest: cell {} took {:.2} s",
                            slowest.index, slowest.seconds
                        );
                    }
                }
            }
        }
    }
    println!();
    println!(
        "ready: launch of `run` to the start of cell 0 (its line's time minus the cell's own)"
    );
    println!(
        "result: launch to the last cell's line; cell: median of the measured cells' own times"
    );
    println!(
        "total: what `run` reports (kernel start, cells, shutdown); wall: around the whole `run`"
    );
    println!("conclab: a standby kernel takes the launch (after a user's first kernel); cold: CONCLAB_STANDBY=off");
    println!("load average at the end: {}", load_average());
    println!();

    let mut metrics: Vec<Metric> = Vec::new();
    for (s, scenario) in scenarios.iter().enumerate() {
        let [conclab, cold, stock] = &samples[s];
        let three = |pick: fn(&Samples) -> &Vec<f64>| {
            [
                median(pick(conclab).clone()),
                median(pick(cold).clone()),
                median(pick(stock).clone()),
            ]
        };
        let mut push = |name, medians: [Option<f64>; 3], target| {
            metrics.push(Metric {
                name,
                medians,
                target,
            })
        };
        match scenario {
            Scenario::Three => {
                push("1. launch to third result", three(|s| &s.to_result), true);
                push("1. launch to ready", three(|s| &s.ready), false);
                push("1. run total", three(|s| &s.reported_total), false);
                push("1. run wall clock", three(|s| &s.wall), false);
            }
            Scenario::Warm => {
                push("2. warm trivial cell", three(|s| &s.cell), true);
                push("2. launch to ready", three(|s| &s.ready), false);
            }
            Scenario::Statement => {
                push("2b. warm statement cell", three(|s| &s.cell), true);
            }
            Scenario::Dep => {
                push("3. first crate cell", three(|s| &s.cell), true);
                push("3. launch to crate loaded", three(|s| &s.to_result), false);
            }
        }
        if conclab.failures + cold.failures + stock.failures > 0 {
            println!(
                "{}: {} conclab, {} cold and {} stock run(s) failed and are left out",
                scenario.title(),
                conclab.failures,
                cold.failures,
                stock.failures
            );
        }
    }

    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>8} {:>8}  target: conclab / stock <= 1.0",
        "median (s)", "conclab", "cold", "stock", "ratio", "cold"
    );
    for metric in &metrics {
        let [conclab, cold, stock] = metric.medians;
        let ratio = |value: Option<f64>| match (value, stock) {
            (Some(value), Some(stock)) if stock > 0.0 => Some(value / stock),
            _ => None,
        };
        let verdict = match (metric.target, ratio(conclab)) {
            (false, _) => "",
            (true, Some(ratio)) if ratio <= 1.0 => "met",
            (true, Some(_)) => "NOT met",
            (true, None) => "not measured",
        };
        let shown = |ratio: Option<f64>| match ratio {
            Some(ratio) => format!("{ratio:.2}"),
            None => "-".into(),
        };
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>8} {:>8}  {verdict}",
            metric.name,
            secs(conclab),
            secs(cold),
            secs(stock),
            shown(ratio(conclab)),
            shown(ratio(cold)),
        );
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            let fields: Vec<&str> = text.split_whitespace().take(3).collect();
            (fields.len() == 3).then(|| fields.join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}
