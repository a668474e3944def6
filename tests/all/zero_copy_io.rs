//! Zero-copy I/O on WASI descriptors: data integrity on every path (sync,
//! vectored, io_uring, worker threads, sockets), short reads, errors and
//! permissions, full queues, and I/O in flight when the guest traps or its
//! store is dropped.
//!
//! Most tests call the host functions directly on a `PinCtxView` (as the
//! generated bindings do for a guest), with WASI descriptors made the way
//! wasmtime-wasi makes them; the async ones are driven by tokio, as an async
//! store drives them. Guests run in `guest_imports.rs`, `wasi_embed.rs` and at the end of
//! this file.

use host_api::bindings::wasm_pin::mm::gup::{GupFlags, Host as _, HostPinnedPages as _};
use host_api::bindings::wasm_pin::mm::zero_copy_io::{Errno, Host as _, HostIoTicket, IoSlice};
use host_api::bindings::wasm_pin::mm::zero_copy_net::{HostTcpListener as _, HostTcpStream as _};
use host_api::{fnv1a, BackendKind, GuestPin, IoConfig, MmHost, PinCtx, PinView, Quotas};
use runtime_mm::{Mm, MmConfig, PinMemoryCreator};
use std::future::Future;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, File};
use wasmtime_wasi::{FsPerms, OpenMode};

use crate::support::backends;

use backends::backends;

const PAGE: u64 = 4096;

fn b<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

/// Drives an async import to completion, as an async store does.
fn block<F: Future>(f: F) -> F::Output {
    wasmtime_wasi::runtime::in_tokio(f)
}

fn tmpdir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "wasm-pin-io-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Fx {
    host: MmHost,
    mm: Arc<Mm>,
    dir: PathBuf,
}

fn fx_with(backend: BackendKind, depth: u32, threads: usize) -> Fx {
    let dir = tmpdir();
    let mm = Mm::new(MmConfig {
        initial_bytes: 16 << 20,
        ..Default::default()
    })
    .unwrap();
    let io = IoConfig {
        backend,
        queue_depth: depth,
        threads,
        ..Default::default()
    };
    let mut host = MmHost::from(PinCtx::new(Quotas::default()).with_io(io).inherit_network());
    host.attach(mm.clone());
    Fx { host, mm, dir }
}

fn fx(backend: BackendKind) -> Fx {
    fx_with(backend, 64, 2)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// How a test opens a file (what a guest asks `open-at` for).
#[derive(Clone, Copy)]
struct Open {
    read: bool,
    write: bool,
    create: bool,
}

const R: Open = Open {
    read: true,
    write: false,
    create: false,
};
const W: Open = Open {
    read: false,
    write: true,
    create: true,
};
const RW: Open = Open {
    read: true,
    write: true,
    create: true,
};

impl Fx {
    fn pin(&mut self, start: u64, pages: u32, flags: GupFlags) -> Resource<GuestPin> {
        self.host.pins().pin_user_pages(start, pages, flags).unwrap().unwrap()
    }
    fn pin_lt(&mut self, start: u64, pages: u32) -> Resource<GuestPin> {
        self.host
            .pins()
            .pin_longterm_pages(start, pages, GupFlags::WRITE)
            .unwrap()
            .unwrap()
    }
    /// A WASI descriptor for `path`, as wasmtime-wasi's `open-at` makes one
    /// under a read-write preopen.
    fn open(&mut self, path: &str, how: Open) -> Resource<Descriptor> {
        descriptor(&mut self.host, &self.dir.join(path), how, FsPerms::ReadWrite)
    }
    fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mm.read(addr, &mut v).unwrap();
        v
    }
    /// After the host is gone nothing may stay pinned, locked or in flight.
    fn assert_clean_after_drop(self) {
        let Fx { host, mm, .. } = self;
        drop(host);
        let s = mm.stats();
        assert_eq!(
            (s.pins_outstanding(), s.longterm_pinned_pages, s.locked_bytes),
            (0, 0, 0),
            "{s:?}"
        );
    }
}

fn descriptor(host: &mut MmHost, path: &std::path::Path, how: Open, perms: FsPerms) -> Resource<Descriptor> {
    let file = std::fs::OpenOptions::new()
        .read(how.read)
        .write(how.write)
        .create(how.create)
        .open(path)
        .unwrap();
    let mut mode = OpenMode::empty();
    mode.set(OpenMode::READ, how.read);
    mode.set(OpenMode::WRITE, how.write);
    host.table
        .push(Descriptor::File(File::new(file, perms, mode, false)))
        .unwrap()
}

