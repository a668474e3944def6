//! The memory pool: linear memories on slots reserved once, reset for the
//! next tenant by the pool's reset worker, and quarantined while pins
//! outlive their owner.
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
//!    └── reset worker: zero kept bytes, decommit the rest ◄── Resetting
//!                          (Pending while a decommit batch fills)
//! ```
//!
//! - `mod.rs` (this file): the slots, their states and `alloc`/`release`.
//! - `reset`: the reset worker, which zeroes and decommits released slots
//!   off the thread that dropped them.
//!
//! # Layout
//!
//! [`MemoryPool::new`] reserves `slots × (max_memory_bytes + guard_bytes)`
//! of inaccessible address space in one mapping and never maps or unmaps
//! anything afterwards. A slot's guard is also the pre-guard of the next
//! slot. An [`Mm`] on a slot is an ordinary `Mm` (own page table, own
//! memlock charge, same GUP protocol) whose reservation is the slot. With
//! [`PoolConfig::huge_pages`] (the default) the mapping and every slot are
//! 2 MiB-aligned and advised `MADV_HUGEPAGE`, so a slot's memory is
//! THP-backed like an [`Mm::new`] one and long-term pins default to 2 MiB
//! chunks ([`crate::LongtermChunks::Auto`]).
//!
//! # Life cycle of a slot
//!
//! - **Free**: read-write from its base up to the bytes the last tenant
//!   committed, all zero, inaccessible beyond. [`MemoryPool::alloc`] takes the
//!   most recently freed slot (its pages are the warmest), makes exactly
//!   `round_up(initial)` bytes read-write (one `mprotect` only if that differs
//!   from what the last tenant left) and builds a fresh `Mm` on it.
//! - **Live**: an `Mm` lives on the slot.
//! - **Quarantined**: the owner (wasmtime's memory, through
//!   [`MemoryPool::release`]) let go while other `Arc<Mm>`s remain: pins and
//!   gets (`PinnedPages`/`GotPages`), I/O in flight (which holds a pin), a
//!   `PinCtx` or a grant. The slot is handed to nobody; the bytes stay mapped
//!   and writable through the pins.
//! - **Resetting**: the last `Arc<Mm>` dropped (in `Mm`'s `Drop`, on
//!   whichever thread dropped it), which only queues the slot for the pool's
//!   reset worker and wakes it: the dropping thread (a guest's, an
//!   executor's) pays no `memset` and no `madvise`. By then no pin or get
//!   can exist and every long-term pin has been unpinned, i.e. `munlock`ed
//!   and uncharged: the reset never touches a pinned or locked page. The
//!   worker zeroes the first `keep_resident_bytes` of what the tenant
//!   committed with `memset` (they stay resident) and gives the rest back
//!   with `madvise(MADV_DONTNEED)` (private anonymous pages read as zero
//!   afterwards; if the call fails the bytes are zeroed with `memset`
//!   instead). The page table and the memlock charge belong to the `Mm` and
//!   go with it: the next tenant starts with an empty table and nothing
//!   charged.
//! - **Pending** (only with `decommit_batch_size > 1`): zeroed up to
//!   `keep_resident_bytes` but not yet decommitted; the batch is decommitted
//!   when it is full, or at once by an `alloc` that finds no free slot. This
//!   amortizes the pool's lock, not system calls (Linux has no vectored
//!   `MADV_DONTNEED`).
//!
//! # When no slot is free
//!
//! An `alloc` that finds no free slot decommits a pending batch itself, and
//! if slots are still being reset, **waits for one**, at most
//! [`PoolConfig::reset_wait`] (default 1 s: a reset of a whole 4 GiB memory
//! takes tens of milliseconds). Only when no slot is resetting, or the wait
//! runs out, is it [`PoolError::Exhausted`]. It never waits for a live or
//! quarantined slot.
//!
//! # Quarantine limit: a host that holds pins forever
//!
//! A quarantined slot is freed only by the release of the last reference
//! into its memory; the pool cannot take pages from under a pin (P2). So a
//! host that keeps pins forever keeps their slots forever, with their pages
//! resident (and, for long-term pins, locked and charged). The embedder sees
//! it in [`PoolStats::quarantined`], and once [`PoolConfig::max_quarantined`]
//! slots are quarantined every `alloc` is refused with
//! [`PoolError::QuarantineFull`] until pins are released: a pin leak
//! surfaces as a named error at a bound the embedder chose, not as a pool
//! that slowly runs out.
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
//! - P5 a full pool is an error after at most `reset_wait` (at once when no
//!   slot is being reset), never an unbounded wait, and a memory needing
//!   more address space than a slot is refused.
//!
//! Under the lock, `free + live + quarantined + resetting + pending == slots`.

