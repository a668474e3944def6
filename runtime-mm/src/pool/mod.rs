//! The memory pool: linear memories on slots reserved once, reset for the
//! next tenant, and quarantined while pins outlive their owner.
//!
//! ```text
//!   MemoryPool::new ── one PROT_NONE mapping, made once ──────────────────────┐
//!   │ slot 0: [ memory: max_memory_bytes ][ guard ] │ slot 1: [ ... ][ guard ] │ ...
//!   └──────────────────────────────────────────────────────────────────────────┘
//!
//!   Free ──alloc──► Live ──owner releases, references remain──► Quarantined
//!    ▲                │                                              │
//!    │                └──────── last Arc<Mm> drops ──────────────────┤
//!    │                                                               ▼
//!    └──────────── reset: zero kept bytes, decommit the rest ◄── (Pending: batched)
//! ```
//!
//! # Layout
//!
//! [`MemoryPool::new`] reserves `slots × (max_memory_bytes + guard_bytes)`
//! of inaccessible address space in one mapping and never maps or unmaps
//! anything afterwards. A slot's guard is also the pre-guard of the next
//! slot. An [`Mm`] on a slot is an ordinary `Mm` (own page table, own
//! memlock charge, same GUP protocol) whose reservation is the slot.
//!
//! # Life cycle of a slot
//!
//! - **Free**: read-write from its base up to the bytes the last tenant
//!   committed, all zero, inaccessible beyond. [`MemoryPool::alloc`] takes the
//!   most recently freed slot (its pages are the warmest), makes exactly
//!   `round_up(initial)` bytes read-write (one `mprotect` only if that differs
//!   from what the last tenant left) and builds a fresh `Mm` on it. Nothing
//!   waits: no free slot is [`PoolError::Exhausted`] at once.
//! - **Live**: an `Mm` lives on the slot.
//! - **Quarantined**: the owner (wasmtime's memory, through
//!   [`MemoryPool::release`]) let go while other `Arc<Mm>`s remain: pins and
//!   gets (`PinnedPages`/`GotPages`), I/O in flight (which holds a pin), a
//!   `PinCtx` or a grant. The slot is handed to nobody; the bytes stay mapped
//!   and writable through the pins.
//! - **Reset** runs when the last `Arc<Mm>` drops (in `Mm`'s `Drop`, on
//!   whichever thread drops it), so by then no pin or get can exist and every
//!   long-term pin has been unpinned, i.e. `munlock`ed and uncharged: the
//!   reset never touches a pinned or locked page. It zeroes the first
//!   `keep_resident_bytes` of what the tenant committed with `memset` (they
//!   stay resident) and gives the rest back with `madvise(MADV_DONTNEED)`
//!   (private anonymous pages read as zero afterwards; if the call fails the
//!   bytes are zeroed with `memset` instead). The page table and the memlock
//!   charge belong to the `Mm` and go with it: the next tenant starts with an
//!   empty table and nothing charged.
//! - **Pending** (only with `decommit_batch_size > 1`): zeroed up to
//!   `keep_resident_bytes` but not yet decommitted; the batch is decommitted
//!   when it is full, or at once by an `alloc` that finds no free slot. This
//!   amortizes the pool's lock, not system calls (Linux has no vectored
//!   `MADV_DONTNEED`).
//!
//! Invariants (`docs/SAFETY.md` section 7 lists the tests that check them):
//! - P1 a slot belongs to at most one `Mm`, and is reset before its next
//!   tenant; a tenant reads only zeros (and its own data segments);
//! - P2 no page under a pin, a get or I/O in flight is ever reset,
//!   decommitted or remapped: reset runs only after the last `Arc<Mm>`;
//! - P3 bytes past the tenant's length are inaccessible (`PROT_NONE`), also
//!   when the previous tenant had grown further;
//! - P4 page table and memlock charge start empty for every tenant, and the
//!   process's locked memory returns to what it was;
//! - P5 a full pool is an error at once, never a wait, and a memory needing
//!   more address space than a slot is refused.
//!
//! Under the lock, `free + live + quarantined + pending == slots`.

use crate::primitive::{Mutex, MutexGuard};
use crate::{Errno, Mm, MmConfig};
use std::ptr::NonNull;
use std::sync::Arc;

