//! Zero-copy I/O: data integrity on every path (sync, vectored, io_uring,
//! worker threads, sockets), short reads, errors, path escapes, full queues,
//! and I/O in flight when the guest traps or its store is dropped.
//!
//! Most tests call the host functions directly on an `MmHost` (as the
//! generated bindings do for a guest); the trap test runs a guest.

use host_api::bindings::wasm_pin::mm::gup::{GupFlags, Host as _, HostPinnedPages as _};
use host_api::bindings::wasm_pin::mm::zero_copy_io::{
    Errno, Host as _, HostFile as _, HostIoTicket, HostTcpListener as _, HostTcpStream as _, IoSlice, OpenFlags,
};
use host_api::{fnv1a, BackendKind, GuestPin, IoConfig, MmHost, Quotas};
use runtime_mm::{Mm, MmConfig, PinMemoryCreator};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use wasmtime::component::Resource;

const PAGE: u64 = 4096;

fn b<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
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
        dir: Some(dir.clone()),
        backend,
        queue_depth: depth,
        threads,
        args: vec![],
        ..Default::default()
    };
    let mut host = MmHost::new(Quotas::default()).with_io(io);
    host.attach(mm.clone());
    Fx { host, mm, dir }
}

/// The async backends to test: io_uring only where the kernel offers it.
fn backends() -> Vec<BackendKind> {
    let mut probe = MmHost::new(Quotas::default()).with_io(IoConfig {
        backend: BackendKind::IoUring,
        ..IoConfig::default()
    });
    match probe.io_backend() {
        Ok(_) => vec![BackendKind::IoUring, BackendKind::Threads],
        Err(e) => {
            println!("io_uring tests skipped: io_uring is unavailable here ({e})");
            vec![BackendKind::Threads]
        }
    }
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

impl Fx {
    fn pin(&mut self, start: u64, pages: u32, flags: GupFlags) -> Resource<GuestPin> {
        self.host.pin_user_pages(start, pages, flags).unwrap().unwrap()
    }
    fn pin_lt(&mut self, start: u64, pages: u32) -> Resource<GuestPin> {
        self.host
            .pin_longterm_pages(start, pages, GupFlags::WRITE)
            .unwrap()
            .unwrap()
    }
    fn open(&mut self, path: &str, flags: OpenFlags) -> Result<Resource<host_api::io::GuestFile>, Errno> {
        self.host.open(path.into(), flags).unwrap()
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

#[test]
fn sync_read_and_write_move_the_guest_bytes() {
    let mut f = fx(BackendKind::Auto);
    let data = pattern(3 * PAGE as usize + 100, 1);
    f.mm.write(0x10000, &data).unwrap();
    let src = f.pin(0x10000, 4, GupFlags::empty());
    let file = f
        .open("out.bin", OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE)
        .unwrap();
    let n = f
        .host
        .write_at(b(&file), b(&src), 0, data.len() as u32, 0)
        .unwrap()
        .unwrap();
    assert_eq!(n as usize, data.len());
    assert_eq!(std::fs::read(f.dir.join("out.bin")).unwrap(), data);
    // Read it back into another buffer (a write pin), at an offset in both.
    let dst = f.pin(0x40000, 4, GupFlags::WRITE);
    let file = f.open("out.bin", OpenFlags::READ).unwrap();
    let n = f.host.read_at(b(&file), b(&dst), 10, 1000, 50).unwrap().unwrap();
    assert_eq!(n, 1000);
    assert_eq!(f.bytes(0x40000 + 10, 1000), &data[50..1050]);
    assert_eq!(fnv1a(&f.bytes(0x40000 + 10, 1000)), fnv1a(&data[50..1050]));
    assert_eq!(f.host.size(b(&file)).unwrap().unwrap(), data.len() as u64);
    f.host.sync(b(&file)).unwrap().unwrap();
    f.assert_clean_after_drop();
}

#[test]
fn short_reads_and_eof() {
    let mut f = fx(BackendKind::Auto);
    std::fs::write(f.dir.join("small.bin"), pattern(5000, 2)).unwrap();
    let buf = f.pin(0, 4, GupFlags::WRITE);
    let file = f.open("small.bin", OpenFlags::READ).unwrap();
    assert_eq!(f.host.read_at(b(&file), b(&buf), 0, 8192, 0).unwrap(), Ok(5000));
    assert_eq!(f.host.read_at(b(&file), b(&buf), 0, 8192, 5000).unwrap(), Ok(0));
    assert_eq!(f.host.read_at(b(&file), b(&buf), 0, 8192, 1 << 40).unwrap(), Ok(0));
    // Async too.
    let t = f
        .host
        .submit_read_at(b(&file), b(&buf), 0, 8192, 4000)
        .unwrap()
        .unwrap();
    assert_eq!(f.host.wait(b(&t), 10_000).unwrap(), Some(Ok(1000)));
    HostIoTicket::drop(&mut f.host, t).unwrap();
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
    let file = f
        .open("v.bin", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE)
        .unwrap();
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
    assert_eq!(f.host.write_at_vectored(b(&file), slices, 7).unwrap(), Ok(3000));
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
    assert_eq!(f.host.read_at_vectored(b(&file), slices, 7).unwrap(), Ok(2200));
    assert_eq!(f.bytes(0x10000, 10), &data[..10]);
    assert_eq!(f.bytes(0x20000 + 4000, 96), &data[10..106]);
    assert_eq!(f.bytes(0x10000 + 2000, 2094), &data[106..2200]);
    // A slice of a read-only pin cannot be read into; one past its pin faults.
    let bad = vec![IoSlice {
        buf: b(&p1),
        offset: 0,
        len: 10,
    }];
    assert_eq!(f.host.read_at_vectored(b(&file), bad, 0).unwrap(), Err(Errno::Perm));
    let bad = vec![IoSlice {
        buf: b(&d1),
        offset: 4000,
        len: 200,
    }];
    assert_eq!(f.host.read_at_vectored(b(&file), bad, 0).unwrap(), Err(Errno::Fault));
    f.assert_clean_after_drop();
}

/// Streams a 4 MiB file through 8 long-term pinned 64 KiB buffers with all
/// reads in flight at once, then writes a copy asynchronously.
fn async_stream(backend: BackendKind) {
    let mut f = fx(backend);
    assert_eq!(f.host.io_backend().unwrap(), backend);
    let data = pattern(4 << 20, 4);
    std::fs::write(f.dir.join("in.bin"), &data).unwrap();
    let input = f.open("in.bin", OpenFlags::READ).unwrap();
    let output = f
        .open("copy.bin", OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE)
        .unwrap();
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
                f.host.submit_read_at(b(&input), b(buf), 0, CHUNK, at).unwrap().unwrap()
            })
            .collect();
        for (i, t) in tickets.into_iter().enumerate() {
            assert_eq!(f.host.wait(b(&t), 10_000).unwrap(), Some(Ok(CHUNK)));
            assert_eq!(f.host.poll(b(&t)).unwrap(), Some(Ok(CHUNK)));
            HostIoTicket::drop(&mut f.host, t).unwrap();
            hash = f.host.checksum(b(&bufs[i]), 0, CHUNK, hash).unwrap().unwrap();
            let at = ((round * 8 + i as u32) * CHUNK) as u64;
            let w = f
                .host
                .submit_write_at(b(&output), b(&bufs[i]), 0, CHUNK, at)
                .unwrap()
                .unwrap();
            assert_eq!(f.host.wait(b(&w), 10_000).unwrap(), Some(Ok(CHUNK)));
            HostIoTicket::drop(&mut f.host, w).unwrap();
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
        f.host.unpin(buf, true).unwrap();
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
    let input = f.open("in.bin", OpenFlags::READ).unwrap();
    let buf = f.pin_lt(0x200000, 256);
    let t = f
        .host
        .submit_read_at(b(&input), b(&buf), 0, 1 << 20, 0)
        .unwrap()
        .unwrap();
    f.host.unpin(buf, false).unwrap();
    assert_eq!(f.host.usage().0, 0, "the guest no longer holds the pin");
    assert_eq!(f.host.wait(b(&t), 10_000).unwrap(), Some(Ok(1 << 20)));
    assert_eq!(fnv1a(&f.bytes(0x200000, 1 << 20)), fnv1a(&data));
    // Completion is reported after the transfer dropped its pin.
    assert!(!f.mm.page_maybe_dma_pinned(0x200000));
    assert_eq!(f.mm.stats().locked_bytes, 0);
    HostIoTicket::drop(&mut f.host, t).unwrap();
    f.assert_clean_after_drop();
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
    std::fs::create_dir(f.dir.join("sub")).unwrap();
    std::fs::write(f.dir.join("ro.bin"), b"abc").unwrap();
    assert_eq!(f.open("missing.bin", OpenFlags::READ).unwrap_err(), Errno::Noent);
    assert_eq!(f.open("sub", OpenFlags::WRITE).unwrap_err(), Errno::Isdir);
    assert_eq!(f.open("ro.bin/x", OpenFlags::READ).unwrap_err(), Errno::Notdir);
    assert_eq!(f.open("ro.bin", OpenFlags::WRITE | OpenFlags::CREATE).map(drop), Ok(()));
    assert_eq!(f.open("", OpenFlags::READ).unwrap_err(), Errno::Inval);
    let ro = f.pin(0, 1, GupFlags::empty());
    let rw = f.pin(PAGE, 1, GupFlags::WRITE);
    let file = f.open("ro.bin", OpenFlags::READ).unwrap();
    // Reading into a pin taken without `write` is refused.
    assert_eq!(f.host.read_at(b(&file), b(&ro), 0, 3, 0).unwrap(), Err(Errno::Perm));
    assert_eq!(
        f.host.submit_read_at(b(&file), b(&ro), 0, 3, 0).unwrap().unwrap_err(),
        Errno::Perm
    );
    // Ranges past the pin.
    assert_eq!(
        f.host.read_at(b(&file), b(&rw), 4000, 200, 0).unwrap(),
        Err(Errno::Fault)
    );
    assert_eq!(
        f.host.write_at(b(&file), b(&rw), u32::MAX, 2, 0).unwrap(),
        Err(Errno::Fault)
    );
    // Writing to a read-only descriptor: the kernel's EBADF.
    assert_eq!(f.host.write_at(b(&file), b(&rw), 0, 3, 0).unwrap(), Err(Errno::Badf));
    let t = f.host.submit_write_at(b(&file), b(&rw), 0, 3, 0).unwrap().unwrap();
    assert_eq!(f.host.wait(b(&t), 10_000).unwrap(), Some(Err(Errno::Badf)));
    HostIoTicket::drop(&mut f.host, t).unwrap();
    // No directory configured: every open is refused.
    let mut none = MmHost::new(Quotas::default());
    assert_eq!(
        none.open("x".into(), OpenFlags::READ).unwrap().unwrap_err(),
        Errno::Acces
    );
    f.assert_clean_after_drop();
}

#[test]
fn paths_cannot_escape_the_directory() {
    let mut f = fx(BackendKind::Auto);
    let outside = tmpdir();
    std::fs::write(outside.join("secret"), b"no").unwrap();
    std::fs::write(f.dir.join("inside.bin"), b"yes").unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), f.dir.join("out-link")).unwrap();
    std::os::unix::fs::symlink("inside.bin", f.dir.join("in-link")).unwrap();
    std::fs::create_dir(f.dir.join("d")).unwrap();
    let rel = format!("../{}/secret", outside.file_name().unwrap().to_str().unwrap());
    for path in [rel.as_str(), "/etc/passwd", "d/../../x", "out-link", "/proc/self/fd/0"] {
        assert_eq!(f.open(path, OpenFlags::READ).unwrap_err(), Errno::Acces, "{path}");
    }
    assert_eq!(
        f.open("../escape.bin", OpenFlags::WRITE | OpenFlags::CREATE)
            .unwrap_err(),
        Errno::Acces
    );
    assert!(!f.dir.parent().unwrap().join("escape.bin").exists());
    // Only regular files: a FIFO would block the host in open or read.
    let fifo = f.dir.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    assert_eq!(f.open("fifo", OpenFlags::READ).unwrap_err(), Errno::Acces);
    assert_eq!(f.open("d", OpenFlags::READ).unwrap_err(), Errno::Isdir);
    // Inside the directory: fine, symlinks included.
    assert!(f.open("in-link", OpenFlags::READ).is_ok());
    assert!(f.open("d/../inside.bin", OpenFlags::READ).is_ok());
}