mod reset;

use crate::primitive::{Condvar, Mutex, MutexGuard};
use crate::thp::{self, HUGE_PAGE};
use crate::{Errno, LongtermChunks, Mm, MmConfig};
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// How each memory's long-term pins are locked and charged
    /// ([`MmConfig::longterm_chunks`]).
    pub longterm_chunks: LongtermChunks,
    /// 2 MiB-aligned slots advised `MADV_HUGEPAGE` (see
    /// [`MmConfig::huge_pages`]): slots are then a multiple of 2 MiB apart,
    /// and long-term pins default to 2 MiB chunks. Default `true`.
    pub huge_pages: bool,
    /// Slots that may sit in quarantine before `alloc` refuses every new
    /// memory with [`PoolError::QuarantineFull`] (see the module docs).
    pub max_quarantined: u32,
    /// How long an `alloc` that finds no free slot waits for one that the
    /// reset worker is resetting.
    pub reset_wait: Duration,
}

impl Default for PoolConfig {
    /// 1,000 slots of 4 GiB memories with a 32 MiB guard, 2 MiB kept
    /// resident (Spin's production settings and wasmtime's memory defaults),
    /// 64 MiB memlock limit, no decommit batching, huge pages and the
    /// long-term chunks they choose, at most 100
    /// slots quarantined, 1 s of waiting for a reset: 4 TiB of address space,
    /// none of it committed until used.
    fn default() -> Self {
        PoolConfig {
            slots: 1000,
            max_memory_bytes: 4 << 30,
            guard_bytes: 32 << 20,
            keep_resident_bytes: 2 << 20,
            memlock_limit_bytes: MmConfig::default().memlock_limit_bytes,
            decommit_batch_size: 1,
            longterm_chunks: LongtermChunks::Auto,
            huge_pages: true,
            max_quarantined: 100,
            reset_wait: Duration::from_secs(1),
        }
    }
}

/// Why the pool could not hand out a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every slot holds a memory (the pooling allocator's "maximum concurrent
    /// instances"), and none came free within `reset_wait`: drop instances,
    /// release pins, or raise `slots`.
    #[error(
        "all {slots} slots of the pin memory pool are taken ({live} live, {quarantined} quarantined until the pins \
         or I/O still holding their pages are released, {resetting} being reset): maximum concurrent memories \
         reached; drop instances or raise PoolConfig::slots"
    )]
    Exhausted {
        /// Slots in the pool.
        slots: u32,
        /// Slots whose memory is in use.
        live: u32,
        /// Slots released by their owner but still referenced.
        quarantined: u32,
        /// Slots the reset worker had not finished when the wait ran out.
        resetting: u32,
    },
    /// [`PoolConfig::max_quarantined`] slots are quarantined: memories whose
    /// owner is gone are still held by pins, gets or I/O that were never
    /// released (a host that holds pins forever).
    #[error(
        "{quarantined} slots of the pin memory pool are quarantined (limit {limit}): pins, gets or I/O on memories \
         whose instances are gone were never released; release them (PinnedPages::unpin, drop the PinCtx) or raise \
         PoolConfig::max_quarantined"
    )]
    QuarantineFull {
        /// Slots quarantined.
        quarantined: u32,
        /// The configured limit.
        limit: u32,
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
    /// Slots queued for, or under, the reset worker.
    pub resetting: u32,
    /// Slots waiting for a batched decommit.
    pub pending: u32,
    /// Memories handed out so far.
    pub allocated: u64,
    /// Slot resets so far.
    pub resets: u64,
    /// Requests refused: no slot free ([`PoolError::Exhausted`]) or the
    /// quarantine full ([`PoolError::QuarantineFull`]).
    pub refused: u64,
    /// Requests that found no free slot and waited for a reset.
    pub waited: u64,
    /// The most slots ever quarantined at once.
    pub peak_quarantined: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Live,
    Quarantined,
    Resetting,
    Pending,
}

