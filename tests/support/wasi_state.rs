//! A store's data for tests that run WASI guests with the pin imports: one
//! `WasiCtx`, one `PinCtx`, one table, as an embedder writes it.

use host_api::{PinCtx, PinCtxView, PinView};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct State {
    pub wasi: WasiCtx,
    pub pins: PinCtx,
    pub table: ResourceTable,
}

impl State {
    pub fn new(wasi: WasiCtx, pins: PinCtx) -> State {
        State {
            wasi,
            pins,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PinView for State {
    fn pins(&mut self) -> PinCtxView<'_> {
        PinCtxView {
            ctx: &mut self.pins,
            table: &mut self.table,
        }
    }
}
