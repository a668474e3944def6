//! The `zero-copy-io` and `environment` imports, implemented on [`MmHost`].

use super::path::{open_beneath, OpenMode};
use super::{syscall_result, transfer, BackendKind, GuestFile, GuestTicket, Op};
use crate::bindings::wasm_pin::mm::environment;
use crate::bindings::wasm_pin::mm::zero_copy_io::{
    self as zio, Backend as WitBackend, Errno, HostFile, HostIoTicket, HostTcpListener, HostTcpStream, IoSlice,
    OpenFlags,
};
use crate::host::Kind;
use crate::{GuestPin, MmHost};
use runtime_mm::{Errno as E, PinnedPages};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Resource;
use wasmtime::Result;

type R<T> = Result<std::result::Result<T, Errno>>;

fn ok<T>(r: std::result::Result<T, E>) -> R<T> {
    Ok(r.map_err(Errno::from))
}

fn trap(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("wasm-pin: bad {what} handle"))
}

fn io_err(e: std::io::Error) -> E {
    E::from_io(&e)
}

impl MmHost {
    /// Resolves `len` bytes at `off` of a guest pin: the pin (to keep) and the
    /// host address. `into`: the bytes will be written (needs a write pin).
    fn buffer(
        &self,
        pin: &Resource<GuestPin>,
        off: u32,
        len: u32,
        into: bool,
    ) -> Result<(Arc<PinnedPages>, *mut u8), E> {
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

    fn file(&self, f: &Resource<GuestFile>) -> Result<Arc<std::os::fd::OwnedFd>> {
        Ok(self.table_ref().get(f).map_err(|_| trap("file"))?.fd.clone())
    }

    fn sync_transfer(
        &mut self,
        f: &Resource<GuestFile>,
        read: bool,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> R<u32> {
        let fd = self.file(f)?;
        ok(self
            .buffer(buf, off, len, read)
            .and_then(|(_pin, ptr)| transfer(&fd, read, ptr, len, at)))
    }

    fn vectored(&mut self, f: &Resource<GuestFile>, read: bool, bufs: &[IoSlice], at: u64) -> R<u64> {
        let fd = self.file(f)?;
        let mut pins = Vec::with_capacity(bufs.len());
        let mut iov = Vec::with_capacity(bufs.len());
        for s in bufs {
            match self.buffer(&s.buf, s.offset, s.len, read) {
                Ok((pin, ptr)) => {
                    pins.push(pin);
                    iov.push(libc::iovec {
                        iov_base: ptr.cast(),
                        iov_len: s.len as usize,
                    });
                }
                Err(e) => return ok(Err(e)),
            }
        }
        let cnt = i32::try_from(iov.len()).map_err(|_| trap("io-slice list"))?;
        // SAFETY: each iovec is a raw pointer + length inside a pin held in
        // `pins` for the whole call (a write pin for reads into it). No Rust
        // reference to guest memory is formed, so slices that overlap each
        // other, or bytes other guest threads write meanwhile, alias nothing
        // Rust knows of: only the kernel touches them, as a device would.
        let n = unsafe {
            if read {
                libc::preadv(fd.as_raw_fd(), iov.as_ptr(), cnt, at as libc::off_t)
            } else {
                libc::pwritev(fd.as_raw_fd(), iov.as_ptr(), cnt, at as libc::off_t)
            }
        };
        drop(pins);
        ok(syscall_result(n).map(|n| n as u64))
    }

    fn submit(
        &mut self,
        f: &Resource<GuestFile>,
        read: bool,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> R<Resource<GuestTicket>> {
        let fd = self.file(f)?;
        if let Err(e) = self.admit(Kind::Ticket) {
            return ok(Err(e));
        }
        let (pages, ptr) = match self.buffer(buf, off, len, read) {
            Ok(b) => b,
            Err(e) => return ok(Err(e)),
        };
        let done = Arc::default();
        let op = Op {
            read,
            fd,
            pages: pages.clone(),
            ptr,
            len,
            offset: at,
            done: Arc::clone(&done),
        };
        let r = self.io.backend().and_then(|b| {
            b.remember(&pages);
            b.submit(op)
        });
        match r {
            Ok(id) => match self.push(Kind::Ticket, GuestTicket { id, done: done.clone() }) {
                Ok(t) => ok(Ok(t)),
                Err(e) => {
                    // Over the ticket quota: the transfer was started, so
                    // cancel it (its pin is held until it ends).
                    if let Ok(b) = self.io.backend() {
                        b.cancel(id);
                    }
                    ok(Err(e))
                }
            },
            Err(e) => ok(Err(e)),
        }
    }

    /// `recv` into (`into`) or `send` from a range of a guest pin.
    fn socket_io(
        &mut self,
        s: &Resource<TcpStream>,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        into: bool,
    ) -> R<u32> {
        let (_pin, ptr) = match self.buffer(buf, off, len, into) {
            Ok(b) => b,
            Err(e) => return ok(Err(e)),
        };
        let fd = self.table_ref().get(s).map_err(|_| trap("tcp-stream"))?.as_raw_fd();
        // SAFETY: raw pointer + length inside a pin held by the store's table
        // for the whole call (a write pin if `into`); see `transfer`.
        let n = unsafe {
            if into {
                libc::recv(fd, ptr.cast(), len as usize, 0)
            } else {
                libc::send(fd, ptr.cast(), len as usize, libc::MSG_NOSIGNAL)
            }
        };
        ok(syscall_result(n).map(|n| n as u32))
    }
}

impl HostFile for MmHost {
    fn read_at(&mut self, f: Resource<GuestFile>, buf: Resource<GuestPin>, off: u32, len: u32, at: u64) -> R<u32> {
        self.sync_transfer(&f, true, &buf, off, len, at)
    }

    fn write_at(&mut self, f: Resource<GuestFile>, buf: Resource<GuestPin>, off: u32, len: u32, at: u64) -> R<u32> {
        self.sync_transfer(&f, false, &buf, off, len, at)
    }

    fn read_at_vectored(&mut self, f: Resource<GuestFile>, bufs: Vec<IoSlice>, at: u64) -> R<u64> {
        self.vectored(&f, true, &bufs, at)
    }

    fn write_at_vectored(&mut self, f: Resource<GuestFile>, bufs: Vec<IoSlice>, at: u64) -> R<u64> {
        self.vectored(&f, false, &bufs, at)
    }

    fn submit_read_at(
        &mut self,
        f: Resource<GuestFile>,
        buf: Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> R<Resource<GuestTicket>> {
        self.submit(&f, true, &buf, off, len, at)
    }

    fn submit_write_at(
        &mut self,
        f: Resource<GuestFile>,
        buf: Resource<GuestPin>,
        off: u32,
        len: u32,
        at: u64,
    ) -> R<Resource<GuestTicket>> {
        self.submit(&f, false, &buf, off, len, at)
    }

    fn size(&mut self, f: Resource<GuestFile>) -> R<u64> {
        let fd = self.file(&f)?;
        ok(rustix::fs::fstat(&*fd)
            .map(|st| st.st_size as u64)
            .map_err(|e| io_err(e.into())))
    }

    fn sync(&mut self, f: Resource<GuestFile>) -> R<()> {
        let fd = self.file(&f)?;
        ok(rustix::fs::fdatasync(&*fd).map_err(|e| io_err(e.into())))
    }

    fn drop(&mut self, f: Resource<GuestFile>) -> Result<()> {
        // Transfers in flight hold their own reference to the descriptor.
        self.remove(Kind::File, f).map(drop).map_err(|_| trap("file"))
    }
}

impl HostIoTicket for MmHost {
    fn poll(&mut self, t: Resource<GuestTicket>) -> Result<Option<std::result::Result<u32, Errno>>> {
        let t = self.table_ref().get(&t).map_err(|_| trap("io-ticket"))?;
        Ok(t.done.poll().map(|r| r.map_err(Errno::from)))
    }

    fn wait(&mut self, t: Resource<GuestTicket>, timeout_ms: u32) -> Result<Option<std::result::Result<u32, Errno>>> {
        let done = self.table_ref().get(&t).map_err(|_| trap("io-ticket"))?.done.clone();
        Ok(done
            .wait(Duration::from_millis(timeout_ms.into()))
            .map(|r| r.map_err(Errno::from)))
    }

    fn drop(&mut self, t: Resource<GuestTicket>) -> Result<()> {
        let t = self.remove(Kind::Ticket, t).map_err(|_| trap("io-ticket"))?;
        if t.done.poll().is_none() {
            if let Ok(b) = self.io.backend() {
                b.cancel(t.id);
            }
        }
        Ok(())
    }
}

impl HostTcpListener for MmHost {
    fn bind(&mut self, port: u16) -> R<Resource<TcpListener>> {
        let l = self
            .admit(Kind::Socket)
            .and_then(|()| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(io_err));
        ok(l.and_then(|l| self.push(Kind::Socket, l)))
    }

    fn local_port(&mut self, l: Resource<TcpListener>) -> Result<u16> {
        let l = self.table_ref().get(&l).map_err(|_| trap("tcp-listener"))?;
        Ok(l.local_addr().map(|a| a.port()).unwrap_or(0))
    }

    fn accept(&mut self, l: Resource<TcpListener>) -> R<Resource<TcpStream>> {
        if let Err(e) = self.admit(Kind::Socket) {
            return ok(Err(e));
        }
        let l = self.table_ref().get(&l).map_err(|_| trap("tcp-listener"))?;
        let s = l.accept().map(|(s, _)| s).map_err(io_err);
        ok(s.and_then(|s| self.push(Kind::Socket, s)))
    }

    fn drop(&mut self, l: Resource<TcpListener>) -> Result<()> {
        self.remove(Kind::Socket, l).map(drop).map_err(|_| trap("tcp-listener"))
    }
}

impl HostTcpStream for MmHost {
    fn connect(&mut self, port: u16) -> R<Resource<TcpStream>> {
        let s = self
            .admit(Kind::Socket)
            .and_then(|()| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(io_err));
        ok(s.and_then(|s| self.push(Kind::Socket, s)))
    }

    fn send(&mut self, s: Resource<TcpStream>, buf: Resource<GuestPin>, off: u32, len: u32) -> R<u32> {
        self.socket_io(&s, &buf, off, len, false)
    }

    fn recv(&mut self, s: Resource<TcpStream>, buf: Resource<GuestPin>, off: u32, len: u32) -> R<u32> {
        self.socket_io(&s, &buf, off, len, true)
    }

    fn drop(&mut self, s: Resource<TcpStream>) -> Result<()> {
        self.remove(Kind::Socket, s).map(drop).map_err(|_| trap("tcp-stream"))
    }
}

impl zio::Host for MmHost {
    fn open(&mut self, path: String, flags: OpenFlags) -> R<Resource<GuestFile>> {
        let mode = OpenMode {
            read: flags.contains(OpenFlags::READ),
            write: flags.contains(OpenFlags::WRITE),
            create: flags.contains(OpenFlags::CREATE),
            truncate: flags.contains(OpenFlags::TRUNCATE),
        };
        let fd = self
            .admit(Kind::File)
            .and_then(|()| self.io.dir())
            .and_then(|dir| open_beneath(dir, &path, mode));
        ok(fd.and_then(|fd| self.push(Kind::File, GuestFile { fd: Arc::new(fd) })))
    }

    fn io_backend(&mut self) -> Result<WitBackend> {
        Ok(match self.io.backend_kind() {
            Ok(BackendKind::IoUring) => WitBackend::IoUring,
            _ => WitBackend::Threads,
        })
    }
}

impl environment::Host for MmHost {
    fn args(&mut self) -> Result<Vec<String>> {
        Ok(self.io.config.args.clone())
    }

    fn print(&mut self, line: String) -> Result<()> {
        self.print_line(&line);
        Ok(())
    }
}