#[test]
fn tcp_send_and_recv_use_pinned_buffers() {
    let mut f = fx(BackendKind::Auto);
    let data = pattern(3 * PAGE as usize, 6);
    f.mm.write(0, &data).unwrap();
    let src = f.pin(0, 3, GupFlags::empty());
    let dst = f.pin(0x10000, 3, GupFlags::WRITE);
    // Host listener, test-side peer.
    let l = f.host.bind(0).unwrap().unwrap();
    let port = f.host.local_port(b(&l)).unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut got = vec![0; 3 * PAGE as usize];
        s.read_exact(&mut got).unwrap();
        s.write_all(&got).unwrap(); // echo
        got
    });
    let s = f.host.accept(b(&l)).unwrap().unwrap();
    let mut sent = 0;
    while sent < data.len() as u32 {
        sent += f
            .host
            .send(b(&s), b(&src), sent, data.len() as u32 - sent)
            .unwrap()
            .unwrap();
    }
    let mut got = 0;
    while got < data.len() as u32 {
        let n = f
            .host
            .recv(b(&s), b(&dst), got, data.len() as u32 - got)
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got += n;
    }
    assert_eq!(fnv1a(&peer.join().unwrap()), fnv1a(&data));
    assert_eq!(fnv1a(&f.bytes(0x10000, data.len())), fnv1a(&data));
    // recv into a read-only pin is refused; a closed peer reads as 0.
    assert_eq!(f.host.recv(b(&s), b(&src), 0, 10).unwrap(), Err(Errno::Perm));
    assert_eq!(f.host.recv(b(&s), b(&dst), 0, 10).unwrap(), Ok(0));
    // Host connects to a test-side listener; nobody on a closed port.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sport = server.local_addr().unwrap().port();
    let c = f.host.connect(sport).unwrap().unwrap();
    let (mut peer, _) = server.accept().unwrap();
    peer.write_all(b"hello").unwrap();
    assert_eq!(f.host.recv(b(&c), b(&dst), 0, 5).unwrap(), Ok(5));
    assert_eq!(f.bytes(0x10000, 5), b"hello");
    drop(server);
    assert_eq!(f.host.connect(sport).unwrap().unwrap_err(), Errno::Connrefused);
    f.assert_clean_after_drop();
}

