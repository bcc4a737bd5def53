//! The span store: fixed-size records in one `MAP_SHARED` anonymous mapping.
//!
//! Why shared memory: a child made with `fork()` gets a copy of the parent's heap, so a
//! `Vec` of spans would fill up in the child's copy and never reach the parent. A mapping
//! made with `MAP_SHARED | MAP_ANONYMOUS` before the fork is the same physical memory in
//! both processes, so a span written by the child is read by the parent. This works for
//! any fork (the course's `Process`, a pool's workers, a bare `libc::fork()`), and it needs
//! no message from the child.
//!
//! Layout: a header (capacity, the next free slot, counters), a small table of process
//! names, then `capacity` span slots of 136 bytes (64 of label, 40 of row name). A writer reserves a slot with one
//! `fetch_add` on the header's counter (lock-free, so a child forked while another thread
//! was recording cannot inherit a held lock), fills it, then publishes it by storing
//! `READY` into the slot's state with `Release`. A reader takes only slots whose state it
//! sees as `READY` with `Acquire`, so it never reads a half-written slot. Slots are written
//! once and never reused, so there is no ABA problem and no reader ever waits.
//!
//! When every slot is taken, a span is not stored and the `dropped` counter goes up; the
//! recorder's caller is not failed, since a picture must never break the work it watches.

use std::io;
use std::ptr;

use crate::os::shm::Region;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes kept of a span's label (cut on a character boundary).
pub(crate) const LABEL_BYTES: usize = 64;
/// Bytes kept of a row's name (cut in the middle, on character boundaries).
pub(crate) const ROW_BYTES: usize = 40;
/// Process names the table holds; later names are refused.
pub(crate) const NAME_SLOTS: usize = 64;
/// The largest capacity accepted: 4 Mi spans are 512 MiB of address space.
pub(crate) const MAX_CAPACITY: usize = 1 << 22;

const MAGIC: u64 = 0x636f_6e63_6c61_6231; // "conclab1"
const READY: u32 = 1;

#[repr(C)]
struct Header {
    magic: u64,
    capacity: u64,
    next: AtomicU64,
    dropped: AtomicU64,
    names_next: AtomicU64,
}

#[repr(C)]
struct NameSlot {
    state: AtomicU32,
    pid: u32,
    len: u32,
    _pad: u32,
    bytes: [u8; ROW_BYTES],
}

#[repr(C)]
struct Slot {
    state: AtomicU32,
    pid: u32,
    tid: u32,
    explicit_row: u8,
    label_len: u8,
    row_len: u8,
    _pad: u8,
    start_ns: u64,
    end_ns: u64,
    label: [u8; LABEL_BYTES],
    row: [u8; ROW_BYTES],
}

/// One span as stored (times in nanoseconds since the timeline's origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSpan {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) explicit_row: bool,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) label: String,
    pub(crate) row: String,
}

/// The mapping. Dropping it unmaps it in this process only; a forked child keeps its own
/// reference to the same memory.
///
/// It is shared between threads (it is `Send` and `Sync` through its [`Region`]) because
/// the mapping is only reached through atomics (header counters, slot states) and through
/// slots that one writer owns between its `fetch_add` and its `Release` store and that are
/// immutable afterwards; no method hands out a reference into a slot still being written.
pub(crate) struct SpanStore {
    region: Region,
    capacity: usize,
}

/// The longest prefix of `s` that fits in `max` bytes and ends on a character boundary.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to at most `max` bytes by taking out its middle (marked with `…`): rows such
/// as `worker-with-a-long-name-17` differ at their end, which must survive.
pub(crate) fn clip_middle(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let room = max.saturating_sub('…'.len_utf8());
    let head = clip(s, room - room * 2 / 5);
    let mut start = s.len() - (room - head.len());
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("{head}…{}", &s[start..]).into()
}

impl SpanStore {
    const NAMES_OFFSET: usize = std::mem::size_of::<Header>();
    const SLOTS_OFFSET: usize = Self::NAMES_OFFSET + NAME_SLOTS * std::mem::size_of::<NameSlot>();

    /// Maps room for `capacity` spans (1 ..= [`MAX_CAPACITY`], checked by the caller).
    pub(crate) fn new(capacity: usize) -> io::Result<SpanStore> {
        let len = Self::SLOTS_OFFSET + capacity * std::mem::size_of::<Slot>();
        let region = Region::new(len)?;
        // SAFETY: the mapping is fresh, zero-filled, page-aligned and large enough for the
        // header; nobody else can see it yet.
        unsafe {
            let header = region.ptr().cast::<Header>();
            ptr::addr_of_mut!((*header).magic).write(MAGIC);
            ptr::addr_of_mut!((*header).capacity).write(capacity as u64);
        }
        Ok(SpanStore { region, capacity })
    }

