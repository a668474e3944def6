//! The component-import fuzz harness, shared by the proptest twin
//! (`tests/all/fuzz_component.rs`, in CI) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/component.rs`).
//!
//! Calls the `gup` and `zero-copy-io` host functions exactly as the generated
//! bindings do, with arbitrary values: addresses, counts, flags, offsets,
//! paths, and handle numbers the guest never received (which the canonical
//! ABI would refuse, so the host must too). Whatever the calls: no panic,
//! every answer is a value, an errno or a trap error; bytes outside the
//! guest's memory and outside the pre-opened directory never change; after
//! the host drops, nothing stays pinned, locked or in flight.

use host_api::bindings::wasm_pin::mm::gup::{GupFlags, Host as _, HostMemoryGrant, HostPinnedPages};
use host_api::bindings::wasm_pin::mm::zero_copy_io::{Host as _, HostIoTicket, IoSlice};
use host_api::io::GuestTicket;
use host_api::{BackendKind, GuestGrant, GuestPin, IoConfig, MmHost, PinCtx, PinView, Quotas};
use runtime_mm::{Mm, MmConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, Dir, File};
use wasmtime_wasi::{FsPerms, OpenMode};

/// One import call; `handle` picks among the handles handed out so far, or
/// (past their number) a forged one.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub func: u8,
    pub handle: u32,
    pub a: u64,
    pub b: u32,
    pub c: u32,
}

const PATHS: [&str; 8] = [
    "a.bin",
    "sub/../a.bin",
    "../outside",
    "/etc/passwd",
    "b.bin",
    "",
    "sub",
    "link-out",
];

fn dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "wasm-pin-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.bin"), vec![7u8; 20000]).unwrap();
    let _ = std::os::unix::fs::symlink("/etc/hostname", d.join("link-out"));
    d
}

fn flags(bits: u32) -> GupFlags {
    [GupFlags::WRITE, GupFlags::FORCE, GupFlags::NOWAIT]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .fold(GupFlags::empty(), |f, (_, bit)| f | bit)
}

/// A WASI descriptor as `open-at` would make one: a file opened for
/// reading, writing or both (under a read-write or read-only preopen), or a
/// directory.
fn descriptor(dir: &std::path::Path, path: &str, bits: u32) -> Option<Descriptor> {
    let (read, write) = (bits & 1 != 0, bits & 2 != 0);
    let perms = if bits & 4 != 0 {
        FsPerms::ReadOnly
    } else {
        FsPerms::ReadWrite
    };
    let full = dir.join(path);
    if full.is_dir() {
        let d = std::fs::File::open(&full).ok()?;
        return Some(Descriptor::Dir(Dir::new(d, perms, OpenMode::READ, false)));
    }
    let f = std::fs::OpenOptions::new()
        .read(read || !write)
        .write(write)
        .open(&full)
        .ok()?;
    let mut mode = OpenMode::empty();
    mode.set(OpenMode::READ, read || !write);
    mode.set(OpenMode::WRITE, write);
    Some(Descriptor::File(File::new(f, perms, mode, false)))
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    wasmtime_wasi::runtime::in_tokio(f)
}

fn own<T: 'static>(rep: u32) -> Resource<T> {
    Resource::new_own(rep)
}

fn borrow<T: 'static>(rep: u32) -> Resource<T> {
    Resource::new_borrow(rep)
}

