//! What every program form shares: its WASI context (arguments, `--env`,
//! `--dir`, stdio, network policy) and pin context built from the options,
//! and how its outcome becomes this process's exit code, as `wasmtime run`.

use crate::options::WasiOptions;
use crate::RunArgs;
use host_api::{IoConfig, PinCtx, Quotas};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use wasmtime::error::Context as _;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// The exit code `wasmtime run` uses on Unix when the guest traps: the shell's
/// code for a process killed by SIGABRT (128 + 6).
pub const EXIT_TRAP: u8 = 134;

/// argv\[0\] for a program: its file name only, as `wasmtime run` does (the
/// rest of the path is not the guest's business).
pub fn argv0(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The WASI context of a run: argv\[0\] and `guest_args`, `-Sinherit-env`
/// then `--env`, `--dir` preopens (read-write), inherited stdio, and the
/// network `-S` options.
pub fn builder(
    path: &Path,
    args: &RunArgs,
    opts: &WasiOptions,
    guest_args: &[String],
) -> wasmtime::Result<WasiCtxBuilder> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().arg(argv0(path)).args(guest_args);
    // The CLI runs one guest on this thread: blocking it is fine, and skips
    // a hop to a blocking thread for file I/O (as `wasmtime run`).
    wasi.allow_blocking_current_thread(true);
    if opts.inherit_env {
        for (name, value) in std::env::vars() {
            wasi.env(name, value);
        }
    }
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
    if opts.inherit_network {
        // Every address; TCP and UDP with it, as `wasmtime run`.
        wasi.inherit_network().allow_tcp(true).allow_udp(true);
    }
    if let Some(on) = opts.tcp {
        wasi.allow_tcp(on);
    }
    if let Some(on) = opts.udp {
        wasi.allow_udp(on);
    }
    if let Some(on) = opts.allow_ip_name_lookup {
        wasi.allow_ip_name_lookup(on);
    }
    Ok(wasi)
}

/// The pin imports' context: default quotas, the `--backend`, the CPU clock
/// if allowed, and the same address policy as WASI's sockets.
pub fn pins(args: &RunArgs, opts: &WasiOptions) -> PinCtx {
    let io = IoConfig {
        backend: args.backend.into(),
        ..IoConfig::default()
    };
    let pins = PinCtx::new(Quotas::default())
        .with_io(io)
        .allow_cpu_clock(args.allow_cpu_clock);
    if opts.inherit_network {
        pins.socket_addr_check(Arc::new(|_, _| Box::pin(async { true })))
    } else {
        pins
    }
}

/// The process's exit code for a guest's outcome, as `wasmtime run` on
/// Unix: `Ok(true)` 0, `Ok(false)` (a command's `run` returned an error) 1,
/// `exit(code)` its code (the low 8 bits, as `std::process::exit`), a trap
/// 134 with the error on stderr. Any other error is returned, to be printed
/// with exit code 1.
pub fn exit_code(outcome: wasmtime::Result<bool>) -> wasmtime::Result<ExitCode> {
    match outcome {
        Ok(true) => Ok(ExitCode::SUCCESS),
        // Nothing printed: the guest said what went wrong.
        Ok(false) => Ok(ExitCode::FAILURE),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                Ok(ExitCode::from(exit.0 as u8))
            } else if e.is::<wasmtime::Trap>() {
                eprintln!("Error: {e:?}");
                Ok(ExitCode::from(EXIT_TRAP))
            } else {
                Err(e)
            }
        }
    }
}
