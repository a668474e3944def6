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
//! Finding the `Mm` of an instance:
//! - core modules: [`PinMemoryCreator::mm_of_memory`] (by the memory's base
//!   address, which never moves);
//! - components, whose host functions get no handle on guest memory:
//!   [`PinMemoryCreator::capture`] records the memories created on the
//!   current thread while the closure runs (instantiation calls the creator
//!   synchronously on the instantiating thread), so concurrent instantiations
//!   on other threads are never mixed up.

use crate::{Mm, MmConfig};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use wasmtime::{AsContext, Config, LinearMemory, Memory, MemoryCreator, MemoryType, SharedMemory};

/// Creates every wasm-defined linear memory of an engine as an [`Mm`].
#[derive(Debug)]
pub struct PinMemoryCreator {
    id: usize,
    memlock_limit_bytes: u64,
    registry: Arc<Registry>,
    created: AtomicUsize,
}

/// Live memories by base address.
type Registry = Mutex<HashMap<usize, Weak<Mm>>>;

/// Every live wasm memory made by any `PinMemoryCreator`, by base address:
/// how a component host function, which learns only its caller's memory
/// base (`host_api`'s caller lifting), finds the `Mm`. Bases are unique
/// while mapped, and an entry leaves before its memory can be unmapped.
static ALL: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Default::default);

fn lock(reg: &Registry) -> std::sync::MutexGuard<'_, HashMap<usize, Weak<Mm>>> {
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
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        Arc::new(PinMemoryCreator {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            memlock_limit_bytes: bytes,
            registry: Arc::new(Mutex::new(HashMap::new())),
            created: AtomicUsize::new(0),
        })
    }

    /// Installs this creator in `config` with the settings it needs.
    ///
    /// ```
    /// let creator = runtime_mm::PinMemoryCreator::new();
    /// let mut config = wasmtime::Config::new();
    /// creator.install(&mut config);
    /// let engine = wasmtime::Engine::new(&config).unwrap();
    /// # let _ = engine;
    /// ```
    pub fn install<'c>(self: &Arc<Self>, config: &'c mut Config) -> &'c mut Config {
        config.with_host_memory(self.clone()).memory_init_cow(false)
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
    }
}

// SAFETY: every memory returned is an `MmMemory`, whose contract is stated on
// its `LinearMemory` impl: it reserves `reserved + guard` bytes (never fewer
// than wasmtime asked for), zero-fills, and never moves its base.
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
        let mm = Mm::new(MmConfig {
            initial_bytes: minimum as u64,
            maximum_bytes: maximum.map(|m| m as u64),
            reservation_bytes: reservation as u64,
            guard_bytes: guard_size_in_bytes as u64,
            memlock_limit_bytes: self.memlock_limit_bytes,
        })
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
