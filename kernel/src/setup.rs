//! `conclab-kernel setup`: make a machine ready to run conclab notebooks.
//!
//! Every step checks before it acts, so a second run changes nothing and takes seconds.
//! How the kernel loads the support crate from the working tree and still hits evcxr's
//! build cache is explained in `kernel/evcxr/README.md`.

use crate::client::Kernel;
use crate::kernelspec::{self, InstalledKernel, DEFAULT_KERNEL};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const EVCXR_VERSION: &str = "0.22.0";
/// evcxr's `:cache` size in MiB: the support crate, its dependencies and a few
/// generations of edits fit several times over.
const CACHE_MIB: u32 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("`cargo` was not found on PATH ({0}); install Rust with rustup, then run setup again")]
    NoCargo(std::io::Error),
    #[error("`cargo install --locked evcxr_jupyter --version {EVCXR_VERSION}` failed ({0}); read cargo's output above (a C compiler and network access to crates.io are needed)")]
    InstallFailed(String),
    #[error("evcxr_jupyter was installed but {0} does not exist; check CARGO_HOME")]
    BinaryMissing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] kernelspec::SpecError),
    #[error("the new kernel did not start: {0}")]
    Kernel(#[from] crate::client::ClientError),
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
        let base = if Path::new("/var/tmp").is_dir() {
            "/var/tmp"
        } else {
            "/tmp"
        };
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        PathBuf::from(base)
            .join(format!("conclab-{uid}"))
            .join("evcxr-scratch")
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
    let mut steps = Steps { total: 4, done: 0 };

    let started = steps.start(&format!("evcxr_jupyter {EVCXR_VERSION}"));
    let evcxr = ensure_evcxr()?;
    done(started, &evcxr.1);
    let evcxr = evcxr.0;

    let started = steps.start("evcxr configuration in kernel/evcxr");
    let changed = write_evcxr_config(layout)?;
    done(started, if changed { "written" } else { "unchanged" });

    let started = steps.start(&format!("Jupyter kernel '{DEFAULT_KERNEL}'"));
    let (changed, path) = register_kernel(layout, &evcxr)?;
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

    let started = steps.start("loading conclab in a new kernel (warms evcxr's build cache)");
    let kernel = kernelspec::find(DEFAULT_KERNEL)?;
    let seconds = warm(&kernel, layout, options.startup_timeout)?;
    done(
        started,
        &format!("kernel ready with conclab loaded in {seconds:.1} s"),
    );
    Ok(kernel)
}

/// Where cargo installs binaries.
fn cargo_bin() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home).join("bin"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo/bin"),
    }
}

/// Installs evcxr_jupyter unless the right version is already there.
fn ensure_evcxr() -> Result<(PathBuf, String), SetupError> {
    let binary = cargo_bin().join("evcxr_jupyter");
    let listed = Command::new("cargo")
        .args(["install", "--list"])
        .output()
        .map_err(SetupError::NoCargo)?;
    let listing = String::from_utf8_lossy(&listed.stdout);
    let wanted = format!("evcxr_jupyter v{EVCXR_VERSION}:");
    if binary.is_file() && listing.lines().any(|line| line.trim() == wanted) {
        return Ok((binary, "already installed".into()));
    }
    println!(
        "      installing with `cargo install --locked` (about 6-8 minutes on 2 cores; --locked because newer dependencies break its build)"
    );
    let status = Command::new("cargo")
        .args([
            "install",
            "--locked",
            "evcxr_jupyter",
            "--version",
            EVCXR_VERSION,
        ])
        .status()
        .map_err(SetupError::NoCargo)?;
    if !status.success() {
        return Err(SetupError::InstallFailed(status.to_string()));
    }
    if !binary.is_file() {
        return Err(SetupError::BinaryMissing(binary));
    }
    Ok((binary, "installed".into()))
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
         :cache {CACHE_MIB}\n\
         :dep conclab = {{ path = \"{}\" }}\n\
         // evcxr runs cells with RUST_BACKTRACE=1: a panic's message is what a notebook\n\
         // should show, and symbolising a backtrace takes seconds.\n\
         unsafe {{ std::env::set_var(\"RUST_BACKTRACE\", \"0\"); }}\n\
         // The first variable a kernel stores costs seconds (evcxr builds its variable\n\
         // store then): pay it at start, not in the first cell that defines one.\n\
         let _conclab_started = true;\n",
        layout.root.display()
    )
}

fn write_evcxr_config(layout: &Layout) -> Result<bool, SetupError> {
    write_if_changed(&layout.config_dir().join("init.evcxr"), &init_evcxr(layout))
}

/// The shell line that starts evcxr: it makes the scratch folder and its cargo
/// configuration first, so a cleaned-out temporary folder cannot break a kernel started
/// by JupyterLab, then becomes evcxr_jupyter (same pid, so signals reach evcxr).
const LAUNCHER: &str = "mkdir -p \"$TMPDIR/.cargo\" && \
cp \"$EVCXR_CONFIG_DIR/scratch-cargo-config.toml\" \"$TMPDIR/.cargo/config.toml\" && \
exec \"$0\" --control_file \"$1\"";

/// The conclab kernelspec for this machine.
pub fn kernel_json(layout: &Layout, evcxr: &Path) -> serde_json::Value {
    json!({
        "argv": ["/bin/sh", "-c", LAUNCHER, evcxr.display().to_string(), "{connection_file}"],
        "display_name": "Rust (conclab)",
        "language": "rust",
        "interrupt_mode": "message",
        "env": {
            "EVCXR_CONFIG_DIR": layout.config_dir().display().to_string(),
            "TMPDIR": layout.scratch_dir().display().to_string(),
        },
        "metadata": { "conclab": { "repository": layout.root.display().to_string() } }
    })
}

fn register_kernel(layout: &Layout, evcxr: &Path) -> Result<(bool, PathBuf), SetupError> {
    let dir = kernelspec::user_data_dir()?
        .join("kernels")
        .join(DEFAULT_KERNEL);
    let text = serde_json::to_string_pretty(&kernel_json(layout, evcxr))
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
    if let Some(failure) = crate::verdict::judge(&execution, startup) {
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
