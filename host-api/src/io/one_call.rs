//! `one-call-io`: a transfer on a range of the caller's memory, pinned for
//! the transfer only.
//!
//! The range is pinned with `pin_user_pages_fast` (lock-free for every page
//! inside the memory) and the pin goes with the transfer: a synchronous one
//! drops it on return, an asynchronous one holds it in its `Op` until the
//! completion. Reads mark the pages dirty when they are pinned (the host
//! writes them). These short pins are not counted against the guest's pin
//! quotas: they last one call, or one ticket, whose number is bounded by the
//! ticket quota and the queue depth.
//!
//! Registered by hand for both kinds of store, because `addr` is lifted as
//! [`Addr`] (the caller's memory comes with it).

use super::imports::{finish, Transfer};
use super::{descriptor, direct, transfer, Completion, GuestTicket, Op};
use crate::bindings::wasm_pin::mm::one_call_io::Errno;
use crate::caller::Addr;
use crate::quotas::Kind;
use crate::view::PinCtxView;
use runtime_mm::{gup, Errno as E, GupFlags};
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::filesystem::Descriptor;

type Args = (Resource<Descriptor>, Addr, u32, u64);

impl PinCtxView<'_> {
    /// Resolves and pins one transfer on `[addr, addr + len)` of the
    /// caller's memory.
    fn one_call(
        &mut self,
        fd: &Resource<Descriptor>,
        addr: Addr,
        len: u32,
        at: u64,
        read: bool,
    ) -> Result<Transfer, E> {
        let file = descriptor::file(self.table, fd, read)?;
        let mm = self.caller_memory(Some(&addr))?;
        let page = mm.page_size();
        let start = addr.value & !(page - 1);
        let end = addr.value.checked_add(u64::from(len)).ok_or(E::Inval)?;
        let nr = usize::try_from(end.div_ceil(page) - start / page).map_err(|_| E::Inval)?;
        let flags = if read { GupFlags::WRITE } else { GupFlags::empty() };
        let pin = gup::pin_user_pages_fast(&mm, start, nr, flags)?;
        if pin.len() < nr {
            return Err(E::Fault); // the range runs past the memory
        }
        if read {
            pin.mark_dirty();
        }
        let ptr = pin.as_ptr().wrapping_add((addr.value - start) as usize).cast_mut();
        if self.ctx.own_files.is_direct(&file) {
            direct::check_aligned(ptr, len, at)?;
        }
        Ok(Transfer {
            file,
            pages: Arc::new(pin),
            ptr,
            len,
        })
    }

    fn one_call_now(&mut self, (fd, addr, len, at): Args, read: bool) -> Result<u32, E> {
        let t = self.one_call(&fd, addr, len, at, read)?;
        transfer(&t.file, read, t.ptr, t.len, at)
    }

    fn one_call_submit(&mut self, (fd, addr, len, at): Args, read: bool) -> Result<Resource<GuestTicket>, E> {
        self.ctx.admit(Kind::Ticket)?;
        let t = self.one_call(&fd, addr, len, at, read)?;
        self.start_ticket(t, read, at)
    }

    /// Starts a one-call transfer the store will await; the op back if the
    /// backend's queue is full.
    fn one_call_begin(&mut self, (fd, addr, len, at): Args, read: bool) -> Result<(Arc<Completion>, Option<Op>), E> {
        let t = self.one_call(&fd, addr, len, at, read)?;
        self.begin_transfer(t, read, at)
    }
}

/// Registers `one-call-io` for a synchronous store (`async_store: false`)
/// or an asynchronous one.
pub(crate) fn add_one_call_io<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> PinCtxView<'_>,
    async_store: bool,
) -> Result<()> {
    let mut inst = linker.instance("wasm-pin:mm/one-call-io@0.1.0")?;
    for (name, read) in [("read-into", true), ("write-from", false)] {
        if async_store {
            inst.func_wrap_async(name, move |mut s: StoreContextMut<'_, T>, args: Args| {
                Box::new(async move {
                    let begun = get(s.data_mut()).one_call_begin(args, read);
                    let r = match begun {
                        Ok(begun) => finish(begun).await,
                        Err(e) => Err(e),
                    };
                    Ok((r.map_err(Errno::from),))
                })
            })?;
        } else {
            inst.func_wrap(name, move |mut s: StoreContextMut<'_, T>, args: Args| {
                Ok((get(s.data_mut()).one_call_now(args, read).map_err(Errno::from),))
            })?;
        }
    }
    for (name, read) in [("submit-read-into", true), ("submit-write-from", false)] {
        inst.func_wrap(name, move |mut s: StoreContextMut<'_, T>, args: Args| {
            Ok((get(s.data_mut()).one_call_submit(args, read).map_err(Errno::from),))
        })?;
    }
    Ok(())
}