#[test]
fn sync_read_and_write_move_the_guest_bytes() {
    let mut f = fx(BackendKind::Auto);
    let data = pattern(3 * PAGE as usize + 100, 1);
    f.mm.write(0x10000, &data).unwrap();
    let src = f.pin(0x10000, 4, GupFlags::empty());
    let file = f.open("out.bin", W);
    let n = block(f.host.pins().write_at(b(&file), b(&src), 0, data.len() as u32, 0))
        .unwrap()
        .unwrap();
    assert_eq!(n as usize, data.len());
    assert_eq!(std::fs::read(f.dir.join("out.bin")).unwrap(), data);
    // Read it back into another buffer (a write pin), at an offset in both.
    let dst = f.pin(0x40000, 4, GupFlags::WRITE);
    let file = f.open("out.bin", R);
    let n = block(f.host.pins().read_at(b(&file), b(&dst), 10, 1000, 50))
        .unwrap()
        .unwrap();
    assert_eq!(n, 1000);
    assert_eq!(f.bytes(0x40000 + 10, 1000), &data[50..1050]);
    assert_eq!(fnv1a(&f.bytes(0x40000 + 10, 1000)), fnv1a(&data[50..1050]));
    f.assert_clean_after_drop();
}

#[test]
fn short_reads_and_eof() {
    let mut f = fx(BackendKind::Auto);
    std::fs::write(f.dir.join("small.bin"), pattern(5000, 2)).unwrap();
    let buf = f.pin(0, 4, GupFlags::WRITE);
    let file = f.open("small.bin", R);
    assert_eq!(
        block(f.host.pins().read_at(b(&file), b(&buf), 0, 8192, 0)).unwrap(),
        Ok(5000)
    );
    assert_eq!(
        block(f.host.pins().read_at(b(&file), b(&buf), 0, 8192, 5000)).unwrap(),
        Ok(0)
    );
    assert_eq!(
        block(f.host.pins().read_at(b(&file), b(&buf), 0, 8192, 1 << 40)).unwrap(),
        Ok(0)
    );
    // Async too.
    let t = f
        .host
        .pins()
        .submit_read_at(b(&file), b(&buf), 0, 8192, 4000)
        .unwrap()
        .unwrap();
    assert_eq!(block(f.host.pins().wait(b(&t), 10_000)).unwrap(), Some(Ok(1000)));
    HostIoTicket::drop(&mut f.host.pins(), t).unwrap();
    f.assert_clean_after_drop();
}

#[test]
fn vectored_transfers_follow_the_slices() {
    let mut f = fx(BackendKind::Auto);
    let data = pattern(3000, 3);
    f.mm.write(0x1000, &data[..1000]).unwrap();
    f.mm.write(0x5000 + 100, &data[1000..]).unwrap();
    let p1 = f.pin(0x1000, 1, GupFlags::empty());
    let p2 = f.pin(0x5000, 1, GupFlags::WRITE);
    let file = f.open("v.bin", RW);
    let slices = vec![
        IoSlice {
            buf: b(&p1),
            offset: 0,
            len: 1000,
        },
        IoSlice {
            buf: b(&p2),
            offset: 100,
            len: 2000,
        },
    ];
    assert_eq!(
        block(f.host.pins().write_at_vectored(b(&file), slices, 7)).unwrap(),
        Ok(3000)
    );
    let on_disk = std::fs::read(f.dir.join("v.bin")).unwrap();
    assert_eq!(&on_disk[7..], &data[..]);
    // Read back into three slices of write pins.
    let d1 = f.pin(0x10000, 1, GupFlags::WRITE);
    let d2 = f.pin(0x20000, 1, GupFlags::WRITE);
    let slices = vec![
        IoSlice {
            buf: b(&d1),
            offset: 0,
            len: 10,
        },
        IoSlice {
            buf: b(&d2),
            offset: 4000,
            len: 96,
        },
        IoSlice {
            buf: b(&d1),
            offset: 2000,
            len: 2094,
        },
    ];
    assert_eq!(
        block(f.host.pins().read_at_vectored(b(&file), slices, 7)).unwrap(),
        Ok(2200)
    );
    assert_eq!(f.bytes(0x10000, 10), &data[..10]);
    assert_eq!(f.bytes(0x20000 + 4000, 96), &data[10..106]);
    assert_eq!(f.bytes(0x10000 + 2000, 2094), &data[106..2200]);
    // A slice of a read-only pin cannot be read into; one past its pin faults.
    let bad = vec![IoSlice {
        buf: b(&p1),
        offset: 0,
        len: 10,
    }];
    assert_eq!(
        block(f.host.pins().read_at_vectored(b(&file), bad, 0)).unwrap(),
        Err(Errno::Perm)
    );
    let bad = vec![IoSlice {
        buf: b(&d1),
        offset: 4000,
        len: 200,
    }];
    assert_eq!(
        block(f.host.pins().read_at_vectored(b(&file), bad, 0)).unwrap(),
        Err(Errno::Fault)
    );
    f.assert_clean_after_drop();
}

