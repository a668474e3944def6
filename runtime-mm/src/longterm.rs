//! Long-term pins (`FOLL_LONGTERM`): memlock accounting and residency.
//!
//! A long-term pin may be held for as long as the guest likes (a registered
//! I/O buffer, an RDMA region), so its pages are locked resident with
//! `mlock` (`region::lock`) and charged against the memory's memlock limit,
//! like the kernel's `account_locked_vm` against `RLIMIT_MEMLOCK`. Each page is
//! charged and locked once, when its long-term count goes 0 → 1, and unlocked
//! and uncharged when it returns to 0: the charge is the resident set that
//! long-term pins really hold, however many pins share a page.
//!
//! Both transitions happen only under the memory's lock, which orders every
//! `mlock` of a page with its `munlock`. The fast path may add a long-term pin
//! only to a page that already holds one (see [`crate::fast_path`]).
//!
//! A request that would exceed the limit fails with `NoMem` and takes nothing:
//! the charge for the whole range is checked before any page is locked.

use crate::page_table::entry;
use crate::primitive::{MutexGuard, Ordering};
use crate::{mm::Inner, Errno, Mm};

/// Runs `(pfn, n)` of pages in `[pfn, pfn+n)` that hold no long-term pin.
fn unlocked_runs(mm: &Mm, pfn: u64, n: u64) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for p in pfn..pfn + n {
        let lt = mm
            .table
            .get(p)
            .map_or(0, |e| entry::longterm(e.load(Ordering::Acquire)));
        if lt != 0 {
            continue;
        }
        match runs.last_mut() {
            Some((start, len)) if *start + *len == p => *len += 1,
            _ => runs.push((p, 1)),
        }
    }
    runs
}

fn range(mm: &Mm, pfn: u64, n: u64) -> (*const u8, usize) {
    // SAFETY (of the pointer arithmetic): callers pass pages inside the
    // accessible memory, which lies inside the reservation.
    let ptr = unsafe { mm.base().add((pfn << mm.page_shift()) as usize) };
    (ptr, (n << mm.page_shift()) as usize)
}

/// Charges and locks resident the pages of `[pfn, pfn+n)` that hold no
/// long-term pin yet, so the caller may then add long-term pins to all of
/// them. All or nothing: `NoMem` past the memlock limit or if `mlock` fails.
pub(crate) fn lock_new(mm: &Mm, _locked: &MutexGuard<'_, Inner>, pfn: u64, n: u64) -> Result<(), Errno> {
    let runs = unlocked_runs(mm, pfn, n);
    let bytes = runs.iter().map(|r| r.1).sum::<u64>() << mm.page_shift();
    let charged = mm.locked_bytes.load(Ordering::Relaxed);
    if charged.checked_add(bytes).is_none_or(|b| b > mm.memlock_limit) {
        return Err(Errno::NoMem);
    }
    for (k, &(p, c)) in runs.iter().enumerate() {
        let (ptr, len) = range(mm, p, c);
        // The guard would unlock on drop; the lock must outlive this call, and
        // is undone explicitly by `unlock_unused`.
        if region::lock(ptr, len).map(std::mem::forget).is_err() {
            for &(p, c) in &runs[..k] {
                let (ptr, len) = range(mm, p, c);
                let _ = region::unlock(ptr, len);
            }
            return Err(Errno::NoMem);
        }
    }
    mm.locked_bytes.store(charged + bytes, Ordering::Relaxed);
    Ok(())
}

/// Unlocks and uncharges the pages of `[pfn, pfn+n)` that hold no long-term
/// pin (any more). Pages still long-term pinned are left locked.
pub(crate) fn unlock_unused(mm: &Mm, _locked: &MutexGuard<'_, Inner>, pfn: u64, n: u64) {
    let mut pages = 0;
    for (p, c) in unlocked_runs(mm, pfn, n) {
        let (ptr, len) = range(mm, p, c);
        // munlock of a locked, mapped range cannot fail in a way we could act
        // on; the charge is returned either way so the accounting stays exact.
        let _ = region::unlock(ptr, len);
        pages += c;
    }
    let bytes = pages << mm.page_shift();
    mm.locked_bytes.fetch_sub(bytes, Ordering::Relaxed);
}
