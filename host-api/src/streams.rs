//! Zero-copy WASI 0.3 file streams: `read-via-stream`, `write-via-stream`
//! and `append-via-stream` of `wasi:filesystem/types@0.3.0`, with the
//! guest's own buffer pinned for the kernel.
//!
//! ```text
//!   guest: stream.read(buf) ──lends buf──► ReadProducer::poll_produce
//!                                             │ Destination::as_direct: buf's address
//!                                             │ PinMemoryCreator::find_containing: its Mm
//!                                             │ gup::pin_user_pages_fast(WRITE): the pages under buf
//!                                             ▼
//!                      io backend (io_uring / worker threads): pread(file, buf)
//!                                             │ completion wakes the store's task
//!                                             ▼
//!                      mark_written(n) ──► the guest's read completes with n bytes
//! ```
//!
//! **Cached reads inline.** A backend transfer costs two cross-thread
//! wake-ups (~100 µs here) after a copy the kernel already did inline. So
//! by default ([`crate::IoConfig::stream_reads_inline`]) a read first tries
//! `preadv2(RWF_NOWAIT)` into the pinned lent buffer on the store's thread:
//! the page cache serves it without blocking, and only what would block
//! (`EAGAIN`) goes to the backend as above. An inline read is CPU work of
//! the store's task (one lent buffer's copy, ~0.2 ms per MiB), like the
//! guest's own code between two awaits; an embedder that shares executor
//! threads among guests makes them yield with epochs
//! (`Store::epoch_deadline_async_yield_and_update`), and inline reads then
//! yield with the guest's code. wasmtime's event loop polls a stream again
//! before it returns to the executor, so a `Pending` from here would not
//! yield (measured).
//!
//! wasmtime-wasi 48's own producer reads at most 8 KiB per poll into a host
//! buffer on a blocking thread and copies it into the guest, unless the
//! embedder lets it block the executor. Here no executor thread blocks and
//! no byte passes through a host buffer: the transfer runs on the store's
//! I/O backend ([`crate::IoConfig`]) straight between the file and the
//! guest's pages, whatever the buffer's size.
//!
//! **Why keeping the buffer's address past one `poll_produce` is sound.**
//! (1) The component model lends the reader's buffer until the read
//! completes or is cancelled: wasmtime keeps the read `GuestReady` and
//! hands the producer the same buffer on every poll of that read, so the
//! guest may not touch or reuse it meanwhile (it has no handle on the
//! read but the cancel, which comes to us as `finish`). (2) The memory
//! never moves: an `Mm`'s base is fixed for its life (SAFETY R1). (3) The
//! pin keeps the pages mapped, undiscardable and their slot out of any pool
//! reuse (E2, P2) until the kernel is done: the pin lives in the transfer,
//! so even a store dropped, or a guest trapping, mid-transfer leaves the
//! memory quarantined until the transfer ends (G4). A cancel (`finish`)
//! asks the backend to cancel and keeps answering `Pending` until the
//! kernel has let go; only then is the read reported `Cancelled` (or
//! `Completed`, if the bytes had already landed). Each completion checks
//! that the buffer is still the one the transfer filled before it marks
//! bytes written.
//!
//! Reads for a host reader, or into a memory no [`PinMemoryCreator`] made,
//! fall back to a synchronous read of at most 64 KiB into the buffer
//! wasmtime hands over (what wasmtime-wasi's blocking mode does).
//!
//! **TCP streams are not served here**: wasmtime-wasi 48's p3 `tcp-socket`
//! (`wasmtime_wasi::sockets::TcpSocket`, `src/sockets/tcp.rs`) keeps its OS
//! socket private: `as_fd` is a private method, `TcpState` a private enum,
//! `take_send_stream`/`take_receive_stream` are `pub(crate)`, and the type
//! implements no `AsFd`. A host crate can neither `recv` into the buffer a
//! p3 `receive` stream lends nor `send` from a `send` stream's, so p3
//! `send`/`receive` stay wasmtime-wasi's; zero-copy TCP is
//! `wasm-pin:mm/zero-copy-net`.
//!
//! Semantics are wasmtime-wasi's: reads start at the given offset and
//! advance, end of file ends the stream with `ok` on the result future,
//! errors end it with the error code there; a directory is `is-directory`;
//! writes need a descriptor whose preopen permits writing (`not-permitted`)
//! and appends go to the file's end atomically (`RWF_APPEND`).

