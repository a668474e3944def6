//! `zero-copy-net` for synchronous stores, registered by hand (see
//! `io::sync` for why). Waits run on the calling thread; the embedder's
//! address check, an async closure, is driven by wasmtime-wasi's
//! `in_tokio`, as WASI's own synchronous bindings drive theirs.

use super::{TcpListener, TcpStream};
use crate::bindings::wasm_pin::mm::zero_copy_net::Errno;
use crate::view::PinCtxView;
use crate::GuestPin;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::p2::bindings::sockets::network::IpSocketAddress;
use wasmtime_wasi::runtime::in_tokio;

type Io = (Resource<TcpStream>, Resource<GuestPin>, u32, u32, u32);

pub(crate) fn add_zero_copy_net<T: 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> PinCtxView<'_>) -> Result<()> {
    let mut inst = linker.instance("wasm-pin:mm/zero-copy-net@0.1.0")?;
    inst.resource(
        "tcp-listener",
        ResourceType::host::<TcpListener>(),
        move |mut s, rep| get(s.data_mut()).drop_socket(Resource::<TcpListener>::new_own(rep)),
    )?;
    inst.resource("tcp-stream", ResourceType::host::<TcpStream>(), move |mut s, rep| {
        get(s.data_mut()).drop_socket(Resource::<TcpStream>::new_own(rep))
    })?;
    inst.func_wrap(
        "[static]tcp-listener.bind",
        move |mut s: StoreContextMut<'_, T>, (addr,): (IpSocketAddress,)| {
            let mut v = get(s.data_mut());
            Ok((in_tokio(v.tcp_bind(addr.into())).map_err(Errno::from),))
        },
    )?;
    inst.func_wrap(
        "[method]tcp-listener.local-address",
        move |mut s: StoreContextMut<'_, T>, (l,): (Resource<TcpListener>,)| {
            Ok((get(s.data_mut()).tcp_local_address(&l).map_err(Errno::from),))
        },
    )?;
    inst.func_wrap(
        "[method]tcp-listener.accept",
        move |mut s: StoreContextMut<'_, T>, (l, t): (Resource<TcpListener>, u32)| {
            let mut v = get(s.data_mut());
            let mode = v.wait_mode(false);
            Ok((in_tokio(v.tcp_accept(&l, t, mode)).map_err(Errno::from),))
        },
    )?;
    inst.func_wrap(
        "[static]tcp-stream.connect",
        move |mut s: StoreContextMut<'_, T>, (addr, t): (IpSocketAddress, u32)| {
            let mut v = get(s.data_mut());
            let mode = v.wait_mode(false);
            Ok((in_tokio(v.tcp_connect(addr.into(), t, mode)).map_err(Errno::from),))
        },
    )?;
    for (name, into) in [("[method]tcp-stream.send", false), ("[method]tcp-stream.recv", true)] {
        inst.func_wrap(
            name,
            move |mut s: StoreContextMut<'_, T>, (st, buf, off, len, t): Io| {
                let v = get(s.data_mut());
                let mode = v.wait_mode(false);
                let r = v
                    .socket_io(&st, &buf, off, len, into, t)
                    .and_then(|io| in_tokio(io.run(mode)));
                Ok((r.map_err(Errno::from),))
            },
        )?;
    }
    Ok(())
}
