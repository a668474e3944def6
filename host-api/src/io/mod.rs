//! Zero-copy I/O between WASI files and pinned guest buffers.
//!
//! ```text
//!   imports (zero-copy-io Host impls on PinCtxView; sync registration in `sync`)
//!      │ descriptor ──► `descriptor`: the WASI file's fd, its open mode checked
//!      │ sync store:  read-at/write-at, vectored ──► pread/pwrite/preadv on the guest pages
//!      │ async store: read-at/write-at           ──► Backend, awaited (no executor thread blocks)
//!      │ submit-*                                ──► Backend ─┬─ uring   (io_uring, fixed buffers)
//!      ▼                                                      └─ threads (worker pread/pwrite)
//!   IoState (per store: backend, its settings)
//! ```
//!
//! - `descriptor`: a WASI `descriptor` to a file the transfer may use.
//! - [`direct`]: reopening a WASI file for direct I/O, and its alignment.
//! - `fixed`: registered files, named by a slot instead of a descriptor.
//! - `one_call`: transfers on an `(address, length)` pinned for the call.
//! - `uring`: the io_uring backend; `threads`: the worker-thread backend,
//!   whose transfers run on the process's shared [`workers`].
//! - `imports`: the WIT host functions; `sync`: their synchronous
//!   registration.
//!
//! Every transfer's buffer is a range of a guest pin; an asynchronous one
//! holds a clone of the pin (`Arc<PinnedPages>`) and of the file until its
//! completion, so the pages stay pinned and mapped and the file open while the
//! kernel or a worker touches them, whatever the guest does with its handles
//! meanwhile.

mod descriptor;
pub mod direct;
pub(crate) mod fixed;
mod imports;
pub(crate) mod one_call;
#[cfg(target_os = "linux")]
mod reaper;
pub(crate) mod sync;
mod threads;
#[cfg(target_os = "linux")]
mod uring;
pub mod workers;

use runtime_mm::{Errno, PinnedPages};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

/// Which backend runs a guest's asynchronous I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring where the kernel allows it, worker threads otherwise.
    Auto,
    /// io_uring only: creating the backend fails if it is unavailable.
    IoUring,
    /// Worker threads calling pread/pwrite.
    Threads,
}

/// The embedder's I/O settings for one guest. (Files, directories and their
/// permissions are WASI's: the embedder's `WasiCtx`.)
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// The asynchronous backend. Each store's backend is its own: io_uring
    /// has a ring per store, whose completions one reaper thread for the
    /// whole process takes (the soak's 512 tenants ran 22-36 threads in
    /// all; `docs/SAFETY.md`, "Load and faults"); the thread backend has a
    /// queue per store, whose transfers run on worker threads the whole
    /// process shares ([`workers`]), started as transfers need them.
    pub backend: BackendKind,
    /// Most asynchronous transfers in flight at once, queued or running on
    /// any backend; one more is `again`.
    pub queue_depth: u32,
    /// Most of this store's transfers the thread backend runs at once: the
    /// most shared [`workers`] the store occupies (a hung device ties up no
    /// more than these). Its other transfers wait in its queue.
    pub threads: usize,
    /// How long dropping the store waits for transfers already inside the
    /// kernel; past it, they are left to their worker threads, each still
    /// holding its transfer's pin until the syscall returns. Also the longest a guest's
    /// drop of an unfinished `io-ticket` waits for the kernel to let go of
    /// its buffer.
    pub shutdown_wait: Duration,
    /// The longest a call may wait in a **synchronous** store (`io-ticket.wait`,
    /// socket `accept`/`connect`/`send`/`recv`), whatever timeout the guest
    /// asked for: a sync host call holds the store's thread and cannot be
    /// interrupted by epochs or a deadline. A longer wait returns what the
    /// guest's timeout would (`none`, `timedout`) once this passes; the guest
    /// may call again. Asynchronous stores need no ceiling: dropping the
    /// store's future ends their waits at once.
    pub max_wait: Duration,
    /// WASI 0.3 stream reads (`read-via-stream` on wasm-pin's streams) first
    /// try a non-blocking read (`preadv2(RWF_NOWAIT)`) straight into the
    /// pinned lent buffer on the store's thread, which the page cache serves
    /// without blocking; only what would block (`EAGAIN`) goes to the
    /// backend. Off: every stream read is a backend transfer (two
    /// cross-thread wake-ups, ~100 µs each here: `docs/BENCHMARKS.md`).
    pub stream_reads_inline: bool,
}

