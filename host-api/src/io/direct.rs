//! Direct I/O (`O_DIRECT`, the seed's Case 1): a WASI file reopened so that
//! transfers go between the device and the pinned guest pages with no
//! page-cache copy.
//!
//! The reopen goes through the descriptor's own open file
//! (`/proc/self/fd/N`, the same inode) with the same access mode, never more,
//! so the descriptor's and its preopen's permissions carry over. The new
//! descriptor is WASI's own type, in the same table: every WASI call and
//! every `zero-copy-io` call works on it.
//!
//! The kernel moves direct transfers in whole logical blocks; a misaligned
//! one may fail with `EINVAL` or, on some filesystems, fall back to buffered
//! I/O. So alignment is checked before the syscall, for every transfer on an
//! `O_DIRECT` file: file offset, length and buffer address must be multiples
//! of [`ALIGN`] (`inval` otherwise), never a short or corrupted transfer.
//! Guest buffers are pins, so their base is page aligned; the buffer offset
//! is what the check sees.

use runtime_mm::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Weak};
use wasmtime_wasi::filesystem::{Descriptor, File as WasiFile};
use wasmtime_wasi::OpenMode;

/// The alignment of direct transfers: the host page, a multiple of every
/// logical block size Linux filesystems use.
pub const ALIGN: u32 = 4096;

/// `inval` unless a direct transfer of `len` bytes at file offset `at` into
/// (or from) `ptr` is block aligned.
pub(crate) fn check_aligned(ptr: *const u8, len: u32, at: u64) -> Result<(), Errno> {
    let a = u64::from(ALIGN);
    if ![ptr as u64, u64::from(len), at].iter().all(|v| v.is_multiple_of(a)) {
        return Err(Errno::Inval);
    }
    Ok(())
}

/// Reopens the file behind `d` with `O_DIRECT`, same access, same
/// permissions. `isdir` for a directory; `opnotsupp` for anything but a
/// regular file, and where the filesystem refuses direct I/O (`EINVAL` from
/// `open`: tmpfs before Linux 6.6, some FUSE and overlay setups).
pub(crate) fn reopen(d: &Descriptor) -> Result<Descriptor, Errno> {
    let Descriptor::File(f) = d else {
        return Err(Errno::IsDir);
    };
    // Only regular files: reopening a FIFO through /proc would block the
    // host until a writer came, and devices or sockets have no direct I/O.
    if !f.file.metadata().map_err(|e| Errno::from_io(&e))?.is_file() {
        return Err(Errno::OpNotSupp);
    }
    let access = match (
        f.open_mode.contains(OpenMode::READ),
        f.open_mode.contains(OpenMode::WRITE),
    ) {
        (true, true) => libc::O_RDWR,
        (false, true) => libc::O_WRONLY,
        _ => libc::O_RDONLY,
    };
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.file.as_raw_fd())).expect("no NUL in a number");
    // SAFETY: a NUL-terminated path; the returned fd, if any, is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), access | libc::O_DIRECT | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EINVAL) => Errno::OpNotSupp,
            _ => Errno::from_io(&e),
        });
    }
    // SAFETY: `fd` was just opened and is owned by no one else.
    let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(Descriptor::File(WasiFile::new(file, f.perms, f.open_mode, false)))
}

/// The files a guest opened through wasm-pin (direct reopens), counted
/// against its file quota while any reference to them lives: the guest's
/// descriptor (dropped through WASI, which wasm-pin does not see) or a
/// transfer still in flight.
#[derive(Debug, Default)]
pub(crate) struct OwnFiles(Vec<Weak<File>>);

impl OwnFiles {
    pub(crate) fn live(&self) -> u32 {
        self.0.iter().filter(|w| w.strong_count() > 0).count() as u32
    }

    /// Whether `file` is one of them, i.e. was opened with `O_DIRECT` (the
    /// only files a guest can open so; WASI's `open-at` has no such flag).
    /// No syscall: identity of the open file, which a `Weak` keeps unique
    /// for as long as it is listed.
    pub(crate) fn is_direct(&self, file: &Arc<File>) -> bool {
        self.0.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(file)))
    }

    pub(crate) fn add(&mut self, d: &Descriptor) {
        if let Descriptor::File(f) = d {
            // Forget the closed ones first, so the list stays as long as
            // the quota at most.
            self.0.retain(|w| w.strong_count() > 0);
            self.0.push(Arc::downgrade(&f.file));
        }
    }
}
