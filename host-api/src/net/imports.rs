//! The `zero-copy-net` operations on [`PinCtxView`], written once for both
//! kinds of store ([`Mode`]), and the generated (async) traits.

use super::{accept, addr, bind, connect, ms, Mode, TcpListener, TcpStream};
use crate::bindings::wasm_pin::mm::zero_copy_net::{Errno, Host, HostTcpListener, HostTcpStream};
use crate::quotas::Kind;
use crate::view::PinCtxView;
use crate::GuestPin;
use runtime_mm::Errno as E;
use std::net::SocketAddr;
use wasmtime::component::Resource;
use wasmtime::Result;
use wasmtime_wasi::p2::bindings::sockets::network::IpSocketAddress;
use wasmtime_wasi::sockets::SocketAddrUse;

type R<T> = Result<std::result::Result<T, Errno>>;

impl PinCtxView<'_> {
    pub(crate) async fn tcp_bind(&mut self, addr: SocketAddr) -> std::result::Result<Resource<TcpListener>, E> {
        self.ctx.admit(Kind::Socket)?;
        addr::local(addr)?;
        self.ctx.net.allow(addr, SocketAddrUse::TcpBind).await?;
        self.ctx.net.allow(addr, SocketAddrUse::TcpListen).await?;
        let l = bind(addr)?;
        self.push_listener(l)
    }

    pub(crate) async fn tcp_accept(
        &mut self,
        l: &Resource<TcpListener>,
        timeout_ms: u32,
        mode: Mode,
    ) -> std::result::Result<Resource<TcpStream>, E> {
        self.ctx.admit(Kind::Socket)?;
        let sock = self.listener(l)?;
        let (s, peer) = accept(&sock, ms(timeout_ms), mode).await?;
        // A refused peer's connection is closed (dropped) here.
        self.ctx.net.allow(peer, SocketAddrUse::TcpAccept).await?;
        self.push_stream(s)
    }

    pub(crate) async fn tcp_connect(
        &mut self,
        addr: SocketAddr,
        timeout_ms: u32,
        mode: Mode,
    ) -> std::result::Result<Resource<TcpStream>, E> {
        self.ctx.admit(Kind::Socket)?;
        addr::remote(addr)?;
        // The kernel binds an unbound socket as it connects: asked first, as
        // WASI asks, so a policy that denies every bind denies connects too.
        self.ctx
            .net
            .allow(addr::implicit_bind(addr), SocketAddrUse::TcpBind)
            .await?;
        self.ctx.net.allow(addr, SocketAddrUse::TcpConnect).await?;
        let s = connect(addr, ms(timeout_ms), mode).await?;
        self.push_stream(s)
    }

    pub(crate) fn tcp_local_address(&self, l: &Resource<TcpListener>) -> std::result::Result<IpSocketAddress, E> {
        let sock = self.listener(l)?;
        Ok(sock.sock.local_addr().map_err(|e| E::from_io(&e))?.into())
    }
}

fn ok<T>(r: std::result::Result<T, E>) -> R<T> {
    Ok(r.map_err(Errno::from))
}

impl HostTcpListener for PinCtxView<'_> {
    async fn bind(&mut self, addr: IpSocketAddress) -> R<Resource<TcpListener>> {
        ok(self.tcp_bind(addr.into()).await)
    }

    fn local_address(&mut self, l: Resource<TcpListener>) -> R<IpSocketAddress> {
        ok(self.tcp_local_address(&l))
    }

    async fn accept(&mut self, l: Resource<TcpListener>, timeout_ms: u32) -> R<Resource<TcpStream>> {
        ok(self.tcp_accept(&l, timeout_ms, Mode::Await).await)
    }

    fn drop(&mut self, l: Resource<TcpListener>) -> Result<()> {
        self.drop_socket(l)
    }
}

impl HostTcpStream for PinCtxView<'_> {
    async fn connect(&mut self, addr: IpSocketAddress, timeout_ms: u32) -> R<Resource<TcpStream>> {
        ok(self.tcp_connect(addr.into(), timeout_ms, Mode::Await).await)
    }

    async fn send(&mut self, s: Resource<TcpStream>, buf: Resource<GuestPin>, off: u32, len: u32, t: u32) -> R<u32> {
        match self.socket_io(&s, &buf, off, len, false, t) {
            Ok(io) => ok(io.run(Mode::Await).await),
            Err(e) => ok(Err(e)),
        }
    }

    async fn recv(&mut self, s: Resource<TcpStream>, buf: Resource<GuestPin>, off: u32, len: u32, t: u32) -> R<u32> {
        match self.socket_io(&s, &buf, off, len, true, t) {
            Ok(io) => ok(io.run(Mode::Await).await),
            Err(e) => ok(Err(e)),
        }
    }

    fn drop(&mut self, s: Resource<TcpStream>) -> Result<()> {
        self.drop_socket(s)
    }
}

impl Host for PinCtxView<'_> {}