impl IoConfig {
    /// The default [`max_wait`](Self::max_wait): 30 s.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);

    /// `timeout` capped at [`max_wait`](Self::max_wait): how long a sync
    /// call may really wait.
    pub(crate) fn sync_wait(&self, timeout: Duration) -> Duration {
        timeout.min(self.max_wait)
    }
}

impl Default for IoConfig {
    /// `Auto` backend, 64 transfers in flight, 2 running at once on the
    /// thread backend, 1 s shutdown wait,
    /// 30 s longest sync wait, stream reads of cached data inline.
    fn default() -> Self {
        IoConfig {
            backend: BackendKind::Auto,
            queue_depth: 64,
            threads: 2,
            shutdown_wait: Duration::from_secs(1),
            max_wait: IoConfig::DEFAULT_MAX_WAIT,
            stream_reads_inline: true,
        }
    }
}

/// An asynchronous transfer: the `io-ticket` resource.
#[derive(Debug)]
pub struct GuestTicket {
    id: u64,
    done: Arc<Completion>,
}

/// Where a transfer's outcome lands; shared by the ticket, the backend, and
/// whoever waits: a thread (`wait`) or a future (`wait_async`).
#[derive(Debug, Default)]
pub(crate) struct Completion {
    state: Mutex<Outcome>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct Outcome {
    result: Option<Result<u32, Errno>>,
    wakers: Vec<Waker>,
}

impl Completion {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn complete(&self, r: Result<u32, Errno>) {
        let wakers = {
            let mut s = self.lock();
            s.result.get_or_insert(r);
            std::mem::take(&mut s.wakers)
        };
        self.cond.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn poll(&self) -> Option<Result<u32, Errno>> {
        self.lock().result
    }

    pub(crate) fn wait(&self, timeout: Duration) -> Option<Result<u32, Errno>> {
        let s = self.lock();
        let (s, _) = self
            .cond
            .wait_timeout_while(s, timeout, |s| s.result.is_none())
            .unwrap_or_else(|p| p.into_inner());
        s.result
    }