/// How to build a [`MemoryPool`]. All sizes are bytes, rounded up to host
/// pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Slots: the most memories alive (or quarantined) at once.
    pub slots: u32,
    /// The largest memory a slot holds; its address space is reserved up
    /// front (wasmtime's `memory_reservation`: the pooled creator sets it).
    pub max_memory_bytes: u64,
    /// Inaccessible bytes after each slot (wasmtime's `memory_guard_size`).
    pub guard_bytes: u64,
    /// Bytes of a released slot kept resident and zeroed with `memset`; the
    /// rest is decommitted with `madvise` (wasmtime's
    /// `linear_memory_keep_resident`).
    pub keep_resident_bytes: u64,
    /// Memlock limit of each memory for long-term pins ([`MmConfig`]).
    pub memlock_limit_bytes: u64,
    /// Released slots decommitted together; 1 decommits each at once.
    pub decommit_batch_size: u32,
}

impl Default for PoolConfig {
    /// 1,000 slots of 4 GiB memories with a 32 MiB guard, 2 MiB kept
    /// resident (Spin's production settings and wasmtime's memory defaults),
    /// 64 MiB memlock limit, no decommit batching: 4 TiB of address space,
    /// none of it committed until used.
    fn default() -> Self {
        PoolConfig {
            slots: 1000,
            max_memory_bytes: 4 << 30,
            guard_bytes: 32 << 20,
            keep_resident_bytes: 2 << 20,
            memlock_limit_bytes: MmConfig::default().memlock_limit_bytes,
            decommit_batch_size: 1,
        }
    }
}

/// Why the pool could not hand out a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every slot holds a memory (the pooling allocator's "maximum concurrent
    /// instances"): drop instances, release pins, or raise `slots`.
    #[error(
        "all {slots} slots of the pin memory pool are taken ({live} live, {quarantined} quarantined until the pins \
         or I/O still holding their pages are released, {pending} being reset): maximum concurrent memories reached; \
         drop instances or raise PoolConfig::slots"
    )]
    Exhausted {
        /// Slots in the pool.
        slots: u32,
        /// Slots whose memory is in use.
        live: u32,
        /// Slots released by their owner but still referenced.
        quarantined: u32,
        /// Slots waiting for a batched decommit.
        pending: u32,
    },
    /// The memory needs more address space than a slot has.
    #[error(
        "a memory needing {needed} bytes of address space (reservation plus guard) does not fit a pool slot of \
         {slot} bytes (PoolConfig::max_memory_bytes + guard_bytes); install the pooled creator with \
         PinMemoryCreator::install (it sets wasmtime's memory_reservation and memory_guard_size to the slot's) \
         or raise PoolConfig::max_memory_bytes"
    )]
    TooLarge {
        /// Bytes the memory asked for.
        needed: u64,
        /// Bytes a slot has.
        slot: u64,
    },
    /// The pool's reservation, or the memory on the slot, could not be made.
    #[error("{0}")]
    Mm(#[from] Errno),
}

/// What every slot is doing, and the pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Slots in the pool.
    pub slots: u32,
    /// Slots ready for a new memory.
    pub free: u32,
    /// Slots with a memory in use.
    pub live: u32,
    /// Slots whose owner released the memory while pins, gets, I/O or other
    /// `Arc<Mm>`s still hold it; reset when the last goes.
    pub quarantined: u32,
    /// Slots waiting for a batched decommit.
    pub pending: u32,
    /// Memories handed out so far.
    pub allocated: u64,
    /// Slot resets so far.
    pub resets: u64,
    /// Requests refused because no slot was free.
    pub refused: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Live,
    Quarantined,
    Pending,
}

/// State changed only under the pool's lock.
struct Slots {
    /// Free slots, the most recently reset last.
    free: Vec<u32>,
    /// Reset slots waiting for their decommit, with the bytes to decommit from.
    pending: Vec<(u32, u64)>,
    state: Box<[SlotState]>,
    /// Per slot, bytes read-write from its base (meaningful while not live).
    accessible: Box<[u64]>,
    stats: PoolStats,
}

impl Slots {
    fn count(&mut self, from: SlotState, to: SlotState) {
        for (s, d) in [(from, u32::MAX), (to, 1)] {
            let n = match s {
                SlotState::Free => &mut self.stats.free,
                SlotState::Live => &mut self.stats.live,
                SlotState::Quarantined => &mut self.stats.quarantined,
                SlotState::Pending => &mut self.stats.pending,
            };
            *n = n.wrapping_add(d);
        }
    }

    fn set(&mut self, slot: u32, to: SlotState) {
        let from = std::mem::replace(&mut self.state[slot as usize], to);
        self.count(from, to);
    }

