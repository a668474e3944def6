//! The worker-thread backend: a store's bounded queue of transfers, run by
//! the process's shared worker threads ([`workers`](super::workers))
//! calling `pread`/`pwrite` on the guest's pinned pages.
//!
//! At most `depth` transfers are in flight, queued or running
//! (`IoConfig::queue_depth`); one more is refused with `again`, so the
//! workers never hold more pins than the depth admits. At most `threads` of
//! them run at once (`IoConfig::threads`): a store occupies at most that
//! many shared workers, whatever its depth, so a tenant whose device hangs
//! ties up that many and no more. Cancelling a transfer that no worker has
//! started completes it with `canceled` at once, releasing its pin, without
//! touching the buffer; one already running finishes.
//!
//! # Protocol
//!
//! The store's `Queue` (one lock) holds its waiting transfers, how many of
//! its jobs the pool has (`jobs`, at most `threads`) and how many
//! transfers those jobs have taken and not yet reported (`running`).
//! `submit` queues the transfer and, below `threads` jobs, counts a new job
//! and hands it to the pool after releasing the lock (if no worker can
//! start and no other job of the store exists, it takes the transfer back
//! and refuses it with `again`). A job takes the queue's front transfer,
//! runs it outside the lock, releases its pin and reports it, and goes on
//! with the next; it ends (`jobs - 1`) when it finds the queue empty, and
//! hands itself back to the pool's queue when the pool is at its limit with
//! another job waiting ([`workers::contended`]), so stores take turns
//! there. Emptiness and `jobs` are checked and changed under the lock, so a
//! transfer queued while a job ends is taken by that job or gets a new one.
//! A transfer leaves the queue under the lock exactly once: taken by a job,
//! or removed by `cancel` or the drop, so it runs or is cancelled, never
//! both. A transfer that panics fails with `io`; the job's books stay
//! right.
//!
//! Dropping the backend completes everything queued as `canceled`, and
//! waits up to `shutdown_wait` for the running transfers to be reported.
//! One still inside a syscall then (a `pread` on a hung device never
//! returns) is **detached**, not waited for: its worker owns the transfer,
//! whose `Arc<PinnedPages>` keeps the pages pinned and mapped and whose
//! `Arc<OwnedFd>` keeps the file open, so whatever the kernel writes later
//! lands in pinned guest pages, and the pin is released when the syscall
//! returns. The store's drop is never blocked for longer than the wait.

use super::{workers, Backend, BackendKind, IoCounts, Op};
use runtime_mm::Errno;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a worker does with a transfer (a parameter so tests can stand in a
/// syscall that never returns).
pub(crate) type Exec = fn(&Op) -> Result<u32, Errno>;

fn exec_transfer(op: &Op) -> Result<u32, Errno> {
    op.run()
}

struct Queue {
    /// Transfers no job has taken yet, oldest first.
    waiting: VecDeque<(u64, Op)>,
    /// This store's jobs the pool holds (queued or on a worker).
    jobs: usize,
    /// Transfers a job took and has not yet completed (reported): what the
    /// drop waits for.
    running: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Queued or running: what the depth bounds.
    in_flight: AtomicUsize,
    /// Most jobs at once (`IoConfig::threads`).
    threads: usize,
    exec: Exec,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Transfers run outside the lock; a poisoned lock only means a panic
        // between two consistent states.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Completes `op` with `r` after releasing its pin and file, so a guest that
/// saw the completion sees the pages unpinned by this transfer.
fn finish(shared: &Shared, op: Op, r: Result<u32, Errno>) {
    let done = op.done.clone();
    drop(op);
    shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    done.complete(r);
}

/// A pool job: runs `shared`'s transfers (see the protocol).
fn job(shared: Arc<Shared>) {
    let mut q = shared.lock();
    loop {
        let Some((_, op)) = q.waiting.pop_front() else {
            q.jobs -= 1;
            return;
        };
        q.running += 1;
        drop(q);
        // A panic in a transfer (or in a waker the completion calls) must
        // not lose the store's books: the transfer fails with `io`, and the
        // job goes on.
        let r = catch_unwind(AssertUnwindSafe(|| (shared.exec)(&op))).unwrap_or(Err(Errno::Io));
        let _ = catch_unwind(AssertUnwindSafe(|| finish(&shared, op, r)));
        q = shared.lock();
        q.running -= 1;
        if !q.waiting.is_empty() && workers::contended() {
            // The pool is at its limit and another job waits for a worker:
            // go to the back of the line. (A refusal means no worker can
            // start; this one goes on.)
            let me = shared.clone();
            drop(q);
            if workers::execute(Box::new(move || job(me))).is_ok() {
                return;
            }
            q = shared.lock();
        }
    }
}

pub(crate) struct Threads {
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
        Threads {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    waiting: VecDeque::new(),
                    jobs: 0,
                    running: 0,
                }),
                in_flight: AtomicUsize::new(0),
                threads: threads.max(1),
                exec,
            }),
            next: 0,
            depth: depth.max(1) as usize,
            shutdown_wait,
        }
    }
}

