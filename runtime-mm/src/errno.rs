//! Error values, named and numbered after the Linux errno the kernel's GUP returns.

/// Why a GUP call, a growth or a discard failed.
///
/// Every refusal of bad input is one of these values; the memory manager never
/// panics on a caller's arguments. [`Errno::raw`] gives the Linux value, so the
/// host ABI can hand guests the same numbers the kernel hands user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Errno {
    /// `EINVAL`: bad flags, an unaligned start or an overflowing range.
    #[error("invalid argument (EINVAL)")]
    Inval,
    /// `EFAULT`: the address is outside the accessible memory.
    #[error("bad address (EFAULT)")]
    Fault,
    /// `ENOMEM`: a limit was reached (memlock, reservation, quota) or the host
    /// could not commit or lock memory.
    #[error("out of memory or over a limit (ENOMEM)")]
    NoMem,
    /// `EBUSY`: the range holds pinned or referenced pages.
    #[error("pages are pinned or referenced (EBUSY)")]
    Busy,
    /// `EAGAIN`: the call would have had to wait (`NOWAIT`), or a quota on
    /// outstanding operations is full; retry later.
    #[error("try again (EAGAIN)")]
    Again,
    /// `EOPNOTSUPP`: the operation is not supported on this memory or platform.
    #[error("operation not supported (EOPNOTSUPP)")]
    OpNotSupp,
    /// `EOVERFLOW`: a page's pin or get counter is at its maximum; taking one
    /// more would wrap it.
    #[error("reference count would overflow (EOVERFLOW)")]
    Overflow,
    /// `EPERM`: the access is not allowed by how the pages were taken (for
    /// example writing through a pin taken without `WRITE`).
    #[error("operation not permitted (EPERM)")]
    Perm,
    /// `EBADF`: a handle that does not name a live object.
    #[error("bad handle (EBADF)")]
    BadF,
    /// `ENOENT`: no such file.
    #[error("no such file or directory (ENOENT)")]
    NoEnt,
    /// `EACCES`: access refused, including a path that would escape its
    /// directory.
    #[error("permission denied (EACCES)")]
    Acces,
    /// `EIO` and any I/O error without a closer value.
    #[error("I/O error (EIO)")]
    Io,
    /// `EEXIST`: the file exists.
    #[error("file exists (EEXIST)")]
    Exist,
    /// `ENOTDIR`: a path component is not a directory.
    #[error("not a directory (ENOTDIR)")]
    NotDir,
    /// `EISDIR`: the file is a directory.
    #[error("is a directory (EISDIR)")]
    IsDir,
    /// `ENOSPC`: no space left on the device.
    #[error("no space left on device (ENOSPC)")]
    NoSpc,
    /// `EPIPE`: the peer closed the connection.
    #[error("broken pipe (EPIPE)")]
    Pipe,
    /// `ECONNREFUSED`: nobody listens there.
    #[error("connection refused (ECONNREFUSED)")]
    ConnRefused,
    /// `ECONNRESET`: the peer reset the connection.
    #[error("connection reset (ECONNRESET)")]
    ConnReset,
    /// `ENOTCONN`: the socket is not connected.
    #[error("not connected (ENOTCONN)")]
    NotConn,
    /// `ETIMEDOUT`: the operation timed out.
    #[error("timed out (ETIMEDOUT)")]
    TimedOut,
    /// `ECANCELED`: the operation was cancelled.
    #[error("operation cancelled (ECANCELED)")]
    Canceled,
    /// `EMFILE`: this guest holds as many objects of the kind as its quota
    /// allows (or the process hit its descriptor limit).
    #[error("too many open objects for this guest (EMFILE)")]
    MFile,
    /// `ENFILE`: the system's limit on open files is reached.
    #[error("too many open files in the system (ENFILE)")]
    NFile,
}

impl Errno {
    /// The Linux errno value (positive), as in `<asm-generic/errno-base.h>`.
    ///
    /// ```
    /// assert_eq!(runtime_mm::Errno::Fault.raw(), 14);
    /// ```
    pub const fn raw(self) -> i32 {
        match self {
            Errno::Perm => 1,
            Errno::BadF => 9,
            Errno::Again => 11,
            Errno::NoMem => 12,
            Errno::Fault => 14,
            Errno::Busy => 16,
            Errno::Inval => 22,
            Errno::Overflow => 75,
            Errno::OpNotSupp => 95,
            Errno::NoEnt => 2,
            Errno::Acces => 13,
            Errno::Io => 5,
            Errno::Exist => 17,
            Errno::NotDir => 20,
            Errno::IsDir => 21,
            Errno::NoSpc => 28,
            Errno::Pipe => 32,
            Errno::ConnRefused => 111,
            Errno::ConnReset => 104,
            Errno::NotConn => 107,
            Errno::TimedOut => 110,
            Errno::Canceled => 125,
            Errno::MFile => 24,
            Errno::NFile => 23,
        }
    }