/// Streams a 4 MiB file through 8 long-term pinned 64 KiB buffers with all
/// reads in flight at once, then writes a copy asynchronously.
fn async_stream(backend: BackendKind) {
    let mut f = fx(backend);
    assert_eq!(f.host.io_backend().unwrap(), backend);
    let data = pattern(4 << 20, 4);
    std::fs::write(f.dir.join("in.bin"), &data).unwrap();
    let input = f.open("in.bin", R);
    let output = f.open("copy.bin", W);
    const CHUNK: u32 = 64 << 10;
    let bufs: Vec<_> = (0..8)
        .map(|i| f.pin_lt(0x100000 + i * CHUNK as u64, CHUNK / PAGE as u32))
        .collect();
    let mut hash = 0x811c_9dc5u32;
    for round in 0..(data.len() as u32 / CHUNK / 8) {
        let tickets: Vec<_> = bufs
            .iter()
            .enumerate()
            .map(|(i, buf)| {
                let at = ((round * 8 + i as u32) * CHUNK) as u64;
                f.host
                    .pins()
                    .submit_read_at(b(&input), b(buf), 0, CHUNK, at)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        for (i, t) in tickets.into_iter().enumerate() {
            assert_eq!(block(f.host.pins().wait(b(&t), 10_000)).unwrap(), Some(Ok(CHUNK)));
            assert_eq!(f.host.pins().poll(b(&t)).unwrap(), Some(Ok(CHUNK)));
            HostIoTicket::drop(&mut f.host.pins(), t).unwrap();
            hash = f.host.pins().checksum(b(&bufs[i]), 0, CHUNK, hash).unwrap().unwrap();
            let at = ((round * 8 + i as u32) * CHUNK) as u64;
            let w = f
                .host
                .pins()
                .submit_write_at(b(&output), b(&bufs[i]), 0, CHUNK, at)
                .unwrap()
                .unwrap();
            assert_eq!(block(f.host.pins().wait(b(&w), 10_000)).unwrap(), Some(Ok(CHUNK)));
            HostIoTicket::drop(&mut f.host.pins(), w).unwrap();
        }
    }
    assert_eq!(hash, fnv1a(&data), "hash through the pins");
    assert_eq!(
        fnv1a(&std::fs::read(f.dir.join("copy.bin")).unwrap()),
        fnv1a(&data),
        "copy"
    );
    assert_eq!(f.host.io_in_flight(), 0);
    let counts = f.host.io_counts();
    assert_eq!(counts.submitted, 2 * (data.len() as u64 / CHUNK as u64));
    if backend == BackendKind::IoUring {
        assert_eq!(
            counts.fixed, counts.submitted,
            "long-term pins go through fixed buffers"
        );
    } else {
        assert_eq!(counts.fixed, 0);
    }
    for buf in bufs {
        f.host.pins().unpin(buf, true).unwrap();
    }
    assert_eq!(f.mm.stats().locked_bytes, 0);
    f.assert_clean_after_drop();
}

#[test]
fn async_reads_and_writes_stream_with_integrity() {
    for backend in backends() {
        async_stream(backend);
    }
}

/// The guest drops its buffer handle while a read into it is in flight: the
/// read still lands, and the pin goes when it completes.
fn buffer_outlives_its_handle(backend: BackendKind) {
    let mut f = fx(backend);
    let data = pattern(1 << 20, 5);
    std::fs::write(f.dir.join("in.bin"), &data).unwrap();
    let input = f.open("in.bin", R);
    let buf = f.pin_lt(0x200000, 256);
    let t = f
        .host
        .pins()
        .submit_read_at(b(&input), b(&buf), 0, 1 << 20, 0)
        .unwrap()
        .unwrap();
    f.host.pins().unpin(buf, false).unwrap();
    assert_eq!(f.host.usage().0, 0, "the guest no longer holds the pin");
    assert_eq!(block(f.host.pins().wait(b(&t), 10_000)).unwrap(), Some(Ok(1 << 20)));
    assert_eq!(fnv1a(&f.bytes(0x200000, 1 << 20)), fnv1a(&data));
    // Completion is reported after the transfer dropped its pin.
    assert!(!f.mm.page_maybe_dma_pinned(0x200000));
    assert_eq!(f.mm.stats().locked_bytes, 0);
    HostIoTicket::drop(&mut f.host.pins(), t).unwrap();
    f.assert_clean_after_drop();
}

/// #22 (found by the soak): dropping an unfinished ticket returns only
/// once the kernel has let go of the buffer, so nothing lands in it after
/// the drop: a 12 MiB read (a worker's `pread`, or io_uring's, which a
/// cancel may not stop) is dropped at once, then the guest writes its own
/// bytes at the end of the buffer, where a read still running would land
/// last; they survive.
fn a_dropped_ticket_lands_nothing_after_the_drop(backend: BackendKind) {
    const LEN: usize = 12 << 20;
    let mut f = fx(backend);
    std::fs::write(f.dir.join("big.bin"), pattern(LEN, 9)).unwrap();
    let input = f.open("big.bin", R);
    let buf = f.pin(0, (LEN as u64 / PAGE) as u32, GupFlags::WRITE);
    for round in 0..4 {
        let t = f
            .host
            .pins()
            .submit_read_at(b(&input), b(&buf), 0, LEN as u32, 0)
            .unwrap()
            .unwrap();
        HostIoTicket::drop(&mut f.host.pins(), t).unwrap();
        assert_eq!(
            f.host.io_in_flight(),
            0,
            "{backend:?} round {round}: still in the kernel"
        );
        let mine = [round as u8 ^ 0x5a; PAGE as usize];
        f.mm.write(LEN as u64 - PAGE, &mine).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(
            f.bytes(LEN as u64 - PAGE, PAGE as usize),
            mine,
            "{backend:?} round {round}"
        );
    }
    f.host.pins().unpin(buf, false).unwrap();
    f.assert_clean_after_drop();
}

#[test]
fn dropped_tickets_land_nothing_after_the_drop() {
    for backend in backends() {
        a_dropped_ticket_lands_nothing_after_the_drop(backend);
    }
}

#[test]
fn the_buffer_stays_pinned_while_in_flight() {
    for backend in backends() {
        buffer_outlives_its_handle(backend);
    }
}

#[test]
fn errors_map_to_errno() {
    let mut f = fx(BackendKind::Auto);
    std::fs::write(f.dir.join("ro.bin"), b"abc").unwrap();
    let ro = f.pin(0, 1, GupFlags::empty());
    let rw = f.pin(PAGE, 1, GupFlags::WRITE);
    let file = f.open("ro.bin", R);
    // Reading into a pin taken without `write` is refused.
    assert_eq!(
        block(f.host.pins().read_at(b(&file), b(&ro), 0, 3, 0)).unwrap(),
        Err(Errno::Perm)
    );
    assert_eq!(
        f.host
            .pins()
            .submit_read_at(b(&file), b(&ro), 0, 3, 0)
            .unwrap()
            .unwrap_err(),
        Errno::Perm
    );
    // Ranges past the pin (the descriptor is checked first, as the kernel
    // checks the fd before the buffer).
    let both = f.open("ro.bin", RW);
    assert_eq!(
        block(f.host.pins().read_at(b(&both), b(&rw), 4000, 200, 0)).unwrap(),
        Err(Errno::Fault)
    );
    assert_eq!(
        block(f.host.pins().write_at(b(&both), b(&rw), u32::MAX, 2, 0)).unwrap(),
        Err(Errno::Fault)
    );
    f.assert_clean_after_drop();
}

/// The descriptor's own open mode and its preopen's permissions apply: a
/// transfer out of a pin needs a writable descriptor, into one a readable
/// descriptor (`badf`, as `pread`/`pwrite` on such an fd), a directory is
/// `isdir`, and a dead descriptor handle is `badf`, not a trap.
#[test]
fn the_descriptor_permissions_apply() {
    let mut f = fx(BackendKind::Auto);
    std::fs::write(f.dir.join("x.bin"), pattern(PAGE as usize, 3)).unwrap();
    let rw = f.pin(0, 1, GupFlags::WRITE);
    let read_only = f.open("x.bin", R);
    let write_only = f.open("x.bin", W);
    let v = |h: &mut MmHost, fd: &Resource<Descriptor>, read: bool| {
        let mut p = h.pins();
        if read {
            block(p.read_at(b(fd), b(&rw), 0, 16, 0)).unwrap()
        } else {
            block(p.write_at(b(fd), b(&rw), 0, 16, 0)).unwrap()
        }
    };
    assert_eq!(v(&mut f.host, &read_only, false), Err(Errno::Badf));
    assert_eq!(v(&mut f.host, &write_only, true), Err(Errno::Badf));
    assert_eq!(v(&mut f.host, &read_only, true), Ok(16));
    assert_eq!(v(&mut f.host, &write_only, false), Ok(16));
    assert_eq!(
        f.host
            .pins()
            .submit_write_at(b(&read_only), b(&rw), 0, 16, 0)
            .unwrap()
            .unwrap_err(),
        Errno::Badf
    );
    let slices = vec![IoSlice {
        buf: b(&rw),
        offset: 0,
        len: 16,
    }];
    assert_eq!(
        block(f.host.pins().write_at_vectored(b(&read_only), slices, 0)).unwrap(),
        Err(Errno::Badf)
    );
    // A writable descriptor under a read-only preopen: still no writes.
    let ro_preopen = descriptor(&mut f.host, &f.dir.join("x.bin"), RW, FsPerms::ReadOnly);
    assert_eq!(v(&mut f.host, &ro_preopen, false), Err(Errno::Badf));
    // A directory.
    let dir = std::fs::File::open(&f.dir).unwrap();
    let d = f
        .host
        .table
        .push(Descriptor::Dir(wasmtime_wasi::filesystem::Dir::new(
            dir,
            FsPerms::ReadWrite,
            OpenMode::READ,
            false,
        )))
        .unwrap();
    assert_eq!(v(&mut f.host, &d, true), Err(Errno::Isdir));
    // A dead handle.
    let dead = Resource::<Descriptor>::new_borrow(9999);
    assert_eq!(v(&mut f.host, &dead, true), Err(Errno::Badf));
    f.assert_clean_after_drop();
}

fn loopback(port: u16) -> host_api::bindings::wasi::sockets::network::IpSocketAddress {
    std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()
}

#[test]
fn tcp_send_and_recv_use_pinned_buffers() {
    let mut f = fx(BackendKind::Auto);
    let data = pattern(3 * PAGE as usize, 6);
    f.mm.write(0, &data).unwrap();
    let src = f.pin(0, 3, GupFlags::empty());
    let dst = f.pin(0x10000, 3, GupFlags::WRITE);
    // Host listener, test-side peer.
    let l = block(f.host.pins().bind(loopback(0))).unwrap().unwrap();
    let port = match f.host.pins().local_address(b(&l)).unwrap().unwrap() {
        host_api::bindings::wasi::sockets::network::IpSocketAddress::Ipv4(a) => a.port,
        other => panic!("{other:?}"),
    };
    // Nobody connects yet: accept times out instead of blocking.
    assert_eq!(
        block(f.host.pins().accept(b(&l), 0)).unwrap().unwrap_err(),
        Errno::Timedout
    );
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut got = vec![0; 3 * PAGE as usize];
        s.read_exact(&mut got).unwrap();
        s.write_all(&got).unwrap(); // echo
        got
    });
    let s = block(f.host.pins().accept(b(&l), 10_000)).unwrap().unwrap();
    let mut sent = 0;
    while sent < data.len() as u32 {
        sent += block(
            f.host
                .pins()
                .send(b(&s), b(&src), sent, data.len() as u32 - sent, 10_000),
        )
        .unwrap()
        .unwrap();
    }
    let mut got = 0;
    while got < data.len() as u32 {
        let n = block(f.host.pins().recv(b(&s), b(&dst), got, data.len() as u32 - got, 10_000))
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got += n;
    }
    assert_eq!(fnv1a(&peer.join().unwrap()), fnv1a(&data));
    assert_eq!(fnv1a(&f.bytes(0x10000, data.len())), fnv1a(&data));
    // recv into a read-only pin is refused; a closed peer reads as 0.
    assert_eq!(
        block(f.host.pins().recv(b(&s), b(&src), 0, 10, 1000)).unwrap(),
        Err(Errno::Perm)
    );
    assert_eq!(block(f.host.pins().recv(b(&s), b(&dst), 0, 10, 10_000)).unwrap(), Ok(0));
    // Host connects to a test-side listener; a silent peer times out.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sport = server.local_addr().unwrap().port();
    let c = block(f.host.pins().connect(loopback(sport), 10_000)).unwrap().unwrap();
    let (mut peer, _) = server.accept().unwrap();
    assert_eq!(
        block(f.host.pins().recv(b(&c), b(&dst), 0, 5, 50)).unwrap(),
        Err(Errno::Timedout)
    );
    peer.write_all(b"hello").unwrap();
    assert_eq!(block(f.host.pins().recv(b(&c), b(&dst), 0, 5, 10_000)).unwrap(), Ok(5));
    assert_eq!(f.bytes(0x10000, 5), b"hello");
    drop(server);
    assert_eq!(
        block(f.host.pins().connect(loopback(sport), 10_000))
            .unwrap()
            .unwrap_err(),
        Errno::Connrefused
    );
    f.assert_clean_after_drop();
}

