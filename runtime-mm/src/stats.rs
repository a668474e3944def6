//! Counters of GUP activity, like the kernel's `nr_foll_pin_acquired` /
//! `nr_foll_pin_released` vmstat items.
//!
//! Counters are sharded per thread (cache-padded) so that two threads pinning
//! disjoint pages do not bounce one cache line on every call; `snapshot` sums
//! the shards. They are statistics, not part of the pin protocol, so they use
//! plain `std` atomics with `Relaxed` ordering even under loom.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// A snapshot of an [`Mm`](crate::Mm)'s counters. All counts are in pages
/// except `locked_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MmStats {
    /// Pages pinned (`FOLL_PIN`), summed over calls.
    pub foll_pin_acquired: u64,
    /// Pages unpinned.
    pub foll_pin_released: u64,
    /// Pages taken with a get reference (`FOLL_GET`).
    pub foll_get_taken: u64,
    /// Pages whose get reference was put.
    pub foll_get_put: u64,
    /// Pages taken by the lock-free fast path.
    pub fast_path_pages: u64,
    /// Pages taken by the locked slow path.
    pub slow_path_pages: u64,
    /// `*_fast` calls that handed part of their range to the slow path.
    pub fast_fallbacks: u64,
    /// Long-term pins outstanding now, in pages (a page pinned long-term twice
    /// counts twice).
    pub longterm_pinned_pages: u64,
    /// Pages taken through a `*_remote` call (`FOLL_REMOTE`).
    pub remote_pages: u64,
    /// Pages marked dirty by a dirty release.
    pub dirtied_pages: u64,
    /// Bytes locked resident for long-term pins and charged against the
    /// memlock limit now (each page counted once).
    pub locked_bytes: u64,
}

impl MmStats {
    /// Pins outstanding now: acquired − released.
    pub fn pins_outstanding(&self) -> u64 {
        self.foll_pin_acquired.wrapping_sub(self.foll_pin_released)
    }
    /// Gets outstanding now: taken − put.
    pub fn gets_outstanding(&self) -> u64 {
        self.foll_get_taken.wrapping_sub(self.foll_get_put)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Counter {
    /// Short-term pins taken (pages).
    PinAcquired,
    /// Short-term pins released.
    PinReleased,
    /// Long-term pins taken: counted apart so that a call adds one counter,
    /// and the long-term gauge is a difference.
    LongtermAcquired,
    /// Long-term pins released.
    LongtermReleased,
    GetTaken,
    GetPut,
    SlowPages,
    FastFallbacks,
    Remote,
    Dirtied,
}
const NR_COUNTERS: usize = 10;
const SHARDS: usize = 8;

pub(crate) struct Stats {
    shards: Box<[CachePadded<[AtomicU64; NR_COUNTERS]>]>,
}

fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS);
    SHARD.with(|s| *s)
}

impl Stats {
    pub(crate) fn new() -> Stats {
        Stats {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Adds `n` to counter `c` on this thread's shard (wrapping).
    #[inline]
    pub(crate) fn add(&self, c: Counter, n: u64) {
        if n != 0 {
            self.shards[shard()][c as usize].fetch_add(n, Relaxed);
        }
    }

    fn sum(&self, c: Counter) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s[c as usize].load(Relaxed)))
    }

    pub(crate) fn snapshot(&self, locked_bytes: u64) -> MmStats {
        let (lt_acquired, lt_released) = (self.sum(Counter::LongtermAcquired), self.sum(Counter::LongtermReleased));
        let foll_pin_acquired = self.sum(Counter::PinAcquired).wrapping_add(lt_acquired);
        let foll_get_taken = self.sum(Counter::GetTaken);
        let slow_path_pages = self.sum(Counter::SlowPages);
        MmStats {
            foll_pin_acquired,
            foll_pin_released: self.sum(Counter::PinReleased).wrapping_add(lt_released),
            foll_get_taken,
            foll_get_put: self.sum(Counter::GetPut),
            // Every page taken was taken by one path or the other. (Read
            // while calls run, the sums may be a call apart: saturate.)
            fast_path_pages: foll_pin_acquired
                .wrapping_add(foll_get_taken)
                .saturating_sub(slow_path_pages),
            slow_path_pages,
            fast_fallbacks: self.sum(Counter::FastFallbacks),
            longterm_pinned_pages: lt_acquired.wrapping_sub(lt_released),
            remote_pages: self.sum(Counter::Remote),
            dirtied_pages: self.sum(Counter::Dirtied),
            locked_bytes,
        }
    }
}
