//! `zero-copy-net`: TCP between sockets and pinned guest buffers.
//!
//! wasmtime-wasi 48 keeps the OS socket of its `tcp-socket` private (private
//! fields, a private `as_fd`, no `AsFd` impl), so no host crate can `send`
//! from or `recv` into a pinned page through it. These sockets are ours, under
//! WASI's permission model (`addr`): every address is first validated as
//! wasmtime-wasi validates it, then goes through the embedder's
//! [`SocketAddrCheck`], the same closure type
//! `WasiCtxBuilder::socket_addr_check` takes (default: deny, `acces`).
//!
//! **Waiting.** Sockets are non-blocking, and every call that waits does so
//! with the guest's timeout (`timedout`; 0 is the non-blocking form):
//! - in a **sync** store on the calling thread (`poll(2)`), never longer than
//!   [`IoConfig::max_wait`](crate::IoConfig::max_wait): a sync host call
//!   cannot be interrupted;
//! - in an **async** store as a future on the runtime's reactor (tokio
//!   `AsyncFd`), which no thread runs meanwhile. Dropping the store's future
//!   (a deadline, a killed guest) drops the wait and, with it, the pin and
//!   the socket reference at once: nothing outlives the store.
//!
//! - `addr`: the address rules; `imports`: the generated (async) traits;
//!   `sync`: the synchronous registration.

mod addr;
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
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use wasmtime::component::Resource;
use wasmtime_wasi::runtime::with_ambient_tokio_runtime;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Decides which socket addresses a guest may use, and for what: the closure
/// type of `WasiCtxBuilder::socket_addr_check`. Give both the same one.
///
/// It sees only addresses wasmtime-wasi's own check would see: unicast, no
/// IPv4-mapped IPv6 address, and for connects neither the unspecified
/// address nor port 0 (those are `inval` before it is asked). A connect
/// first asks `TcpBind` on the unspecified address of its family (the
/// implicit bind), then `TcpConnect` on the peer, as WASI's does.
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

/// A non-blocking OS socket and, once an async store waits on it, its
/// registration with the runtime's reactor (made once: a descriptor is
/// registered at most once).
#[derive(Debug)]
pub(crate) struct Sock<S: AsRawFd> {
    sock: Arc<S>,
    reactor: OnceLock<Arc<AsyncFd<Arc<S>>>>,
}

impl<S: AsRawFd> Sock<S> {
    fn new(sock: S) -> Self {
        Sock {
            sock: Arc::new(sock),
            reactor: OnceLock::new(),
        }
    }

    /// The reactor registration, made on first use in the ambient tokio
    /// runtime (the one wasmtime-wasi's own sockets use).
    fn reactor(&self) -> Result<Arc<AsyncFd<Arc<S>>>, Errno> {
        if let Some(r) = self.reactor.get() {
            return Ok(r.clone());
        }
        let interest = Interest::READABLE | Interest::WRITABLE;
        // SAFETY: the `Arc` the registration owns keeps the socket, and so
        // its descriptor, open for as long as the registration lives, and
        // `as_raw_fd` of a std socket always returns that one descriptor.
        let r = with_ambient_tokio_runtime(|| unsafe { AsyncFd::register_with_interest(self.sock.clone(), interest) })
            .map_err(|e| io_err(e.into()))?;
        Ok(self.reactor.get_or_init(|| Arc::new(r)).clone())
    }
}

/// A listening socket: the `tcp-listener` resource.
#[derive(Debug)]
pub struct TcpListener {
    sock: Arc<Sock<std::net::TcpListener>>,
}

/// A connection: the `tcp-stream` resource.
#[derive(Debug)]
pub struct TcpStream {
    sock: Arc<Sock<std::net::TcpStream>>,
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
        // Rounded up: a wait never ends before its deadline.
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
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

/// Where a call that waits runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// On the calling thread, at most this long (sync stores).
    Block(Duration),
    /// As a future on the reactor (async stores).
    Await,
}

/// Runs the non-blocking `op` until it stops saying "would block" (or
/// "interrupted"), waiting for readiness (`read`: readable, else writable)
/// in between, up to `timeout` (`timedout`).
async fn retry<S: AsRawFd, T>(
    sock: &Sock<S>,
    read: bool,
    timeout: Duration,
    mode: Mode,
    mut op: impl FnMut(&S) -> std::io::Result<T>,
) -> Result<T, Errno> {
    use std::io::ErrorKind::{Interrupted, WouldBlock};
    match mode {
        Mode::Block(ceiling) => {
            let deadline = Instant::now() + timeout.min(ceiling);
            let events = if read { libc::POLLIN } else { libc::POLLOUT };
            loop {
                match op(&sock.sock) {
                    Err(e) if e.kind() == Interrupted => {}
                    Err(e) if e.kind() == WouldBlock => wait_ready(&*sock.sock, events, deadline)?,
                    r => return r.map_err(io_err),
                }
            }
        }
        Mode::Await => {
            // The first try needs no registration: most sends, and reads of
            // data already there, complete at once.
            loop {
                match op(&sock.sock) {
                    Err(e) if e.kind() == Interrupted => {}
                    Err(e) if e.kind() == WouldBlock => break,
                    r => return r.map_err(io_err),
                }
            }
            if timeout.is_zero() {
                return Err(Errno::TimedOut);
            }
            let reactor = sock.reactor()?;
            let wait = async {
                loop {
                    let ready = if read {
                        reactor.readable().await
                    } else {
                        reactor.writable().await
                    };
                    let mut guard = ready.map_err(io_err)?;
                    // `try_io` clears the readiness on "would block" only.
                    match guard.try_io(|s| op(s.get_ref())) {
                        Ok(Err(e)) if e.kind() == Interrupted => {}
                        Ok(r) => return r.map_err(io_err),
                        Err(_would_block) => {}
                    }
                }
            };
            let timed = with_ambient_tokio_runtime(|| tokio::time::timeout(timeout, wait));
            timed.await.unwrap_or(Err(Errno::TimedOut))
        }
    }
}