    /// The outcome, or `Pending` with `cx`'s waker registered: checking the
    /// result and registering happen under one lock, so no wake-up is lost.
    pub(crate) fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<Result<u32, Errno>> {
        let mut s = self.lock();
        match s.result {
            Some(r) => Poll::Ready(r),
            None => {
                if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    s.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Resolves when the transfer completes.
    pub(crate) fn wait_async(&self) -> impl std::future::Future<Output = Result<u32, Errno>> + Send + '_ {
        std::future::poll_fn(move |cx| self.poll_ready(cx))
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestTicket {
    async fn ready(&mut self) {
        let _ = self.done.wait_async().await;
    }
}

/// One asynchronous transfer. Holds the pin and the file until it completes.
pub(crate) struct Op {
    /// Into the buffer (a read from the file) or out of it.
    pub read: bool,
    pub fd: Arc<File>,
    /// Keeps the buffer pinned (and its memory mapped) while in flight.
    pub pages: Arc<PinnedPages>,
    pub ptr: *mut u8,
    pub len: u32,
    pub offset: u64,
    /// A write at the file's end, atomically (`RWF_APPEND`); `offset` is
    /// then ignored.
    pub append: bool,
    pub done: Arc<Completion>,
}

// SAFETY: `ptr` points into the pages `pages` keeps pinned and mapped; the op
// is moved to the thread that performs it and is used by one thread at a time.
unsafe impl Send for Op {}

impl Op {
    /// Performs the transfer on the calling thread (the completion is the
    /// caller's to report).
    pub(crate) fn run(&self) -> Result<u32, Errno> {
        if self.append {
            append(&self.fd, self.ptr, self.len)
        } else {
            transfer(&self.fd, self.read, self.ptr, self.len, self.offset)
        }
    }
}

/// A backend of asynchronous transfers.
pub(crate) trait Backend: Send {
    /// Starts `op`; `Again` if the queue is full. Returns its id.
    fn submit(&mut self, op: Op) -> Result<u64, Errno>;
    /// Asks for `id` to be cancelled; it completes (with `Canceled` or its
    /// real outcome) later.
    fn cancel(&mut self, id: u64);
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Transfers started and not yet completed.
    fn in_flight(&self) -> usize;
    /// Transfers the backend keeps per-transfer state for (bounded by the
    /// queue depth; completed transfers leave nothing behind).
    #[cfg_attr(not(test), allow(dead_code))]
    fn tracked(&self) -> usize;
    /// A long-term pin the guest may use for many transfers: the backend may
    /// register it (io_uring fixed buffers) until [`Backend::forget`].
    fn remember(&mut self, _pages: &Arc<PinnedPages>) {}
    /// The guest released its handle on `pages`: drop any registration.
    fn forget(&mut self, _pages: &Arc<PinnedPages>) {}
    /// Transfers submitted so far, and how many used a registered (fixed)
    /// buffer.
    fn counts(&self) -> IoCounts;
}

/// Counters of a guest's asynchronous transfers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    /// Transfers submitted.
    pub submitted: u64,
    /// Of those, transfers on a registered fixed buffer (io_uring
    /// `READ_FIXED`/`WRITE_FIXED`).
    pub fixed: u64,
    /// WASI 0.3 stream reads the page cache served on the store's thread
    /// without blocking ([`IoConfig::stream_reads_inline`]); not submitted.
    pub inline_reads: u64,
}

/// Per-store I/O state.
pub(crate) struct IoState {
    config: IoConfig,
    backend: Option<Box<dyn Backend>>,
    inline_reads: u64,
}

impl std::fmt::Debug for IoState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoState")
            .field("config", &self.config)
            .field("backend", &self.backend.as_ref().map(|b| b.kind()))
            .finish()
    }
}

impl IoState {
    pub(crate) fn new(config: IoConfig) -> IoState {
        IoState {
            config,
            backend: None,
            inline_reads: 0,
        }
    }

    /// The embedder's settings.
    pub(crate) fn config(&self) -> &IoConfig {
        &self.config
    }

    pub(crate) fn backend(&mut self) -> Result<&mut dyn Backend, Errno> {
        if self.backend.is_none() {
            self.backend = Some(make_backend(&self.config)?);
        }
        Ok(self.backend.as_deref_mut().expect("set above"))
    }

    pub(crate) fn backend_kind(&mut self) -> Result<BackendKind, Errno> {
        Ok(self.backend()?.kind())
    }

    /// Transfers in flight now (0 before the backend is first used).
    pub(crate) fn in_flight(&self) -> usize {
        self.backend.as_ref().map_or(0, |b| b.in_flight())
    }

    pub(crate) fn counts(&self) -> IoCounts {
        let backend = self.backend.as_ref().map_or_else(IoCounts::default, |b| b.counts());
        IoCounts {
            inline_reads: self.inline_reads,
            ..backend
        }
    }

    /// Counts a stream read served inline.
    pub(crate) fn note_inline_read(&mut self) {
        self.inline_reads += 1;
    }

