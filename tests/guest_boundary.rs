//! Issue 9: what a hostile guest could do through the pin imports, and what
//! it gets now. Each test drives the imports as a guest does: the core ABI
//! through a WAT trampoline, the component imports through real components
//! or the host traits the generated bindings call.

use host_api::bindings::wasm_pin::mm::gup::{Errno, GupFlags, Host as _};
use host_api::bindings::wasm_pin::mm::zero_copy_io::{Host as _, HostIoTicket, IoSlice};
use host_api::bindings::wasm_pin::mm::zero_copy_net::{HostTcpListener, HostTcpStream as _};
use host_api::{MmHost, PinCtx, PinView, Quotas};
use runtime_mm::{Mm, MmConfig, PinMemoryCreator};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wasmtime::component::{Component, Resource};
use wasmtime::{Config, Engine, Instance, Linker, Module, Store, TypedFunc};
use wasmtime_wasi::filesystem::{Descriptor, File};
use wasmtime_wasi::{FsPerms, OpenMode};

const PAGE: u64 = 4096;
const EBADF: i64 = -9;
const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const EMFILE: i64 = -24;

fn engine() -> (Engine, Arc<PinMemoryCreator>) {
    let creator = PinMemoryCreator::new();
    let mut config = Config::new();
    config.wasm_threads(true).shared_memory(true);
    creator.install(&mut config);
    (Engine::new(&config).unwrap(), creator)
}

/// A core-ABI guest: `call(func, a, b, c, d, e)` dispatches to import
/// `func` (see `guests/wat-core/fuzz_trampoline.wat` for the numbering).
struct CoreGuest {
    call: TypedFunc<(i32, i64, i64, i64, i64, i64), i64>,
    instance: Instance,
}

const PIN: i32 = 0;
const PIN_REMOTE: i32 = 4;
const OPEN_GRANT: i32 = 6;
const DROP_GRANT: i32 = 7;
const UNPIN: i32 = 8;
const START: i32 = 9;
const CHECKSUM: i32 = 11;

impl CoreGuest {
    fn new(store: &mut Store<MmHost>, linker: &Linker<MmHost>, module: &Module) -> CoreGuest {
        let instance = linker.instantiate(&mut *store, module).unwrap();
        let call = instance.get_typed_func(&mut *store, "call").unwrap();
        CoreGuest { call, instance }
    }

    fn call(&self, store: &mut Store<MmHost>, f: i32, a: i64, b: i64, c: i64, d: i64) -> i64 {
        self.call.call(store, (f, a, b, c, d, 0)).unwrap()
    }

    fn pin(&self, store: &mut Store<MmHost>, start: u64, nr: i64) -> i64 {
        self.call(store, PIN, start as i64, nr, 1, 0)
    }

    /// `open-grant("peer")`: the trampoline keeps the name at 0x20.
    fn open_peer(&self, store: &mut Store<MmHost>) -> i64 {
        self.call(store, OPEN_GRANT, 0x20, 4, 0, 0)
    }
}

fn core_setup(quotas: Quotas) -> (Store<MmHost>, Linker<MmHost>, Module, Arc<PinMemoryCreator>, Arc<Mm>) {
    let (engine, creator) = engine();
    let module = Module::new(&engine, wasm_pin_guests::core_module("fuzz_trampoline").unwrap()).unwrap();
    let mut linker = Linker::new(&engine);
    host_api::add_to_core_linker(&mut linker, &creator).unwrap();
    let peer = Mm::new(MmConfig {
        initial_bytes: 64 << 10,
        maximum_bytes: Some(64 << 20),
        reservation_bytes: 64 << 20,
        ..Default::default()
    })
    .unwrap();
    let mut host = MmHost::new(quotas);
    host.grant("peer", peer.clone());
    (Store::new(&engine, host), linker, module, creator, peer)
}

