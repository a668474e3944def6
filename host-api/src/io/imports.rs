//! The `zero-copy-io` and `environment` imports, implemented on [`MmHost`].

use super::path::{open_beneath, OpenMode};
use super::{transfer, BackendKind, GuestFile, GuestTicket, Op};
use crate::bindings::wasm_pin::mm::environment;
use crate::bindings::wasm_pin::mm::zero_copy_io::{
    self as zio, Backend as WitBackend, Errno, HostFile, HostIoTicket, HostTcpListener, HostTcpStream, IoSlice,
    OpenFlags,
};
use crate::{GuestPin, MmHost};
use runtime_mm::{Errno as E, PinnedPages};
use std::io::{IoSlice as StdIoSlice, IoSliceMut, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
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
        let mut ranges = Vec::with_capacity(bufs.len());
        for s in bufs {
            match self.buffer(&s.buf, s.offset, s.len, read) {
                Ok((pin, ptr)) => ranges.push((pin, ptr, s.len as usize)),
                Err(e) => return ok(Err(e)),
            }
        }
        // SAFETY: each range lies inside a pin held in `ranges` for the whole
        // call (write pins for reads into them); see `transfer`.
        let r = unsafe {
            if read {
                let mut io: Vec<IoSliceMut<'_>> = ranges
                    .iter()
                    .map(|(_, p, l)| IoSliceMut::new(std::slice::from_raw_parts_mut(*p, *l)))
                    .collect();
                rustix::io::preadv(&*fd, &mut io, at)
            } else {
                let io: Vec<StdIoSlice<'_>> = ranges
                    .iter()
                    .map(|(_, p, l)| StdIoSlice::new(std::slice::from_raw_parts(*p, *l)))
                    .collect();
                rustix::io::pwritev(&*fd, &io, at)
            }
        };
        ok(r.map(|n| n as u64).map_err(|e| io_err(e.into())))
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
            Ok(id) => ok(self.table().push(GuestTicket { id, done }).map_err(|_| E::Again)),
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
        let mut stream = self.table_ref().get(s).map_err(|_| trap("tcp-stream"))?;
        // SAFETY: the range lies inside a pin held by the store's table for
        // the whole call (a write pin if `into`); see `transfer`.
        let n = unsafe {
            if into {
                stream.read(std::slice::from_raw_parts_mut(ptr, len as usize))
            } else {
                stream.write(std::slice::from_raw_parts(ptr, len as usize))
            }
        };
        ok(n.map(|n| n as u32).map_err(io_err))
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
        self.table().delete(f).map(drop).map_err(|_| trap("file"))
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
        let t = self.table().delete(t).map_err(|_| trap("io-ticket"))?;
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
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(io_err);
        ok(l.and_then(|l| self.table().push(l).map_err(|_| E::Again)))
    }

    fn local_port(&mut self, l: Resource<TcpListener>) -> Result<u16> {
        let l = self.table_ref().get(&l).map_err(|_| trap("tcp-listener"))?;
        Ok(l.local_addr().map(|a| a.port()).unwrap_or(0))
    }

    fn accept(&mut self, l: Resource<TcpListener>) -> R<Resource<TcpStream>> {
        let l = self.table_ref().get(&l).map_err(|_| trap("tcp-listener"))?;
        let s = l.accept().map(|(s, _)| s).map_err(io_err);
        ok(s.and_then(|s| self.table().push(s).map_err(|_| E::Again)))
    }

    fn drop(&mut self, l: Resource<TcpListener>) -> Result<()> {
        self.table().delete(l).map(drop).map_err(|_| trap("tcp-listener"))
    }
}

impl HostTcpStream for MmHost {
    fn connect(&mut self, port: u16) -> R<Resource<TcpStream>> {
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(io_err);
        ok(s.and_then(|s| self.table().push(s).map_err(|_| E::Again)))
    }

    fn send(&mut self, s: Resource<TcpStream>, buf: Resource<GuestPin>, off: u32, len: u32) -> R<u32> {
        self.socket_io(&s, &buf, off, len, false)
    }

    fn recv(&mut self, s: Resource<TcpStream>, buf: Resource<GuestPin>, off: u32, len: u32) -> R<u32> {
        self.socket_io(&s, &buf, off, len, true)
    }

    fn drop(&mut self, s: Resource<TcpStream>) -> Result<()> {
        self.table().delete(s).map(drop).map_err(|_| trap("tcp-stream"))
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
        let fd = self.io.dir().and_then(|dir| open_beneath(dir, &path, mode));
        ok(fd.and_then(|fd| self.table().push(GuestFile { fd: Arc::new(fd) }).map_err(|_| E::Again)))
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
