//! The repository's `.venv`, with the Python side of Jupyter that the tests drive against
//! the kernel (nbclient, JupyterLab, nbgrader, papermill: `tests/python/requirements.txt`).
//! Shared (through `#[path]`) by the test files that need it; each installs what is
//! missing on first use, so a fresh clone needs nothing but `python3`. Needs `paths.rs` and `command.rs`.
#![allow(dead_code)]

use crate::command::run_ok;
use crate::paths::repo;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's `bin/` folder, with every package of the requirements file installed.
pub fn venv_bin() -> PathBuf {
    let venv = repo().join(".venv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        run_ok(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv .venv",
        );
    }
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt");
    // `pip check`-like: every requirement already satisfied, else install them all.
    let satisfied = Command::new(&python)
        .args([
            "-c",
            "import sys, importlib.metadata as m\n\
             from packaging.requirements import Requirement\n\
             for line in open(sys.argv[1]):\n\
             \x20   line = line.split('#')[0].strip()\n\
             \x20   if line:\n\
             \x20       r = Requirement(line)\n\
             \x20       assert r.specifier.contains(m.version(r.name)), r\n",
        ])
        .arg(&requirements)
        .output()
        .is_ok_and(|out| out.status.success());
    if !satisfied {
        run_ok(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(&requirements),
            "pip install -r kernel/tests/python/requirements.txt",
        );
    }
    venv.join("bin")
}

/// The venv's python.
pub fn python() -> PathBuf {
    venv_bin().join("python")
}
