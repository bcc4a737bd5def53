//! # conclab
//!
//! The support crate of a Rust course on concurrency. Every notebook in `notebooks/` loads
//! it in its first cell and calls into it; everything a notebook demonstrates is a public,
//! documented and tested item here.
//!
//! The modules carry the names a reader of Python's documentation looks for:
//!
//! | Python | conclab |
//! | --- | --- |
//! | `threading` | [`threading`] |
//! | `queue` | [`queue`] |
//! | `concurrent.futures` | [`futures`] |
//! | `multiprocessing` | [`multiprocessing`] (also reachable as `mp` through the prelude) |
//! | the GIL | [`gil`], a simulation to teach with: Rust has no GIL |
//! | (none: a process pool) | [`parallel`]: rayon's `par_iter` on a pool the notebook holds |
//!
//! and [`timeline`], [`chart`] and [`table`] draw what happened ([`display`] shows them
//! inline in a notebook). [`explore`] runs a closure under a controlled scheduler, to find
//! the interleavings in which it loses an update, deadlocks or fails an assertion.
//!
//! ## Living inside a notebook kernel
//!
//! evcxr compiles every cell into its own shared library, which links its own copy of this
//! crate. A `static` therefore starts fresh in every cell, so nothing here keeps state in
//! one: pools, recorders, the simulated GIL and children to reap are values the notebook
//! holds.
//!
//! ```
//! use conclab::prelude::*;
//! ```

#![warn(missing_docs, unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod explore;
pub mod futures;
pub mod gil;

pub mod multiprocessing;
pub mod parallel;
pub mod prelude;
pub mod queue;
pub mod threading;

// The operating system behind one door (system calls, futexes, shared memory), and the
// blocking building blocks of the thread side (std's, or loom's under `--cfg loom`).
mod os;
mod sync;

/// rayon itself, so that a notebook needs no `:dep` of its own for it (see [`parallel`]).
pub use rayon;

// Pictures: what happened, drawn.
pub mod chart;
pub mod display;
pub mod table;
pub mod timeline;
