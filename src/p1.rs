//! Running a WASI preview1 core module (a `wasm32-wasip1` program) natively,
//! as `wasmtime run` does: wasmtime-wasi's p1 (and p0's `wasi_unstable`)
//! beside the core-ABI pin imports (`wasm-pin:mm/gup@0.1.0`) on one linker.
//! The module's own memory comes from the engine's `PinMemoryCreator`, so the
//! pin imports pin it in place.

use crate::options::WasiOptions;
use crate::{wasi, RunArgs};
use host_api::WasiP1PinHost;
use runtime_mm::PinMemoryCreator;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use wasmtime::error::Context as _;
use wasmtime::{bail, Engine, Instance, Linker, Module, Store};

/// Runs a core module: instantiates it, calls `_initialize` if it exports
/// one (a reactor), then its default function, the export `""` or else
/// `_start` (none: nothing more runs), as `wasmtime run`. Returns the
/// process's exit code: `proc_exit(n)`'s `n`, 134 for a trap.
pub fn run(
    engine: &Engine,
    creator: &Arc<PinMemoryCreator>,
    module: &Module,
    path: &Path,
    args: &RunArgs,
    opts: &WasiOptions,
    guest_args: Vec<String>,
) -> wasmtime::Result<ExitCode> {
    let mut linker = Linker::<WasiP1PinHost>::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)?;
    if opts.preview0 {
        wasmtime_wasi::p0::add_to_linker_sync(&mut linker, |s| &mut s.wasi)?;
    }
    host_api::add_to_core_linker(&mut linker, creator)?;
    let state = WasiP1PinHost::new(
        wasi::builder(path, args, opts, &guest_args)?.build_p1(),
        wasi::pins(args, opts),
    );
    let mut store = Store::new(engine, state);
    let result = linker
        .instantiate(&mut store, module)
        .with_context(|| format!("failed to instantiate {:?}", path.display().to_string()))
        .and_then(|instance| run_instance(&mut store, instance))
        .with_context(|| format!("failed to run main module `{}`", path.display()));
    wasi::exit_code(result.map(|()| true))
}

/// `_initialize`, then `""` or `_start`.
fn run_instance(store: &mut Store<WasiP1PinHost>, instance: Instance) -> wasmtime::Result<()> {
    if let Some(init) = instance.get_func(&mut *store, "_initialize") {
        init.typed::<(), ()>(&*store)?.call(&mut *store, ())?;
    }
    let Some((name, main)) = ["", "_start"]
        .into_iter()
        .find_map(|name| instance.get_func(&mut *store, name).map(|f| (name, f)))
    else {
        return Ok(());
    };
    let ty = main.ty(&*store);
    if ty.params().len() != 0 || ty.results().len() != 0 {
        bail!("the default export `{name}` has type {ty:?}: wasm-pin run calls it with no arguments and no results");
    }
    main.call(&mut *store, &[], &mut [])
        .context("failed to invoke command default")
}
