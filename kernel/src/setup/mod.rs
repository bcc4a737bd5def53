//! `conclab-kernel setup`: make a machine ready to run conclab notebooks.
//!
//! Every step checks before it acts, so a second run changes nothing and takes seconds.
//! How the kernel loads the support crate from the working tree and still hits evcxr's
//! build cache is explained in `kernel/evcxr/README.md`.

use crate::jupyter::kernelspec::{self, InstalledKernel, DEFAULT_KERNEL};
use crate::run::client::Kernel;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot find this program's own path ({0}); run setup through `cargo run --release -p conclab-kernel -- setup`")]
    NoExe(std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] kernelspec::SpecError),
    #[error("the new kernel did not start: {0}")]
    Kernel(#[from] crate::run::client::ClientError),
    #[error("loading conclab in the kernel failed: {0}\nkernel output:\n{1}")]
    Warm(String, String),
    #[error("{0} failed ({1}); read its output above")]
    Command(String, String),
    #[error("{0} is not the conclab repository (no kernel/evcxr folder); run setup from inside the repository or pass --repo")]
    NotTheRepo(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// This user's conclab folder on this machine, `/var/tmp/conclab-<uid>` (or under
/// `/tmp`): outside any repository and outside the home folder, which both the kernel's
/// scratch folder and its build folders need (see [`Layout::scratch_dir`]).
pub fn machine_dir() -> PathBuf {
    let base = if Path::new("/var/tmp").is_dir() {
        "/var/tmp"
    } else {
        "/tmp"
    };
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(base).join(format!("conclab-{uid}"))
}

/// The repository's folders setup works with.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    /// Finds the repository from `start` upwards, or takes `start` as it is.
    pub fn find(start: &Path) -> Result<Layout, SetupError> {
        let start = start.canonicalize().map_err(io(start))?;
        for dir in start.ancestors() {
            if dir.join("kernel/evcxr").is_dir() && dir.join("Cargo.toml").is_file() {
                return Ok(Layout {
                    root: dir.to_owned(),
                });
            }
        }
        Err(SetupError::NotTheRepo(start))
    }

    /// evcxr's config folder (`EVCXR_CONFIG_DIR`).
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("kernel/evcxr")
    }

    /// The kernel's `TMPDIR`: evcxr builds every cell below it, and cargo reads the
    /// `.cargo/config.toml` the kernel's launcher puts there.
    ///
    /// Where matters twice. Inside the repository cargo would take each build folder for
    /// an unlisted workspace member and refuse it. And rustc writes a cell library's
    /// rpath relative to `target/.../deps` while evcxr loads the copy one folder up: the
    /// extra `..` is harmless only when the path to the toolchain climbs to `/` anyway,
    /// which fails under the home folder that holds `~/.rustup`.
    pub fn scratch_dir(&self) -> PathBuf {
        machine_dir().join("evcxr-scratch")
    }

    pub fn notebooks(&self) -> PathBuf {
        self.root.join("notebooks")
    }

    pub fn venv(&self) -> PathBuf {
        self.root.join(".venv")
    }
}

/// Options of `setup`.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub layout: Layout,
    pub startup_timeout: Duration,
}

struct Steps {
    total: usize,
    done: usize,
}

impl Steps {
    fn start(&mut self, what: &str) -> Instant {
        self.done += 1;
        println!("[{}/{}] {what}", self.done, self.total);
        Instant::now()
    }
}

fn done(started: Instant, result: &str) {
    println!("      {result} ({:.1} s)", started.elapsed().as_secs_f64());
}

/// Runs every set-up step; returns the installed kernel.
pub fn setup(options: &SetupOptions) -> Result<InstalledKernel, SetupError> {
    let layout = &options.layout;
    let mut steps = Steps { total: 3, done: 0 };
    // The kernel is this binary (built with evcxr's library in the same workspace).
    let kernel_exe = std::env::current_exe().map_err(SetupError::NoExe)?;

    let started = steps.start("evcxr configuration in kernel/evcxr");
    let changed = write_evcxr_config(layout)?;
    std::fs::create_dir_all(layout.scratch_dir()).map_err(io(&layout.scratch_dir()))?;
    done(started, if changed { "written" } else { "unchanged" });

    let started = steps.start(&format!("Jupyter kernel '{DEFAULT_KERNEL}'"));
    let (changed, path) = register_kernel(layout, &kernel_exe)?;
    done(
        started,
        &format!(
            "{} {}",
            if changed {
                "registered in"
            } else {
                "unchanged in"
            },
            path.display()
        ),
    );

    let started =
        steps.start("loading conclab in a new kernel (builds it once into a kernel build folder)");
    let kernel = kernelspec::find(DEFAULT_KERNEL)?;
    // Standbys of an earlier build or configuration would never be taken again: end
    // them now rather than when they time out. The kernel started next leaves a new one.
    let stopped = crate::kernel::standby::stop_all();
    if stopped > 0 {
        println!("      ended {stopped} standby kernel(s) left by an earlier set-up");
    }
    let seconds = warm(&kernel, layout, options.startup_timeout)?;
    done(
        started,
        &format!("kernel ready with conclab loaded in {seconds:.1} s"),
    );
    Ok(kernel)
}

