//! wasm-pin's host functions: guests pin their own buffers through imports.
//!
//! ```text
//!   wit/gup.wit ──bindgen!──► bindings ──► component (Host impls, add_to_linker)
//!                                              │
//!   core_abi (add_to_core_linker) ─────────────┤
//!                                              ▼
//!                        MmHost (per store: memory, ResourceTable, quotas)
//!                                              │
//!                                              ▼
//!                               runtime_mm::gup on the guest's Mm
//! ```
//!
//! - `bindings`: the WIT bindings (world `guest`).
//! - [`MmHost`] / [`Quotas`]: per-store state and per-guest limits.
//! - [`add_to_linker`]: the imports for component guests.
//! - [`add_to_core_linker`]: the same for core modules, integer ABI.
//! - [`instantiate`]: instantiates a component guest and attaches its memory.
//! - [`io`]: zero-copy file and socket I/O on pinned guest buffers (sync,
//!   vectored, io_uring and worker-thread async).
//!
//! **How the host finds the guest's memory.** Component host functions get no
//! handle on the caller's memory in wasmtime 48. The local pin imports lift
//! their `start` argument as `caller::Addr`, which records the memory named
//! by the caller's `canon lower` options, and find its `Mm` among the live
//! memories of every [`PinMemoryCreator`] ([`PinMemoryCreator::find`]). So
//! each call pins its own caller's memory, however the embedder
//! instantiated, also in composed components. The imports without an
//! address (`stats`, `page-maybe-dma-pinned`) use the memory the store's
//! last pin resolved, or the one [`instantiate`] / [`MmHost::attach`] set.
//! Core modules are found on every call through their `memory` export.
#![warn(missing_docs)]

pub mod bindings;
mod caller;
mod component;
mod core_abi;
mod handles;
mod host;
pub mod io;

pub use bindings::{Errno, Guest, GupFlags, MmStats};
pub use component::add_to_linker;
pub use core_abi::{add_to_core_linker, MODULE as CORE_MODULE};
pub use host::{fnv1a, GuestGrant, GuestPin, MmHost, Objects, Printer, Quotas};
pub use io::{BackendKind, IoConfig, IoCounts};

use runtime_mm::PinMemoryCreator;
use wasmtime::component::{Component, Linker};
use wasmtime::{Result, Store};

/// Instantiates a `guest`-world component and attaches its memory to the
/// store's [`MmHost`] (found by `get`). Fails if the component defines no
/// memory or the engine does not use `creator`.
///
/// Not needed for pinning (each pin finds its caller's memory); it sets the
/// memory that `stats` and `page-maybe-dma-pinned` answer for before the
/// guest's first pin.
pub fn instantiate<T: 'static>(
    store: &mut Store<T>,
    linker: &Linker<T>,
    component: &Component,
    creator: &PinMemoryCreator,
    get: fn(&mut T) -> &mut MmHost,
) -> Result<Guest> {
    let (guest, mms) = creator.capture(|| Guest::instantiate(&mut *store, component, linker));
    let guest = guest?;
    let mm = mms.into_iter().next().ok_or_else(|| {
        wasmtime::Error::msg("the component defines no memory made by this engine's PinMemoryCreator")
    })?;
    get(store.data_mut()).attach(mm);
    Ok(guest)
}
