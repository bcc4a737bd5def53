//! The operating system, behind one door: every system call the crate makes goes through
//! here, so the rest of the crate is written against safe functions and owned descriptors.
//!
//! It is built on `nix`, whose wrappers take `AsFd` descriptors, return `OwnedFd`s and
//! typed flags, and cost nothing over the raw calls. What nix does not wrap, or wraps in a
//! way that loses information, is written against `libc` here, each `unsafe` block with
//! its argument:
//!
//! - `fork` itself stays `unsafe` (its contract is the caller's, see [`process::fork`]);
//! - `_exit`, `pidfd_open` and `pidfd_send_signal` have no nix wrapper;
//! - `waitpid`: nix decodes the status into a `Signal` and returns an error for a signal
//!   it has no name for (a real-time one), after the child was already reaped, so the
//!   status would be lost; here the raw status is kept;
//! - a `read` into a buffer's spare capacity, which nix's `&mut [u8]` cannot express
//!   without zeroing 64 KiB per read on the pool's per-task path;
//! - the futex, the robust process-shared mutex and the loaded-object walk
//!   (`dl_iterate_phdr`, `dladdr`), which nix does not cover.
//!
//! Errors come back as `std::io::Error`, so callers name what failed by its
//! [`std::io::ErrorKind`] and never by an errno constant. Interrupted calls (`EINTR`) are
//! retried here.

pub(crate) mod fd;
pub(crate) mod futex;
pub(crate) mod loaded;
pub(crate) mod process;
pub(crate) mod robust_mutex;
pub(crate) mod shm;
