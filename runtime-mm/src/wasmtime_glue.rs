//! wasmtime glue: a [`MemoryCreator`] whose memories are [`Mm`]s, and the
//! registry an embedder uses to find the `Arc<Mm>` behind a guest's memory.
//!
//! Install with [`PinMemoryCreator::install`], which also sets the options a
//! custom memory needs in wasmtime 48 (`memory_init_cow(false)`: copy-on-write
//! images exist only for wasmtime's own mmap memories). Every memory a module
//! or component *defines* is then an `Mm`, shared (threads) ones included;
//! memories made by `Memory::new` / `SharedMemory::new` on the host bypass
//! creators and are not `Mm`s.
//!
//! Two modes:
//! - **on demand** ([`PinMemoryCreator::new`]): each memory reserves and
//!   unmaps its own address space, like wasmtime's default allocator;
//! - **pooled** ([`PinMemoryCreator::pooled`]): memories live on the slots
//!   of a [`MemoryPool`], reserved once and reset for reuse, with a slot
//!   quarantined while pins outlive its memory (see [`crate::pool`]). This is
//!   the production mode: wasmtime's own pooling allocator
//!   (`InstanceAllocationStrategy::Pooling`) ignores `with_host_memory` in
//!   wasmtime 48, so it cannot be combined with any creator.
//!   [`PinMemoryCreator::check`] (or [`PinMemoryCreator::build_engine`])
//!   refuses such an engine with an error naming the cause and the fix;
//!   `install` cannot, as the strategy may be set after it.
//!
//! Finding the `Mm` of an instance:
//! - core modules: [`PinMemoryCreator::mm_of_memory`] (by the memory's base
//!   address, which never moves);
//! - components, whose host functions get no handle on guest memory:
//!   [`PinMemoryCreator::capture`] records the memories created on the
//!   current thread while the closure runs (instantiation calls the creator
//!   synchronously on the instantiating thread), so concurrent instantiations
//!   on other threads are never mixed up.

use crate::{LongtermChunks, MemoryPool, Mm, MmConfig, PoolConfig, PoolError};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use wasmtime::{
    AsContext, Config, Engine, Instance, LinearMemory, Memory, MemoryCreator, MemoryType, Module, SharedMemory, Store,
};

/// Creates every wasm-defined linear memory of an engine as an [`Mm`], on
/// demand or on the slots of a [`MemoryPool`].
#[derive(Debug)]
pub struct PinMemoryCreator {
    id: usize,
    memlock_limit_bytes: u64,
    longterm_chunks: LongtermChunks,
    registry: Arc<Registry>,
    created: AtomicUsize,
    pool: Option<Arc<MemoryPool>>,
}

/// Live memories by base address.
type Registry = Mutex<BTreeMap<usize, Weak<Mm>>>;

/// Every live wasm memory made by any `PinMemoryCreator`, by base address:
/// how a component host function, which learns only its caller's memory
/// base (`host_api`'s caller lifting), finds the `Mm`. Bases are unique
/// while mapped, and an entry leaves before its memory can be unmapped.
static ALL: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Default::default);

fn lock(reg: &Registry) -> std::sync::MutexGuard<'_, BTreeMap<usize, Weak<Mm>>> {
    // Every critical section is a single map operation: poisoning carries no
    // broken invariant.
    reg.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// Open capture scopes on this thread: (creator id, memories created).
    static CAPTURES: RefCell<Vec<(usize, Vec<Arc<Mm>>)>> = const { RefCell::new(Vec::new()) };
}

impl PinMemoryCreator {
    /// A creator whose memories get the default memlock limit
    /// ([`MmConfig::default`]).
    pub fn new() -> Arc<Self> {
        Self::with_memlock_limit(MmConfig::default().memlock_limit_bytes)
    }

    /// A creator whose memories each get `bytes` of memlock limit for
    /// long-term pins.
    pub fn with_memlock_limit(bytes: u64) -> Arc<Self> {
        Self::build(bytes, None)
    }

    /// A creator whose memories each get `memlock_limit_bytes` of memlock
    /// limit and lock long-term pins in `chunks` ([`MmConfig::longterm_chunks`]:
    /// e.g. [`LongtermChunks::PerPage`] for the kernel's exact per-page
    /// accounting on THP-backed memories too).
    pub fn with_longterm_chunks(memlock_limit_bytes: u64, chunks: LongtermChunks) -> Arc<Self> {
        Self::build_with(memlock_limit_bytes, chunks, None)
    }

