//! #19.2: every wait ends when its store goes. An async store's future is
//! dropped by the embedder's deadline while a socket call waits with the
//! longest timeout a guest can ask for (49 days), then the store is dropped:
//! the pin, the socket and the memory's pool slot are free again within
//! `IoConfig::shutdown_wait`, so the next tenant gets the slot. A sync
//! store's wait is capped by `IoConfig::max_wait`.

use host_api::bindings::wasm_pin::mm::gup::{GupFlags, Host as _};
use host_api::bindings::wasm_pin::mm::zero_copy_net::{HostTcpListener as _, HostTcpStream as _};
use host_api::{IoConfig, MmHost, PinCtx, PinView, Quotas};
use runtime_mm::{PinMemoryCreator, PoolConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Resource;
use wasmtime::{Config, Engine, Instance, Module, Store};

const MIB: u64 = 1 << 20;

fn one_slot() -> (Engine, Arc<PinMemoryCreator>, Module) {
    let creator = PinMemoryCreator::pooled(PoolConfig {
        slots: 1,
        max_memory_bytes: 16 * MIB,
        guard_bytes: MIB,
        keep_resident_bytes: 64 << 10,
        ..PoolConfig::default()
    })
    .unwrap();
    let engine = creator.build_engine(&mut Config::new()).unwrap();
    let module = Module::new(&engine, r#"(module (memory (export "memory") 1))"#).unwrap();
    (engine, creator, module)
}

/// A tenant: a store whose pin context works on the instance's pooled memory.
async fn tenant(engine: &Engine, creator: &PinMemoryCreator, module: &Module) -> wasmtime::Result<Store<MmHost>> {
    let io = IoConfig {
        shutdown_wait: Duration::from_secs(1),
        ..IoConfig::default()
    };
    let host = MmHost::from(PinCtx::new(Quotas::default()).with_io(io).inherit_network());
    let mut store = Store::new(engine, host);
    let instance = Instance::new_async(&mut store, module, &[]).await?;
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let mm = creator.mm_of_memory(&store, &memory).unwrap();
    store.data_mut().attach(mm);
    Ok(store)
}

/// The next tenant gets the only slot within the shutdown wait.
async fn slot_comes_back(engine: &Engine, creator: &PinMemoryCreator, module: &Module, what: &str) {
    let start = Instant::now();
    loop {
        match tenant(engine, creator, module).await {
            Ok(_) => return,
            Err(_) if start.elapsed() < Duration::from_secs(1) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{what}: the slot is still held 1 s after the store went: {e:?}"),
        }
    }
}

fn b<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_killed_recv_releases_its_pin_socket_and_slot() {
    rt().block_on(async {
        let (engine, creator, module) = one_slot();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = server.local_addr().unwrap();
        let mut store = tenant(&engine, &creator, &module).await.unwrap();
        let conn = store
            .data_mut()
            .pins()
            .connect(addr.into(), 5_000)
            .await
            .unwrap()
            .unwrap();
        let (mut peer, _) = server.accept().unwrap();
        let buf = store
            .data_mut()
            .pins()
            .pin_user_pages(0, 1, GupFlags::WRITE)
            .unwrap()
            .unwrap();
        {
            let mut pins = store.data_mut().pins();
            // The peer never sends: the recv waits for 49 days, or until the
            // embedder's deadline drops it.
            let recv = pins.recv(b(&conn), b(&buf), 0, 4096, u32::MAX);
            assert!(tokio::time::timeout(Duration::from_millis(100), recv).await.is_err());
        }
        drop(store);
        slot_comes_back(&engine, &creator, &module, "recv").await;
        // And the socket closed with the store: the peer reads end-of-file.
        peer.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut peer, &mut byte).unwrap(), 0);
    });
}

