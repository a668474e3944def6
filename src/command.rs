//! Running a WASI command with the pin imports: wasmtime-wasi's p2 and
//! `host_api`'s imports on one linker, one store, one table.

use crate::RunArgs;
use host_api::{IoConfig, PinCtx, PinCtxView, PinView, Quotas};
use std::path::Path;
use std::process::ExitCode;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command as WasiCommand;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The exit code `wasmtime run` uses on Unix when the guest traps: the shell's
/// code for a process killed by SIGABRT (128 + 6).
const EXIT_TRAP: u8 = 134;

/// The store of a WASI command: wasmtime-wasi's context, the pin imports'
/// context, and the one table both keep their resources in.
pub struct CommandState {
    wasi: WasiCtx,
    pub pins: PinCtx,
    table: ResourceTable,
}

impl WasiView for CommandState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PinView for CommandState {
    fn pins(&mut self) -> PinCtxView<'_> {
        PinCtxView {
            ctx: &mut self.pins,
            table: &mut self.table,
        }
    }
}

/// argv\[0\] for a component: its file name only, as `wasmtime run` does (the
/// rest of the path is not the guest's business).
fn argv0(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs a WASI command component; returns the process's exit code (the
/// guest's, 134 for a trap) and the pin state it left, or an error that is
/// not the guest's doing.
pub fn run(
    engine: &Engine,
    component: &Component,
    path: &Path,
    args: &RunArgs,
    guest_args: Vec<String>,
) -> wasmtime::Result<(ExitCode, PinCtx)> {
    let mut linker = Linker::<CommandState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    host_api::add_to_linker_sync(&mut linker)?;

    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().arg(argv0(path)).args(&guest_args);
    for (name, value) in &args.envs {
        let value = match value {
            Some(v) => v.clone(),
            None => std::env::var(name).with_context(|| format!("--env {name}: not set on the host"))?,
        };
        wasi.env(name, value);
    }
    for d in &args.dirs {
        wasi.preopened_dir(&d.host, &d.guest, FsPerms::ReadWrite)
            .with_context(|| format!("failed to open --dir `{}`", d.host.display()))?;
    }
    let io = IoConfig {
        backend: args.backend.into(),
        ..IoConfig::default()
    };
    let state = CommandState {
        wasi: wasi.build(),
        pins: PinCtx::new(Quotas::default())
            .with_io(io)
            .allow_cpu_clock(args.allow_cpu_clock),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(engine, state);

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
    let code = match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        // `run` returned an error: exit code 1, nothing printed (the guest
        // said what went wrong), as `wasmtime run`.
        Ok(Err(())) => ExitCode::FAILURE,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                // `exit(code)`: the process's status keeps the low 8 bits, as
                // `std::process::exit` would.
                ExitCode::from(exit.0 as u8)
            } else if e.is::<wasmtime::Trap>() {
                eprintln!("Error: {e:?}");
                ExitCode::from(EXIT_TRAP)
            } else {
                return Err(e);
            }
        }
    };
    Ok((code, pins))
}