/// #19.5: a file offset past `i64::MAX` is `inval` on every backend and
/// import (io_uring would take `u64::MAX`, i.e. -1, as "the current file
/// position" and read from there), and nothing is transferred or pinned.
#[test]
fn offsets_past_i64_max_are_inval_everywhere() {
    for backend in backends() {
        let mut f = fx(backend);
        std::fs::write(f.dir.join("f.bin"), pattern(8192, 3)).unwrap();
        let file = f.open("f.bin", RW);
        let buf = f.pin(0, 2, GupFlags::WRITE);
        for at in [u64::MAX, i64::MAX as u64 + 1] {
            let mut pins = f.host.pins();
            assert_eq!(
                block(pins.read_at(b(&file), b(&buf), 0, 16, at)).unwrap(),
                Err(Errno::Inval)
            );
            assert_eq!(
                block(pins.write_at(b(&file), b(&buf), 0, 16, at)).unwrap(),
                Err(Errno::Inval)
            );
            let slice = || IoSlice {
                buf: b(&buf),
                offset: 0,
                len: 16,
            };
            assert_eq!(
                block(pins.read_at_vectored(b(&file), vec![slice()], at)).unwrap(),
                Err(Errno::Inval)
            );
            assert_eq!(
                block(pins.write_at_vectored(b(&file), vec![slice()], at)).unwrap(),
                Err(Errno::Inval)
            );
            assert_eq!(
                pins.submit_read_at(b(&file), b(&buf), 0, 16, at).unwrap().unwrap_err(),
                Errno::Inval
            );
            assert_eq!(
                pins.submit_write_at(b(&file), b(&buf), 0, 16, at).unwrap().unwrap_err(),
                Errno::Inval
            );
            assert_eq!(f.host.io_in_flight(), 0, "{backend:?}: nothing was submitted");
        }
        assert_eq!(f.bytes(0, 16), vec![0; 16], "{backend:?}: no byte moved");
        assert_eq!(std::fs::read(f.dir.join("f.bin")).unwrap(), pattern(8192, 3));
        f.assert_clean_after_drop();
    }
}

