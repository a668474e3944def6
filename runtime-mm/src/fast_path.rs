//! The lock-free fast path of `*_fast` GUP calls (the kernel's gup_fast).
//!
//! # Protocol
//!
//! The fast path takes no lock and allocates nothing. It walks the page
//! table a leaf at a time and, for each page, loads the entry and, if the page
//! may be taken, adds one reference with a compare-and-swap on that same
//! entry. The first page it may not take ends the walk; the caller hands the
//! rest of the range to the slow path.
//!
//! A page may be taken on the fast path when its entry is `PRESENT`, not
//! `FROZEN`, `WRITABLE` if the call writes, its counter has room, and, for a
//! long-term pin, the page already holds a long-term pin (so it is already
//! locked resident and charged: the first long-term pin of a page needs a
//! syscall and the lock, see [`crate::longterm`]).
//!
//! Why this is safe against the operations that run concurrently with it:
//!
//! - **discard** (under the lock) first freezes each page with a CAS that
//!   succeeds only if the page holds no reference, then drops the data, then
//!   clears `PRESENT` and `FROZEN` together. Our check and our increment are
//!   one CAS on the same word, so exactly one of the two CASes on a page wins:
//!   either we hold a reference and discard fails with `Busy`, or discard
//!   froze first and our CAS sees `FROZEN` (or, later, no `PRESENT`) and we
//!   fall back. Unlike the kernel, which grabs a refcount on the `struct page`
//!   and must re-check the PTE afterwards, there is no window to re-check.
//! - **grow** only raises `len` and commits pages; it never changes an entry.
//!   A `PRESENT` page was inside `len` when it was faulted in, and `len` never
//!   shrinks, so a page we take is always inside the memory. We read `len`
//!   once (Acquire) to bound the walk; a page that grew in after that read is
//!   simply left to the slow path.
//! - **unpin/put** subtract with a Release RMW on the same word; CAS retries
//!   absorb them. The last long-term unpin of a page (1 → 0, followed by
//!   `munlock`) happens under the lock; a fast long-term pin needs the count
//!   to be ≥ 1 in the very value its CAS replaces, so it either lands before
//!   the 1 → 0 step (and the unpin then leaves the page locked) or sees 0
//!   and falls back to the locked path.
//! - **page-table growth**: nodes are installed by CAS and never freed before
//!   the `Mm` drops, so the `&AtomicU64` we hold stays valid; a missing node
//!   means the page was never faulted in, and we fall back.
//!
//! Orderings: the successful CAS is Acquire, pairing with the Release of the
//! slow path's `PRESENT` store and of discard's thaw, so the caller's
//! subsequent accesses to the page see a populated page. Unpins are Release,
//! pairing with discard's Acquire freeze, so a holder's accesses happen before
//! the data is dropped.
//!
//! Per page, uncontended: one Relaxed load of the entry (the leaf pointer is
//! loaded once per 512 pages), four compare-and-branch tests (present and
//! not frozen, writable if asked, counter room, long-term held), one `lock
//! cmpxchg`, and the loop's bound check.

use crate::gup::Request;
use crate::primitive::{AtomicU64, Ordering};
use crate::Mm;

/// Takes references on up to `nr` pages from `pfn` without locking; returns
/// how many were taken, always a prefix of the range.
pub(crate) fn take(mm: &Mm, pfn: u64, nr: usize, req: Request) -> usize {
    let avail = mm.len_pages().saturating_sub(pfn).min(nr as u64);
    mm.table.walk(pfn, avail, |e| try_take(e, req)) as usize
}

#[inline(always)]
fn try_take(e: &AtomicU64, req: Request) -> bool {
    let mut cur = e.load(Ordering::Relaxed);
    loop {
        if !req.may_take_fast(cur) {
            return false;
        }
        match e.compare_exchange_weak(cur, cur + req.delta(), Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}
