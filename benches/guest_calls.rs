//! Guest→host call cost (issue: benchmarks, part d; issue 12.4): a component
//! guest pins and unpins a 64 KiB buffer through the WIT imports
//! (`pin-user-pages-fast`, then a handle drop), the same with the batched
//! imports (16 buffers per `pin-user-pages-fast-batch` and `unpin-batch`),
//! the same as one `pinned-vec` (`pin-user-pages-fast-vec`, `unpin-all`),
//! against the same guest loop calling the cheapest import. Each guest `run`
//! makes 10000 pin+unpin pairs (or empty calls); criterion reports per pair.
//!
//! `one_call/*` (issue 13.2): a WASI guest's one-call `read-into` of 64 KiB
//! (page cache warm), the same on a registered file (`read-into-fixed`), the
//! empty import in the same WASI store, and native
//! `pread` of the same 64 KiB into the same guest buffer (and into a host
//! buffer): the overhead of a one-call read is
//! `read_into_64k - native_pread_64k_into_guest_memory`, to compare with
//! `empty_import`. 10000 operations per iteration.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use host_api::{MmHost, PinCtx, Quotas};
use runtime_mm::PinMemoryCreator;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

fn guest_calls(c: &mut Criterion) {
    let creator = PinMemoryCreator::new();
    let mut config = wasmtime::Config::new();
    creator.install(&mut config);
    // These guests are synchronous: skip component-model-async's per-call
    // host-task bookkeeping (measured at ~55% of an import call's cost).
    config.concurrency_support(false);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let mut linker = wasmtime::component::Linker::new(&engine);
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut g = c.benchmark_group("guest_call");
    g.throughput(Throughput::Elements(10_000));
    for (name, guest) in [
        ("pin_unpin_64k", "bench_pin_loop"),
        ("pin_unpin_64k_batched_16", "bench_pin_batch"),
        ("pin_unpin_64k_vec_16", "bench_pin_vec"),
        ("empty_import", "bench_empty_loop"),
    ] {
        let component =
            wasmtime::component::Component::new(&engine, wasm_pin_guests::component(guest).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, MmHost::new(Quotas::default()));
        let instance = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
        g.bench_function(name, |b| b.iter(|| instance.call_run(&mut store).unwrap().unwrap()));
    }
    g.finish();
}

fn one_call(c: &mut Criterion) {
    let dir = std::env::temp_dir().join("wasm-pin-bench-one-call");
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<u8> = (0..1u32 << 16).map(|i| (i * 7) as u8).collect();
    std::fs::write(dir.join("input.bin"), &data).unwrap();
    let creator = PinMemoryCreator::new();
    let mut config = wasmtime::Config::new();
    creator.install(&mut config);
    config.concurrency_support(false);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let mut linker = wasmtime::component::Linker::<host_api::WasiPinHost>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut g = c.benchmark_group("one_call");
    g.throughput(Throughput::Elements(10_000));
    for (name, guest) in [
        ("read_into_64k", "bench_read_into"),
        ("read_into_fixed_64k", "bench_read_into_fixed"),
        ("empty_import", "bench_empty_loop"),
    ] {
        let component =
            wasmtime::component::Component::new(&engine, wasm_pin_guests::component(guest).unwrap()).unwrap();
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        wasi.preopened_dir(&dir, ".", wasmtime_wasi::FsPerms::ReadWrite)
            .unwrap();
        let state = host_api::WasiPinHost::new(wasi.build(), PinCtx::new(Quotas::default()));
        let mut store = wasmtime::Store::new(&engine, state);
        let instance = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
        g.bench_function(name, |b| b.iter(|| instance.call_run(&mut store).unwrap().unwrap()));
        // The `pread` itself, native, into the very guest buffer (the guest
        // ran above, unless a filter skipped it).
        if let (true, Some(mm)) = (guest == "bench_read_into", store.data().pins.memory().cloned()) {
            let file = std::fs::File::open(dir.join("input.bin")).unwrap();
            let dst = mm.base().wrapping_add(0x10000);
            g.bench_function("native_pread_64k_into_guest_memory", |b| {
                b.iter(|| {
                    for _ in 0..10_000 {
                        // SAFETY: [0x10000, 0x20000) lies inside the guest's
                        // 128 KiB memory, which `mm` keeps mapped; the guest
                        // does not run meanwhile. Raw pointer + length.
                        let n = unsafe { libc::pread(file.as_raw_fd(), dst.cast(), 1 << 16, 0) };
                        assert_eq!(n, 1 << 16);
                    }
                })
            });
        }
    }
    // The same reads, native, into a page-aligned host buffer.
    let file = std::fs::File::open(dir.join("input.bin")).unwrap();
    let layout = std::alloc::Layout::from_size_align(1 << 16, 4096).unwrap();
    // SAFETY: non-zero size; freed below with the same layout.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!buf.is_null());
    // SAFETY: `buf` is a live allocation of 64 KiB that only this slice uses.
    let slice = unsafe { std::slice::from_raw_parts_mut(buf, 1 << 16) };
    g.bench_function("native_pread_64k", |b| {
        b.iter(|| {
            for _ in 0..10_000 {
                assert_eq!(file.read_at(slice, 0).unwrap(), 1 << 16);
            }
        })
    });
    // SAFETY: allocated above with `layout`; `slice` is no longer used.
    unsafe { std::alloc::dealloc(buf, layout) };
    g.finish();
}

criterion_group!(benches, guest_calls, one_call);
criterion_main!(benches);
