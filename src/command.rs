//! Running a WASI 0.2 command component with the pin imports: wasmtime-wasi's
//! p2 and `host_api`'s imports on one linker, one store, one table, on a
//! synchronous store.

use crate::options::WasiOptions;
use crate::{wasi, RunArgs};
use host_api::PinCtx;
use std::path::Path;
use std::process::ExitCode;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command as WasiCommand;

/// The store of a WASI command component (0.2 or 0.3): wasmtime-wasi's
/// context, the pin imports' context, and the one table both keep their
/// resources in.
pub type CommandState = host_api::WasiPinHost;

/// A command's state: its WASI context, from the options (see
/// [`wasi::builder`]), and its pin context.
pub fn state(path: &Path, args: &RunArgs, opts: &WasiOptions, guest_args: &[String]) -> wasmtime::Result<CommandState> {
    Ok(CommandState::new(
        wasi::builder(path, args, opts, guest_args)?.build(),
        wasi::pins(args, opts),
    ))
}

/// Runs a WASI 0.2 command component; returns the process's exit code (the
/// guest's, 134 for a trap) and the pin state it left, or an error that is
/// not the guest's doing.
pub fn run(
    engine: &Engine,
    component: &Component,
    path: &Path,
    args: &RunArgs,
    opts: &WasiOptions,
    guest_args: Vec<String>,
) -> wasmtime::Result<(ExitCode, PinCtx)> {
    let mut linker = Linker::<CommandState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    host_api::add_to_linker_sync(&mut linker)?;
    let mut store = Store::new(engine, state(path, args, opts, &guest_args)?);

    let result = WasiCommand::instantiate(&mut store, component, &linker)
        .with_context(|| format!("failed to instantiate `{}`", path.display()))
        .and_then(|command| {
            command
                .wasi_cli_run()
                .call_run(&mut store)
                .context("failed to invoke `run` function")
        })
        .with_context(|| format!("failed to run main module `{}`", path.display()));
    // Dropping the store releases anything the guest left pinned or in
    // flight; the pin context survives it for the caller's summary.
    let pins = std::mem::take(&mut store.data_mut().pins);
    drop(store);
    Ok((wasi::exit_code(result.map(|r| r.is_ok()))?, pins))
}