/// State changed only under the pool's lock.
struct Slots {
    /// Free slots, the most recently reset last.
    free: Vec<u32>,
    /// Released slots for the reset worker, with the bytes their tenant
    /// committed, oldest first.
    to_reset: VecDeque<(u32, u64)>,
    /// Reset slots waiting for their decommit, with the bytes to decommit from.
    pending: Vec<(u32, u64)>,
    state: Box<[SlotState]>,
    /// Per slot, bytes read-write from its base (meaningful while not live).
    accessible: Box<[u64]>,
    stats: PoolStats,
    /// The pool is being dropped: the worker finishes the queue and exits.
    shutdown: bool,
}

impl Slots {
    fn count(&mut self, from: SlotState, to: SlotState) {
        for (s, d) in [(from, u32::MAX), (to, 1)] {
            let n = match s {
                SlotState::Free => &mut self.stats.free,
                SlotState::Live => &mut self.stats.live,
                SlotState::Quarantined => &mut self.stats.quarantined,
                SlotState::Resetting => &mut self.stats.resetting,
                SlotState::Pending => &mut self.stats.pending,
            };
            *n = n.wrapping_add(d);
        }
        self.stats.peak_quarantined = self.stats.peak_quarantined.max(self.stats.quarantined);
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

/// The slots and their mapping: what the pool and its reset worker share.
struct Shared {
    base: NonNull<u8>,
    _mapping: region::Allocation,
    config: PoolConfig,
    /// Bytes from one slot's base to the next: memory plus guard.
    stride: u64,
    /// The slots are 2 MiB-aligned, advised `MADV_HUGEPAGE`, on a host
    /// with THP.
    thp_backed: bool,
    slots: Mutex<Slots>,
    /// The reset worker waits here for work (or shutdown).
    work: Condvar,
    /// `alloc`s that found no free slot wait here for a reset to finish.
    freed: Condvar,
}

// SAFETY: the mapping is plain anonymous memory owned by the pool, with no
// thread affinity, unmapped once when the last owner drops; slot contents are
// only touched by the `Mm` leasing the slot or, after it, by the reset, which
// the slot state (under the lock) keeps apart.
unsafe impl Send for Shared {}
// SAFETY: as above; `&Shared` hands out slots only under its lock.
unsafe impl Sync for Shared {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Every critical section leaves `Slots` consistent before anything
        // that could panic, so poisoning carries no broken invariant.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on `freed` (a reset finished) for at most `timeout`.
    fn wait_freed<'a>(&self, s: MutexGuard<'a, Slots>, timeout: Duration) -> MutexGuard<'a, Slots> {
        // As in `lock`: poisoning carries no broken invariant.
        match self.freed.wait_timeout(s, timeout) {
            Ok((s, _)) => s,
            Err(p) => p.into_inner().0,
        }
    }

    fn slot_base(&self, slot: u32) -> *mut u8 {
        debug_assert!(slot < self.config.slots);
        // SAFETY (of the arithmetic): slot < slots (every index comes from the
        // free list, filled with 0..slots), so the offset lies inside the
        // pool's mapping.
        unsafe { self.base.as_ptr().add((u64::from(slot) * self.stride) as usize) }
    }
}

