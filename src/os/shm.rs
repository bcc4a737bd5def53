//! Shared memory: an anonymous `MAP_SHARED` mapping made before a fork, which the parent
//! and every child then see at the same address.

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags};

/// An anonymous shared mapping, zero-filled and page-aligned, unmapped on drop.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: NonZeroUsize,
}

// SAFETY: the mapping is plain memory owned by this value; what lives in it is reached
// through raw pointers, and each user synchronises through atomics or locks in it.
unsafe impl Send for Region {}
// SAFETY: as above: `&Region` hands out only a raw pointer.
unsafe impl Sync for Region {}

impl Region {
    /// A zeroed shared mapping of at least `len` bytes (at least one).
    pub(crate) fn new(len: usize) -> io::Result<Region> {
        let len = NonZeroUsize::new(len).unwrap_or(NonZeroUsize::MIN);
        // SAFETY: a fresh anonymous mapping without an address hint can overlap nothing
        // that exists, so creating it breaks no other value's memory.
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )?
        };
        Ok(Region {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The start of the mapping.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `new` made; it is ours alone, and no reference into
        // it outlives `self` (users borrow it through `&self`).
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len.get()) };
    }
}
