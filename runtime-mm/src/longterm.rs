//! Long-term pins (`FOLL_LONGTERM`): residency in chunks, and memlock
//! accounting.
//!
//! A long-term pin may be held for as long as the guest likes (a registered
//! I/O buffer, an RDMA region), so its pages are locked resident with
//! `mlock` and charged against the memory's memlock limit, like the kernel's
//! `account_locked_vm` against `RLIMIT_MEMLOCK`.
//!
//! # Chunks
//!
//! Pages are locked in **chunks**: aligned runs of `chunk_pages` pages (a
//! power of two, at most a 2 MiB block), chosen by
//! [`MmConfig::longterm_chunks`](crate::MmConfig::longterm_chunks):
//! by default ([`LongtermChunks::Auto`]) 2 MiB on a THP-backed memory whose
//! memlock limit holds a chunk, one page otherwise. A chunk is locked when its first long-term pin
//! arrives and stays locked while any long-term pin on any of its pages
//! lives; the pins in between cost no syscall and, on the fast path, no
//! lock. With transparent huge pages a 2 MiB chunk is one folio, and locking
//! it costs the kernel about as much as locking one 4 KiB page.
//!
//! **Accounting is chunk-granular and exact against what is locked**: the
//! memory's `locked_bytes` is the sum of the locked extents of its chunks,
//! each of which is really `mlock`ed, and `memlock_limit_bytes` caps that
//! sum. A long-term pin of one page may so charge up to a whole chunk. With
//! `chunk_pages == 1` this is the kernel's per-page accounting.
//!
//! # Chunk word
//!
//! ```text
//!  63                                16 15               0
//! +------------------------------------+------------------+
//! |  n: long-term pins on the chunk's   |  L: pages locked |
//! |     pages (a sum over its pages)    |  from its start  |
//! +------------------------------------+------------------+
//! ```
//!
//! `L` covers the chunk up to the memory's length when it was locked (a
//! memory that is not a multiple of the chunk has a short last chunk; pages
//! past the length are inaccessible and cannot be locked). `L` changes only
//! under the memory's lock.
//!
//! # Protocol
//!
//! Invariants, at every instant:
//! 1. `n ≥` the long-term pins held on the chunk's pages' entries;
//! 2. `n > 0 ⇒ L > 0`, pages `[start, start+L)` are `mlock`ed and charged,
//!    and every long-term pinned page of the chunk lies below `start + L`;
//! 3. `n = 0 ⇒` the chunk is neither locked nor charged (`L = 0`), except
//!    inside a critical section of the memory's lock.
//!
//! Transitions:
//! - **reserve** (taking `k` long-term pins on pages of the chunk): before
//!   the pages' entries, `n += k`. The fast path does it with a CAS that
//!   requires `n ≥ 1` and the pages below `start + L` in the value it
//!   replaces; otherwise it falls back to the slow path, which under the
//!   lock locks and charges the chunk (or the part of it `L` lacks) first.
//!   Pages it then fails to take are released again.
//! - **release** (`k` pins, after the pages' entries): `n -= k` with a CAS
//!   when `n > k` (lock-free: the chunk stays locked); when they are the
//!   last (`n == k`), under the lock: `n -= k`, and if that left 0, unlock
//!   and uncharge `L` pages and clear `L`.
//!
//! Why it holds: `n` goes 0 → 1 only under the lock (the lock-free reserve
//! needs `n ≥ 1`), and 1 → 0 only under the lock (the lock-free release
//! needs `n > k`), so every `mlock` and `munlock` of a chunk is ordered by
//! the lock, and under the lock "`n > 0`" is stable. A fast reserve either
//! lands before the last release's `fetch_sub` (which then leaves `n > 0`
//! and the chunk locked) or sees `n = 0` and falls back to the lock. A page
//! entry's long-term count rises only after its chunk's `n` did (1.), so a
//! long-term pinned page is always in a locked extent (2.). `discard` runs
//! under the lock, sees which chunks are locked, and zeroes the pages it
//! drops there instead of unmapping them (`MADV_DONTNEED` refuses locked
//! ranges).
//!
//! A request that would exceed the limit fails with `NoMem` and takes
//! nothing: the charge for every chunk of the range is checked before any is
//! locked.

