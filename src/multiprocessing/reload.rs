//! Detecting code loaded since a pool's workers were forked.
//!
//! evcxr compiles every notebook cell into its own shared library. A worker forked in
//! cell 2 has no mapping of cell 3's library, so a function pointer into it makes the
//! worker die with SIGSEGV (ARCHITECTURE.md, "Facts the design rests on"). At fork time we
//! record the address ranges of every loaded object and glibc's count of objects ever
//! loaded. Before dispatching, if that count has not moved, nothing new can be involved (a
//! cheap check on every task); if it has, each code address of the task must lie in a
//! range recorded at fork time, or the pool re-forks.

use crate::os::loaded;

/// The objects mapped when workers were forked.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeSnapshot {
    adds: u64,
    ranges: Vec<(usize, usize)>,
}

impl CodeSnapshot {
    /// Records what is mapped now (call right before forking workers).
    pub(crate) fn take() -> CodeSnapshot {
        let (adds, ranges) = loaded::objects(true);
        CodeSnapshot { adds, ranges }
    }

    /// Whether any of `addrs` points into an object loaded after the snapshot.
    /// Words that are not code addresses (no loaded object holds them) are ignored.
    pub(crate) fn is_stale(&self, addrs: &[usize]) -> bool {
        if loaded::objects(false).0 == self.adds {
            return false;
        }
        addrs.iter().any(|&a| {
            loaded::in_some_object(a) && !self.ranges.iter().any(|&(s, e)| a >= s && a < e)
        })
    }
}
