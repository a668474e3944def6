//! `MmHost`: the per-store state behind the pin imports, and the guest quotas.

use crate::handles::CoreHandles;
use crate::io::{BackendKind, IoConfig, IoCounts, IoState};
use runtime_mm::{gup, Errno, GupFlags, Mm, PinnedPages};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};

/// Per-guest limits set by the embedder, checked before anything is created,
/// so a guest over a quota gets an errno and the host is not touched.
///
/// - pins: too many handles → `again` (retry after unpinning), too many bytes
///   → `nomem`; nothing is pinned;
/// - files, sockets, grants, I/O tickets: one more than the quota → `mfile`,
///   before any descriptor is created (so one guest cannot use up the host
///   process's descriptors and starve the others).
///
/// Build with `..Default::default()` to keep the other limits:
///
/// ```
/// let q = host_api::Quotas { max_files: 8, ..Default::default() };
/// assert_eq!(q.max_sockets, host_api::Quotas::default().max_sockets);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Most `pinned-pages` handles outstanding at once.
    pub max_pins: u32,
    /// Most bytes pinned at once (all pins, long-term included).
    pub max_pinned_bytes: u64,
    /// Most bytes pinned long-term at once.
    pub max_longterm_bytes: u64,
    /// Most files open at once.
    pub max_files: u32,
    /// Most sockets (listeners and streams) open at once.
    pub max_sockets: u32,
    /// Most `memory-grant` handles open at once.
    pub max_grants: u32,
    /// Most `io-ticket`s alive at once (in flight or completed but not yet
    /// dropped).
    pub max_tickets: u32,
}

impl Default for Quotas {
    /// 1024 pin handles, 256 MiB pinned, 64 MiB of it long-term; 256 files,
    /// 64 sockets, 64 grants, 1024 tickets.
    fn default() -> Self {
        Quotas {
            max_pins: 1024,
            max_pinned_bytes: 256 << 20,
            max_longterm_bytes: 64 << 20,
            max_files: 256,
            max_sockets: 64,
            max_grants: 64,
            max_tickets: 1024,
        }
    }
}

/// The kinds of host object a guest can hold, each under its own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Socket,
    Grant,
    Ticket,
}

/// How many objects of each kind a guest holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Objects {
    /// Open files.
    pub files: u32,
    /// Open sockets (listeners and streams).
    pub sockets: u32,
    /// Open memory grants.
    pub grants: u32,
    /// Live I/O tickets.
    pub tickets: u32,
}

impl Objects {
    fn count(&mut self, kind: Kind) -> &mut u32 {
        match kind {
            Kind::File => &mut self.files,
            Kind::Socket => &mut self.sockets,
            Kind::Grant => &mut self.grants,
            Kind::Ticket => &mut self.tickets,
        }
    }
}

impl Quotas {
    fn max(&self, kind: Kind) -> u32 {
        match kind {
            Kind::File => self.max_files,
            Kind::Socket => self.max_sockets,
            Kind::Grant => self.max_grants,
            Kind::Ticket => self.max_tickets,
        }
    }
}

/// A guest's pin: the `pinned-pages` resource.
///
/// Shared (`Arc`) so that host I/O still in flight keeps the pages pinned
/// after the guest releases its handle; the pin itself is released when the
/// last holder drops.
#[derive(Debug, Clone)]
pub struct GuestPin {
    /// The pinned pages.
    pub pages: Arc<PinnedPages>,
}

/// A memory granted to a guest: the `memory-grant` resource.
#[derive(Debug, Clone)]
pub struct GuestGrant {
    /// The granted memory.
    pub mm: Arc<Mm>,
}

/// Which GUP entry point a guest called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PinKind {
    User,
    UserFast,
    Longterm,
    LongtermFast,
    UserRemote,
    LongtermRemote,
}

impl PinKind {
    fn longterm(self) -> bool {
        matches!(
            self,
            PinKind::Longterm | PinKind::LongtermFast | PinKind::LongtermRemote
        )
    }
}

