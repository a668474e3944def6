//! Opening files beneath the pre-opened directory.
//!
//! The kernel enforces the confinement: `openat2(2)` with `RESOLVE_BENEATH`
//! refuses absolute paths, `..` that climbs above the directory, and symlinks
//! that lead out of it (`EXDEV`), and `RESOLVE_NO_MAGICLINKS` refuses
//! `/proc/self/fd`-style links. Refusals come back as `acces`.
//!
//! Only regular files are opened: a FIFO, socket or device could block the
//! host thread in `open` or in a transfer. The open itself is non-blocking so
//! a FIFO cannot stall it, and anything but a regular file is refused
//! (`isdir` for a directory, `acces` for the rest).

use runtime_mm::Errno;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::os::fd::OwnedFd;
use std::path::Path;

pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Errno::from_io(&e.into()))
}

/// How a guest opens a file.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OpenMode {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub truncate: bool,
}

pub(crate) fn open_beneath(dir: &OwnedFd, path: &str, mode: OpenMode) -> Result<OwnedFd, Errno> {
    if path.is_empty() || path.len() > 4096 || path.contains('\0') {
        return Err(Errno::Inval);
    }
    let mut flags = match (mode.read, mode.write) {
        (true, true) => OFlags::RDWR,
        (false, true) => OFlags::WRONLY,
        (_, false) => OFlags::RDONLY,
    };
    if mode.create {
        flags |= OFlags::CREATE;
    }
    if mode.truncate {
        flags |= OFlags::TRUNC;
    }
    flags |= OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    // openat2 refuses a mode without O_CREAT.
    let perm = if mode.create {
        Mode::from_bits_truncate(0o644)
    } else {
        Mode::empty()
    };
    let io = |e: rustix::io::Errno| Errno::from_io(&e.into());
    let fd = rustix::fs::openat2(dir, path, flags, perm, resolve).map_err(io)?;
    match rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&fd).map_err(io)?.st_mode) {
        rustix::fs::FileType::RegularFile => {}
        rustix::fs::FileType::Directory => return Err(Errno::IsDir),
        _ => return Err(Errno::Acces),
    }
    // Back to blocking: io_uring honours O_NONBLOCK and would answer EAGAIN
    // for uncached data instead of completing the read.
    let fl = rustix::fs::fcntl_getfl(&fd).map_err(io)?;
    rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK).map_err(io)?;
    Ok(fd)
}
