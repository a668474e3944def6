//! Issue 10: the pin imports in an embedder's own linker, beside
//! wasmtime-wasi p2, on one table; sync stores and async stores on tokio's
//! current-thread and multi-thread runtimes; bytes verified.
//!
//! `read_file` (WAT, always built) opens a file with WASI and reads it into a
//! pin with `read-at` and with `submit-read-at` + `wasi:io/poll`; the Rust
//! `demo` guest (built by `guests/rust/build.sh`) is a real WASI program that
//! streams a file through pinned buffers and writes a zero-copy copy.

use crate::support::backends;

use backends::backends;
use host_api::WasiPinHost as State;
use host_api::{BackendKind, IoConfig, PinCtx, Quotas};
use runtime_mm::{Mm, PinMemoryCreator};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx};

fn engine() -> Engine {
    let creator = PinMemoryCreator::new();
    let mut config = Config::new();
    creator.install(&mut config);
    Engine::new(&config).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wasm-pin-embed-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn state(dir: &Path, args: &[&str], backend: BackendKind) -> State {
    let mut wasi = WasiCtx::builder();
    wasi.preopened_dir(dir, "/", FsPerms::ReadWrite).unwrap();
    wasi.inherit_stderr().args(args);
    let pins = PinCtx::default().with_io(IoConfig {
        backend,
        ..IoConfig::default()
    });
    State::new(wasi.build(), pins)
}

/// The bytes `read_file` read: 64 KiB at 0x10000 of its memory.
fn check_read_file(mm: &Arc<Mm>, input: &[u8]) {
    let mut got = vec![0u8; 0x10000];
    mm.read(0x10000, &mut got).unwrap();
    assert_eq!(got, input[..0x10000], "the guest's pinned pages hold the file");
    let s = mm.stats();
    assert_eq!((s.pins_outstanding(), s.dirtied_pages), (0, 16), "{s:?}");
}

#[test]
fn a_sync_store_reads_a_wasi_file_zero_copy() {
    let dir = scratch("sync");
    let input = pattern(0x10000);
    std::fs::write(dir.join("input.bin"), &input).unwrap();
    let engine = engine();
    let component = Component::new(&engine, wasm_pin_guests::component("read_file").unwrap()).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_api::add_to_linker_sync(&mut linker).unwrap();
    for backend in backends() {
        let mut store = Store::new(&engine, state(&dir, &[], backend));
        let guest = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
        assert_eq!(guest.call_run(&mut store).unwrap(), Ok(()), "{backend:?}");
        let mm = store
            .data()
            .pins
            .memory()
            .expect("the pin found the guest's memory")
            .clone();
        check_read_file(&mm, &input);
        assert_eq!(store.data().pins.io_counts().submitted, 1, "{backend:?}");
    }
}

/// Runs `read_file` in an async store on `rt`: `instantiate_async`,
/// `call_async`, the async linker.
fn read_file_async(rt: &tokio::runtime::Runtime) {
    let dir = scratch("async");
    let input = pattern(0x10000);
    std::fs::write(dir.join("input.bin"), &input).unwrap();
    let engine = engine();
    let component = Component::new(&engine, wasm_pin_guests::component("read_file").unwrap()).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    host_api::add_to_linker_async(&mut linker).unwrap();
    for backend in backends() {
        rt.block_on(async {
            let mut store = Store::new(&engine, state(&dir, &[], backend));
            let instance = linker.instantiate_async(&mut store, &component).await.unwrap();
            let run = instance
                .get_typed_func::<(), (Result<(), String>,)>(&mut store, "run")
                .unwrap();
            assert_eq!(run.call_async(&mut store, ()).await.unwrap(), (Ok(()),), "{backend:?}");
            let mm = store.data().pins.memory().unwrap().clone();
            check_read_file(&mm, &input);
            // read-at went through the backend (awaited), submit-read-at too.
            assert_eq!(store.data().pins.io_counts().submitted, 2, "{backend:?}");
        });
    }
}

#[test]
fn an_async_store_on_a_current_thread_runtime_reads_zero_copy() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    read_file_async(&rt);
}

