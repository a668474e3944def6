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
//! # What a pin promises, and what "present" means
//!
//! A user-space linear memory is not the kernel's page cache: every page
//! inside the memory's length is mapped read-write from the moment `grow`
//! publishes the length, and stays so. So a **short-term pin** promises that
//! the page stays mapped at the same address with the same contents (no
//! `discard` can zero it) until it is released. It does not promise that a
//! physical frame is resident now: like any anonymous memory, the first
//! access (by the guest, the host, or the kernel in `pread`/io_uring) faults
//! it in. That is what every short-lived transfer needs, so the fast path
//! takes fresh pages as well as pages pinned before. A **long-term pin** adds
//! residency: its pages are populated and locked (`mlock`) and charged
//! against the memlock limit ([`crate::longterm`]), which is what a device
//! that DMAs at any time (a registered io_uring buffer, RDMA) needs.
//!
//! `PRESENT` is therefore bookkeeping, not a precondition: the slow path sets
//! it when it populates a page, the fast path sets it in the same CAS that
//! takes the first reference, and `discard` clears it. It reads "handed out
//! or populated since the last discard".
//!
//! A page may be taken on the fast path when its entry is not `FROZEN` and
//! its counter has room; a long-term pin must first have reserved the page
//! on its chunk word, which succeeds only while the chunk is locked resident
//! and charged over the page (locking a chunk needs a syscall and the lock:
//! see [`crate::longterm`], whose protocol covers the chunk words). The page-table leaves of every page inside the
//! length exist (`grow` allocates them under the lock before it publishes
//! the length), so the walk never stops at a missing node inside the memory.
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
//! - **grow** commits pages, allocates their leaves, then raises `len`
//!   (Release); it never changes an entry. We read `len` once (Acquire) to
//!   bound the walk, so every page we look at is committed and has its leaf,
//!   and `len` never shrinks, so a page we take stays inside the memory. A
//!   page that grew in after our read is simply left to the slow path.
//! - **unpin/put** subtract with a Release RMW on the same word; CAS retries
//!   absorb them. The last long-term unpin of a chunk (its chunk word's pin
//!   count 1 → 0, followed by `munlock`) happens under the lock; a fast
//!   long-term pin needs that count to be ≥ 1 in the very value its CAS
//!   replaces, so it either lands before the 1 → 0 step (and the unpin then
//!   leaves the chunk locked) or sees 0 and falls back to the locked path.
//! - **page-table growth**: nodes are installed by CAS (under the lock, by
//!   `grow`) and never freed before the `Mm` drops, so the `&AtomicU64` we
//!   hold stays valid.
//!
//! Orderings: the successful CAS is Acquire, pairing with the Release of
//! discard's thaw (and of the slow path's `PRESENT` store), so the caller's
//! subsequent accesses to the page come after the discard's zeroing. Unpins are Release,
//! pairing with discard's Acquire freeze, so a holder's accesses happen before
//! the data is dropped.
//!
//! Per page, uncontended: one Relaxed load of the entry (the leaf pointer is
//! loaded once per 512 pages), two compare-and-branch tests (not frozen,
//! counter room), one `lock cmpxchg`, and the loop's bound check; a
//! long-term call adds one CAS per chunk it covers.

use crate::gup::Request;
use crate::page_table::{entry, BLOCK_PAGES};
use crate::primitive::{AtomicU64, Ordering};
use crate::{longterm, Mm};

/// The whole blocks a call took on their block words (see
/// [`crate::page_table`]): `n` blocks from the first block boundary at or
/// after the call's first page (the walk takes the head before it per page).
/// Everything else it took, it took per page. Only a count, so that a held
/// range stays small: a caller may keep one per page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Blocks {
    pub n: u32,
}

impl Blocks {
    /// The pages they cover, for a call whose first page was `pfn`.
    pub(crate) fn pages(self, pfn: u64) -> std::ops::Range<u64> {
        let first = pfn.next_multiple_of(BLOCK_PAGES);
        first..first + u64::from(self.n) * BLOCK_PAGES
    }
}

/// Takes references on up to `nr` pages from `pfn` without locking; returns
/// how many were taken, always a prefix of the range, and which whole
/// blocks were taken as blocks.
///
/// # Range-level counts
///
/// A short-term call that covers whole aligned blocks takes one reference
/// per block (one CAS on the block word) instead of one per page: the head
/// up to the first block boundary per page, then block after block, then the
/// tail per page. The block CAS checks and takes in one step, as the page
/// CAS does: a block a discard owns is `FROZEN`, and the walk stops there.
/// Long-term pins stay per page, reserved a chunk at a time on the chunk
/// words (see [`crate::longterm`]): a chunk not yet locked needs the lock.
pub(crate) fn take(mm: &Mm, pfn: u64, nr: usize, req: Request) -> (usize, Blocks) {
    let avail = mm.len_pages().saturating_sub(pfn).min(nr as u64);
    let none = Blocks::default();
    if req.longterm() {
        return (longterm_take(mm, pfn, avail, req) as usize, none);
    }
    if avail < BLOCK_PAGES {
        return (per_page(mm, pfn, avail, req) as usize, none);
    }
    let head = ((BLOCK_PAGES - pfn % BLOCK_PAGES) % BLOCK_PAGES).min(avail);
    let mut done = per_page(mm, pfn, head, req);
    if done < head {
        return (done as usize, none);
    }
    debug_assert_eq!(pfn + done, pfn.next_multiple_of(BLOCK_PAGES), "Blocks::pages");
    let mut blocks = none;
    while avail - done >= BLOCK_PAGES && blocks.n < u32::MAX {
        match mm.table.block(pfn + done) {
            Some(b) if try_take_block(b, req) => {
                done += BLOCK_PAGES;
                blocks.n += 1;
            }
            _ => break,
        }
    }
    done += per_page(mm, pfn + done, avail - done, req);
    (done as usize, blocks)
}

/// Long-term pins, a chunk at a time: reserve on the chunk word (which
/// succeeds only on a chunk already locked over these pages), then take the
/// pages; pages not taken are released from the chunk again (under the lock
/// if they were its last long-term pins: rare, and it never waits on us).
fn longterm_take(mm: &Mm, pfn: u64, n: u64, req: Request) -> u64 {
    let mut done = 0;
    for (p, k) in longterm::segments(mm, pfn, n) {
        if !longterm::reserve_fast(mm, p, k) {
            break;
        }
        let t = per_page(mm, p, k, req);
        done += t;
        if t < k {
            longterm::release(mm, None, p + t, k - t);
            break;
        }
    }
    done
}

fn per_page(mm: &Mm, pfn: u64, n: u64, req: Request) -> u64 {
    mm.table.walk(pfn, n, |e| try_take(e, req))
}

#[inline(always)]
fn try_take(e: &AtomicU64, req: Request) -> bool {
    let mut cur = e.load(Ordering::Relaxed);
    loop {
        if !req.may_take_fast(cur) {
            return false;
        }
        let new = (cur | entry::PRESENT | entry::WRITABLE) + req.delta();
        match e.compare_exchange_weak(cur, new, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

#[inline(always)]
fn try_take_block(b: &AtomicU64, req: Request) -> bool {
    let mut cur = b.load(Ordering::Relaxed);
    loop {
        if cur & entry::FROZEN != 0 || !req.fits(cur) {
            return false;
        }
        let new = (cur | entry::PRESENT | entry::WRITABLE) + req.delta();
        match b.compare_exchange_weak(cur, new, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}