    /// A pooled creator: every memory lives on a slot of a new
    /// [`MemoryPool`] (reserved now, once), is reset when its last reference
    /// goes, and a memory dropped under pins keeps its slot quarantined until
    /// they are released. More memories alive at once than `config.slots` is
    /// an instantiation error. Errors: the pool's reservation failed.
    ///
    /// Use it with wasmtime's default on-demand instance allocator, not its
    /// pooling allocator (which would bypass it; see [`check`](Self::check)).
    ///
    /// ```
    /// use runtime_mm::{PinMemoryCreator, PoolConfig};
    ///
    /// let creator = PinMemoryCreator::pooled(PoolConfig { slots: 8, max_memory_bytes: 64 << 20, ..Default::default() })?;
    /// let engine = creator.build_engine(&mut wasmtime::Config::new())?;
    /// let module = wasmtime::Module::new(&engine, r#"(module (memory (export "memory") 1))"#)?;
    /// let mut store = wasmtime::Store::new(&engine, ());
    /// let instance = wasmtime::Instance::new(&mut store, &module, &[])?;
    /// let memory = instance.get_memory(&mut store, "memory").unwrap();
    /// assert!(creator.mm_of_memory(&store, &memory).is_some());
    /// assert_eq!(creator.pool().unwrap().stats().live, 1);
    /// drop(store); // the pool's reset worker resets the slot
    /// assert!(creator.pool().unwrap().wait_for_resets(std::time::Duration::from_secs(5)));
    /// assert_eq!(creator.pool().unwrap().stats().free, 8);
    /// # Ok::<(), wasmtime::Error>(())
    /// ```
    pub fn pooled(config: PoolConfig) -> Result<Arc<Self>, PoolError> {
        Ok(Self::build(config.memlock_limit_bytes, Some(MemoryPool::new(config)?)))
    }

    fn build(memlock_limit_bytes: u64, pool: Option<Arc<MemoryPool>>) -> Arc<Self> {
        Self::build_with(memlock_limit_bytes, LongtermChunks::Auto, pool)
    }

