//! `Mm`: one address space, which is one WebAssembly linear memory.
//!
//! The whole range (`reservation_bytes` plus `guard_bytes`) is reserved up
//! front as inaccessible, so the base never moves; growth commits host pages
//! (read-write, zero-filled by the OS) and fails cleanly past the reservation
//! or the maximum. The page table tracks, per host page, whether the page is
//! faulted in and which references it holds; see [`crate::page_table`].
//!
//! The range is either the `Mm`'s own mapping ([`Mm::new`], unmapped when
//! the `Mm` drops) or a slot of a [`MemoryPool`](crate::MemoryPool), which
//! the pool reset for this tenant and resets again when the `Mm` drops (see
//! [`crate::pool`]). Either way it is released only with the last `Arc<Mm>`,
//! hence after the last pin.

use crate::longterm::LongtermChunks;
use crate::page_table::{entry, PageTable, BLOCK_PAGES};
use crate::primitive::{AtomicU64, Mutex, MutexGuard, Ordering};
use crate::stats::{MmStats, Stats};
use crate::thp::{self, HUGE_PAGE};
use crate::Errno;
use std::ptr::NonNull;
use std::sync::Arc;

/// How to build an [`Mm`]. All sizes are bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmConfig {
    /// Accessible size at creation (committed, zero-filled).
    pub initial_bytes: u64,
    /// The most the memory may grow to, if bounded (a wasm memory's maximum).
    pub maximum_bytes: Option<u64>,
    /// Address space reserved up front; growth never goes past it, so the base
    /// never moves. Rounded up to the host page size.
    pub reservation_bytes: u64,
    /// Inaccessible bytes reserved after the reservation (for compilers that
    /// elide bounds checks).
    pub guard_bytes: u64,
    /// Most bytes that long-term pins may lock resident at once
    /// (`RLIMIT_MEMLOCK` for this memory).
    pub memlock_limit_bytes: u64,
    /// The unit in which long-term pins lock pages resident and are charged
    /// (see [`crate::longterm`]). The default, [`LongtermChunks::Auto`], is
    /// 2 MiB on a THP-backed memory (long-term pins then cost what the
    /// kernel's do: the pins after a chunk's first cost no syscall and no
    /// lock) and one page, the kernel's exact per-page accounting, where
    /// THP is off. [`LongtermChunks::PerPage`] asks for per-page accounting
    /// everywhere. With chunks, a pin of one page charges its whole chunk.
    pub longterm_chunks: LongtermChunks,
    /// Back the memory with transparent huge pages (`MADV_HUGEPAGE` on a
    /// 2 MiB-aligned reservation): first touches fault 2 MiB at a time, and
    /// locking a 2 MiB long-term chunk costs about as much as one page
    /// (measured in `docs/BENCHMARKS.md`). The price is residency in 2 MiB
    /// steps for memories of 2 MiB and more. Ignored where the kernel has no
    /// THP ([`Mm::thp_backed`] tells). Default `true`.
    pub huge_pages: bool,
}

impl Default for MmConfig {
    /// 0 bytes accessible, no maximum, a 4 GiB reservation with a 32 MiB
    /// guard (wasmtime's defaults for a 32-bit memory), 64 MiB memlock limit,
    /// transparent huge pages, and long-term chunks chosen by them
    /// ([`LongtermChunks::Auto`]).
    fn default() -> Self {
        MmConfig {
            initial_bytes: 0,
            maximum_bytes: None,
            reservation_bytes: 4 << 30,
            guard_bytes: 32 << 20,
            memlock_limit_bytes: 64 << 20,
            longterm_chunks: LongtermChunks::Auto,
            huge_pages: true,
        }
    }
}

/// The reserved range. Released when the last `Arc<Mm>` drops, which is
/// after the last pin (every pin holds an `Arc<Mm>`).
struct Reservation {
    base: NonNull<u8>,
    owner: Owner,
}

/// Who owns the reserved range, and what its release does.
enum Owner {
    /// Reserved by [`Mm::new`]: unmapped on drop.
    Mapping { _alloc: region::Allocation },
    /// A pool slot: reset and handed back to its pool on drop.
    Slot(crate::pool::Lease),
}

