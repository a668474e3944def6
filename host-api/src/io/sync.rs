//! `zero-copy-io` for synchronous stores, registered by hand.
//!
//! The generated registration makes the waiting calls `func_wrap_async`,
//! which forces a store to be driven with `*_async` calls. A synchronous
//! store gets the same functions here with `func_wrap`: a transfer runs on the
//! calling thread (`pread` straight into the guest's pages, no thread hop),
//! and a ticket wait blocks it, as a synchronous WASI call does.

use super::GuestTicket;
use crate::bindings::wasm_pin::mm::zero_copy_io::{Backend as WitBackend, Errno, IoSlice};
use crate::view::PinCtxView;
use crate::GuestPin;
use std::time::Duration;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::DynPollable;

type Args = (Resource<Descriptor>, Resource<GuestPin>, u32, u32, u64);

pub(crate) fn add_zero_copy_io<T: 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> PinCtxView<'_>) -> Result<()> {
    let mut inst = linker.instance("wasm-pin:mm/zero-copy-io@0.1.0")?;
    inst.resource("io-ticket", ResourceType::host::<GuestTicket>(), move |mut s, rep| {
        get(s.data_mut()).ticket_drop(Resource::new_own(rep))
    })?;
    for (name, read) in [("read-at", true), ("write-at", false)] {
        inst.func_wrap(
            name,
            move |mut s: StoreContextMut<'_, T>, (fd, buf, off, len, at): Args| {
                let r = get(s.data_mut()).transfer_now(&fd, read, &buf, off, len, at);
                Ok((r.map_err(Errno::from),))
            },
        )?;
    }
    for (name, read) in [("read-at-vectored", true), ("write-at-vectored", false)] {
        inst.func_wrap(
            name,
            move |mut s: StoreContextMut<'_, T>, (fd, bufs, at): (Resource<Descriptor>, Vec<IoSlice>, u64)| {
                let r = get(s.data_mut())
                    .vectored_of(&fd, read, &bufs, at)
                    .and_then(|v| v.run(read, at));
                Ok((r.map_err(Errno::from),))
            },
        )?;
    }
    for (name, read) in [("submit-read-at", true), ("submit-write-at", false)] {
        inst.func_wrap(
            name,
            move |mut s: StoreContextMut<'_, T>, (fd, buf, off, len, at): Args| {
                let r = get(s.data_mut()).submit(&fd, read, &buf, off, len, at);
                Ok((r.map_err(Errno::from),))
            },
        )?;
    }
    inst.func_wrap(
        "open-direct",
        move |mut s: StoreContextMut<'_, T>, (fd,): (Resource<Descriptor>,)| {
            Ok((get(s.data_mut()).open_direct(&fd).map_err(Errno::from),))
        },
    )?;
    inst.func_wrap("direct-alignment", move |_: StoreContextMut<'_, T>, (): ()| {
        Ok((super::direct::ALIGN,))
    })?;
    inst.func_wrap("host-cpu-time", move |mut s: StoreContextMut<'_, T>, (): ()| {
        Ok((get(s.data_mut()).ctx.cpu_time().map_err(Errno::from),))
    })?;
    inst.func_wrap(
        "io-backend",
        move |mut s: StoreContextMut<'_, T>, (): ()| -> Result<(WitBackend,)> { Ok((get(s.data_mut()).backend_of(),)) },
    )?;
    inst.func_wrap(
        "[method]io-ticket.poll",
        move |mut s: StoreContextMut<'_, T>, (t,): (Resource<GuestTicket>,)| Ok((get(s.data_mut()).ticket_poll(&t)?,)),
    )?;
    inst.func_wrap(
        "[method]io-ticket.wait",
        move |mut s: StoreContextMut<'_, T>,
              (t, ms): (Resource<GuestTicket>, u32)|
              -> Result<(Option<std::result::Result<u32, Errno>>,)> {
            let v = get(s.data_mut());
            let done = v.ticket_done(&t)?;
            let wait = v.ctx.io.config().sync_wait(Duration::from_millis(ms.into()));
            Ok((done.wait(wait).map(|r| r.map_err(Errno::from)),))
        },
    )?;
    inst.func_wrap(
        "[method]io-ticket.subscribe",
        move |mut s: StoreContextMut<'_, T>, (t,): (Resource<GuestTicket>,)| -> Result<(Resource<DynPollable>,)> {
            Ok((get(s.data_mut()).ticket_subscribe(t)?,))
        },
    )?;
    Ok(())
}
