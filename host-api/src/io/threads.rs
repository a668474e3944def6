//! The worker-thread backend: a bounded queue of transfers served by a few
//! threads calling `pread`/`pwrite` on the guest's pinned pages.
//!
//! A full queue refuses the submission with `again`. Cancelling a transfer
//! that no worker has started completes it with `canceled` without touching
//! the buffer; one already running finishes. Dropping the backend cancels
//! everything queued and joins the workers, so no worker outlives the store.

use super::{transfer, Backend, BackendKind, IoCounts, Op};
use runtime_mm::Errno;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

struct Shared {
    /// Ids whose cancellation was asked for before a worker took them.
    cancelled: Mutex<HashSet<u64>>,
    in_flight: AtomicUsize,
    shutdown: AtomicBool,
}

pub(crate) struct Threads {
    tx: Option<SyncSender<(u64, Op)>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    next: u64,
}

impl Threads {
    pub(crate) fn new(threads: usize, depth: u32) -> Threads {
        let (tx, rx) = sync_channel::<(u64, Op)>(depth.max(1) as usize);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            cancelled: Mutex::new(HashSet::new()),
            in_flight: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let workers = (0..threads)
            .map(|i| {
                let (rx, shared) = (rx.clone(), shared.clone());
                std::thread::Builder::new()
                    .name(format!("wasm-pin-io-{i}"))
                    .spawn(move || worker(&rx, &shared))
                    .expect("spawning an I/O worker")
            })
            .collect();
        Threads {
            tx: Some(tx),
            workers,
            shared,
            next: 0,
        }
    }
}

fn worker(rx: &Mutex<Receiver<(u64, Op)>>, shared: &Shared) {
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((id, op)) = next else { return };
        let cancelled = shared.cancelled.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        let r = if cancelled || shared.shutdown.load(Ordering::Acquire) {
            Err(Errno::Canceled)
        } else {
            transfer(&op.fd, op.read, op.ptr, op.len, op.offset)
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
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        match tx.try_send((id, op)) {
            Ok(()) => Ok(id),
            Err(e) => {
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
        self.shared
            .cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Threads
    }

    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    fn counts(&self) -> IoCounts {
        IoCounts {
            submitted: self.next,
            fixed: 0,
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        drop(self.tx.take()); // workers drain the queue (as cancelled) and exit
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