/// The thread backend's bounded queue (one busy worker, depth 1) answers
/// `again`, not a hang. The io_uring equivalent is deterministic in
/// `host-api`'s `io::uring` unit test (reads from an empty pipe).
#[test]
fn a_full_queue_is_again_not_a_hang() {
    let mut f = fx_with(BackendKind::Threads, 1, 1);
    std::fs::write(f.dir.join("big.bin"), pattern(8 << 20, 7)).unwrap();
    let file = f.open("big.bin", OpenFlags::READ).unwrap();
    let buf = f.pin_lt(0x400000, 2048);
    let mut tickets = Vec::new();
    let mut again = false;
    for i in 0..10_000u64 {
        match f.host.submit_read_at(b(&file), b(&buf), 0, 8 << 20, i).unwrap() {
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
        assert!(matches!(f.host.wait(b(&t), 10_000).unwrap(), Some(Ok(_))));
        HostIoTicket::drop(&mut f.host, t).unwrap();
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
        let file = f.open("big.bin", OpenFlags::READ).unwrap();
        let bufs: Vec<_> = (0..4).map(|i| f.pin_lt(0x800000 + i * (1 << 20), 256)).collect();
        let mut tickets = Vec::new();
        for i in 0..32u64 {
            let buf = &bufs[(i % 4) as usize];
            if let Ok(t) = f.host.submit_read_at(b(&file), b(buf), 0, 1 << 20, i << 18).unwrap() {
                tickets.push(t);
            }
        }
        // Drop some tickets (cancel) and leave the rest; then drop everything.
        for t in tickets.drain(..8) {
            HostIoTicket::drop(&mut f.host, t).unwrap();
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
    host_api::add_to_linker(&mut linker, |h: &mut MmHost| h).unwrap();
    for backend in backends() {
        let io = IoConfig {
            dir: Some(dir.clone()),
            backend,
            ..IoConfig::default()
        };
        let mut store = wasmtime::Store::new(&engine, MmHost::new(Quotas::default()).with_io(io));
        let guest = host_api::instantiate(&mut store, &linker, &component, &creator, |h| h).unwrap();
        let mm = store.data().memory().unwrap().clone();
        let err = guest.call_run(&mut store).expect_err("the guest traps");
        assert!(format!("{err:?}").contains("unreachable"), "{err:?}");
        drop(store);
        let s = mm.stats();
        assert_eq!((s.pins_outstanding(), s.locked_bytes), (0, 0), "{backend:?}: {s:?}");
    }
    assert_eq!(std::fs::read(dir.join("input.bin")).unwrap(), before);
}
