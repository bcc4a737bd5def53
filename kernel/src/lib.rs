//! `conclab-kernel`: the conclab Jupyter kernel on evcxr's library, its set-up, a headless
//! runner that speaks the Jupyter protocol, and the assignment tools (release, grade,
//! merge).
//!
//! The modules, each with one job, and the way data flows through them:
//!
//! - [`jupyter`]: what the kernel and the client share: the signed wire format of
//!   messages, kernelspecs on disk, `.ipynb` files.
//! - `kernel`: the server. Sockets and threads over an evcxr `CommandContext`, the relay
//!   process in front of each cell process, and the mapping of what a cell did (output,
//!   panic, `?` error, death) to Jupyter replies.
//! - `run`: the headless client. It starts a kernel from its kernelspec, executes a
//!   notebook cell by cell and judges each cell from the kernel's replies.
//! - `grading`: release (student versions), assemble (a submission into the source),
//!   score, and the report writers (feedback notebook, results, gradebook).
//! - `sandbox`: cgroups that contain a submission's kernel and everything it forks.
//! - `setup`: the machine's configuration: `init.evcxr`, the kernelspec, a warm build.
//! - [`cli`]: the command line, which picks one of the above.
//!
//! Notebooks reach the kernel, and the kernel reaches the support crate only by compiling
//! a notebook's cells: this package never links `conclab`. `ARCHITECTURE.md` at the
//! repository root explains the evcxr facts the kernel is built around.

pub mod cli;
mod error;
mod grading;
pub mod jupyter;
mod kernel;
mod run;
mod sandbox;
mod setup;

pub use error::Error;

/// Becomes one of the helper processes this binary is also started as, if it was started
/// as one: evcxr's relay in front of the cell process, or the cell process itself. Those
/// never return. Otherwise it returns at once, and the command line is parsed.
///
/// Call it first thing in `main`, before any thread starts.
///
/// ```
/// // Not started as a helper: this returns at once.
/// conclab_kernel::become_helper_if_started_as_one();
/// ```
pub fn become_helper_if_started_as_one() {
    if kernel::relay::is_relay() {
        kernel::relay::run();
    }
    evcxr::runtime_hook();
}
