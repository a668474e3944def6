//! The seed's GUP API: `pin_user_pages*()`, `pin_longterm_pages*()` and
//! `get_user_pages*()` on an [`Mm`].
//!
//! | call                          | takes      | path        | serves                         |
//! |-------------------------------|------------|-------------|--------------------------------|
//! | [`pin_user_pages`]            | `FOLL_PIN` | locked      | Case 1: DIO, short-lived I/O   |
//! | [`pin_user_pages_fast`]       | `FOLL_PIN` | lock-free → locked | Case 1, hot paths       |
//! | [`pin_user_pages_remote`]     | `FOLL_PIN` | locked      | Case 1 on another memory       |
//! | [`pin_longterm_pages`]        | `FOLL_PIN\|FOLL_LONGTERM` | locked | Case 2: RDMA, registered buffers |
//! | [`pin_longterm_pages_fast`]   | `FOLL_PIN\|FOLL_LONGTERM` | lock-free → locked | Case 2 |
//! | [`pin_longterm_pages_remote`] | `FOLL_PIN\|FOLL_LONGTERM` | locked | Case 2 on another memory |
//! | [`get_user_pages`]            | `FOLL_GET` | locked      | a reference, not a DMA pin     |
//! | [`get_user_pages_fast`]       | `FOLL_GET` | lock-free → locked | the same, hot paths     |
//! | [`get_user_pages_remote`]     | `FOLL_GET` | locked      | the same on another memory     |
//!
//! Pins come back as [`PinnedPages`] and are released with
//! [`PinnedPages::unpin`], [`PinnedPages::unpin_dirty`] or drop; gets come
//! back as [`GotPages`] and are released with [`GotPages::put`] or drop.
//!
//! Common contract (the kernel's, made into `Result`s):
//! - `start` must be page aligned and `start + nr_pages * page_size` must not
//!   overflow (`Inval`); flags must follow the [`GupFlags`] rules (`Inval`).
//!   Flags are checked first; nothing is taken on any error.
//! - `nr_pages == 0` returns an empty result, after the same checks of
//!   `start`: aligned, no overflow (`Inval`), and `start <= len` (`Fault`), so
//!   no result ever carries a start outside the memory.
//! - The result may hold fewer pages than asked: the call stops at the end
//!   of the accessible memory, at a page whose counter is full, and (with
//!   `NOWAIT`) at a page that would need the lock or a fault-in. If it could
//!   take none: `Fault` (start outside the memory), `Overflow`, `Again`, or
//!   `NoMem` (long-term: memlock limit or `mlock` failure).

use crate::fast_path::Blocks;
use crate::page_table::entry;
use crate::stats::Counter;
use crate::{fast_path, slow_path, Errno, GotPages, GupFlags, Mm, PinnedPages};
use std::sync::Arc;

/// What one call takes: the validated flags, internal bits included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request(GupFlags);

impl Request {
    pub(crate) fn flags(self) -> GupFlags {
        self.0
    }
    pub(crate) fn is_pin(self) -> bool {
        self.0.contains(GupFlags::PIN)
    }
    pub(crate) fn longterm(self) -> bool {
        self.0.contains(GupFlags::LONGTERM)
    }
    pub(crate) fn write(self) -> bool {
        self.0.contains(GupFlags::WRITE)
    }
    pub(crate) fn nowait(self) -> bool {
        self.0.contains(GupFlags::NOWAIT)
    }

    /// What one reference adds to an entry.
    #[inline(always)]
    pub(crate) fn delta(self) -> u64 {
        match (self.is_pin(), self.longterm()) {
            (true, true) => entry::PIN_UNIT + entry::LT_UNIT,
            (true, false) => entry::PIN_UNIT,
            (false, _) => entry::GET_UNIT,
        }
    }

    /// Whether one more reference fits in the entry's counters.
    #[inline(always)]
    pub(crate) fn fits(self, e: u64) -> bool {
        if self.is_pin() {
            entry::pins(e) < entry::PIN_MAX && (!self.longterm() || entry::longterm(e) < entry::LT_MAX)
        } else {
            entry::gets(e) < entry::GET_MAX
        }
    }

