//! How the pin imports reach the store's state, in wasmtime-wasi's manner
//! (compare `wasmtime_wasi::WasiView` / `WasiCtxView`).
//!
//! The imports keep their resources (pins, grants, tickets, sockets) in the
//! store's one `ResourceTable`, the one the embedder's `WasiView` hands
//! out, so a pin and a WASI descriptor can be used in one call.
//!
//! ```
//! use host_api::{PinCtx, PinCtxView, PinView};
//! use wasmtime::component::ResourceTable;
//! use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
//!
//! struct State {
//!     wasi: WasiCtx,
//!     pins: PinCtx,
//!     table: ResourceTable,
//! }
//!
//! impl WasiView for State {
//!     fn ctx(&mut self) -> WasiCtxView<'_> {
//!         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
//!     }
//! }
//!
//! impl PinView for State {
//!     fn pins(&mut self) -> PinCtxView<'_> {
//!         PinCtxView { ctx: &mut self.pins, table: &mut self.table }
//!     }
//! }
//! ```

use crate::ctx::PinCtx;
use crate::quotas::Quotas;
use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The pin imports' view of a store: its [`PinCtx`] and the shared table.
pub struct PinCtxView<'a> {
    /// The pin state.
    pub ctx: &'a mut PinCtx,
    /// The store's resource table, shared with WASI.
    pub table: &'a mut ResourceTable,
}

/// A store's data that can give the pin imports their view. Implement it
/// next to `wasmtime_wasi::WasiView`, returning the same table.
pub trait PinView: Send {
    /// The pin state and the store's table.
    fn pins(&mut self) -> PinCtxView<'_>;
}

/// The `HasData` marker of the pin imports (`Data<'a> = PinCtxView<'a>`).
pub struct HasPin;

impl HasData for HasPin {
    type Data<'a> = PinCtxView<'a>;
}

/// A [`PinCtx`] with its own table: the store data of an embedding that
/// uses the pin imports without WASI (the `gup` interface alone, tests).
#[derive(Default)]
pub struct MmHost {
    /// The pin state.
    pub ctx: PinCtx,
    /// The store's resource table.
    pub table: ResourceTable,
}

impl MmHost {
    /// A host with the given quotas.
    pub fn new(quotas: Quotas) -> MmHost {
        MmHost::from(PinCtx::new(quotas))
    }
}

impl From<PinCtx> for MmHost {
    fn from(ctx: PinCtx) -> MmHost {
        MmHost {
            ctx,
            table: ResourceTable::new(),
        }
    }
}

impl std::fmt::Debug for MmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.ctx.fmt(f)
    }
}

impl std::ops::Deref for MmHost {
    type Target = PinCtx;
    fn deref(&self) -> &PinCtx {
        &self.ctx
    }
}

impl std::ops::DerefMut for MmHost {
    fn deref_mut(&mut self) -> &mut PinCtx {
        &mut self.ctx
    }
}

impl PinView for MmHost {
    fn pins(&mut self) -> PinCtxView<'_> {
        PinCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The store data of an embedding that runs WASI guests with the pin
/// imports: wasmtime-wasi's context, the pin context, and the one table both
/// keep their resources in (what `wasm-pin run`, the soak and the tests
/// use). An embedder with more state writes its own, as this one does.
pub struct WasiPinHost {
    /// wasmtime-wasi's context.
    pub wasi: WasiCtx,
    /// The pin state.
    pub pins: PinCtx,
    /// The store's resource table, shared by WASI and the pin imports.
    pub table: ResourceTable,
}

impl WasiPinHost {
    /// A store's data with a fresh table.
    pub fn new(wasi: WasiCtx, pins: PinCtx) -> WasiPinHost {
        WasiPinHost {
            wasi,
            pins,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for WasiPinHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PinView for WasiPinHost {
    fn pins(&mut self) -> PinCtxView<'_> {
        PinCtxView {
            ctx: &mut self.pins,
            table: &mut self.table,
        }
    }
}

/// The store data of a WASI preview1 core module (a `wasm32-wasip1`
/// program) with the core-ABI pin imports, as `wasm-pin run` runs one:
/// wasmtime-wasi's p1 context, which keeps its own descriptor table, and the
/// pin context with the table its handles live in.
///
/// Compose it as `wasmtime run` composes p1 (`wasmtime_wasi::p1`,
/// `add_to_linker_sync` or `_async`) with [`add_to_core_linker`](crate::add_to_core_linker)
/// beside it on one linker. The module's own memory comes from the engine's
/// [`PinMemoryCreator`](runtime_mm::PinMemoryCreator), so the pin imports
/// pin it in place:
///
/// ```
/// use host_api::{PinCtx, Quotas, WasiP1PinHost};
/// use runtime_mm::PinMemoryCreator;
/// use wasmtime::{Config, Engine, Linker, Module, Store};
/// use wasmtime_wasi::{I32Exit, WasiCtxBuilder};
///
/// let creator = PinMemoryCreator::new();
/// let mut config = Config::new();
/// creator.install(&mut config);
/// let engine = Engine::new(&config)?;
/// let mut linker = Linker::<WasiP1PinHost>::new(&engine);
/// wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)?;
/// host_api::add_to_core_linker(&mut linker, &creator)?;
/// // Pins its first page for writing, unpins it dirty, exits with 40 + what
/// // `unpin` returned (0: done).
/// let module = Module::new(&engine, r#"(module
///     (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
///     (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast" (func $pin (param i64 i32 i32) (result i32)))
///     (import "wasm-pin:mm/gup@0.1.0" "unpin" (func $unpin (param i32 i32) (result i32)))
///     (memory (export "memory") 1)
///     (func (export "_start")
///         (call $exit (i32.add (i32.const 40)
///             (call $unpin (call $pin (i64.const 0) (i32.const 1) (i32.const 1)) (i32.const 1))))))"#)?;
/// let data = WasiP1PinHost::new(WasiCtxBuilder::new().build_p1(), PinCtx::new(Quotas::default()));
/// let mut store = Store::new(&engine, data);
/// let instance = linker.instantiate(&mut store, &module)?;
/// let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
/// let exit = start.call(&mut store, ()).unwrap_err();
/// assert_eq!(exit.downcast_ref::<I32Exit>().map(|e| e.0), Some(40));
/// # Ok::<(), wasmtime::Error>(())
/// ```
pub struct WasiP1PinHost {
    /// wasmtime-wasi's preview1 context.
    pub wasi: WasiP1Ctx,
    /// The pin state.
    pub pins: PinCtx,
    /// The table of the pin imports' handles.
    pub table: ResourceTable,
}

impl WasiP1PinHost {
    /// A store's data with a fresh table.
    pub fn new(wasi: WasiP1Ctx, pins: PinCtx) -> WasiP1PinHost {
        WasiP1PinHost {
            wasi,
            pins,
            table: ResourceTable::new(),
        }
    }
}

impl PinView for WasiP1PinHost {
    fn pins(&mut self) -> PinCtxView<'_> {
        PinCtxView {
            ctx: &mut self.pins,
            table: &mut self.table,
        }
    }
}