    fn header(&self) -> &Header {
        // SAFETY: the header's plain fields are written once in `new`, before the store is
        // shared; the rest are atomics.
        unsafe { &*self.region.ptr().cast::<Header>() }
    }

    fn name_slot(&self, i: usize) -> *mut NameSlot {
        debug_assert!(i < NAME_SLOTS);
        // SAFETY: in bounds of the mapping by construction of NAMES_OFFSET.
        unsafe {
            self.region
                .ptr()
                .add(Self::NAMES_OFFSET)
                .cast::<NameSlot>()
                .add(i)
        }
    }

    fn slot(&self, i: usize) -> *mut Slot {
        debug_assert!(i < self.capacity);
        // SAFETY: in bounds of the mapping: `len` covers `capacity` slots.
        unsafe {
            self.region
                .ptr()
                .add(Self::SLOTS_OFFSET)
                .cast::<Slot>()
                .add(i)
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Spans that found no free slot, over every process sharing the store.
    pub(crate) fn dropped(&self) -> u64 {
        self.header().dropped.load(Ordering::Relaxed)
    }

    /// Stores a span; returns `false` (and counts it as dropped) when the store is full.
    pub(crate) fn push(&self, span: &RawSpan) -> bool {
        let header = self.header();
        let index = header.next.fetch_add(1, Ordering::Relaxed);
        if index >= self.capacity as u64 {
            header.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let slot = self.slot(index as usize);
        let label = clip(&span.label, LABEL_BYTES).as_bytes();
        let row = clip_middle(&span.row, ROW_BYTES);
        let row = row.as_bytes();
        // SAFETY: the fetch_add gave this call the slot alone; nobody reads its plain
        // fields before the Release store below publishes them.
        unsafe {
            ptr::addr_of_mut!((*slot).pid).write(span.pid);
            ptr::addr_of_mut!((*slot).tid).write(span.tid);
            ptr::addr_of_mut!((*slot).explicit_row).write(u8::from(span.explicit_row));
            ptr::addr_of_mut!((*slot).label_len).write(label.len() as u8);
            ptr::addr_of_mut!((*slot).row_len).write(row.len() as u8);
            ptr::addr_of_mut!((*slot).start_ns).write(span.start_ns);
            ptr::addr_of_mut!((*slot).end_ns).write(span.end_ns);
            let label_dst = ptr::addr_of_mut!((*slot).label).cast::<u8>();
            ptr::copy_nonoverlapping(label.as_ptr(), label_dst, label.len());
            let row_dst = ptr::addr_of_mut!((*slot).row).cast::<u8>();
            ptr::copy_nonoverlapping(row.as_ptr(), row_dst, row.len());
            (*ptr::addr_of!((*slot).state)).store(READY, Ordering::Release);
        }
        true
    }

    /// Every published span, in slot order (roughly the order in which spans ended).
    pub(crate) fn read_all(&self) -> Vec<RawSpan> {
        let taken = self.header().next.load(Ordering::Acquire);
        let n = (taken as usize).min(self.capacity);
        let mut spans = Vec::with_capacity(n);
        for i in 0..n {
            let slot = self.slot(i);
            // SAFETY: the state is an atomic; the plain fields are read only after an
            // Acquire load saw READY, that is after the writer's last write to them.
            unsafe {
                if (*ptr::addr_of!((*slot).state)).load(Ordering::Acquire) != READY {
                    continue; // reserved, still being written (or its writer died)
                }
                let label_len = usize::from(ptr::addr_of!((*slot).label_len).read());
                let row_len = usize::from(ptr::addr_of!((*slot).row_len).read());
                let label = std::slice::from_raw_parts(
                    ptr::addr_of!((*slot).label).cast::<u8>(),
                    label_len.min(LABEL_BYTES),
                );
                let row = std::slice::from_raw_parts(
                    ptr::addr_of!((*slot).row).cast::<u8>(),
                    row_len.min(ROW_BYTES),
                );
                spans.push(RawSpan {
                    pid: ptr::addr_of!((*slot).pid).read(),
                    tid: ptr::addr_of!((*slot).tid).read(),
                    explicit_row: ptr::addr_of!((*slot).explicit_row).read() != 0,
                    start_ns: ptr::addr_of!((*slot).start_ns).read(),
                    end_ns: ptr::addr_of!((*slot).end_ns).read(),
                    label: String::from_utf8_lossy(label).into_owned(),
                    row: String::from_utf8_lossy(row).into_owned(),
                });
            }
        }
        spans
    }

    /// Records `name` for process `pid`; `false` when the name table is full.
    pub(crate) fn set_name(&self, pid: u32, name: &str) -> bool {
        let index = self.header().names_next.fetch_add(1, Ordering::Relaxed);
        if index >= NAME_SLOTS as u64 {
            return false;
        }
        let slot = self.name_slot(index as usize);
        let bytes = clip_middle(name, ROW_BYTES);
        let bytes = bytes.as_bytes();
        // SAFETY: the slot is ours alone until the Release store publishes it.
        unsafe {
            ptr::addr_of_mut!((*slot).pid).write(pid);
            ptr::addr_of_mut!((*slot).len).write(bytes.len() as u32);
            let dst = ptr::addr_of_mut!((*slot).bytes).cast::<u8>();
            ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            (*ptr::addr_of!((*slot).state)).store(READY, Ordering::Release);
        }
        true
    }

    /// The latest name recorded for `pid`, if any.
    pub(crate) fn name_of(&self, pid: u32) -> Option<String> {
        let n = (self.header().names_next.load(Ordering::Acquire) as usize).min(NAME_SLOTS);
        let mut found = None;
        for i in 0..n {
            let slot = self.name_slot(i);
            // SAFETY: as in `read_all`.
            unsafe {
                if (*ptr::addr_of!((*slot).state)).load(Ordering::Acquire) != READY
                    || ptr::addr_of!((*slot).pid).read() != pid
                {
                    continue;
                }
                let len = (ptr::addr_of!((*slot).len).read() as usize).min(ROW_BYTES);
                let bytes =
                    std::slice::from_raw_parts(ptr::addr_of!((*slot).bytes).cast::<u8>(), len);
                found = Some(String::from_utf8_lossy(bytes).into_owned());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(label: &str, start: u64) -> RawSpan {
        RawSpan {
            pid: 1,
            tid: 2,
            explicit_row: false,
            start_ns: start,
            end_ns: start + 10,
            label: label.to_owned(),
            row: "main".to_owned(),
        }
    }

    #[test]
    fn slots_are_the_documented_size() {
        assert_eq!(std::mem::size_of::<Slot>(), 136);
    }

    #[test]
    fn spans_round_trip() {
        let store = SpanStore::new(4).unwrap();
        assert!(store.push(&span("a", 5)));
        assert!(store.push(&span("b", 7)));
        assert_eq!(store.read_all(), vec![span("a", 5), span("b", 7)]);
    }

    #[test]
    fn a_full_store_counts_what_it_drops() {
        let store = SpanStore::new(2).unwrap();
        for i in 0..5 {
            store.push(&span("x", i));
        }
        assert_eq!(store.read_all().len(), 2);
        assert_eq!(store.dropped(), 3);
    }

    #[test]
    fn long_text_is_clipped_on_a_char_boundary() {
        let long = "é".repeat(100);
        let store = SpanStore::new(1).unwrap();
        store.push(&span(&long, 0));
        let got = &store.read_all()[0].label;
        assert!(got.len() <= LABEL_BYTES && got.chars().all(|c| c == 'é'));
        assert_eq!(clip("abc", 2), "ab");
        let row = clip_middle(
            "a-worker-thread-with-a-really-quite-long-name-17",
            ROW_BYTES,
        );
        assert!(row.len() <= ROW_BYTES && row.ends_with("name-17"), "{row}");
        assert_eq!(clip_middle("short", ROW_BYTES), "short");
    }

    #[test]
    fn the_latest_name_wins() {
        let store = SpanStore::new(1).unwrap();
        assert_eq!(store.name_of(7), None);
        store.set_name(7, "first");
        store.set_name(8, "other");
        store.set_name(7, "second");
        assert_eq!(store.name_of(7).as_deref(), Some("second"));
    }

    #[test]
    fn threads_share_the_store_without_losing_spans() {
        let store = SpanStore::new(4000).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let store = &store;
                s.spawn(move || {
                    for i in 0..1000 {
                        assert!(store.push(&span(&format!("{t}-{i}"), i)));
                    }
                });
            }
        });
        let mut labels: Vec<String> = store.read_all().into_iter().map(|s| s.label).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), 4000);
    }
}
