//! The pin operations on a [`PinCtxView`]: pin under the quotas, release,
//! grants, and the guest objects kept in the store's table.

use crate::quotas::Kind;
use crate::view::PinCtxView;
use runtime_mm::{gup, Errno, GupFlags, Mm, PinnedPages};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use wasmtime::component::Resource;

/// A guest's pin: the `pinned-pages` resource.
///
/// Shared (`Arc`) so that host I/O still in flight keeps the pages pinned
/// after the guest releases its handle; the pin itself is released when the
/// last holder drops.
#[derive(Debug, Clone)]
pub struct GuestPin {
    /// The pinned pages.
    pub pages: Arc<PinnedPages>,
}

/// A guest's pins of several ranges: the `pinned-vec` resource.
///
/// Short-term pins only, never registered with an I/O backend and never
/// lent to a transfer, so each is owned here (no `Arc` per range).
#[derive(Debug)]
pub struct GuestPinVec {
    /// The pinned ranges, in the order asked.
    pub pins: Vec<PinnedPages>,
}

/// A memory granted to a guest: the `memory-grant` resource.
#[derive(Debug, Clone)]
pub struct GuestGrant {
    /// The granted memory.
    pub mm: Arc<Mm>,
}

/// Which GUP entry point a guest called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PinKind {
    User,
    UserFast,
    Longterm,
    LongtermFast,
    UserRemote,
    LongtermRemote,
}

impl PinKind {
    fn longterm(self) -> bool {
        matches!(
            self,
            PinKind::Longterm | PinKind::LongtermFast | PinKind::LongtermRemote
        )
    }
}

