//! The process's I/O worker threads, shared by every store's thread backend
//! (`threads`), as the io_uring rings share one reaper thread.
//!
//! ```text
//!   store A's Threads ─┐  execute(job)      ┌─► worker ─ job: runs A's queued transfers
//!   store B's Threads ─┼──► jobs (FIFO) ────┼─► worker ─ job: runs B's ...
//!   store C's Threads ─┘                    └─► (spawned on demand, up to limit();
//!                                                an idle one exits after KEEP_ALIVE)
//! ```
//!
//! # Protocol
//!
//! One lock (`STATE`) holds the job queue and three counts: `live` workers,
//! `idle` ones (waiting on `WAKE`, not promised a job) and `wakeups` (idle
//! workers `execute` woke and took out of `idle` for a job).
//!
//! - `execute` queues the job, then: an idle worker exists → move it from
//!   `idle` to `wakeups` and notify one; else, below the limit → spawn a
//!   worker (counted in `live` before it starts); else the job waits for the
//!   next worker that finishes one. So a queued job never waits while a
//!   worker sleeps, and no two jobs count on one wake-up.
//! - A worker takes jobs while there are any. With none, it waits: woken
//!   with a wake-up owed (`wakeups > 0`) it takes one and looks again; after
//!   [`KEEP_ALIVE`] with no wake-up, or when [`trim`] has moved the `trims`
//!   count on since it went idle, it leaves `idle` and `live` and exits.
//!   Spurious wake-ups just wait again.
//! - A job that panics is caught: the worker lives on. (The thread backend's
//!   jobs catch their transfers' panics themselves, to keep their store's
//!   books.)
//!
//! This is tokio's blocking pool's scheme (`spawn_blocking`): threads follow
//! the transfers actually running, not the number of stores; the old
//! backend started `IoConfig::threads` threads per store (1,024 for 512
//! idle tenants). A store's own limits (its depth, its running transfers)
//! are the thread backend's business: it holds at most `IoConfig::threads`
//! jobs, and a job runs that store's transfers until its queue is empty, or
//! yields its worker when the pool is at its limit and another job waits
//! (`contended`), so stores take turns there.
//!
//! # What the limit costs
//!
//! A job stuck in a syscall (a `pread` on a hung NFS or FUSE mount) keeps
//! its worker, and the pool grows past it, up to [`limit`]. A store holds
//! at most `IoConfig::threads` workers, so it takes `limit / threads` stores
//! with hung transfers (256 at the defaults) to occupy every worker; from
//! then on other stores' transfers wait in the queue (they can still be
//! cancelled, and a dropped store cancels them) until a syscall returns.
//! Guests cannot make such a file through WASI; an embedder whose preopens
//! reach devices that can hang raises the limit ([`set_limit`]).
//!
//! Threads are spawned under `STATE`, so a burst that grows the pool
//! serializes on thread creation (tens of µs each); a warm pool spawns none.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The default [`limit`]: most worker threads the process runs at once
/// (tokio's blocking pool has the same default).
pub const DEFAULT_WORKER_LIMIT: usize = 512;

/// How long an idle worker waits for a job before it exits.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct State {
    jobs: VecDeque<Job>,
    live: usize,
    idle: usize,
    wakeups: usize,
    /// Moved on by each [`trim`]: a worker idle since an earlier value
    /// exits.
    trims: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    jobs: VecDeque::new(),
    live: 0,
    idle: 0,
    wakeups: 0,
    trims: 0,
});
/// Idle workers wait here for a job.
static WAKE: Condvar = Condvar::new();
/// [`trim`] waits here for idle workers to exit (its own condition
/// variable: a `notify_one` meant for a worker must never wake it).
static GONE: Condvar = Condvar::new();
static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_WORKER_LIMIT);
/// A hint, read without the lock: at the limit with a job that no worker
/// has been woken for.
static CONTENDED: AtomicBool = AtomicBool::new(false);

fn lock() -> MutexGuard<'static, State> {
    // Jobs run outside the lock and panics in them are caught: a poisoned
    // lock only means a panic between two consistent states.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Refreshes [`CONTENDED`] after a change of `s` (under the lock).
fn hint(s: &State) {
    let waiting = s.jobs.len() > s.wakeups;
    CONTENDED.store(waiting && s.live >= limit(), Ordering::Relaxed);
}

