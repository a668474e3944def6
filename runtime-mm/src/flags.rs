//! `GupFlags`: the caller's bits and the internal bits of a GUP call.

bitflags::bitflags! {
    /// Flags of a GUP call, with the kernel's `FOLL_*` values.
    ///
    /// Callers may pass only [`GupFlags::CALLER`] bits (`WRITE`, `FORCE`,
    /// `NOWAIT`); `get_user_pages*` also tolerate `GET`, which they set anyway.
    /// `PIN`, `GET`, `LONGTERM` and `REMOTE` are set by the entry points
    /// themselves: passing `PIN` or `LONGTERM` to any call, `GET` to a `pin_*`
    /// call, `REMOTE` to a local call, or any unknown bit, is refused with
    /// [`Errno::Inval`](crate::Errno::Inval) and nothing is taken. This is the
    /// seed's rule ("FOLL_PIN must only be set internally"), extended to
    /// `FOLL_LONGTERM`, which the seed could not yet enforce.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct GupFlags: u32 {
        /// `FOLL_WRITE`: the caller will write to the pages.
        const WRITE = 0x01;
        /// `FOLL_GET`: take a get reference (released by `put`).
        const GET = 0x04;
        /// `FOLL_FORCE`: take the pages even where the mapping is not writable.
        /// Linear memory has no read-only pages, so this changes nothing today.
        const FORCE = 0x10;
        /// `FOLL_NOWAIT`: never block on the memory's lock and never fault a
        /// page in; stop at the first page that would need either.
        const NOWAIT = 0x20;
        /// `FOLL_REMOTE`: the memory is not the caller's own.
        const REMOTE = 0x2000;
        /// `FOLL_LONGTERM`: the pin is held for an indefinite time.
        const LONGTERM = 0x1_0000;
        /// `FOLL_PIN`: take a pin (released by `unpin`).
        const PIN = 0x4_0000;
    }
}

impl GupFlags {
    /// The bits a caller may pass.
    pub const CALLER: GupFlags = GupFlags::WRITE.union(GupFlags::FORCE).union(GupFlags::NOWAIT);
    /// The bits only the GUP entry points set.
    pub const INTERNAL: GupFlags = GupFlags::PIN
        .union(GupFlags::GET)
        .union(GupFlags::LONGTERM)
        .union(GupFlags::REMOTE);
}
