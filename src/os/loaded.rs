//! The objects (executable, shared libraries) mapped into this process: what the pool's
//! reload detector compares against (see `multiprocessing/reload.rs`). nix does not wrap
//! `dl_iterate_phdr` or `dladdr`.

use std::ffi::c_void;

/// glibc's count of objects ever loaded, and the address ranges of the loaded segments
/// (the ranges only when `with_ranges`).
pub(crate) fn objects(with_ranges: bool) -> (u64, Vec<(usize, usize)>) {
    let mut walk = Walk {
        adds: 0,
        ranges: Vec::new(),
        with_ranges,
    };
    // SAFETY: `visit` matches the callback type, and `data` is our own `Walk`, which
    // outlives the call; dl_iterate_phdr calls back on this thread only.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut walk).cast()) };
    (walk.adds, walk.ranges)
}

/// Whether `addr` lies in any loaded object (`dladdr` finds one).
pub(crate) fn in_some_object(addr: usize) -> bool {
    // SAFETY: `Dl_info` is plain pointers and integers, for which all zeroes is valid;
    // dladdr only looks the address up (any value is allowed) and writes `info`.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        libc::dladdr(addr as *const c_void, &mut info) != 0
    }
}

struct Walk {
    adds: u64,
    ranges: Vec<(usize, usize)>,
    with_ranges: bool,
}

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> i32 {
    // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and the
    // `data` we gave it, which is a live `Walk` borrowed by nobody else.
    let (info, walk) = unsafe { (&*info, &mut *data.cast::<Walk>()) };
    walk.adds = info.dlpi_adds;
    if !walk.with_ranges {
        return 1; // the counter is the same in every entry: stop after the first
    }
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD {
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            walk.ranges.push((start, start + ph.p_memsz as usize));
        }
    }
    0
}
