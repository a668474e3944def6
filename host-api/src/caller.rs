//! Finding the calling instance's memory, per call, for component imports.
//!
//! wasmtime 48 gives a component host function no handle on its caller's
//! memory. It does lift the call's arguments through a `LiftContext` that
//! holds the memory named by the caller's `canon lower` options: the memory
//! of the very (sub-)component that made the call. [`Called`] wraps an
//! argument and records that memory's base while it is lifted ([`Addr`]: a
//! `u64` address); the import then finds the `Mm` with
//! [`PinMemoryCreator::find`], and the base names the calling instance
//! (registered-file slots keep one table per instance by it). So however the
//! embedder instantiated (sync, async, `instantiate_pre`, a composed
//! component whose sub-components each have a memory), each call resolves
//! addresses against its own caller's memory, with no setup.
//!
//! `wit-component` gives a `canon lower` a memory whenever the import needs
//! one: lists, strings, or a result returned through memory. Every import
//! that takes an [`Addr`] returns a `result` or a record, which always goes
//! through memory, so the memory is always there for them. (wasmtime hands an
//! empty slice where there is none; [`Addr::memory`] is then `None`.)
//!
//! The lift also records the caller's identity ([`CallerId`]: the store's
//! component instance and the sub-instance named by the `canon lower`
//! options), which exists even for a call that passes no memory. The
//! imports that carry no address (`stats`, `page-maybe-dma-pinned`) use it
//! to answer about the caller's own memory, never another instance's.
//!
//! This uses wasmtime's `__internal` lifting traits and the instance
//! accessors of `LiftContext`, which are not covered by its semver promise:
//! the crate pins wasmtime `48.0.x`. Checked against wasmtime 48.0.8 (the
//! lock) and read against 48.0.10's source, which leaves `LiftContext`
//! unchanged; `tests/guest_boundary.rs` fails loudly if the behaviour
//! changes.

use crate::view::PinCtxView;
use crate::PinCtx;
use runtime_mm::{Errno, Mm, PinMemoryCreator};
use std::sync::Arc;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentNamedList, ComponentType, Lift};

/// An argument together with who made the call: the calling (sub-)instance
/// and the base of its memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Called<T> {
    pub value: T,
    /// Base of the caller's canonical-ABI memory (0: the call had none).
    pub base: usize,
    /// The calling instance, whether or not the call carried a memory.
    pub caller: CallerId,
}

/// The identity of a calling component instance in its store: the
/// top-level instance (never reused while the store lives) and the
/// sub-instance inside it whose `canon lower` made the call. Two
/// components in one store, or two sub-components of one composed
/// component, never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct CallerId {
    instance: u32,
    sub: u32,
}

#[cfg(test)]
impl CallerId {
    pub(crate) fn new(instance: u32, sub: u32) -> CallerId {
        CallerId { instance, sub }
    }
}

/// A `u64` guest address with the caller's memory.
pub(crate) type Addr = Called<u64>;

impl PinCtxView<'_> {
    /// The memory a local call works on: the caller's (`addr`'s), attached
    /// as the store's memory (so `stats` and `page-maybe-dma-pinned` answer
    /// for it); for a call that passed no address, the store's
    /// ([`own_mm`](Self::own_mm)). `opnotsupp`, with one line on stderr,
    /// where it is not an `Mm`.
    pub(crate) fn caller_memory(&mut self, addr: Option<&Addr>) -> Result<Arc<Mm>, Errno> {
        match addr {
            Some(addr) => self.ctx.memory_of(addr),
            None => self.own_mm(),
        }
    }
}

impl PinCtx {
    /// [`PinCtxView::caller_memory`] for a call that passed `addr`: needs
    /// only the context, so the caller may hold the table meanwhile.
    pub(crate) fn memory_of<T>(&mut self, addr: &Called<T>) -> Result<Arc<Mm>, Errno> {
        let Some(mm) = addr.memory(self.memory()) else {
            self.warn_no_memory();
            return Err(Errno::OpNotSupp);
        };
        // The common case, the same caller and memory as the last call:
        // nothing to swap or record.
        if addr.caller != self.last_caller || !self.memory().is_some_and(|m| Arc::ptr_eq(m, &mm)) {
            self.attach(mm.clone());
            self.callers.insert(addr.caller, mm.clone());
            self.last_caller = addr.caller;
        }
        Ok(mm)
    }

    /// The calling instance's own memory, for the imports that carry no
    /// address (`stats`, `page-maybe-dma-pinned`): the call's memory where
    /// its `canon lower` has one, else the one this instance's earlier
    /// calls resolved. `None`: the instance never made a call with its
    /// memory, so it holds no pin of its own.
    pub(crate) fn own_memory_of<T>(&mut self, call: &Called<T>) -> Option<Arc<Mm>> {
        if call.base != 0 {
            return self.memory_of(call).ok();
        }
        self.callers.get(&call.caller).cloned()
    }
}

impl<T> Called<T> {
    /// The caller's memory, if it is a live `Mm` of a `PinMemoryCreator`.
    /// `last` is the memory the store's previous pin resolved: the same
    /// base means the same memory (a store's memories live as long as the
    /// store, and `last` keeps its own mapping alive, so no other memory can
    /// have that base), which spares the registry's lock on every call.
    pub(crate) fn memory(&self, last: Option<&Arc<Mm>>) -> Option<Arc<Mm>> {
        if self.base == 0 {
            return None;
        }
        match last {
            Some(mm) if mm.base() as usize == self.base => Some(mm.clone()),
            _ => PinMemoryCreator::find(self.base as *const u8),
        }
    }

    fn new(value: T, cx: &mut LiftContext<'_>) -> Called<T> {
        let mem = cx.memory();
        let base = if mem.is_empty() { 0 } else { mem.as_ptr() as usize };
        let caller = CallerId {
            instance: cx.instance_mut().id().as_u32(),
            sub: cx.options().instance.as_u32(),
        };
        Called { value, base, caller }
    }
}

// SAFETY: every item forwards to `T`'s implementation: the same lowered
// representation, ABI and type check, so wasmtime lifts a `Called<T>`
// exactly where it would lift a `T`.
unsafe impl<T: ComponentType> ComponentType for Called<T> {
    type Lower = T::Lower;
    const ABI: CanonicalAbiInfo = T::ABI;
    const MAY_REQUIRE_REALLOC: bool = T::MAY_REQUIRE_REALLOC;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        T::typecheck(ty, types)
    }
}

// SAFETY: a `Called` of a parameter list is lifted exactly as the list is
// (all of `ComponentType` forwards to `T`), so it is a list of the same
// names and types: what `ComponentNamedList` promises. It lets an import
// whose parameters carry no address (`stats()`) still learn its caller.
unsafe impl<T: ComponentNamedList> ComponentNamedList for Called<T> {}

// SAFETY: lifting is `T`'s; reading `cx.memory()`'s base address and the
// lifting options' instance touches no guest byte.
unsafe impl<T: Lift> Lift for Called<T> {
    fn linear_lift_from_flat(cx: &mut LiftContext<'_>, ty: InterfaceType, src: &Self::Lower) -> wasmtime::Result<Self> {
        let v = T::linear_lift_from_flat(cx, ty, src)?;
        Ok(Called::new(v, cx))
    }

    fn linear_lift_from_memory(cx: &mut LiftContext<'_>, ty: InterfaceType, bytes: &[u8]) -> wasmtime::Result<Self> {
        let v = T::linear_lift_from_memory(cx, ty, bytes)?;
        Ok(Called::new(v, cx))
    }
}