    fn build_with(
        memlock_limit_bytes: u64,
        longterm_chunks: LongtermChunks,
        pool: Option<Arc<MemoryPool>>,
    ) -> Arc<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        Arc::new(PinMemoryCreator {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            memlock_limit_bytes,
            longterm_chunks,
            registry: Arc::new(Mutex::new(BTreeMap::new())),
            created: AtomicUsize::new(0),
            pool,
        })
    }

    /// The pool of a pooled creator.
    pub fn pool(&self) -> Option<&Arc<MemoryPool>> {
        self.pool.as_ref()
    }

    /// Installs this creator in `config` with the settings it needs; a
    /// pooled creator also sets `memory_reservation` and `memory_guard_size`
    /// to its slots', so that compiled code assumes no more address space
    /// than a slot has.
    ///
    /// It cannot see an allocation strategy set later: check the engine with
    /// [`check`](Self::check), or build it with
    /// [`build_engine`](Self::build_engine), which does both.
    ///
    /// ```
    /// let creator = runtime_mm::PinMemoryCreator::new();
    /// let mut config = wasmtime::Config::new();
    /// creator.install(&mut config);
    /// let engine = wasmtime::Engine::new(&config).unwrap();
    /// # let _ = engine;
    /// ```
    pub fn install<'c>(self: &Arc<Self>, config: &'c mut Config) -> &'c mut Config {
        config.with_host_memory(self.clone()).memory_init_cow(false);
        if let Some(pool) = &self.pool {
            config
                .memory_reservation(pool.config().max_memory_bytes)
                .memory_guard_size(pool.config().guard_bytes);
        }
        config
    }

    /// Installs this creator in `config`, builds the engine and
    /// [`check`](Self::check)s it.
    ///
    /// `config` (like the engine) keeps a reference to the creator, and so
    /// to its pool: the pool (its reservation, page tables and reset
    /// thread) lives until the engine, every store, the creator and
    /// `config` are all dropped.
    pub fn build_engine(self: &Arc<Self>, config: &mut Config) -> wasmtime::Result<Engine> {
        let engine = Engine::new(self.install(config))?;
        self.check(&engine)?;
        Ok(engine)
    }

    /// Fails, naming the cause and the fix, unless `engine`'s wasm memories
    /// are made by this creator: the engine must not use wasmtime's pooling
    /// allocator ([`check_allocator`](Self::check_allocator)), and a probe
    /// memory instantiated on it must come from this creator (it was
    /// installed, and no other `with_host_memory` replaced it). The probe
    /// compiles and instantiates a one-memory module (no code) once.
    pub fn check(&self, engine: &Engine) -> wasmtime::Result<()> {
        Self::check_allocator(engine)?;
        // (module (memory 0)), in binary: no `wat` needed.
        const PROBE: &[u8] = &[0, b'a', b's', b'm', 1, 0, 0, 0, 5, 3, 1, 0, 0];
        let module =
            Module::new(engine, PROBE).map_err(|e| e.context("PinMemoryCreator::check: compiling the probe module"))?;
        let mut store = Store::new(engine, ());
        let (made, mms) = self.capture(|| Instance::new(&mut store, &module, &[]).map(drop));
        made.map_err(|e| e.context("PinMemoryCreator::check: instantiating the probe memory"))?;
        if mms.is_empty() {
            wasmtime::bail!(
                "this engine's linear memories are not made by this PinMemoryCreator, so they are not pinnable:                  call creator.install(&mut config) before Engine::new(&config), and no Config::with_host_memory                  after it (it replaces the creator)"
            );
        }
        Ok(())
    }

    /// Fails if `engine` uses wasmtime's pooling allocator
    /// (`InstanceAllocationStrategy::Pooling`), which in wasmtime 48 ignores
    /// `Config::with_host_memory`: no memory would be an `Mm`, and every pin
    /// would fail. The error names the fix: the default on-demand strategy
    /// with [`PinMemoryCreator::pooled`].
    pub fn check_allocator(engine: &Engine) -> wasmtime::Result<()> {
        if engine.pooling_allocator_metrics().is_some() {
            wasmtime::bail!(
                "this engine uses wasmtime's pooling allocator (InstanceAllocationStrategy::Pooling), which in                  wasmtime 48 ignores Config::with_host_memory: its linear memories are not pinnable Mm's, so every                  pin would fail. Keep the default on-demand strategy (Config::allocation_strategy(\
                 InstanceAllocationStrategy::OnDemand)) and pool the memories with PinMemoryCreator::pooled(\
                 PoolConfig {{ .. }}) instead"
            );
        }
        Ok(())
    }

    /// The live `Mm` whose base is `base`, if this creator made it and its
    /// wasm memory still exists.
    pub fn mm_for_base(&self, base: *const u8) -> Option<Arc<Mm>> {
        lock(&self.registry).get(&(base as usize)).and_then(Weak::upgrade)
    }

    /// The live wasm memory at `base` made by *any* `PinMemoryCreator` in
    /// this process: for host code that knows a caller's memory base but not
    /// the creator (component imports).
    pub fn find(base: *const u8) -> Option<Arc<Mm>> {
        lock(&ALL).get(&(base as usize)).and_then(Weak::upgrade)
    }

    /// The live `Mm` whose accessible bytes hold all of `[addr, addr+len)`,
    /// if any: how a host that is handed a slice of some guest's memory
    /// (a WASI 0.3 stream read lends the reader's buffer) finds the memory
    /// to pin it in. `None` for host memory or a memory no creator made.
    pub fn find_containing(addr: *const u8, len: usize) -> Option<Arc<Mm>> {
        let addr = addr as usize;
        let mm = lock(&ALL).range(..=addr).next_back().and_then(|(_, w)| w.upgrade())?;
        let start = addr - mm.base() as usize;
        let end = (start as u64).checked_add(len as u64)?;
        (end <= mm.len()).then_some(mm)
    }

    /// The `Mm` behind a core instance's memory (`caller.get_export("memory")`).
    pub fn mm_of_memory(&self, store: impl AsContext, memory: &Memory) -> Option<Arc<Mm>> {
        self.mm_for_base(memory.data_ptr(&store))
    }

    /// The `Mm` behind a module-defined shared memory.
    pub fn mm_of_shared_memory(&self, memory: &SharedMemory) -> Option<Arc<Mm>> {
        self.mm_for_base(memory.data().as_ptr().cast())
    }

    /// Runs `f` and returns, with its result, the memories this creator made
    /// on this thread meanwhile, in creation order. Wrap a synchronous
    /// instantiation in it to learn the memories of the new instance; for a
    /// component built by `wit-component`, the first is the main module's
    /// memory, the one its canonical ABI uses.
    ///
    /// Scopes nest; a memory goes to the innermost scope of its creator.
    pub fn capture<R>(&self, f: impl FnOnce() -> R) -> (R, Vec<Arc<Mm>>) {
        struct Scope(usize);
        impl Drop for Scope {
            fn drop(&mut self) {
                // Pops even if `f` panicked, so a later scope starts clean.
                CAPTURES.with(|c| c.borrow_mut().truncate(self.0));
            }
        }
        let depth = CAPTURES.with(|c| {
            let mut c = c.borrow_mut();
            c.push((self.id, Vec::new()));
            c.len() - 1
        });
        let scope = Scope(depth);
        let r = f();
        let mms = CAPTURES.with(|c| std::mem::take(&mut c.borrow_mut()[depth].1));
        drop(scope);
        (r, mms)
    }

    /// Number of memories this creator has made so far.
    pub fn memories_created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// Number of wasm memories made by this creator that are still alive.
    pub fn live_memories(&self) -> usize {
        lock(&self.registry).values().filter(|w| w.strong_count() > 0).count()
    }
}