/// Sockets obey the embedder's address check, WASI's model: the default
/// denies everything; a check sees the address and its use.
#[test]
fn sockets_obey_the_address_check() {
    let mut denied = MmHost::new(Quotas::default());
    assert_eq!(
        block(denied.pins().bind(loopback(0))).unwrap().unwrap_err(),
        Errno::Acces
    );
    assert_eq!(
        block(denied.pins().connect(loopback(1), 100)).unwrap().unwrap_err(),
        Errno::Acces
    );
    assert_eq!(denied.held().sockets, 0);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let check: host_api::SocketAddrCheck = Arc::new(move |addr, use_| {
        log.lock().unwrap().push(format!("{use_:?}"));
        // Only port 7 may be connected to.
        let ok = !matches!(use_, wasmtime_wasi::sockets::SocketAddrUse::TcpConnect) || addr.port() == 7;
        Box::pin(async move { ok })
    });
    let mut host = MmHost::from(PinCtx::default().socket_addr_check(check));
    let l = block(host.pins().bind(loopback(0))).unwrap().unwrap();
    assert_eq!(
        block(host.pins().connect(loopback(9), 100)).unwrap().unwrap_err(),
        Errno::Acces
    );
    // A connect asks about its implicit bind first, as WASI's does.
    assert_eq!(*seen.lock().unwrap(), ["TcpBind", "TcpListen", "TcpBind", "TcpConnect"]);
    host_api::bindings::wasm_pin::mm::zero_copy_net::HostTcpListener::drop(&mut host.pins(), l).unwrap();
    assert_eq!(host.held().sockets, 0);
}