#[test]
fn an_async_store_on_a_multi_thread_runtime_reads_zero_copy() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    read_file_async(&rt);
}

/// An async import never blocks the executor: while the store awaits a
/// transfer, a current-thread runtime keeps running other tasks.
#[test]
fn an_async_transfer_does_not_block_the_executor() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = ticks.clone();
    rt.block_on(async move {
        let ticker = tokio::task::spawn(async move {
            loop {
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        read_many(&ticks).await;
        ticker.abort();
    });
}

async fn read_many(ticks: &std::sync::atomic::AtomicUsize) {
    let dir = scratch("ticks");
    let input = pattern(0x10000);
    std::fs::write(dir.join("input.bin"), &input).unwrap();
    let engine = engine();
    let component = Component::new(&engine, wasm_pin_guests::component("read_file").unwrap()).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    host_api::add_to_linker_async(&mut linker).unwrap();
    let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..20 {
        let mut store = Store::new(&engine, state(&dir, &[], BackendKind::Threads));
        let instance = linker.instantiate_async(&mut store, &component).await.unwrap();
        let run = instance
            .get_typed_func::<(), (Result<(), String>,)>(&mut store, "run")
            .unwrap();
        assert_eq!(run.call_async(&mut store, ()).await.unwrap(), (Ok(()),));
    }
    let after = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        after > before,
        "the other task ran while the guest's transfers were awaited"
    );
}

fn demo() -> Option<&'static [u8]> {
    let bytes = wasm_pin_guests::wasi_command("demo");
    if bytes.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must build the demo guest (guests/rust/build.sh)"
        );
        println!("skipped: the demo guest is not built (run guests/rust/build.sh)");
    }
    bytes
}

/// The Rust demo guest, a real WASI program using the SDK, in an embedder's
/// own async linker (multi-thread and current-thread runtimes) and sync
/// linker: the zero-copy copy it writes equals its input.
#[test]
fn the_rust_demo_guest_runs_in_sync_and_async_embeddings() {
    let Some(bytes) = demo() else { return };
    let dir = scratch("demo");
    let input = pattern((5 << 20) + 123);
    std::fs::write(dir.join("in.bin"), &input).unwrap();
    let engine = engine();
    let component = Component::new(&engine, bytes).unwrap();
    let args = ["demo", "/in.bin", "/out.bin"];

    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut store = Store::new(&engine, state(&dir, &args, BackendKind::Auto));
    let cmd = wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker).unwrap();
    assert_eq!(cmd.wasi_cli_run().call_run(&mut store).unwrap(), Ok(()));
    assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), input, "sync");

    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    host_api::add_to_linker_async(&mut linker).unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for rt in [current, multi] {
        std::fs::remove_file(dir.join("out.bin")).unwrap();
        rt.block_on(async {
            let mut store = Store::new(&engine, state(&dir, &args, BackendKind::Auto));
            let cmd = wasmtime_wasi::p2::bindings::Command::instantiate_async(&mut store, &component, &linker)
                .await
                .unwrap();
            assert_eq!(cmd.wasi_cli_run().call_run(&mut store).await.unwrap(), Ok(()));
            let mm = store.data().pins.memory().unwrap().clone();
            drop(store);
            assert_eq!(mm.stats().pins_outstanding(), 0);
        });
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), input, "async");
    }
}

fn check_one_call(dir: &Path, mm: &Arc<Mm>, input: &[u8]) {
    let mut got = vec![0u8; 10000];
    mm.read(0x10003, &mut got).unwrap();
    assert_eq!(got, input[5..10005], "read-into an unaligned range");
    assert_eq!(
        std::fs::read(dir.join("out.bin")).unwrap(),
        &input[5..10005],
        "write-from"
    );
    let mut got = vec![0u8; 0x10000];
    mm.read(0x30000, &mut got).unwrap();
    assert_eq!(got, input[..0x10000], "submit-read-into");
    for page in [0x10000, 0x12000, 0x30000, 0x3f000] {
        assert!(
            mm.test_and_clear_dirty(page),
            "a one-call read dirties its pages ({page:#x})"
        );
    }
    let s = mm.stats();
    assert_eq!(s.pins_outstanding(), 0, "every one-call pin is released: {s:?}");
    assert!(s.fast_path_pages > 0 && s.slow_path_pages == 0, "lock-free: {s:?}");
    // Bytes around the ranges untouched.
    let mut guard = [9u8; 3];
    mm.read(0x10000, &mut guard).unwrap();
    assert_eq!(guard, [0; 3]);
}