// SAFETY: the range is a plain anonymous mapping (our own, or a pool slot
// leased to us alone); it has no thread affinity and is released once, by
// `Drop`.
unsafe impl Send for Reservation {}
// SAFETY: `&Reservation` only exposes the base address; accesses to the memory
// behind it follow the `Mm` rules.
unsafe impl Sync for Reservation {}

/// State changed only under the memory's lock.
pub(crate) struct Inner {
    /// Bytes mapped read-write from the base (host-page multiple).
    pub(crate) committed: u64,
}

/// One linear memory with pinnable pages. Build with [`Mm::new`]; take pages
/// with the functions in [`crate::gup`].
pub struct Mm {
    reservation: Reservation,
    page_shift: u32,
    /// Bytes the memory may grow to: min(maximum, reservation).
    limit: u64,
    /// Accessible bytes; only grows.
    len: AtomicU64,
    pub(crate) table: PageTable,
    pub(crate) lock: Mutex<Inner>,
    /// Bytes locked resident for long-term pins; changed under `lock`.
    pub(crate) locked_bytes: AtomicU64,
    pub(crate) memlock_limit: u64,
    /// Reserved 2 MiB-aligned, advised `MADV_HUGEPAGE`, on a host with THP.
    thp_backed: bool,
    pub(crate) stats: Stats,
}

/// One page's entry, decoded (see [`Mm::page_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageState {
    /// Faulted in by the memory manager.
    pub present: bool,
    /// Marked dirty by a dirty release.
    pub dirty: bool,
    /// Pins held (long-term ones included).
    pub pins: u32,
    /// Get references held.
    pub gets: u32,
    /// Long-term pins held.
    pub longterm: u32,
}

impl Mm {
    /// Reserves and commits a new memory.
    ///
    /// Errors: `Inval` if `initial_bytes` exceeds `maximum_bytes`; `NoMem` if
    /// it exceeds the reservation or the host refuses the mapping.
    pub fn new(config: MmConfig) -> Result<Arc<Mm>, Errno> {
        let (reserved, total) = Self::sizes(&config)?;
        // Huge pages need a 2 MiB-aligned base: reserve one block more and
        // start at the first boundary (the slack stays inaccessible).
        let huge = config.huge_pages && reserved >= HUGE_PAGE;
        let slack = if huge { HUGE_PAGE - Self::host_page_size() } else { 0 };
        let total = usize::try_from(total.checked_add(slack).ok_or(Errno::NoMem)?).map_err(|_| Errno::NoMem)?;
        let mut alloc = region::alloc(total, region::Protection::NONE).map_err(|_| Errno::NoMem)?;
        let start = alloc.as_mut_ptr::<u8>();
        let align = if huge { HUGE_PAGE as usize } else { 1 };
        // The first aligned address: at most `slack` bytes in.
        let base = start.wrapping_add((start as usize).next_multiple_of(align) - start as usize);
        let base = NonNull::new(base).ok_or(Errno::NoMem)?;
        // SAFETY: [base, base+reserved) lies inside our fresh, still
        // inaccessible allocation. Where the kernel has no THP the advice
        // fails, and the memory works without.
        let thp_backed = huge && unsafe { thp::advise(base.as_ptr(), reserved) };
        let owner = Owner::Mapping { _alloc: alloc };
        Self::build(&config, reserved, Reservation { base, owner }, 0, thp_backed)
    }

    /// An `Mm` on a pool slot (see [`crate::pool`]): `config` sized to fit
    /// the slot, whose first `committed` bytes the pool left read-write and
    /// zeroed and the rest of which (with the guard) is inaccessible.
    pub(crate) fn in_slot(config: &MmConfig, lease: crate::pool::Lease, committed: u64) -> Result<Arc<Mm>, Errno> {
        let (reserved, _) = Self::sizes(config)?;
        let base = lease.base();
        let thp_backed = lease.thp_backed() && reserved >= HUGE_PAGE;
        Self::build(
            config,
            reserved,
            Reservation {
                base,
                owner: Owner::Slot(lease),
            },
            committed,
            thp_backed,
        )
    }

    /// The pool slot under this memory, if it has one.
    pub(crate) fn lease(&self) -> Option<&crate::pool::Lease> {
        match &self.reservation.owner {
            Owner::Slot(lease) => Some(lease),
            Owner::Mapping { .. } => None,
        }
    }

