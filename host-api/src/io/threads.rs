//! The worker-thread backend: a bounded queue of transfers served by a few
//! threads calling `pread`/`pwrite` on the guest's pinned pages.
//!
//! At most `depth` transfers are in flight, queued or taken by a worker
//! (`IoConfig::queue_depth`); one more is refused with `again`, so the
//! workers never hold more pins than the depth admits. Cancelling a transfer
//! that no worker has started completes it with `canceled` without touching
//! the buffer; one already running finishes. Only queued transfers are
//! tracked (`pending`), so cancelling one that already ran leaves nothing
//! behind.
//!
//! Dropping the backend cancels everything queued and waits for the workers
//! up to `shutdown_wait`. A worker still inside a syscall then (a `pread` on
//! a hung device never returns) is **detached**, not waited for: it owns its
//! transfer, whose `Arc<PinnedPages>` keeps the pages pinned and mapped and
//! whose `Arc<OwnedFd>` keeps the file open, so whatever the kernel writes
//! later lands in pinned guest pages, and the pin is released when the
//! syscall returns and the worker exits. The store's drop is never blocked
//! for longer than the wait.

use super::{Backend, BackendKind, IoCounts, Op};
use runtime_mm::Errno;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a worker does with a transfer (a parameter so tests can stand in a
/// syscall that never returns).
pub(crate) type Exec = fn(&Op) -> Result<u32, Errno>;

fn exec_transfer(op: &Op) -> Result<u32, Errno> {
    op.run()
}

struct Shared {
    /// Queued transfers not yet taken by a worker: id → cancel requested.
    pending: Mutex<HashMap<u64, bool>>,
    in_flight: AtomicUsize,
    shutdown: AtomicBool,
}

pub(crate) struct Threads {
    tx: Option<SyncSender<(u64, Op)>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    next: u64,
    /// Most transfers in flight (queued or running) at once.
    depth: usize,
    shutdown_wait: Duration,
}

impl Threads {
    pub(crate) fn new(threads: usize, depth: u32, shutdown_wait: Duration) -> Threads {
        Threads::with_exec(threads, depth, shutdown_wait, exec_transfer)
    }

    pub(crate) fn with_exec(threads: usize, depth: u32, shutdown_wait: Duration, exec: Exec) -> Threads {
        let depth = depth.max(1) as usize;
        let (tx, rx) = sync_channel::<(u64, Op)>(depth);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let workers = (0..threads)
            .map(|i| {
                let (rx, shared) = (rx.clone(), shared.clone());
                std::thread::Builder::new()
                    .name(format!("wasm-pin-io-{i}"))
                    .spawn(move || worker(&rx, &shared, exec))
                    .expect("spawning an I/O worker")
            })
            .collect();
        Threads {
            tx: Some(tx),
            workers,
            shared,
            next: 0,
            depth,
            shutdown_wait,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, bool>> {
        self.shared.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn worker(rx: &Mutex<Receiver<(u64, Op)>>, shared: &Shared, exec: Exec) {
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((id, op)) = next else { return };
        let cancelled = shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .unwrap_or(false);
        let r = if cancelled || shared.shutdown.load(Ordering::Acquire) {
            Err(Errno::Canceled)
        } else {
            exec(&op)
        };
        // Release the pin and the file before reporting, so a guest that saw
        // the completion sees the pages unpinned by this transfer.
        let done = op.done.clone();
        drop(op);
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        done.complete(r);
    }
}

impl Backend for Threads {
    fn submit(&mut self, op: Op) -> Result<u64, Errno> {
        self.next += 1;
        let id = self.next;
        let tx = self.tx.as_ref().ok_or(Errno::Canceled)?;
        // The channel bounds only what waits in it; a transfer a worker took
        // still holds its pin, so the depth counts it too. Only this thread
        // adds (`&mut self`), so the check cannot race another submission.
        if self.shared.in_flight.load(Ordering::Acquire) >= self.depth {
            self.next -= 1;
            return Err(Errno::Again);
        }
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        // Listed before it is queued, so a worker always finds its entry.
        self.pending().insert(id, false);
        match tx.try_send((id, op)) {
            Ok(()) => Ok(id),
            Err(e) => {
                self.pending().remove(&id);
                self.next -= 1;
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    TrySendError::Full(_) => Errno::Again,
                    TrySendError::Disconnected(_) => Errno::Canceled,
                })
            }
        }
    }

    fn cancel(&mut self, id: u64) {
        // Only a queued transfer can still be cancelled; for one a worker
        // took (running or done) there is nothing to record.
        if let Some(c) = self.pending().get_mut(&id) {
            *c = true;
        }
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Threads
    }

    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    fn tracked(&self) -> usize {
        self.pending().len()
    }

    fn counts(&self) -> IoCounts {
        IoCounts {
            submitted: self.next,
            ..IoCounts::default()
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        drop(self.tx.take()); // workers drain the queue (as cancelled) and exit
        let deadline = Instant::now() + self.shutdown_wait;
        join_until(self.workers.drain(..).collect(), deadline);
    }
}

/// Joins the threads that finish by `deadline`; the rest are detached (see
/// the module docs for why that is safe). Returns how many were detached.
pub(crate) fn join_until(threads: Vec<JoinHandle<()>>, deadline: Instant) -> usize {
    let mut left = threads;
    loop {
        let (done, running): (Vec<_>, Vec<_>) = left.into_iter().partition(JoinHandle::is_finished);
        for t in done {
            let _ = t.join();
        }
        left = running;
        if left.is_empty() || Instant::now() >= deadline {
            return left.len();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Completion;
    use runtime_mm::{gup, GupFlags, Mm, MmConfig};

    fn op(read: bool) -> (Op, Arc<Completion>, Arc<Mm>) {
        let mm = Mm::new(MmConfig {
            initial_bytes: 1 << 16,
            ..Default::default()
        })
        .unwrap();
        let pages = Arc::new(gup::pin_user_pages(&mm, 0, 1, GupFlags::WRITE).unwrap());
        let fd = std::fs::File::open("/dev/zero").unwrap();
        let done = Arc::new(Completion::default());
        let op = Op {
            read,
            fd: Arc::new(fd),
            ptr: pages.as_mut_ptr().unwrap(),
            pages,
            len: 4096,
            offset: 0,
            append: false,
            done: done.clone(),
        };
        (op, done, mm)
    }

    /// Issue 9.6: a ticket dropped after completion leaves no id behind.
    #[test]
    fn cancelling_a_finished_transfer_tracks_nothing() {
        let mut t = Threads::new(1, 8, Duration::from_secs(5));
        for _ in 0..100 {
            let (op, done, _mm) = op(true);
            let id = t.submit(op).unwrap();
            assert_eq!(done.wait(Duration::from_secs(5)), Some(Ok(4096)));
            t.cancel(id);
        }
        assert_eq!(t.tracked(), 0);
        assert_eq!(t.in_flight(), 0);
    }

    static STUCK: AtomicBool = AtomicBool::new(true);

    /// Stands in for a `pread` on a hung device: returns only when told.
    fn hang(_: &Op) -> Result<u32, Errno> {
        while STUCK.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(0)
    }

    /// Issue 9.6: a transfer that never returns does not block the drop
    /// beyond its bound; the detached worker keeps the pin until it returns.
    #[test]
    fn a_hung_transfer_bounds_the_drop_and_keeps_its_pin() {
        let mut t = Threads::with_exec(1, 4, Duration::from_millis(50), hang);
        let (op, done, mm) = op(true);
        t.submit(op).unwrap();
        while !t.pending().is_empty() {
            std::thread::yield_now(); // wait for the worker to take it
        }
        let started = Instant::now();
        drop(t);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "drop waited {:?}",
            started.elapsed()
        );
        assert!(mm.page_maybe_dma_pinned(0), "the stuck transfer still holds its pin");
        assert_eq!(done.poll(), None);
        STUCK.store(false, Ordering::Release);
        assert_eq!(done.wait(Duration::from_secs(5)), Some(Ok(0)));
        assert!(!mm.page_maybe_dma_pinned(0), "released when the syscall returned");
    }

    static GATE: AtomicBool = AtomicBool::new(true);

    /// A transfer that runs until the test opens `GATE`.
    fn gated(op: &Op) -> Result<u32, Errno> {
        while GATE.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(op.len)
    }

    /// Takes a transfer to a worker: returns once no transfer is queued.
    fn running(t: &Threads) {
        while !t.pending().is_empty() {
            std::thread::yield_now();
        }
    }

    /// The queue's bookkeeping: ids, in flight, queued, refused (`again`,
    /// not counted), and a queued transfer cancelled before a worker takes
    /// it completes `canceled` without running. The depth (2) counts the
    /// transfer the worker took: a third is `again` though the channel has
    /// room for it.
    #[test]
    fn a_full_queue_is_again_and_a_queued_transfer_cancels() {
        let mut t = Threads::with_exec(1, 2, Duration::from_secs(5), gated);
        let ((a, done_a, _ma), (b, done_b, _mb), (c, done_c, _mc)) = (op(true), op(true), op(true));
        let ia = t.submit(a).unwrap();
        running(&t);
        let ib = t.submit(b).unwrap();
        assert_ne!(ia, ib);
        assert_eq!((t.in_flight(), t.tracked()), (2, 1));
        assert_eq!(t.submit(c).unwrap_err(), Errno::Again);
        assert_eq!(done_c.poll(), None, "a refused transfer never completes");
        assert_eq!((t.in_flight(), t.tracked(), t.counts().submitted), (2, 1, 2));
        t.cancel(ib);
        GATE.store(false, Ordering::Release);
        assert_eq!(done_a.wait(Duration::from_secs(5)), Some(Ok(4096)));
        assert_eq!(done_b.wait(Duration::from_secs(5)), Some(Err(Errno::Canceled)));
        assert_eq!((t.in_flight(), t.tracked()), (0, 0));
    }

    static GATE3: AtomicBool = AtomicBool::new(true);

    fn gated3(op: &Op) -> Result<u32, Errno> {
        while GATE3.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(op.len)
    }

    /// Depth 1 with four idle workers: the transfer a worker runs is the one
    /// in flight, and a second is `again` (before, each worker could take
    /// one and the channel queue one more: `depth + threads` pins).
    #[test]
    fn the_depth_counts_transfers_a_worker_took() {
        let mut t = Threads::with_exec(4, 1, Duration::from_secs(5), gated3);
        let ((a, done_a, _ma), (b, done_b, _mb)) = (op(true), op(true));
        t.submit(a).unwrap();
        running(&t);
        assert_eq!(t.submit(b).unwrap_err(), Errno::Again);
        assert_eq!((t.in_flight(), t.counts().submitted), (1, 1));
        GATE3.store(false, Ordering::Release);
        assert_eq!(done_a.wait(Duration::from_secs(5)), Some(Ok(4096)));
        assert_eq!(done_b.poll(), None, "a refused transfer never completes");
        assert_eq!(t.in_flight(), 0);
    }

    static GATE2: AtomicBool = AtomicBool::new(true);

    fn gated2(op: &Op) -> Result<u32, Errno> {
        while GATE2.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(op.len)
    }

    /// Dropping the backend waits, within its bound, for the transfer a
    /// worker runs, and completes the queued ones `canceled` instead of
    /// running them.
    #[test]
    fn a_drop_waits_for_the_running_transfer_and_cancels_the_queued() {
        let mut t = Threads::with_exec(1, 4, Duration::from_secs(5), gated2);
        let ((a, done_a, _ma), (b, done_b, _mb)) = (op(true), op(true));
        t.submit(a).unwrap();
        running(&t);
        t.submit(b).unwrap();
        let opener = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            GATE2.store(false, Ordering::Release);
        });
        drop(t);
        assert_eq!(done_a.poll(), Some(Ok(4096)), "the drop joined the worker");
        assert_eq!(done_b.poll(), Some(Err(Errno::Canceled)));
        opener.join().unwrap();
    }
}