/// A pool of linear-memory slots reserved once and reused (see the module
/// docs). Build with [`MemoryPool::new`]; [`crate::PinMemoryCreator::pooled`]
/// builds one for wasmtime.
///
/// ```
/// use runtime_mm::{MemoryPool, PoolConfig};
/// use std::time::Duration;
///
/// let pool = MemoryPool::new(PoolConfig { slots: 1, max_memory_bytes: 1 << 20, ..Default::default() })?;
/// let mm = pool.alloc(64 << 10, None)?;
/// mm.write(0, b"tenant one")?;
/// let base = mm.base();
/// pool.release(mm); // queued for the reset worker
/// // The only slot: `alloc` waits for its reset (at most `reset_wait`).
/// let mm = pool.alloc(64 << 10, None)?;
/// assert_eq!(mm.base(), base);
/// let mut b = [1u8; 10];
/// mm.read(0, &mut b)?;
/// assert_eq!(b, [0; 10]);
/// drop(mm);
/// assert!(pool.wait_for_resets(Duration::from_secs(5)));
/// assert_eq!(pool.stats().free, 1);
/// # Ok::<(), runtime_mm::PoolError>(())
/// ```
pub struct MemoryPool {
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl MemoryPool {
    /// Reserves `slots × (max_memory_bytes + guard_bytes)` of inaccessible
    /// address space, once (with `huge_pages`, each slot rounded up to
    /// 2 MiB), and starts the pool's reset worker thread. `Inval` for zero
    /// slots or a zero `decommit_batch_size`; `NoMem` if the host refuses the
    /// reservation or the thread.
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
        let mut stride = config
            .max_memory_bytes
            .checked_add(config.guard_bytes)
            .ok_or(Errno::NoMem)?;
        // Huge pages need 2 MiB-aligned slots: a stride of whole blocks (the
        // extra bytes are more guard), and a base on a boundary.
        let huge = config.huge_pages && config.max_memory_bytes >= HUGE_PAGE;
        let slack = if huge {
            stride = stride.checked_next_multiple_of(HUGE_PAGE).ok_or(Errno::NoMem)?;
            HUGE_PAGE - page
        } else {
            0
        };
        let total = stride
            .checked_mul(u64::from(config.slots))
            .and_then(|t| t.checked_add(slack))
            .and_then(|t| usize::try_from(t).ok())
            .ok_or(Errno::NoMem)?;
        let mut mapping = region::alloc(total, region::Protection::NONE).map_err(|_| Errno::NoMem)?;
        let start = mapping.as_mut_ptr::<u8>();
        let align = if huge { HUGE_PAGE as usize } else { 1 };
        // The first aligned address: at most `slack` bytes in.
        let base = start.wrapping_add((start as usize).next_multiple_of(align) - start as usize);
        let base = NonNull::new(base).ok_or(Errno::NoMem)?;
        // SAFETY: the slots lie inside our fresh, still inaccessible mapping.
        let thp_backed = huge && unsafe { thp::advise(base.as_ptr(), stride * u64::from(config.slots)) };
        let n = config.slots as usize;
        let slots = Slots {
            // Popped from the end: slot 0 first.
            free: (0..config.slots).rev().collect(),
            to_reset: VecDeque::new(),
            pending: Vec::new(),
            state: vec![SlotState::Free; n].into_boxed_slice(),
            accessible: vec![0; n].into_boxed_slice(),
            stats: PoolStats {
                slots: config.slots,
                free: config.slots,
                ..PoolStats::default()
            },
            shutdown: false,
        };
        let shared = Arc::new(Shared {
            base,
            _mapping: mapping,
            config,
            stride,
            thp_backed,
            slots: Mutex::new(slots),
            work: Condvar::new(),
            freed: Condvar::new(),
        });
        let worker = reset::spawn(shared.clone())?;
        Ok(Arc::new(MemoryPool {
            shared,
            worker: Some(worker),
        }))
    }

    /// The configuration, sizes rounded up to host pages.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// A snapshot of the slots' states and the counters.
    pub fn stats(&self) -> PoolStats {
        self.shared.lock().stats
    }

