//! `one-call-io`: a transfer on a range of the caller's memory, pinned for
//! the transfer only.
//!
//! The range is pinned with `pin_user_pages_fast` (lock-free for every page
//! inside the memory) and the pin goes with the transfer: a synchronous one
//! releases it on return, an asynchronous one holds it in its `Op` until the
//! completion. A synchronous read marks its pages dirty as it releases them,
//! one RMW per counter word (`unpin_user_pages_dirty_lock`); an asynchronous read
//! marks them when they are pinned, since the backend shares the pin until
//! the completion. These short pins are not counted against the guest's pin
//! quotas: they last one call, or one ticket, whose number is bounded by the
//! ticket quota and the queue depth.
//!
//! The file is a `borrow<descriptor>` or a registered slot ([`super::fixed`]).
//! A synchronous call allocates nothing and does not clone the file's `Arc`:
//! it borrows the file from the table or the registration for the syscall.
//!
//! Registered by hand for both kinds of store, because `addr` is lifted as
//! [`Addr`] (the caller's memory comes with it).

use super::imports::{finish, Transfer};
use super::{descriptor, direct, transfer, Completion, GuestTicket, Op};
use crate::bindings::wasm_pin::mm::one_call_io::Errno;
use crate::caller::{Addr, Called, CallerId};
use crate::quotas::Kind;
use crate::view::PinCtxView;
use runtime_mm::{gup, Errno as E, GupFlags, Mm, PinnedPages};
use std::fs::File;
use std::sync::Arc;
use wasmtime::component::{ComponentType, Lift, Linker, LinkerInstance, Resource};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::filesystem::Descriptor;

/// The file of a one-call transfer, as the guest named it.
pub(crate) enum Target {
    /// A descriptor borrowed for this call.
    Desc(Resource<Descriptor>),
    /// A registered file's slot.
    Slot(u32),
}

impl From<Resource<Descriptor>> for Target {
    fn from(fd: Resource<Descriptor>) -> Self {
        Target::Desc(fd)
    }
}

impl From<u32> for Target {
    fn from(slot: u32) -> Self {
        Target::Slot(slot)
    }
}

/// Pins the pages under `[addr, addr + len)` of `mm` for a transfer
/// (`into` guest memory: a write pin); the pin and the host address of
/// `addr`. `inval` for an overflowing range, `fault` past the memory.
fn pin_range(mm: &Arc<Mm>, addr: u64, len: u32, into: bool) -> Result<(PinnedPages, *mut u8), E> {
    let page = mm.page_size();
    let start = addr & !(page - 1);
    let end = addr.checked_add(u64::from(len)).ok_or(E::Inval)?;
    let nr = usize::try_from(end.div_ceil(page) - start / page).map_err(|_| E::Inval)?;
    let flags = if into { GupFlags::WRITE } else { GupFlags::empty() };
    let pin = gup::pin_user_pages_fast(mm, start, nr, flags)?;
    if pin.len() < nr {
        return Err(E::Fault); // the range runs past the memory
    }
    let ptr = pin.as_ptr().wrapping_add((addr - start) as usize).cast_mut();
    Ok((pin, ptr))
}

impl PinCtxView<'_> {
    /// The file of a transfer in this direction by the instance whose
    /// memory is at `base`, and whether it is direct: `badf` for a dead
    /// descriptor or slot, or one not opened for it.
    fn target_file(&self, target: &Target, caller: CallerId, into: bool) -> Result<(&Arc<File>, bool), E> {
        match target {
            Target::Desc(fd) => {
                let file = descriptor::file(self.table, fd, into)?;
                Ok((file, self.ctx.own_files.is_direct(file)))
            }
            Target::Slot(slot) => {
                let f = self.fixed_file(caller, *slot, into)?;
                Ok((&f.file, f.direct))
            }
        }
    }

    /// Resolves a transfer on `[addr, addr + len)` of the caller's memory:
    /// its file (borrowed), the pinned pages and the host address, with the
    /// alignment of a direct file checked.
    fn resolve(
        &mut self,
        target: &Target,
        addr: Addr,
        len: u32,
        at: u64,
        read: bool,
    ) -> Result<(&Arc<File>, PinnedPages, *mut u8), E> {
        let mm = self.ctx.memory_of(&addr)?;
        let (file, direct) = self.target_file(target, addr.caller, read)?;
        let (pin, ptr) = pin_range(&mm, addr.value, len, read)?;
        if direct {
            direct::check_aligned(ptr, len, at)?;
        }
        Ok((file, pin, ptr))
    }

    /// Resolves and pins an asynchronous transfer.
    fn one_call(&mut self, target: &Target, addr: Addr, len: u32, at: u64, read: bool) -> Result<Transfer, E> {
        let (file, pin, ptr) = self.resolve(target, addr, len, at, read)?;
        let file = file.clone();
        if read {
            pin.mark_dirty();
        }
        Ok(Transfer {
            file,
            pages: Arc::new(pin),
            ptr,
            len,
        })
    }

    /// A synchronous transfer, on the calling thread.
    fn one_call_now(&mut self, (target, addr, len, at): Args, read: bool) -> Result<u32, E> {
        let (file, pin, ptr) = self.resolve(&target, addr, len, at, read)?;
        let n = transfer(file, read, ptr, len, at);
        pin.unpin_dirty(read);
        n
    }

    fn one_call_submit(&mut self, (target, addr, len, at): Args, read: bool) -> Result<Resource<GuestTicket>, E> {
        self.ctx.admit(Kind::Ticket)?;
        let t = self.one_call(&target, addr, len, at, read)?;
        self.start_ticket(t, read, at)
    }

    /// Starts a one-call transfer the store will await; the op back if the
    /// backend's queue is full.
    fn one_call_begin(
        &mut self,
        (target, addr, len, at): Args,
        read: bool,
    ) -> Result<(Arc<Completion>, Option<Op>), E> {
        let t = self.one_call(&target, addr, len, at, read)?;
        self.begin_transfer(t, read, at)
    }
}

