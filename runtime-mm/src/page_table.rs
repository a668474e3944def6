//! The page table: one atomic `u64` entry per host page, in a radix tree
//! allocated on demand.
//!
//! # Entry format
//!
//! ```text
//!  63            48 47            28 27             8 7    4   3      2     1       0
//! +----------------+----------------+----------------+------+------+-----+--------+-------+
//! | long-term pins |   get count    |   pin count    |  0   |FROZEN|DIRTY|WRITABLE|PRESENT|
//! |    16 bits     |    20 bits     |    20 bits     |      |      |     |        |       |
//! +----------------+----------------+----------------+------+------+-----+--------+-------+
//! ```
//!
//! - `PRESENT`: the page was handed out (its first reference, on either
//!   path) or populated (slow path) since the last discard; bookkeeping, not
//!   a precondition (see [`crate::fast_path`] for what a pin promises). Only
//!   `discard` clears it, under the memory's lock, while the page is frozen.
//! - `WRITABLE`: set with `PRESENT` (linear memory has no read-only pages).
//! - `DIRTY`: set by a dirty release (`unpin_dirty(true)`), cleared by
//!   `discard` and `Mm::test_and_clear_dirty`.
//! - `FROZEN`: a `discard` owns the page: it set the bit while the page held
//!   no pins and no gets, and clears it together with `PRESENT`. No reference
//!   can be taken while it is set.
//! - pin count (`FOLL_PIN`), get count (`FOLL_GET`) and long-term pins (a
//!   subset of the pins) are separate fields; each is exact, so
//!   `page_maybe_dma_pinned` has neither false negatives nor false positives
//!   (the kernel's `GUP_PIN_COUNTING_BIAS` trades the latter away). A field at
//!   its maximum refuses one more reference with `EOVERFLOW`: it never wraps
//!   into its neighbour.
//!
//! # Blocks
//!
//! Each leaf also holds one **block word** for the aligned block of pages it
//! covers (`BLOCK_PAGES`, 512 pages = 2 MiB), in the entry format: a call that
//! covers a whole block takes *one* reference on the block word instead of
//! one per page, like the kernel's folio / huge-PMD pinning. A page's counts
//! are its entry's plus its block's, so `page_maybe_dma_pinned` stays exact.
//! `FROZEN` on a block word means a discard owns (part of) the block: no
//! block reference can be taken then, and a discard freezes the block only
//! while it holds no block reference. `PRESENT` and `DIRTY` on a block word
//! mean "every page of the block"; before a discard or a dirty test clears
//! them for some pages only, they are first spread to the other pages'
//! entries.
//!
//! # Chunks
//!
//! Each leaf also holds the **chunk words** of its pages: the unit in which
//! long-term pins lock pages resident (a power of two of pages, at most one
//! block; see [`crate::longterm`] for their format and protocol). They are
//! allocated with the leaf, so the fast path finds them without allocating.
//!
//! # Tree
//!
//! Three levels: a root array sized to the reservation, middle nodes of
//! `FANOUT` pointers and leaves of `FANOUT` entries. Nodes are installed with a
//! compare-and-swap (so no lock is needed to allocate them) and are freed only
//! when the table is dropped, which is what lets the lock-free fast path hold
//! a `&AtomicU64` without any reclamation scheme: a node, once visible, lives
//! as long as the table.

use crate::primitive::{AtomicPtr, AtomicU64, Ordering};
use std::ptr;

/// log2 of the fan-out of each level. Small under loom so models cross leaves.
#[cfg(not(loom))]
const FANOUT_SHIFT: u32 = 9;
#[cfg(loom)]
const FANOUT_SHIFT: u32 = 1;
const FANOUT: usize = 1 << FANOUT_SHIFT;
const FANOUT_MASK: u64 = FANOUT as u64 - 1;
/// Pages per block: one leaf, 2 MiB of 4 KiB pages (2 pages under loom).
pub(crate) const BLOCK_PAGES: u64 = FANOUT as u64;