    /// Waits until the reset worker has reset every released slot (none is
    /// resetting; a decommit batch may still be pending), at most `timeout`;
    /// whether it has. For tests and orderly shutdown: `alloc` already waits
    /// for a reset by itself.
    pub fn wait_for_resets(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        loop {
            if s.stats.resetting == 0 {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            s = self.shared.wait_freed(s, left);
        }
    }

    /// A new memory of `initial_bytes` (zeroed, read-write) that may grow to
    /// `maximum_bytes` and at most `max_memory_bytes`, on a free slot.
    ///
    /// With no free slot, waits at most `reset_wait` for one being reset,
    /// then `Exhausted`; `QuarantineFull` at once when `max_quarantined`
    /// slots are quarantined. `TooLarge` if `initial_bytes` exceeds the slot;
    /// `Mm(Inval)` if it exceeds `maximum_bytes`.
    pub fn alloc(self: &Arc<Self>, initial_bytes: u64, maximum_bytes: Option<u64>) -> Result<Arc<Mm>, PoolError> {
        let config = self.shared.config;
        self.alloc_reserved(
            initial_bytes,
            maximum_bytes,
            config.max_memory_bytes,
            config.guard_bytes,
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
        let shared = &self.shared;
        let page = Mm::host_page_size();
        let slot_bytes = shared.stride;
        let reservation = reservation.max(initial_bytes);
        let needed = reservation.saturating_add(guard);
        if reservation > shared.config.max_memory_bytes || needed > slot_bytes {
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
            memlock_limit_bytes: shared.config.memlock_limit_bytes,
            longterm_chunks: shared.config.longterm_chunks,
            ..MmConfig::default()
        };
        // Refuse bad sizes before taking a slot.
        Mm::sizes(&config)?;
        let want = initial_bytes.next_multiple_of(page);

        let (slot, mut accessible) = {
            let mut s = shared.lock();
            // (A limit of 0 refuses while any slot is quarantined.)
            if s.stats.quarantined > 0 && s.stats.quarantined >= shared.config.max_quarantined {
                s.stats.refused += 1;
                return Err(PoolError::QuarantineFull {
                    quarantined: s.stats.quarantined,
                    limit: shared.config.max_quarantined,
                });
            }
            let mut deadline = None;
            let slot = loop {
                if s.free.is_empty() && !s.pending.is_empty() {
                    // Out of free slots: decommit the batch now rather than wait.
                    let batch = std::mem::take(&mut s.pending);
                    reset::decommit(shared, &batch);
                    for (slot, committed) in batch {
                        s.push_free(slot, committed);
                    }
                }
                if let Some(slot) = s.free.pop() {
                    break slot;
                }
                let now = Instant::now();
                let until = *deadline.get_or_insert_with(|| {
                    s.stats.waited += 1;
                    now + shared.config.reset_wait
                });
                if s.stats.resetting == 0 || now >= until {
                    s.stats.refused += 1;
                    let st = s.stats;
                    return Err(PoolError::Exhausted {
                        slots: st.slots,
                        live: st.live,
                        quarantined: st.quarantined,
                        resetting: st.resetting,
                    });
                }
                s = shared.wait_freed(s, until - now);
            };
            s.set(slot, SlotState::Live);
            s.stats.allocated += 1;
            (slot, s.accessible[slot as usize])
        };
        let base = shared.slot_base(slot);
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
                shared.lock().push_free(slot, accessible);
                shared.freed.notify_one();
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
    /// its slot is queued for the reset worker now; otherwise the slot is
    /// quarantined until the last pin, get or other `Arc<Mm>` goes. A memory
    /// of another pool (or none) is just dropped.
    pub fn release(&self, mm: Arc<Mm>) {
        self.note_released(&mm);
    }

    /// [`release`](Self::release) without giving up the caller's reference
    /// (wasmtime's memory drops its own right after).
    pub(crate) fn note_released(&self, mm: &Arc<Mm>) {
        let Some(lease) = mm.lease().filter(|l| std::ptr::eq(Arc::as_ptr(&l.pool), self)) else {
            return;
        };
        let mut s = self.shared.lock();
        // Under the lock no reset of this slot can run (we hold an `Arc`), and
        // a count of 1 cannot grow: no other strong reference exists to clone
        // and the registries' weak ones are gone before the owner releases.
        if Arc::strong_count(mm) > 1 && s.state[lease.slot as usize] == SlotState::Live {
            s.set(lease.slot, SlotState::Quarantined);
        }
    }
}

impl Drop for MemoryPool {
    fn drop(&mut self) {
        // No lease is left (each holds an `Arc<MemoryPool>`); the worker
        // finishes what they queued, then exits, before the mapping goes.
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl std::fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPool")
            .field("base", &self.shared.base)
            .field("config", &self.shared.config)
            .field("thp_backed", &self.shared.thp_backed)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A slot leased to one `Mm`: its reservation. Dropping it (with the `Mm`,
/// after the last `Arc<Mm>`) queues the slot for the reset worker.
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
        NonNull::new(self.pool.shared.slot_base(self.slot)).expect("slots lie inside a non-null mapping")
    }

    /// Whether the slot is THP-backed (2 MiB-aligned, advised, THP on).
    pub(crate) fn thp_backed(&self) -> bool {
        self.pool.shared.thp_backed
    }

    /// Records the bytes the tenant committed (set by `Mm`'s `Drop`).
    pub(crate) fn set_committed(&mut self, committed: u64) {
        self.committed = committed;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        reset::retire(&self.pool.shared, self.slot, self.committed);
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
            ..PoolConfig::default()
        })
        .unwrap();
        let too_large = |r: Result<Arc<Mm>, PoolError>| matches!(r, Err(PoolError::TooLarge { .. }));
        assert!(too_large(pool.alloc_reserved(0, None, (1 << 20) + 4096, 0)));
        assert!(too_large(pool.alloc_reserved(0, None, 1 << 20, (64 << 10) + 4096)));
        let m = pool.alloc_reserved(4096, None, 512 << 10, 0).unwrap();
        assert_eq!(m.capacity(), 512 << 10);
    }
}
