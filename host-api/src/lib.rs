//! wasm-pin's host functions: an add-on to wasmtime-wasi with which guests
//! pin their own buffers and move bytes between WASI files or sockets and the
//! pinned pages with no copy.
//!
//! ```text
//!   wit/gup.wit, wit/io.wit ──bindgen!──► bindings (WASI types are wasmtime-wasi's)
//!                                             │
//!   component: add_to_linker_sync / _async ───┤  (gup by hand: caller's memory per call)
//!   core_abi:  add_to_core_linker ────────────┤
//!                                             ▼
//!        PinView::pins() ──► PinCtxView { ctx: &mut PinCtx, table: &mut ResourceTable }
//!                                             │                 (the table WasiView hands out)
//!           ┌─────────────────┬───────────────┼─────────────────┐
//!           ▼                 ▼               ▼                 ▼
//!        pins (gup,        io (WASI        net (own TCP,     handles (core-ABI
//!        quotas)           descriptors,    WASI's address    handles per
//!           │              backends)       check)            instance)
//!           ▼
//!   runtime_mm::gup on the caller's Mm (caller::Addr)
//! ```
//!
//! - [`PinCtx`] / [`PinView`] / [`PinCtxView`]: per-store state and how the
//!   imports reach it, in the manner of `wasmtime_wasi::WasiView`.
//! - [`add_to_linker_sync`] / [`add_to_linker_async`]: the component imports
//!   (`wasm-pin:mm/gup`, `zero-copy-io`, `one-call-io`, `zero-copy-net`), beside
//!   `wasmtime_wasi::p2::add_to_linker_sync` / `_async` on the same linker.
//! - [`add_to_core_linker`]: `gup` for core modules, integer ABI.
//! - [`Quotas`]: per-guest limits on every kind of object it can hold.
//! - [`io`]: zero-copy transfers on WASI descriptors (sync, vectored,
//!   io_uring and worker-thread async); [`net`]: zero-copy TCP.
//!
//! **How the host finds the guest's memory.** Component host functions get no
//! handle on the caller's memory in wasmtime 48. The local pin imports lift
//! their `start` argument as `caller::Addr`, which records the memory named
//! by the caller's `canon lower` options, and find its `Mm` among the live
//! memories of every [`PinMemoryCreator`] ([`PinMemoryCreator::find`]). So
//! each call pins its own caller's memory however the embedder instantiated
//! (sync, async, `instantiate_pre`, any world, composed components), with no
//! setup. `stats` and `page-maybe-dma-pinned`, which carry no address, learn
//! their caller from the lift too (`caller::CallerId`) and answer for that
//! instance's own memory. Core modules are found on every call through
//! their `memory` export; their handles belong to the instance (memory and
//! module), not to whatever memory it exports.
//!
//! A synchronous embedding:
//!
//! ```
//! use host_api::{PinCtx, PinCtxView, PinView};
//! use runtime_mm::PinMemoryCreator;
//! use wasmtime::component::{Linker, ResourceTable};
//! use wasmtime::{Config, Engine, Store};
//! use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
//!
//! struct State { wasi: WasiCtx, pins: PinCtx, table: ResourceTable }
//! impl WasiView for State {
//!     fn ctx(&mut self) -> WasiCtxView<'_> { WasiCtxView { ctx: &mut self.wasi, table: &mut self.table } }
//! }
//! impl PinView for State {
//!     fn pins(&mut self) -> PinCtxView<'_> { PinCtxView { ctx: &mut self.pins, table: &mut self.table } }
//! }
//!
//! let creator = PinMemoryCreator::new();
//! let mut config = Config::new();
//! creator.install(&mut config); // every guest memory is a pinnable Mm
//! let engine = Engine::new(&config)?;
//! let mut linker = Linker::<State>::new(&engine);
//! wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
//! host_api::add_to_linker_sync(&mut linker)?;
//! let state = State {
//!     wasi: WasiCtx::builder().inherit_stdio().build(),
//!     pins: PinCtx::default(),
//!     table: ResourceTable::new(),
//! };
//! let store = Store::new(&engine, state);
//! // Instantiate any WASI command, e.g. with
//! // `wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)`.
//! # drop(store);
//! # Ok::<(), wasmtime::Error>(())
//! ```
#![warn(missing_docs)]