/// 9.1: `start` is validated before the zero-page shortcut, through the
/// core ABI and the component imports alike.
#[test]
fn zero_page_pins_validate_start() {
    let (mut store, linker, module, _, _) = core_setup(Quotas::default());
    let g = CoreGuest::new(&mut store, &linker, &module);
    let end = 2 * 65536; // the trampoline's memory
    assert_eq!(g.pin(&mut store, 1 << 40, 0), EFAULT);
    assert_eq!(g.pin(&mut store, !(PAGE - 1), 0), EFAULT);
    assert_eq!(g.pin(&mut store, end + PAGE, 0), EFAULT);
    assert_eq!(g.pin(&mut store, 3, 0), EINVAL);
    // An empty pin at the very end is fine, and reads nothing.
    let h = g.pin(&mut store, end, 0);
    assert!(h > 0, "{h}");
    assert_eq!(g.call(&mut store, START, h, 0, 0, 0), end as i64);
    assert_eq!(g.call(&mut store, CHECKSUM, h, 0, 1, 0), EFAULT);
    assert_eq!(g.call(&mut store, UNPIN, h, 0, 0, 0), 0);

    // Component imports (what the generated bindings call).
    let mm = Mm::new(MmConfig {
        initial_bytes: 4 * PAGE,
        ..Default::default()
    })
    .unwrap();
    let mut host = MmHost::default();
    host.attach(mm.clone());
    let mut v = host.pins();
    for start in [1 << 40, !(PAGE - 1), 5 * PAGE] {
        assert_eq!(
            v.pin_user_pages(start, 0, GupFlags::empty()).unwrap().unwrap_err(),
            Errno::Fault
        );
        assert_eq!(
            v.pin_longterm_pages_fast(start, 0, GupFlags::empty())
                .unwrap()
                .unwrap_err(),
            Errno::Fault
        );
    }
    assert_eq!(
        v.pin_user_pages_fast(1, 0, GupFlags::empty()).unwrap().unwrap_err(),
        Errno::Inval
    );
    assert_eq!(host.usage(), (0, 0, 0));
}

/// 9.2: two instances in one store cannot name each other's handles.
#[test]
fn core_handles_belong_to_their_instance() {
    let (mut store, linker, module, creator, peer) = core_setup(Quotas::default());
    let a = CoreGuest::new(&mut store, &linker, &module);
    let b = CoreGuest::new(&mut store, &linker, &module);
    let pin = a.pin(&mut store, 0, 2);
    let grant = a.open_peer(&mut store);
    assert!(pin > 0 && grant > 0);
    // B tries A's handles as every kind: all `badf`, nothing released.
    for h in [pin, grant] {
        assert_eq!(b.call(&mut store, UNPIN, h, 0, 0, 0), EBADF);
        assert_eq!(b.call(&mut store, START, h, 0, 0, 0), EBADF);
        assert_eq!(b.call(&mut store, CHECKSUM, h, 0, 16, 0), EBADF);
        assert_eq!(b.call(&mut store, DROP_GRANT, h, 0, 0, 0), EBADF);
        assert_eq!(b.call(&mut store, PIN_REMOTE, h, 0, 1, 0), EBADF);
    }
    // B's own first handles may even carry the same numbers: they name B's.
    let b_pin = b.pin(&mut store, 0, 1);
    assert!(b_pin > 0);
    let mem = |g: &CoreGuest, s: &mut Store<MmHost>| {
        let m = g.instance.get_memory(&mut *s, "memory").unwrap();
        creator.mm_of_memory(&*s, &m).unwrap()
    };
    let (mm_a, mm_b) = (mem(&a, &mut store), mem(&b, &mut store));
    assert_eq!(mm_a.stats().pins_outstanding(), 2, "A's pin is intact");
    assert_eq!(mm_b.stats().pins_outstanding(), 1);
    assert_eq!(a.call(&mut store, START, pin, 0, 0, 0), 0);
    assert!(a.call(&mut store, PIN_REMOTE, grant, 0, 1, 0) > 0);
    assert_eq!(peer.stats().pins_outstanding(), 1);
    assert_eq!(a.call(&mut store, UNPIN, pin, 0, 0, 0), 0);
    assert_eq!(b.call(&mut store, UNPIN, b_pin, 0, 0, 0), 0);
    assert_eq!(
        (mm_a.stats().pins_outstanding(), mm_b.stats().pins_outstanding()),
        (0, 0)
    );
}

