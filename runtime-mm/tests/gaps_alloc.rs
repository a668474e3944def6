//! Gaps a mutation run of `runtime-mm` found (issue 14): dropping a memory
//! frees its page table and its mapping. A counting global allocator (this
//! test binary's own) counts the heap bytes each thread holds; the file has
//! one test, so no other test maps or allocates meanwhile.

use runtime_mm::gup::*;
use runtime_mm::{GupFlags, Mm, MmConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

const PAGE: u64 = 4096;
const GIB: u64 = 1 << 30;

/// The system allocator, counting per thread the bytes allocated (gross)
/// and held (net).
struct Counting;

thread_local! {
    static NET: Cell<i64> = const { Cell::new(0) };
    static GROSS: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: i64) {
    // `try_with`: a thread's last frees may come after its locals are gone.
    let _ = NET.try_with(|n| n.set(n.get() + bytes));
    if bytes > 0 {
        let _ = GROSS.try_with(|g| g.set(g.get() + bytes as u64));
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counting
// touches only const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// (net, gross) heap bytes of this thread.
fn counters() -> (i64, u64) {
    (NET.with(Cell::get), GROSS.with(Cell::get))
}

/// Whether any mapping covers `[addr, addr + len)` (`mincore` fails with
/// `ENOMEM` exactly when part of the range is unmapped).
fn mapped(addr: u64, len: u64) -> bool {
    let mut vec = vec![0u8; len.div_ceil(PAGE) as usize];
    // SAFETY: mincore reads only the page tables of the range (mapped or
    // not) and writes one byte per page into `vec`, which is long enough.
    unsafe { libc::mincore(addr as *mut _, len as usize, vec.as_mut_ptr()) == 0 }
}

/// One memory's life, using every node kind: 2 middle nodes and 514 leaves
/// (grown past 1 GiB), pins, gets, long-term pins and discards. Returns its
/// page-table bytes and where it was mapped.
fn one_life() -> (usize, u64) {
    let m = Mm::new(MmConfig {
        initial_bytes: 64 * PAGE,
        reservation_bytes: 2 * GIB,
        memlock_limit_bytes: 64 << 10,
        ..Default::default()
    })
    .unwrap();
    m.grow_to(GIB + (4 << 20)).unwrap();
    let a = pin_user_pages_fast(&m, 0, 1024, GupFlags::WRITE).unwrap();
    let b = pin_longterm_pages(&m, GIB, 4, GupFlags::WRITE).unwrap();
    let c = get_user_pages(&m, GIB + 8 * PAGE, 4, GupFlags::empty()).unwrap();
    a.unpin_dirty(true);
    drop((b, c));
    m.discard(0, GIB + (4 << 20)).unwrap();
    let bytes = m.page_table_bytes();
    let base = m.base() as u64;
    assert!(mapped(base, GIB));
    drop(m);
    (bytes, base)
}

/// Creating and dropping many memories with many leaves holds no heap byte
/// afterwards (the page table's `Drop` frees every node) and leaves no
/// mapping behind.
#[test]
fn dropped_memories_free_their_page_tables_and_mappings() {
    // Warm-up: lazily initialised statics (page size, stats shards) stay.
    one_life();
    let (net0, gross0) = counters();
    let mut table = 0;
    for _ in 0..16 {
        let (bytes, base) = one_life();
        assert!(!mapped(base, PAGE), "the reservation at {base:#x} is still mapped");
        table += bytes;
    }
    let (net1, gross1) = counters();
    assert!(table >= 16 * 514 * 4096, "{table} bytes of page tables");
    assert!(gross1 - gross0 >= table as u64, "the allocator saw the page tables");
    assert_eq!(net1 - net0, 0, "heap bytes leaked by 16 dropped memories");
}