fn ms(timeout_ms: u32) -> Duration {
    Duration::from_millis(timeout_ms.into())
}

/// A `send`/`recv` between a socket and a pin range: it owns the socket and
/// the pin for the call, and releases both when it ends or is dropped.
pub(crate) struct SocketIo {
    sock: Arc<Sock<std::net::TcpStream>>,
    _pin: Arc<PinnedPages>,
    ptr: *mut u8,
    len: usize,
    into: bool,
    timeout: Duration,
}

// SAFETY: `ptr..ptr+len` lies in pages `_pin` keeps pinned and mapped; the
// value moves to the one task that performs the call.
unsafe impl Send for SocketIo {}

impl SocketIo {
    pub(crate) async fn run(self, mode: Mode) -> Result<u32, Errno> {
        // The address as an integer: the retried closure lives in a future
        // that may move between threads (what makes it valid: `SocketIo`).
        let (addr, len, into) = (self.ptr as usize, self.len, self.into);
        let n = retry(&self.sock, into, self.timeout, mode, |s| {
            let fd = s.as_raw_fd();
            // SAFETY: raw pointer + length inside the pin held by `self` (a
            // write pin if `into`) for as long as this future lives; no Rust
            // reference to guest memory is formed (see `io::transfer`).
            let n = unsafe {
                if into {
                    libc::recv(fd, addr as *mut libc::c_void, len, libc::MSG_DONTWAIT)
                } else {
                    libc::send(
                        fd,
                        addr as *const libc::c_void,
                        len,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                }
            };
            usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
        })
        .await?;
        Ok(n as u32)
    }
}

/// Accepts one connection within `timeout`.
async fn accept(
    sock: &Sock<std::net::TcpListener>,
    timeout: Duration,
    mode: Mode,
) -> Result<(std::net::TcpStream, SocketAddr), Errno> {
    let (s, peer) = retry(sock, true, timeout, mode, |l| l.accept()).await?;
    s.set_nonblocking(true).map_err(io_err)?;
    Ok((s, peer))
}

/// Connects within `timeout`: a non-blocking `connect`, then a wait for the
/// socket to become writable and its `SO_ERROR`.
async fn connect(addr: SocketAddr, timeout: Duration, mode: Mode) -> Result<std::net::TcpStream, Errno> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io_err(e.into()))?;
    let pending = match rustix::net::connect(&fd, &addr) {
        Ok(()) => false,
        Err(rustix::io::Errno::INPROGRESS) => true,
        Err(e) => return Err(io_err(e.into())),
    };
    let sock = Sock::new(std::net::TcpStream::from(fd));
    if pending {
        // Writable once the handshake ends either way; SO_ERROR says which.
        retry(
            &sock,
            false,
            timeout.max(Duration::from_millis(1)),
            mode,
            |s| match rustix::net::sockopt::socket_error(s).map_err(std::io::Error::from)? {
                Ok(()) => s.peer_addr().map(drop).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotConnected {
                        std::io::ErrorKind::WouldBlock.into()
                    } else {
                        e
                    }
                }),
                Err(e) => Err(e.into()),
            },
        )
        .await?;
    }
    // Hand the bare socket on: its registration (if any) is dropped here, and
    // the stream resource registers anew when it first waits.
    drop(sock.reactor);
    Ok(Arc::into_inner(sock.sock).expect("the registration was dropped"))
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Errno> {
    let l = std::net::TcpListener::bind(addr).map_err(io_err)?;
    l.set_nonblocking(true).map_err(io_err)?;
    Ok(l)
}

impl PinCtxView<'_> {
    fn listener(&self, l: &Resource<TcpListener>) -> Result<Arc<Sock<std::net::TcpListener>>, Errno> {
        Ok(self.table.get(l).map_err(|_| Errno::BadF)?.sock.clone())
    }

    /// How long a call of this store may wait, and where.
    pub(crate) fn wait_mode(&self, asynchronous: bool) -> Mode {
        if asynchronous {
            Mode::Await
        } else {
            Mode::Block(self.ctx.io.config().max_wait)
        }
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

    fn push_listener(&mut self, l: std::net::TcpListener) -> Result<Resource<TcpListener>, Errno> {
        let sock = Arc::new(Sock::new(l));
        self.push(Kind::Socket, TcpListener { sock })
    }

    fn push_stream(&mut self, s: std::net::TcpStream) -> Result<Resource<TcpStream>, Errno> {
        let sock = Arc::new(Sock::new(s));
        self.push(Kind::Socket, TcpStream { sock })
    }

    pub(crate) fn drop_socket<T: 'static>(&mut self, r: Resource<T>) -> wasmtime::Result<()> {
        self.remove(Kind::Socket, r)
            .map(drop)
            .map_err(|_| wasmtime::Error::msg("wasm-pin: bad socket handle"))
    }
}
