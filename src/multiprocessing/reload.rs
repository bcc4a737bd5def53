//! Detecting code loaded since a pool's workers were forked.
//!
//! evcxr compiles every notebook cell into its own shared library. A worker forked in
//! cell 2 has no mapping of cell 3's library, so a function pointer into it makes the
//! worker die with SIGSEGV. At fork time we record the address ranges of every loaded
//! object (`dl_iterate_phdr`) and glibc's count of objects ever loaded (`dlpi_adds`).
//! Before dispatching, if that count has not moved, nothing new can be involved (a cheap
//! check on every task); if it has, each code address of the task is looked up with
//! `dladdr` and must lie in a range recorded at fork time, or the pool re-forks.

use std::ffi::c_void;

/// The objects mapped when workers were forked.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeSnapshot {
    adds: u64,
    ranges: Vec<(usize, usize)>,
}

struct Collect {
    adds: u64,
    ranges: Vec<(usize, usize)>,
    only_count: bool,
}

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> i32 {
    // SAFETY: dl_iterate_phdr passes a valid info and our own `Collect`.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Collect>()) };
    out.adds = info.dlpi_adds;
    if out.only_count {
        return 1; // the counter is the same in every entry: stop after the first
    }
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr points to dlpi_phnum headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD {
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            out.ranges.push((start, start + ph.p_memsz as usize));
        }
    }
    0
}

fn collect(only_count: bool) -> Collect {
    let mut c = Collect {
        adds: 0,
        ranges: Vec::new(),
        only_count,
    };
    // SAFETY: the callback only reads what dl_iterate_phdr hands it.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut c as *mut Collect).cast()) };
    c
}

impl CodeSnapshot {
    /// Records what is mapped now (call right before forking workers).
    pub(crate) fn take() -> CodeSnapshot {
        let c = collect(false);
        CodeSnapshot {
            adds: c.adds,
            ranges: c.ranges,
        }
    }

    /// Whether any of `addrs` points into an object loaded after the snapshot.
    /// Words that are not code addresses (`dladdr` finds no object) are ignored.
    pub(crate) fn is_stale(&self, addrs: &[usize]) -> bool {
        if collect(true).adds == self.adds {
            return false;
        }
        addrs.iter().any(|&a| {
            // SAFETY: dladdr only looks the address up; any value is allowed.
            let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
            let found = unsafe { libc::dladdr(a as *const c_void, &mut info) } != 0;
            found && !self.ranges.iter().any(|&(s, e)| a >= s && a < e)
        })
    }
}
