//! `File`: a WASI file with zero-copy transfers to and from pinned buffers.

use crate::bindings::wasi::filesystem::preopens::get_directories;
use crate::bindings::wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use crate::bindings::wasm_pin::mm::one_call_io;
use crate::bindings::wasm_pin::mm::zero_copy_io::{self as zio, IoTicket};
use crate::{Error, PinnedBuf};
use std::marker::PhantomData;
use std::ops::Range;

/// A file opened with WASI (`open-at` under the host's preopened
/// directories, with their permissions). Closed when dropped.
pub struct File {
    fd: Descriptor,
}

/// A one-call length: `inval` past `u32::MAX` bytes.
fn len32(len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::Pin(crate::bindings::wasm_pin::mm::gup::Errno::Inval))
}

/// A [`File`] registered with the host (`register-file`): one-call
/// transfers name it by a slot instead of lending the descriptor on every
/// call, which is most of such a call's host cost beyond the copy. It keeps
/// the file open on the host until dropped (then `unregister-file`), even
/// after the `File` is closed.
pub struct RegisteredFile {
    slot: u32,
}

impl RegisteredFile {
    /// [`File::read_into`] through the slot.
    pub fn read_into(&self, buf: &mut [u8], at: u64) -> Result<usize, Error> {
        Ok(one_call_io::read_into_fixed(self.slot, buf.as_mut_ptr() as u64, len32(buf.len())?, at)? as usize)
    }

    /// [`File::write_from`] through the slot.
    pub fn write_from(&self, buf: &[u8], at: u64) -> Result<usize, Error> {
        Ok(one_call_io::write_from_fixed(self.slot, buf.as_ptr() as u64, len32(buf.len())?, at)? as usize)
    }
}

impl Drop for RegisteredFile {
    fn drop(&mut self) {
        // Only a slot this value holds; `badf` cannot happen.
        let _ = one_call_io::unregister_file(self.slot);
    }
}

/// Finds the preopen holding `path`: the longest guest directory that is a
/// whole-component prefix of it (a relative path: the `.` preopen). Returns
/// the directory and the path below it.
fn preopen_for(path: &str) -> Result<(Descriptor, String), Error> {
    let mut best: Option<(Descriptor, String, usize)> = None;
    for (dir, name) in get_directories() {
        let name_t = name.trim_end_matches('/');
        let rest = if name == "." && !path.starts_with('/') {
            Some(path.trim_start_matches("./"))
        } else if name_t.is_empty() {
            path.strip_prefix('/')
        } else {
            path.strip_prefix(name_t).and_then(|r| r.strip_prefix('/'))
        };
        if let Some(rest) = rest {
            if best.as_ref().is_none_or(|(_, _, n)| name.len() > *n) {
                best = Some((dir, rest.to_string(), name.len()));
            }
        }
    }
    best.map(|(d, r, _)| (d, r)).ok_or(Error::NotPreopened)
}

impl File {
    fn open_with(path: &str, open: OpenFlags, flags: DescriptorFlags) -> Result<File, Error> {
        let (dir, rest) = preopen_for(path)?;
        let fd = dir.open_at(PathFlags::SYMLINK_FOLLOW, &rest, open, flags)?;
        Ok(File { fd })
    }

    /// Opens an existing file for reading.
    pub fn open(path: &str) -> Result<File, Error> {
        File::open_with(path, OpenFlags::empty(), DescriptorFlags::READ)
    }