/// 9.2: a released handle never names the object that reuses its slot, and
/// a handle of one kind is never taken for another.
#[test]
fn stale_and_confused_core_handles_are_badf() {
    let (mut store, linker, module, _, _) = core_setup(Quotas::default());
    let g = CoreGuest::new(&mut store, &linker, &module);
    let old = g.pin(&mut store, 0, 1);
    assert_eq!(g.call(&mut store, UNPIN, old, 0, 0, 0), 0);
    let new = g.pin(&mut store, PAGE, 1);
    assert_ne!(old, new);
    for f in [UNPIN, START, CHECKSUM] {
        assert_eq!(g.call(&mut store, f, old, 0, 0, 0), EBADF, "func {f}");
    }
    assert_eq!(
        g.call(&mut store, START, new, 0, 0, 0),
        PAGE as i64,
        "the new pin is intact"
    );
    // A pin passed as a grant and a grant passed as a pin.
    let grant = g.open_peer(&mut store);
    assert_eq!(g.call(&mut store, DROP_GRANT, new, 0, 0, 0), EBADF);
    assert_eq!(g.call(&mut store, PIN_REMOTE, new, 0, 1, 0), EBADF);
    assert_eq!(g.call(&mut store, UNPIN, grant, 0, 0, 0), EBADF);
    assert_eq!(g.call(&mut store, DROP_GRANT, grant, 0, 0, 0), 0);
    assert_eq!(g.call(&mut store, DROP_GRANT, grant, 0, 0, 0), EBADF, "double release");
    assert_eq!(g.call(&mut store, UNPIN, new, 0, 0, 0), 0);
    assert_eq!(store.data().usage(), (0, 0, 0));
    assert_eq!(store.data().held().grants, 0);
}

/// 9.3: a memory that grows on another thread while the guest pins never
/// lets a pin past the byte quota, at any instant.
#[test]
fn quota_holds_while_a_granted_memory_grows() {
    let quota = 16 * PAGE;
    let quotas = Quotas {
        max_pinned_bytes: quota,
        ..Default::default()
    };
    for round in 0..20 {
        let (mut store, linker, module, _, peer) = core_setup(quotas);
        let g = CoreGuest::new(&mut store, &linker, &module);
        let grant = g.open_peer(&mut store);
        let stop = Arc::new(AtomicBool::new(false));
        let grower = {
            let (peer, stop) = (peer.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut len = peer.len();
                while !stop.load(Ordering::Relaxed) && len < (64 << 20) {
                    len += 64 << 10;
                    peer.grow_to(len).unwrap();
                }
            })
        };
        let mut pinned_any = false;
        while !grower.is_finished() {
            // Ask for the whole future memory: at most the quota may come.
            let h = g.call(&mut store, PIN_REMOTE, grant, 0, 16384, 1);
            let (_, bytes, _) = store.data().usage();
            assert!(
                bytes <= quota,
                "round {round}: {bytes} bytes pinned over a {quota} quota"
            );
            assert!(peer.stats().pins_outstanding() <= 16, "round {round}");
            if h > 0 {
                pinned_any = true;
                assert_eq!(g.call(&mut store, UNPIN, h, 0, 0, 0), 0);
            } else {
                assert_eq!(h, -12, "over the quota at the length seen: nomem");
            }
        }
        stop.store(true, Ordering::Relaxed);
        grower.join().unwrap();
        assert!(pinned_any || peer.len() > quota);
        assert_eq!(peer.stats().pins_outstanding(), 0);
    }
}