type Args = (Target, Addr, u32, u64);

/// Registers the transfers of one file argument type `F` (a descriptor
/// borrow or a slot): `sync` (read, write) and, for WASI 0.2's interface,
/// `submit` (read, write).
fn add_transfers<T: Send + 'static, F>(
    inst: &mut LinkerInstance<'_, T>,
    get: fn(&mut T) -> PinCtxView<'_>,
    async_store: bool,
    sync: [&str; 2],
    submit: Option<[&str; 2]>,
) -> Result<()>
where
    F: ComponentType + Lift + Into<Target> + Send + Sync + 'static,
{
    for (name, read) in [(sync[0], true), (sync[1], false)] {
        if async_store {
            inst.func_wrap_async(
                name,
                move |mut s: StoreContextMut<'_, T>, (f, addr, len, at): (F, Addr, u32, u64)| {
                    Box::new(async move {
                        let begun = get(s.data_mut()).one_call_begin((f.into(), addr, len, at), read);
                        let r = match begun {
                            Ok(begun) => finish(begun).await,
                            Err(e) => Err(e),
                        };
                        Ok((r.map_err(Errno::from),))
                    })
                },
            )?;
        } else {
            inst.func_wrap(
                name,
                move |mut s: StoreContextMut<'_, T>, (f, addr, len, at): (F, Addr, u32, u64)| {
                    Ok((get(s.data_mut())
                        .one_call_now((f.into(), addr, len, at), read)
                        .map_err(Errno::from),))
                },
            )?;
        }
    }
    for (name, read) in submit.into_iter().flat_map(|[r, w]| [(r, true), (w, false)]) {
        inst.func_wrap(
            name,
            move |mut s: StoreContextMut<'_, T>, (f, addr, len, at): (F, Addr, u32, u64)| {
                Ok((get(s.data_mut())
                    .one_call_submit((f.into(), addr, len, at), read)
                    .map_err(Errno::from),))
            },
        )?;
    }
    Ok(())
}

/// Which interface [`add_one_call_io`] registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OneCall {
    /// `one-call-io` on WASI 0.2 descriptors, with the ticketed forms.
    P2,
    /// `wasm-pin:p3/one-call-io` on WASI 0.3 descriptors: the synchronous forms and
    /// `open-direct` (the same host descriptors).
    P3,
}

/// Registers `one-call-io` (or `wasm-pin:p3/one-call-io`, `wit/p3`) for a synchronous store
/// (`async_store: false`) or an asynchronous one.
pub(crate) fn add_one_call_io<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> PinCtxView<'_>,
    async_store: bool,
    which: OneCall,
) -> Result<()> {
    let p2 = which == OneCall::P2;
    let mut inst = linker.instance(if p2 {
        "wasm-pin:mm/one-call-io@0.1.0"
    } else {
        "wasm-pin:p3/one-call-io@0.1.0"
    })?;
    add_transfers::<T, Resource<Descriptor>>(
        &mut inst,
        get,
        async_store,
        ["read-into", "write-from"],
        p2.then_some(["submit-read-into", "submit-write-from"]),
    )?;
    add_transfers::<T, u32>(
        &mut inst,
        get,
        async_store,
        ["read-into-fixed", "write-from-fixed"],
        p2.then_some(["submit-read-into-fixed", "submit-write-from-fixed"]),
    )?;
    inst.func_wrap(
        "register-file",
        move |mut s: StoreContextMut<'_, T>, (fd,): (Called<Resource<Descriptor>>,)| {
            Ok((get(s.data_mut()).register_file(fd).map_err(Errno::from),))
        },
    )?;
    inst.func_wrap(
        "unregister-file",
        move |mut s: StoreContextMut<'_, T>, (slot,): (Called<u32>,)| {
            Ok((get(s.data_mut()).unregister_file(slot).map_err(Errno::from),))
        },
    )?;
    if !p2 {
        // WASI 0.2 programs find these in `zero-copy-io`.
        inst.func_wrap(
            "open-direct",
            move |mut s: StoreContextMut<'_, T>, (fd,): (Resource<Descriptor>,)| {
                Ok((get(s.data_mut()).open_direct(&fd).map_err(Errno::from),))
            },
        )?;
        inst.func_wrap("direct-alignment", move |_: StoreContextMut<'_, T>, (): ()| {
            Ok((direct::ALIGN,))
        })?;
    }
    Ok(())
}
