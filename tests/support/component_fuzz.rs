//! The component-import fuzz harness, shared by the proptest twin
//! (`tests/fuzz_component.rs`, in CI) and the cargo-fuzz target
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
use host_api::bindings::wasm_pin::mm::zero_copy_io::{Host as _, HostFile, HostIoTicket, IoSlice, OpenFlags};
use host_api::io::{GuestFile, GuestTicket};
use host_api::{BackendKind, GuestGrant, GuestPin, IoConfig, MmHost, Quotas};
use runtime_mm::{Mm, MmConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::component::Resource;

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

fn open_flags(bits: u32) -> OpenFlags {
    [
        OpenFlags::READ,
        OpenFlags::WRITE,
        OpenFlags::CREATE,
        OpenFlags::TRUNCATE,
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| bits & (1 << i) != 0)
    .fold(OpenFlags::empty(), |f, (_, bit)| f | bit)
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
        dir: Some(dir.clone()),
        backend,
        queue_depth: 4,
        threads: 1,
        args: vec![],
        ..Default::default()
    };
    let mut h = MmHost::new(quotas).with_io(io);
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
            0 => h.pin_user_pages(a, b % 80, flags(cc)).unwrap().ok().map(|r| r.rep()),
            1 => h.pin_user_pages_fast(a, b, flags(cc)).unwrap().ok().map(|r| r.rep()),
            2 => h
                .pin_longterm_pages(a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            3 => h
                .pin_longterm_pages_fast(a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            4 => h
                .pin_user_pages_remote(borrow::<GuestGrant>(rep), a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            5 => h
                .pin_longterm_pages_remote(borrow::<GuestGrant>(rep), a, b % 80, flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            6 => h
                .open_grant(if b % 2 == 0 { "peer".into() } else { format!("g{b}") })
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            7 => {
                let _ = HostPinnedPages::start(&mut h, borrow::<GuestPin>(rep));
                let _ = HostPinnedPages::len_pages(&mut h, borrow::<GuestPin>(rep));
                let _ = HostMemoryGrant::len(&mut h, borrow::<GuestGrant>(rep));
                None
            }
            8 => {
                let _ = h.checksum(borrow::<GuestPin>(rep), b, cc, a as u32);
                None
            }
            9 => {
                let _ = HostPinnedPages::unpin(&mut h, own::<GuestPin>(rep), b % 2 == 0);
                None
            }
            10 => {
                let _ = HostPinnedPages::drop(&mut h, own::<GuestPin>(rep));
                let _ = HostMemoryGrant::drop(&mut h, own::<GuestGrant>(rep));
                None
            }
            11 => {
                let _ = h.page_maybe_dma_pinned(a);
                let _ = h.stats();
                None
            }
            12 => h
                .open(PATHS[(b % 8) as usize].into(), open_flags(cc))
                .unwrap()
                .ok()
                .map(|r| r.rep()),
            13 => {
                let _ = h.read_at(
                    borrow::<GuestFile>(rep),
                    borrow::<GuestPin>(pick(&reps, b)),
                    cc,
                    b,
                    a % 40000,
                );
                None
            }
            14 => {
                let _ = h.write_at(
                    borrow::<GuestFile>(rep),
                    borrow::<GuestPin>(pick(&reps, b)),
                    cc % 8192,
                    b % 8192,
                    a % 40000,
                );
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
                    let _ = h.read_at_vectored(borrow::<GuestFile>(rep), slices, a % 40000);
                } else {
                    let _ = h.write_at_vectored(borrow::<GuestFile>(rep), slices, a % 40000);
                }
                None
            }
            16 => {
                let r = if a % 2 == 0 {
                    h.submit_read_at(
                        borrow::<GuestFile>(rep),
                        borrow::<GuestPin>(pick(&reps, b)),
                        cc % 8192,
                        b % 8192,
                        a % 40000,
                    )
                } else {
                    h.submit_write_at(
                        borrow::<GuestFile>(rep),
                        borrow::<GuestPin>(pick(&reps, b)),
                        cc % 8192,
                        b % 8192,
                        a % 40000,
                    )
                };
                r.ok().and_then(|r| r.ok()).map(|r| r.rep())
            }
            17 => {
                let _ = h.poll(borrow::<GuestTicket>(rep));
                let _ = h.wait(borrow::<GuestTicket>(rep), b % 3);
                None
            }
            18 => {
                let _ = HostIoTicket::drop(&mut h, own::<GuestTicket>(rep));
                let _ = HostFile::drop(&mut h, own::<GuestFile>(rep));
                None
            }
            _ => {
                let _ = h.size(borrow::<GuestFile>(rep));
                let _ = h.sync(borrow::<GuestFile>(rep));
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
