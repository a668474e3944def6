//! The `zero-copy-io` imports on [`PinCtxView`]: the shared steps
//! (resolve a descriptor and a pin range, start a transfer, vectored
//! transfers) and the generated traits, whose waiting calls are `async` for
//! async stores. [`super::sync`] registers the same steps for sync stores.

use super::{descriptor, direct, syscall_result, transfer, BackendKind, Completion, GuestTicket, Op};
use crate::bindings::wasm_pin::mm::zero_copy_io::{Backend as WitBackend, Errno, Host, HostIoTicket, IoSlice};
use crate::quotas::Kind;
use crate::view::PinCtxView;
use crate::GuestPin;
use runtime_mm::{Errno as E, PinnedPages};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Resource;
use wasmtime::Result;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::DynPollable;

pub(crate) type R<T> = Result<std::result::Result<T, Errno>>;

pub(crate) fn ok<T>(r: std::result::Result<T, E>) -> R<T> {
    Ok(r.map_err(Errno::from))
}

pub(crate) fn trap(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("wasm-pin: bad {what} handle"))
}

/// One transfer's file, buffer and range, resolved and checked.
pub(crate) struct Transfer {
    pub file: Arc<File>,
    pub pages: Arc<PinnedPages>,
    pub ptr: *mut u8,
    pub len: u32,
}

/// A vectored transfer's iovecs, with the pins that keep them valid.
/// Linux's `UIO_MAXIOV`: most slices one `preadv`/`pwritev` takes.
const IOV_MAX: usize = 1024;

pub(crate) struct Vectored {
    pub file: Arc<File>,
    /// Keep the iovecs' pages pinned and mapped for the syscall.
    _pins: Vec<Arc<PinnedPages>>,
    iov: Vec<libc::iovec>,
}

// SAFETY: the raw pointers point into pages that `pins` keeps pinned and
// mapped; the value moves to one thread that performs the syscall.
unsafe impl Send for Vectored {}

impl Vectored {
    /// `preadv`/`pwritev` at `at`, on the calling thread.
    pub(crate) fn run(&self, read: bool, at: u64) -> std::result::Result<u64, E> {
        let cnt = i32::try_from(self.iov.len()).map_err(|_| E::Inval)?;
        let at = super::file_offset(at)?;
        // SAFETY: each iovec is a raw pointer + length inside a pin held in
        // `self._pins` for the whole call (a write pin for reads into it). No
        // Rust reference to guest memory is formed, so slices that overlap
        // each other, or bytes other guest threads write meanwhile, alias
        // nothing Rust knows of: only the kernel touches them, as a device
        // would.
        let n = unsafe {
            if read {
                libc::preadv(self.file.as_raw_fd(), self.iov.as_ptr(), cnt, at)
            } else {
                libc::pwritev(self.file.as_raw_fd(), self.iov.as_ptr(), cnt, at)
            }
        };
        syscall_result(n).map(|n| n as u64)
    }
}

/// Awaits a transfer `begin_transfer` started: its completion, or, when the
/// backend's queue was full, the op run on a blocking thread.
pub(crate) async fn finish((done, spare): (Arc<Completion>, Option<Op>)) -> std::result::Result<u32, E> {
    match spare {
        None => done.wait_async().await,
        Some(op) => wasmtime_wasi::runtime::spawn_blocking(move || op.run()).await,
    }
}