/// Bits and fields of an entry.
pub(crate) mod entry {
    /// The page is faulted in.
    pub const PRESENT: u64 = 1 << 0;
    /// The page may be written.
    pub const WRITABLE: u64 = 1 << 1;
    /// The page was written through a pin or get.
    pub const DIRTY: u64 = 1 << 2;
    /// A discard owns the page.
    pub const FROZEN: u64 = 1 << 3;

    pub const PIN_SHIFT: u32 = 8;
    pub const GET_SHIFT: u32 = 28;
    pub const LT_SHIFT: u32 = 48;
    pub const PIN_MAX: u64 = (1 << 20) - 1;
    pub const GET_MAX: u64 = (1 << 20) - 1;
    pub const LT_MAX: u64 = (1 << 16) - 1;
    pub const PIN_UNIT: u64 = 1 << PIN_SHIFT;
    pub const GET_UNIT: u64 = 1 << GET_SHIFT;
    pub const LT_UNIT: u64 = 1 << LT_SHIFT;

    /// Pins held on the page (long-term ones included).
    #[inline]
    pub const fn pins(e: u64) -> u64 {
        (e >> PIN_SHIFT) & PIN_MAX
    }
    /// Gets held on the page.
    #[inline]
    pub const fn gets(e: u64) -> u64 {
        (e >> GET_SHIFT) & GET_MAX
    }
    /// Long-term pins held on the page.
    #[inline]
    pub const fn longterm(e: u64) -> u64 {
        (e >> LT_SHIFT) & LT_MAX
    }
    /// Whether any reference (pin or get) is held.
    #[inline]
    pub const fn referenced(e: u64) -> bool {
        pins(e) != 0 || gets(e) != 0
    }
}

/// One leaf: the entries of `FANOUT` pages, the block word of the aligned
/// block they form (see "Blocks" above) and their chunk words (see "Chunks").
struct Leaf([AtomicU64; FANOUT], AtomicU64, Box<[AtomicU64]>);
struct Mid([AtomicPtr<Leaf>; FANOUT]);

/// A radix tree of page entries covering `nr_pages` pages.
pub(crate) struct PageTable {
    root: Box<[AtomicPtr<Mid>]>,
    nr_pages: u64,
    /// log2 of the pages per long-term chunk (≤ `FANOUT_SHIFT`).
    chunk_shift: u32,
}

// SAFETY: the raw node pointers are owned by the table (created by
// `Box::into_raw`, freed only in `Drop`); all shared access goes through atomics.
unsafe impl Send for PageTable {}
// SAFETY: as above; `&PageTable` only hands out `&AtomicU64`.
unsafe impl Sync for PageTable {}

impl PageTable {
    /// An empty table for `nr_pages` pages whose long-term chunks are
    /// `1 << chunk_shift` pages (clamped to a block): only the root is
    /// allocated.
    pub(crate) fn new(nr_pages: u64, chunk_shift: u32) -> PageTable {
        let per_root = 1u64 << (2 * FANOUT_SHIFT);
        let roots = nr_pages.div_ceil(per_root).max(1) as usize;
        PageTable {
            root: (0..roots).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            nr_pages,
            chunk_shift: chunk_shift.min(FANOUT_SHIFT),
        }
    }

    /// Pages per long-term chunk.
    pub(crate) fn chunk_pages(&self) -> u64 {
        1 << self.chunk_shift
    }

    fn split(pfn: u64) -> (usize, usize, usize) {
        (
            (pfn >> (2 * FANOUT_SHIFT)) as usize,
            ((pfn >> FANOUT_SHIFT) & FANOUT_MASK) as usize,
            (pfn & FANOUT_MASK) as usize,
        )
    }