/// 9.3 on a shared memory grown by another thread of the guest.
#[test]
fn quota_holds_while_a_shared_memory_grows() {
    let quota = 8 * PAGE;
    let (engine, creator) = engine();
    let module = Module::new(
        &engine,
        r#"(module
            (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast" (func $pin (param i64 i32 i32) (result i32)))
            (import "wasm-pin:mm/gup@0.1.0" "unpin" (func $unpin (param i32 i32) (result i32)))
            (memory (export "memory") 1 1024 shared)
            (func (export "pin") (param i32) (result i32) (call $pin (i64.const 0) (local.get 0) (i32.const 0)))
            (func (export "unpin") (param i32) (result i32) (call $unpin (local.get 0) (i32.const 0))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    host_api::add_to_core_linker(&mut linker, &creator).unwrap();
    let quotas = Quotas {
        max_pinned_bytes: quota,
        ..Default::default()
    };
    let mut store = Store::new(&engine, MmHost::new(quotas));
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let shared = instance.get_shared_memory(&mut store, "memory").unwrap();
    let mm = creator.mm_of_shared_memory(&shared).unwrap();
    let pin = instance.get_typed_func::<i32, i32>(&mut store, "pin").unwrap();
    let unpin = instance.get_typed_func::<i32, i32>(&mut store, "unpin").unwrap();
    let grower = std::thread::spawn(move || {
        for _ in 0..1023 {
            shared.grow(1).unwrap();
        }
    });
    while !grower.is_finished() {
        let h = pin.call(&mut store, 1 << 20).unwrap();
        assert!(store.data().usage().1 <= quota);
        assert!(mm.stats().pins_outstanding() <= quota / PAGE);
        if h > 0 {
            assert_eq!(unpin.call(&mut store, h).unwrap(), 0);
        }
    }
    grower.join().unwrap();
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    wasmtime_wasi::runtime::in_tokio(f)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wasm-pin-boundary-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A WASI descriptor as `open-at` makes one (read-write).
fn descriptor(host: &mut MmHost, path: &std::path::Path) -> Resource<Descriptor> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    let d = Descriptor::File(File::new(
        f,
        FsPerms::ReadWrite,
        OpenMode::READ | OpenMode::WRITE,
        false,
    ));
    host.table.push(d).unwrap()
}

fn b<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

fn loopback() -> host_api::bindings::wasi::sockets::network::IpSocketAddress {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()
}

/// 9.4: sockets, grants and tickets each have a quota, enforced before any
/// descriptor is created; over it is `mfile`. (Files are WASI's own now:
/// opened with `open-at`, they live in WASI's table.)
#[test]
fn every_guest_held_resource_has_a_quota() {
    let quotas = Quotas {
        max_sockets: 2,
        max_grants: 2,
        max_tickets: 2,
        ..Default::default()
    };
    let mut host = MmHost::from(PinCtx::new(quotas).inherit_network());
    let dir = tmp("quota");
    std::fs::write(dir.join("f"), vec![1u8; 3 * PAGE as usize]).unwrap();

    let l1 = block(host.pins().bind(loopback())).unwrap().unwrap();
    let _l2 = block(host.pins().bind(loopback())).unwrap().unwrap();
    let before = open_fds();
    assert_eq!(block(host.pins().bind(loopback())).unwrap().unwrap_err(), Errno::Mfile);
    assert_eq!(
        block(host.pins().connect(loopback(), 100)).unwrap().unwrap_err(),
        Errno::Mfile
    );
    assert_eq!(open_fds(), before, "no descriptor was created over the quota");
    assert_eq!(host.held().sockets, 2);
    HostTcpListener::drop(&mut host.pins(), l1).unwrap();
    assert!(
        block(host.pins().bind(loopback())).unwrap().is_ok(),
        "a released socket frees its place"
    );

    let peer = Mm::new(MmConfig {
        initial_bytes: 64 << 10,
        ..Default::default()
    })
    .unwrap();
    host.grant("peer", peer);
    let _g1 = host.pins().open_grant("peer".into()).unwrap().unwrap();
    let _g2 = host.pins().open_grant("peer".into()).unwrap().unwrap();
    assert_eq!(
        host.pins().open_grant("peer".into()).unwrap().unwrap_err(),
        Errno::Mfile
    );

    let mm = Mm::new(MmConfig {
        initial_bytes: 1 << 20,
        ..Default::default()
    })
    .unwrap();
    host.attach(mm);
    let buf = host.pins().pin_user_pages(0, 3, GupFlags::WRITE).unwrap().unwrap();
    let f = descriptor(&mut host, &dir.join("f"));
    let t1 = host.pins().submit_read_at(b(&f), b(&buf), 0, 4096, 0).unwrap().unwrap();
    let _t2 = host.pins().submit_read_at(b(&f), b(&buf), 0, 4096, 0).unwrap().unwrap();
    assert_eq!(
        host.pins()
            .submit_read_at(b(&f), b(&buf), 0, 4096, 0)
            .unwrap()
            .unwrap_err(),
        Errno::Mfile
    );
    assert_eq!(host.held().tickets, 2);
    HostIoTicket::drop(&mut host.pins(), t1).unwrap();
    assert_eq!(host.held().tickets, 1);
    assert!(host.pins().submit_read_at(b(&f), b(&buf), 0, 4096, 0).unwrap().is_ok());
}

/// 9.4 through the core ABI: grants over the quota are `-EMFILE`.
#[test]
fn core_grants_have_a_quota() {
    let quotas = Quotas {
        max_grants: 2,
        ..Default::default()
    };
    let (mut store, linker, module, _, _) = core_setup(quotas);
    let g = CoreGuest::new(&mut store, &linker, &module);
    let a = g.open_peer(&mut store);
    assert!(a > 0 && g.open_peer(&mut store) > 0);
    assert_eq!(g.open_peer(&mut store), EMFILE);
    assert_eq!(g.call(&mut store, DROP_GRANT, a, 0, 0, 0), 0);
    assert!(g.open_peer(&mut store) > 0);
}

/// 9.5: overlapping and duplicate slices go to the kernel as raw iovecs and
/// move exactly what `preadv`/`pwritev` define, in order.
#[test]
fn vectored_io_with_overlapping_slices() {
    let dir = tmp("vectored");
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(dir.join("v"), &data).unwrap();
    let mm = Mm::new(MmConfig {
        initial_bytes: 1 << 20,
        ..Default::default()
    })
    .unwrap();
    let mut host = MmHost::default();
    host.attach(mm.clone());
    let pin = host.pins().pin_user_pages(0, 1, GupFlags::WRITE).unwrap().unwrap();
    let f = descriptor(&mut host, &dir.join("v"));
    let s = |offset, len| IoSlice {
        buf: Resource::new_borrow(pin.rep()),
        offset,
        len,
    };
    let fd = || Resource::new_borrow(f.rep());
    let n = block(
        host.pins()
            .read_at_vectored(fd(), vec![s(0, 100), s(50, 100), s(0, 100)], 0),
    )
    .unwrap()
    .unwrap();
    assert_eq!(n, 300);
    let mut got = vec![0u8; 150];
    mm.read(0, &mut got).unwrap();
    assert_eq!(&got[..100], &data[200..300], "the last slice wins its bytes");
    assert_eq!(&got[100..150], &data[150..200]);
    // Duplicate slices out: the same bytes twice, in order.
    let n = block(host.pins().write_at_vectored(fd(), vec![s(0, 10), s(0, 10)], 500))
        .unwrap()
        .unwrap();
    assert_eq!(n, 20);
    let on_disk = std::fs::read(dir.join("v")).unwrap();
    assert_eq!(&on_disk[500..510], &data[200..210]);
    assert_eq!(&on_disk[510..520], &data[200..210]);
}

/// 9.6: `open-grant` works from a module whose memory is shared.
#[test]
fn open_grant_from_a_shared_memory() {
    let (engine, creator) = engine();
    let module = Module::new(
        &engine,
        r#"(module
            (import "wasm-pin:mm/gup@0.1.0" "open-grant" (func $open (param i32 i32) (result i32)))
            (memory (export "memory") 1 1 shared)
            (data (i32.const 16) "peer")
            (func (export "open") (result i32) (call $open (i32.const 16) (i32.const 4))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    host_api::add_to_core_linker(&mut linker, &creator).unwrap();
    let mut host = MmHost::default();
    host.grant(
        "peer",
        Mm::new(MmConfig {
            initial_bytes: 1 << 16,
            ..Default::default()
        })
        .unwrap(),
    );
    let mut store = Store::new(&engine, host);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let open = instance.get_typed_func::<(), i32>(&mut store, "open").unwrap();
    let g = open.call(&mut store, ()).unwrap();
    assert!(g > 0, "open-grant from a shared memory gave {g}");
}

/// The declarations of the part of `wasm-pin:mm/gup` the composed test
/// uses (a linker instance may offer more than a component imports).
const GUP_TYPE: &str = r#"
    (type $errno (enum "inval" "fault" "nomem" "busy" "again" "opnotsupp" "overflow" "perm" "badf"
        "noent" "acces" "io" "exist" "notdir" "isdir" "nospc" "pipe" "connrefused" "connreset"
        "notconn" "timedout" "canceled" "mfile" "nfile"))
    (export "errno" (type $e (eq $errno)))
    (type $fl (flags "write" "force" "nowait"))
    (export "gup-flags" (type $f (eq $fl)))
    (export "pinned-pages" (type $pp (sub resource)))
    (type $own (own $pp))
    (type $res (result $own (error $e)))
    (export "pin-user-pages" (func (param "start" u64) (param "nr-pages" u32) (param "flags" $f) (result $res)))"#;

/// A sub-component with its own memory of `pages` wasm pages; `run` pins one
/// page at 128 KiB and returns 0, or 1000 + the errno's index.
fn sub_component(pages: u32) -> String {
    format!(
        r#"(component
            (import "gup" (instance $g {GUP_TYPE}))
            (core module $Mem (memory (export "memory") {pages}))
            (core instance $mem (instantiate $Mem))
            (alias core export $mem "memory" (core memory $m))
            (core func $pin (canon lower (func $g "pin-user-pages") (memory $m)))
            (core module $Main
                (import "env" "memory" (memory 1))
                (import "env" "pin" (func $pin (param i64 i32 i32 i32)))
                (func (export "run") (result i32)
                    (call $pin (i64.const 131072) (i32.const 1) (i32.const 1) (i32.const 16))
                    (if (result i32) (i32.load8_u (i32.const 16))
                        (then (i32.add (i32.const 1000) (i32.load8_u (i32.const 20))))
                        (else (i32.const 0)))))
            (core instance $main (instantiate $Main
                (with "env" (instance (export "memory" (memory $m)) (export "pin" (func $pin))))))
            (func (export "run") (result u32) (canon lift (core func $main "run"))))"#
    )
}

/// A component's text without its `(component` and `)`, to nest it under
/// a name.
fn body(text: &str) -> &str {
    &text["(component".len()..text.len() - 1]
}

/// 9.6 / 10.4: in a composed component each sub-component's pins resolve
/// against its own memory: the one its `canon lower` names.
#[test]
fn composed_components_pin_their_own_memory() {
    let (engine, creator) = engine();
    let text = format!(
        r#"(component
            (import "wasm-pin:mm/gup@0.1.0" (instance $gup {GUP_TYPE}))
            (component $Small {small})
            (component $Big {big})
            (instance $a (instantiate $Small (with "gup" (instance $gup))))
            (instance $b (instantiate $Big (with "gup" (instance $gup))))
            (export "run-small" (func $a "run"))
            (export "run-big" (func $b "run")))"#,
        small = body(&sub_component(1)),
        big = body(&sub_component(4)),
    );
    let component = Component::new(&engine, text).unwrap();
    let mut linker = wasmtime::component::Linker::new(&engine);
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut store = Store::new(&engine, MmHost::default());
    // (The capture only shows the test which memory is which.)
    let (instance, mms) = creator.capture(|| linker.instantiate(&mut store, &component));
    let instance = instance.unwrap();
    assert_eq!(mms.len(), 2, "two sub-components, two memories");
    let big = mms.iter().find(|m| m.len() == 4 << 16).unwrap().clone();
    let small = mms.iter().find(|m| m.len() == 1 << 16).unwrap().clone();
    let run = |s: &mut Store<MmHost>, name| {
        let f = instance.get_typed_func::<(), (u32,)>(&mut *s, name).unwrap();
        f.call(&mut *s, ()).unwrap().0
    };
    // The small memory has no page at 128 KiB: `fault` (index 1).
    assert_eq!(run(&mut store, "run-small"), 1001);
    assert_eq!(run(&mut store, "run-big"), 0, "the big one pins its own page");
    assert!(big.page_maybe_dma_pinned(131072));
    assert_eq!(small.stats().foll_pin_acquired, 0);
    // And in the other order, with no state left from the first calls.
    assert_eq!(run(&mut store, "run-small"), 1001);
    drop(store);
    assert_eq!(big.stats().pins_outstanding(), 0);
}

/// 10.4 groundwork: a component whose memory is not an `Mm` gets
/// `opnotsupp` from a pin, not `fault`.
#[test]
fn a_memory_not_made_by_the_creator_is_opnotsupp() {
    let engine = Engine::default(); // no PinMemoryCreator
    let text = format!(
        r#"(component
            (import "wasm-pin:mm/gup@0.1.0" (instance $gup {GUP_TYPE}))
            (component $S {s})
            (instance $a (instantiate $S (with "gup" (instance $gup))))
            (export "run" (func $a "run")))"#,
        s = body(&sub_component(4)),
    );
    let component = Component::new(&engine, text).unwrap();
    let mut linker = wasmtime::component::Linker::new(&engine);
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut store = Store::new(&engine, MmHost::default());
    let instance = linker.instantiate(&mut store, &component).unwrap();
    let f = instance.get_typed_func::<(), (u32,)>(&mut store, "run").unwrap();
    assert_eq!(f.call(&mut store, ()).unwrap().0, 1005, "opnotsupp is index 5");
}

/// `gup` with the two imports that carry no address.
fn gup_with_queries() -> String {
    format!(
        r#"{GUP_TYPE}
    (export "page-maybe-dma-pinned" (func (param "addr" u64) (result bool)))
    (type $stats (record (field "foll-pin-acquired" u64) (field "foll-pin-released" u64)
        (field "foll-get-taken" u64) (field "foll-get-put" u64) (field "fast-path-pages" u64)
        (field "slow-path-pages" u64) (field "fast-fallbacks" u64) (field "longterm-pinned-pages" u64)
        (field "remote-pages" u64) (field "dirtied-pages" u64) (field "locked-bytes" u64)))
    (export "mm-stats" (type $s (eq $stats)))
    (export "stats" (func (result $s)))"#
    )
}

/// A component with its own memory; `run(op)`: 0 pins page 0 (0, or 1000 +
/// errno index), 1 asks `page-maybe-dma-pinned(0)` (lowered with no
/// memory, as wit-component lowers it), 2 returns `stats().foll-pin-acquired`.
fn querying_component() -> String {
    format!(
        r#"(component
            (import "gup" (instance $g {gup}))
            (core module $Mem (memory (export "memory") 1))
            (core instance $mem (instantiate $Mem))
            (alias core export $mem "memory" (core memory $m))
            (core func $pin (canon lower (func $g "pin-user-pages") (memory $m)))
            (core func $pinned (canon lower (func $g "page-maybe-dma-pinned")))
            (core func $stats (canon lower (func $g "stats") (memory $m)))
            (core module $Main
                (import "env" "memory" (memory 1))
                (import "env" "pin" (func $pin (param i64 i32 i32 i32)))
                (import "env" "pinned" (func $pinned (param i64) (result i32)))
                (import "env" "stats" (func $stats (param i32)))
                (func (export "run") (param $op i32) (result i32)
                    (if (i32.eqz (local.get $op)) (then
                        (call $pin (i64.const 0) (i32.const 1) (i32.const 1) (i32.const 16))
                        (return (if (result i32) (i32.load8_u (i32.const 16))
                            (then (i32.add (i32.const 1000) (i32.load8_u (i32.const 20))))
                            (else (i32.const 0))))))
                    (if (i32.eq (local.get $op) (i32.const 1)) (then
                        (return (call $pinned (i64.const 0)))))
                    (call $stats (i32.const 64))
                    (i32.wrap_i64 (i64.load (i32.const 64)))))
            (core instance $main (instantiate $Main
                (with "env" (instance (export "memory" (memory $m)) (export "pin" (func $pin))
                    (export "pinned" (func $pinned)) (export "stats" (func $stats))))))
            (func (export "run") (param "op" u32) (result u32) (canon lift (core func $main "run"))))"#,
        gup = gup_with_queries(),
    )
}

/// #19.3: `page-maybe-dma-pinned` and `stats` answer about the calling
/// instance's own memory. Two components in one store: A pins its page 0;
/// B, which pinned nothing, is told its page 0 is not pinned and sees its
/// own (empty) counters, before and after A's pin, in either order.
#[test]
fn queries_answer_for_the_callers_own_memory() {
    let (engine, _creator) = engine();
    let text = format!(
        r#"(component
            (import "wasm-pin:mm/gup@0.1.0" (instance $gup {gup}))
            (component $C {c})
            (instance $a (instantiate $C (with "gup" (instance $gup))))
            (instance $b (instantiate $C (with "gup" (instance $gup))))
            (export "run-a" (func $a "run"))
            (export "run-b" (func $b "run")))"#,
        gup = gup_with_queries(),
        c = body(&querying_component()),
    );
    let composed = Component::new(&engine, text).unwrap();
    let single = format!(
        r#"(component
            (import "wasm-pin:mm/gup@0.1.0" (instance $gup {gup}))
            (component $C {c})
            (instance $a (instantiate $C (with "gup" (instance $gup))))
            (export "run" (func $a "run")))"#,
        gup = gup_with_queries(),
        c = body(&querying_component()),
    );
    let single = Component::new(&engine, single).unwrap();
    let mut linker = wasmtime::component::Linker::new(&engine);
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut store = Store::new(&engine, MmHost::default());
    let run = |s: &mut Store<MmHost>, i: &wasmtime::component::Instance, name: &str, op: u32| {
        let f = i.get_typed_func::<(u32,), (u32,)>(&mut *s, name).unwrap();
        f.call(&mut *s, (op,)).unwrap().0
    };
    // Two top-level components in one store.
    let a = linker.instantiate(&mut store, &single).unwrap();
    let b = linker.instantiate(&mut store, &single).unwrap();
    assert_eq!(run(&mut store, &b, "run", 1), 0, "B has pinned nothing");
    assert_eq!(run(&mut store, &a, "run", 0), 0);
    assert_eq!(run(&mut store, &b, "run", 1), 0, "A's pin is not B's");
    assert_eq!(run(&mut store, &b, "run", 2), 0, "B's own counters");
    assert_eq!(run(&mut store, &a, "run", 1), 1);
    assert_eq!(run(&mut store, &a, "run", 2), 1);
    assert_eq!(run(&mut store, &b, "run", 1), 0, "still, right after A's calls");
    // Two sub-components of one composed component.
    let c = linker.instantiate(&mut store, &composed).unwrap();
    assert_eq!(run(&mut store, &c, "run-a", 0), 0);
    assert_eq!(run(&mut store, &c, "run-b", 1), 0);
    assert_eq!(run(&mut store, &c, "run-b", 2), 0);
    assert_eq!(run(&mut store, &c, "run-a", 1), 1);
}

