//! Running a WASI 0.3 command component (exporting `wasi:cli/run@0.3.x`) on
//! wasmtime-wasi's p3, as `wasmtime run` does: an asynchronous store on a
//! tokio runtime, WASI 0.3 and 0.2 both linked (a 0.3 program may still
//! import 0.2 interfaces), and the pin imports (`wasm-pin:mm`, whose
//! interfaces use WASI 0.2 types) beside them. The file streams of
//! `wasi:filesystem/types@0.3.0` are wasm-pin's zero-copy ones
//! (`host_api::add_p3_streams_to_linker`).

use crate::command::CommandState;
use crate::options::WasiOptions;
use crate::{wasi, RunArgs};
use std::path::Path;
use std::process::ExitCode;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p3::bindings::Command;

/// Runs a WASI 0.3 command component; returns the process's exit code (the
/// guest's `exit(code)`, 1 if `run` returned an error, 134 for a trap).
pub fn run(
    engine: &Engine,
    component: &Component,
    path: &Path,
    args: &RunArgs,
    opts: &WasiOptions,
    guest_args: Vec<String>,
) -> wasmtime::Result<ExitCode> {
    let mut linker = Linker::<CommandState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).context("failed to link `wasi:cli@0.3.x`")?;
    // File streams read into and write from the guest's own (pinned)
    // buffers, with no executor thread blocked.
    host_api::add_p3_streams_to_linker(&mut linker)?;
    host_api::add_to_linker_async(&mut linker)?;
    let state = crate::command::state(path, args, opts, &guest_args)?;

    // As `wasmtime run`: a multi-threaded runtime with I/O (sockets) and
    // timers (clocks), driven from this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("failed to start the tokio runtime")?;
    let result = runtime.block_on(async {
        let mut store = Store::new(engine, state);
        let result = async {
            let command = Command::instantiate_async(&mut store, component, &linker)
                .await
                .with_context(|| format!("failed to instantiate `{}`", path.display()))?;
            store
                .run_concurrent(async move |s| command.wasi_cli_run().call_run(s).await)
                .await?
                .context("failed to invoke `run` function")
        }
        .await
        .with_context(|| format!("failed to run main module `{}`", path.display()));
        // Dropped here, inside the runtime: pins and transfers in flight
        // are released while their backend still runs.
        drop(store);
        result
    });
    wasi::exit_code(result.map(|r| r.is_ok()))
}