use crate::primitive::{AtomicU64, MutexGuard, Ordering};
use crate::thp::HUGE_PAGE;
use crate::{mm::Inner, Errno, Mm};

/// `L`: pages locked from the chunk's start.
const LOCKED_MASK: u64 = 0xffff;
/// One long-term pin in `n`.
const N_UNIT: u64 = 1 << 16;

fn n_of(w: u64) -> u64 {
    w >> 16
}

/// The chunk holding page `pfn`: its first page and its word.
fn chunk(mm: &Mm, pfn: u64) -> Option<(u64, &AtomicU64)> {
    let start = pfn & !(mm.table.chunk_pages() - 1);
    mm.table.chunk(pfn).map(|w| (start, w))
}

/// The pages of `[pfn, pfn+n)` split at chunk boundaries: `(first, count)`.
pub(crate) fn segments(mm: &Mm, pfn: u64, n: u64) -> impl Iterator<Item = (u64, u64)> {
    let per = mm.table.chunk_pages();
    let end = pfn + n;
    let mut p = pfn;
    std::iter::from_fn(move || {
        (p < end).then(|| {
            let seg = ((p | (per - 1)) + 1).min(end) - p;
            p += seg;
            (p - seg, seg)
        })
    })
}

fn range(mm: &Mm, pfn: u64, n: u64) -> (*const u8, usize) {
    // SAFETY (of the pointer arithmetic): callers pass pages inside the
    // accessible memory, which lies inside the reservation.
    let ptr = unsafe { mm.base().add((pfn << mm.page_shift()) as usize) };
    (ptr, (n << mm.page_shift()) as usize)
}

