//! The io_uring completion reaper: one thread for every ring in the process.
//!
//! Each store's [`Uring`](super::uring::Uring) has its own ring (its own
//! queue depth, its own fixed buffers), but the rings share this one
//! thread, so a host with a thousand tenants runs one reaper, not a
//! thousand.
//!
//! # Protocol
//!
//! - **register**: a ring's [`Shared`] joins a process-wide epoll set through
//!   its eventfd (which the ring signals on every completion) under an id,
//!   and a map from ids to rings, both under [`STATE`]'s lock. With no thread
//!   running, the registration creates the set, adds the ring and only then
//!   starts the thread, so a thread never waits on an empty set.
//! - **reap**: for each ready ring the thread drains the eventfd, then takes
//!   the completions ([`reap`]) under the ring's transfers lock, which its
//!   owner holds only for map operations, never across a syscall, so no
//!   guest's submission or buffer registration delays another's
//!   completions; each transfer's pin and file are dropped before its
//!   ticket completes. (Those drops run on this thread: a last `close` on
//!   a slow filesystem, or the unmapping of an on-demand memory whose last
//!   reference a transfer held, delays the other rings' completions for
//!   that long; a pooled memory only queues its reset.) Draining before
//!   reaping misses nothing: a completion posted after the reap signals
//!   the eventfd again. A panic while reaping one ring (a ticket's waker)
//!   is caught: the others go on.
//! - **leave**: a ring whose owner has shut it down ([`Shared::shutdown`],
//!   stored before the owner's wake-up write) and which has no transfer
//!   left is removed from the set and the map and marked finished, which
//!   the owner's drop waits for, at most its `shutdown_wait`. A ring whose
//!   transfers outlive that wait (a hung device) stays, owning its
//!   transfers and its fixed buffers' pins ([`Shared::keep`]), until its
//!   last completion: then the thread removes it and drops it.
//! - **exit**: when the last ring leaves, the thread exits (the set closes
//!   with it) and leaves its handle to be joined, under [`STATE`]'s lock,
//!   by the next registration before it starts a new thread or by the owner
//!   whose ring was the last ([`settle`]): so at most one reaper thread
//!   exists at any time, and an idle process has none and no extra fd.

use super::uring::{errno, reap, Shared};
use runtime_mm::Errno;
use rustix::buffer::spare_capacity;
use rustix::event::epoll;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The rings, the running thread's epoll set, and the threads to join.
#[derive(Default)]
struct State {
    rings: HashMap<u64, Arc<Shared>>,
    next: u64,
    /// The running thread's set and handle.
    running: Option<(Arc<OwnedFd>, JoinHandle<()>)>,
    /// A thread that found no ring left and exited (or is exiting).
    exited: Option<JoinHandle<()>>,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);

fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `shared`'s ring to the set, starting the thread if none runs.
pub(crate) fn register(shared: &Arc<Shared>) -> Result<(), Errno> {
    let mut s = lock();
    s.next += 1;
    let id = s.next;
    let data = epoll::EventData::new_u64(id);
    match &s.running {
        Some((set, _)) => epoll::add(&**set, &shared.wake, data, epoll::EventFlags::IN).map_err(|e| errno(e.into()))?,
        None => {
            if let Some(old) = s.exited.take() {
                // It has left the state; it only returns now.
                let _ = old.join();
            }
            let set = Arc::new(epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| errno(e.into()))?);
            epoll::add(&*set, &shared.wake, data, epoll::EventFlags::IN).map_err(|e| errno(e.into()))?;
            let thread_set = set.clone();
            let handle = std::thread::Builder::new()
                .name("wasm-pin-uring".into())
                .spawn(move || run(&thread_set))
                .map_err(errno)?;
            s.running = Some((set, handle));
        }
    }
    s.rings.insert(id, shared.clone());
    Ok(())
}

/// Joins the reaper thread if it exited because the last ring left: called
/// by an owner after its ring finished, so a process whose rings are all
/// gone has no reaper thread left when the last drop returns.
pub(crate) fn settle() {
    let mut s = lock();
    if let Some(t) = s.exited.take() {
        // Under the lock, so that no registration starts a thread before
        // this one is gone. It no longer takes the lock.
        let _ = t.join();
    }
}

/// The thread: waits on the set, reaps each ready ring, removes finished
/// ones, and exits after the last.
fn run(set: &OwnedFd) {
    let mut events = Vec::with_capacity(64);
    loop {
        events.clear();
        match epoll::wait(set, spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            // Cannot happen on a valid set; do not spin on it.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
        for ev in &events {
            let id = ev.data.u64();
            let Some(shared) = lock().rings.get(&id).cloned() else {
                continue; // removed meanwhile
            };
            let mut count = [0u8; 8];
            // Non-blocking: resets the counter if it was signalled.
            let _ = rustix::io::read(&shared.wake, &mut count);
            let pending = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reap(&shared))).unwrap_or(true);
            if !shared.shutdown.load(Ordering::Acquire) || pending {
                continue;
            }
            let last = {
                let mut s = lock();
                s.rings.remove(&id);
                let _ = epoll::delete(set, &shared.wake);
                shared.finish();
                let last = s.rings.is_empty();
                if last {
                    s.exited = s.running.take().map(|(_, handle)| handle);
                }
                last
            };
            // A detached ring is dropped here, outside the state's lock:
            // its ring first, then the fixed buffers' pins.
            drop(shared);
            if last {
                return;
            }
        }
    }
}

/// Holds the reaper back (it cannot look up a ring) while the result lives:
/// for tests of what a ring does when the reaper is slow.
#[cfg(test)]
pub(crate) fn stall() -> impl Sized {
    lock()
}