    /// Whether the fast path may take this page (see [`crate::fast_path`]):
    /// no discard owns it and its counter has room. Whether the page was ever
    /// populated does not matter: every page inside the memory's length is
    /// mapped read-write. (A long-term pin has reserved its page on a locked
    /// chunk before it gets here: [`crate::longterm`].)
    #[inline(always)]
    pub(crate) fn may_take_fast(self, e: u64) -> bool {
        e & entry::FROZEN == 0 && self.fits(e)
    }
}

/// Validates the caller's flags; `extra` are internal bits the entry point
/// tolerates from its caller, `set` the bits it sets itself.
fn request(flags: GupFlags, extra: GupFlags, set: GupFlags) -> Result<Request, Errno> {
    let known = GupFlags::from_bits(flags.bits()).ok_or(Errno::Inval)?;
    if known.intersects(GupFlags::INTERNAL.difference(extra)) {
        return Err(Errno::Inval);
    }
    Ok(Request(known | set))
}

/// The common engine: validates the range, runs the fast path if asked, then
/// the slow path on the rest; returns the count taken and, if fewer than
/// asked, the error that stopped the slow path.
fn take(mm: &Mm, start: u64, nr_pages: usize, req: Request, fast: bool) -> Result<Taken, Errno> {
    // `start` is checked before the zero-page shortcut: an empty result still
    // carries `start`, and its accessors compute `base + start` from it.
    if start & (mm.page_size() - 1) != 0 {
        return Err(Errno::Inval);
    }
    (nr_pages as u64)
        .checked_mul(mm.page_size())
        .and_then(|bytes| start.checked_add(bytes))
        .ok_or(Errno::Inval)?;
    if nr_pages == 0 {
        // An empty range may end where the memory ends (as `&s[len..]`); the
        // memory never shrinks, so it stays in bounds.
        return if start <= mm.len() {
            Ok(Taken::default())
        } else {
            Err(Errno::Fault)
        };
    }
    let pfn = start >> mm.page_shift();
    let mut done = 0;
    let mut stop = None;
    let mut blocks = Blocks::default();
    if fast {
        (done, blocks) = fast_path::take(mm, pfn, nr_pages, req);
        // `fast_path_pages` is what was taken less what the slow path took:
        // no counter here (one locked RMW less per call).
        if done < nr_pages {
            mm.stats.add(Counter::FastFallbacks, 1);
        }
    }
    if done < nr_pages {
        match slow_path::take(mm, pfn + done as u64, nr_pages - done, req) {
            Ok(n) => {
                mm.stats.add(Counter::SlowPages, n as u64);
                done += n;
            }
            Err(e) if done == 0 => return Err(e),
            Err(e) => stop = Some(e),
        }
    }
    let n = done as u64;
    // One counter per call: long-term pins have their own, from which the
    // long-term gauge is derived.
    mm.stats.add(
        match (req.is_pin(), req.longterm()) {
            (true, false) => Counter::PinAcquired,
            (true, true) => Counter::LongtermAcquired,
            (false, _) => Counter::GetTaken,
        },
        n,
    );
    if req.0.contains(GupFlags::REMOTE) {
        mm.stats.add(Counter::Remote, n);
    }
    Ok(Taken { n: done, stop, blocks })
}

/// What `take` took: `n` pages (some of them as whole `blocks`), and, if
/// fewer than asked, the error that stopped the slow path.
#[derive(Debug, Default)]
struct Taken {
    n: usize,
    stop: Option<Errno>,
    blocks: Blocks,
}

fn pin(mm: &Arc<Mm>, start: u64, nr: usize, flags: GupFlags, set: GupFlags, fast: bool) -> Result<PinnedPages, Errno> {
    let extra = set & GupFlags::REMOTE;
    let req = request(flags, extra, set | GupFlags::PIN)?;
    let t = take(mm, start, nr, req, fast)?;
    let pages = PinnedPages::new(mm, start, t.n, req, t.blocks);
    if t.stop == Some(Errno::NoMem) {
        // Over the memlock limit is all or nothing, also when the fast path
        // already took the pages that were locked: give those back.
        drop(pages);
        return Err(Errno::NoMem);
    }
    Ok(pages)
}

