//! The locked slow path: faults pages in, then takes them.
//!
//! Every non-fast GUP call comes here, and so does the remainder of a `*_fast`
//! call that the fast path could not take. Holding the memory's lock excludes
//! `discard`, `grow` and the long-term chunk lock/unlock transitions, so a page that
//! this path makes `PRESENT` stays present until we have taken it. Fast-path
//! pinners and unpinners still run concurrently; the reference itself is taken
//! with the same CAS on the entry.

use crate::gup::Request;
use crate::page_table::entry;
use crate::primitive::{AtomicU64, Ordering, TryLockError};
use crate::{longterm, Errno, Mm};

/// Takes references on up to `nr` pages from `pfn`, faulting them in; returns
/// how many were taken (a prefix of the range, ≥ 1) or why none could be.
///
/// Stops at the end of the accessible memory (`Fault` if that is `pfn`) and
/// at a counter at its maximum (`Overflow` if that is `pfn`). With `NOWAIT`
/// it neither waits for the lock nor faults in (`Again` if it could take none).
pub(crate) fn take(mm: &Mm, pfn: u64, nr: usize, req: Request) -> Result<usize, Errno> {
    let guard = if req.nowait() {
        match mm.lock.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(Errno::Again),
        }
    } else {
        mm.lock()
    };
    let len_pages = mm.len_pages();
    if pfn >= len_pages {
        return Err(Errno::Fault);
    }
    let want = (len_pages - pfn).min(nr as u64);
    if req.longterm() && !req.nowait() {
        // Refuse before faulting anything in (NOWAIT faults nothing in).
        longterm::check_limit(mm, &guard, pfn, want)?;
    }
    let n = fault_in(mm, pfn, want, req.nowait());
    if n == 0 {
        return Err(Errno::Again);
    }
    if req.longterm() {
        longterm::reserve_locked(mm, &guard, pfn, n)?;
    }
    let taken = mm.table.walk(pfn, n, |e| try_take(e, req));
    if req.longterm() && taken < n {
        longterm::release(mm, Some(&guard), pfn + taken, n - taken);
    }
    if taken == 0 {
        return Err(Errno::Overflow);
    }
    Ok(taken as usize)
}

/// Makes `n` pages from `pfn` present, allocating their table nodes; with
/// `nowait`, stops at the first page that is not present instead. Returns how
/// many pages from `pfn` are present.
fn fault_in(mm: &Mm, pfn: u64, n: u64, nowait: bool) -> u64 {
    let present = |i: u64| -> Option<&AtomicU64> {
        let e = mm.table.ensure(pfn + i)?;
        (e.load(Ordering::Acquire) & entry::PRESENT != 0).then_some(e)
    };
    let mut i = 0;
    while i < n {
        if present(i).is_some() {
            i += 1;
            continue;
        }
        if nowait {
            return i;
        }
        let run = i;
        while i < n && present(i).is_none() {
            i += 1;
        }
        mm.populate(pfn + run, i - run);
        for j in run..i {
            if let Some(e) = mm.table.get(pfn + j) {
                // Release: the population happens-before a fast-path CAS that
                // sees PRESENT.
                e.fetch_or(entry::PRESENT | entry::WRITABLE, Ordering::Release);
            }
        }
    }
    n
}

fn try_take(e: &AtomicU64, req: Request) -> bool {
    e.fetch_update(Ordering::Acquire, Ordering::Relaxed, |cur| {
        req.fits(cur).then(|| cur + req.delta())
    })
    .is_ok()
}