/// The thread backend's bounded queue (one busy worker, depth 1) answers
/// `again`, not a hang. The io_uring equivalent is deterministic in
/// `host-api`'s `io::uring` unit test (reads from an empty pipe).
#[test]
fn a_full_queue_is_again_not_a_hang() {
    let mut f = fx_with(BackendKind::Threads, 1, 1);
    std::fs::write(f.dir.join("big.bin"), pattern(8 << 20, 7)).unwrap();
    let file = f.open("big.bin", R);
    let buf = f.pin_lt(0x400000, 2048);
    let mut tickets = Vec::new();
    let mut again = false;
    for i in 0..10_000u64 {
        match f.host.pins().submit_read_at(b(&file), b(&buf), 0, 8 << 20, i).unwrap() {
            Ok(t) => tickets.push(t),
            Err(e) => {
                assert_eq!(e, Errno::Again);
                again = true;
                break;
            }
        }
    }
    assert!(again, "10000 submissions of 8 MiB never filled a queue of 1");
    for t in tickets {
        assert!(matches!(block(f.host.pins().wait(b(&t), 10_000)).unwrap(), Some(Ok(_))));
        HostIoTicket::drop(&mut f.host.pins(), t).unwrap();
    }
    f.assert_clean_after_drop();
}

#[test]
fn dropping_the_store_with_io_in_flight_releases_every_pin() {
    for backend in backends() {
        let mut f = fx_with(backend, 64, 2);
        let data = pattern(8 << 20, 8);
        std::fs::write(f.dir.join("big.bin"), &data).unwrap();
        // Guard bytes around the buffers must survive whatever happens.
        f.mm.write(0x7ff000, &[0xaa; 4096]).unwrap();
        let file = f.open("big.bin", R);
        let bufs: Vec<_> = (0..4).map(|i| f.pin_lt(0x800000 + i * (1 << 20), 256)).collect();
        let mut tickets = Vec::new();
        for i in 0..32u64 {
            let buf = &bufs[(i % 4) as usize];
            if let Ok(t) = f
                .host
                .pins()
                .submit_read_at(b(&file), b(buf), 0, 1 << 20, i << 18)
                .unwrap()
            {
                tickets.push(t);
            }
        }
        // Drop some tickets (cancel) and leave the rest; then drop everything.
        for t in tickets.drain(..8) {
            HostIoTicket::drop(&mut f.host.pins(), t).unwrap();
        }
        let mm = f.mm.clone();
        f.assert_clean_after_drop();
        let mut guard = [0u8; 4096];
        mm.read(0x7ff000, &mut guard).unwrap();
        assert!(
            guard.iter().all(|&b| b == 0xaa),
            "{backend:?}: I/O wrote outside its buffer"
        );
        let mut after = [0u8; 4096];
        mm.read(0xc00000, &mut after).unwrap();
        assert!(after.iter().all(|&b| b == 0), "{backend:?}: I/O wrote past its buffers");
    }
}