impl PinCtxView<'_> {
    pub(crate) fn own_mm(&self) -> Result<Arc<Mm>, Errno> {
        // No memory resolved or attached: not a memory of a `PinMemoryCreator`.
        self.ctx.mm.clone().ok_or_else(|| {
            self.ctx.warn_no_memory();
            Errno::OpNotSupp
        })
    }

    /// Pins for the guest under the quotas and stores the handle.
    ///
    /// The byte quotas hold at every instant, also while the memory grows on
    /// another thread (a shared memory, a granted peer): the request is
    /// refused if, at the length seen now, it could take more than the room
    /// left, and it is then *clamped* to that room, so a memory that grows
    /// between the check and the pin cannot let the pin take more.
    pub(crate) fn pin_pages(
        &mut self,
        mm: &Arc<Mm>,
        kind: PinKind,
        start: u64,
        nr_pages: u32,
        flags: GupFlags,
    ) -> Result<Resource<GuestPin>, Errno> {
        let pages = Arc::new(self.take(mm, kind, start, nr_pages, flags)?);
        self.table.push(GuestPin { pages: pages.clone() }).map_err(|_| {
            // Not stored (the table is full): the pin goes, with its quota.
            self.uncount(&pages);
            self.ctx.io.forget(&pages);
            Errno::Again
        })
    }

    /// `pin-user-pages-fast` on every range, all or nothing (see the WIT).
    pub(crate) fn pin_vec(
        &mut self,
        mm: &Arc<Mm>,
        ranges: impl Iterator<Item = (u64, u32)>,
        flags: GupFlags,
    ) -> Result<Resource<GuestPinVec>, Errno> {
        // The guest chose the list's length; the quota bounds how many pins
        // it can hold, so no more room than that is reserved up front.
        let room = self.ctx.quotas.max_pins.saturating_sub(self.ctx.pins) as usize;
        let mut pins = Vec::with_capacity(ranges.size_hint().0.min(room));
        for (start, nr) in ranges {
            let taken = self.take(mm, PinKind::UserFast, start, nr, flags);
            let err = match taken {
                Ok(p) if p.len() == nr as usize => {
                    pins.push(p);
                    continue;
                }
                Ok(p) => {
                    pins.push(p);
                    Errno::Fault // the range runs past the memory
                }
                Err(e) => e,
            };
            pins.iter().for_each(|p| self.uncount(p));
            return Err(err);
        }
        // Short-term pins only: their count and bytes are the whole charge.
        let (n, bytes) = (pins.len() as u32, pins.iter().map(|p| p.byte_len() as u64).sum::<u64>());
        self.table.push(GuestPinVec { pins }).map_err(|_| {
            // Not stored (the table is full; the pins went with the value):
            // their quota goes back too.
            self.ctx.pins -= n;
            self.ctx.pinned_bytes -= bytes;
            Errno::Again
        })
    }

    /// The guest's pin vector behind `handle`, if it is one.
    pub fn pinned_vec(&self, handle: &Resource<GuestPinVec>) -> Result<&GuestPinVec, Errno> {
        self.table.get(handle).map_err(|_| Errno::BadF)
    }

    /// Removes the guest's pin vector; its pins are released.
    pub(crate) fn release_vec(&mut self, handle: Resource<GuestPinVec>, dirty: bool) -> Result<(), Errno> {
        let vec = self.table.delete(handle).map_err(|_| Errno::BadF)?;
        for p in vec.pins {
            self.uncount(&p);
            // Marks and releases each page in one RMW.
            p.unpin_dirty(dirty);
        }
        Ok(())
    }

    /// Takes one pin under the quotas and counts it (see [`Self::pin_pages`]).
    fn take(
        &mut self,
        mm: &Arc<Mm>,
        kind: PinKind,
        start: u64,
        nr_pages: u32,
        flags: GupFlags,
    ) -> Result<PinnedPages, Errno> {
        let ctx = &mut *self.ctx;
        if ctx.pins >= ctx.quotas.max_pins {
            return Err(Errno::Again);
        }
        let page = mm.page_size();
        let room = ctx.quotas.max_pinned_bytes.saturating_sub(ctx.pinned_bytes);
        let room = if kind.longterm() {
            room.min(ctx.quotas.max_longterm_bytes.saturating_sub(ctx.longterm_bytes))
        } else {
            room
        };
        let avail = mm.len().saturating_sub(start) / page;
        if u64::from(nr_pages).min(avail) * page > room {
            return Err(Errno::NoMem);
        }
        // The clamp, in whole pages: what the quota allows whatever `len` is
        // by the time the pin reads it. A zero-page pin still checks `start`.
        let nr = u64::from(nr_pages).min(room / page) as usize;
        if nr == 0 && nr_pages > 0 {
            // No room for one page: refuse, after the checks of `flags` and
            // `start` that an empty pin makes (`inval`, `fault`).
            drop(gup::pin_user_pages(mm, start, 0, flags)?);
            return Err(if avail == 0 { Errno::Fault } else { Errno::NoMem });
        }
        let pages = match kind {
            PinKind::User => gup::pin_user_pages(mm, start, nr, flags),
            PinKind::UserFast => gup::pin_user_pages_fast(mm, start, nr, flags),
            PinKind::Longterm => gup::pin_longterm_pages(mm, start, nr, flags),
            PinKind::LongtermFast => gup::pin_longterm_pages_fast(mm, start, nr, flags),
            PinKind::UserRemote => gup::pin_user_pages_remote(mm, start, nr, flags),
            PinKind::LongtermRemote => gup::pin_longterm_pages_remote(mm, start, nr, flags),
        }?;
        let bytes = pages.byte_len() as u64;
        debug_assert!(bytes <= room, "the clamp keeps every pin inside its quota");
        let ctx = &mut *self.ctx;
        ctx.pins += 1;
        ctx.pinned_bytes += bytes;
        if kind.longterm() {
            ctx.longterm_bytes += bytes;
        }
        Ok(pages)
    }

    /// Gives a pin's quota back (the pin itself goes with its last holder).
    fn uncount(&mut self, pages: &PinnedPages) {
        let bytes = pages.byte_len() as u64;
        let ctx = &mut *self.ctx;
        ctx.pins -= 1;
        ctx.pinned_bytes -= bytes;
        if pages.is_longterm() {
            ctx.longterm_bytes -= bytes;
        }
    }

    /// The guest's pin behind `handle`, if it is one.
    pub fn pinned(&self, handle: &Resource<GuestPin>) -> Result<&GuestPin, Errno> {
        self.table.get(handle).map_err(|_| Errno::BadF)
    }

    /// Removes the guest's handle; the pin is released when no I/O holds it.
    pub(crate) fn release(&mut self, handle: Resource<GuestPin>, dirty: bool) -> Result<(), Errno> {
        let pin = self.delete(handle)?;
        self.uncount(&pin.pages);
        // A registered I/O buffer is unregistered; transfers in flight keep
        // their own reference to the pin.
        self.ctx.io.forget(&pin.pages);
        if dirty {
            pin.pages.mark_dirty();
        }
        Ok(())
    }

    pub(crate) fn open_grant(&mut self, name: &str) -> Result<Resource<GuestGrant>, Errno> {
        let mm = self.ctx.grants.get(name).ok_or(Errno::BadF)?.clone();
        self.push(Kind::Grant, GuestGrant { mm })
    }

    pub(crate) fn granted(&self, grant: &Resource<GuestGrant>) -> Result<Arc<Mm>, Errno> {
        self.table.get(grant).map(|g| g.mm.clone()).map_err(|_| Errno::BadF)
    }

    pub(crate) fn drop_grant(&mut self, grant: Resource<GuestGrant>) -> Result<(), Errno> {
        self.remove(Kind::Grant, grant).map(drop)
    }

    /// Stores a guest object of `kind` under its quota.
    pub(crate) fn push<T: Send + 'static>(&mut self, kind: Kind, obj: T) -> Result<Resource<T>, Errno> {
        self.ctx.admit(kind)?;
        let r = self.table.push(obj).map_err(|_| Errno::MFile)?;
        *self.ctx.held.count(kind) += 1;
        Ok(r)
    }

    /// Removes a guest object of `kind`, checking its type first.
    pub(crate) fn remove<T: 'static>(&mut self, kind: Kind, handle: Resource<T>) -> Result<T, Errno> {
        let obj = self.delete(handle)?;
        *self.ctx.held.count(kind) -= 1;
        Ok(obj)
    }

    /// Removes a handle of type `T`. `ResourceTable::delete` removes the entry
    /// before it checks the type, so a handle of another type (a forged or
    /// confused core-ABI handle) is checked first and left in place.
    fn delete<T: 'static>(&mut self, handle: Resource<T>) -> Result<T, Errno> {
        self.table.get(&handle).map_err(|_| Errno::BadF)?;
        self.table.delete(handle).map_err(|_| Errno::BadF)
    }
}

/// FNV-1a, 32 bits: the checksum the `checksum` import computes.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| fnv_step(h, b))
}

const FNV_OFFSET: u32 = 0x811c_9dc5;

fn fnv_step(h: u32, b: u8) -> u32 {
    (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
}

/// Hashes `len` bytes at `offset` of a pin, reading through the pin.
pub(crate) fn checksum(pages: &PinnedPages, offset: u32, len: u32, seed: u32) -> Result<u32, Errno> {
    let (offset, len) = (offset as usize, len as usize);
    match offset.checked_add(len) {
        Some(end) if end <= pages.byte_len() => {}
        _ => return Err(Errno::Fault),
    }
    let base = pages.as_ptr();
    let mut h = seed;
    for i in offset..offset + len {
        // SAFETY: `i` lies inside the pinned range, which stays mapped and
        // present while `pages` is alive. Other threads of a shared memory may
        // write it meanwhile: an atomic load makes that a benign race.
        let b = unsafe { AtomicU8::from_ptr(base.add(i).cast_mut()) }.load(Ordering::Relaxed);
        h = fnv_step(h, b);
    }
    Ok(h)
}