/// Runs `guest`'s `run` in a synchronous store, then in an asynchronous
/// one (tokio, current thread), each with its own scratch directory named
/// `name-sync` / `name-async` holding `input` as `input.bin` and the store
/// state `make` gives. `check` sees the directory, `run`'s result and the
/// pins after each run; `false` ends the test there (a skip).
fn run_sync_and_async(
    guest: &str,
    name: &str,
    input: &[u8],
    make: impl Fn(&Path) -> State,
    check: impl Fn(&Path, Result<(), String>, &PinCtx) -> bool,
) {
    let engine = engine();
    let component = Component::new(&engine, wasm_pin_guests::component(guest).unwrap()).unwrap();
    let dir = scratch(&format!("{name}-sync"));
    std::fs::write(dir.join("input.bin"), input).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut store = Store::new(&engine, make(&dir));
    let instance = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
    let r = instance.call_run(&mut store).unwrap();
    if !check(&dir, r, &store.data().pins) {
        return;
    }

    let dir = scratch(&format!("{name}-async"));
    std::fs::write(dir.join("input.bin"), input).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    host_api::add_to_linker_async(&mut linker).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store = Store::new(&engine, make(&dir));
        let instance = linker.instantiate_async(&mut store, &component).await.unwrap();
        let run = instance
            .get_typed_func::<(), (Result<(), String>,)>(&mut store, "run")
            .unwrap();
        let (r,) = run.call_async(&mut store, ()).await.unwrap();
        assert!(check(&dir, r, &store.data().pins), "skipped in the async store only");
    });
}

fn check_one_call_fixed(dir: &Path, pins: &PinCtx, input: &[u8]) {
    let mm = pins.memory().unwrap().clone();
    let mut got = vec![0u8; 10000];
    mm.read(0x10003, &mut got).unwrap();
    assert_eq!(got, input[5..10005], "read-into-fixed an unaligned range");
    assert_eq!(
        std::fs::read(dir.join("out.bin")).unwrap(),
        &input[5..10005],
        "write-from-fixed"
    );
    let mut got = vec![0u8; 0x10000];
    mm.read(0x30000, &mut got).unwrap();
    assert_eq!(got, input[..0x10000], "submit-read-into-fixed");
    let mut got = vec![0u8; 100];
    mm.read(0x20000, &mut got).unwrap();
    assert_eq!(got, input[7..107], "a slot outlives its descriptor");
    for page in [0x10000, 0x12000, 0x20000, 0x30000, 0x3f000] {
        assert!(
            mm.test_and_clear_dirty(page),
            "a one-call read dirties its pages ({page:#x})"
        );
    }
    assert!(!mm.test_and_clear_dirty(0x28000), "no read touched this page");
    let s = mm.stats();
    assert_eq!(s.pins_outstanding(), 0, "every one-call pin is released: {s:?}");
    assert!(s.fast_path_pages > 0 && s.slow_path_pages == 0, "lock-free: {s:?}");
    assert_eq!(pins.held().files, 2, "the guest left two slots registered");
}

/// Issue 13.2/13.3: registered files (`register-file`, `*-fixed`), in sync
/// and async stores: bytes, directions, bad ranges, the file quota, stale
/// and forged slots (the checks are the guest's; the bytes are checked here).
#[test]
fn registered_files_in_sync_and_async_stores() {
    let input = pattern(0x20000);
    let make = |dir: &Path| {
        let mut s = state(dir, &[], BackendKind::Auto);
        s.pins = PinCtx::new(Quotas {
            max_files: 3,
            ..Quotas::default()
        });
        s
    };
    run_sync_and_async("one_call_fixed", "one-call-fixed", &input, make, |dir, r, pins| {
        assert_eq!(r, Ok(()));
        check_one_call_fixed(dir, pins, &input);
        true
    });
}