    /// Checks `config`; returns the reservation and reservation + guard, in
    /// bytes rounded up to host pages.
    pub(crate) fn sizes(config: &MmConfig) -> Result<(u64, u64), Errno> {
        let page = Self::host_page_size();
        let round = |b: u64| b.checked_next_multiple_of(page).ok_or(Errno::NoMem);
        let reserved = round(config.reservation_bytes.max(page))?;
        let total = reserved.checked_add(round(config.guard_bytes)?).ok_or(Errno::NoMem)?;
        let limit = config.maximum_bytes.unwrap_or(u64::MAX).min(reserved);
        if config.initial_bytes > config.maximum_bytes.unwrap_or(u64::MAX) {
            return Err(Errno::Inval);
        }
        if config.initial_bytes > limit {
            return Err(Errno::NoMem);
        }
        Ok((reserved, total))
    }

    fn build(
        config: &MmConfig,
        reserved: u64,
        reservation: Reservation,
        committed: u64,
        thp_backed: bool,
    ) -> Result<Arc<Mm>, Errno> {
        let page = Self::host_page_size();
        let chunk = config.longterm_chunks.bytes(thp_backed, config.memlock_limit_bytes);
        let mm = Mm {
            reservation,
            page_shift: page.trailing_zeros(),
            limit: config.maximum_bytes.unwrap_or(u64::MAX).min(reserved),
            len: AtomicU64::new(0),
            table: PageTable::new(
                reserved / page,
                crate::longterm::chunk_shift(page.trailing_zeros(), chunk, BLOCK_PAGES),
            ),
            lock: Mutex::new(Inner { committed }),
            locked_bytes: AtomicU64::new(0),
            memlock_limit: config.memlock_limit_bytes,
            thp_backed,
            stats: Stats::new(),
        };
        mm.grow_to(config.initial_bytes)?;
        Ok(Arc::new(mm))
    }

    /// The host page size, which every `Mm` pins at.
    pub fn host_page_size() -> u64 {
        region::page::size() as u64
    }

