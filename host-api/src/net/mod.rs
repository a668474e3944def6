//! `zero-copy-net`: TCP between sockets and pinned guest buffers.
//!
//! wasmtime-wasi 48 keeps the OS socket of its `tcp-socket` private (private
//! fields, a private `as_fd`, no `AsFd` impl), so no host crate can `send`
//! from or `recv` into a pinned page through it. These sockets are ours, under
//! WASI's permission model: every bind, connect and accept address goes
//! through the embedder's [`SocketAddrCheck`], the same closure type
//! `WasiCtxBuilder::socket_addr_check` takes (default: deny, `acces`).
//!
//! Nothing blocks forever: sockets are non-blocking, and every call that
//! waits polls with the guest's timeout (`timedout`; 0 is the non-blocking
//! form). In a sync store the wait runs on the calling thread; in an async
//! store on a blocking thread the store awaits (`imports`), so no executor
//! thread blocks.
//!
//! - `imports`: the generated (async) traits; `sync`: the synchronous
//!   registration.

mod imports;
pub(crate) mod sync;

use crate::pins::GuestPin;
use crate::quotas::Kind;
use crate::view::PinCtxView;
use runtime_mm::{Errno, PinnedPages};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Resource;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Decides which socket addresses a guest may use, and for what: the closure
/// type of `WasiCtxBuilder::socket_addr_check`. Give both the same one.
///
/// ```
/// use host_api::SocketAddrCheck;
/// use std::sync::Arc;
/// let loopback_only: SocketAddrCheck =
///     Arc::new(|addr, _use| Box::pin(async move { addr.ip().is_loopback() }));
/// let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
/// let check = loopback_only.clone();
/// wasi.socket_addr_check(move |addr, use_| check(addr, use_));
/// let ctx = host_api::PinCtx::default().socket_addr_check(loopback_only);
/// # let _ = (wasi, ctx);
/// ```
pub type SocketAddrCheck =
    Arc<dyn Fn(SocketAddr, SocketAddrUse) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>> + Send + Sync>;

/// The socket permissions of one store.
#[derive(Default)]
pub(crate) struct NetCtx {
    pub(crate) check: Option<SocketAddrCheck>,
}

impl NetCtx {
    /// `acces` unless the embedder's check allows `addr` for `use_`.
    fn allow(&self, addr: SocketAddr, use_: SocketAddrUse) -> impl Future<Output = Result<(), Errno>> + Send + 'static {
        let check = self.check.clone();
        async move {
            match check {
                Some(c) if c(addr, use_).await => Ok(()),
                _ => Err(Errno::Acces),
            }
        }
    }
}

/// A listening socket: the `tcp-listener` resource.
#[derive(Debug)]
pub struct TcpListener {
    sock: Arc<std::net::TcpListener>,
}

/// A connection: the `tcp-stream` resource.
#[derive(Debug)]
pub struct TcpStream {
    sock: Arc<std::net::TcpStream>,
}

fn io_err(e: std::io::Error) -> Errno {
    Errno::from_io(&e)
}

/// Waits until `fd` is ready for `events` or `deadline` passes.
fn wait_ready(fd: &impl AsRawFd, events: libc::c_short, deadline: Instant) -> Result<(), Errno> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid `pollfd` for the duration of the call.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            n if n > 0 => return Ok(()),
            0 => return Err(Errno::TimedOut),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(io_err(e));
                }
            }
        }
    }
}

/// Retries a non-blocking `op` until it stops saying "would block", waiting
/// for `events` in between, up to `timeout`.
fn with_timeout<T>(
    fd: &impl AsRawFd,
    events: libc::c_short,
    timeout: Duration,
    mut op: impl FnMut() -> std::io::Result<T>,
) -> Result<T, Errno> {
    let deadline = Instant::now() + timeout;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_ready(fd, events, deadline)?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
}

fn ms(timeout_ms: u32) -> Duration {
    Duration::from_millis(timeout_ms.into())
}