use crate::io::{file_offset, Completion, Op};
use crate::view::{PinCtxView, PinView};
use runtime_mm::{gup, Errno, GupFlags, Mm, PinMemoryCreator, PinnedPages};
use std::fs::File;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::oneshot;
use wasmtime::component::{
    Destination, DirectDestination, DirectSource, FutureReader, Linker, Resource, Source, StreamConsumer,
    StreamProducer, StreamReader, StreamResult,
};
use wasmtime::{AsContextMut, StoreContextMut};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p3::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::WasiView;

/// The result future's payload.
type Done = Result<(), ErrorCode>;

/// Most bytes one transfer moves (the backends take a `u32` length).
const MAX_TRANSFER: usize = 1 << 30;
/// The buffer size of the fallback for host readers, as wasmtime-wasi's.
const HOST_BUFFER: usize = 64 << 10;

/// Replaces `read-via-stream`, `write-via-stream` and `append-via-stream`
/// of `wasi:filesystem/types@0.3.0` on `linker` with the zero-copy ones.
/// Call it after `wasmtime_wasi::p3::add_to_linker` (it shadows those three
/// functions, and leaves the linker's shadowing off again); the store needs
/// [`PinView`] beside `WasiView`, with the same table.
///
/// ```
/// # use host_api::{PinCtx, PinCtxView, PinView};
/// # use wasmtime::component::{Linker, ResourceTable};
/// # use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
/// # struct State { wasi: WasiCtx, pins: PinCtx, table: ResourceTable }
/// # impl WasiView for State {
/// #     fn ctx(&mut self) -> WasiCtxView<'_> { WasiCtxView { ctx: &mut self.wasi, table: &mut self.table } }
/// # }
/// # impl PinView for State {
/// #     fn pins(&mut self) -> PinCtxView<'_> { PinCtxView { ctx: &mut self.pins, table: &mut self.table } }
/// # }
/// let mut config = wasmtime::Config::new();
/// config.wasm_component_model_async(true);
/// let engine = wasmtime::Engine::new(&config)?;
/// let mut linker = Linker::<State>::new(&engine);
/// wasmtime_wasi::p3::add_to_linker(&mut linker)?;
/// host_api::add_p3_streams_to_linker(&mut linker)?;
/// # Ok::<(), wasmtime::Error>(())
/// ```
pub fn add_p3_streams_to_linker<T: WasiView + PinView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let r = add_streams(linker);
    linker.allow_shadowing(false);
    r
}

fn add_streams<T: WasiView + PinView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut inst = linker.instance("wasi:filesystem/types@0.3.0")?;
    inst.func_wrap(
        "[method]descriptor.read-via-stream",
        |mut store: StoreContextMut<'_, T>, (fd, offset): (Resource<Descriptor>, u64)| {
            let file = match store.data_mut().ctx().table.get(&fd)? {
                Descriptor::File(f) => Some(f.file.clone()),
                Descriptor::Dir(_) => None,
            };
            let Some(file) = file else {
                let stream = StreamReader::new(&mut store, std::iter::empty::<u8>())?;
                let done = FutureReader::new(&mut store, async {
                    wasmtime::Result::<Done>::Ok(Err(ErrorCode::IsDirectory))
                })?;
                return Ok(((stream, done),));
            };
            let (tx, rx) = oneshot::channel();
            let producer = ReadProducer::<T> {
                xfer: Transfer::new(file, Some(offset), tx, T::pins),
            };
            let stream = StreamReader::new(&mut store, producer)?;
            Ok(((stream, FutureReader::new(&mut store, rx)?),))
        },
    )?;
    for (name, append) in [
        ("[method]descriptor.write-via-stream", false),
        ("[method]descriptor.append-via-stream", true),
    ] {
        let write = move |mut store: StoreContextMut<'_, T>,
                          fd: Resource<Descriptor>,
                          mut data: StreamReader<u8>,
                          offset: Option<u64>|
              -> wasmtime::Result<(FutureReader<Done>,)> {
            let (tx, rx) = oneshot::channel();
            let file = match store.data_mut().ctx().table.get(&fd)? {
                Descriptor::File(f) if f.perms.write_not_permitted() => Err(ErrorCode::NotPermitted),
                Descriptor::File(f) => Ok(f.file.clone()),
                Descriptor::Dir(_) => Err(ErrorCode::IsDirectory),
            };
            match file {
                Ok(file) => data.pipe(
                    &mut store,
                    WriteConsumer::<T> {
                        xfer: Transfer::new(file, offset, tx, T::pins),
                    },
                )?,
                Err(e) => {
                    data.close(&mut store)?;
                    let _ = tx.send(Err(e));
                }
            }
            Ok((FutureReader::new(&mut store, rx)?,))
        };
        if append {
            inst.func_wrap(
                name,
                move |store: StoreContextMut<'_, T>, (fd, data): (Resource<Descriptor>, StreamReader<u8>)| {
                    write(store, fd, data, None)
                },
            )?;
        } else {
            inst.func_wrap(
                name,
                move |store: StoreContextMut<'_, T>, (fd, data, at): (Resource<Descriptor>, StreamReader<u8>, u64)| {
                    write(store, fd, data, Some(at))
                },
            )?;
        }
    }
    Ok(())
}