#[test]
fn a_killed_accept_releases_its_listener() {
    rt().block_on(async {
        let (engine, creator, module) = one_slot();
        let mut store = tenant(&engine, &creator, &module).await.unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let l = store.data_mut().pins().bind(any.into()).await.unwrap().unwrap();
        let port = SocketAddr::from(store.data_mut().pins().local_address(b(&l)).unwrap().unwrap()).port();
        {
            let mut pins = store.data_mut().pins();
            let accept = pins.accept(b(&l), u32::MAX);
            assert!(tokio::time::timeout(Duration::from_millis(100), accept).await.is_err());
        }
        drop(store);
        slot_comes_back(&engine, &creator, &module, "accept").await;
        // Nothing kept the listener: its port is free again at once.
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the listener outlived its store");
    });
}

/// A listener whose accept queue is full (backlog 0, one connection
/// waiting): a further connect hangs in the handshake, as it would towards
/// a host that drops SYNs.
fn saturated_listener() -> (std::net::TcpListener, std::net::TcpStream, SocketAddr) {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&fd, &SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    rustix::net::listen(&fd, 0).unwrap();
    let l = std::net::TcpListener::from(fd);
    let addr = l.local_addr().unwrap();
    let first = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    (l, first, addr)
}

#[test]
fn a_killed_connect_releases_its_socket_and_slot() {
    rt().block_on(async {
        let (engine, creator, module) = one_slot();
        let (_listener, _first, addr) = saturated_listener();
        let mut store = tenant(&engine, &creator, &module).await.unwrap();
        {
            let mut pins = store.data_mut().pins();
            let connect = pins.connect(addr.into(), u32::MAX);
            let r = tokio::time::timeout(Duration::from_millis(200), connect).await;
            assert!(
                r.is_err(),
                "the connect did not wait: {:?}",
                r.map(|r| r.map(|r| r.map(drop)))
            );
        }
        drop(store);
        slot_comes_back(&engine, &creator, &module, "connect").await;
    });
}