/// Registered-file slots belong to the instance that registered them: a
/// second instance of the same store cannot read through, or unregister,
/// the first one's slot, though it holds the same number in its own table.
#[test]
fn registered_file_slots_are_per_instance() {
    let input = pattern(0x1000);
    let engine = engine();
    let component = Component::new(&engine, wasm_pin_guests::component("one_call_fixed_isolated").unwrap()).unwrap();
    let dir = scratch("one-call-fixed-isolated");
    std::fs::write(dir.join("input.bin"), &input).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut store = Store::new(&engine, state(&dir, &[], BackendKind::Auto));
    let a = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
    let b = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
    assert_eq!(a.call_run(&mut store).unwrap(), Ok(()));
    let mm_a = store.data().pins.memory().unwrap().clone();
    assert_eq!(store.data().pins.held().files, 1);
    assert_eq!(b.call_run(&mut store).unwrap(), Ok(()), "b saw a's slot");
    let mm_b = store.data().pins.memory().unwrap().clone();
    assert!(!Arc::ptr_eq(&mm_a, &mm_b), "two instances, two memories");
    assert_eq!(store.data().pins.held().files, 2, "a's slot survived b's unregister");
    for mm in [&mm_a, &mm_b] {
        let mut got = [0u8; 16];
        mm.read(0x10000, &mut got).unwrap();
        assert_eq!(got, input[..16]);
    }
}

/// The bytes `one_call_direct` read; false if the filesystem refused
/// O_DIRECT (then nothing is checked).
fn check_one_call_direct(result: Result<(), String>, pins: &PinCtx, input: &[u8]) -> bool {
    if result == Err("opnotsupp".into()) {
        eprintln!(
            "skipped: the filesystem under {} refuses O_DIRECT",
            std::env::temp_dir().display()
        );
        return false;
    }
    assert_eq!(result, Ok(()));
    let mm = pins.memory().unwrap().clone();
    let bytes = |at: u64, n: usize| {
        let mut v = vec![0u8; n];
        mm.read(at, &mut v).unwrap();
        v
    };
    assert_eq!(bytes(0x10000, 0x10000), input[0x1000..0x11000], "read-into, direct");
    assert_eq!(
        bytes(0x30000, 0x10000),
        input[0x20000..0x30000],
        "read-into-fixed, direct"
    );
    assert_eq!(bytes(0x20003, 100), input[5..105], "read-into-fixed, buffered");
    // Nothing around them moved, and no refused read moved a byte.
    assert!(bytes(0xf000, 0x1000).iter().all(|&b| b == 0));
    assert!(bytes(0x20000, 3).iter().all(|&b| b == 0));
    assert!(bytes(0x20067, 0x1000).iter().all(|&b| b == 0));
    assert!(bytes(0x28000, 0x1000).iter().all(|&b| b == 0));
    assert_eq!(mm.stats().pins_outstanding(), 0);
    true
}

/// Issue 13.1/13.2: one-call reads on a direct file, by descriptor and by
/// registered slot: aligned reads move the bytes, a misaligned address,
/// length or offset is `inval` before any byte moves; sync and async.
#[test]
fn one_call_on_direct_files() {
    let input = pattern(0x40000);
    let make = |dir: &Path| state(dir, &[], BackendKind::Auto);
    run_sync_and_async("one_call_direct", "one-call-direct", &input, make, |_, r, pins| {
        check_one_call_direct(r, pins, &input)
    });
}

/// Issue 13.2: one-call transfers (pinned for the transfer only), in sync
/// and async stores, with bad ranges refused as pins refuse them.
#[test]
fn one_call_transfers_in_sync_and_async_stores() {
    let input = pattern(0x20000);
    let make = |dir: &Path| state(dir, &[], BackendKind::Auto);
    run_sync_and_async("one_call", "one-call", &input, make, |dir, r, pins| {
        assert_eq!(r, Ok(()));
        check_one_call(dir, &pins.memory().unwrap().clone(), &input);
        true
    });
}