#[test]
fn a_guest_trap_with_io_in_flight_leaves_the_host_clean() {
    let dir = tmpdir();
    std::fs::write(dir.join("input.bin"), pattern(1 << 20, 9)).unwrap();
    let before = std::fs::read(dir.join("input.bin")).unwrap();
    let creator = PinMemoryCreator::new();
    let mut config = wasmtime::Config::new();
    creator.install(&mut config);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let component =
        wasmtime::component::Component::new(&engine, wasm_pin_guests::component("trap_with_io").unwrap()).unwrap();
    let mut linker = wasmtime::component::Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_api::add_to_linker_sync(&mut linker).unwrap();
    for backend in backends() {
        let mut wasi = wasmtime_wasi::WasiCtx::builder();
        wasi.preopened_dir(&dir, "/", FsPerms::ReadWrite).unwrap();
        let pins = PinCtx::default().with_io(IoConfig {
            backend,
            ..IoConfig::default()
        });
        let mut store = wasmtime::Store::new(&engine, host_api::WasiPinHost::new(wasi.build(), pins));
        let guest = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
        let err = guest.call_run(&mut store).expect_err("the guest traps");
        assert!(format!("{err:?}").contains("unreachable"), "{err:?}");
        let mm = store.data().pins.memory().expect("the guest pinned").clone();
        // Four reads were started; some may still be in flight (a race the
        // test does not need to win: the drop must be clean either way).
        assert_eq!(store.data().pins.io_counts().submitted, 4, "{backend:?}");
        drop(store);
        let s = mm.stats();
        assert_eq!((s.pins_outstanding(), s.locked_bytes), (0, 0), "{backend:?}: {s:?}");
    }
    assert_eq!(std::fs::read(dir.join("input.bin")).unwrap(), before);
}