fn get(mm: &Arc<Mm>, start: u64, nr: usize, flags: GupFlags, set: GupFlags, fast: bool) -> Result<GotPages, Errno> {
    let extra = GupFlags::GET | (set & GupFlags::REMOTE);
    let req = request(flags, extra, set | GupFlags::GET)?;
    let t = take(mm, start, nr, req, fast)?;
    Ok(GotPages::new(mm, start, t.n, req, t.blocks))
}

/// Pins pages for short-lived I/O, taking the memory's lock and faulting the
/// pages in as needed.
///
/// `FOLL_PIN` is set; the caller may pass only `WRITE`, `FORCE`, `NOWAIT`.
/// Intended for Case 1 (DIO); not for Case 2 (long-term pins: use
/// [`pin_longterm_pages`]). Release with [`PinnedPages::unpin`],
/// [`PinnedPages::unpin_dirty`] or drop. Errors: see the [module](self) docs.
///
/// ```
/// use runtime_mm::{gup, GupFlags, Mm, MmConfig};
/// let mm = Mm::new(MmConfig { initial_bytes: 1 << 20, ..Default::default() }).unwrap();
/// let pages = gup::pin_user_pages(&mm, 0, 4, GupFlags::WRITE).unwrap();
/// assert_eq!(pages.len(), 4);
/// assert!(mm.page_maybe_dma_pinned(0));
/// pages.unpin_dirty(true);
/// assert!(!mm.page_maybe_dma_pinned(0));
/// ```
pub fn pin_user_pages(mm: &Arc<Mm>, start: u64, nr_pages: usize, flags: GupFlags) -> Result<PinnedPages, Errno> {
    pin(mm, start, nr_pages, flags, GupFlags::empty(), false)
}

/// Pins pages without taking a lock where it can: present pages are pinned
/// by the lock-free walk of [`crate::fast_path`]; the first page it cannot take
/// and the rest of the range go to the locked path of [`pin_user_pages`].
///
/// Same flags, result and release as [`pin_user_pages`]. Intended for Case 1
/// (DIO) on hot paths; not for Case 2.
pub fn pin_user_pages_fast(mm: &Arc<Mm>, start: u64, nr_pages: usize, flags: GupFlags) -> Result<PinnedPages, Errno> {
    pin(mm, start, nr_pages, flags, GupFlags::empty(), true)
}

/// Pins pages of a memory that is not the caller's own (another instance's,
/// reached through a grant): [`pin_user_pages`] with `FOLL_REMOTE` set, so the
/// pages are counted in [`MmStats::remote_pages`](crate::MmStats::remote_pages).
///
/// The caller may also pass `REMOTE`. Intended for Case 1. Release as for
/// [`pin_user_pages`].
pub fn pin_user_pages_remote(mm: &Arc<Mm>, start: u64, nr_pages: usize, flags: GupFlags) -> Result<PinnedPages, Errno> {
    pin(mm, start, nr_pages, flags, GupFlags::REMOTE, false)
}

/// Pins pages for an indefinite time (registered I/O buffers, RDMA, device
/// DMA): `FOLL_PIN | FOLL_LONGTERM`.
///
/// The pages are locked resident in chunks (see [`crate::longterm`]): a
/// chunk is locked and charged once against
/// [`MmConfig::memlock_limit_bytes`](crate::MmConfig::memlock_limit_bytes)
/// when its first long-term pin arrives; past the limit the call fails with
/// `NoMem` and takes nothing. Intended for Case 2. Release as for
/// [`pin_user_pages`]; a chunk's last long-term release unlocks and
/// uncharges it.
///
/// Only a chunk's first long-term pin (its `mlock`) and pages not yet
/// present need the memory's lock, so pages in a chunk another long-term
/// pin already keeps locked are pinned by the lock-free walk, as
/// [`pin_longterm_pages_fast`] does (the result is the same either way):
/// with the default 2 MiB chunks on THP a pin of one page costs about what a
/// short-term one does.
///
/// ```
/// use runtime_mm::{gup, Errno, GupFlags, LongtermChunks, Mm, MmConfig};
/// // Per-page accounting (the kernel's): pages are locked and charged one by one.
/// let per_page = MmConfig { longterm_chunks: LongtermChunks::PerPage, ..Default::default() };
/// let mm = Mm::new(MmConfig { initial_bytes: 1 << 20, memlock_limit_bytes: 8192, ..per_page }).unwrap();
/// let held = gup::pin_longterm_pages(&mm, 0, 2, GupFlags::WRITE).unwrap();
/// assert_eq!(mm.stats().locked_bytes, 8192);
/// assert_eq!(gup::pin_longterm_pages(&mm, 8192, 1, GupFlags::empty()).unwrap_err(), Errno::NoMem);
/// held.unpin();
/// assert_eq!(mm.stats().locked_bytes, 0);
/// // With 2 MiB chunks (the default on THP-backed memories), the first pin
/// // locks and charges its chunk; the next pins in it are lock-free.
/// let cfg = MmConfig { initial_bytes: 4 << 20, longterm_chunks: LongtermChunks::Bytes(2 << 20), ..Default::default() };
/// let mm = Mm::new(cfg).unwrap();
/// let held = gup::pin_longterm_pages(&mm, 0, 1, GupFlags::WRITE).unwrap();
/// assert_eq!(mm.stats().locked_bytes, 2 << 20);
/// let next = gup::pin_longterm_pages_fast(&mm, 4096, 511, GupFlags::WRITE).unwrap();
/// assert_eq!((mm.stats().locked_bytes, mm.stats().fast_path_pages), (2 << 20, 511));
/// ```
pub fn pin_longterm_pages(mm: &Arc<Mm>, start: u64, nr_pages: usize, flags: GupFlags) -> Result<PinnedPages, Errno> {
    pin(mm, start, nr_pages, flags, GupFlags::LONGTERM, true)
}

