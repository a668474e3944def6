//! Counters of GUP activity, like the kernel's `nr_foll_pin_acquired` /
//! `nr_foll_pin_released` vmstat items.
//!
//! Counters are sharded per thread (cache-padded) so that two threads pinning
//! disjoint pages do not bounce one cache line on every call; `snapshot` sums
//! the shards. They are statistics, not part of the pin protocol, so they use
//! plain `std` atomics with `Relaxed` ordering even under loom.
//!
//! # Owned shards (the kernel's per-CPU `this_cpu_add`)
//!
//! A thread claims one of [`OWNED`] shards for its lifetime, the same index in
//! every memory, and gives it back when it exits. Only the owner writes an
//! owned shard, so its add is a plain load and store: no locked
//! read-modify-write, which is a tenth of a one-page pin's cost. The claim is
//! an Acquire RMW on one bitmap and the return a Release one, so the next
//! owner of an index starts from the last value the previous one stored.
//! Threads beyond [`OWNED`], and adds from a thread's TLS destructors after
//! its claim was returned, use the last shard with `fetch_add`. Under loom,
//! whose threads share one OS thread's TLS, every add is a `fetch_add`.
//! The cost is memory: 33 cache-padded shards, about 4 KiB per `Mm`.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

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
/// Shards a thread may own alone; one more is shared by everyone else.
const OWNED: usize = 32;
const SHARDS: usize = OWNED + 1;

pub(crate) struct Stats {
    shards: Box<[CachePadded<[AtomicU64; NR_COUNTERS]>]>,
}

/// The owned shards in use, one bit each.
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// This thread's claim on an owned shard ([`OWNED`]: none), returned when
/// the thread exits.
struct Claim(usize);

impl Claim {
    fn new() -> Claim {
        let mut cur = CLAIMED.load(Relaxed);
        loop {
            let free = (!cur).trailing_zeros() as usize;
            if free >= OWNED {
                return Claim(OWNED);
            }
            // Acquire: pairs with the previous owner's Release in `drop`.
            match CLAIMED.compare_exchange_weak(cur, cur | 1 << free, Acquire, Relaxed) {
                Ok(_) => return Claim(free),
                Err(now) => cur = now,
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.0 < OWNED {
            // Release: our last stores to the shard happen-before the next
            // owner's first load.
            CLAIMED.fetch_and(!(1 << self.0), Release);
        }
    }
}

/// This thread's shard: owned (`< OWNED`) or the shared one.
fn shard() -> usize {
    thread_local!(static CLAIM: Claim = Claim::new());
    CLAIM.try_with(|c| c.0).unwrap_or(OWNED)
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
        if n == 0 {
            return;
        }
        let i = shard();
        let a = &self.shards[i][c as usize];
        if i < OWNED && !cfg!(loom) {
            // Only this thread writes an owned shard (module docs).
            a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
        } else {
            a.fetch_add(n, Relaxed);
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

#[cfg(test)]
mod tests {
    use super::{shard, Counter, Stats, OWNED};
    use std::sync::{Arc, Barrier};

    const ADDS: u64 = 100_000;

    /// Spawns `n` threads that claim their shard, wait at `gate`, add `ADDS`
    /// to two counters, wait at `done` (if any), and return their shard.
    fn spawn(
        n: usize,
        stats: &Arc<Stats>,
        gate: &Arc<Barrier>,
        done: Option<&Arc<Barrier>>,
    ) -> Vec<std::thread::JoinHandle<usize>> {
        (0..n)
            .map(|_| {
                let (stats, gate, done) = (stats.clone(), gate.clone(), done.cloned());
                std::thread::spawn(move || {
                    let mine = shard();
                    gate.wait();
                    for _ in 0..ADDS {
                        stats.add(Counter::PinAcquired, 1);
                        stats.add(Counter::PinReleased, 1);
                    }
                    if let Some(done) = done {
                        done.wait();
                    }
                    mine
                })
            })
            .collect()
    }

    /// Threads come and go while others hold their shards, and more are
    /// alive at once than there are owned shards, in three waves: no add is
    /// lost (the extras share the last shard, with `fetch_add`), no two
    /// live threads own one shard, and an exiting thread's shard is claimed
    /// again (each wave gets most of the owned shards).
    #[test]
    fn owned_shards_lose_no_add_across_threads_and_reuse() {
        let stats = Arc::new(Stats::new());
        let (holders, passers, later) = (OWNED / 2, OWNED / 2, OWNED / 2 + 8);
        for _wave in 0..3 {
            // Holders claim and stay until the wave ends.
            let gate = Arc::new(Barrier::new(holders + 1));
            let end = Arc::new(Barrier::new(holders + later));
            let held = spawn(holders, &stats, &gate, Some(&end));
            gate.wait();
            // Passers claim, add and exit while the holders live.
            let gate = Arc::new(Barrier::new(passers));
            for t in spawn(passers, &stats, &gate, None) {
                t.join().unwrap();
            }
            // Later threads claim beside the holders (some reuse the
            // passers' shards); all of them are alive at `end`.
            let gate = Arc::new(Barrier::new(later));
            let late = spawn(later, &stats, &gate, Some(&end));
            let claims: Vec<usize> = held.into_iter().chain(late).map(|t| t.join().unwrap()).collect();
            let mut owned: Vec<_> = claims.iter().filter(|&&c| c < OWNED).collect();
            let n = owned.len();
            owned.sort();
            owned.dedup();
            assert_eq!(owned.len(), n, "two live threads owned one shard: {claims:?}");
            assert!(
                n >= OWNED / 2,
                "exited threads' shards were not claimed again: {claims:?}"
            );
            assert!(claims.contains(&OWNED), "the extra threads share the last shard");
        }
        let s = stats.snapshot(0);
        let total = 3 * (holders + passers + later) as u64 * ADDS;
        assert_eq!((s.foll_pin_acquired, s.foll_pin_released), (total, total));
    }
}