/// Runs `job` on a worker thread. Fails (`Err` with the job back) only when
/// no worker exists and none can be started (the system's thread limit):
/// the caller refuses its transfer rather than queue it with no one to run
/// it.
pub(crate) fn execute(job: Job) -> Result<(), Job> {
    let mut s = lock();
    s.jobs.push_back(job);
    if s.idle > 0 {
        s.idle -= 1;
        s.wakeups += 1;
        WAKE.notify_one();
    } else if s.live < limit() {
        s.live += 1;
        // Detached: a worker exits on its own (see `worker`).
        let spawned = std::thread::Builder::new().name("wasm-pin-io".into()).spawn(worker);
        if spawned.is_err() {
            s.live -= 1;
            if s.live == 0 {
                // No worker took it: with none alive, ours is the only job.
                let job = s.jobs.pop_back().expect("the job just queued");
                hint(&s);
                return Err(job);
            }
        }
    }
    hint(&s);
    Ok(())
}

/// Whether the pool is at its limit with a job no worker has been woken
/// for: a job that could go on with its store's next transfer yields its
/// worker instead. Lock-free (a hint: a stale answer costs one extra turn
/// or one fewer).
pub(crate) fn contended() -> bool {
    CONTENDED.load(Ordering::Relaxed)
}

/// Most worker threads the process runs at once ([`DEFAULT_WORKER_LIMIT`]
/// unless [`set_limit`] changed it).
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Sets [`limit`] (at least 1). Lowering it stops no running worker; the
/// pool shrinks as workers go idle and exit.
pub fn set_limit(n: usize) {
    LIMIT.store(n.max(1), Ordering::Relaxed);
}

/// Asks the workers idle now to exit instead of after [`KEEP_ALIVE`], and
/// waits up to `wait` until none is idle. A busy worker finishes its job
/// and stays; the next job starts a worker again. For an embedder that
/// wants a quiet process (and the soak's thread-leak check).
///
/// ```
/// use host_api::io::workers;
/// use std::time::Duration;
///
/// // An embedder whose preopens may reach a hung NFS mount allows more
/// // workers than the default before other stores' transfers would wait.
/// workers::set_limit(2 * workers::DEFAULT_WORKER_LIMIT);
/// assert_eq!(workers::limit(), 1024);
/// // At a quiet moment: no idle worker thread stays behind.
/// workers::trim(Duration::from_secs(1));
/// assert_eq!(workers::workers().1, 0);
/// ```
pub fn trim(wait: Duration) {
    let deadline = Instant::now() + wait;
    let mut s = lock();
    while s.idle > 0 {
        // Again each round: workers that went idle since the last round.
        s.trims += 1;
        WAKE.notify_all();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let round = left.min(Duration::from_millis(10));
        s = GONE.wait_timeout(s, round).unwrap_or_else(|p| p.into_inner()).0;
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
            hint(&s);
            drop(s);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            s = lock();
            continue;
        }
        s.idle += 1;
        let since = s.trims;
        let (next, timeout) = WAKE.wait_timeout(s, KEEP_ALIVE).unwrap_or_else(|p| p.into_inner());
        s = next;
        if s.wakeups > 0 {
            s.wakeups -= 1; // `execute` took us out of `idle` for a job
            continue;
        }
        if timeout.timed_out() || s.trims != since {
            s.idle -= 1;
            s.live -= 1;
            hint(&s);
            GONE.notify_all();
            return;
        }
        s.idle -= 1; // spurious: wait again
    }
}

/// Tests that depend on the pool's size or change its limit take this, so
/// they do not run beside each other.
#[cfg(test)]
pub(crate) fn exclusive() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc, Barrier};

    /// `trim` ends idle workers, never the job of a busy one, and the pool
    /// starts workers again for the next job.
    #[test]
    fn trim_ends_idle_workers_and_never_a_running_job() {
        let _pool = exclusive();
        let (done, finished) = mpsc::channel();
        let gate = Arc::new(Barrier::new(2));
        let g = gate.clone();
        let job = move || {
            g.wait();
            done.send(()).unwrap();
        };
        execute(Box::new(job)).unwrap_or_else(|_| panic!("a worker starts"));
        trim(Duration::from_millis(100));
        gate.wait(); // only a live worker can meet the test here
        finished.recv_timeout(Duration::from_secs(5)).unwrap();
        // Other tests of this binary use the pool too: ask until no worker
        // is idle at the moment we look.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            trim(Duration::from_millis(100));
            if workers().1 == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "idle workers left: {:?}", workers());
        }
        let (again, ran) = mpsc::channel();
        execute(Box::new(move || again.send(()).unwrap())).unwrap_or_else(|_| panic!("runs"));
        ran.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}
