//! What the I/O benchmarks share: the 256 MiB input file, page-aligned
//! host buffers, and a host state with one memory and a backend.

#![allow(dead_code)] // each bench uses its own subset

use host_api::bindings::wasm_pin::mm::gup::{GupFlags, Host as _, PinnedPages};
use host_api::bindings::wasm_pin::mm::zero_copy_io::{Host as _, HostIoTicket};
use host_api::{BackendKind, IoConfig, MmHost, PinCtx, PinView, Quotas};
use runtime_mm::{Mm, MmConfig};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, File};
use wasmtime_wasi::{FsPerms, OpenMode};

pub const SIZE: usize = 256 << 20;
pub const CHUNK: usize = 1 << 20;
pub const DEST: u64 = 16 << 20;

/// A zeroed, page-aligned host buffer.
pub struct AlignedBuf(*mut u8, std::alloc::Layout);

impl AlignedBuf {
    pub fn new(len: usize) -> Self {
        Self::with_align(len, 4096)
    }
    /// Aligned to `align` bytes (2 MiB for a buffer on huge pages).
    pub fn with_align(len: usize, align: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, align).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        AlignedBuf(ptr, layout)
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `self.0` is a live allocation of `self.1.size()` initialised bytes.
        unsafe { std::slice::from_raw_parts_mut(self.0, self.1.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.0, self.1) }
    }
}

pub fn b<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

pub fn input() -> PathBuf {
    let dir = std::env::temp_dir().join("wasm-pin-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("input.bin");
    if std::fs::metadata(&path).map(|m| m.len() as usize).ok() != Some(SIZE) {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..SIZE / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        std::fs::write(&path, data).unwrap();
    }
    // Warm the page cache.
    std::fs::read(&path).unwrap();
    path
}

/// A WASI descriptor for reading `path`, as `open-at` makes one.
pub fn open(h: &mut MmHost, path: &std::path::Path) -> Resource<Descriptor> {
    let f = std::fs::File::open(path).unwrap();
    let d = Descriptor::File(File::new(f, FsPerms::ReadOnly, OpenMode::READ, false));
    h.table.push(d).unwrap()
}

pub fn host(backend: BackendKind) -> (MmHost, Arc<Mm>) {
    let mm = Mm::new(MmConfig {
        initial_bytes: DEST + SIZE as u64,
        memlock_limit_bytes: 2 * SIZE as u64,
        ..Default::default()
    })
    .unwrap();
    let quotas = Quotas {
        max_pins: 64,
        max_pinned_bytes: 2 * SIZE as u64,
        max_longterm_bytes: 2 * SIZE as u64,
        ..Default::default()
    };
    let io = IoConfig {
        backend,
        queue_depth: 16,
        ..IoConfig::default()
    };
    let mut h = MmHost::from(PinCtx::new(quotas).with_io(io));
    h.attach(mm.clone());
    (h, mm)
}

/// One long-term pin over the whole destination region (what io_uring
/// registers as a fixed buffer).
pub fn pin_region(h: &mut MmHost) -> Resource<PinnedPages> {
    h.pins()
        .pin_longterm_pages(DEST, (SIZE / 4096) as u32, GupFlags::WRITE)
        .unwrap()
        .unwrap()
}

/// Our asynchronous path (io_uring or the thread backend, whichever `h`
/// has): all `SIZE` bytes of `f` into the pinned `region`, 1 MiB per read,
/// 8 reads in flight.
pub fn async_read_all(h: &mut MmHost, f: &Resource<Descriptor>, region: &Resource<PinnedPages>) {
    let mut inflight = VecDeque::new();
    let mut next = 0;
    while next < SIZE || !inflight.is_empty() {
        while next < SIZE && inflight.len() < 8 {
            let t = h
                .pins()
                .submit_read_at(b(f), b(region), next as u32, CHUNK as u32, next as u64);
            inflight.push_back(t.unwrap().unwrap());
            next += CHUNK;
        }
        let t = inflight.pop_front().unwrap();
        let done = wasmtime_wasi::runtime::in_tokio(h.pins().wait(b(&t), 10_000));
        assert_eq!(done.unwrap(), Some(Ok(CHUNK as u32)));
        HostIoTicket::drop(&mut h.pins(), t).unwrap();
    }
}