/// A transfer in flight: its outcome, its backend id (none when it runs on
/// a blocking thread because the queue was full), and the buffer it uses.
struct InFlight {
    done: Arc<Completion>,
    id: Option<u64>,
    addr: usize,
    len: usize,
    cancel_asked: bool,
}

/// What a stream's producer and consumer share: the file, where the next
/// transfer goes (`None`: the file's end), the result future's sender, the
/// transfer in flight and how to reach the store's backend.
struct Transfer<T> {
    file: Arc<File>,
    at: Option<u64>,
    result: Option<oneshot::Sender<Done>>,
    in_flight: Option<InFlight>,
    get: fn(&mut T) -> PinCtxView<'_>,
}

impl<T> Transfer<T> {
    fn new(file: Arc<File>, at: Option<u64>, result: oneshot::Sender<Done>, get: fn(&mut T) -> PinCtxView<'_>) -> Self {
        Transfer {
            file,
            at,
            result: Some(result),
            in_flight: None,
            get,
        }
    }

    /// Ends the stream with `res` on the result future (once).
    fn close(&mut self, res: Done) -> StreamResult {
        if let Some(tx) = self.result.take() {
            let _ = tx.send(res);
        }
        StreamResult::Dropped
    }

    /// After `n` bytes moved: the next offset, or `overflow`.
    fn advance(&mut self, n: u32) -> StreamResult {
        match self.at.map(|at| at.checked_add(u64::from(n))) {
            Some(None) => self.close(Err(ErrorCode::Overflow)),
            Some(Some(next)) => {
                self.at = Some(next);
                StreamResult::Completed
            }
            None => StreamResult::Completed,
        }
    }