    /// The closest value for a host I/O error: its own errno if this type has
    /// it (`EWOULDBLOCK` is `Again`, `EXDEV` from a path escaping its
    /// directory is `Acces`; `EMFILE`/`ENFILE` keep their own values), `Io`
    /// otherwise.
    pub fn from_io(e: &std::io::Error) -> Errno {
        match e.raw_os_error() {
            Some(18) => Errno::Acces, // EXDEV: openat2 RESOLVE_BENEATH refusal
            Some(40) => Errno::Acces, // ELOOP: a symlink refused by RESOLVE_*
            Some(raw) => Errno::from_raw(raw).unwrap_or(Errno::Io),
            None => match e.kind() {
                std::io::ErrorKind::NotFound => Errno::NoEnt,
                std::io::ErrorKind::PermissionDenied => Errno::Acces,
                std::io::ErrorKind::TimedOut => Errno::TimedOut,
                std::io::ErrorKind::WouldBlock => Errno::Again,
                _ => Errno::Io,
            },
        }
    }

    /// The inverse of [`Errno::raw`], for values this crate produces.
    pub const fn from_raw(raw: i32) -> Option<Errno> {
        Some(match raw {
            1 => Errno::Perm,
            9 => Errno::BadF,
            11 => Errno::Again,
            12 => Errno::NoMem,
            14 => Errno::Fault,
            16 => Errno::Busy,
            22 => Errno::Inval,
            75 => Errno::Overflow,
            95 => Errno::OpNotSupp,
            2 => Errno::NoEnt,
            13 => Errno::Acces,
            5 => Errno::Io,
            17 => Errno::Exist,
            20 => Errno::NotDir,
            21 => Errno::IsDir,
            28 => Errno::NoSpc,
            32 => Errno::Pipe,
            111 => Errno::ConnRefused,
            104 => Errno::ConnReset,
            107 => Errno::NotConn,
            110 => Errno::TimedOut,
            125 => Errno::Canceled,
            24 => Errno::MFile,
            23 => Errno::NFile,
            _ => return None,
        })
    }

    /// Every value, for exhaustive tests and ABI tables.
    pub const ALL: [Errno; 24] = [
        Errno::Inval,
        Errno::Fault,
        Errno::NoMem,
        Errno::Busy,
        Errno::Again,
        Errno::OpNotSupp,
        Errno::Overflow,
        Errno::Perm,
        Errno::BadF,
        Errno::NoEnt,
        Errno::Acces,
        Errno::Io,
        Errno::Exist,
        Errno::NotDir,
        Errno::IsDir,
        Errno::NoSpc,
        Errno::Pipe,
        Errno::ConnRefused,
        Errno::ConnReset,
        Errno::NotConn,
        Errno::TimedOut,
        Errno::Canceled,
        Errno::MFile,
        Errno::NFile,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trips() {
        for e in Errno::ALL {
            assert_eq!(Errno::from_raw(e.raw()), Some(e));
        }
        assert_eq!(Errno::from_raw(0), None);
    }

    #[test]
    fn descriptor_exhaustion_keeps_its_errno() {
        let io = |raw| Errno::from_io(&std::io::Error::from_raw_os_error(raw));
        assert_eq!(io(24), Errno::MFile);
        assert_eq!(io(23), Errno::NFile);
        assert_eq!(io(18), Errno::Acces);
        assert_eq!(io(7), Errno::Io); // E2BIG: no closer value

        // Errors without an OS code map by kind.
        let kind = |k| Errno::from_io(&std::io::Error::from(k));
        use std::io::ErrorKind as K;
        assert_eq!(kind(K::NotFound), Errno::NoEnt);
        assert_eq!(kind(K::PermissionDenied), Errno::Acces);
        assert_eq!(kind(K::TimedOut), Errno::TimedOut);
        assert_eq!(kind(K::WouldBlock), Errno::Again);
        assert_eq!(kind(K::Other), Errno::Io);
    }
}