/// A `send`/`recv` between a socket and a pin range, ready to run on any
/// thread: it owns the socket and the pin for the call.
pub(crate) struct SocketIo {
    sock: Arc<std::net::TcpStream>,
    _pin: Arc<PinnedPages>,
    ptr: *mut u8,
    len: usize,
    into: bool,
    timeout: Duration,
}

// SAFETY: `ptr..ptr+len` lies in pages `_pin` keeps pinned and mapped; the
// value moves to the one thread that performs the call.
unsafe impl Send for SocketIo {}

impl SocketIo {
    pub(crate) fn run(self) -> Result<u32, Errno> {
        let fd = self.sock.as_raw_fd();
        let events = if self.into { libc::POLLIN } else { libc::POLLOUT };
        let n = with_timeout(&*self.sock, events, self.timeout, || {
            // SAFETY: raw pointer + length inside the pin held by `self` (a
            // write pin if `into`); no Rust reference to guest memory is
            // formed (see `io::transfer`).
            let n = unsafe {
                if self.into {
                    libc::recv(fd, self.ptr.cast(), self.len, libc::MSG_DONTWAIT)
                } else {
                    libc::send(fd, self.ptr.cast(), self.len, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                }
            };
            usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
        })?;
        Ok(n as u32)
    }
}

/// Accepts one connection within `timeout`.
pub(crate) fn accept(
    sock: &std::net::TcpListener,
    timeout: Duration,
) -> Result<(std::net::TcpStream, SocketAddr), Errno> {
    let (s, peer) = with_timeout(sock, libc::POLLIN, timeout, || sock.accept())?;
    s.set_nonblocking(true).map_err(io_err)?;
    Ok((s, peer))
}

/// Connects within `timeout` (at least 1 ms: a connection cannot be made in
/// no time).
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> Result<std::net::TcpStream, Errno> {
    let s = std::net::TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1))).map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            Errno::TimedOut
        } else {
            io_err(e)
        }
    })?;
    s.set_nonblocking(true).map_err(io_err)?;
    Ok(s)
}

pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Errno> {
    let l = std::net::TcpListener::bind(addr).map_err(io_err)?;
    l.set_nonblocking(true).map_err(io_err)?;
    Ok(l)
}

impl PinCtxView<'_> {
    pub(crate) fn listener(&self, l: &Resource<TcpListener>) -> Result<Arc<std::net::TcpListener>, Errno> {
        Ok(self.table.get(l).map_err(|_| Errno::BadF)?.sock.clone())
    }

    pub(crate) fn socket_io(
        &self,
        s: &Resource<TcpStream>,
        buf: &Resource<GuestPin>,
        off: u32,
        len: u32,
        into: bool,
        timeout_ms: u32,
    ) -> Result<SocketIo, Errno> {
        let sock = self.table.get(s).map_err(|_| Errno::BadF)?.sock.clone();
        let (pin, ptr) = self.buffer(buf, off, len, into)?;
        Ok(SocketIo {
            sock,
            _pin: pin,
            ptr,
            len: len as usize,
            into,
            timeout: ms(timeout_ms),
        })
    }

    pub(crate) fn push_listener(&mut self, l: std::net::TcpListener) -> Result<Resource<TcpListener>, Errno> {
        self.push(Kind::Socket, TcpListener { sock: Arc::new(l) })
    }

    pub(crate) fn push_stream(&mut self, s: std::net::TcpStream) -> Result<Resource<TcpStream>, Errno> {
        self.push(Kind::Socket, TcpStream { sock: Arc::new(s) })
    }

    pub(crate) fn drop_socket<T: 'static>(&mut self, r: Resource<T>) -> wasmtime::Result<()> {
        self.remove(Kind::Socket, r)
            .map(drop)
            .map_err(|_| wasmtime::Error::msg("wasm-pin: bad socket handle"))
    }
}
