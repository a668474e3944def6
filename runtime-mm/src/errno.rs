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
            _ => return None,
        })
    }

    /// Every value, for exhaustive tests and ABI tables.
    pub const ALL: [Errno; 9] = [
        Errno::Inval,
        Errno::Fault,
        Errno::NoMem,
        Errno::Busy,
        Errno::Again,
        Errno::OpNotSupp,
        Errno::Overflow,
        Errno::Perm,
        Errno::BadF,
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
}