    fn leaf(&self, pfn: u64) -> Option<&Leaf> {
        if pfn >= self.nr_pages {
            return None;
        }
        let (r, m, _) = Self::split(pfn);
        // Acquire pairs with the Release of the installing CAS: the node's
        // initialised contents are visible before we read through it.
        let mid = self.root[r].load(Ordering::Acquire);
        if mid.is_null() {
            return None;
        }
        // SAFETY: non-null node pointers come from `Box::into_raw` and stay
        // valid until the table drops, which outlives `&self`.
        let leaf = unsafe { &*mid }.0[m].load(Ordering::Acquire);
        if leaf.is_null() {
            return None;
        }
        // SAFETY: as above, for the leaf.
        Some(unsafe { &*leaf })
    }

    /// The entry of page `pfn`, if its leaf exists. Lock-free.
    pub(crate) fn get(&self, pfn: u64) -> Option<&AtomicU64> {
        self.leaf(pfn).map(|l| &l.0[Self::split(pfn).2])
    }

    /// The block word of the block holding page `pfn`, if its leaf exists.
    /// Lock-free.
    pub(crate) fn block(&self, pfn: u64) -> Option<&AtomicU64> {
        self.leaf(pfn).map(|l| &l.1)
    }

    /// The chunk word of the chunk holding page `pfn`, if its leaf exists.
    /// Lock-free.
    pub(crate) fn chunk(&self, pfn: u64) -> Option<&AtomicU64> {
        let i = Self::split(pfn).2 >> self.chunk_shift;
        self.leaf(pfn).map(|l| &l.2[i])
    }

    /// The entries from `pfn` to the end of its leaf (clipped to the table), if
    /// the leaf exists. Lock-free: the fast path walks a leaf at a time.
    pub(crate) fn leaf_tail(&self, pfn: u64) -> Option<&[AtomicU64]> {
        let leaf = self.leaf(pfn)?;
        let i = Self::split(pfn).2;
        let end = ((self.nr_pages - pfn) as usize).saturating_add(i).min(FANOUT);
        Some(&leaf.0[i..end])
    }

    /// Calls `f` on the entries of `n` pages from `pfn`, in order, until it
    /// returns `false` or a leaf is missing; returns how many calls returned
    /// `true`. Lock-free and allocation-free: one tree descent per leaf.
    #[inline]
    pub(crate) fn walk(&self, pfn: u64, n: u64, mut f: impl FnMut(&AtomicU64) -> bool) -> u64 {
        let mut done = 0;
        while done < n {
            let Some(tail) = self.leaf_tail(pfn + done) else {
                break;
            };
            for e in tail.iter().take((n - done).min(tail.len() as u64) as usize) {
                if !f(e) {
                    return done;
                }
                done += 1;
            }
        }
        done
    }

    /// Allocates the nodes of `n` pages from `pfn` (clipped to the table):
    /// `grow` does this under the lock before it publishes a new length, so
    /// the lock-free walk finds a leaf for every page inside the memory.
    pub(crate) fn ensure_range(&self, pfn: u64, n: u64) {
        let end = pfn.saturating_add(n).min(self.nr_pages);
        let mut p = pfn;
        while p < end {
            self.ensure(p);
            // Next leaf.
            p = (p | FANOUT_MASK) + 1;
        }
    }