/// Runs `calls` against a fresh host; panics on any broken invariant.
pub fn run(calls: &[Call], backend: BackendKind) {
    let dir = dir();
    let outside = std::fs::read(dir.parent().unwrap().join("wasm-pin-fuzz-canary")).ok();
    let mm = Mm::new(MmConfig {
        initial_bytes: 64 << 12,
        memlock_limit_bytes: 16 << 12,
        ..Default::default()
    })
    .unwrap();
    let peer = Mm::new(MmConfig {
        initial_bytes: 16 << 12,
        memlock_limit_bytes: 4 << 12,
        ..Default::default()
    })
    .unwrap();
    peer.write(0, &[0x5a; 16 << 12]).unwrap();
    let quotas = Quotas {
        max_pins: 16,
        max_pinned_bytes: 48 << 12,
        max_longterm_bytes: 8 << 12,
        ..Default::default()
    };
    let io = IoConfig {
        backend,
        queue_depth: 4,
        threads: 1,
        ..Default::default()
    };
    let mut h = MmHost::from(PinCtx::new(quotas).with_io(io));
    h.attach(mm.clone());
    h.grant("peer", peer.clone());
    // Handles handed out, by their rep; `Call::handle` indexes this, and
    // values past it are forged reps.
    let mut reps: Vec<u32> = Vec::new();
    let pick = |reps: &Vec<u32>, i: u32| -> u32 {
        let n = reps.len() as u32;
        if i < n {
            reps[i as usize]
        } else {
            i.wrapping_mul(2654435761) % 64
        }
    };
    for c in calls {
        let rep = pick(&reps, c.handle);
        let (a, b, cc) = (c.a, c.b, c.c);
        // Every answer is Ok(value), Ok(Err(errno)) or Err(trap): never a panic.
        let new: Option<u32> = match c.func % 20 {
            0 => h
                .pins()
                .pin_user_pages(a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            1 => h
                .pins()
                .pin_user_pages_fast(a, b, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            2 => h
                .pins()
                .pin_longterm_pages(a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            3 => h
                .pins()
                .pin_longterm_pages_fast(a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            4 => h
                .pins()
                .pin_user_pages_remote(borrow::<GuestGrant>(rep), a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            5 => h
                .pins()
                .pin_longterm_pages_remote(borrow::<GuestGrant>(rep), a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            6 => h
                .pins()
                .open_grant(if b % 2 == 0 { "peer".into() } else { format!("g{b}") })
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            7 => {
                let _ = HostPinnedPages::start(&mut h.pins(), borrow::<GuestPin>(rep));
                let _ = HostPinnedPages::len_pages(&mut h.pins(), borrow::<GuestPin>(rep));
                let _ = HostMemoryGrant::len(&mut h.pins(), borrow::<GuestGrant>(rep));
                None
            }
            8 => {
                let _ = h.pins().checksum(borrow::<GuestPin>(rep), b, cc, a as u32);
                None
            }
            9 => {
                let _ = HostPinnedPages::unpin(&mut h.pins(), own::<GuestPin>(rep), b % 2 == 0);
                None
            }
            10 => {
                let _ = HostPinnedPages::drop(&mut h.pins(), own::<GuestPin>(rep));
                let _ = HostMemoryGrant::drop(&mut h.pins(), own::<GuestGrant>(rep));
                None
            }
            11 => {
                let _ = h.pins().page_maybe_dma_pinned(a);
                let _ = h.pins().stats();
                None
            }
            12 => descriptor(&dir, PATHS[(b % 8) as usize], cc).map(|d| h.table.push(d).unwrap().rep()),
            13 => {
                let _ = block(h.pins().read_at(
                    borrow::<Descriptor>(rep),
                    borrow::<GuestPin>(pick(&reps, b)),
                    cc,
                    b,
                    a % 40000,
                ));
                None
            }
            14 => {
                let _ = block(h.pins().write_at(
                    borrow::<Descriptor>(rep),
                    borrow::<GuestPin>(pick(&reps, b)),
                    cc % 8192,
                    b % 8192,
                    a % 40000,
                ));
                None
            }
            15 => {
                let slices = vec![
                    IoSlice {
                        buf: borrow(pick(&reps, b)),
                        offset: cc % 9000,
                        len: b % 9000,
                    },
                    IoSlice {
                        buf: borrow(pick(&reps, cc)),
                        offset: b,
                        len: cc,
                    },
                ];
                if a % 2 == 0 {
                    let _ = block(h.pins().read_at_vectored(borrow::<Descriptor>(rep), slices, a % 40000));
                } else {
                    let _ = block(h.pins().write_at_vectored(borrow::<Descriptor>(rep), slices, a % 40000));
                }
                None
            }
            16 => {
                let r = if a % 2 == 0 {
                    h.pins().submit_read_at(
                        borrow::<Descriptor>(rep),
                        borrow::<GuestPin>(pick(&reps, b)),
                        cc % 8192,
                        b % 8192,
                        a % 40000,
                    )
                } else {
                    h.pins().submit_write_at(
                        borrow::<Descriptor>(rep),
                        borrow::<GuestPin>(pick(&reps, b)),
                        cc % 8192,
                        b % 8192,
                        a % 40000,
                    )
                };
                r.ok().and_then(|r| r.ok()).map(|r| r.rep())
            }
            17 => {
                let _ = h.pins().poll(borrow::<GuestTicket>(rep));
                let _ = block(h.pins().wait(borrow::<GuestTicket>(rep), b % 3));
                None
            }
            18 => {
                let _ = HostIoTicket::drop(&mut h.pins(), own::<GuestTicket>(rep));
                let _ =
                    h.table.get(&borrow::<Descriptor>(rep)).is_ok() && h.table.delete(own::<Descriptor>(rep)).is_ok();
                None
            }
            _ => {
                let _ = h.io_backend();
                let _ = h.pins().io_backend();
                None
            }
        };
        reps.extend(new);
        let (pins, bytes, lt) = h.usage();
        assert!(pins <= quotas.max_pins && bytes <= quotas.max_pinned_bytes && lt <= quotas.max_longterm_bytes);
        assert!(mm.stats().locked_bytes <= 16 << 12 && peer.stats().locked_bytes <= 4 << 12);
    }
    drop(h);
    for m in [&mm, &peer] {
        let s = m.stats();
        assert_eq!(
            (s.pins_outstanding(), s.longterm_pinned_pages, s.locked_bytes),
            (0, 0, 0),
            "{s:?}"
        );
    }
    let mut after = vec![0u8; 16 << 12];
    peer.read(0, &mut after).unwrap();
    assert!(after.iter().all(|&x| x == 0x5a), "the granted memory was written");
    assert_eq!(
        std::fs::read(dir.parent().unwrap().join("wasm-pin-fuzz-canary")).ok(),
        outside
    );
    assert!(!dir.parent().unwrap().join("outside").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
