//! Direct I/O (issue 13.1): reading the 256 MiB input with `O_DIRECT`
//! (device → memory, no page-cache copy), 1 MiB per read.
//!
//! - `direct_read_256mib/qd1/*`: one read at a time: native `pread` on an
//!   `O_DIRECT` fd into a page-aligned host buffer, on 4 KiB pages and on
//!   transparent huge pages as guest memories are (the limits), vs a
//!   guest's `open-direct` descriptor and `read-at` into its pinned pages.
//! - `direct_read_256mib/qd8/*`: eight reads in flight: native io_uring on
//!   the `O_DIRECT` fd vs our io_uring backend on the `open-direct`
//!   descriptor (fixed buffers on a long-term pin).
//! - `cpu_256mib/*`: the **CPU time** (user + system, whole process:
//!   getrusage) of one 256 MiB read, not its wall time: our io_uring path
//!   on the direct descriptor vs on the ordinary (buffered, page cache warm)
//!   one, and native buffered `pread`. Criterion's "time" here is CPU time.

#[path = "support/io_common.rs"]
mod io_common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use host_api::bindings::wasm_pin::mm::gup::{GupFlags, Host as _, HostPinnedPages as _};
use host_api::bindings::wasm_pin::mm::zero_copy_io::Host as _;
use host_api::{BackendKind, MmHost, PinView};
use io_common::*;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::time::Duration;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;

const PAGES: u32 = (CHUNK / 4096) as u32;

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass and nothing else.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut u), 0);
        u
    };
    let d = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    d(u.ru_utime) + d(u.ru_stime)
}

/// Native io_uring, 8 reads of 1 MiB in flight on `fd` into `buf`.
fn native_uring_read_all(ring: &mut io_uring::IoUring, fd: i32, buf: *mut u8) {
    let (mut next, mut inflight) = (0usize, 0usize);
    while next < SIZE || inflight > 0 {
        while next < SIZE && inflight < 8 {
            let slot = (next / CHUNK) % 8;
            let e = io_uring::opcode::Read::new(io_uring::types::Fd(fd), buf.wrapping_add(slot * CHUNK), CHUNK as u32)
                .offset(next as u64)
                .build();
            // SAFETY: the buffer slot (8 MiB buffer, 1 MiB per slot) outlives
            // the read: the loop reaps every completion before returning, and
            // a slot is reused only after its previous read completed (reads
            // complete before `inflight` drops below 8 for that slot's turn).
            unsafe { ring.submission().push(&e).unwrap() };
            next += CHUNK;
            inflight += 1;
        }
        ring.submit_and_wait(1).unwrap();
        for cqe in ring.completion() {
            assert_eq!(cqe.result(), CHUNK as i32);
            inflight -= 1;
        }
    }
}

/// `path` as a WASI descriptor, and that descriptor reopened with
/// `open-direct`.
fn open_both(h: &mut MmHost, path: &std::path::Path) -> (Resource<Descriptor>, Resource<Descriptor>) {
    let plain = open(h, path);
    let direct = h.pins().open_direct(b(&plain)).unwrap().unwrap();
    (plain, direct)
}

fn direct(c: &mut Criterion) {
    let path = input();
    let mut g = c.benchmark_group("direct_read_256mib");
    g.throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let native = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("O_DIRECT on the temp dir's filesystem");
    let mut buf = AlignedBuf::new(8 * CHUNK);
    let buf = buf.as_mut_slice();
    g.bench_function("qd1/native_odirect_pread", |bch| {
        bch.iter(|| {
            for off in (0..SIZE).step_by(CHUNK) {
                assert_eq!(native.read_at(&mut buf[..CHUNK], off as u64).unwrap(), CHUNK);
            }
        })
    });

    // Guest memories sit on transparent huge pages (`MmConfig::huge_pages`),
    // which lets one 1 MiB direct read be a few large segments instead of
    // 256 small ones: the native limit gets the same backing.
    let mut huge = AlignedBuf::with_align(8 * CHUNK, 2 << 20);
    let huge = huge.as_mut_slice();
    // SAFETY: advice on our own live, 2 MiB-aligned allocation; it changes
    // no contents.
    assert_eq!(
        unsafe { libc::madvise(huge.as_mut_ptr().cast(), huge.len(), libc::MADV_HUGEPAGE) },
        0
    );
    huge.fill(1);
    g.bench_function("qd1/native_odirect_pread_thp", |bch| {
        bch.iter(|| {
            for off in (0..SIZE).step_by(CHUNK) {
                assert_eq!(native.read_at(&mut huge[..CHUNK], off as u64).unwrap(), CHUNK);
            }
        })
    });

    let (mut h, _mm) = host(BackendKind::Threads);
    let (_plain, f) = open_both(&mut h, &path);
    g.bench_function("qd1/zero_copy_open_direct_read_at", |bch| {
        bch.iter(|| {
            for off in (0..SIZE).step_by(CHUNK) {
                let mut v = h.pins();
                let pin = v.pin_user_pages_fast(DEST, PAGES, GupFlags::WRITE).unwrap().unwrap();
                assert_eq!(
                    v.read_at_sync(&f, &pin, 0, CHUNK as u32, off as u64).unwrap() as usize,
                    CHUNK
                );
                v.unpin(pin, true).unwrap();
            }
        })
    });
    drop(h);

    let mut ring = io_uring::IoUring::new(16).unwrap();
    let ptr = buf.as_mut_ptr();
    g.bench_function("qd8/native_odirect_io_uring", |bch| {
        bch.iter(|| native_uring_read_all(&mut ring, native.as_raw_fd(), ptr))
    });
    let huge_ptr = huge.as_mut_ptr();
    g.bench_function("qd8/native_odirect_io_uring_thp", |bch| {
        bch.iter(|| native_uring_read_all(&mut ring, native.as_raw_fd(), huge_ptr))
    });
    let (mut h, _mm) = host(BackendKind::IoUring);
    if h.io_backend().is_ok() {
        let (_plain, f) = open_both(&mut h, &path);
        let region = pin_region(&mut h);
        g.bench_function("qd8/zero_copy_open_direct_io_uring", |bch| {
            bch.iter(|| async_read_all(&mut h, &f, &region))
        });
        h.pins().unpin(region, true).unwrap();
    }
    drop(h);
    g.finish();

    let mut g = c.benchmark_group("cpu_256mib");
    g.throughput(Throughput::Bytes(SIZE as u64)).sample_size(10);
    let (mut h, _mm) = host(BackendKind::IoUring);
    if h.io_backend().is_ok() {
        let (plain, f) = open_both(&mut h, &path);
        let region = pin_region(&mut h);
        for (name, fd) in [("zero_copy_direct_qd8", &f), ("zero_copy_buffered_qd8", &plain)] {
            g.bench_function(name, |bch| {
                bch.iter_custom(|iters| {
                    let t0 = cpu_time();
                    for _ in 0..iters {
                        async_read_all(&mut h, fd, &region);
                    }
                    cpu_time() - t0
                })
            });
        }
        h.pins().unpin(region, true).unwrap();
    }
    drop(h);
    let buffered = std::fs::File::open(&path).unwrap();
    g.bench_function("native_buffered_pread", |bch| {
        bch.iter_custom(|iters| {
            let t0 = cpu_time();
            for _ in 0..iters {
                for off in (0..SIZE).step_by(CHUNK) {
                    assert_eq!(buffered.read_at(&mut buf[..CHUNK], off as u64).unwrap(), CHUNK);
                }
            }
            cpu_time() - t0
        })
    });
    g.finish();
}

criterion_group!(benches, direct);
criterion_main!(benches);