/// Lock-free reserve of `k` long-term pins on pages `[pfn, pfn+k)`, all in
/// one chunk: succeeds only if the chunk already holds long-term pins and
/// is locked over those pages.
#[inline]
pub(crate) fn reserve_fast(mm: &Mm, pfn: u64, k: u64) -> bool {
    let Some((start, w)) = chunk(mm, pfn) else {
        return false;
    };
    let end = pfn + k - start;
    let mut cur = w.load(Ordering::Relaxed);
    loop {
        if n_of(cur) == 0 || end > cur & LOCKED_MASK {
            return false;
        }
        // Acquire: pairs with the Release of the locking store, so the pin
        // holder sees the chunk locked; the entries' CASes come after.
        match w.compare_exchange_weak(cur, cur + k * N_UNIT, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Locks (and charges) every chunk of `[pfn, pfn+n)` up to the memory's
/// length where it is not locked yet, then reserves one long-term pin per
/// page. All or nothing: `NoMem` past the memlock limit or if `mlock` fails,
/// with nothing locked, charged or reserved. Allocation-free when the chunks
/// are locked already (the common case of a pin beside others).
pub(crate) fn reserve_locked(mm: &Mm, locked: &MutexGuard<'_, Inner>, pfn: u64, n: u64) -> Result<(), Errno> {
    let (charged, bytes) = check_limit(mm, locked, pfn, n)?;
    if bytes > 0 {
        let grow: Vec<_> = lacking(mm, pfn, n).collect();
        let runs = merge(grow.iter().map(|g| (g.1, g.2)));
        for (k, &(p, c)) in runs.iter().enumerate() {
            let (ptr, len) = range(mm, p, c);
            // The guard would unlock on drop; the lock must outlive this call
            // and is undone explicitly by `release`.
            if region::lock(ptr, len).map(std::mem::forget).is_err() {
                for &(p, c) in &runs[..k] {
                    let (ptr, len) = range(mm, p, c);
                    let _ = region::unlock(ptr, len);
                }
                return Err(Errno::NoMem);
            }
        }
        mm.locked_bytes.store(charged + bytes, Ordering::Relaxed);
        for (w, _, c) in grow {
            // Release: the `mlock` happens-before a fast reserve that sees `L`.
            w.fetch_add(c, Ordering::Release);
        }
    }
    for (p, k) in segments(mm, pfn, n) {
        if let Some((_, w)) = chunk(mm, p) {
            w.fetch_add(k * N_UNIT, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// What each chunk of `[pfn, pfn+n)` lacks of its locked extent: (its word,
/// first page to lock, pages). Stable under the memory's lock.
fn lacking(mm: &Mm, pfn: u64, n: u64) -> impl Iterator<Item = (&AtomicU64, u64, u64)> + '_ {
    let len_pages = mm.len_pages();
    segments(mm, pfn, n).filter_map(move |(p, _)| {
        let (start, w) = chunk(mm, p)?;
        let have = w.load(Ordering::Acquire) & LOCKED_MASK;
        let want = mm.table.chunk_pages().min(len_pages - start);
        (want > have).then_some((w, start + have, want - have))
    })
}

/// `NoMem` if locking what the chunks of `[pfn, pfn+n)` lack would pass the
/// memlock limit; else the bytes charged now and the bytes that locking
/// would add. The slow path asks before it faults the pages in, so a
/// refused long-term pin leaves nothing resident.
pub(crate) fn check_limit(mm: &Mm, _locked: &MutexGuard<'_, Inner>, pfn: u64, n: u64) -> Result<(u64, u64), Errno> {
    let bytes = lacking(mm, pfn, n).map(|g| g.2).sum::<u64>() << mm.page_shift();
    let charged = mm.locked_bytes.load(Ordering::Relaxed);
    if bytes > 0 && charged.checked_add(bytes).is_none_or(|b| b > mm.memlock_limit) {
        return Err(Errno::NoMem);
    }
    Ok((charged, bytes))
}

/// `(first, pages)` extents in address order, adjacent ones merged: one
/// syscall per run.
fn merge(extents: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (p, c) in extents {
        match runs.last_mut() {
            Some((s, l)) if *s + *l == p => *l += c,
            _ => runs.push((p, c)),
        }
    }
    runs
}

/// Releases the long-term pins of pages `[pfn, pfn+n)` from their chunks,
/// after the pages' entries dropped them: lock-free while other pins keep a
/// chunk locked; the last pins of a chunk unlock and uncharge it under the
/// memory's lock (`locked`, if the caller holds it, else taken here).
/// Adjacent chunks unlocked by one call are one `munlock`.
pub(crate) fn release(mm: &Mm, locked: Option<&MutexGuard<'_, Inner>>, pfn: u64, n: u64) {
    let mut guard = None;
    // The extent to unlock so far: (first page, pages).
    let mut run: Option<(u64, u64)> = None;
    let mut pages = 0;
    for (p, k) in segments(mm, pfn, n) {
        let Some((start, w)) = chunk(mm, p) else {
            debug_assert!(false, "a long-term pinned page lost its chunk");
            continue;
        };
        let mut cur = w.load(Ordering::Relaxed);
        while n_of(cur) > k {
            // Release: the holder's accesses happen-before a later unlock.
            match w.compare_exchange_weak(cur, cur - k * N_UNIT, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if n_of(cur) > k {
            continue;
        }
        if locked.is_none() && guard.is_none() {
            guard = Some(mm.lock());
        }
        let prev = w.fetch_sub(k * N_UNIT, Ordering::AcqRel);
        debug_assert!(n_of(prev) >= k, "long-term chunk count underflow");
        if n_of(prev) == k {
            // n = 0 under the lock: nobody else may change this word now.
            let l = prev & LOCKED_MASK;
            w.fetch_sub(l, Ordering::Relaxed);
            pages += l;
            run = match run {
                Some((s, c)) if s + c == start => Some((s, c + l)),
                Some(r) => {
                    unlock(mm, r);
                    Some((start, l))
                }
                None => Some((start, l)),
            };
        }
    }
    if let Some(r) = run {
        unlock(mm, r);
    }
    if pages > 0 {
        // Only when a chunk was unlocked: a locked RMW on a shared word
        // is a sizeable part of a one-page unpin.
        mm.locked_bytes.fetch_sub(pages << mm.page_shift(), Ordering::Relaxed);
    }
    drop(guard);
}

fn unlock(mm: &Mm, (p, c): (u64, u64)) {
    let (ptr, len) = range(mm, p, c);
    // munlock of a locked, mapped range cannot fail in a way we could act
    // on; the charge is returned either way so it stays exact.
    let _ = region::unlock(ptr, len);
}

/// Whether page `pfn` lies in a locked extent of its chunk. Stable under
/// the memory's lock (see the protocol).
pub(crate) fn is_locked(mm: &Mm, _locked: &MutexGuard<'_, Inner>, pfn: u64) -> bool {
    chunk(mm, pfn).is_some_and(|(start, w)| {
        let cur = w.load(Ordering::Acquire);
        n_of(cur) > 0 && pfn - start < cur & LOCKED_MASK
    })
}

/// How long-term pins lock pages resident and are charged
/// ([`MmConfig::longterm_chunks`](crate::MmConfig::longterm_chunks); see the
/// module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LongtermChunks {
    /// The default: 2 MiB chunks on a THP-backed memory (see
    /// [`Mm::thp_backed`](crate::Mm::thp_backed)) whose memlock limit holds
    /// at least one chunk, so long-term pins cost what the kernel's do
    /// (~15 ns/page at 512 pages per call, ~62 at one: `docs/BENCHMARKS.md`); one page
    /// otherwise (no THP: locking 2 MiB would be 512 page locks; a smaller
    /// limit: one chunk would not fit).
    #[default]
    Auto,
    /// One page: the kernel's exact per-page accounting, one `mlock` per
    /// newly pinned run of pages.
    PerPage,
    /// Chunks of this many bytes, rounded down to a power of two between the
    /// host page size and 2 MiB. A pin of one page charges its whole chunk.
    Bytes(u64),
}

impl LongtermChunks {
    /// The chunk in bytes for a memory that is (or is not) THP-backed and
    /// has `memlock_limit` bytes of memlock limit, before rounding.
    pub(crate) fn bytes(self, thp_backed: bool, memlock_limit: u64) -> u64 {
        match self {
            LongtermChunks::Auto if thp_backed && memlock_limit >= HUGE_PAGE => HUGE_PAGE,
            LongtermChunks::Auto | LongtermChunks::PerPage => 0,
            LongtermChunks::Bytes(b) => b,
        }
    }
}

/// log2 of the chunk granularity in pages for a chunk of `bytes` (see
/// [`LongtermChunks`]): at least one page, at most `max_pages`.
pub(crate) fn chunk_shift(page_shift: u32, bytes: u64, max_pages: u64) -> u32 {
    let pages = (bytes >> page_shift).clamp(1, max_pages);
    // Largest power of two not above: a chunk is aligned and divides a block.
    63 - pages.leading_zeros()
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunk_shift_rule() {
        use super::chunk_shift;
        assert_eq!(chunk_shift(12, 0, 512), 0);
        assert_eq!(chunk_shift(12, 100, 512), 0);
        assert_eq!(chunk_shift(12, 4096, 512), 0);
        assert_eq!(chunk_shift(12, 12288, 512), 1);
        assert_eq!(chunk_shift(12, 256 << 10, 512), 6);
        assert_eq!(chunk_shift(12, 2 << 20, 512), 9);
        assert_eq!(chunk_shift(12, 1 << 30, 512), 9);
    }

    /// `Auto` is 2 MiB only on a THP-backed memory whose limit holds a
    /// chunk; `PerPage` and explicit sizes ignore both.
    #[test]
    fn auto_chunks_need_thp_and_room_for_one() {
        use super::LongtermChunks::*;
        assert_eq!(Auto.bytes(true, 64 << 20), 2 << 20);
        assert_eq!(Auto.bytes(true, 2 << 20), 2 << 20);
        assert_eq!(Auto.bytes(true, (2 << 20) - 4096), 0);
        assert_eq!(Auto.bytes(false, 64 << 20), 0);
        assert_eq!(PerPage.bytes(true, 64 << 20), 0);
        assert_eq!(Bytes(16384).bytes(false, 0), 16384);
    }
}