    /// Pins `[addr, addr+len)` of `mm` (`write`: the kernel writes into it)
    /// and starts the transfer on the store's backend; a full queue runs it
    /// on a blocking thread instead.
    fn start(&mut self, store: &mut T, mm: &Arc<Mm>, addr: usize, len: usize, read: bool) -> Result<(), Errno> {
        let offset = match self.at {
            Some(at) => file_offset(at)? as u64,
            None => 0,
        };
        let pin = pin_range(mm, addr, len, read)?;
        let done = Arc::new(Completion::default());
        let op = || Op {
            read,
            fd: self.file.clone(),
            pages: pin.clone(),
            ptr: addr as *mut u8,
            len: len as u32,
            offset,
            append: self.at.is_none(),
            done: done.clone(),
        };
        let id = match (self.get)(store).ctx.io.backend().and_then(|b| b.submit(op())) {
            Ok(id) => Some(id),
            Err(Errno::Again) => {
                let spare = op();
                // Detached: the thread owns the op (pin, file) until the
                // syscall returns, like a worker of the threads backend.
                drop(wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
                    tokio::task::spawn_blocking(move || spare.done.complete(spare.run()))
                }));
                None
            }
            Err(e) => return Err(e),
        };
        self.in_flight = Some(InFlight {
            done,
            id,
            addr,
            len,
            cancel_asked: false,
        });
        Ok(())
    }

    /// Reads what the page cache holds of the next `len` bytes straight into
    /// `[addr, addr+len)` of `mm`'s memory (the lent buffer), under a write
    /// pin, on this thread (`io::read_nowait`); `Again` if that would block.
    fn read_cached(&self, mm: &Arc<Mm>, addr: usize, len: usize) -> Result<u32, Errno> {
        let at = self.at.unwrap_or(0);
        let pin = pin_range(mm, addr, len, true)?;
        let n = crate::io::read_nowait(&self.file, addr as *mut u8, len as u32, at);
        drop(pin);
        n
    }

    /// The stream after a read or write that moved `r` bytes: `moved(n)`
    /// marks them, and the offset advances; a read of 0 bytes is the end of
    /// the file, an error ends the stream with it.
    fn settle(&mut self, r: Result<u32, Errno>, moved: impl FnOnce(u32)) -> StreamResult {
        match r {
            Ok(0) => self.close(Ok(())),
            Ok(n) => {
                moved(n);
                self.advance(n)
            }
            Err(e) => self.close(Err(error_code(e))),
        }
    }

    /// [`start`](Self::start)s the transfer, then answers `Pending` with the
    /// waker registered (woken at once if the transfer is done already): the
    /// `Destination`/`Source` of this poll went to find the buffer, so the
    /// outcome is the next poll's. A refused start ends the stream.
    fn launch(
        &mut self,
        cx: &mut Context<'_>,
        store: &mut T,
        mm: &Arc<Mm>,
        addr: usize,
        len: usize,
        read: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        if let Err(e) = self.start(store, mm, addr, len, read) {
            return Poll::Ready(Ok(self.close(Err(error_code(e)))));
        }
        let f = self.in_flight.as_ref().expect("a transfer is in flight");
        if f.done.poll_ready(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// The transfer in flight's outcome, or `Pending`; on `finish`, asks the
    /// backend to cancel it first (the answer still waits for the kernel).
    fn poll_in_flight(
        &mut self,
        cx: &mut Context<'_>,
        store: &mut T,
        finish: bool,
    ) -> Poll<(InFlight, Result<u32, Errno>)> {
        let f = self.in_flight.as_mut().expect("a transfer is in flight");
        if let Poll::Ready(r) = f.done.poll_ready(cx) {
            return Poll::Ready((self.in_flight.take().expect("in flight"), r));
        }
        if finish && !f.cancel_asked {
            f.cancel_asked = true;
            if let (Some(id), Ok(b)) = (f.id, (self.get)(store).ctx.io.backend()) {
                b.cancel(id);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for Transfer<T> {
    fn drop(&mut self) {
        // A stream dropped mid-transfer leaves the transfer to finish on
        // its own: it holds its pin and file, so nothing is touched after
        // they go. The result future says `ok`, as wasmtime-wasi's does.
        self.close(Ok(()));
    }
}

/// A pin on the host pages under `[addr, addr+len)` of `mm`'s memory.
fn pin_range(mm: &Arc<Mm>, addr: usize, len: usize, write: bool) -> Result<Arc<PinnedPages>, Errno> {
    let page = Mm::host_page_size() as usize;
    let off = addr - mm.base() as usize;
    let first = off / page * page;
    let pages = (off + len).div_ceil(page) - first / page;
    let flags = if write { GupFlags::WRITE } else { GupFlags::empty() };
    let pin = gup::pin_user_pages_fast(mm, first as u64, pages, flags)?;
    if pin.len() != pages {
        return Err(Errno::Fault);
    }
    Ok(Arc::new(pin))
}

/// An errno as WASI 0.3's error code.
fn error_code(e: Errno) -> ErrorCode {
    ErrorCode::from(std::io::Error::from_raw_os_error(e.raw()))
}

/// A buffer a transfer may be started on: the guest memory holding it, if
/// it is pinnable, and at most [`MAX_TRANSFER`] bytes of it.
fn pinnable(addr: *const u8, len: usize) -> Option<(Arc<Mm>, usize)> {
    let len = len.min(MAX_TRANSFER);
    PinMemoryCreator::find_containing(addr, len).map(|mm| (mm, len))
}

/// `read-via-stream`'s producer.
struct ReadProducer<T> {
    xfer: Transfer<T>,
}

impl<T: 'static> StreamProducer<T> for ReadProducer<T> {
    type Item = u8;
    type Buffer = Option<u8>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, T>,
        dst: Destination<'a, u8, Option<u8>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let x = &mut self.get_mut().xfer;
        if x.in_flight.is_none() {
            if finish {
                return Poll::Ready(Ok(StreamResult::Cancelled));
            }
            let inline = (x.get)(store.data_mut()).ctx.io.config().stream_reads_inline;
            let mut d = dst.as_direct(store.as_context_mut(), HOST_BUFFER);
            let buf = d.remaining();
            let (addr, len) = (buf.as_mut_ptr(), buf.len());
            if len == 0 {
                return Poll::Ready(Ok(StreamResult::Completed));
            }
            let Some((mm, len)) = pinnable(addr, len) else {
                return Poll::Ready(Ok(read_here(x, d)));
            };
            if inline {
                match x.read_cached(&mm, addr as usize, len) {
                    Err(Errno::Again) => {}
                    r => {
                        let done = x.settle(r, |n| d.mark_written(n as usize));
                        (x.get)(store.data_mut()).ctx.io.note_inline_read();
                        return Poll::Ready(Ok(done));
                    }
                }
            }
            // `dst` went to find the buffer: the outcome is the next poll's.
            return x.launch(cx, store.data_mut(), &mm, addr as usize, len, true);
        }
        let (f, r) = std::task::ready!(x.poll_in_flight(cx, store.data_mut(), finish));
        Poll::Ready(match r {
            Ok(0) => Ok(x.close(Ok(()))),
            Ok(n) => {
                let mut d = dst.as_direct(store, 0);
                f.still_lent(d.remaining())?;
                d.mark_written(n as usize);
                Ok(x.advance(n))
            }
            Err(Errno::Canceled) => Ok(StreamResult::Cancelled),
            Err(e) => Ok(x.close(Err(error_code(e)))),
        })
    }
}

/// A host reader, or a memory no creator made: one synchronous read of at
/// most [`HOST_BUFFER`] bytes into the buffer wasmtime hands over.
fn read_here<T: 'static>(x: &mut Transfer<T>, mut d: DirectDestination<'_, T>) -> StreamResult {
    let buf = d.remaining();
    let len = buf.len().min(MAX_TRANSFER) as u32;
    let r = crate::io::transfer(&x.file, true, buf.as_mut_ptr(), len, x.at.unwrap_or(0));
    x.settle(r, |n| d.mark_written(n as usize))
}

impl InFlight {
    /// An error (the store traps) unless `buf` is the buffer this transfer
    /// used: the lent buffer must not change before the read completes.
    fn still_lent(&self, buf: &[u8]) -> wasmtime::Result<()> {
        if buf.as_ptr() as usize != self.addr || buf.len() < self.len {
            wasmtime::bail!("wasm-pin: a stream's lent buffer changed while the kernel used it");
        }
        Ok(())
    }
}

/// `write-via-stream`'s and `append-via-stream`'s consumer.
struct WriteConsumer<T> {
    xfer: Transfer<T>,
}

impl<T: 'static> StreamConsumer<T> for WriteConsumer<T> {
    type Item = u8;

    fn poll_consume(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'_, T>,
        src: Source<'_, u8>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let x = &mut self.get_mut().xfer;
        if x.in_flight.is_none() {
            if finish {
                return Poll::Ready(Ok(StreamResult::Cancelled));
            }
            let mut s = src.as_direct(store.as_context_mut());
            let buf = s.remaining();
            let (addr, len) = (buf.as_ptr(), buf.len());
            if len == 0 {
                return Poll::Ready(Ok(StreamResult::Completed));
            }
            let Some((mm, len)) = pinnable(addr, len) else {
                return Poll::Ready(Ok(write_here(x, s)));
            };
            return x.launch(cx, store.data_mut(), &mm, addr as usize, len, false);
        }
        let (f, r) = std::task::ready!(x.poll_in_flight(cx, store.data_mut(), finish));
        Poll::Ready(match r {
            Ok(n) => {
                let mut s = src.as_direct(store);
                f.still_lent(s.remaining())?;
                s.mark_read(n as usize);
                Ok(x.advance(n))
            }
            Err(Errno::Canceled) => Ok(StreamResult::Cancelled),
            Err(e) => Ok(x.close(Err(error_code(e)))),
        })
    }
}

/// [`read_here`]'s twin for writes.
fn write_here<T: 'static>(x: &mut Transfer<T>, mut s: DirectSource<'_, T>) -> StreamResult {
    let buf = s.remaining();
    let (ptr, len) = (buf.as_ptr().cast_mut(), buf.len().min(MAX_TRANSFER) as u32);
    let r = match x.at {
        Some(at) => crate::io::transfer(&x.file, false, ptr, len, at),
        None => crate::io::append(&x.file, ptr, len),
    };
    match r {
        Ok(n) => {
            s.mark_read(n as usize);
            x.advance(n)
        }
        Err(e) => x.close(Err(error_code(e))),
    }
}
