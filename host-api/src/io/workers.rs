//! The process's I/O worker threads, shared by every store's thread backend
//! (`threads`), as the io_uring rings share one reaper thread.
//!
//! ```text
//!   store A's Threads ─┐  execute(job)      ┌─► worker ─ job: runs A's queued transfers
//!   store B's Threads ─┼──► jobs (FIFO) ────┼─► worker ─ job: runs B's ...
//!   store C's Threads ─┘                    └─► (spawned on demand, up to WORKER_LIMIT;
//!                                                an idle one exits after KEEP_ALIVE)
//! ```
//!
//! # Protocol
//!
//! One lock (`STATE`) holds the job queue and three counts: `live` workers,
//! `idle` ones (waiting on the condition variable, not promised a job) and
//! `wakeups` (idle workers `execute` woke and took out of `idle` for a job).
//!
//! - `execute` queues the job, then: an idle worker exists → move it from
//!   `idle` to `wakeups` and notify one; else, below the limit → spawn a
//!   worker (counted in `live` before it starts); else the job waits for the
//!   next worker that finishes one. So a queued job never waits while a
//!   worker sleeps, and no two jobs count on one wake-up.
//! - A worker takes jobs while there are any. With none, it waits: woken
//!   with a wake-up owed (`wakeups > 0`) it takes one and looks again; after
//!   [`KEEP_ALIVE`] with no wake-up, or when [`trim`] asks, it leaves
//!   `idle` and `live` and exits. Spurious wake-ups just wait again.
//! - A job that panics is caught: the worker lives on.
//!
//! This is tokio's blocking pool's scheme (`spawn_blocking`): threads follow
//! the transfers actually running, not the number of stores; the old
//! backend started `IoConfig::threads` threads per store (1,024 for 512
//! idle tenants). A store's own limits (its depth, its running transfers)
//! are the thread backend's business: it queues one job per transfer it
//! may run, and a job runs that store's transfers until its queue is empty
//! or another store's job is waiting ([`contended`]), so stores take turns
//! when the pool is at its limit.
//!
//! A job stuck in a syscall (a `pread` on a hung device) keeps its worker;
//! the pool grows past it, up to the limit.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Most worker threads the process runs at once (tokio's blocking pool has
/// the same default). A job queued at the limit waits for a worker.
pub const WORKER_LIMIT: usize = 512;

/// How long an idle worker waits for a job before it exits.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct State {
    jobs: VecDeque<Job>,
    live: usize,
    idle: usize,
    wakeups: usize,
    /// Idle workers exit now ([`trim`]); cleared when a job is queued.
    trim: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    jobs: VecDeque::new(),
    live: 0,
    idle: 0,
    wakeups: 0,
    trim: false,
});
/// Idle workers wait here for a job.
static WAKE: Condvar = Condvar::new();
/// [`trim`] waits here for idle workers to exit (its own condition
/// variable: a `notify_one` meant for a worker must never wake it).
static GONE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, State> {
    // Jobs run outside the lock and panics in them are caught: a poisoned
    // lock only means a panic between two consistent states.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `job` on a worker thread. Fails (`Err` with the job back) only when
/// no worker exists and none can be started (the system's thread limit):
/// the caller refuses its transfer rather than queue it with no one to run
/// it.
pub(crate) fn execute(job: Job) -> Result<(), Job> {
    let mut s = lock();
    s.trim = false;
    s.jobs.push_back(job);
    if s.idle > 0 {
        s.idle -= 1;
        s.wakeups += 1;
        WAKE.notify_one();
        return Ok(());
    }
    if s.live >= WORKER_LIMIT {
        return Ok(()); // the next worker to finish a job takes it
    }
    s.live += 1;
    let spawned = std::thread::Builder::new().name("wasm-pin-io".into()).spawn(worker);
    match spawned {
        Ok(_) => Ok(()), // detached: it exits on its own, see `worker`
        Err(_) => {
            s.live -= 1;
            if s.live > 0 {
                Ok(()) // a live worker will take it
            } else {
                Err(s.jobs.pop_back().expect("the job just queued"))
            }
        }
    }
}

/// Whether a queued job waits for a worker: a job that could go on with
/// its store's next transfer yields instead.
pub(crate) fn contended() -> bool {
    !lock().jobs.is_empty()
}

/// Asks the idle workers to exit now instead of after [`KEEP_ALIVE`], and
/// waits up to `wait` until none is left idle. Busy workers are untouched;
/// the next job starts a worker again. For an embedder that wants a quiet
/// process (and the soak's thread-leak check).
pub fn trim(wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    let mut s = lock();
    s.trim = true;
    WAKE.notify_all();
    while s.idle > 0 && s.trim {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        s = GONE.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
    }
}

/// Worker threads alive now: `(live, idle)`.
pub fn workers() -> (usize, usize) {
    let s = lock();
    (s.live, s.idle)
}

fn worker() {
    let mut s = lock();
    loop {
        if let Some(job) = s.jobs.pop_front() {
            drop(s);
            // A panicking job has already completed or dropped its transfer
            // (its `Op` is dropped by the unwind); the worker stays.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            s = lock();
            continue;
        }
        if s.trim {
            s.live -= 1;
            return;
        }
        s.idle += 1;
        let (next, timeout) = WAKE.wait_timeout(s, KEEP_ALIVE).unwrap_or_else(|p| p.into_inner());
        s = next;
        if s.wakeups > 0 {
            s.wakeups -= 1; // `execute` took us out of `idle` for a job
            continue;
        }
        s.idle -= 1;
        if timeout.timed_out() || s.trim {
            s.live -= 1;
            GONE.notify_all(); // `trim` waits for the idle count to drop
            return;
        }
    }
}