    /// The entry of page `pfn`, allocating its nodes if needed. Returns `None`
    /// for a page outside the table.
    pub(crate) fn ensure(&self, pfn: u64) -> Option<&AtomicU64> {
        if pfn >= self.nr_pages {
            return None;
        }
        let (r, m, i) = Self::split(pfn);
        let mid = install(&self.root[r], || {
            Mid(std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())))
        });
        let chunks = FANOUT >> self.chunk_shift;
        let leaf = install(&mid.0[m], || {
            Leaf(
                std::array::from_fn(|_| AtomicU64::new(0)),
                AtomicU64::new(0),
                (0..chunks).map(|_| AtomicU64::new(0)).collect(),
            )
        });
        Some(&leaf.0[i])
    }

    /// Bytes of heap the table uses now (root and installed nodes).
    pub(crate) fn footprint(&self) -> usize {
        let mut bytes = std::mem::size_of_val(&*self.root);
        for slot in self.root.iter() {
            let mid = slot.load(Ordering::Acquire);
            if mid.is_null() {
                continue;
            }
            bytes += std::mem::size_of::<Mid>();
            // SAFETY: installed nodes live until the table drops.
            for leaf in unsafe { &*mid }.0.iter() {
                let leaf = leaf.load(Ordering::Acquire);
                if !leaf.is_null() {
                    // SAFETY: as above, for the leaf; its chunk words are a
                    // separate allocation it owns.
                    bytes += std::mem::size_of::<Leaf>() + std::mem::size_of_val(&*unsafe { &*leaf }.2);
                }
            }
        }
        bytes
    }
}

/// Returns the node in `slot`, installing a new one made by `make` if empty.
fn install<T>(slot: &AtomicPtr<T>, make: impl FnOnce() -> T) -> &T {
    let cur = slot.load(Ordering::Acquire);
    if !cur.is_null() {
        // SAFETY: installed nodes live until the table drops.
        return unsafe { &*cur };
    }
    let new = Box::into_raw(Box::new(make()));
    match slot.compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: we just installed `new`; it lives until the table drops.
        Ok(_) => unsafe { &*new },
        Err(winner) => {
            // SAFETY: `new` was never published, so we still own it.
            drop(unsafe { Box::from_raw(new) });
            // SAFETY: the winner's node lives until the table drops.
            unsafe { &*winner }
        }
    }
}

impl Drop for PageTable {
    fn drop(&mut self) {
        for slot in self.root.iter() {
            let mid = slot.load(Ordering::Acquire);
            if mid.is_null() {
                continue;
            }
            // SAFETY: `&mut self`: no other reference to any node exists; each
            // node was created by `Box::into_raw` and is freed exactly once here.
            let mid = unsafe { Box::from_raw(mid) };
            for leaf in mid.0.iter() {
                let leaf = leaf.load(Ordering::Acquire);
                if !leaf.is_null() {
                    // SAFETY: as above.
                    drop(unsafe { Box::from_raw(leaf) });
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sparse_table_is_small() {
        // 4 GiB + 32 MiB of 4 KiB pages, 1 MiB used.
        let t = PageTable::new((4u64 << 30 | 32 << 20) >> 12, FANOUT_SHIFT);
        for pfn in 0..256 {
            t.ensure(pfn).unwrap();
        }
        assert!(t.footprint() < 16 * 1024, "footprint {}", t.footprint());
        assert!(t.get(256 * 1024).is_none());
    }

    #[test]
    fn leaf_tail_is_clipped() {
        let t = PageTable::new(FANOUT as u64 + 3, 0);
        t.ensure(FANOUT as u64).unwrap();
        assert_eq!(t.leaf_tail(FANOUT as u64 + 1).unwrap().len(), 2);
        t.ensure(5).unwrap();
        assert_eq!(t.leaf_tail(5).unwrap().len(), FANOUT - 5);
        assert!(t.ensure(FANOUT as u64 + 3).is_none());
    }

    #[test]
    fn fields_do_not_overlap() {
        use entry::*;
        let e = PIN_MAX << PIN_SHIFT | GET_MAX << GET_SHIFT | LT_MAX << LT_SHIFT;
        assert_eq!(e & 0xff, 0);
        assert_eq!(pins(e), PIN_MAX);
        assert_eq!(gets(e), GET_MAX);
        assert_eq!(longterm(e), LT_MAX);
        assert_eq!(pins(e ^ (PIN_MAX << PIN_SHIFT)), 0);
        assert_eq!(gets(e ^ (GET_MAX << GET_SHIFT)), 0);
    }
}
