//! `PinnedPages` and `GotPages`: the references a GUP call returns, and how
//! they are released.
//!
//! Two types, so that the seed's mismatch (releasing a `FOLL_PIN` page with
//! `put_page()`) does not compile: pins are released by
//! [`PinnedPages::unpin`] / [`PinnedPages::unpin_dirty`] (the kernel's
//! `unpin_user_pages_dirty_lock`), gets by [`GotPages::put`]. Dropping either
//! releases it (clean). Each holds an `Arc<Mm>`, so the mapping outlives every
//! reference into it, even past the wasmtime store that created the memory.

use crate::fast_path::Blocks;
use crate::gup::Request;
use crate::page_table::{entry, BLOCK_PAGES};
use crate::primitive::{AtomicU64, Ordering};
use crate::stats::Counter;
use crate::{longterm, Errno, GupFlags, Mm};
use std::sync::Arc;

/// A contiguous range of pages holding one reference each, released on drop.
struct Held {
    mm: Arc<Mm>,
    start: u64,
    nr: usize,
    req: Request,
    dirty: bool,
    /// The whole blocks held on their block words; the other pages are held
    /// on their entries.
    blocks: Blocks,
}

impl Held {
    /// `nr` pages from `start`, taken with `req` (`blocks` of them as whole
    /// blocks), held clean until released.
    fn new(mm: &Arc<Mm>, start: u64, nr: usize, req: Request, blocks: Blocks) -> Held {
        Held {
            mm: mm.clone(),
            start,
            nr,
            req,
            dirty: false,
            blocks,
        }
    }

    fn byte_len(&self) -> usize {
        self.nr << self.mm.page_shift()
    }

    fn ptr(&self) -> *mut u8 {
        // `take` only builds a `Held` whose `start` is at most the memory's
        // length (which never shrinks); the clamp keeps the pointer inside
        // the reservation even if that invariant were ever broken.
        debug_assert!(self.start <= self.mm.len());
        let off = self.start.min(self.mm.capacity()) as usize;
        // SAFETY: `off <= capacity`, so the result is within the reservation
        // (or one past its accessible part), the same allocation as `base`.
        unsafe { self.mm.base().add(off) }
    }

    fn check(&self, offset: usize, len: usize) -> Result<*mut u8, Errno> {
        match offset.checked_add(len) {
            Some(end) if end <= self.byte_len() => Ok(self.ptr().wrapping_add(offset)),
            _ => Err(Errno::Fault),
        }
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Errno> {
        let src = self.check(offset, buf.len())?;
        // SAFETY: the range lies in pages we hold a reference on, which are
        // present and mapped until we release them; `buf` is a host buffer.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, offset: usize, data: &[u8]) -> Result<(), Errno> {
        if !self.req.write() {
            return Err(Errno::Perm);
        }
        let dst = self.check(offset, data.len())?;
        // SAFETY: as in `read`; the pages were taken with WRITE.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    /// Calls `page` on the entry of every page held per page and `block` on
    /// the block word of every block held as a block; returns how many
    /// pages that covered.
    fn each(&self, mut page: impl FnMut(&AtomicU64), mut block: impl FnMut(&AtomicU64)) -> u64 {
        let table = &self.mm.table;
        let pfn = self.start >> self.mm.page_shift();
        let end = pfn + self.nr as u64;
        let b = self.blocks.pages(pfn);
        let (head_end, tail_start) = if self.blocks.n == 0 {
            (end, end)
        } else {
            (b.start, b.end)
        };
        let mut n = table.walk(pfn, head_end - pfn, |e| {
            page(e);
            true
        });
        for first in b.clone().step_by(BLOCK_PAGES as usize) {
            if let Some(w) = table.block(first) {
                block(w);
                n += BLOCK_PAGES;
            }
        }
        n + table.walk(tail_start, end - tail_start, |e| {
            page(e);
            true
        })
    }

    fn mark_dirty(&self) {
        let dirty = |e: &AtomicU64| {
            e.fetch_or(entry::DIRTY, Ordering::Relaxed);
        };
        self.each(dirty, dirty);
        self.mm.stats.add(Counter::Dirtied, self.nr as u64);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.nr == 0 {
            return;
        }
        let mm = &*self.mm;
        let delta = self.req.delta();
        let pfn = self.start >> mm.page_shift();
        // Release pairs with discard's Acquire freeze. A dirty release marks
        // and releases each word in one RMW (the kernel's
        // `unpin_user_pages_dirty_lock`): the mark lands no later than the
        // release, so a discard that froze the page afterwards saw it.
        let released = if self.dirty {
            mm.stats.add(Counter::Dirtied, self.nr as u64);
            let release = |e: &AtomicU64| {
                let mut cur = e.load(Ordering::Relaxed);
                loop {
                    // Wrapping, as `fetch_sub` is: we hold `delta` on this word.
                    let new = cur.wrapping_sub(delta) | entry::DIRTY;
                    match e.compare_exchange_weak(cur, new, Ordering::Release, Ordering::Relaxed) {
                        Ok(_) => break,
                        Err(now) => cur = now,
                    }
                }
            };
            self.each(release, release)
        } else {
            let release = |e: &AtomicU64| {
                e.fetch_sub(delta, Ordering::Release);
            };
            self.each(release, release)
        };
        debug_assert_eq!(released, self.nr as u64, "a held page lost its table entry");
        if self.req.longterm() {
            // After the entries (protocol in `longterm`): the last pins of a
            // chunk unlock it, under the lock.
            longterm::release(mm, None, pfn, self.nr as u64);
        }
        let n = self.nr as u64;
        mm.stats.add(
            match (self.req.is_pin(), self.req.longterm()) {
                (true, false) => Counter::PinReleased,
                (true, true) => Counter::LongtermReleased,
                (false, _) => Counter::GetPut,
            },
            n,
        );
    }
}

macro_rules! common_accessors {
    () => {
        /// The address of the first page (page aligned).
        pub fn start(&self) -> u64 {
            self.0.start
        }
        /// Number of pages held; may be fewer than were asked for.
        pub fn len(&self) -> usize {
            self.0.nr
        }
        /// Whether no page is held (a call with `nr_pages == 0`).
        pub fn is_empty(&self) -> bool {
            self.0.nr == 0
        }
        /// Bytes held: `len() * page_size`.
        pub fn byte_len(&self) -> usize {
            self.0.byte_len()
        }
        /// The memory the pages belong to.
        pub fn mm(&self) -> &Arc<Mm> {
            &self.0.mm
        }
        /// The flags the pages were taken with (including the internal ones).
        pub fn flags(&self) -> GupFlags {
            self.0.req.flags()
        }
        /// Host address of the first byte. Valid for `byte_len()` bytes until
        /// the pages are released; the guest may access the same bytes
        /// concurrently, as with any DMA buffer.
        pub fn as_ptr(&self) -> *const u8 {
            self.0.ptr()
        }
        /// Host address for writing, if the pages were taken with `WRITE`
        /// (`Perm` otherwise): the buffer to hand to `read(2)` or a device.
        pub fn as_mut_ptr(&self) -> Result<*mut u8, Errno> {
            if self.0.req.write() {
                Ok(self.0.ptr())
            } else {
                Err(Errno::Perm)
            }
        }
        /// Copies bytes at `offset` into `buf`; `Fault` past the held range.
        pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Errno> {
            self.0.read(offset, buf)
        }
        /// Copies `data` to `offset`; `Fault` past the held range, `Perm`
        /// unless the pages were taken with `WRITE`.
        pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), Errno> {
            self.0.write(offset, data)
        }
    };
}

/// Pages pinned with `FOLL_PIN` by a `pin_*` call.
///
/// While it lives, each page holds one pin: it stays present, cannot be
/// discarded (`Busy`), and [`Mm::page_maybe_dma_pinned`] reports it. Release
/// with [`unpin`](Self::unpin), [`unpin_dirty`](Self::unpin_dirty) or drop;
/// a long-term pin's last release also unlocks and uncharges the page.
///
/// Releasing a pin through the get path does not compile:
///
/// ```compile_fail
/// # let mm = runtime_mm::Mm::new(Default::default()).unwrap();
/// runtime_mm::gup::pin_user_pages(&mm, 0, 0, runtime_mm::GupFlags::empty()).unwrap().put();
/// ```
#[must_use = "dropping PinnedPages unpins them at once"]
pub struct PinnedPages(Held);

/// Pages referenced with `FOLL_GET` by a `get_*` call. Release with
/// [`put`](Self::put) or drop.
#[must_use = "dropping GotPages puts them at once"]
pub struct GotPages(Held);

impl PinnedPages {
    pub(crate) fn new(mm: &Arc<Mm>, start: u64, nr: usize, req: Request, blocks: Blocks) -> Self {
        PinnedPages(Held::new(mm, start, nr, req, blocks))
    }

