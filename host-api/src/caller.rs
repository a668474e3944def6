//! Finding the calling instance's memory, per call, for component imports.
//!
//! wasmtime 48 gives a component host function no handle on its caller's
//! memory. It does lift the call's arguments through a `LiftContext` that
//! holds the memory named by the caller's `canon lower` options: the memory
//! of the very (sub-)component that made the call. [`Addr`] is a `u64`
//! argument that records that memory's base while it is lifted; the import
//! then finds the `Mm` with [`PinMemoryCreator::find`]. So however the
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
//! This uses wasmtime's `__internal` lifting traits, which are not covered by
//! its semver promise: the crate pins wasmtime `48.0.x`, and
//! `tests/guest_boundary.rs` fails loudly if the behaviour changes.

use crate::view::PinCtxView;
use crate::PinCtx;
use runtime_mm::{Errno, Mm, PinMemoryCreator};
use std::sync::Arc;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift};

/// A `u64` guest address together with the base of the caller's memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addr {
    pub value: u64,
    /// Base of the caller's canonical-ABI memory (0: the call had none).
    base: usize,
}

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
    pub(crate) fn memory_of(&mut self, addr: &Addr) -> Result<Arc<Mm>, Errno> {
        let Some(mm) = addr.memory(self.memory()) else {
            self.warn_no_memory();
            return Err(Errno::OpNotSupp);
        };
        // The common case, the same memory as the last call: nothing to swap.
        if !self.memory().is_some_and(|m| Arc::ptr_eq(m, &mm)) {
            self.attach(mm.clone());
        }
        Ok(mm)
    }
}

impl Addr {
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

    fn new(value: u64, cx: &LiftContext<'_>) -> Addr {
        let mem = cx.memory();
        let base = if mem.is_empty() { 0 } else { mem.as_ptr() as usize };
        Addr { value, base }
    }
}

// SAFETY: every item forwards to `u64`'s implementation: the same lowered
// representation, ABI and type check, so wasmtime lifts an `Addr` exactly
// where it would lift a `u64`.
unsafe impl ComponentType for Addr {
    type Lower = <u64 as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <u64 as ComponentType>::ABI;
    const MAY_REQUIRE_REALLOC: bool = false;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <u64 as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lifting is `u64`'s; reading `cx.memory()`'s base address touches no
// guest byte.
unsafe impl Lift for Addr {
    fn linear_lift_from_flat(cx: &mut LiftContext<'_>, ty: InterfaceType, src: &Self::Lower) -> wasmtime::Result<Self> {
        let v = u64::linear_lift_from_flat(cx, ty, src)?;
        Ok(Addr::new(v, cx))
    }

    fn linear_lift_from_memory(cx: &mut LiftContext<'_>, ty: InterfaceType, bytes: &[u8]) -> wasmtime::Result<Self> {
        let v = u64::linear_lift_from_memory(cx, ty, bytes)?;
        Ok(Addr::new(v, cx))
    }
}
