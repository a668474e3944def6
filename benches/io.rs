//! Zero-copy I/O benchmark (issue: benchmarks, part c): read a 256 MiB file
//! (page cache warm) into a 256 MiB region, 1 MiB per transfer, via
//! (i) native `pread` into a host `Vec` (the limit), (ii) our zero-copy sync
//! `read-at` into pinned guest pages, (iii) our io_uring path (8 reads in
//! flight on a registered long-term pin) and the same on the thread backend
//! (its shared workers), (iv) a guest calling wasmtime-wasi's
//! preview1 `fd_read` (the peer), (v) `pread` into a host buffer, then a copy
//! into guest memory, (vi) a guest reading through WASI p2's
//! `input-stream.blocking-read` (the other peer). Native `O_DIRECT`, the
//! other limit, is in `direct_io.rs`.

#[path = "support/io_common.rs"]
mod io_common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use host_api::bindings::wasm_pin::mm::gup::{GupFlags, Host as _, HostPinnedPages as _};
use host_api::{BackendKind, PinView};
use io_common::*;
use std::os::unix::fs::FileExt;
use std::time::Duration;

fn read_256mib(c: &mut Criterion) {
    let path = input();
    let dir = path.parent().unwrap().to_path_buf();
    let mut g = c.benchmark_group("read_256mib");
    g.throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));

    let file = std::fs::File::open(&path).unwrap();
    // Page-aligned like guest pages: a plain `vec!` buffer starts 16 bytes
    // into its mapping, and the kernel's copy into a misaligned destination
    // measured 2-3x slower here, which would flatter the zero-copy paths.
    let mut vec = AlignedBuf::new(SIZE);
    let vec = vec.as_mut_slice();
    g.bench_function("native_pread_vec", |bch| {
        bch.iter(|| {
            for off in (0..SIZE).step_by(CHUNK) {
                assert_eq!(file.read_at(&mut vec[off..off + CHUNK], off as u64).unwrap(), CHUNK);
            }
        })
    });

    // (ii) the guest pins each MiB of its region and reads into it.
    let (mut h, _mm) = host(BackendKind::Threads);
    let f = open(&mut h, &path);
    g.bench_function("zero_copy_sync_read_at", |bch| {
        bch.iter(|| {
            for off in (0..SIZE).step_by(CHUNK) {
                let mut v = h.pins();
                let pin = v
                    .pin_user_pages_fast(DEST + off as u64, (CHUNK / 4096) as u32, GupFlags::WRITE)
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    v.read_at_sync(&f, &pin, 0, CHUNK as u32, off as u64).unwrap() as usize,
                    CHUNK
                );
                v.unpin(pin, true).unwrap();
            }
        })
    });
    drop(h);

    // (iii) io_uring: one long-term pin of the region (a registered buffer),
    // 8 reads in flight.
    let (mut h, _mm) = host(BackendKind::IoUring);
    if h.io_backend().is_ok() {
        let f = open(&mut h, &path);
        let region = pin_region(&mut h);
        g.bench_function("zero_copy_io_uring_fixed", |bch| {
            bch.iter(|| async_read_all(&mut h, &f, &region))
        });
        assert_eq!(h.io_counts().fixed, h.io_counts().submitted);
        h.pins().unpin(region, true).unwrap();
    } else {
        println!("zero_copy_io_uring_fixed skipped: io_uring unavailable");
    }
    drop(h);

    // (iii-b) the thread backend, as where io_uring is refused: the same 8
    // reads in flight, run 2 at a time (`IoConfig::threads`) on the
    // process's shared workers.
    let (mut h, _mm) = host(BackendKind::Threads);
    let f = open(&mut h, &path);
    let region = pin_region(&mut h);
    g.bench_function("zero_copy_threads_backend", |bch| {
        bch.iter(|| async_read_all(&mut h, &f, &region))
    });
    h.pins().unpin(region, true).unwrap();
    drop(h);

    // (iv) the peer: wasmtime-wasi preview1 fd_read from a guest.
    {
        use wasmtime_wasi::p1::WasiP1Ctx;
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wasm_pin_guests::core_module("wasi_read_all").unwrap()).unwrap();
        let mut linker = wasmtime::Linker::<WasiP1Ctx>::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx).unwrap();
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        wasi.preopened_dir(&dir, ".", wasmtime_wasi::FsPerms::ReadWrite)
            .unwrap();
        let mut store = wasmtime::Store::new(&engine, wasi.build_p1());
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let read_all = instance.get_typed_func::<(), i64>(&mut store, "read_all").unwrap();
        g.bench_function("wasi_p1_fd_read", |bch| {
            bch.iter(|| assert_eq!(read_all.call(&mut store, ()).unwrap(), SIZE as i64))
        });
    }

    // (vi) the peer a WASI program uses today: p2 `input-stream.blocking-read`
    // (1 MiB per call, each a copy into guest memory).
    {
        let creator = runtime_mm::PinMemoryCreator::new();
        let mut config = wasmtime::Config::new();
        creator.install(&mut config);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let mut linker = wasmtime::component::Linker::<host_api::WasiPinHost>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        host_api::add_to_linker_sync(&mut linker).unwrap();
        let component =
            wasmtime::component::Component::new(&engine, wasm_pin_guests::component("bench_p2_stream_read").unwrap())
                .unwrap();
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        wasi.preopened_dir(&dir, ".", wasmtime_wasi::FsPerms::ReadWrite)
            .unwrap();
        let state = host_api::WasiPinHost::new(wasi.build(), host_api::PinCtx::default());
        let mut store = wasmtime::Store::new(&engine, state);
        let guest = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
        g.bench_function("wasi_p2_input_stream", |bch| {
            bch.iter(|| guest.call_run(&mut store).unwrap().unwrap())
        });
    }

    // (v) pread into a host buffer, then copy into guest memory.
    let (_h, mm) = host(BackendKind::Threads);
    let mut staging = AlignedBuf::new(CHUNK);
    let staging = staging.as_mut_slice();
    g.bench_function("pread_then_copy", |bch| {
        bch.iter(|| {
            for off in (0..SIZE).step_by(CHUNK) {
                assert_eq!(file.read_at(staging, off as u64).unwrap(), CHUNK);
                mm.write(DEST + off as u64, staging).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, read_256mib);
criterion_main!(benches);