    common_accessors!();

    /// Whether this is a long-term pin (`FOLL_LONGTERM`).
    pub fn is_longterm(&self) -> bool {
        self.0.req.longterm()
    }

    /// Marks every page dirty now, while the pins are still held
    /// (`set_page_dirty`): for a holder that shares the pin and cannot consume
    /// it, such as I/O still in flight.
    pub fn mark_dirty(&self) {
        self.0.mark_dirty();
    }

    /// Releases the pins (`unpin_user_pages`).
    pub fn unpin(self) {}

    /// Releases the pins, first marking every page dirty if `make_dirty`
    /// (`unpin_user_pages_dirty_lock`): use it after a device or the host wrote
    /// into the pages.
    pub fn unpin_dirty(mut self, make_dirty: bool) {
        self.0.dirty = make_dirty;
    }
}

impl GotPages {
    pub(crate) fn new(mm: &Arc<Mm>, start: u64, nr: usize, req: Request, blocks: Blocks) -> Self {
        GotPages(Held::new(mm, start, nr, req, blocks))
    }

    common_accessors!();

    /// Releases the references (`put_page` on each page).
    pub fn put(self) {}

    /// Releases the references, first marking the pages dirty if `make_dirty`
    /// (`set_page_dirty_lock` + `put_page`).
    pub fn put_dirty(mut self, make_dirty: bool) {
        self.0.dirty = make_dirty;
    }
}

impl Held {
    fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("start", &self.start)
            .field("len", &self.nr)
            .field("flags", &self.req.flags())
            .finish()
    }
}

impl std::fmt::Debug for PinnedPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.debug("PinnedPages", f)
    }
}

impl std::fmt::Debug for GotPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.debug("GotPages", f)
    }
}

#[cfg(test)]
mod tests {
    /// A caller may hold one per page (gup_test keeps a pointer per page):
    /// the handle stays at five words, and `Option` of it costs nothing.
    #[test]
    fn a_held_range_is_five_words() {
        use super::{GotPages, PinnedPages};
        use std::mem::size_of;
        assert_eq!(size_of::<PinnedPages>(), 40);
        assert_eq!(size_of::<GotPages>(), 40);
        assert_eq!(size_of::<Option<PinnedPages>>(), 40);
    }
}