/// The [`LinearMemory`] wasmtime sees: an `Arc<Mm>`, so pins outlive it.
struct MmMemory {
    mm: Arc<Mm>,
    registry: Weak<Registry>,
}

// SAFETY: `as_ptr` is the base of a reservation of `capacity + guard` bytes
// that stays mapped while `self.mm` lives and never moves; bytes past
// `byte_size` are inaccessible, growth commits zeroed pages, and wasmtime's
// own accesses stay within `byte_size` (or fault in the PROT_NONE tail).
unsafe impl LinearMemory for MmMemory {
    fn byte_size(&self) -> usize {
        self.mm.len() as usize
    }

    fn byte_capacity(&self) -> usize {
        self.mm.capacity() as usize
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        self.mm.grow_to(new_size as u64).map_err(wasmtime::Error::new)
    }

    fn as_ptr(&self) -> *mut u8 {
        self.mm.base()
    }
}

impl Drop for MmMemory {
    fn drop(&mut self) {
        // Registry entries first: after them, nothing can make a new
        // reference from a weak one (which `note_released` relies on).
        let key = self.mm.base() as usize;
        let forget = |reg: &Registry| {
            let mut reg = lock(reg);
            if reg
                .get(&key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.mm)))
            {
                reg.remove(&key);
            }
        };
        if let Some(registry) = self.registry.upgrade() {
            forget(&registry);
        }
        forget(&ALL);
        // A pooled memory still referenced (pins, I/O, a `PinCtx`) keeps its
        // slot quarantined; otherwise our `Arc`, dropped next, resets it.
        if let Some(lease) = self.mm.lease() {
            lease.pool().note_released(&self.mm);
        }
    }
}

// SAFETY: every memory returned is an `MmMemory`, whose contract is stated on
// its `LinearMemory` impl: it reserves `reserved + guard` bytes (never fewer
// than wasmtime asked for: a pool slot too small is refused), zero-fills (a
// reused slot is reset first), and never moves its base.
unsafe impl MemoryCreator for PinMemoryCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let reservation = reserved_size_in_bytes.or(maximum).unwrap_or(minimum).max(minimum);
        // wasmtime's compiled code assumes that a memory whose minimum fits in
        // the reservation never grows past the reservation, to the byte. Ours
        // is rounded up to host pages, so without this bound a memory of
        // 1-byte pages could grow into the rounding (the bug 48.0.10 fixed in
        // wasmtime's own memories, whose check trusts our capacity).
        let cap = reserved_size_in_bytes.filter(|&r| minimum <= r);
        let max = match (maximum, cap) {
            (Some(m), Some(c)) => Some(m.min(c)),
            (m, c) => m.or(c),
        };
        let (initial, max) = (minimum as u64, max.map(|m| m as u64));
        let mm = match &self.pool {
            None => Mm::new(MmConfig {
                initial_bytes: initial,
                maximum_bytes: max,
                reservation_bytes: reservation as u64,
                guard_bytes: guard_size_in_bytes as u64,
                memlock_limit_bytes: self.memlock_limit_bytes,
                longterm_chunks: self.longterm_chunks,
                ..MmConfig::default()
            })
            .map_err(PoolError::Mm),
            Some(pool) => pool.alloc_reserved(initial, max, reservation as u64, guard_size_in_bytes as u64),
        }
        .map_err(|e| format!("cannot create linear memory of {minimum} bytes: {e}"))?;
        self.created.fetch_add(1, Ordering::Relaxed);
        lock(&self.registry).insert(mm.base() as usize, Arc::downgrade(&mm));
        lock(&ALL).insert(mm.base() as usize, Arc::downgrade(&mm));
        CAPTURES.with(|c| {
            if let Some((_, mms)) = c.borrow_mut().iter_mut().rev().find(|(id, _)| *id == self.id) {
                mms.push(mm.clone());
            }
        });
        let registry = Arc::downgrade(&self.registry);
        Ok(Box::new(MmMemory { mm, registry }))
    }
}