impl PinCtxView<'_> {
    /// Resolves `len` bytes at `off` of a guest pin: the pin (to keep) and
    /// the host address. `into`: the bytes will be written (needs a write
    /// pin).
    pub(crate) fn buffer(
        &self,
        pin: &Resource<GuestPin>,
        off: u32,
        len: u32,
        into: bool,
    ) -> std::result::Result<(Arc<PinnedPages>, *mut u8), E> {
        let pages = &self.pinned(pin)?.pages;
        match off.checked_add(len) {
            Some(end) if end as usize <= pages.byte_len() => {}
            _ => return Err(E::Fault),
        }
        let base = if into {
            pages.as_mut_ptr()?
        } else {
            pages.as_ptr().cast_mut()
        };
        Ok((pages.clone(), base.wrapping_add(off as usize)))
    }

    /// The file and the buffer range of one transfer (`read`: file → pin).
    pub(crate) fn transfer_of(
        &self,
        fd: &Resource<Descriptor>,
        buf: &Resource<GuestPin>,
        (off, len, at): (u32, u32, u64),
        read: bool,
    ) -> std::result::Result<Transfer, E> {
        let file = descriptor::file(self.table, fd, read)?.clone();
        let (pages, ptr) = self.buffer(buf, off, len, read)?;
        if self.ctx.own_files.is_direct(&file) {
            direct::check_aligned(ptr, len, at)?;
        }
        Ok(Transfer { file, pages, ptr, len })
    }

    /// A transfer on the calling thread (sync stores).
    pub(crate) fn transfer_now(
        &self,
        fd: &Resource<Descriptor>,
        read: bool,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> std::result::Result<u32, E> {
        let t = self.transfer_of(fd, buf, (off, len, at), read)?;
        transfer(&t.file, read, t.ptr, t.len, at)
    }

    /// `read-at` as a synchronous store runs it: `pread` on the calling
    /// thread, straight into the guest's pages (what `add_to_linker_sync`
    /// registers; public for embedders that call the host directly).
    pub fn read_at_sync(
        &mut self,
        fd: &Resource<Descriptor>,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> std::result::Result<u32, Errno> {
        self.transfer_now(fd, true, buf, off, len, at).map_err(Errno::from)
    }

    /// `write-at` as a synchronous store runs it (see [`Self::read_at_sync`]).
    pub fn write_at_sync(
        &mut self,
        fd: &Resource<Descriptor>,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> std::result::Result<u32, Errno> {
        self.transfer_now(fd, false, buf, off, len, at).map_err(Errno::from)
    }

    pub(crate) fn vectored_of(
        &self,
        fd: &Resource<Descriptor>,
        read: bool,
        bufs: &[IoSlice],
        at: u64,
    ) -> std::result::Result<Vectored, E> {
        // The kernel takes at most IOV_MAX slices; refusing more first keeps
        // the host's arrays bounded whatever length the guest passed.
        if bufs.len() > IOV_MAX {
            return Err(E::Inval);
        }
        let file = descriptor::file(self.table, fd, read)?.clone();
        let aligned = self.ctx.own_files.is_direct(&file);
        let mut pins = Vec::with_capacity(bufs.len());
        let mut iov = Vec::with_capacity(bufs.len());
        for s in bufs {
            let (pin, ptr) = self.buffer(&s.buf, s.offset, s.len, read)?;
            if aligned {
                direct::check_aligned(ptr, s.len, at)?;
            }
            pins.push(pin);
            iov.push(libc::iovec {
                iov_base: ptr.cast(),
                iov_len: s.len as usize,
            });
        }
        Ok(Vectored { file, _pins: pins, iov })
    }

    /// Starts `t` on the backend; `done` receives its outcome.
    fn start(&mut self, t: Transfer, read: bool, at: u64, done: &Arc<Completion>) -> std::result::Result<u64, E> {
        // Refused before any backend sees it (io_uring would take -1 as the
        // current file position).
        super::file_offset(at)?;
        let op = Op {
            read,
            fd: t.file,
            pages: t.pages.clone(),
            ptr: t.ptr,
            len: t.len,
            offset: at,
            append: false,
            done: done.clone(),
        };
        let b = self.ctx.io.backend()?;
        // A long-term pin may be registered (io_uring fixed buffers).
        b.remember(&t.pages);
        b.submit(op)
    }

    /// `submit-read-at` / `submit-write-at`: an asynchronous transfer and its
    /// ticket, under the ticket quota.
    pub(crate) fn submit(
        &mut self,
        fd: &Resource<Descriptor>,
        read: bool,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> std::result::Result<Resource<GuestTicket>, E> {
        self.ctx.admit(Kind::Ticket)?;
        let t = self.transfer_of(fd, buf, (off, len, at), read)?;
        self.start_ticket(t, read, at)
    }

    /// Starts `t` on the backend and gives the guest its ticket.
    pub(crate) fn start_ticket(
        &mut self,
        t: Transfer,
        read: bool,
        at: u64,
    ) -> std::result::Result<Resource<GuestTicket>, E> {
        let done = Arc::new(Completion::default());
        let id = self.start(t, read, at, &done)?;
        self.push(Kind::Ticket, GuestTicket { id, done }).inspect_err(|_| {
            // Not stored (the table refused): cancel; the pin is held until
            // the transfer ends.
            if let Ok(b) = self.ctx.io.backend() {
                b.cancel(id);
            }
        })
    }

    /// Starts `t` on the backend for a caller that awaits it; the op back
    /// to run on a blocking thread if the backend's queue is full.
    pub(crate) fn begin_transfer(
        &mut self,
        t: Transfer,
        read: bool,
        at: u64,
    ) -> std::result::Result<(Arc<Completion>, Option<Op>), E> {
        let len = t.len;
        let done = Arc::new(Completion::default());
        let spare = Op {
            read,
            fd: t.file.clone(),
            pages: t.pages.clone(),
            ptr: t.ptr,
            len,
            offset: at,
            append: false,
            done: done.clone(),
        };
        match self.start(t, read, at, &done) {
            Ok(_) => Ok((done, None)),
            Err(E::Again) => Ok((done, Some(spare))),
            Err(e) => Err(e),
        }
    }

    /// A transfer the store awaits (async stores): no executor thread blocks.
    async fn transfer_async(
        &mut self,
        fd: &Resource<Descriptor>,
        read: bool,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> std::result::Result<u32, E> {
        let t = self.transfer_of(fd, buf, (off, len, at), read)?;
        finish(self.begin_transfer(t, read, at)?).await
    }

    pub(crate) fn ticket_poll(&self, t: &Resource<GuestTicket>) -> Result<Option<std::result::Result<u32, Errno>>> {
        let t = self.table.get(t).map_err(|_| trap("io-ticket"))?;
        Ok(t.done.poll().map(|r| r.map_err(Errno::from)))
    }

    pub(crate) fn ticket_done(&self, t: &Resource<GuestTicket>) -> Result<Arc<Completion>> {
        Ok(self.table.get(t).map_err(|_| trap("io-ticket"))?.done.clone())
    }

    pub(crate) fn ticket_subscribe(&mut self, t: Resource<GuestTicket>) -> Result<Resource<DynPollable>> {
        self.table.get(&t).map_err(|_| trap("io-ticket"))?;
        wasmtime_wasi::p2::subscribe(self.table, t)
    }

    pub(crate) fn ticket_drop(&mut self, t: Resource<GuestTicket>) -> Result<()> {
        let t = self
            .remove(Kind::Ticket, t)
            .map_err(|_| trap("io-ticket (or it still has a pollable)"))?;
        if t.done.poll().is_none() {
            if let Ok(b) = self.ctx.io.backend() {
                b.cancel(t.id);
            }
            // The guest may reuse the buffer as soon as the drop returns:
            // wait until the kernel has let go of it (a cancel, or the end
            // of a transfer too far along to stop: usually microseconds),
            // at most `shutdown_wait`.
            t.done.wait(self.ctx.io.config().shutdown_wait);
        }
        Ok(())
    }

    /// `open-direct`: a new WASI descriptor on the same file with
    /// `O_DIRECT`, under the file quota.
    pub(crate) fn open_direct(&mut self, fd: &Resource<Descriptor>) -> std::result::Result<Resource<Descriptor>, E> {
        self.ctx.admit(Kind::File)?;
        let d = direct::reopen(self.table.get(fd).map_err(|_| E::BadF)?)?;
        self.ctx.own_files.add(&d);
        self.table.push(d).map_err(|_| E::MFile)
    }

    pub(crate) fn backend_of(&mut self) -> WitBackend {
        match self.ctx.io.backend_kind() {
            Ok(BackendKind::IoUring) => WitBackend::IoUring,
            _ => WitBackend::Threads,
        }
    }
}

impl Host for PinCtxView<'_> {
    async fn read_at(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> R<u32> {
        ok(self.transfer_async(&fd, true, &buf, off, len, at).await)
    }

    async fn write_at(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> R<u32> {
        ok(self.transfer_async(&fd, false, &buf, off, len, at).await)
    }

    async fn read_at_vectored(&mut self, fd: Resource<Descriptor>, bufs: Vec<IoSlice>, at: u64) -> R<u64> {
        let v = match self.vectored_of(&fd, true, &bufs, at) {
            Ok(v) => v,
            Err(e) => return ok(Err(e)),
        };
        ok(wasmtime_wasi::runtime::spawn_blocking(move || v.run(true, at)).await)
    }

    async fn write_at_vectored(&mut self, fd: Resource<Descriptor>, bufs: Vec<IoSlice>, at: u64) -> R<u64> {
        let v = match self.vectored_of(&fd, false, &bufs, at) {
            Ok(v) => v,
            Err(e) => return ok(Err(e)),
        };
        ok(wasmtime_wasi::runtime::spawn_blocking(move || v.run(false, at)).await)
    }

    fn submit_read_at(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> R<Resource<GuestTicket>> {
        ok(self.submit(&fd, true, &buf, off, len, at))
    }

    fn submit_write_at(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> R<Resource<GuestTicket>> {
        ok(self.submit(&fd, false, &buf, off, len, at))
    }

    fn io_backend(&mut self) -> Result<WitBackend> {
        Ok(self.backend_of())
    }

    fn open_direct(&mut self, fd: Resource<Descriptor>) -> R<Resource<Descriptor>> {
        ok(PinCtxView::open_direct(self, &fd))
    }

    fn direct_alignment(&mut self) -> Result<u32> {
        Ok(direct::ALIGN)
    }

    fn host_cpu_time(&mut self) -> R<u64> {
        ok(self.ctx.cpu_time())
    }
}

impl HostIoTicket for PinCtxView<'_> {
    fn poll(&mut self, t: Resource<GuestTicket>) -> Result<Option<std::result::Result<u32, Errno>>> {
        self.ticket_poll(&t)
    }

    async fn wait(
        &mut self,
        t: Resource<GuestTicket>,
        timeout_ms: u32,
    ) -> Result<Option<std::result::Result<u32, Errno>>> {
        let done = self.ticket_done(&t)?;
        // The timer is made in the ambient tokio runtime, as wasmtime-wasi's
        // own are, so an embedder's executor need not be tokio's.
        let ms = Duration::from_millis(timeout_ms.into());
        let wait = wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| tokio::time::timeout(ms, done.wait_async()));
        Ok(wait.await.ok().map(|r| r.map_err(Errno::from)))
    }

    fn subscribe(&mut self, t: Resource<GuestTicket>) -> Result<Resource<DynPollable>> {
        self.ticket_subscribe(t)
    }

    fn drop(&mut self, t: Resource<GuestTicket>) -> Result<()> {
        self.ticket_drop(t)
    }
}