    /// Creates (or truncates) a file for writing.
    pub fn create(path: &str) -> Result<File, Error> {
        File::open_with(
            path,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
    }

    /// Opens the same file again for direct I/O (`O_DIRECT`): transfers skip
    /// the page cache; offsets, lengths and buffer ranges must be multiples
    /// of [`File::direct_alignment`] (`inval` otherwise). `opnotsupp` where
    /// the filesystem refuses it.
    pub fn open_direct(&self) -> Result<File, Error> {
        Ok(File {
            fd: zio::open_direct(&self.fd)?,
        })
    }

    /// The alignment direct transfers need, in bytes.
    pub fn direct_alignment() -> usize {
        zio::direct_alignment() as usize
    }

    /// The file's size in bytes.
    pub fn size(&self) -> Result<u64, Error> {
        Ok(self.fd.stat()?.size)
    }

    /// The WASI descriptor, for the raw calls.
    pub fn descriptor(&self) -> &Descriptor {
        &self.fd
    }

    /// Reads up to `range.len()` bytes at file offset `at` straight into
    /// `buf[range]`; returns the bytes read (0 at end of file).
    pub fn read_at(&self, buf: &mut PinnedBuf, range: Range<usize>, at: u64) -> Result<usize, Error> {
        let (off, len) = buf.span(range)?;
        Ok(zio::read_at(&self.fd, buf.pin(), off, len, at)? as usize)
    }

    /// Writes `buf[range]` at file offset `at` straight from the buffer;
    /// returns the bytes written.
    pub fn write_at(&self, buf: &PinnedBuf, range: Range<usize>, at: u64) -> Result<usize, Error> {
        let (off, len) = buf.span(range)?;
        Ok(zio::write_at(&self.fd, buf.pin(), off, len, at)? as usize)
    }

    /// Reads up to `buf.len()` bytes at file offset `at` straight into any
    /// slice of this program's memory (no `PinnedBuf` needed): the host pins
    /// the slice's pages for the call only (`one-call-io`). Returns the bytes
    /// read.
    pub fn read_into(&self, buf: &mut [u8], at: u64) -> Result<usize, Error> {
        Ok(one_call_io::read_into(&self.fd, buf.as_mut_ptr() as u64, len32(buf.len())?, at)? as usize)
    }

    /// Writes `buf` at file offset `at` straight from this program's memory
    /// (pinned for the call only). Returns the bytes written.
    pub fn write_from(&self, buf: &[u8], at: u64) -> Result<usize, Error> {
        Ok(one_call_io::write_from(&self.fd, buf.as_ptr() as u64, len32(buf.len())?, at)? as usize)
    }

    /// Registers the file for one-call transfers by slot
    /// ([`RegisteredFile`]); counts against the host's file quota until
    /// the registration is dropped.
    pub fn register(&self) -> Result<RegisteredFile, Error> {
        Ok(RegisteredFile {
            slot: one_call_io::register_file(&self.fd)?,
        })
    }

    /// Starts reading into `buf[range]` from file offset `at`; the program
    /// goes on meanwhile. `buf` stays borrowed until the [`Ticket`] is
    /// waited for or dropped, so nothing reads bytes the host is writing.
    pub fn submit_read_at<'b>(
        &self,
        buf: &'b mut PinnedBuf,
        range: Range<usize>,
        at: u64,
    ) -> Result<Ticket<'b>, Error> {
        let (off, len) = buf.span(range)?;
        Ticket::new(zio::submit_read_at(&self.fd, buf.pin(), off, len, at)?)
    }

    /// Starts writing `buf[range]` at file offset `at` (as
    /// [`submit_read_at`](File::submit_read_at); `buf` stays shared-borrowed,
    /// so nothing changes the bytes being written).
    pub fn submit_write_at<'b>(&self, buf: &'b PinnedBuf, range: Range<usize>, at: u64) -> Result<Ticket<'b>, Error> {
        let (off, len) = buf.span(range)?;
        Ticket::new(zio::submit_write_at(&self.fd, buf.pin(), off, len, at)?)
    }
}

/// An asynchronous transfer on a buffer borrowed for `'b`. Dropping it
/// before [`wait`](Ticket::wait) still waits for the transfer to finish, so
/// the buffer is never released under the host's feet.
pub struct Ticket<'b> {
    t: Option<IoTicket>,
    _buf: PhantomData<&'b mut PinnedBuf>,
}

impl Ticket<'_> {
    fn new(t: IoTicket) -> Result<Self, Error> {
        let t = Some(t);
        Ok(Ticket { t, _buf: PhantomData })
    }

    /// The bytes moved, once the transfer has finished (without blocking).
    pub fn poll(&self) -> Option<Result<usize, Error>> {
        let t = self.t.as_ref()?;
        t.poll().map(|r| r.map(|n| n as usize).map_err(Error::from))
    }

    /// Waits for the transfer; returns the bytes moved.
    pub fn wait(mut self) -> Result<usize, Error> {
        let t = self.t.take().expect("a ticket is waited once");
        finish(&t)
    }

    /// A `wasi:io/poll` pollable, ready when the transfer has finished.
    pub fn subscribe(&self) -> crate::bindings::wasi::io::poll::Pollable {
        self.t.as_ref().expect("not waited yet").subscribe()
    }
}

fn finish(t: &IoTicket) -> Result<usize, Error> {
    loop {
        if let Some(r) = t.wait(u32::MAX) {
            return r.map(|n| n as usize).map_err(Error::from);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.t.take() {
            let _ = finish(&t);
        }
    }
}

impl std::fmt::Debug for Ticket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("done", &self.poll().is_some()).finish()
    }
}