    /// Makes a reset slot, read-write up to `accessible`, free.
    fn push_free(&mut self, slot: u32, accessible: u64) {
        self.accessible[slot as usize] = accessible;
        self.set(slot, SlotState::Free);
        self.free.push(slot);
    }
}

/// A pool of linear-memory slots reserved once and reused (see the module
/// docs). Build with [`MemoryPool::new`]; [`crate::PinMemoryCreator::pooled`]
/// builds one for wasmtime.
///
/// ```
/// use runtime_mm::{MemoryPool, PoolConfig};
///
/// let pool = MemoryPool::new(PoolConfig { slots: 2, max_memory_bytes: 1 << 20, ..Default::default() })?;
/// let mm = pool.alloc(64 << 10, None)?;
/// mm.write(0, b"tenant one")?;
/// let base = mm.base();
/// pool.release(mm); // reset: the slot is free again
/// let mm = pool.alloc(64 << 10, None)?;
/// assert_eq!(mm.base(), base);
/// let mut b = [1u8; 10];
/// mm.read(0, &mut b)?;
/// assert_eq!(b, [0; 10]);
/// # Ok::<(), runtime_mm::PoolError>(())
/// ```
pub struct MemoryPool {
    base: NonNull<u8>,
    _mapping: region::Allocation,
    config: PoolConfig,
    /// Bytes from one slot's base to the next: memory plus guard.
    stride: u64,
    slots: Mutex<Slots>,
}

// SAFETY: the mapping is plain anonymous memory owned by the pool, with no
// thread affinity, unmapped once when the pool drops; slot contents are only
// touched by the `Mm` leasing the slot or, after it, by the reset, which the
// slot state (under the lock) keeps apart.
unsafe impl Send for MemoryPool {}
// SAFETY: as above; `&MemoryPool` hands out slots only under its lock.
unsafe impl Sync for MemoryPool {}

impl MemoryPool {
    /// Reserves `slots × (max_memory_bytes + guard_bytes)` of inaccessible
    /// address space, once. `Inval` for zero slots or a zero
    /// `decommit_batch_size`; `NoMem` if the host refuses the reservation.
    pub fn new(config: PoolConfig) -> Result<Arc<MemoryPool>, PoolError> {
        let page = Mm::host_page_size();
        let round = |b: u64| b.checked_next_multiple_of(page).ok_or(Errno::NoMem);
        if config.slots == 0 || config.decommit_batch_size == 0 {
            return Err(Errno::Inval.into());
        }
        let config = PoolConfig {
            max_memory_bytes: round(config.max_memory_bytes.max(page))?,
            guard_bytes: round(config.guard_bytes)?,
            keep_resident_bytes: round(config.keep_resident_bytes)?,
            ..config
        };
        let stride = config
            .max_memory_bytes
            .checked_add(config.guard_bytes)
            .ok_or(Errno::NoMem)?;
        let total = stride
            .checked_mul(u64::from(config.slots))
            .and_then(|t| usize::try_from(t).ok())
            .ok_or(Errno::NoMem)?;
        let mut mapping = region::alloc(total, region::Protection::NONE).map_err(|_| Errno::NoMem)?;
        let base = NonNull::new(mapping.as_mut_ptr::<u8>()).ok_or(Errno::NoMem)?;
        let n = config.slots as usize;
        let slots = Slots {
            // Popped from the end: slot 0 first.
            free: (0..config.slots).rev().collect(),
            pending: Vec::new(),
            state: vec![SlotState::Free; n].into_boxed_slice(),
            accessible: vec![0; n].into_boxed_slice(),
            stats: PoolStats {
                slots: config.slots,
                free: config.slots,
                ..PoolStats::default()
            },
        };
        Ok(Arc::new(MemoryPool {
            base,
            _mapping: mapping,
            config,
            stride,
            slots: Mutex::new(slots),
        }))
    }

