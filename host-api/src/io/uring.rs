//! The io_uring backend.
//!
//! One ring per guest. The guest's thread pushes submissions, enters the
//! kernel and registers buffers under the ring's submission lock (`sq`);
//! the process's one reaper thread ([`super::reaper`]), woken by an eventfd
//! registered with the ring, takes the completions under the transfers'
//! lock (`ops`), then drops each transfer's pin and file and reports the
//! outcome to its ticket, so pins are released as soon as their transfer
//! completes, whether or not the guest polls. The reaper never waits for a
//! guest's syscall: `ops` is held only for map operations and the walk of
//! the completion queue, and a guest's long `io_uring_enter` or buffer
//! registration (under `sq`) delays no other guest's completions.
//!
//! Long-term pins used for transfers are registered as fixed buffers (a
//! sparse table of [`SLOTS`], `IORING_REGISTER_BUFFERS2`/`UPDATE`) and moved
//! with `READ_FIXED`/`WRITE_FIXED`, which spares the kernel its per-request
//! page walk; other pins use `READ`/`WRITE` on the same guest pages.
//!
//! At most `depth` transfers are in flight; one more is `again`. Dropping the
//! backend cancels every transfer (`ASYNC_CANCEL`) and waits for all
//! completions, up to `shutdown_wait`. A transfer the kernel cannot cancel and
//! does not finish by then (a hung device) leaves the ring **detached**: the
//! reaper keeps it, each transfer's pin and file, and the fixed buffers'
//! pins until it has seen every completion, so no kernel write ever lands in
//! a page that is no longer pinned. The store's drop is never blocked for
//! longer than the wait.

use super::{Backend, BackendKind, IoCounts, Op};
use io_uring::{opcode, types, IoUring};
use runtime_mm::{Errno, PinnedPages};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Fixed-buffer slots per ring.
pub(crate) const SLOTS: u32 = 64;
/// `user_data` of cancellation requests, whose completions are ignored.
const CANCEL_TAG: u64 = u64::MAX;

/// A ring as its owner and the reaper share it. It leaves the reaper, and
/// is dropped, only with no transfer left in `ops`; fields drop in order:
/// the ring before the pins in `keep`.
pub(crate) struct Shared {
    ring: IoUring,
    /// The submission side: only its holder touches the submission queue,
    /// enters the kernel or updates the fixed buffers. The reaper only
    /// tries it (to flush what a failed enter left queued).
    sq: Mutex<()>,
    /// The transfers the kernel may hold, by id; also the completion queue's
    /// lock. The owner inserts a transfer before pushing it and the reaper
    /// removes it when its completion arrives.
    ops: Mutex<HashMap<u64, Op>>,
    /// Set by the owner's drop, before its wake-up write.
    pub(crate) shutdown: AtomicBool,
    /// Signalled by the ring on every completion (non-blocking).
    pub(crate) wake: OwnedFd,
    /// Whether the reaper has let the ring go (shut down, nothing pending).
    finished: Mutex<bool>,
    finished_cv: Condvar,
    /// A detached ring's fixed buffers' pins, dropped with it.
    keep: Mutex<Vec<Arc<PinnedPages>>>,
}

impl Shared {
    fn sq(&self) -> MutexGuard<'_, ()> {
        self.sq.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ops(&self) -> MutexGuard<'_, HashMap<u64, Op>> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes `entries` in order, as many as the submission queue holds,
    /// and enters the kernel once, under `sq`; false if one did not fit.
    ///
    /// # Safety
    ///
    /// What each entry points at (buffer, fd) stays valid until its
    /// completion is reaped: for a transfer, its [`Op`] is in `ops`.
    unsafe fn push(&self, entries: &[io_uring::squeue::Entry]) -> bool {
        let _sq = self.sq();
        let pushed = {
            // SAFETY: holding `sq`, no other submission queue exists.
            let mut sq = unsafe { self.ring.submission_shared() };
            // SAFETY: the entries' targets are the caller's to keep valid.
            entries.iter().all(|e| unsafe { sq.push(e) }.is_ok())
        };
        // A failed enter leaves the entries queued; the reaper flushes them.
        let _ = self.ring.submit();
        pushed
    }

    /// Asks the kernel to cancel the transfers `ids` (their completions
    /// arrive as usual; a cancel of a finished one finds nothing).
    fn cancel(&self, ids: &[u64]) {
        let entries: Vec<_> = ids
            .iter()
            .map(|&id| opcode::AsyncCancel::new(id).build().user_data(CANCEL_TAG))
            .collect();
        // SAFETY: a cancellation carries no buffer.
        unsafe { self.push(&entries) };
    }