/// Direct I/O: `open-direct` reopens a WASI file with `O_DIRECT`; aligned
/// transfers move the file's bytes, misaligned ones are `inval` before any
/// syscall, the access never grows, and the reopen counts against the file
/// quota while it lives.
#[test]
fn direct_io_reads_and_writes_aligned_and_refuses_misaligned() {
    let mut f = fx(BackendKind::Auto);
    let data = pattern(1 << 20, 11);
    std::fs::write(f.dir.join("d.bin"), &data).unwrap();
    let file = f.open("d.bin", RW);
    let direct = f.host.pins().open_direct(b(&file)).unwrap().unwrap();
    assert_eq!(f.host.held().files, 1);
    // Guard bytes around the buffer.
    f.mm.write(0x2f000, &[0xaa; 4096]).unwrap();
    f.mm.write(0x40000, &[0xbb; 4096]).unwrap();
    let buf = f.pin(0x30000, 16, GupFlags::WRITE);
    let n = block(f.host.pins().read_at(b(&direct), b(&buf), 0, 0x10000, 0x20000)).unwrap();
    assert_eq!(n, Ok(0x10000));
    assert_eq!(f.bytes(0x30000, 0x10000), &data[0x20000..0x30000]);
    assert_eq!(f.host.pins().read_at_sync(&direct, &buf, 4096, 8192, 4096), Ok(8192));
    assert_eq!(f.bytes(0x31000, 8192), &data[4096..4096 + 8192]);
    assert!(f.bytes(0x2f000, 4096).iter().all(|&x| x == 0xaa));
    assert!(f.bytes(0x40000, 4096).iter().all(|&x| x == 0xbb));
    // Misaligned file offset, length, buffer offset: `inval`, sync and async.
    for (off, len, at) in [(0, 4096, 100), (0, 100, 0), (512, 4096, 0)] {
        assert_eq!(
            f.host.pins().read_at_sync(&direct, &buf, off, len, at),
            Err(Errno::Inval),
            "{off} {len} {at}"
        );
        assert_eq!(
            block(f.host.pins().write_at(b(&direct), b(&buf), off, len, at)).unwrap(),
            Err(Errno::Inval)
        );
        assert_eq!(
            f.host
                .pins()
                .submit_read_at(b(&direct), b(&buf), off, len, at)
                .unwrap()
                .unwrap_err(),
            Errno::Inval
        );
    }
    let slices = vec![IoSlice {
        buf: b(&buf),
        offset: 0,
        len: 100,
    }];
    assert_eq!(
        block(f.host.pins().read_at_vectored(b(&direct), slices, 0)).unwrap(),
        Err(Errno::Inval)
    );
    // An aligned write goes to the device, and reads back.
    assert_eq!(f.host.pins().write_at_sync(&direct, &buf, 0, 4096, 0), Ok(4096));
    assert_eq!(
        std::fs::read(f.dir.join("d.bin")).unwrap()[..4096],
        data[0x20000..0x21000]
    );
    // Async, on the backend.
    let t = f
        .host
        .pins()
        .submit_read_at(b(&direct), b(&buf), 0, 0x10000, 0x80000)
        .unwrap()
        .unwrap();
    assert_eq!(block(f.host.pins().wait(b(&t), 10_000)).unwrap(), Some(Ok(0x10000)));
    HostIoTicket::drop(&mut f.host.pins(), t).unwrap();
    assert_eq!(f.bytes(0x30000, 0x10000), &data[0x80000..0x90000]);
    // The reopen has the original's access: a read-only file stays read-only.
    let ro = f.open("d.bin", R);
    let ro_direct = f.host.pins().open_direct(b(&ro)).unwrap().unwrap();
    assert_eq!(
        f.host.pins().write_at_sync(&ro_direct, &buf, 0, 4096, 0),
        Err(Errno::Badf)
    );
    f.host.table.delete(ro_direct).unwrap();
    f.host.table.delete(direct).unwrap();
    assert_eq!(f.host.held().files, 0, "a dropped descriptor frees its place");
    f.assert_clean_after_drop();
}

#[test]
fn direct_io_refusals() {
    let quotas = Quotas {
        max_files: 1,
        ..Default::default()
    };
    let dir = tmpdir();
    std::fs::write(dir.join("a"), b"x").unwrap();
    let mut host = MmHost::new(quotas);
    let a = descriptor(&mut host, &dir.join("a"), R, FsPerms::ReadWrite);
    let first = host.pins().open_direct(b(&a)).unwrap().unwrap();
    assert_eq!(host.pins().open_direct(b(&a)).unwrap().unwrap_err(), Errno::Mfile);
    // Deleting the descriptor frees the place.
    host.table.delete(first).unwrap();
    let again = host.pins().open_direct(b(&a)).unwrap().unwrap();
    assert_eq!(host.pins().open_direct(b(&a)).unwrap().unwrap_err(), Errno::Mfile);
    host.table.delete(again).unwrap();
    // A directory.
    let mut host2 = MmHost::new(Quotas::default());
    let d2 = host2
        .table
        .push(Descriptor::Dir(wasmtime_wasi::filesystem::Dir::new(
            std::fs::File::open(&dir).unwrap(),
            FsPerms::ReadWrite,
            OpenMode::READ,
            false,
        )))
        .unwrap();
    assert_eq!(host2.pins().open_direct(b(&d2)).unwrap().unwrap_err(), Errno::Isdir);
    // Not a regular file (a FIFO): `opnotsupp`, at once (a reopen of a FIFO
    // would wait for a writer).
    let fifo = dir.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let rw = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let fd = host2
        .table
        .push(Descriptor::File(File::new(
            rw,
            FsPerms::ReadWrite,
            OpenMode::READ,
            false,
        )))
        .unwrap();
    assert_eq!(host2.pins().open_direct(b(&fd)).unwrap().unwrap_err(), Errno::Opnotsupp);
}

/// `host-cpu-time` is `perm` unless the embedder allows it; allowed, it is
/// the process's CPU time, which work moves forward.
#[test]
fn the_cpu_clock_is_the_embedders_to_give() {
    let mut h = MmHost::from(PinCtx::default());
    assert_eq!(h.pins().host_cpu_time().unwrap(), Err(Errno::Perm));
    let mut h = MmHost::from(PinCtx::default().allow_cpu_clock(true));
    let t0 = h.pins().host_cpu_time().unwrap().unwrap();
    let mut x = 1u64;
    for i in 0..20_000_000u64 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    let t1 = h.pins().host_cpu_time().unwrap().unwrap();
    assert!(t1 > t0, "{t0} -> {t1}");
}