    /// The configuration, sizes rounded up to host pages.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// A snapshot of the slots' states and the counters.
    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Every critical section leaves `Slots` consistent before anything
        // that could panic, so poisoning carries no broken invariant.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot_base(&self, slot: u32) -> *mut u8 {
        debug_assert!(slot < self.config.slots);
        // SAFETY (of the arithmetic): slot < slots (every index comes from the
        // free list, filled with 0..slots), so the offset lies inside the
        // pool's mapping.
        unsafe { self.base.as_ptr().add((u64::from(slot) * self.stride) as usize) }
    }

    /// A new memory of `initial_bytes` (zeroed, read-write) that may grow to
    /// `maximum_bytes` and at most `max_memory_bytes`, on a free slot.
    ///
    /// Never waits: `Exhausted` if every slot is taken. `TooLarge` if
    /// `initial_bytes` exceeds the slot; `Mm(Inval)` if it exceeds
    /// `maximum_bytes`.
    pub fn alloc(self: &Arc<Self>, initial_bytes: u64, maximum_bytes: Option<u64>) -> Result<Arc<Mm>, PoolError> {
        self.alloc_reserved(
            initial_bytes,
            maximum_bytes,
            self.config.max_memory_bytes,
            self.config.guard_bytes,
        )
    }

    /// [`alloc`](Self::alloc) for a memory that needs `reservation` bytes of
    /// address space followed by `guard` inaccessible ones (what wasmtime's
    /// compiled code assumes); its capacity is at most `reservation`.
    pub(crate) fn alloc_reserved(
        self: &Arc<Self>,
        initial_bytes: u64,
        maximum_bytes: Option<u64>,
        reservation: u64,
        guard: u64,
    ) -> Result<Arc<Mm>, PoolError> {
        let page = Mm::host_page_size();
        let slot_bytes = self.stride;
        let reservation = reservation.max(initial_bytes);
        let needed = reservation.saturating_add(guard);
        if reservation > self.config.max_memory_bytes || needed > slot_bytes {
            return Err(PoolError::TooLarge {
                needed,
                slot: slot_bytes,
            });
        }
        let config = MmConfig {
            initial_bytes,
            maximum_bytes,
            reservation_bytes: reservation,
            // The rest of the slot: its guard, and unused reservation.
            guard_bytes: 0,
            memlock_limit_bytes: self.config.memlock_limit_bytes,
            ..MmConfig::default()
        };
        // Refuse bad sizes before taking a slot.
        Mm::sizes(&config)?;
        let want = initial_bytes.next_multiple_of(page);

        let (slot, mut accessible) = {
            let mut s = self.lock();
            if s.free.is_empty() && !s.pending.is_empty() {
                // Out of free slots: decommit the batch now rather than refuse.
                let batch = std::mem::take(&mut s.pending);
                self.decommit(&batch);
                for (slot, committed) in batch {
                    s.push_free(slot, committed);
                }
            }
            let Some(slot) = s.free.pop() else {
                s.stats.refused += 1;
                let st = s.stats;
                return Err(PoolError::Exhausted {
                    slots: st.slots,
                    live: st.live,
                    quarantined: st.quarantined,
                    pending: st.pending,
                });
            };
            s.set(slot, SlotState::Live);
            s.stats.allocated += 1;
            (slot, s.accessible[slot as usize])
        };
        let base = self.slot_base(slot);
        if accessible > want {
            // The last tenant grew further: hide the excess (P3).
            // SAFETY: [want, accessible) lies inside this slot, which we now
            // own; nothing references it (the last tenant's `Mm` is gone).
            let hidden = unsafe {
                region::protect(
                    base.add(want as usize),
                    (accessible - want) as usize,
                    region::Protection::NONE,
                )
            };
            if hidden.is_err() {
                // Give the slot back as it was.
                self.lock().push_free(slot, accessible);
                return Err(Errno::NoMem.into());
            }
            accessible = want;
        }
        let lease = Lease {
            pool: self.clone(),
            slot,
            committed: accessible,
        };
        // On error the lease drops inside `in_slot` and frees the slot.
        Ok(Mm::in_slot(&config, lease, accessible)?)
    }

    /// The owner (wasmtime's linear memory, or whoever called
    /// [`alloc`](Self::alloc)) is done with `mm`. If nothing else holds it,
    /// its slot is reset and free now; otherwise the slot is quarantined
    /// until the last pin, get or other `Arc<Mm>` goes. A memory of another
    /// pool (or none) is just dropped.
    pub fn release(&self, mm: Arc<Mm>) {
        self.note_released(&mm);
    }

    /// [`release`](Self::release) without giving up the caller's reference
    /// (wasmtime's memory drops its own right after).
    pub(crate) fn note_released(&self, mm: &Arc<Mm>) {
        let Some(lease) = mm.lease().filter(|l| std::ptr::eq(Arc::as_ptr(&l.pool), self)) else {
            return;
        };
        let mut s = self.lock();
        // Under the lock no reset of this slot can run (we hold an `Arc`), and
        // a count of 1 cannot grow: no other strong reference exists to clone
        // and the registries' weak ones are gone before the owner releases.
        if Arc::strong_count(mm) > 1 && s.state[lease.slot as usize] == SlotState::Live {
            s.set(lease.slot, SlotState::Quarantined);
        }
    }

    /// Resets `slot` after its tenant, which committed `committed` bytes,
    /// and frees it (or queues its decommit).
    fn reset(&self, slot: u32, committed: u64) {
        let base = self.slot_base(slot);
        let keep = committed.min(self.config.keep_resident_bytes);
        // SAFETY: [0, committed) of this slot is mapped read-write; the last
        // `Arc<Mm>` on it is gone, so no pin, get, I/O or guest references it,
        // and the slot is not free yet, so no new tenant does either.
        unsafe { std::ptr::write_bytes(base, 0, keep as usize) };
        let mut s = self.lock();
        s.stats.resets += 1;
        if keep == committed {
            s.push_free(slot, committed);
            return;
        }
        s.set(slot, SlotState::Pending);
        s.pending.push((slot, committed));
        if s.pending.len() < self.config.decommit_batch_size as usize {
            return;
        }
        // Decommit outside the lock; the batch stays pending meanwhile.
        let batch = std::mem::take(&mut s.pending);
        drop(s);
        self.decommit(&batch);
        let mut s = self.lock();
        for (slot, committed) in batch {
            s.push_free(slot, committed);
        }
    }

    /// Decommits `[keep_resident, committed)` of each slot in `batch`.
    fn decommit(&self, batch: &[(u32, u64)]) {
        let keep = self.config.keep_resident_bytes;
        for &(slot, committed) in batch {
            // SAFETY: as in `reset`: the slot's [0, committed) is mapped
            // read-write and referenced by nobody (it is pending, not free).
            let start = unsafe { self.slot_base(slot).add(keep as usize) };
            let len = (committed - keep) as usize;
            // SAFETY: as above; the guest sees zeros afterwards either way.
            let gone = unsafe { rustix::mm::madvise(start.cast(), len, rustix::mm::Advice::LinuxDontNeed) };
            if gone.is_err() {
                // SAFETY: as above.
                unsafe { std::ptr::write_bytes(start, 0, len) };
            }
        }
    }
}