/// Where `environment.print` lines go.
pub type Printer = Arc<dyn Fn(&str) + Send + Sync>;

/// The state of the imports in one store: the guest's memory, its handles,
/// its quotas and its I/O. Keep one in the store's data and hand
/// `add_to_linker` a function that finds it.
pub struct MmHost {
    mm: Option<Arc<Mm>>,
    table: ResourceTable,
    quotas: Quotas,
    pins: u32,
    pinned_bytes: u64,
    longterm_bytes: u64,
    grants: HashMap<String, Arc<Mm>>,
    held: Objects,
    /// Core-ABI handle tables, one per instance, keyed by the base address
    /// of the instance's memory (unique in a store while the store lives).
    core: HashMap<usize, CoreHandles>,
    pub(crate) io: IoState,
    printer: Option<Printer>,
    warned: AtomicBool,
}

impl std::fmt::Debug for MmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmHost")
            .field("mm", &self.mm)
            .field("quotas", &self.quotas)
            .field("usage", &self.usage())
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl Default for MmHost {
    fn default() -> Self {
        MmHost::new(Quotas::default())
    }
}

impl MmHost {
    /// A host with no memory attached yet and the given quotas.
    pub fn new(quotas: Quotas) -> Self {
        MmHost {
            mm: None,
            table: ResourceTable::new(),
            quotas,
            pins: 0,
            pinned_bytes: 0,
            longterm_bytes: 0,
            grants: HashMap::new(),
            held: Objects::default(),
            core: HashMap::new(),
            io: IoState::new(IoConfig::default()),
            printer: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Sets the guest's I/O: its directory, backend and arguments.
    pub fn with_io(mut self, config: IoConfig) -> Self {
        self.io = IoState::new(config);
        self
    }

    /// Sends `environment.print` lines to `printer` (default: stdout).
    pub fn with_printer(mut self, printer: Printer) -> Self {
        self.printer = Some(printer);
        self
    }

    pub(crate) fn print_line(&self, line: &str) {
        match &self.printer {
            Some(p) => p(line),
            None => println!("{line}"),
        }
    }

    /// Asynchronous transfers in flight now.
    pub fn io_in_flight(&self) -> usize {
        self.io.in_flight()
    }

    /// Counters of this guest's asynchronous transfers.
    pub fn io_counts(&self) -> IoCounts {
        self.io.counts()
    }

    /// The asynchronous backend in use (created on first use).
    pub fn io_backend(&mut self) -> Result<BackendKind, Errno> {
        self.io.backend_kind()
    }

    /// Attaches the guest's own memory: the one its canonical ABI uses (see
    /// [`crate::instantiate`], which does this for components). Core-module
    /// guests are found per call through their `memory` export instead.
    pub fn attach(&mut self, mm: Arc<Mm>) {
        self.mm = Some(mm);
    }

    /// The attached memory, if any.
    pub fn memory(&self) -> Option<&Arc<Mm>> {
        self.mm.as_ref()
    }

    /// Grants this guest access to another memory under `name`, for
    /// `open-grant` and the remote pins.
    pub fn grant(&mut self, name: impl Into<String>, mm: Arc<Mm>) {
        self.grants.insert(name.into(), mm);
    }

    /// The quotas in force.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// Handles outstanding and bytes pinned (all, long-term) by this guest now.
    pub fn usage(&self) -> (u32, u64, u64) {
        (self.pins, self.pinned_bytes, self.longterm_bytes)
    }

    /// The store's resource table (shared with other host APIs).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    pub(crate) fn table_ref(&self) -> &ResourceTable {
        &self.table
    }

    pub(crate) fn own_mm(&self) -> Result<&Arc<Mm>, Errno> {
        // No attached memory: not a memory of a `PinMemoryCreator`.
        self.mm.as_ref().ok_or_else(|| {
            self.warn_no_memory();
            Errno::OpNotSupp
        })
    }

    /// Says once per store, on stderr, why pins fail with `opnotsupp`: an
    /// errno alone cannot name the cause.
    pub(crate) fn warn_no_memory(&self) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "wasm-pin: the calling instance's memory was not made by a PinMemoryCreator \
                 (install one with PinMemoryCreator::install; wasmtime's pooling allocator \
                 bypasses it): pins return opnotsupp"
            );
        }
    }

    /// Pins for the guest under the quotas and stores the handle.
    ///
    /// The byte quotas hold at every instant, also while the memory grows on
    /// another thread (a shared memory, a granted peer): the request is
    /// refused if, at the length seen now, it could take more than the room
    /// left, and it is then *clamped* to that room, so a memory that grows
    /// between the check and the pin cannot let the pin take more.
    pub(crate) fn pin(
        &mut self,
        mm: &Arc<Mm>,
        kind: PinKind,
        start: u64,
        nr_pages: u32,
        flags: GupFlags,
    ) -> Result<Resource<GuestPin>, Errno> {
        if self.pins >= self.quotas.max_pins {
            return Err(Errno::Again);
        }
        let page = mm.page_size();
        let room = self.quotas.max_pinned_bytes.saturating_sub(self.pinned_bytes);
        let room = if kind.longterm() {
            room.min(self.quotas.max_longterm_bytes.saturating_sub(self.longterm_bytes))
        } else {
            room
        };
        let avail = mm.len().saturating_sub(start) / page;
        if u64::from(nr_pages).min(avail) * page > room {
            return Err(Errno::NoMem);
        }
        // The clamp, in whole pages: what the quota allows whatever `len` is
        // by the time the pin reads it. A zero-page pin still checks `start`.
        let nr = u64::from(nr_pages).min(room / page) as usize;
        if nr == 0 && nr_pages > 0 {
            // No room for one page: refuse, after the checks of `flags` and
            // `start` that an empty pin makes (`inval`, `fault`).
            drop(gup::pin_user_pages(mm, start, 0, flags)?);
            return Err(if avail == 0 { Errno::Fault } else { Errno::NoMem });
        }
        let pages = match kind {
            PinKind::User => gup::pin_user_pages(mm, start, nr, flags),
            PinKind::UserFast => gup::pin_user_pages_fast(mm, start, nr, flags),
            PinKind::Longterm => gup::pin_longterm_pages(mm, start, nr, flags),
            PinKind::LongtermFast => gup::pin_longterm_pages_fast(mm, start, nr, flags),
            PinKind::UserRemote => gup::pin_user_pages_remote(mm, start, nr, flags),
            PinKind::LongtermRemote => gup::pin_longterm_pages_remote(mm, start, nr, flags),
        }?;
        let bytes = pages.byte_len() as u64;
        debug_assert!(bytes <= room, "the clamp keeps every pin inside its quota");
        let handle = self
            .table
            .push(GuestPin { pages: Arc::new(pages) })
            .map_err(|_| Errno::Again)?;
        self.pins += 1;
        self.pinned_bytes += bytes;
        if kind.longterm() {
            self.longterm_bytes += bytes;
        }
        Ok(handle)
    }

    /// The guest's pin behind `handle`, if it is one.
    pub fn pinned(&self, handle: &Resource<GuestPin>) -> Result<&GuestPin, Errno> {
        self.table.get(handle).map_err(|_| Errno::BadF)
    }

    /// Removes the guest's handle; the pin is released when no I/O holds it.
    pub(crate) fn release(&mut self, handle: Resource<GuestPin>, dirty: bool) -> Result<(), Errno> {
        let pin = self.delete(handle)?;
        let bytes = pin.pages.byte_len() as u64;
        self.pins -= 1;
        self.pinned_bytes -= bytes;
        if pin.pages.is_longterm() {
            self.longterm_bytes -= bytes;
        }
        if dirty {
            pin.pages.mark_dirty();
        }
        // A registered I/O buffer is unregistered; transfers in flight keep
        // their own reference to the pin.
        self.io.forget(&pin.pages);
        Ok(())
    }

    pub(crate) fn open_grant(&mut self, name: &str) -> Result<Resource<GuestGrant>, Errno> {
        let mm = self.grants.get(name).ok_or(Errno::BadF)?.clone();
        self.push(Kind::Grant, GuestGrant { mm })
    }

    pub(crate) fn granted(&self, grant: &Resource<GuestGrant>) -> Result<Arc<Mm>, Errno> {
        self.table.get(grant).map(|g| g.mm.clone()).map_err(|_| Errno::BadF)
    }

    pub(crate) fn drop_grant(&mut self, grant: Resource<GuestGrant>) -> Result<(), Errno> {
        self.remove(Kind::Grant, grant).map(drop)
    }

    /// How many objects of each kind the guest holds now.
    pub fn held(&self) -> Objects {
        self.held
    }

    /// Refuses one more object of `kind` over its quota (`mfile`). Call
    /// before creating the descriptor behind it.
    pub(crate) fn admit(&self, kind: Kind) -> Result<(), Errno> {
        let mut held = self.held;
        if *held.count(kind) >= self.quotas.max(kind) {
            return Err(Errno::MFile);
        }
        Ok(())
    }

    /// Stores a guest object of `kind` under its quota.
    pub(crate) fn push<T: Send + 'static>(&mut self, kind: Kind, obj: T) -> Result<Resource<T>, Errno> {
        self.admit(kind)?;
        let r = self.table.push(obj).map_err(|_| Errno::MFile)?;
        *self.held.count(kind) += 1;
        Ok(r)
    }

    /// Removes a guest object of `kind`, checking its type first.
    pub(crate) fn remove<T: 'static>(&mut self, kind: Kind, handle: Resource<T>) -> Result<T, Errno> {
        let obj = self.delete(handle)?;
        *self.held.count(kind) -= 1;
        Ok(obj)
    }

    /// Removes a handle of type `T`. `ResourceTable::delete` removes the entry
    /// before it checks the type, so a handle of another type (a forged or
    /// confused core-ABI handle) is checked first and left in place.
    fn delete<T: 'static>(&mut self, handle: Resource<T>) -> Result<T, Errno> {
        self.table.get(&handle).map_err(|_| Errno::BadF)?;
        self.table.delete(handle).map_err(|_| Errno::BadF)
    }

    /// The core-ABI handle table of the instance whose memory is at `base`.
    pub(crate) fn core_handles(&mut self, base: usize) -> &mut CoreHandles {
        self.core.entry(base).or_default()
    }
}

/// FNV-1a, 32 bits: the checksum the `checksum` import computes.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| fnv_step(h, b))
}

const FNV_OFFSET: u32 = 0x811c_9dc5;

fn fnv_step(h: u32, b: u8) -> u32 {
    (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
}

/// Hashes `len` bytes at `offset` of a pin, reading through the pin.
pub(crate) fn checksum(pages: &PinnedPages, offset: u32, len: u32, seed: u32) -> Result<u32, Errno> {
    let (offset, len) = (offset as usize, len as usize);
    match offset.checked_add(len) {
        Some(end) if end <= pages.byte_len() => {}
        _ => return Err(Errno::Fault),
    }
    let base = pages.as_ptr();
    let mut h = seed;
    for i in offset..offset + len {
        // SAFETY: `i` lies inside the pinned range, which stays mapped and
        // present while `pages` is alive. Other threads of a shared memory may
        // write it meanwhile: an atomic load makes that a benign race.
        let b = unsafe { AtomicU8::from_ptr(base.add(i).cast_mut()) }.load(Ordering::Relaxed);
        h = fnv_step(h, b);
    }
    Ok(h)
}