pub mod bindings;
mod caller;
mod component;
mod core_abi;
mod ctx;
mod handles;
pub mod io;
pub mod net;
mod pins;
mod quotas;
mod streams;
mod view;

pub use bindings::wasm_pin::mm::gup::{Errno, GupFlags, MmStats};
pub use bindings::TestGuest;
pub use core_abi::{add_to_core_linker, add_to_core_linker_with, MODULE as CORE_MODULE};
pub use ctx::PinCtx;
pub use io::{BackendKind, IoConfig, IoCounts};
pub use net::SocketAddrCheck;
pub use pins::{fnv1a, GuestGrant, GuestPin, GuestPinVec};
pub use quotas::{Objects, Quotas};
pub use streams::add_p3_streams_to_linker;
pub use view::{HasPin, MmHost, PinCtxView, PinView, WasiP1PinHost, WasiPinHost};

use wasmtime::component::Linker;
use wasmtime::Result;

#[doc(no_inline)]
pub use runtime_mm::PinMemoryCreator;

/// Adds the pin imports (`wasm-pin:mm/gup`, `zero-copy-io`, `zero-copy-net`)
/// for a **synchronous** store, beside `wasmtime_wasi::p2::add_to_linker_sync`:
/// transfers and waits run on the calling thread, as WASI's sync calls do.
///
/// Fails if the linker's engine uses wasmtime's pooling allocator, on which
/// no memory is pinnable ([`PinMemoryCreator::check_allocator`]; pool with
/// [`PinMemoryCreator::pooled`] instead).
pub fn add_to_linker_sync<T: PinView + 'static>(linker: &mut Linker<T>) -> Result<()> {
    PinMemoryCreator::check_allocator(linker.engine())?;
    component::add_gup(linker, T::pins)?;
    io::sync::add_zero_copy_io(linker, T::pins)?;
    io::one_call::add_one_call_io(linker, T::pins, false, io::one_call::OneCall::P2)?;
    net::sync::add_zero_copy_net(linker, T::pins)
}

/// Adds the pin imports for an **asynchronous** store (driven with
/// `instantiate_async` / `call_async`), beside
/// `wasmtime_wasi::p2::add_to_linker_async`. No call blocks an executor
/// thread on I/O: a transfer runs on the io_uring or worker-thread backend
/// (or a blocking thread) and completes a future the store awaits; it works
/// on a current-thread tokio runtime. Fails on an engine with wasmtime's
/// pooling allocator, as [`add_to_linker_sync`] does.
///
/// It also adds `wasm-pin:p3/one-call-io` (`wit/p3`), the same one-call
/// transfers and `open-direct` on `wasi:filesystem@0.3.0` descriptors, for
/// WASI 0.3 programs (which run only in async stores); see also
/// [`add_p3_streams_to_linker`].
pub fn add_to_linker_async<T: PinView + 'static>(linker: &mut Linker<T>) -> Result<()> {
    use bindings::wasm_pin::mm::{zero_copy_io, zero_copy_net};
    PinMemoryCreator::check_allocator(linker.engine())?;
    component::add_gup(linker, T::pins)?;
    zero_copy_io::add_to_linker::<T, HasPin>(linker, T::pins)?;
    io::one_call::add_one_call_io(linker, T::pins, true, io::one_call::OneCall::P2)?;
    // WASI 0.3 programs, which run only in async stores.
    io::one_call::add_one_call_io(linker, T::pins, true, io::one_call::OneCall::P3)?;
    zero_copy_net::add_to_linker::<T, HasPin>(linker, T::pins)
}