    /// Host page size: the granularity of pins (4 KiB on x86-64).
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }

    pub(crate) fn page_shift(&self) -> u32 {
        self.page_shift
    }

    /// Bytes accessible now.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no byte is accessible.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whole pages accessible now: pins never cover a byte past `len`.
    pub(crate) fn len_pages(&self) -> u64 {
        self.len() >> self.page_shift
    }

    /// The most bytes this memory can grow to without moving.
    pub fn capacity(&self) -> u64 {
        self.limit
    }

    /// Whether the memory is THP-backed: its reservation is 2 MiB-aligned
    /// and at least 2 MiB, advised `MADV_HUGEPAGE` ([`MmConfig::huge_pages`]
    /// or [`PoolConfig::huge_pages`](crate::PoolConfig::huge_pages)), on a
    /// host whose THP mode is `always` or `madvise`.
    pub fn thp_backed(&self) -> bool {
        self.thp_backed
    }

    /// Bytes per long-term chunk ([`MmConfig::longterm_chunks`]): what
    /// [`LongtermChunks::Auto`] chose, or what was asked for, rounded.
    pub fn longterm_chunk_bytes(&self) -> u64 {
        self.page_size() * self.table.chunk_pages()
    }

    /// The base address. Never changes for the life of the `Mm`.
    pub fn base(&self) -> *mut u8 {
        self.reservation.base.as_ptr()
    }

    /// Heap bytes the page table uses now.
    pub fn page_table_bytes(&self) -> usize {
        self.table.footprint()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated
        // (it is one integer written last), so poisoning is ignored.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Grows the accessible size to `bytes` (no-op if already that large).
    /// The new bytes read as zero. `NoMem` past the maximum or the
    /// reservation, or if the host refuses to commit; nothing changes then.
    pub fn grow_to(&self, bytes: u64) -> Result<(), Errno> {
        let mut inner = self.lock();
        if bytes <= self.len() {
            return Ok(());
        }
        if bytes > self.limit {
            return Err(Errno::NoMem);
        }
        let want = bytes.next_multiple_of(self.page_size());
        if want > inner.committed {
            // SAFETY: [committed, want) lies inside the reservation (want <=
            // round_up(limit) <= reserved), which this `Mm` owns; it is
            // inaccessible now, so no reference into it exists.
            unsafe {
                region::protect(
                    self.base().add(inner.committed as usize),
                    (want - inner.committed) as usize,
                    region::Protection::READ_WRITE,
                )
            }
            .map_err(|_| Errno::NoMem)?;
            inner.committed = want;
        }
        // The leaves of the new pages exist before the length says they are
        // inside the memory: the fast path walks them without allocating.
        let first = self.len() >> self.page_shift;
        let last = bytes.div_ceil(self.page_size());
        self.table.ensure_range(first, last - first);
        // Release: the commit and the leaves happen-before any thread that
        // sees the new len.
        self.len.store(bytes, Ordering::Release);
        Ok(())
    }

    fn check_range(&self, addr: u64, len: usize) -> Result<(), Errno> {
        let end = addr.checked_add(len as u64).ok_or(Errno::Fault)?;
        if end > self.len() {
            return Err(Errno::Fault);
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes at `addr` into `buf`. `Fault` if any byte is
    /// outside the accessible memory; nothing is copied then.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check_range(addr, buf.len())?;
        // SAFETY: [addr, addr+len) is within `len`, hence committed and
        // mapped for the life of `self`; `buf` is a distinct host buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.base().add(addr as usize), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` to `addr`. `Fault` if any byte is outside the accessible
    /// memory; nothing is written then.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.check_range(addr, data.len())?;
        // SAFETY: as in `read`; the destination is committed read-write.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base().add(addr as usize), data.len()) };
        Ok(())
    }

    /// Gives the pages of `[addr, addr+len)` back to the host
    /// (`madvise(MADV_DONTNEED)`): they read as zero afterwards and are no
    /// longer present.
    ///
    /// Refused with `Busy`, changing nothing, if any page in the range holds a
    /// pin **or a get**: unlike the kernel, which can zap a page from the page
    /// table while a get holder keeps the old page, here the page *is* the
    /// mapping, so discarding it would change the bytes under the holder.
    /// `Inval` for an unaligned `addr` or an overflowing range; `Fault` for a
    /// range past the accessible memory. `len` is rounded up to whole pages.
    pub fn discard(&self, addr: u64, len: u64) -> Result<(), Errno> {
        if addr & (self.page_size() - 1) != 0 {
            return Err(Errno::Inval);
        }
        if len == 0 {
            return Ok(());
        }
        let end = addr
            .checked_add(len)
            .and_then(|e| e.checked_next_multiple_of(self.page_size()))
            .ok_or(Errno::Inval)?;
        let inner = self.lock();
        if end > inner.committed || end > self.len().next_multiple_of(self.page_size()) {
            return Err(Errno::Fault);
        }
        let (first, last) = (addr >> self.page_shift, end >> self.page_shift);
        let span = first / BLOCK_PAGES * BLOCK_PAGES..last.div_ceil(BLOCK_PAGES) * BLOCK_PAGES;
        let blocks = || span.clone().step_by(BLOCK_PAGES as usize);
        let block_words = || blocks().filter_map(|b| self.table.block(b));
        // Phase 1: freeze every block the range touches, then every page,
        // each only while it holds no reference; or give up. A block
        // reference covers every page of its block, so a frozen block is
        // what keeps one from being taken meanwhile.
        for (k, w) in block_words().enumerate() {
            if let Err(e) = freeze(w) {
                block_words().take(k).for_each(|w| thaw(w, 0));
                return Err(e);
            }
        }
        for pfn in first..last {
            if let Err(e) = self.table.get(pfn).map_or(Ok(()), freeze) {
                (first..pfn).filter_map(|p| self.table.get(p)).for_each(|w| thaw(w, 0));
                block_words().for_each(|w| thaw(w, 0));
                return Err(e);
            }
        }
        // Phase 2: no reference can be taken on a frozen page; drop the data.
        let r = self.drop_data(&inner, first, last);
        // Phase 3: thaw; on success the pages are no longer present or dirty.
        // A block's "every page" bits first go to its pages' own entries.
        let clear = if r.is_ok() { entry::PRESENT | entry::DIRTY } else { 0 };
        for b in blocks() {
            if let Some(w) = self.table.block(b) {
                if clear != 0 {
                    self.spread(b, w, clear);
                }
                thaw(w, 0);
            }
        }
        (first..last)
            .filter_map(|p| self.table.get(p))
            .for_each(|w| thaw(w, clear));
        drop(inner);
        r.map_err(|_| Errno::NoMem)
    }

    /// Drops the contents of pages `[first, last)`, which are frozen (phase
    /// 2 of `discard`): unmapped with `MADV_DONTNEED`, or, where a long-term
    /// chunk keeps them locked (which `MADV_DONTNEED` refuses), zeroed in
    /// place, so they stay resident as the chunk's charge says.
    fn drop_data(&self, locked: &MutexGuard<'_, Inner>, first: u64, last: u64) -> rustix::io::Result<()> {
        let mut p = first;
        while p < last {
            let lock = crate::longterm::is_locked(self, locked, p);
            let mut q = p + 1;
            while q < last && crate::longterm::is_locked(self, locked, q) == lock {
                q += 1;
            }
            let (ptr, len) = (
                self.base().wrapping_add((p << self.page_shift) as usize),
                ((q - p) << self.page_shift) as usize,
            );
            if lock {
                // SAFETY: the pages are committed, owned by this memory and
                // frozen: no pin or get references them (phase 1), and the
                // guest sees zeros, which is what it asked for. Raw pointer
                // and length: no reference over guest memory is formed.
                unsafe { ptr.write_bytes(0, len) };
            } else {
                // SAFETY: as above; MADV_DONTNEED makes them read as zero.
                unsafe { rustix::mm::madvise(ptr.cast(), len, rustix::mm::Advice::LinuxDontNeed)? };
            }
            p = q;
        }
        Ok(())
    }

    /// Moves the block-wide `bits` of the block at page `first` (block word
    /// `w`) onto each page's entry: the pages first, then the block, so that
    /// a concurrent reader sees each bit on one of the two all along.
    fn spread(&self, first: u64, w: &AtomicU64, bits: u64) {
        let set = w.load(Ordering::Acquire) & bits;
        if set == 0 {
            return;
        }
        self.table.walk(first, BLOCK_PAGES, |e| {
            e.fetch_or(set, Ordering::Release);
            true
        });
        w.fetch_and(!set, Ordering::Release);
    }

    /// Whether the page containing `addr` holds a pin (`FOLL_PIN`). Exact: no
    /// false negatives and, unlike the kernel's biased refcount, no false
    /// positives. `false` outside the memory.
    pub fn page_maybe_dma_pinned(&self, addr: u64) -> bool {
        self.page_state(addr).is_some_and(|s| s.pins > 0)
    }

    /// The decoded entry of the page containing `addr`, or `None` outside the
    /// reservation. A page never faulted in reads as the default state.
    pub fn page_state(&self, addr: u64) -> Option<PageState> {
        let pfn = addr >> self.page_shift;
        if addr >= self.limit.next_multiple_of(self.page_size()) {
            return None;
        }
        // The page's own entry plus its block's word (a block reference
        // counts on every page of the block).
        let e = self.table.get(pfn).map_or(0, |e| e.load(Ordering::Acquire));
        let b = self.table.block(pfn).map_or(0, |b| b.load(Ordering::Acquire));
        Some(PageState {
            present: (e | b) & entry::PRESENT != 0,
            dirty: (e | b) & entry::DIRTY != 0,
            pins: (entry::pins(e) + entry::pins(b)) as u32,
            gets: (entry::gets(e) + entry::gets(b)) as u32,
            longterm: (entry::longterm(e) + entry::longterm(b)) as u32,
        })
    }

    /// Clears the dirty mark of the page containing `addr`, returning whether
    /// it was set (like `folio_clear_dirty_for_io`, for a writeback pass).
    pub fn test_and_clear_dirty(&self, addr: u64) -> bool {
        let pfn = addr >> self.page_shift;
        if let Some(w) = self.table.block(pfn) {
            // A block-wide dirty mark becomes per-page marks first, so only
            // this page's is cleared.
            self.spread(pfn / BLOCK_PAGES * BLOCK_PAGES, w, entry::DIRTY);
        }
        self.table
            .get(pfn)
            .is_some_and(|e| e.fetch_and(!entry::DIRTY, Ordering::AcqRel) & entry::DIRTY != 0)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MmStats {
        self.stats.snapshot(self.locked_bytes.load(Ordering::Relaxed))
    }

    /// Faults in `n` pages from `pfn` for write, so that they are backed by
    /// real host pages. Caller holds the lock; the range is committed.
    pub(crate) fn populate(&self, pfn: u64, n: u64) {
        let shift = self.page_shift;
        // SAFETY: the caller guarantees the range is committed read-write.
        let ptr = unsafe { self.base().add((pfn << shift) as usize) };
        // SAFETY: committed range of this memory; MADV_POPULATE_WRITE only
        // faults pages in, it never changes their contents.
        let populated = unsafe {
            rustix::mm::madvise(
                ptr.cast(),
                (n << shift) as usize,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
        if populated.is_err() {
            // SAFETY: as above, the range is committed read-write.
            unsafe { touch_for_write(ptr, n, shift) };
        }
    }
}

/// Faults in `n` pages of `1 << shift` bytes from `ptr` for write where
/// `MADV_POPULATE_WRITE` is missing (kernels before 5.14): an atomic no-op
/// add on each page's first byte, which never races a concurrent writer.
///
/// # Safety
///
/// `[ptr, ptr + (n << shift))` is committed read-write memory.
unsafe fn touch_for_write(ptr: *mut u8, n: u64, shift: u32) {
    for i in 0..n {
        // SAFETY: the page is committed read-write (the caller's contract)
        // and a byte is always aligned for AtomicU8.
        let b = unsafe { std::sync::atomic::AtomicU8::from_ptr(ptr.add((i << shift) as usize)) };
        b.fetch_add(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Freezes an entry or block word that holds no reference (`Busy` if it
/// does). Acquire pairs with the Release of the last unpin: the holder's
/// accesses to the page happen before its contents are dropped.
fn freeze(w: &AtomicU64) -> Result<(), Errno> {
    w.fetch_update(Ordering::Acquire, Ordering::Relaxed, |cur| {
        (!entry::referenced(cur)).then_some(cur | entry::FROZEN)
    })
    .map(drop)
    .map_err(|_| Errno::Busy)
}

/// Thaws a frozen word, clearing `clear` with it (Release: pairs with a
/// taker's Acquire CAS, which then sees the discard's zeros).
fn thaw(w: &AtomicU64, clear: u64) {
    w.fetch_and(!(entry::FROZEN | clear), Ordering::Release);
}

impl Drop for Mm {
    fn drop(&mut self) {
        // The last reference is gone: no pin, no get and no long-term lock
        // remain (each held an `Arc<Mm>`). A pool slot learns how far it was
        // committed; the reservation, dropped right after, resets it.
        let committed = self.lock().committed;
        debug_assert_eq!(self.locked_bytes.load(Ordering::Relaxed), 0, "memlock charge leaked");
        if let Owner::Slot(lease) = &mut self.reservation.owner {
            lease.set_committed(committed);
        }
    }
}

impl std::fmt::Debug for Mm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mm")
            .field("base", &self.base())
            .field("len", &self.len())
            .field("capacity", &self.limit)
            .field("page_size", &self.page_size())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pre-5.14 populate makes exactly its pages resident (`mincore`);
    /// this kernel takes the `MADV_POPULATE_WRITE` path, so it is tested
    /// directly.
    #[test]
    fn touching_for_write_makes_exactly_those_pages_resident() {
        let mm = Mm::new(MmConfig {
            initial_bytes: 16 << 12,
            reservation_bytes: 16 << 12,
            huge_pages: false,
            ..Default::default()
        })
        .unwrap();
        let shift = mm.page_shift();
        let resident = || {
            let mut v = vec![0u8; 16];
            // SAFETY: the 16 pages are mapped for the life of `mm`; mincore
            // writes one byte per page into `v`.
            let r = unsafe { libc::mincore(mm.base().cast(), 16 << shift, v.as_mut_ptr()) };
            assert_eq!(r, 0);
            v.iter().map(|b| b & 1 == 1).collect::<Vec<_>>()
        };
        assert!(resident().iter().all(|r| !r), "a fresh memory is not resident");
        // SAFETY: pages 2..7 lie inside the committed 16.
        unsafe { touch_for_write(mm.base().add(2 << shift), 5, shift) };
        let want: Vec<bool> = (0..16).map(|p| (2..7).contains(&p)).collect();
        assert_eq!(resident(), want);
    }
}