    /// The reaper has removed the ring: wakes its owner's drop.
    pub(crate) fn finish(&self) {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.finished_cv.notify_all();
    }

    /// Waits until the reaper has let the ring go, at most until `deadline`.
    fn wait_finished(&self, deadline: Instant) -> bool {
        let mut done = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            done = self
                .finished_cv
                .wait_timeout(done, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

pub(crate) struct Uring {
    shared: Arc<Shared>,
    depth: usize,
    next: u64,
    counts: IoCounts,
    /// Registered long-term pins by pin identity: (slot, the pin).
    fixed: HashMap<usize, (u16, Arc<PinnedPages>)>,
    free: Vec<u16>,
    shutdown_wait: Duration,
}

pub(crate) fn errno(e: std::io::Error) -> Errno {
    Errno::from_io(&e)
}

impl Uring {
    pub(crate) fn new(depth: u32, shutdown_wait: Duration) -> Result<Uring, Errno> {
        let depth = depth.max(1);
        // Room for one cancellation per transfer on top of the transfers.
        let ring = IoUring::new((2 * depth).next_power_of_two()).map_err(errno)?;
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        let wake = rustix::event::eventfd(0, flags).map_err(|e| errno(e.into()))?;
        ring.submitter().register_eventfd(wake.as_raw_fd()).map_err(errno)?;
        let free = match ring.submitter().register_buffers_sparse(SLOTS) {
            Ok(()) => (0..SLOTS as u16).rev().collect(),
            Err(_) => Vec::new(), // before Linux 5.13: no fixed buffers
        };
        let shared = Arc::new(Shared {
            ring,
            sq: Mutex::new(()),
            ops: Mutex::new(HashMap::new()),
            shutdown: AtomicBool::new(false),
            wake,
            finished: Mutex::new(false),
            finished_cv: Condvar::new(),
            keep: Mutex::new(Vec::new()),
        });
        super::reaper::register(&shared)?;
        Ok(Uring {
            shared,
            depth: depth as usize,
            next: 0,
            counts: IoCounts::default(),
            fixed: HashMap::new(),
            free,
            shutdown_wait,
        })
    }
}

fn key(pages: &Arc<PinnedPages>) -> usize {
    Arc::as_ptr(pages) as usize
}

/// Takes every completion off the ring; returns whether any transfer
/// remains. Called by the reaper only. The transfers are taken out under
/// `ops`, then dropped (pin and file first) and reported outside it.
pub(crate) fn reap(shared: &Shared) -> bool {
    let (done, pending) = {
        let mut ops = shared.ops();
        // SAFETY: the completion queue is read only here, under `ops`.
        let cq = unsafe { shared.ring.completion_shared() };
        // CANCEL_TAG completions match no transfer.
        let done: Vec<(Op, i32)> = cq
            .filter_map(|c| Some((ops.remove(&c.user_data())?, c.result())))
            .collect();
        (done, !ops.is_empty())
    };
    for (op, res) in done {
        let r = if res >= 0 {
            Ok(res as u32)
        } else {
            Err(Errno::from_raw(-res).unwrap_or(Errno::Io))
        };
        let completion = op.done.clone();
        drop(op); // the pin and the file go first
        completion.complete(r);
    }
    // Flush what a failed enter left queued, unless the owner is entering.
    if let Ok(_sq) = shared.sq.try_lock() {
        let _ = shared.ring.submit();
    }
    pending
}

impl Backend for Uring {
    fn submit(&mut self, op: Op) -> Result<u64, Errno> {
        self.next += 1;
        let id = self.next;
        let fd = types::Fd(op.fd.as_raw_fd());
        let slot = self.fixed.get(&key(&op.pages)).map(|(s, _)| *s);
        let entry = match (op.read, slot) {
            (false, _) if op.append => opcode::Write::new(fd, op.ptr, op.len)
                .offset(u64::MAX)
                .rw_flags(libc::RWF_APPEND)
                .build(),
            (true, Some(i)) => opcode::ReadFixed::new(fd, op.ptr, op.len, i).offset(op.offset).build(),
            (true, None) => opcode::Read::new(fd, op.ptr, op.len).offset(op.offset).build(),
            (false, Some(i)) => opcode::WriteFixed::new(fd, op.ptr, op.len, i).offset(op.offset).build(),
            (false, None) => opcode::Write::new(fd, op.ptr, op.len).offset(op.offset).build(),
        }
        .user_data(id);
        {
            let mut ops = self.shared.ops();
            if ops.len() >= self.depth {
                return Err(Errno::Again);
            }
            // Before the push: its completion may be reaped at once.
            ops.insert(id, op);
        }
        // SAFETY: the entry's buffer is `op.ptr..+len` inside pages `op.pages`
        // keeps pinned and mapped, and its fd is `op.fd`; both stay alive in
        // `ops` until the reaper takes this entry's completion.
        if !unsafe { self.shared.push(std::slice::from_ref(&entry)) } {
            // Never seen by the kernel: the transfer's pin may go.
            self.shared.ops().remove(&id);
            return Err(Errno::Again);
        }
        self.counts.submitted += 1;
        self.counts.fixed += u64::from(slot.is_some());
        Ok(id)
    }

    fn cancel(&mut self, id: u64) {
        if self.shared.ops().contains_key(&id) {
            self.shared.cancel(&[id]);
        }
    }

    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn in_flight(&self) -> usize {
        self.shared.ops().len()
    }

    fn tracked(&self) -> usize {
        self.shared.ops().len()
    }

    fn counts(&self) -> IoCounts {
        self.counts
    }

    fn remember(&mut self, pages: &Arc<PinnedPages>) {
        if !pages.is_longterm() || self.fixed.contains_key(&key(pages)) {
            return;
        }
        let Some(slot) = self.free.pop() else { return };
        let iov = libc::iovec {
            iov_base: pages.as_ptr().cast_mut().cast(),
            iov_len: pages.byte_len(),
        };
        let _sq = self.shared.sq();
        // SAFETY: the iovec covers pages held pinned by the clone stored in
        // `self.fixed` until `forget` replaces the slot (or the ring drops).
        match unsafe {
            self.shared
                .ring
                .submitter()
                .register_buffers_update(slot as u32, &[iov], None)
        } {
            Ok(()) => {
                self.fixed.insert(key(pages), (slot, pages.clone()));
            }
            Err(_) => self.free.push(slot),
        }
    }

    fn forget(&mut self, pages: &Arc<PinnedPages>) {
        let Some((slot, pin)) = self.fixed.remove(&key(pages)) else {
            return;
        };
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let sq = self.shared.sq();
        // SAFETY: an empty iovec clears the slot; the kernel keeps the old
        // buffer for transfers still using it, which hold their own pin.
        let _ = unsafe {
            self.shared
                .ring
                .submitter()
                .register_buffers_update(slot as u32, &[empty], None)
        };
        drop(sq);
        self.free.push(slot);
        drop(pin);
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.shared.ops().keys().copied().collect();
        self.shared.cancel(&ids);
        self.shared.shutdown.store(true, Ordering::Release);
        let _ = rustix::io::write(&self.shared.wake, &1u64.to_ne_bytes());
        if self.shared.wait_finished(Instant::now() + self.shutdown_wait) {
            // Every transfer has completed: no buffer is in the kernel's
            // hands (the registered ones the kernel holds itself).
            super::reaper::settle();
            return;
        }
        // Detached: the reaper still owns the ring and the transfers; the
        // fixed buffers stay pinned until it has seen every completion and
        // the ring is dropped, then them.
        let fixed = std::mem::take(&mut self.fixed).into_values().map(|(_, pin)| pin);
        self.shared.keep.lock().unwrap_or_else(|p| p.into_inner()).extend(fixed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Completion;
    use runtime_mm::{gup, GupFlags, Mm, MmConfig};
    use std::time::Duration;

    /// A 1 MiB memory to pin.
    fn memory() -> Arc<Mm> {
        Mm::new(MmConfig {
            initial_bytes: 1 << 20,
            ..Default::default()
        })
        .unwrap()
    }

    /// A read of one page from `fd` into the start of `pages`, and its
    /// completion.
    fn read_into(fd: &Arc<std::fs::File>, pages: &Arc<PinnedPages>) -> (Op, Arc<Completion>) {
        let done = Arc::new(Completion::default());
        let op = Op {
            read: true,
            fd: fd.clone(),
            pages: pages.clone(),
            ptr: pages.as_mut_ptr().unwrap(),
            len: 4096,
            offset: 0,
            append: false,
            done: done.clone(),
        };
        (op, done)
    }

    /// Reads from an empty pipe never complete on their own: the queue fills
    /// deterministically, and dropping the backend must cancel them, report
    /// `Canceled` and release their pins.
    #[test]
    fn full_queue_is_again_and_drop_cancels_blocked_reads() {
        let Ok(mut ring) = Uring::new(2, Duration::from_secs(5)) else {
            println!("skipped: io_uring is unavailable here");
            return;
        };
        let pages = Arc::new(gup::pin_user_pages(&memory(), 0, 4, GupFlags::WRITE).unwrap());
        let (rx, _tx) = rustix::pipe::pipe().unwrap();
        let rx = Arc::new(std::fs::File::from(rx));
        let mut op = || {
            let (op, done) = read_into(&rx, &pages);
            (ring.submit(op), done)
        };
        let (a, da) = op();
        let (b, db) = op();
        let (c, _) = op();
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(c.unwrap_err(), Errno::Again, "a third read into a queue of 2");
        assert_eq!(
            da.wait(Duration::from_millis(50)),
            None,
            "a pipe read with no writer data blocks"
        );
        assert_eq!(ring.in_flight(), 2);
        drop(ring);
        assert_eq!(da.poll(), Some(Err(Errno::Canceled)));
        assert_eq!(db.poll(), Some(Err(Errno::Canceled)));
        assert_eq!(Arc::strong_count(&pages), 1, "the cancelled reads released their pins");
    }

    /// The reaper threads alive now (by name).
    fn reapers() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "wasm-pin-uring")
            .count()
    }

    /// Many rings, one reaper thread for all of them.
    #[test]
    fn rings_share_one_reaper_thread() {
        let Ok(first) = Uring::new(2, Duration::from_secs(5)) else {
            println!("skipped: io_uring is unavailable here");
            return;
        };
        let rings: Vec<_> = (0..16)
            .map(|_| Uring::new(2, Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(reapers(), 1, "17 rings, one reaper");
        drop(rings);
        drop(first);
        assert!(reapers() <= 1);
    }

    /// A ring dropped with no time to wait, while a read is in the kernel and
    /// its long-term pin is a registered fixed buffer: the drop returns at
    /// once and the ring is detached (the reaper is held back here, so it
    /// cannot finish first). Both the transfer's and the fixed buffer's
    /// clone of the pin stay held until the reaper has seen the cancelled
    /// read complete; then both are released.
    #[test]
    fn a_detached_ring_keeps_its_pins_until_the_kernel_is_done() {
        let Ok(mut ring) = Uring::new(2, Duration::ZERO) else {
            println!("skipped: io_uring is unavailable here");
            return;
        };
        let pages = Arc::new(gup::pin_longterm_pages(&memory(), 0, 4, GupFlags::WRITE).unwrap());
        ring.remember(&pages);
        let (rx, _tx) = rustix::pipe::pipe().unwrap();
        let (op, done) = read_into(&Arc::new(std::fs::File::from(rx)), &pages);
        ring.submit(op).unwrap();
        let fixed = ring.fixed.len();
        if fixed == 0 {
            println!("fixed buffers unavailable here: only the transfer's pin is checked");
        }
        assert_eq!(Arc::strong_count(&pages), 2 + fixed);

        let stall = super::super::reaper::stall();
        let started = Instant::now();
        drop(ring);
        assert!(started.elapsed() < Duration::from_millis(500), "the drop did not wait");
        assert_eq!(
            Arc::strong_count(&pages),
            2 + fixed,
            "the transfer's and the fixed buffer's pins outlive the drop"
        );
        assert_eq!(done.poll(), None);
        drop(stall);

        let until = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&pages) > 1 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(Arc::strong_count(&pages), 1, "released once the kernel was done");
        assert_eq!(done.poll(), Some(Err(Errno::Canceled)));
    }

    /// The reaper never waits for a guest's syscall: while one owner holds
    /// its submission lock (as during a long `io_uring_enter` or a buffer
    /// registration), the reaper still completes that ring's transfers and
    /// another ring's.
    #[test]
    fn a_busy_submitter_delays_no_completion() {
        let (Ok(mut a), Ok(mut b)) = (
            Uring::new(2, Duration::from_secs(5)),
            Uring::new(2, Duration::from_secs(5)),
        ) else {
            println!("skipped: io_uring is unavailable here");
            return;
        };
        let pages = Arc::new(gup::pin_user_pages(&memory(), 0, 2, GupFlags::WRITE).unwrap());
        let read = |ring: &mut Uring| {
            let (rx, tx) = rustix::pipe::pipe().unwrap();
            let (op, done) = read_into(&Arc::new(std::fs::File::from(rx)), &pages);
            ring.submit(op).unwrap();
            (tx, done)
        };
        let (tx_a, done_a) = read(&mut a);
        let (tx_b, done_b) = read(&mut b);
        let busy = a.shared.sq();
        for tx in [&tx_a, &tx_b] {
            rustix::io::write(tx, b"data").unwrap();
        }
        assert_eq!(
            done_b.wait(Duration::from_secs(5)),
            Some(Ok(4)),
            "the other ring's read"
        );
        assert_eq!(
            done_a.wait(Duration::from_secs(5)),
            Some(Ok(4)),
            "the busy ring's own read"
        );
        drop(busy);
        assert_eq!(Arc::strong_count(&pages), 1, "both pins released on completion");
    }
}