impl Backend for Threads {
    fn submit(&mut self, op: Op) -> Result<u64, Errno> {
        // Only this thread adds (`&mut self`), so the check cannot race
        // another submission; a running transfer still holds its pin, so
        // the depth counts it too.
        if self.shared.in_flight.load(Ordering::Acquire) >= self.depth {
            return Err(Errno::Again);
        }
        let id = self.next + 1;
        let mut q = self.shared.lock();
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        q.waiting.push_back((id, op));
        let start = q.jobs < self.shared.threads;
        if start {
            q.jobs += 1;
        }
        drop(q); // a job may start at once; it takes the lock
        if start {
            let shared = self.shared.clone();
            if workers::execute(Box::new(move || job(shared))).is_err() {
                // No worker can start. Unless another of the store's jobs
                // runs (it will take the transfer), refuse it, untouched.
                let mut q = self.shared.lock();
                q.jobs -= 1;
                if q.jobs == 0 {
                    if let Some(at) = q.waiting.iter().position(|(i, _)| *i == id) {
                        let (_, op) = q.waiting.remove(at).expect("found above");
                        drop(q);
                        drop(op);
                        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                        return Err(Errno::Again);
                    }
                }
            }
        }
        self.next = id;
        Ok(id)
    }

    fn cancel(&mut self, id: u64) {
        // Only a queued transfer can still be cancelled; for one a job took
        // (running or done) there is nothing to do.
        let mut q = self.shared.lock();
        if let Some(at) = q.waiting.iter().position(|(i, _)| *i == id) {
            let (_, op) = q.waiting.remove(at).expect("found above");
            drop(q);
            finish(&self.shared, op, Err(Errno::Canceled));
        }
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Threads
    }

    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    fn tracked(&self) -> usize {
        self.shared.lock().waiting.len()
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
        // Nothing submits after this: the backend is gone.
        let queued = std::mem::take(&mut self.shared.lock().waiting);
        for (_, op) in queued {
            finish(&self.shared, op, Err(Errno::Canceled));
        }
        // Then the running ones, until their completions are reported.
        let deadline = Instant::now() + self.shutdown_wait;
        while self.shared.lock().running > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Completion;
    use runtime_mm::{gup, GupFlags, Mm, MmConfig};
    use std::sync::atomic::AtomicBool;

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

    /// Returns once a worker has taken every queued transfer.
    fn running(t: &Threads) {
        while t.tracked() > 0 {
            std::thread::yield_now();
        }
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
        running(&t);
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

    /// What a test's gated transfers wait on until the test opens it (each
    /// test its own gate: tests run in parallel), and how many of them run
    /// now and at most.
    struct Gate {
        shut: AtomicBool,
        running: AtomicUsize,
        peak: AtomicUsize,
    }

    static GATES: [Gate; 5] = [const {
        Gate {
            shut: AtomicBool::new(true),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }; 5];

    /// A transfer that runs until the test opens gate `G`.
    fn gated<const G: usize>(op: &Op) -> Result<u32, Errno> {
        let g = &GATES[G];
        let now = g.running.fetch_add(1, Ordering::AcqRel) + 1;
        g.peak.fetch_max(now, Ordering::AcqRel);
        while g.shut.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        g.running.fetch_sub(1, Ordering::AcqRel);
        Ok(op.len)
    }

    fn open(g: usize) {
        GATES[g].shut.store(false, Ordering::Release);
    }

    /// The queue's bookkeeping: ids, in flight, queued, refused (`again`,
    /// not counted), and a queued transfer cancelled before a worker takes
    /// it completes `canceled` without running. The depth (2) counts the
    /// transfer the worker took: a third is `again` though the channel has
    /// room for it.
    #[test]
    fn a_full_queue_is_again_and_a_queued_transfer_cancels() {
        let mut t = Threads::with_exec(1, 2, Duration::from_secs(5), gated::<0>);
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
        open(0);
        assert_eq!(done_a.wait(Duration::from_secs(5)), Some(Ok(4096)));
        assert_eq!(done_b.wait(Duration::from_secs(5)), Some(Err(Errno::Canceled)));
        assert_eq!((t.in_flight(), t.tracked()), (0, 0));
    }

    /// Depth 1 with four idle workers: the transfer a worker runs is the one
    /// in flight, and a second is `again` (before, each worker could take
    /// one and the channel queue one more: `depth + threads` pins).
    #[test]
    fn the_depth_counts_transfers_a_worker_took() {
        let mut t = Threads::with_exec(4, 1, Duration::from_secs(5), gated::<1>);
        let ((a, done_a, _ma), (b, done_b, _mb)) = (op(true), op(true));
        t.submit(a).unwrap();
        running(&t);
        assert_eq!(t.submit(b).unwrap_err(), Errno::Again);
        assert_eq!((t.in_flight(), t.counts().submitted), (1, 1));
        open(1);
        assert_eq!(done_a.wait(Duration::from_secs(5)), Some(Ok(4096)));
        assert_eq!(done_b.poll(), None, "a refused transfer never completes");
        assert_eq!(t.in_flight(), 0);
    }

    /// Dropping the backend waits, within its bound, for the transfer a
    /// worker runs, and completes the queued ones `canceled` instead of
    /// running them.
    #[test]
    fn a_drop_waits_for_the_running_transfer_and_cancels_the_queued() {
        let mut t = Threads::with_exec(1, 4, Duration::from_secs(5), gated::<2>);
        let ((a, done_a, _ma), (b, done_b, _mb)) = (op(true), op(true));
        t.submit(a).unwrap();
        running(&t);
        t.submit(b).unwrap();
        let opener = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            open(2);
        });
        drop(t);
        assert_eq!(done_a.poll(), Some(Ok(4096)), "the drop waited for its completion");
        assert_eq!(done_b.poll(), Some(Err(Errno::Canceled)));
        opener.join().unwrap();
    }

    /// Threads follow running transfers, not stores: 200 idle backends start
    /// no thread (the old backend started 2 per store), 40 stores with one
    /// blocked transfer each run on 40 shared workers at once, and trimmed
    /// idle workers exit.
    #[test]
    fn stores_share_workers_started_for_their_transfers() {
        let _pool = workers::exclusive();
        let tasks = || std::fs::read_dir("/proc/self/task").unwrap().count();
        let before = tasks();
        let idle: Vec<_> = (0..200).map(|_| Threads::new(2, 8, Duration::from_secs(5))).collect();
        // (Other tests of this binary may start a few threads meanwhile.)
        assert!(
            tasks() < before + 50,
            "200 idle stores started no threads: {before} then {}",
            tasks()
        );
        drop(idle);
        let mut stores: Vec<_> = (0..40)
            .map(|_| Threads::with_exec(2, 8, Duration::from_secs(5), gated::<3>))
            .collect();
        let ops: Vec<_> = stores
            .iter_mut()
            .map(|t| {
                let (op, done, mm) = op(true);
                t.submit(op).unwrap();
                (done, mm)
            })
            .collect();
        let started = Instant::now();
        while GATES[3].running.load(Ordering::Acquire) < 40 {
            assert!(started.elapsed() < Duration::from_secs(10), "40 transfers run at once");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(workers::workers().0 >= 40);
        open(3);
        for (done, _mm) in &ops {
            assert_eq!(done.wait(Duration::from_secs(5)), Some(Ok(4096)));
        }
        // Trimmed, the idle workers exit (other tests of this binary may
        // keep a few busy: ask until fewer than 40 are left).
        let deadline = Instant::now() + Duration::from_secs(10);
        while workers::workers().0 >= 40 {
            assert!(Instant::now() < deadline, "workers left: {:?}", workers::workers());
            workers::trim(Duration::from_millis(100));
        }
    }

    /// A store runs at most `threads` transfers at once, whatever its depth
    /// (a hung device ties up that many shared workers, no more); the rest
    /// wait in its queue, a cancelled one completes at once, and all others
    /// run in turn.
    #[test]
    fn a_store_runs_at_most_threads_transfers_at_once() {
        let _pool = workers::exclusive();
        let mut t = Threads::with_exec(2, 8, Duration::from_secs(5), gated::<4>);
        let mut held = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..6 {
            let (op, done, mm) = op(true);
            ids.push(t.submit(op).unwrap());
            held.push((done, mm));
        }
        let started = Instant::now();
        while GATES[4].running.load(Ordering::Acquire) < 2 {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(GATES[4].running.load(Ordering::Acquire), 2, "two run, four wait");
        assert_eq!((t.in_flight(), t.tracked()), (6, 4));
        t.cancel(ids[5]);
        assert_eq!(held[5].0.poll(), Some(Err(Errno::Canceled)), "completed at once");
        assert!(!held[5].1.page_maybe_dma_pinned(0), "its pin released at once");
        open(4);
        for (done, _) in &held[..5] {
            assert_eq!(done.wait(Duration::from_secs(5)), Some(Ok(4096)));
        }
        assert_eq!(GATES[4].peak.load(Ordering::Acquire), 2);
        assert_eq!((t.in_flight(), t.tracked()), (0, 0));
    }

    static PANICS: AtomicBool = AtomicBool::new(true);

    /// The first transfer panics (once), the next succeeds.
    fn panics_once(op: &Op) -> Result<u32, Errno> {
        if PANICS.swap(false, Ordering::AcqRel) {
            panic!("a transfer that panics");
        }
        Ok(op.len)
    }

    /// A transfer that panics fails with `io`, its pin released, and its
    /// store's one job goes on: the next transfer runs and nothing stays
    /// counted.
    #[test]
    fn a_panicking_transfer_fails_and_its_store_goes_on() {
        let mut t = Threads::with_exec(1, 4, Duration::from_secs(5), panics_once);
        let ((a, done_a, ma), (b, done_b, _mb)) = (op(true), op(true));
        t.submit(a).unwrap();
        assert_eq!(done_a.wait(Duration::from_secs(5)), Some(Err(Errno::Io)));
        assert!(!ma.page_maybe_dma_pinned(0), "the panicked transfer's pin is gone");
        t.submit(b).unwrap();
        assert_eq!(done_b.wait(Duration::from_secs(5)), Some(Ok(4096)));
        assert_eq!((t.in_flight(), t.tracked()), (0, 0));
        let started = Instant::now();
        drop(t);
        assert!(started.elapsed() < Duration::from_secs(1), "nothing left running");
    }

    static ORDER: AtomicUsize = AtomicUsize::new(0);
    static B_DONE_AT: AtomicUsize = AtomicUsize::new(0);

    /// Store A's transfers: 20 ms each.
    fn slow_a(op: &Op) -> Result<u32, Errno> {
        std::thread::sleep(Duration::from_millis(20));
        ORDER.fetch_add(1, Ordering::AcqRel);
        Ok(op.len)
    }

    /// Store B's transfer: notes when it ran, among all transfers.
    fn quick_b(op: &Op) -> Result<u32, Errno> {
        B_DONE_AT.store(ORDER.fetch_add(1, Ordering::AcqRel) + 1, Ordering::Release);
        Ok(op.len)
    }

    /// Puts the pool's limit back however the test ends.
    struct Limit(usize);

    impl Drop for Limit {
        fn drop(&mut self) {
            workers::set_limit(self.0);
        }
    }

    /// At the pool's limit, stores take turns: store A's two jobs hold both
    /// workers of a 2-worker pool with 6 transfers queued, and store B's one
    /// transfer runs after A's first ones, not after A's whole queue.
    #[test]
    fn at_the_pool_limit_stores_take_turns() {
        let _pool = workers::exclusive();
        let _restore = Limit(workers::limit());
        workers::trim(Duration::from_secs(5)); // no idle worker above the limit
        workers::set_limit(2);
        let mut a = Threads::with_exec(2, 8, Duration::from_secs(5), slow_a);
        let mut b = Threads::with_exec(2, 8, Duration::from_secs(5), quick_b);
        let a_ops: Vec<_> = (0..6)
            .map(|_| {
                let (op, done, mm) = op(true);
                a.submit(op).unwrap();
                (done, mm)
            })
            .collect();
        let (op_b, done_b, _mb) = op(true);
        b.submit(op_b).unwrap();
        assert_eq!(done_b.wait(Duration::from_secs(5)), Some(Ok(4096)));
        for (done, _) in &a_ops {
            assert_eq!(done.wait(Duration::from_secs(5)), Some(Ok(4096)));
        }
        let at = B_DONE_AT.load(Ordering::Acquire);
        assert!(
            at <= 4,
            "B's transfer ran {at}th of 7: it waited for A's queue instead of taking turns"
        );
    }
}