    /// The guest released its handle on `pages`.
    pub(crate) fn forget(&mut self, pages: &Arc<PinnedPages>) {
        if let Some(b) = self.backend.as_mut() {
            b.forget(pages);
        }
    }
}

fn make_backend(config: &IoConfig) -> Result<Box<dyn Backend>, Errno> {
    let threads = || {
        Box::new(threads::Threads::new(
            config.threads.max(1),
            config.queue_depth,
            config.shutdown_wait,
        )) as Box<dyn Backend>
    };
    match config.backend {
        BackendKind::Threads => Ok(threads()),
        #[cfg(target_os = "linux")]
        BackendKind::IoUring => Ok(Box::new(uring::Uring::new(config.queue_depth, config.shutdown_wait)?)),
        #[cfg(target_os = "linux")]
        BackendKind::Auto => Ok(uring::Uring::new(config.queue_depth, config.shutdown_wait)
            .map_or_else(|_| threads(), |u| Box::new(u) as _)),
        #[cfg(not(target_os = "linux"))]
        BackendKind::IoUring => Err(Errno::OpNotSupp),
        #[cfg(not(target_os = "linux"))]
        BackendKind::Auto => Ok(threads()),
    }
}

/// A guest's file offset as the kernel's `off_t`: `inval` past `i64::MAX`.
/// Every transfer, sync or async, on every backend, passes through here, so
/// no backend reads `-1` as io_uring's "the current file position".
pub(crate) fn file_offset(at: u64) -> Result<libc::off_t, Errno> {
    libc::off_t::try_from(at).map_err(|_| Errno::Inval)
}

/// Performs one transfer on the calling thread: `pread`/`pwrite` straight
/// on the guest's pages.
pub(crate) fn transfer(fd: &File, read: bool, ptr: *mut u8, len: u32, offset: u64) -> Result<u32, Errno> {
    let offset = file_offset(offset)?;
    // SAFETY: callers pass a range inside a pin they hold for the whole call,
    // so the pages are mapped and present; `read` transfers need a write pin
    // (checked when the range was resolved). Guest memory goes to the kernel
    // as raw pointer + length, never as a Rust reference: other guest threads
    // may touch the bytes concurrently, as with any DMA buffer, and no
    // aliasing rule is asserted over them.
    let n = unsafe {
        if read {
            libc::pread(fd.as_raw_fd(), ptr.cast(), len as usize, offset)
        } else {
            libc::pwrite(fd.as_raw_fd(), ptr.cast(), len as usize, offset)
        }
    };
    syscall_result(n).map(|n| n as u32)
}

/// Reads at `offset` on the calling thread only what needs no waiting
/// (`preadv2(RWF_NOWAIT)`: data in the page cache). `Again` when it would
/// block, or where the file or kernel does not take `RWF_NOWAIT`
/// (`EOPNOTSUPP`); a short read is what was cached.
pub(crate) fn read_nowait(fd: &File, ptr: *mut u8, len: u32, offset: u64) -> Result<u32, Errno> {
    let offset = file_offset(offset)?;
    let iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len as usize,
    };
    // SAFETY: as for `transfer`: a raw range inside a write pin the caller
    // holds for the whole call, never a Rust reference.
    let n = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    match syscall_result(n) {
        Err(Errno::OpNotSupp) => Err(Errno::Again),
        r => r.map(|n| n as u32),
    }
}

/// Writes at the file's end on the calling thread, atomically with respect
/// to other appends (`pwritev2(RWF_APPEND)`, as wasmtime-wasi appends).
pub(crate) fn append(fd: &File, ptr: *mut u8, len: u32) -> Result<u32, Errno> {
    let iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len as usize,
    };
    // SAFETY: as for `transfer`: a raw range inside a pin the caller holds
    // for the whole call, never a Rust reference.
    let n = unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_APPEND) };
    syscall_result(n).map(|n| n as u32)
}

/// A byte count from a syscall, or its errno.
pub(crate) fn syscall_result(n: isize) -> Result<usize, Errno> {
    usize::try_from(n).map_err(|_| Errno::from_io(&std::io::Error::last_os_error()))
}