#[test]
fn a_killed_ticket_wait_releases_its_pin_and_slot() {
    use host_api::bindings::wasm_pin::mm::zero_copy_io::{Host as _, HostIoTicket as _};
    use wasmtime_wasi::filesystem::{Descriptor, File};
    use wasmtime_wasi::{FsPerms, OpenMode};
    rt().block_on(async {
        let (engine, creator, module) = one_slot();
        let path = std::env::temp_dir().join(format!("wasm-pin-killed-{}", std::process::id()));
        std::fs::write(&path, vec![5u8; 8 << 20]).unwrap();
        let mut store = tenant(&engine, &creator, &module).await.unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let d = File::new(file, FsPerms::ReadWrite, OpenMode::READ, false);
        let fd = store.data_mut().table.push(Descriptor::File(d)).unwrap();
        let buf = store
            .data_mut()
            .pins()
            .pin_user_pages(0, 16, GupFlags::WRITE)
            .unwrap()
            .unwrap();
        let mut tickets = Vec::new();
        for i in 0..64 {
            let t = store
                .data_mut()
                .pins()
                .submit_read_at(b(&fd), b(&buf), 0, 65536, i << 16)
                .unwrap();
            tickets.extend(t.ok());
        }
        assert!(!tickets.is_empty());
        {
            let mut pins = store.data_mut().pins();
            let last = tickets.last().unwrap();
            let _ = tokio::time::timeout(Duration::from_micros(1), pins.wait(b(last), u32::MAX)).await;
        }
        drop(store);
        slot_comes_back(&engine, &creator, &module, "ticket wait").await;
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn sync_socket_waits_end_at_max_wait() {
    let max_wait = Duration::from_millis(200);
    let io = IoConfig {
        max_wait,
        ..IoConfig::default()
    };
    assert_eq!(IoConfig::default().max_wait, IoConfig::DEFAULT_MAX_WAIT);
    let engine = Engine::new(&Config::new()).unwrap();
    let mut linker = wasmtime::component::Linker::<MmHost>::new(&engine);
    host_api::add_to_linker_sync(&mut linker).unwrap();
    // The sync registration is what a guest calls; drive it through a tiny
    // component that accepts with the longest timeout.
    let component = wasmtime::component::Component::new(
        &engine,
        r#"(component
            (import "wasm-pin:mm/zero-copy-net@0.1.0" (instance $net
                (type $errno (enum "inval" "fault" "nomem" "busy" "again" "opnotsupp" "overflow" "perm" "badf"
                    "noent" "acces" "io" "exist" "notdir" "isdir" "nospc" "pipe" "connrefused" "connreset"
                    "notconn" "timedout" "canceled" "mfile" "nfile"))
                (export "errno" (type $e (eq $errno)))
                (export "tcp-listener" (type $l (sub resource)))
                (export "tcp-stream" (type $s (sub resource)))
                (type $ip4 (tuple u8 u8 u8 u8))
                (type $ip6 (tuple u16 u16 u16 u16 u16 u16 u16 u16))
                (type $a4 (record (field "port" u16) (field "address" $ip4)))
                (export "ipv4-socket-address" (type $a4e (eq $a4)))
                (type $a6 (record (field "port" u16) (field "flow-info" u32) (field "address" $ip6) (field "scope-id" u32)))
                (export "ipv6-socket-address" (type $a6e (eq $a6)))
                (type $addr (variant (case "ipv4" $a4e) (case "ipv6" $a6e)))
                (export "ip-socket-address" (type $ia (eq $addr)))
                (export "[static]tcp-listener.bind" (func (param "addr" $ia) (result (result (own $l) (error $e)))))
                (export "[method]tcp-listener.accept" (func (param "self" (borrow $l)) (param "timeout-ms" u32) (result (result (own $s) (error $e)))))))
            (alias export $net "[static]tcp-listener.bind" (func $bind))
            (alias export $net "[method]tcp-listener.accept" (func $accept))
            (alias export $net "tcp-listener" (type $l))
            (core module $Mem (memory (export "memory") 1))
            (core instance $mem (instantiate $Mem))
            (alias core export $mem "memory" (core memory $m))
            (core func $cbind (canon lower (func $bind) (memory $m)))
            (core func $caccept (canon lower (func $accept) (memory $m)))
            (core module $Main
                (import "env" "memory" (memory 1))
                (import "env" "bind" (func $bind (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
                (import "env" "accept" (func $accept (param i32 i32 i32)))
                ;; bind 127.0.0.1:0, then accept for u32::MAX ms; returns the
                ;; accept's errno index (or 999 if it connected).
                (func (export "run") (result i32)
                    (call $bind (i32.const 0) (i32.const 0) (i32.const 127) (i32.const 0) (i32.const 0) (i32.const 1)
                        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 16))
                    (if (i32.load8_u (i32.const 16)) (then (return (i32.add (i32.const 2000) (i32.load8_u (i32.const 20))))))
                    (call $accept (i32.load (i32.const 20)) (i32.const -1) (i32.const 32))
                    (if (result i32) (i32.load8_u (i32.const 32))
                        (then (i32.load8_u (i32.const 36)))
                        (else (i32.const 999)))))
            (core instance $main (instantiate $Main
                (with "env" (instance (export "memory" (memory $m)) (export "bind" (func $cbind)) (export "accept" (func $caccept))))))
            (func (export "run") (result u32) (canon lift (core func $main "run"))))"#,
    )
    .unwrap();
    let host = MmHost::from(PinCtx::default().with_io(io).inherit_network());
    let mut store = Store::new(&engine, host);
    let instance = linker.instantiate(&mut store, &component).unwrap();
    let run = instance.get_typed_func::<(), (u32,)>(&mut store, "run").unwrap();
    let start = Instant::now();
    let (code,) = run.call(&mut store, ()).unwrap();
    let took = start.elapsed();
    assert_eq!(code, 20, "timedout (index 20), after max_wait");
    assert!(took >= max_wait && took < Duration::from_secs(5), "waited {took:?}");
}
