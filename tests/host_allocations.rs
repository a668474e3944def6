//! #19.6: no host allocation grows with a guest-supplied count beyond what
//! the guest's quotas admit. A global allocator that records the largest
//! single request watches the imports that take guest lists.

use host_api::bindings::wasm_pin::mm::gup::{Errno, GupFlags, Host as _, PinRange};
use host_api::{MmHost, PinView, Quotas};
use runtime_mm::{Mm, MmConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Watch;

static WATCHING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only records sizes.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WATCHING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if WATCHING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Watch = Watch;

/// The largest single allocation `f` makes.
fn largest<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    WATCHING.store(true, Ordering::Relaxed);
    let r = f();
    WATCHING.store(false, Ordering::Relaxed);
    (r, LARGEST.load(Ordering::Relaxed))
}

/// Two million one-page ranges in one `pin-user-pages-fast-vec`: the
/// default quota admits 1024 pins, so the host reserves room for at most
/// that many (before: one 96 MB vector for the whole list).
#[test]
fn a_long_pin_vec_list_allocates_no_more_than_the_quota_admits() {
    let mm = Mm::new(MmConfig {
        initial_bytes: 16 << 20,
        ..Default::default()
    })
    .unwrap();
    let mut host = MmHost::new(Quotas::default());
    host.attach(mm.clone());
    let ranges: Vec<PinRange> = (0..2_000_000u64)
        .map(|i| PinRange {
            start: (i % 4096) * 4096,
            nr_pages: 1,
        })
        .collect();
    let list_bytes = ranges.len() * std::mem::size_of::<PinRange>();
    let (r, peak) = largest(|| host.pins().pin_user_pages_fast_vec(ranges, GupFlags::WRITE).unwrap());
    assert_eq!(r.err(), Some(Errno::Again), "past the pin quota");
    assert!(
        peak < 1 << 20,
        "largest host allocation {peak} B for a {list_bytes} B guest list"
    );
    assert_eq!(mm.stats().pins_outstanding(), 0, "all or nothing");
    assert_eq!(host.usage(), (0, 0, 0));
}
