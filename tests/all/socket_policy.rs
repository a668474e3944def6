//! The embedder's socket check sees only what wasmtime-wasi's would (#19):
//! with a policy that denies loopback and a live loopback listener, no
//! address that the kernel takes for loopback gets through, and a connect
//! asks about its implicit bind first.

use host_api::bindings::wasm_pin::mm::zero_copy_io::Errno;
use host_api::bindings::wasm_pin::mm::zero_copy_net::{HostTcpListener as _, HostTcpStream as _};
use host_api::{MmHost, PinCtx, PinView, SocketAddrCheck};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi::sockets::SocketAddrUse;

fn block<F: std::future::Future>(f: F) -> F::Output {
    wasmtime_wasi::runtime::in_tokio(f)
}

/// A policy, and the log of every (address, use) it was asked about.
fn logged(
    allow: impl Fn(SocketAddr, SocketAddrUse) -> bool + Send + Sync + 'static,
) -> (MmHost, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let check: SocketAddrCheck = Arc::new(move |addr, use_| {
        seen.lock().unwrap().push(format!("{use_:?} {addr}"));
        let ok = allow(addr, use_);
        Box::pin(async move { ok })
    });
    (MmHost::from(PinCtx::default().socket_addr_check(check)), log)
}

fn connect(host: &mut MmHost, addr: &str) -> Result<(), Errno> {
    let addr: SocketAddr = addr.parse().unwrap();
    block(host.pins().connect(addr.into(), 500)).unwrap().map(drop)
}

/// Nothing reached `listener`: no connection is waiting to be accepted.
fn untouched(listener: &TcpListener) {
    listener.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let e = listener.accept().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "a connection got through");
}

#[test]
fn loopback_in_disguise_never_reaches_the_check_or_the_service() {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    let (mut host, log) = logged(|addr, _| !addr.ip().is_loopback());
    for addr in [
        format!("0.0.0.0:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("[::127.0.0.1]:{port}"),
        "127.0.0.1:0".to_string(),
        format!("224.0.0.1:{port}"),
        format!("255.255.255.255:{port}"),
    ] {
        assert_eq!(connect(&mut host, &addr), Err(Errno::Inval), "{addr}");
    }
    assert!(
        log.lock().unwrap().is_empty(),
        "the check was asked: {:?}",
        log.lock().unwrap()
    );
    // The plain address is the check's to refuse.
    assert_eq!(connect(&mut host, &format!("127.0.0.1:{port}")), Err(Errno::Acces));
    untouched(&v4);
    assert_eq!(host.held().sockets, 0);
}

#[test]
fn the_ipv6_unspecified_address_does_not_reach_ipv6_loopback() {
    let Ok(v6) = TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    };
    let port = v6.local_addr().unwrap().port();
    let (mut host, log) = logged(|addr, _| !addr.ip().is_loopback());
    assert_eq!(connect(&mut host, &format!("[::]:{port}")), Err(Errno::Inval));
    assert!(log.lock().unwrap().is_empty());
    untouched(&v6);
}

#[test]
fn a_connect_asks_about_its_implicit_bind_first() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Denies every bind, allows every connect: the connect is refused.
    let (mut host, log) = logged(|_, use_| !matches!(use_, SocketAddrUse::TcpBind));
    assert_eq!(connect(&mut host, &format!("127.0.0.1:{port}")), Err(Errno::Acces));
    assert_eq!(*log.lock().unwrap(), ["TcpBind 0.0.0.0:0"]);
    untouched(&listener);
    // Allowing binds: the check sees the implicit bind, then the peer.
    let (mut host, log) = logged(|_, _| true);
    assert_eq!(connect(&mut host, &format!("127.0.0.1:{port}")), Ok(()));
    assert_eq!(
        *log.lock().unwrap(),
        ["TcpBind 0.0.0.0:0".to_string(), format!("TcpConnect 127.0.0.1:{port}")]
    );
}

#[test]
fn binds_are_unicast_and_of_a_valid_family() {
    let (mut host, log) = logged(|_, _| true);
    for addr in [
        "224.0.0.1:0",
        "[ff02::1]:0",
        "[::ffff:127.0.0.1]:0",
        "255.255.255.255:0",
    ] {
        let a: SocketAddr = addr.parse().unwrap();
        assert_eq!(
            block(host.pins().bind(a.into())).unwrap().err(),
            Some(Errno::Inval),
            "{addr}"
        );
    }
    assert!(log.lock().unwrap().is_empty());
}
