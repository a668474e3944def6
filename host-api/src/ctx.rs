//! `PinCtx`: the per-store state behind the pin imports (the table lives
//! beside it, shared with WASI: see [`crate::view`]).

use crate::caller::CallerId;
use crate::handles::{CoreHandles, HandleOwner};
use crate::io::direct::OwnFiles;
use crate::io::{BackendKind, IoConfig, IoCounts, IoState};
use crate::net::{NetCtx, SocketAddrCheck};
use crate::quotas::{Kind, Objects, Quotas};
use runtime_mm::{Errno, Mm};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wasmtime::{Module, ModuleExport};

/// The state of the pin imports in one store: quotas and usage, granted
/// memories, the I/O backend, the socket permissions, and the memory the last
/// pin resolved. Keep one in the store's data beside the `ResourceTable`
/// your `WasiView` hands out, and implement [`PinView`](crate::PinView).
///
/// ```
/// use host_api::{IoConfig, PinCtx, Quotas};
/// let ctx = PinCtx::new(Quotas { max_pins: 64, ..Default::default() })
///     .with_io(IoConfig { queue_depth: 8, ..Default::default() })
///     .inherit_network();
/// assert_eq!(ctx.quotas().max_pins, 64);
/// ```
pub struct PinCtx {
    pub(crate) mm: Option<Arc<Mm>>,
    pub(crate) quotas: Quotas,
    pub(crate) pins: u32,
    pub(crate) pinned_bytes: u64,
    pub(crate) longterm_bytes: u64,
    pub(crate) grants: HashMap<String, Arc<Mm>>,
    pub(crate) held: Objects,
    /// Handle tables, one per instance (core-ABI handles, registered-file
    /// slots).
    pub(crate) core: HashMap<HandleOwner, CoreHandles>,
    /// The modules seen calling the core ABI with each memory (by base): the
    /// `memory` export that identifies an instance of each, its code address
    /// and the module itself (which keeps that address its own).
    pub(crate) core_modules: HashMap<usize, Vec<(ModuleExport, usize, Module)>>,
    /// Each calling component instance's memory, as its calls resolved it.
    pub(crate) callers: HashMap<CallerId, Arc<Mm>>,
    /// The caller of the last call that resolved a memory (`mm`'s).
    pub(crate) last_caller: CallerId,
    pub(crate) io: IoState,
    pub(crate) own_files: OwnFiles,
    pub(crate) net: NetCtx,
    pub(crate) cpu_clock: bool,
    warned: AtomicBool,
}

impl std::fmt::Debug for PinCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinCtx")
            .field("mm", &self.mm)
            .field("quotas", &self.quotas)
            .field("usage", &self.usage())
            .field("held", &self.held)
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl Default for PinCtx {
    fn default() -> Self {
        PinCtx::new(Quotas::default())
    }
}

impl PinCtx {
    /// A context with the given quotas, default I/O, and no network access
    /// (as `WasiCtxBuilder`'s default).
    pub fn new(quotas: Quotas) -> Self {
        PinCtx {
            mm: None,
            quotas,
            pins: 0,
            pinned_bytes: 0,
            longterm_bytes: 0,
            grants: HashMap::new(),
            held: Objects::default(),
            core: HashMap::new(),
            core_modules: HashMap::new(),
            callers: HashMap::new(),
            last_caller: CallerId::default(),
            io: IoState::new(IoConfig::default()),
            own_files: OwnFiles::default(),
            net: NetCtx::default(),
            cpu_clock: false,
            warned: AtomicBool::new(false),
        }
    }

    /// Sets the guest's asynchronous I/O: backend, queue depth, workers.
    pub fn with_io(mut self, config: IoConfig) -> Self {
        self.io = IoState::new(config);
        self
    }

    /// Lets `zero-copy-net` use the addresses `check` allows: pass the same
    /// closure you give `WasiCtxBuilder::socket_addr_check`, so WASI's
    /// sockets and these obey one policy.
    pub fn socket_addr_check(mut self, check: SocketAddrCheck) -> Self {
        self.net.check = Some(check);
        self
    }

    /// Lets the guest read the host process's CPU time (`host-cpu-time`),
    /// e.g. for a benchmark like the demo's. Off by default: it tells the
    /// guest how busy the host is.
    pub fn allow_cpu_clock(mut self, allow: bool) -> Self {
        self.cpu_clock = allow;
        self
    }

    /// The host process's CPU time (user + system), if the guest may see it.
    pub(crate) fn cpu_time(&self) -> Result<u64, runtime_mm::Errno> {
        if !self.cpu_clock {
            return Err(runtime_mm::Errno::Perm);
        }
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Ok(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
    }

    /// Allows every socket address (as `WasiCtxBuilder::inherit_network`).
    pub fn inherit_network(self) -> Self {
        self.socket_addr_check(Arc::new(|_, _| Box::pin(async { true })))
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

    /// Sets the memory that host-side calls of the `gup` traits on a
    /// [`PinCtxView`](crate::PinCtxView) (tests, an embedder driving the
    /// host directly) work on until the next guest call resolves its own.
    /// Guest calls always resolve their caller's memory themselves.
    pub fn attach(&mut self, mm: Arc<Mm>) {
        self.mm = Some(mm);
    }

    /// The memory the last pin resolved (or [`attach`](Self::attach) set).
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

    /// How many objects of each kind the guest holds now.
    pub fn held(&self) -> Objects {
        Objects {
            // Reopens live while any reference does; slots are counted.
            files: self.own_files.live() + self.held.files,
            ..self.held
        }
    }

    /// Refuses one more object of `kind` over its quota (`mfile`). Call
    /// before creating the descriptor behind it.
    pub(crate) fn admit(&self, kind: Kind) -> Result<(), Errno> {
        if self.held().get(kind) >= self.quotas.max(kind) {
            return Err(Errno::MFile);
        }
        Ok(())
    }

    /// The handle table of `owner`.
    pub(crate) fn core_handles(&mut self, owner: HandleOwner) -> &mut CoreHandles {
        self.core.entry(owner).or_default()
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
}