impl std::fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPool")
            .field("base", &self.base)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A slot leased to one `Mm`: its reservation. Dropping it (with the `Mm`,
/// after the last `Arc<Mm>`) resets the slot and frees it.
pub(crate) struct Lease {
    pool: Arc<MemoryPool>,
    slot: u32,
    /// Bytes read-write from the base: what the reset must zero or decommit.
    committed: u64,
}

impl Lease {
    /// The pool the slot belongs to.
    #[cfg(feature = "wasmtime")]
    pub(crate) fn pool(&self) -> &Arc<MemoryPool> {
        &self.pool
    }

    /// The slot's base address.
    pub(crate) fn base(&self) -> NonNull<u8> {
        NonNull::new(self.pool.slot_base(self.slot)).expect("slots lie inside a non-null mapping")
    }

    /// Records the bytes the tenant committed (set by `Mm`'s `Drop`).
    pub(crate) fn set_committed(&mut self, committed: u64) {
        self.committed = committed;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.reset(self.slot, self.committed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alloc_reserved` (what wasmtime's pooled memories call, with their
    /// own reservation and guard) refuses a reservation over
    /// `max_memory_bytes` even when it and its guard fit the slot, and a
    /// guard that runs past the slot; a smaller reservation fits.
    #[test]
    fn reservations_over_the_maximum_or_the_slot_are_too_large() {
        let pool = MemoryPool::new(PoolConfig {
            slots: 1,
            max_memory_bytes: 1 << 20,
            guard_bytes: 64 << 10,
            keep_resident_bytes: 0,
            memlock_limit_bytes: 0,
            decommit_batch_size: 1,
        })
        .unwrap();
        let too_large = |r: Result<Arc<Mm>, PoolError>| matches!(r, Err(PoolError::TooLarge { .. }));
        assert!(too_large(pool.alloc_reserved(0, None, (1 << 20) + 4096, 0)));
        assert!(too_large(pool.alloc_reserved(0, None, 1 << 20, (64 << 10) + 4096)));
        let m = pool.alloc_reserved(4096, None, 512 << 10, 0).unwrap();
        assert_eq!(m.capacity(), 512 << 10);
    }
}
