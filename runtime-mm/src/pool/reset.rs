//! The reset worker: one thread per pool that zeroes and decommits released
//! slots, so that the thread dropping a tenant's last reference (a guest's,
//! an executor's) pays nothing but a queue push.
//!
//! # Protocol
//!
//! - **retire** (`Lease`'s `Drop`, after the last `Arc<Mm>`): under the
//!   pool's lock, the slot becomes `Resetting` and joins the queue; the
//!   worker is woken (`work`).
//! - **worker**: takes the oldest queued slot under the lock, resets it
//!   outside the lock (the slot is `Resetting`: no `alloc` hands it out, no
//!   `Mm` references it), then under the lock makes it `Free` (or `Pending`
//!   for a decommit batch) and wakes the `alloc`s waiting for a slot
//!   (`freed`). It sleeps on `work` when the queue is empty.
//! - **shutdown** (`MemoryPool`'s `Drop`): no lease is left, so nothing more
//!   is queued; the worker finishes the queue, sees `shutdown`, and exits;
//!   the pool joins it before the mapping can go.

use super::{Shared, SlotState};
use crate::Errno;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Starts the worker of `shared`'s pool.
pub(super) fn spawn(shared: Arc<Shared>) -> Result<JoinHandle<()>, Errno> {
    std::thread::Builder::new()
        .name("wasm-pin-pool-reset".into())
        .spawn(move || work(&shared))
        .map_err(|_| Errno::NoMem)
}

/// Queues `slot`, whose tenant committed `committed` bytes, for a reset.
pub(super) fn retire(shared: &Shared, slot: u32, committed: u64) {
    let mut s = shared.lock();
    s.set(slot, SlotState::Resetting);
    s.to_reset.push_back((slot, committed));
    drop(s);
    shared.work.notify_one();
}

fn work(shared: &Shared) {
    let mut s = shared.lock();
    loop {
        let Some((slot, committed)) = s.to_reset.pop_front() else {
            if s.shutdown {
                return;
            }
            s = shared.work.wait(s).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        drop(s);
        reset(shared, slot, committed);
        s = shared.lock();
    }
}

/// Resets `slot` after its tenant, which committed `committed` bytes, and
/// frees it (or queues its decommit); wakes the waiting `alloc`s.
fn reset(shared: &Shared, slot: u32, committed: u64) {
    let base = shared.slot_base(slot);
    let keep = committed.min(shared.config.keep_resident_bytes);
    // SAFETY: [0, committed) of this slot is mapped read-write; the last
    // `Arc<Mm>` on it is gone, so no pin, get, I/O or guest references it,
    // and the slot is `Resetting`, not free, so no new tenant does either.
    unsafe { zero_kept(base, keep) };
    let mut s = shared.lock();
    s.stats.resets += 1;
    if keep == committed {
        s.push_free(slot, committed);
    } else {
        s.set(slot, SlotState::Pending);
        s.pending.push((slot, committed));
        if s.pending.len() >= shared.config.decommit_batch_size as usize {
            // Decommit outside the lock; the batch stays pending meanwhile.
            let batch = std::mem::take(&mut s.pending);
            drop(s);
            decommit(shared, &batch);
            s = shared.lock();
            for (slot, committed) in batch {
                s.push_free(slot, committed);
            }
        }
    }
    drop(s);
    shared.freed.notify_all();
}

/// Zeroes `[base, base+keep)` and keeps resident only what already was:
/// resident pages are `memset` (they stay resident for the next tenant),
/// the others are dropped with `MADV_DONTNEED` (which also drops pages in
/// swap), so a reset never faults in a page the tenant never touched.
///
/// # Safety
/// The range must be mapped read-write and referenced by nobody.
unsafe fn zero_kept(base: *mut u8, keep: u64) {
    let page = crate::Mm::host_page_size() as usize;
    let keep = keep as usize;
    let mut resident = vec![0u8; keep / page];
    // SAFETY: the range is mapped (the caller's contract); mincore writes
    // one byte per page into `resident`.
    if keep == 0 || unsafe { libc::mincore(base.cast(), keep, resident.as_mut_ptr()) } != 0 {
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(base, 0, keep) };
        return;
    }
    let mut i = 0;
    while i < resident.len() {
        let here = resident[i] & 1;
        let run = resident[i..].iter().take_while(|b| *b & 1 == here).count();
        // SAFETY (of the arithmetic and the calls): the run lies inside the
        // caller's range.
        let (start, len) = (unsafe { base.add(i * page) }, run * page);
        let dropped = here == 0
            // SAFETY: as above; the pages read as zero afterwards.
            && unsafe { rustix::mm::madvise(start.cast(), len, rustix::mm::Advice::LinuxDontNeed) }.is_ok();
        if !dropped {
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(start, 0, len) };
        }
        i += run;
    }
}

/// Decommits `[keep_resident, committed)` of each slot in `batch`.
pub(super) fn decommit(shared: &Shared, batch: &[(u32, u64)]) {
    let keep = shared.config.keep_resident_bytes;
    for &(slot, committed) in batch {
        // SAFETY: as in `reset`: the slot's [0, committed) is mapped
        // read-write and referenced by nobody (it is pending, not free).
        let start = unsafe { shared.slot_base(slot).add(keep as usize) };
        let len = (committed - keep) as usize;
        // SAFETY: as above; the guest sees zeros afterwards either way.
        let gone = unsafe { rustix::mm::madvise(start.cast(), len, rustix::mm::Advice::LinuxDontNeed) };
        if gone.is_err() {
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(start, 0, len) };
        }
    }
}