/// Writes `path` only if its content differs; returns whether it wrote.
fn write_if_changed(path: &Path, content: &str) -> Result<bool, SetupError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, content).map_err(io(path))?;
    Ok(true)
}

/// The `init.evcxr` every conclab kernel runs at start.
pub fn init_evcxr(layout: &Layout) -> String {
    format!(
        "// Written by `conclab-kernel setup`; see kernel/evcxr/README.md.\n\
         :dep conclab = {{ path = \"{}\" }}\n",
        layout.root.display()
    )
}

fn write_evcxr_config(layout: &Layout) -> Result<bool, SetupError> {
    write_if_changed(&layout.config_dir().join("init.evcxr"), &init_evcxr(layout))
}

/// The conclab kernelspec for this machine: this binary's `kernel` command.
pub fn kernel_json(layout: &Layout, exe: &Path) -> serde_json::Value {
    let mut spec = json!({
        "argv": [exe.display().to_string(), "kernel", "--connection-file", "{connection_file}"],
        "display_name": "Rust (conclab)",
        "language": "rust",
        "interrupt_mode": "message",
        "env": {
            "EVCXR_CONFIG_DIR": layout.config_dir().display().to_string(),
            "TMPDIR": layout.scratch_dir().display().to_string(),
        },
        "metadata": { "conclab": { "repository": layout.root.display().to_string() } }
    });
    // Where the kernel finds the course crate for a notebook copied out of the tree.
    spec["env"][crate::kernel::COURSE_CRATE_VARIABLE] = json!(layout.root.display().to_string());
    spec
}

fn register_kernel(layout: &Layout, exe: &Path) -> Result<(bool, PathBuf), SetupError> {
    let dir = kernelspec::user_data_dir()?
        .join("kernels")
        .join(DEFAULT_KERNEL);
    let text = serde_json::to_string_pretty(&kernel_json(layout, exe))
        .expect("a JSON value always serializes")
        + "\n";
    let file = dir.join("kernel.json");
    Ok((write_if_changed(&file, &text)?, file))
}

/// Starts a kernel (whose init.evcxr loads conclab), runs a cell using the crate, and
/// returns the seconds it took.
fn warm(kernel: &InstalledKernel, layout: &Layout, startup: Duration) -> Result<f64, SetupError> {
    let started = Instant::now();
    // The repository root always exists (notebooks/ may not yet); init.evcxr's path is
    // absolute, so the kernel's folder does not matter here.
    let mut running = Kernel::start(kernel, &layout.root, startup, None)?;
    let code = "use conclab::prelude::*;\nprintln!(\"conclab loaded\");";
    let execution = running.execute(code, startup, None, |_| {})?;
    if let Some(failure) = crate::run::verdict::judge(&execution, startup) {
        let log = running.log_tail(30);
        return Err(SetupError::Warm(failure.summary(), log));
    }
    running.shutdown();
    Ok(started.elapsed().as_secs_f64())
}

/// `setup --lab`: JupyterLab in `.venv`, started on `notebooks/` (does not return while
/// JupyterLab runs).
pub fn lab(layout: &Layout) -> Result<(), SetupError> {
    let venv = layout.venv();
    let python = venv.join("bin/python");
    let started = Instant::now();
    println!("[lab] JupyterLab in {}", venv.display());
    if !python.is_file() {
        run_command(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    if !venv.join("bin/jupyter-lab").is_file() {
        run_command(Command::new(&python).args(["-m", "pip", "install", "--quiet", "jupyterlab"]))?;
    }
    done(started, "ready");
    println!(
        "[lab] starting JupyterLab on {} (Ctrl-C stops it)",
        layout.notebooks().display()
    );
    let mut command = Command::new(venv.join("bin/jupyter-lab"));
    command.arg("--notebook-dir").arg(layout.notebooks());
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // JupyterLab refuses to start as root unless told; containers and CI run as root.
        command.arg("--allow-root");
    }
    run_command(&mut command)
}

fn run_command(command: &mut Command) -> Result<(), SetupError> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .map_err(|error| SetupError::Command(shown.clone(), error.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(SetupError::Command(shown, status.to_string()))
    }
}