/// The kernel's fast entry point for long-term pins: the lock-free fast
/// path first. A page whose chunk is already locked (another long-term pin
/// lives in it) is pinned without the lock; the first long-term pin of a
/// chunk needs `mlock` and goes to the locked path. [`pin_longterm_pages`]
/// does the same since its locked path is needed only there.
///
/// Intended for Case 2 on hot paths. Release as for [`pin_user_pages`].
pub fn pin_longterm_pages_fast(
    mm: &Arc<Mm>,
    start: u64,
    nr_pages: usize,
    flags: GupFlags,
) -> Result<PinnedPages, Errno> {
    pin(mm, start, nr_pages, flags, GupFlags::LONGTERM, true)
}

/// Long-term pins on a memory that is not the caller's own:
/// `FOLL_PIN | FOLL_LONGTERM | FOLL_REMOTE`.
///
/// The seed could not set `FOLL_LONGTERM` here (its FIXME: the DAX check vs
/// `FAULT_FLAG_ALLOW_RETRY`); linear memory is anonymous, so here it is a
/// real long-term pin, locked and charged against the target memory's
/// memlock limit. Intended for Case 2. Release as for [`pin_user_pages`].
pub fn pin_longterm_pages_remote(
    mm: &Arc<Mm>,
    start: u64,
    nr_pages: usize,
    flags: GupFlags,
) -> Result<PinnedPages, Errno> {
    pin(mm, start, nr_pages, flags, GupFlags::LONGTERM | GupFlags::REMOTE, false)
}

/// Takes a get reference (`FOLL_GET`) on pages, locked path.
///
/// A get keeps the page from being discarded but is not a DMA pin:
/// [`Mm::page_maybe_dma_pinned`] does not report it. The caller may pass
/// `WRITE`, `FORCE`, `NOWAIT` and `GET`. Release with [`GotPages::put`] or
/// drop; a [`GotPages`] cannot be unpinned.
pub fn get_user_pages(mm: &Arc<Mm>, start: u64, nr_pages: usize, flags: GupFlags) -> Result<GotPages, Errno> {
    get(mm, start, nr_pages, flags, GupFlags::empty(), false)
}

/// [`get_user_pages`] with the lock-free fast path first.
pub fn get_user_pages_fast(mm: &Arc<Mm>, start: u64, nr_pages: usize, flags: GupFlags) -> Result<GotPages, Errno> {
    get(mm, start, nr_pages, flags, GupFlags::empty(), true)
}

/// [`get_user_pages`] on a memory that is not the caller's own (`FOLL_REMOTE`).
pub fn get_user_pages_remote(mm: &Arc<Mm>, start: u64, nr_pages: usize, flags: GupFlags) -> Result<GotPages, Errno> {
    get(mm, start, nr_pages, flags, GupFlags::REMOTE, false)
}