/// #19.4: core-ABI handles belong to the instance, not to the memory it
/// exports. B imports A's memory and re-exports it as `memory`: it still
/// cannot use or release A's pins, and its own pins are its own.
#[test]
fn reexporting_anothers_memory_names_none_of_its_handles() {
    let (mut store, mut linker, module, creator, _peer) = core_setup(Quotas::default());
    let a = CoreGuest::new(&mut store, &linker, &module);
    let pin = a.pin(&mut store, 0, 1);
    assert!(pin > 0);
    let h = i32::try_from(pin).unwrap();
    let memory = a.instance.get_memory(&mut store, "memory").unwrap();
    linker.define(&store, "a", "memory", memory).unwrap();
    let impostor = Module::new(
        module.engine(),
        r#"(module
            (import "a" "memory" (memory 2))
            (export "memory" (memory 0))
            (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin (param i64 i32 i32) (result i32)))
            (import "wasm-pin:mm/gup@0.1.0" "unpin" (func $unpin (param i32 i32) (result i32)))
            (import "wasm-pin:mm/gup@0.1.0" "pinned-start" (func $start (param i32) (result i64)))
            (func (export "pin") (param i64) (result i32) (call $pin (local.get 0) (i32.const 1) (i32.const 1)))
            (func (export "unpin") (param i32) (result i32) (call $unpin (local.get 0) (i32.const 0)))
            (func (export "start") (param i32) (result i64) (call $start (local.get 0))))"#,
    )
    .unwrap();
    let b = linker.instantiate(&mut store, &impostor).unwrap();
    let b_unpin = b.get_typed_func::<i32, i32>(&mut store, "unpin").unwrap();
    let b_start = b.get_typed_func::<i32, i64>(&mut store, "start").unwrap();
    let b_pin = b.get_typed_func::<i64, i32>(&mut store, "pin").unwrap();
    let mm = creator.mm_of_memory(&store, &memory).unwrap();
    assert_eq!(b_start.call(&mut store, h).unwrap(), EBADF);
    assert_eq!(i64::from(b_unpin.call(&mut store, h).unwrap()), EBADF);
    assert_eq!(mm.stats().pins_outstanding(), 1, "A's pin is intact");
    // B's own pins (of the shared memory) are B's alone: its second handle
    // is a number A's table never gave out.
    let own = [
        b_pin.call(&mut store, 4096).unwrap(),
        b_pin.call(&mut store, 8192).unwrap(),
    ];
    assert!(own[0] > 0 && own[1] > own[0]);
    assert_eq!(a.call(&mut store, UNPIN, i64::from(own[1]), 0, 0, 0), EBADF);
    for h in own {
        assert_eq!(b_unpin.call(&mut store, h).unwrap(), 0);
    }
    assert_eq!(mm.stats().pins_outstanding(), 1, "A's pin is intact");
    assert_eq!(a.call(&mut store, START, pin, 0, 0, 0), 0);
    assert_eq!(a.call(&mut store, UNPIN, pin, 0, 0, 0), 0);
    assert_eq!(mm.stats().pins_outstanding(), 0);
}
